//! Terms as text: `Display` as `io_lib:format("~w", [T])`, `{:#}` as `~tp`
//! on one line, and `FromStr` for that syntax.
//!
//! # Printing
//!
//! `format!("{t}")` prints exactly what OTP 25's `io_lib:format("~w", [T])`
//! prints (as UTF-8) for every term without pids, ports, references and
//! local funs:
//!
//! - atoms are quoted when `io_lib:write_atom/1` quotes them (not starting
//!   with a Latin-1 lowercase letter, containing other than letters, digits,
//!   `_` and `@`, or a reserved word), with its escapes; as `~w` writes with
//!   the Latin-1 encoding, characters above 255 print as `\x{4F60}`;
//! - integers in decimal, floats as `float_to_list(F, [short])`: the
//!   shortest digits that read back to the same float, in decimal notation
//!   (`0.001`, `100.0`) when the float is below 2^53 in magnitude and that is
//!   not longer than scientific notation (`1.0e3`, `1.5e-5`);
//! - binaries as byte lists (`<<1,2,3>>`), bitstrings with the last,
//!   partial byte as `Value:Bits` (`<<1,2:4>>`); lists (byte lists too) as
//!   `[1,2|3]`; maps in their stored entry order, `#{a => 1,b => 2}` (the
//!   spaces around `=>` are what OTP 25 prints);
//! - an export fun as `fun lists:map/2` (atoms quoted by the `io_lib`
//!   rules above; the runtime's `erlang:fun_to_list/1` differs for a few
//!   rare atoms, e.g. it leaves reserved words unquoted).
//!
//! `format!("{t:#}")` prints what `io_lib:format("~tp", [T])` prints on a
//! node started with `+pc unicode`, for a term that fits on one line, and
//! never breaks lines: flat lists of printable characters as strings
//! (`"abc"`), binaries that are printable text as `<<"abc">>` (UTF-8 text
//! with non-ASCII characters as `<<"héllo"/utf8>>`), atoms with their
//! Unicode characters unescaped, everything else as `~w` does. For terms
//! with only Latin-1 text this is also plain `~p`, except binaries holding
//! UTF-8 encoded non-ASCII text (`~p` prints `<<"hÃ©llo">>`).
//!
//! Pids, ports, references and local funs have no text form in Erlang that
//! identifies them fully (`<0.85.0>` omits the node), so they print in forms
//! of this crate that keep every field and read back exactly; numbers are
//! decimal, the node is an atom written as above:
//!
//! - pid: `#Pid<Node.Id.Serial.Creation>`, e.g. `#Pid<a@host.85.0.3>`;
//! - port: `#Port<Node.Id.Creation>`;
//! - reference: `#Ref<Node.W1.W2.W3.Creation>`, the words (1 to 5) in wire
//!   order (the order of [`Reference::ids`]), the creation last;
//! - local fun:
//!   `#Fun<Module,Arity,Index,16#Uniq,OldIndex,OldUniq,Pid,[FreeVar,...]>`,
//!   `Uniq` being the 16-byte MD5 as 32 hexadecimal digits.
//!
//! Floats that Erlang cannot hold (NaN, infinities) print as `NaN`, `inf`
//! and `-inf`, which do not read back.
//!
//! Printing does not recurse, so any nesting depth is safe.
//!
//! # Parsing
//!
//! [`Term::from_str`] reads everything the two forms print, and the term
//! literals people type: `"strings"` (a [`Term::ByteList`] when every
//! character is below 256, else a [`Term::List`] of code points; adjacent
//! strings join), `$a` and `$\n` characters, `16#ff` and `2#1010` integers,
//! `1_000`, `-5`, `1.5e3`, quoted atoms with escapes (`\n`, `\x{4F60}`,
//! `\101`, `\^A`, ...), `#{k => v}`, `[a|b]`, binaries with segments
//! `Value`, `Value:Size` and `Value/utf8` where a value is an integer, a
//! character or a string (`<<"ü"/utf8>>`, `<<1:3>>`, `<<1,2:4>>`; a string
//! without `/utf8` must be Latin-1), `%` comments, whitespace between
//! tokens, and one optional trailing `.`. Integers that fit in `i64` are
//! [`Term::Int`], others [`Term::BigInt`]. Containers nest at most 4096
//! deep; the parser does not recurse.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::str::FromStr;

use bytes::Bytes;
use num_bigint::BigInt;
use num_traits::ToPrimitive;

use super::{Atom, Fun, LocalFun, Map, Pid, Port, Reference, Term};

/// The deepest nesting of lists, tuples, maps and funs the parser accepts.
const MAX_DEPTH: usize = 4096;

/// The longest bitstring the parser builds (64 MiB).
const MAX_BINARY_BITS: u64 = 1 << 29;

/// A syntax error in term text, with its place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ParseError {
    /// The line (from 1).
    pub line: usize,
    /// The column (from 1, in characters).
    pub column: usize,
    /// What was wrong.
    pub message: String,
}

// ---------------------------------------------------------------------------
// Printing
// ---------------------------------------------------------------------------

/// `~w` or `~tp`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Write,
    Print,
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let style = if f.alternate() {
            Style::Print
        } else {
            Style::Write
        };
        write_term(f, self, style)
    }
}

/// An open container while printing.
enum Frame<'a> {
    /// Elements of a tuple, list or local fun's free variables; after them
    /// the tail of an improper list, then `close`.
    Seq {
        rest: std::slice::Iter<'a, Term>,
        tail: Option<&'a Term>,
        close: &'static str,
    },
    /// Map entries; `value` is the value of the key just printed.
    Map {
        rest: std::vec::IntoIter<&'a (Term, Term)>,
        value: Option<&'a Term>,
    },
}

/// A map's entries in the order OTP prints them: key order for up to 32
/// keys (how OTP stores small maps); for larger maps (OTP's hash maps), the
/// reverse of the order `term_to_binary` writes, which is how OTP iterates
/// them. Maps decoded from OTP therefore print exactly as OTP prints them.
fn print_order(m: &Map) -> Vec<&(Term, Term)> {
    let mut v: Vec<&(Term, Term)> = m.entries.iter().collect();
    if v.len() > 32 {
        v.reverse();
    } else if !v.windows(2).all(|w| w[0].0.exact_cmp(&w[1].0).is_lt()) {
        v.sort_by(|a, b| a.0.exact_cmp(&b.0));
    }
    v
}

fn write_term<W: fmt::Write>(out: &mut W, root: &Term, style: Style) -> fmt::Result {
    let mut stack: Vec<Frame<'_>> = Vec::new();
    let mut next = Some(root);
    loop {
        if let Some(t) = next.take() {
            next = open(out, t, style, &mut stack)?;
            continue;
        }
        match stack.last_mut() {
            None => return Ok(()),
            Some(Frame::Seq { rest, tail, close }) => {
                if let Some(t) = rest.next() {
                    out.write_char(',')?;
                    next = Some(t);
                } else if let Some(t) = tail.take() {
                    out.write_char('|')?;
                    next = Some(t);
                } else {
                    out.write_str(close)?;
                    stack.pop();
                }
            }
            Some(Frame::Map { rest, value }) => {
                if let Some(v) = value.take() {
                    out.write_str(" => ")?;
                    next = Some(v);
                } else if let Some((k, v)) = rest.next() {
                    out.write_char(',')?;
                    *value = Some(v);
                    next = Some(k);
                } else {
                    out.write_char('}')?;
                    stack.pop();
                }
            }
        }
    }
}

/// Prints `t` whole if it has no elements to print, else prints its opening,
/// pushes a frame for the rest and returns the first element.
fn open<'a, W: fmt::Write>(
    out: &mut W,
    t: &'a Term,
    style: Style,
    stack: &mut Vec<Frame<'a>>,
) -> Result<Option<&'a Term>, fmt::Error> {
    let seq = |out: &mut W,
               stack: &mut Vec<Frame<'a>>,
               open: &str,
               elems: &'a [Term],
               tail: Option<&'a Term>,
               close: &'static str|
     -> Result<Option<&'a Term>, fmt::Error> {
        out.write_str(open)?;
        let mut rest = elems.iter();
        match rest.next() {
            Some(first) => {
                stack.push(Frame::Seq { rest, tail, close });
                Ok(Some(first))
            }
            None => {
                out.write_str(close)?;
                Ok(None)
            }
        }
    };
    match t {
        Term::Int(i) => write!(out, "{i}")?,
        Term::BigInt(b) => write!(out, "{b}")?,
        Term::Float(x) => write_float(out, *x)?,
        Term::Atom(a) => write_atom(out, a.as_str(), style)?,
        Term::Binary(b) => write_binary(out, b, style)?,
        Term::BitBinary(bb) => write_bitstring(out, &bb.bytes, bb.bits)?,
        Term::Tuple(v) => return seq(out, stack, "{", v, None, "}"),
        Term::List(v) => {
            if style == Style::Print && !v.is_empty() && v.iter().all(is_printable_int) {
                let chars = v.iter().map(|t| match t {
                    Term::Int(i) => *i as u32,
                    _ => 0,
                });
                write_quoted(out, chars, '"', false)?;
            } else {
                return seq(out, stack, "[", v, None, "]");
            }
        }
        Term::ByteList(b) => {
            if style == Style::Print
                && !b.is_empty()
                && b.iter().all(|&c| is_printable(u32::from(c)))
            {
                write_quoted(out, b.iter().map(|&c| u32::from(c)), '"', false)?;
            } else {
                out.write_char('[')?;
                write_bytes(out, b)?;
                out.write_char(']')?;
            }
        }
        Term::ImproperList(l) => {
            if l.elems.is_empty() {
                // Not a valid improper list; it stands for its tail.
                return Ok(Some(&l.tail));
            }
            return seq(out, stack, "[", &l.elems, Some(&l.tail), "]");
        }
        Term::Map(m) => {
            let mut rest = print_order(m).into_iter();
            match rest.next() {
                Some((k, v)) => {
                    out.write_str("#{")?;
                    stack.push(Frame::Map {
                        rest,
                        value: Some(v),
                    });
                    return Ok(Some(k));
                }
                None => out.write_str("#{}")?,
            }
        }
        Term::Pid(p) => write_pid(out, p, style)?,
        Term::Port(p) => {
            out.write_str("#Port<")?;
            write_atom(out, p.node.as_str(), style)?;
            write!(out, ".{}.{}>", p.id, p.creation)?;
        }
        Term::Ref(r) => {
            out.write_str("#Ref<")?;
            write_atom(out, r.node.as_str(), style)?;
            for w in r.ids() {
                write!(out, ".{w}")?;
            }
            write!(out, ".{}>", r.creation)?;
        }
        Term::Fun(fun) => match &**fun {
            Fun::Export {
                module,
                function,
                arity,
            } => {
                out.write_str("fun ")?;
                write_atom(out, module.as_str(), style)?;
                out.write_char(':')?;
                write_atom(out, function.as_str(), style)?;
                write!(out, "/{arity}")?;
            }
            Fun::Local(l) => {
                out.write_str("#Fun<")?;
                write_atom(out, l.module.as_str(), style)?;
                write!(out, ",{},{},16#", l.arity, l.index)?;
                for b in l.uniq {
                    write!(out, "{b:02X}")?;
                }
                write!(out, ",{},{},", l.old_index, l.old_uniq)?;
                write_pid(out, &l.pid, style)?;
                return seq(out, stack, ",[", &l.free_vars, None, "]>");
            }
        },
    }
    Ok(None)
}

fn write_pid<W: fmt::Write>(out: &mut W, p: &Pid, style: Style) -> fmt::Result {
    out.write_str("#Pid<")?;
    write_atom(out, p.node.as_str(), style)?;
    write!(out, ".{}.{}.{}>", p.id, p.serial, p.creation)
}

/// Writes a byte in decimal.
fn write_byte<W: fmt::Write>(out: &mut W, b: u8) -> fmt::Result {
    let mut buf = [0u8; 3];
    let mut i = 3;
    let mut n = b;
    loop {
        i -= 1;
        buf[i] = b'0' + n % 10;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &buf[i..] {
        out.write_char(char::from(d))?;
    }
    Ok(())
}

/// Writes bytes in decimal, separated by commas.
fn write_bytes<W: fmt::Write>(out: &mut W, bytes: &[u8]) -> fmt::Result {
    for (i, &b) in bytes.iter().enumerate() {
        if i > 0 {
            out.write_char(',')?;
        }
        write_byte(out, b)?;
    }
    Ok(())
}

fn write_binary<W: fmt::Write>(out: &mut W, b: &[u8], style: Style) -> fmt::Result {
    if style == Style::Print && !b.is_empty() {
        // io_lib_pretty:printable_bin/4 with the Unicode encoding: valid
        // UTF-8 is text only if all its characters are printable; other
        // bytes are text if all are printable Latin-1.
        match std::str::from_utf8(b) {
            Ok(s) => {
                if s.chars().all(|c| is_printable(u32::from(c))) {
                    out.write_str("<<")?;
                    write_quoted(out, s.chars().map(u32::from), '"', false)?;
                    return out.write_str(if s.is_ascii() { ">>" } else { "/utf8>>" });
                }
            }
            Err(_) => {
                if b.iter().all(|&c| is_printable(u32::from(c))) {
                    out.write_str("<<")?;
                    write_quoted(out, b.iter().map(|&c| u32::from(c)), '"', false)?;
                    return out.write_str(">>");
                }
            }
        }
    }
    out.write_str("<<")?;
    write_bytes(out, b)?;
    out.write_str(">>")
}

fn write_bitstring<W: fmt::Write>(out: &mut W, bytes: &[u8], bits: u8) -> fmt::Result {
    out.write_str("<<")?;
    if let Some((&last, whole)) = bytes.split_last() {
        write_bytes(out, whole)?;
        if !whole.is_empty() {
            out.write_char(',')?;
        }
        if (1..8).contains(&bits) {
            write!(out, "{}:{bits}", last >> (8 - bits))?;
        } else {
            write_byte(out, last)?;
        }
    }
    out.write_str(">>")
}

/// Whether `c` is printable in a string under `+pc unicode`
/// (`io_lib:printable_unicode_list/1`); below 256 this is the Latin-1 rule.
fn is_printable(c: u32) -> bool {
    matches!(c, 8..=13 | 27 | 0x20..=0x7e | 0xa0..=0xd7ff | 0xe000..=0xfffd | 0x10000..=0x10ffff)
}

fn is_printable_int(t: &Term) -> bool {
    match t {
        Term::Int(i) => u32::try_from(*i).is_ok_and(is_printable),
        _ => false,
    }
}

/// A Latin-1 lowercase letter, as `io_lib:quote_atom/2` and the scanner
/// see it.
fn is_lower(c: char) -> bool {
    c.is_ascii_lowercase() || (('ß'..='ÿ').contains(&c) && c != '÷')
}

/// A character that may follow the first in an unquoted atom.
fn is_name_char(c: char) -> bool {
    is_lower(c)
        || c.is_ascii_uppercase()
        || (('À'..='Þ').contains(&c) && c != '×')
        || c.is_ascii_digit()
        || c == '_'
        || c == '@'
}

/// Erlang's reserved words (`erl_scan:reserved_word/1` in OTP 25, whose
/// feature keywords such as `maybe` are off by default).
fn is_reserved(s: &str) -> bool {
    matches!(
        s,
        "after"
            | "begin"
            | "case"
            | "try"
            | "cond"
            | "catch"
            | "andalso"
            | "orelse"
            | "end"
            | "fun"
            | "if"
            | "let"
            | "of"
            | "receive"
            | "when"
            | "bnot"
            | "not"
            | "div"
            | "rem"
            | "band"
            | "and"
            | "bor"
            | "bxor"
            | "bsl"
            | "bsr"
            | "or"
            | "xor"
    )
}

/// Whether `io_lib:write_atom/1` quotes the atom `s`.
fn atom_needs_quotes(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if is_lower(c) => !chars.all(is_name_char) || is_reserved(s),
        _ => true,
    }
}

fn write_atom<W: fmt::Write>(out: &mut W, s: &str, style: Style) -> fmt::Result {
    if atom_needs_quotes(s) {
        write_quoted(out, s.chars().map(u32::from), '\'', style == Style::Write)
    } else {
        out.write_str(s)
    }
}

/// Writes `chars` between `quote`s with the escapes of
/// `io_lib:write_string/2` (or, with `latin1`, of
/// `io_lib:write_string_as_latin1/2`, which escapes characters above 255
/// as `\x{...}`).
fn write_quoted<W: fmt::Write>(
    out: &mut W,
    chars: impl Iterator<Item = u32>,
    quote: char,
    latin1: bool,
) -> fmt::Result {
    out.write_char(quote)?;
    for c in chars {
        write_escaped(out, c, quote, latin1)?;
    }
    out.write_char(quote)
}

fn write_escaped<W: fmt::Write>(out: &mut W, c: u32, quote: char, latin1: bool) -> fmt::Result {
    if c == u32::from(quote) || c == u32::from('\\') {
        out.write_char('\\')?;
        return out.write_char(char::from_u32(c).unwrap_or('\\'));
    }
    let escape = match c {
        0x20..=0x7e | 0xa0..=0xff => None,
        0x100.. if latin1 => return write!(out, "\\x{{{c:X}}}"),
        0x100.. => match char::from_u32(c) {
            Some(_) => None,
            None => return write!(out, "\\x{{{c:X}}}"),
        },
        10 => Some("\\n"),
        13 => Some("\\r"),
        9 => Some("\\t"),
        11 => Some("\\v"),
        8 => Some("\\b"),
        12 => Some("\\f"),
        27 => Some("\\e"),
        127 => Some("\\d"),
        _ => return write!(out, "\\{}{}{}", c >> 6, (c >> 3) & 7, c & 7),
    };
    match escape {
        Some(e) => out.write_str(e),
        None => out.write_char(char::from_u32(c).unwrap_or('?')),
    }
}

/// A small buffer on the stack, to format a float before choosing its form.
struct StackBuf {
    buf: [u8; 48],
    len: usize,
}

impl fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Writes a float as `float_to_list(X, [short])` does.
fn write_float<W: fmt::Write>(out: &mut W, x: f64) -> fmt::Result {
    if !x.is_finite() {
        return write!(out, "{x}");
    }
    let (digits, n, exp) = shortest_digits(x)?;
    let digits = std::str::from_utf8(&digits[..n]).map_err(|_| fmt::Error)?;
    let n = n as i32;
    if x.is_sign_negative() {
        out.write_char('-')?;
    }
    let exp_len = {
        let mut e = exp.unsigned_abs();
        let mut l = i32::from(exp < 0) + 1;
        while e >= 10 {
            e /= 10;
            l += 1;
        }
        l
    };
    // "d.ddde-N"
    let sci_len = 1 + 1 + (n - 1).max(1) + 1 + exp_len;
    const TWO_53: f64 = 9_007_199_254_740_992.0;
    if x.abs() < TWO_53 {
        let dec_len = if exp >= 0 {
            if n <= exp + 1 {
                exp + 1 + 2
            } else {
                n + 1
            }
        } else {
            2 + (-exp - 1) + n
        };
        if dec_len <= sci_len {
            if exp >= 0 {
                let int_len = (exp + 1) as usize;
                if digits.len() > int_len {
                    out.write_str(&digits[..int_len])?;
                    out.write_char('.')?;
                    out.write_str(&digits[int_len..])?;
                } else {
                    out.write_str(digits)?;
                    for _ in digits.len()..int_len {
                        out.write_char('0')?;
                    }
                    out.write_str(".0")?;
                }
            } else {
                out.write_str("0.")?;
                for _ in 0..(-exp - 1) {
                    out.write_char('0')?;
                }
                out.write_str(digits)?;
            }
            return Ok(());
        }
    }
    out.write_str(&digits[..1])?;
    out.write_char('.')?;
    out.write_str(if n == 1 { "0" } else { &digits[1..] })?;
    write!(out, "e{exp}")
}

/// The shortest decimal digits that read back as `|x|` (finite), as
/// `(digits, count, exponent of the first digit)`. Where two such digit
/// strings are equally near `x`, the one ending in an even digit, as OTP's
/// Ryu does (Rust's own formatting picks the upper one).
fn shortest_digits(x: f64) -> Result<([u8; 24], usize, i32), fmt::Error> {
    let mut sb = StackBuf {
        buf: [0; 48],
        len: 0,
    };
    // "d[.ddd]e[-]N"
    write!(sb, "{:e}", x.abs())?;
    let s = std::str::from_utf8(&sb.buf[..sb.len]).map_err(|_| fmt::Error)?;
    let (mantissa, exp) = s.split_once('e').ok_or(fmt::Error)?;
    let exp: i32 = exp.parse().map_err(|_| fmt::Error)?;
    let mut digits = [0u8; 24];
    let mut n = 0;
    for b in mantissa.bytes().filter(u8::is_ascii_digit) {
        *digits.get_mut(n).ok_or(fmt::Error)? = b;
        n += 1;
    }
    if n == 0 {
        return Err(fmt::Error);
    }
    let last = digits[n - 1] - b'0';
    // The neighbour whose last digit is even, if it also reads back as x
    // and x lies exactly between the two.
    // x = m * 2^q can be a midpoint `...d5 * 10^(exp - n)` only if its
    // lowest set bit is that of 10^(exp - n) (the midpoint's digits end
    // in 5, an odd number): a cheap test that rules out nearly all floats.
    let (m, q) = mantissa_exponent(x.abs());
    if last % 2 == 1 && m != 0 && q + m.trailing_zeros() as i32 == exp - n as i32 {
        for d in [last - 1, last + 1] {
            if d > 9 || (d == 0 && n == 1) {
                continue;
            }
            let mut cand = digits;
            cand[n - 1] = b'0' + d;
            if reads_back(&cand[..n], exp, x.abs())
                && is_midpoint(x.abs(), &digits[..n - 1], last.min(d), exp - n as i32)
            {
                digits[n - 1] = b'0' + d;
                break;
            }
        }
    }
    Ok((digits, n, exp))
}

/// Whether the digits `d1 d2...` times `10^exp` (the first digit's
/// exponent) read back as `x`.
fn reads_back(digits: &[u8], exp: i32, x: f64) -> bool {
    let mut sb = StackBuf {
        buf: [0; 48],
        len: 0,
    };
    let ok = (|| -> fmt::Result {
        for &b in digits {
            sb.write_char(char::from(b))?;
        }
        write!(sb, "e{}", exp - digits.len() as i32 + 1)
    })();
    ok.is_ok()
        && std::str::from_utf8(&sb.buf[..sb.len])
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            == Some(x)
}

/// `(m, q)` with `x = m * 2^q` exactly, for finite non-negative `x`.
fn mantissa_exponent(x: f64) -> (u64, i32) {
    let bits = x.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    if biased == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), biased - 1075)
    }
}

/// Whether `x` is exactly `(prefix, low, 5) * 10^(exp)`, i.e. the midpoint
/// between the digit strings `prefix low` and `prefix low+1` (whose last
/// digit has exponent `exp + 1`).
fn is_midpoint(x: f64, prefix: &[u8], low: u8, exp: i32) -> bool {
    // The midpoint as K * 10^exp, K an integer.
    let mut k = BigInt::default();
    for &b in prefix {
        k = k * 10u32 + u32::from(b - b'0');
    }
    k = (k * 10u32 + u32::from(low)) * 10u32 + 5u32;
    let (m, q) = mantissa_exponent(x);
    // Compare m * 2^q with k * 10^exp, both sides made integers.
    let mut left = BigInt::from(m);
    let mut right = k;
    if q >= 0 {
        left <<= q as usize;
    } else {
        right <<= (-q) as usize;
    }
    let ten = BigInt::from(10u32);
    if exp >= 0 {
        right *= num_traits::pow(ten, exp as usize);
    } else {
        left *= num_traits::pow(ten, (-exp) as usize);
    }
    left == right
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

impl FromStr for Term {
    type Err = ParseError;

    /// Parses a term written as [`Term`]'s `Display` (or `{:#}`) prints it,
    /// or as an Erlang term literal: `"strings"`, `$c`, `16#ff`, `1.5e3`,
    /// `<<"bin"/utf8>>`, `<<1:3>>`, quoted atoms with escapes, `#{k => v}`,
    /// `[a|b]`, `%` comments and an optional trailing `.`. Containers nest
    /// at most 4096 deep.
    fn from_str(s: &str) -> Result<Term, ParseError> {
        let mut p = Parser { src: s, pos: 0 };
        let t = p.term()?;
        p.skip_ws();
        if p.peek() == Some('.') {
            p.pos += 1;
            p.skip_ws();
        }
        if p.pos < s.len() {
            return Err(p.error(format!("unexpected {} after the term", p.found())));
        }
        Ok(t)
    }
}

/// An open container while parsing.
enum Open {
    Tuple(Vec<Term>),
    List {
        elems: Vec<Term>,
        /// After the `|`: the next value is the tail.
        bar: bool,
    },
    Map {
        entries: Vec<(Term, Term)>,
        key: Option<Term>,
    },
    /// The free variables of a local fun.
    Fun(Box<LocalFun>),
}

struct Parser<'s> {
    src: &'s str,
    pos: usize,
}

/// A binary segment's value.
enum SegValue {
    Int(Term),
    Chars(Vec<u32>),
}

impl<'s> Parser<'s> {
    fn rest(&self) -> &'s str {
        &self.src[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.rest().chars();
        it.next();
        it.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn error_at(&self, at: usize, message: String) -> ParseError {
        let before = &self.src[..at.min(self.src.len())];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        ParseError {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
            message,
        }
    }

    fn error(&self, message: String) -> ParseError {
        self.error_at(self.pos, message)
    }

    /// What is at the current place, for messages.
    fn found(&self) -> String {
        match self.peek() {
            None => "end of input".into(),
            Some(c) => format!("{c:?}"),
        }
    }

    fn expected(&self, what: &str) -> ParseError {
        self.error(format!("expected {what}, found {}", self.found()))
    }

    fn expect(&mut self, s: &str) -> Result<(), ParseError> {
        self.skip_ws();
        if self.eat(s) {
            Ok(())
        } else {
            Err(self.expected(&format!("'{s}'")))
        }
    }

    /// Skips whitespace (and control characters, as Erlang does) and `%`
    /// comments.
    fn skip_ws(&mut self) {
        let bytes = self.src.as_bytes();
        while let Some(&b) = bytes.get(self.pos) {
            if b <= b' ' {
                self.pos += 1;
            } else if b == b'%' {
                while let Some(&b) = bytes.get(self.pos) {
                    if b == b'\n' {
                        break;
                    }
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn push(&self, stack: &mut Vec<Open>, open: Open, at: usize) -> Result<(), ParseError> {
        if stack.len() >= MAX_DEPTH {
            return Err(self.error_at(at, format!("nesting deeper than {MAX_DEPTH}")));
        }
        stack.push(open);
        Ok(())
    }

    /// Parses one term, without recursion: containers open a frame on
    /// `stack`, and each finished value goes into the innermost one.
    fn term(&mut self) -> Result<Term, ParseError> {
        let mut stack: Vec<Open> = Vec::new();
        'value: loop {
            self.skip_ws();
            let start = self.pos;
            let mut done = if self.eat("{") {
                self.skip_ws();
                if self.eat("}") {
                    Term::Tuple(Vec::new())
                } else {
                    self.push(&mut stack, Open::Tuple(Vec::new()), start)?;
                    continue 'value;
                }
            } else if self.eat("[") {
                self.skip_ws();
                if self.eat("]") {
                    Term::NIL
                } else {
                    let open = Open::List {
                        elems: Vec::new(),
                        bar: false,
                    };
                    self.push(&mut stack, open, start)?;
                    continue 'value;
                }
            } else if self.eat("#{") {
                self.skip_ws();
                if self.eat("}") {
                    Term::Map(Map::new())
                } else {
                    let open = Open::Map {
                        entries: Vec::new(),
                        key: None,
                    };
                    self.push(&mut stack, open, start)?;
                    continue 'value;
                }
            } else if self.eat("#Fun<") {
                let fun = self.fun_header()?;
                self.skip_ws();
                if self.eat("]") {
                    self.expect(">")?;
                    Term::Fun(Box::new(Fun::Local(*fun)))
                } else {
                    self.push(&mut stack, Open::Fun(fun), start)?;
                    continue 'value;
                }
            } else {
                self.scalar()?
            };
            // Put the finished value into the innermost container, closing
            // the containers that end after it.
            loop {
                self.skip_ws();
                match stack.last_mut() {
                    None => return Ok(done),
                    Some(Open::Tuple(elems)) => {
                        elems.push(done);
                        if self.eat(",") {
                            continue 'value;
                        }
                        if !self.eat("}") {
                            return Err(self.expected("',' or '}'"));
                        }
                        done = Term::Tuple(std::mem::take(elems));
                    }
                    Some(Open::List { elems, bar }) => {
                        if *bar {
                            if !self.eat("]") {
                                return Err(self.expected("']'"));
                            }
                            done = Term::list_with_tail(std::mem::take(elems), done);
                        } else {
                            elems.push(done);
                            if self.eat(",") {
                                continue 'value;
                            }
                            if self.eat("|") {
                                *bar = true;
                                continue 'value;
                            }
                            if !self.eat("]") {
                                return Err(self.expected("',', '|' or ']'"));
                            }
                            done = Term::List(std::mem::take(elems));
                        }
                    }
                    Some(Open::Map { entries, key }) => match key.take() {
                        None => {
                            if !self.eat("=>") {
                                return Err(self.expected("'=>'"));
                            }
                            *key = Some(done);
                            continue 'value;
                        }
                        Some(k) => {
                            entries.push((k, done));
                            if self.eat(",") {
                                continue 'value;
                            }
                            if !self.eat("}") {
                                return Err(self.expected("',' or '}'"));
                            }
                            done = Term::Map(build_map(std::mem::take(entries)));
                        }
                    },
                    Some(Open::Fun(fun)) => {
                        fun.free_vars.push(done);
                        if self.eat(",") {
                            continue 'value;
                        }
                        if !self.eat("]") {
                            return Err(self.expected("',' or ']'"));
                        }
                        self.expect(">")?;
                        let fun = std::mem::replace(&mut **fun, empty_fun());
                        done = Term::Fun(Box::new(Fun::Local(fun)));
                    }
                }
                stack.pop();
            }
        }
    }

    /// A term that is not a container.
    fn scalar(&mut self) -> Result<Term, ParseError> {
        let start = self.pos;
        match self.peek() {
            Some('\'') | Some('a'..='z') | Some('ß'..='ÿ') => {
                let atom = self.atom()?;
                if atom.as_str() == "fun" && self.src[start..].starts_with("fun") {
                    let after = self.pos;
                    self.skip_ws();
                    if matches!(self.peek(), Some(c) if c == '\'' || is_lower(c)) {
                        return self.export_fun();
                    }
                    self.pos = after;
                }
                Ok(Term::Atom(atom))
            }
            Some('"') => {
                let chars = self.string()?;
                Ok(chars_term(chars))
            }
            Some('$') => Ok(Term::Int(i64::from(self.char_literal()?))),
            Some('-') | Some('+') | Some('0'..='9') => self.number(),
            Some('<') if self.rest().starts_with("<<") => self.binary(),
            Some('#') if self.eat("#Pid<") => Ok(Term::Pid(self.pid_body()?)),
            Some('#') if self.eat("#Port<") => {
                let node = self.atom_in_body()?;
                self.expect(".")?;
                let id = self.uint("port id")?;
                self.expect(".")?;
                let creation = self.uint("creation")?;
                self.expect(">")?;
                Ok(Term::Port(Port { node, id, creation }))
            }
            Some('#') if self.eat("#Ref<") => self.ref_body(start),
            Some(c) if c.is_ascii_uppercase() || c == '_' => {
                Err(self.error(format!("unexpected {c:?}: variables are not terms")))
            }
            _ => Err(self.expected("a term")),
        }
    }

    /// An atom, quoted or not.
    fn atom(&mut self) -> Result<Atom, ParseError> {
        let start = self.pos;
        let name: Cow<'s, str> = match self.peek() {
            Some('\'') => {
                self.pos += 1;
                let mut name = String::new();
                loop {
                    let at = self.pos;
                    match self.bump() {
                        None => return Err(self.error_at(start, "unterminated atom".into())),
                        Some('\'') => break,
                        Some('\\') => {
                            let c = self.escape()?;
                            match char::from_u32(c) {
                                Some(c) => name.push(c),
                                None => {
                                    return Err(self.error_at(
                                        at,
                                        format!("invalid character {c:#x} in an atom"),
                                    ))
                                }
                            }
                        }
                        Some(c) => name.push(c),
                    }
                }
                Cow::Owned(name)
            }
            Some(c) if is_lower(c) => {
                let len: usize = self
                    .rest()
                    .chars()
                    .take_while(|&c| is_name_char(c))
                    .map(char::len_utf8)
                    .sum();
                self.pos += len;
                Cow::Borrowed(&self.src[start..self.pos])
            }
            _ => return Err(self.expected("an atom")),
        };
        Atom::try_new(&name).map_err(|e| self.error_at(start, e.to_string()))
    }

    fn atom_in_body(&mut self) -> Result<Atom, ParseError> {
        self.skip_ws();
        self.atom()
    }

    /// The rest of `fun M:F/A` after `fun`.
    fn export_fun(&mut self) -> Result<Term, ParseError> {
        let module = self.atom_in_body()?;
        self.expect(":")?;
        let function = self.atom_in_body()?;
        self.expect("/")?;
        let arity = self.uint("arity")?;
        Ok(Term::Fun(Box::new(Fun::Export {
            module,
            function,
            arity,
        })))
    }

    /// The rest of `#Pid<Node.Id.Serial.Creation>`.
    fn pid_body(&mut self) -> Result<Pid, ParseError> {
        let node = self.atom_in_body()?;
        self.expect(".")?;
        let id = self.uint("pid id")?;
        self.expect(".")?;
        let serial = self.uint("pid serial")?;
        self.expect(".")?;
        let creation = self.uint("creation")?;
        self.expect(">")?;
        Ok(Pid {
            node,
            id,
            serial,
            creation,
        })
    }

    /// The rest of `#Ref<Node.W1...Wn.Creation>`.
    fn ref_body(&mut self, start: usize) -> Result<Term, ParseError> {
        let node = self.atom_in_body()?;
        let mut nums: Vec<u32> = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(">") {
                break;
            }
            if nums.len() > Reference::MAX_WORDS {
                return Err(self.expected("'>'"));
            }
            self.expect(".")?;
            nums.push(self.uint("reference word")?);
        }
        let Some((&creation, ids)) = nums.split_last() else {
            return Err(self.error_at(start, "a reference needs a creation".into()));
        };
        Reference::new(node, creation, ids)
            .map(|r| Term::Ref(Box::new(r)))
            .ok_or_else(|| self.error_at(start, "a reference needs 1 to 5 words".into()))
    }

    /// `#Fun<Module,Arity,Index,Uniq,OldIndex,OldUniq,Pid,[` after `#Fun<`.
    fn fun_header(&mut self) -> Result<Box<LocalFun>, ParseError> {
        let module = self.atom_in_body()?;
        self.expect(",")?;
        let arity = self.uint("arity")?;
        self.expect(",")?;
        let index = self.uint("index")?;
        self.expect(",")?;
        self.skip_ws();
        let at = self.pos;
        let uniq = match self.number()? {
            Term::Int(i) => u128::try_from(i).ok(),
            Term::BigInt(b) => b.to_u128(),
            _ => None,
        }
        .ok_or_else(|| self.error_at(at, "uniq must be an integer of 128 bits".into()))?;
        self.expect(",")?;
        let old_index = self.uint("old index")?;
        self.expect(",")?;
        let old_uniq = self.uint("old uniq")?;
        self.expect(",")?;
        self.expect("#Pid<")?;
        let pid = self.pid_body()?;
        self.expect(",")?;
        self.expect("[")?;
        Ok(Box::new(LocalFun {
            arity,
            uniq: uniq.to_be_bytes(),
            index,
            module,
            old_index,
            old_uniq,
            pid,
            free_vars: Vec::new(),
        }))
    }

    /// A non-negative decimal integer that fits in `T`.
    fn uint<T: TryFrom<u64>>(&mut self, what: &str) -> Result<T, ParseError> {
        self.skip_ws();
        let start = self.pos;
        let Some(digits) = self.digits(10) else {
            return Err(self.expected(what));
        };
        digits
            .parse::<u64>()
            .ok()
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| self.error_at(start, format!("{what} out of range")))
    }

    /// Digits in `radix`, with `_` allowed between two digits; `None` when
    /// there is no digit.
    fn digits(&mut self, radix: u32) -> Option<Cow<'s, str>> {
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let is_digit = |b: Option<&u8>| b.is_some_and(|&b| char::from(b).is_digit(radix));
        let mut underscore = false;
        while self.pos < bytes.len() {
            if is_digit(bytes.get(self.pos)) {
                self.pos += 1;
            } else if bytes[self.pos] == b'_'
                && self.pos > start
                && is_digit(bytes.get(self.pos + 1))
            {
                underscore = true;
                self.pos += 1;
            } else {
                break;
            }
        }
        let s = &self.src[start..self.pos];
        if s.is_empty() {
            None
        } else if underscore {
            Some(Cow::Owned(s.replace('_', "")))
        } else {
            Some(Cow::Borrowed(s))
        }
    }

    /// A number, with an optional sign: `12`, `-16#ff`, `1.5e-3`.
    fn number(&mut self) -> Result<Term, ParseError> {
        let start = self.pos;
        let negative = match self.peek() {
            Some('-') => true,
            Some('+') => false,
            _ => {
                return self.unsigned_number(false, start);
            }
        };
        self.pos += 1;
        self.skip_ws();
        if !matches!(self.peek(), Some('0'..='9')) {
            return Err(self.expected("a number"));
        }
        self.unsigned_number(negative, start)
    }

    fn unsigned_number(&mut self, negative: bool, start: usize) -> Result<Term, ParseError> {
        let num_start = self.pos;
        let Some(digits) = self.digits(10) else {
            return Err(self.expected("a number"));
        };
        if self.peek() == Some('#') {
            let radix = digits
                .parse::<u32>()
                .ok()
                .filter(|r| (2..=36).contains(r))
                .ok_or_else(|| self.error_at(num_start, "radix must be 2 to 36".into()))?;
            self.pos += 1;
            let Some(digits) = self.digits(radix) else {
                return Err(self.expected(&format!("digits in base {radix}")));
            };
            return Ok(integer(&digits, radix, negative));
        }
        if self.peek() == Some('.') && matches!(self.peek2(), Some('0'..='9')) {
            self.pos += 1;
            let frac = self.digits(10).unwrap_or(Cow::Borrowed("0"));
            let mut text = String::with_capacity(digits.len() + frac.len() + 8);
            if negative {
                text.push('-');
            }
            text.push_str(&digits);
            text.push('.');
            text.push_str(&frac);
            if matches!(self.peek(), Some('e' | 'E')) {
                let save = self.pos;
                self.pos += 1;
                let sign = match self.peek() {
                    Some(c @ ('-' | '+')) => {
                        self.pos += 1;
                        Some(c)
                    }
                    _ => None,
                };
                match self.digits(10) {
                    Some(exp) => {
                        text.push('e');
                        if let Some(c) = sign {
                            text.push(c);
                        }
                        text.push_str(&exp);
                    }
                    None => self.pos = save,
                }
            }
            return match text.parse::<f64>() {
                Ok(x) if x.is_finite() => Ok(Term::Float(x)),
                _ => Err(self.error_at(start, "float out of range".into())),
            };
        }
        Ok(integer(&digits, 10, negative))
    }

    /// The code point of an escape sequence, after its `\`.
    fn escape(&mut self) -> Result<u32, ParseError> {
        let start = self.pos.saturating_sub(1);
        let Some(c) = self.bump() else {
            return Err(self.error("unexpected end of input after '\\'".into()));
        };
        Ok(match c {
            '0'..='7' => {
                let mut v = c as u32 - '0' as u32;
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ '0'..='7') => {
                            v = v * 8 + (d as u32 - '0' as u32);
                            self.pos += 1;
                        }
                        _ => break,
                    }
                }
                v
            }
            'x' => {
                if self.eat("{") {
                    let Some(digits) = self.digits(16) else {
                        return Err(self.expected("hexadecimal digits"));
                    };
                    if !self.eat("}") {
                        return Err(self.expected("'}'"));
                    }
                    u32::from_str_radix(&digits, 16)
                        .ok()
                        .filter(|&v| v <= 0x10ffff)
                        .ok_or_else(|| self.error_at(start, "character out of range".into()))?
                } else {
                    let mut v = 0;
                    for _ in 0..2 {
                        match self.peek().and_then(|d| d.to_digit(16)) {
                            Some(d) => {
                                v = v * 16 + d;
                                self.pos += 1;
                            }
                            None => return Err(self.expected("a hexadecimal digit")),
                        }
                    }
                    v
                }
            }
            '^' => match self.bump() {
                Some(c) => u32::from(c) & 31,
                None => return Err(self.expected("a control character")),
            },
            'n' => 10,
            'r' => 13,
            't' => 9,
            'v' => 11,
            'b' => 8,
            'f' => 12,
            'e' => 27,
            's' => 32,
            'd' => 127,
            c => u32::from(c),
        })
    }

    /// A string's code points; adjacent strings join.
    fn string(&mut self) -> Result<Vec<u32>, ParseError> {
        let mut chars = Vec::new();
        loop {
            let start = self.pos;
            self.pos += 1; // the opening quote
            loop {
                match self.bump() {
                    None => return Err(self.error_at(start, "unterminated string".into())),
                    Some('"') => break,
                    Some('\\') => chars.push(self.escape()?),
                    Some(c) => chars.push(u32::from(c)),
                }
            }
            let after = self.pos;
            self.skip_ws();
            if self.peek() != Some('"') {
                self.pos = after;
                return Ok(chars);
            }
        }
    }

    /// `$c` or `$\n`.
    fn char_literal(&mut self) -> Result<u32, ParseError> {
        self.pos += 1; // $
        match self.bump() {
            None => Err(self.expected("a character")),
            Some('\\') => self.escape(),
            Some(c) => Ok(u32::from(c)),
        }
    }

    /// `<<Segment,...>>`.
    fn binary(&mut self) -> Result<Term, ParseError> {
        self.pos += 2;
        let mut w = BitWriter::default();
        self.skip_ws();
        if self.eat(">>") {
            return Ok(Term::Binary(super::Binary::new()));
        }
        loop {
            self.skip_ws();
            let seg_start = self.pos;
            let value = match self.peek() {
                Some('"') => SegValue::Chars(self.string()?),
                Some('$') => SegValue::Int(Term::Int(i64::from(self.char_literal()?))),
                Some('-' | '+' | '0'..='9') => match self.number()? {
                    Term::Float(_) => {
                        return Err(
                            self.error_at(seg_start, "float segments are not supported".into())
                        )
                    }
                    t => SegValue::Int(t),
                },
                _ => return Err(self.expected("a binary segment")),
            };
            self.skip_ws();
            let size = if self.eat(":") {
                self.skip_ws();
                Some(self.uint::<u64>("a segment size")?)
            } else {
                None
            };
            self.skip_ws();
            let utf8 = if self.eat("/") {
                self.skip_ws();
                let at = self.pos;
                match self.atom()?.as_str() {
                    "utf8" => true,
                    "integer" => false,
                    other => {
                        return Err(self.error_at(at, format!("unsupported segment type {other}")))
                    }
                }
            } else {
                false
            };
            if utf8 && size.is_some() {
                return Err(self.error_at(seg_start, "a utf8 segment takes no size".into()));
            }
            let too_long = |p: &Self| p.error_at(seg_start, "binary too long".into());
            let push = |w: &mut BitWriter, v: &Term, p: &Self| -> Result<(), ParseError> {
                if utf8 {
                    let c = match v {
                        Term::Int(i) => u32::try_from(*i).ok().and_then(char::from_u32),
                        _ => None,
                    }
                    .ok_or_else(|| p.error_at(seg_start, "invalid character for utf8".into()))?;
                    let mut buf = [0u8; 4];
                    for &b in c.encode_utf8(&mut buf).as_bytes() {
                        w.push_bits(u64::from(b), 8);
                    }
                    Ok(())
                } else {
                    let n = size.unwrap_or(8);
                    // Saturating: a size near `u64::MAX` must not wrap
                    // past the limit.
                    if w.bits.saturating_add(n) > MAX_BINARY_BITS {
                        return Err(too_long(p));
                    }
                    w.push_int(v, n);
                    Ok(())
                }
            };
            match value {
                SegValue::Int(v) => push(&mut w, &v, self)?,
                SegValue::Chars(chars) => {
                    for c in chars {
                        if !utf8 && c > 255 {
                            return Err(self.error_at(
                                seg_start,
                                "a character above 255 in a binary string needs /utf8".into(),
                            ));
                        }
                        push(&mut w, &Term::Int(i64::from(c)), self)?;
                    }
                }
            }
            if w.bits > MAX_BINARY_BITS {
                return Err(too_long(self));
            }
            self.skip_ws();
            if self.eat(",") {
                continue;
            }
            if self.eat(">>") {
                break;
            }
            return Err(self.expected("',' or '>>'"));
        }
        let rem = (w.bits % 8) as u8;
        let bytes = Bytes::from(w.bytes);
        Ok(match rem {
            0 => Term::Binary(bytes.into()),
            bits => Term::BitBinary(Box::new(super::BitBinary { bytes, bits })),
        })
    }
}

/// Builds bitstrings from segments, most significant bit first.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    bits: u64,
}

impl BitWriter {
    /// Appends the low `n` bits (at most 64) of `v`, a byte at a time.
    fn push_bits(&mut self, v: u64, n: u32) {
        let mut left = n.min(64);
        while left > 0 {
            let used = (self.bits % 8) as u32;
            if used == 0 {
                self.bytes.push(0);
            }
            let room = 8 - used;
            let take = room.min(left);
            // The next `take` of the `left` bits still to write.
            let chunk = ((v >> (left - take)) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.bytes.last_mut() {
                *last |= chunk << (room - take);
            }
            self.bits += u64::from(take);
            left -= take;
        }
    }

    /// Appends `n` bits, all ones or all zeros.
    fn push_fill(&mut self, ones: bool, n: u64) {
        let mut n = n;
        let lead = ((8 - self.bits % 8) % 8).min(n);
        self.push_bits(if ones { u64::MAX } else { 0 }, lead as u32);
        n -= lead;
        let whole = n / 8;
        let len = self.bytes.len().saturating_add(whole as usize);
        self.bytes.resize(len, if ones { 0xff } else { 0 });
        self.bits += whole * 8;
        self.push_bits(if ones { u64::MAX } else { 0 }, (n % 8) as u32);
    }

    /// Appends the integer `v` in `n` bits, as Erlang does: its two's
    /// complement, cut to the low `n` bits or extended by its sign.
    fn push_int(&mut self, v: &Term, n: u64) {
        match v {
            Term::Int(i) if n <= 64 => self.push_bits(*i as u64, n as u32),
            Term::Int(i) => {
                self.push_fill(*i < 0, n - 64);
                self.push_bits(*i as u64, 64);
            }
            Term::BigInt(b) => {
                let bytes = b.to_signed_bytes_be();
                let negative = b.sign() == num_bigint::Sign::Minus;
                let have = 8 * bytes.len() as u64;
                let kept = if n >= have {
                    self.push_fill(negative, n - have);
                    &bytes[..]
                } else {
                    // The low n bits: the last ceil(n / 8) bytes, the
                    // first of them cut to what is left over.
                    let k = n.div_ceil(8) as usize;
                    let tail = bytes
                        .get(bytes.len().saturating_sub(k)..)
                        .unwrap_or_default();
                    match tail.split_first() {
                        Some((&first, rest)) => {
                            self.push_bits(u64::from(first), (n - 8 * (k as u64 - 1)) as u32);
                            rest
                        }
                        None => &[],
                    }
                };
                for &byte in kept {
                    self.push_bits(u64::from(byte), 8);
                }
            }
            _ => self.push_fill(false, n),
        }
    }
}

/// An integer term from validated digits.
fn integer(digits: &str, radix: u32, negative: bool) -> Term {
    let mut acc: u128 = 0;
    let mut overflow = false;
    for c in digits.chars() {
        let d = c.to_digit(radix).unwrap_or(0);
        match acc
            .checked_mul(u128::from(radix))
            .and_then(|a| a.checked_add(u128::from(d)))
        {
            Some(a) => acc = a,
            None => {
                overflow = true;
                break;
            }
        }
    }
    let big = if overflow {
        BigInt::parse_bytes(digits.as_bytes(), radix).unwrap_or_default()
    } else {
        if negative {
            if let Ok(v) = i64::try_from(acc).map(|v| -v) {
                return Term::Int(v);
            }
            if acc == 1 << 63 {
                return Term::Int(i64::MIN);
            }
        } else if let Ok(v) = i64::try_from(acc) {
            return Term::Int(v);
        }
        BigInt::from(acc)
    };
    let big = if negative { -big } else { big };
    match big.to_i64() {
        Some(i) => Term::Int(i),
        None => Term::BigInt(Box::new(big)),
    }
}

/// A string's term: a byte list when all characters are Latin-1.
fn chars_term(chars: Vec<u32>) -> Term {
    if chars.is_empty() {
        Term::NIL
    } else if chars.iter().all(|&c| c < 256) {
        Term::ByteList(chars.into_iter().map(|c| c as u8).collect())
    } else {
        Term::List(chars.into_iter().map(|c| Term::Int(i64::from(c))).collect())
    }
}

/// A map from parsed entries: later duplicate keys replace earlier ones.
fn build_map(entries: Vec<(Term, Term)>) -> Map {
    if entries.len() > 1 {
        let mut order: Vec<usize> = (0..entries.len()).collect();
        order.sort_by(|&a, &b| entries[a].0.exact_cmp(&entries[b].0));
        let duplicates = order
            .windows(2)
            .any(|w| entries[w[0]].0.exact_eq(&entries[w[1]].0));
        if duplicates {
            return entries.into_iter().collect();
        }
    }
    Map { entries }
}

/// A placeholder fun, swapped in when a parsed fun is taken out of its frame.
fn empty_fun() -> LocalFun {
    let node = Atom::new("");
    LocalFun {
        arity: 0,
        uniq: [0; 16],
        index: 0,
        module: node,
        old_index: 0,
        old_uniq: 0,
        pid: Pid {
            node,
            id: 0,
            serial: 0,
            creation: 0,
        },
        free_vars: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Term {
        match s.parse::<Term>() {
            Ok(t) => t,
            Err(e) => panic!("parsing {s:?}: {e}"),
        }
    }

    /// (Erlang source, `io_lib:format("~w", [T])`, `io_lib:format("~tp",
    /// [T])` on one line with `+pc unicode`), as printed by OTP 25.
    const GOLDEN: &[(&str, &str, &str)] = &[
        (r#"abc"#, r#"abc"#, r#"abc"#),
        (r#"'ß'"#, r#"ß"#, r#"ß"#),
        (r#"'àå'"#, r#"àå"#, r#"àå"#),
        (r#"'Abc'"#, r#"'Abc'"#, r#"'Abc'"#),
        (r#"'a b'"#, r#"'a b'"#, r#"'a b'"#),
        (r#"'a\'b'"#, r#"'a\'b'"#, r#"'a\'b'"#),
        (r#"'a\\b'"#, r#"'a\\b'"#, r#"'a\\b'"#),
        (r#"'a\nb'"#, r#"'a\nb'"#, r#"'a\nb'"#),
        (r#"'a\x01b'"#, r#"'a\001b'"#, r#"'a\001b'"#),
        (r#"'a\x{80}b'"#, r#"'a\200b'"#, r#"'a\200b'"#),
        (r#"'a\x{9f}b'"#, r#"'a\237b'"#, r#"'a\237b'"#),
        (r#"'a\x{a0}b'"#, r#"'a b'"#, r#"'a b'"#),
        (r#"'ä½ 好'"#, r#"'ä½ \x{597D}'"#, r#"'ä½ 好'"#),
        (r#"'你好'"#, r#"'\x{4F60}\x{597D}'"#, r#"'你好'"#),
        (r#"'a你'"#, r#"'a\x{4F60}'"#, r#"'a你'"#),
        (r#"'and'"#, r#"'and'"#, r#"'and'"#),
        (r#"'maybe'"#, r#"maybe"#, r#"maybe"#),
        (r#"'else'"#, r#"else"#, r#"else"#),
        (r#"'cond'"#, r#"'cond'"#, r#"'cond'"#),
        (r#"'query'"#, r#"query"#, r#"query"#),
        (r#"'spec'"#, r#"spec"#, r#"spec"#),
        (r#"''"#, r#"''"#, r#"''"#),
        (r#"'a@b_C9'"#, r#"a@b_C9"#, r#"a@b_C9"#),
        (r#"'÷'"#, r#"'÷'"#, r#"'÷'"#),
        (r#"'a÷'"#, r#"'a÷'"#, r#"'a÷'"#),
        (r#"'×a'"#, r#"'×a'"#, r#"'×a'"#),
        (r#"'a×'"#, r#"'a×'"#, r#"'a×'"#),
        (r#"'ÿ'"#, r#"ÿ"#, r#"ÿ"#),
        (r#"'é'"#, r#"é"#, r#"é"#),
        (r#"'aÀ'"#, r#"aÀ"#, r#"aÀ"#),
        (
            r#"'\e\d\v\b\f\t\r'"#,
            r#"'\e\d\v\b\f\t\r'"#,
            r#"'\e\d\v\b\f\t\r'"#,
        ),
        (r#"'"'"#, r#"'"'"#, r#"'"'"#),
        (r#"'$'"#, r#"'$'"#, r#"'$'"#),
        (r#"'a.b'"#, r#"'a.b'"#, r#"'a.b'"#),
        (r#""abc""#, r#"[97,98,99]"#, r#""abc""#),
        (r#""é""#, r#"[233]"#, r#""é""#),
        (r#"[20320,22909]"#, r#"[20320,22909]"#, r#""你好""#),
        (r#"<<"abc">>"#, r#"<<97,98,99>>"#, r#"<<"abc">>"#),
        (r#"<<"é">>"#, r#"<<233>>"#, r#"<<"é">>"#),
        (r#"<<"é"/utf8>>"#, r#"<<195,169>>"#, r#"<<"é"/utf8>>"#),
        (
            r#"<<"你好"/utf8>>"#,
            r#"<<228,189,160,229,165,189>>"#,
            r#"<<"你好"/utf8>>"#,
        ),
        (
            r#"<<"a\nb\tc\e">>"#,
            r#"<<97,10,98,9,99,27>>"#,
            r#"<<"a\nb\tc\e">>"#,
        ),
        (r#"<<"a", 0, "b">>"#, r#"<<97,0,98>>"#, r#"<<97,0,98>>"#),
        (r#"<<"a", 1>>"#, r#"<<97,1>>"#, r#"<<97,1>>"#),
        (r#"<<1,2,3>>"#, r#"<<1,2,3>>"#, r#"<<1,2,3>>"#),
        (r#"<<>>"#, r#"<<>>"#, r#"<<>>"#),
        (r#"[]"#, r#"[]"#, r#"[]"#),
        (r#""""#, r#"[]"#, r#"[]"#),
        (
            r#""a\nb\"c\\d'e""#,
            r#"[97,10,98,34,99,92,100,39,101]"#,
            r#""a\nb\"c\\d'e""#,
        ),
        (r#""a\x01b""#, r#"[97,1,98]"#, r#"[97,1,98]"#),
        (r#""a\x7fb""#, r#"[97,127,98]"#, r#"[97,127,98]"#),
        (r#""a\x{80}""#, r#"[97,128]"#, r#"[97,128]"#),
        (r#""a\x{a0}""#, r#"[97,160]"#, r#""a ""#),
        (r#"<<"a\x{80}">>"#, r#"<<97,128>>"#, r#"<<97,128>>"#),
        (r#"<<"a\x{a0}">>"#, r#"<<97,160>>"#, r#"<<"a ">>"#),
        (r#"<<"a\x7f">>"#, r#"<<97,127>>"#, r#"<<97,127>>"#),
        (r#"<<"a\"b">>"#, r#"<<97,34,98>>"#, r#"<<"a\"b">>"#),
        (r#"<<1:3>>"#, r#"<<1:3>>"#, r#"<<1:3>>"#),
        (r#"<<"ab",1:3>>"#, r#"<<97,98,1:3>>"#, r#"<<97,98,1:3>>"#),
        (r#"<<"ab",1:1>>"#, r#"<<97,98,1:1>>"#, r#"<<97,98,1:1>>"#),
        (r#"<<255:7>>"#, r#"<<127:7>>"#, r#"<<127:7>>"#),
        (r#"{a,b}"#, r#"{a,b}"#, r#"{a,b}"#),
        (r#"{}"#, r#"{}"#, r#"{}"#),
        (r#"#{}"#, r#"#{}"#, r#"#{}"#),
        (
            r#"#{a=>1,b=>"x"}"#,
            r#"#{a => 1,b => [120]}"#,
            r#"#{a => 1,b => "x"}"#,
        ),
        (
            r#"#{<<"k">> => [1,2]}"#,
            r#"#{<<107>> => [1,2]}"#,
            r#"#{<<"k">> => [1,2]}"#,
        ),
        (r#"[1,2|3]"#, r#"[1,2|3]"#, r#"[1,2|3]"#),
        (r#"[a|b]"#, r#"[a|b]"#, r#"[a|b]"#),
        (
            r#"["abc",<<"de">>|"x"]"#,
            r#"[[97,98,99],<<100,101>>,120]"#,
            r#"["abc",<<"de">>,120]"#,
        ),
        (r#"[$a,$b|c]"#, r#"[97,98|c]"#, r#"[97,98|c]"#),
        (r#"["abc"]"#, r#"[[97,98,99]]"#, r#"["abc"]"#),
        (
            r#"{"abc",'A b',1.5}"#,
            r#"{[97,98,99],'A b',1.5}"#,
            r#"{"abc",'A b',1.5}"#,
        ),
        (
            r#"[1.0,-0.0,0.1]"#,
            r#"[1.0,-0.0,0.1]"#,
            r#"[1.0,-0.0,0.1]"#,
        ),
        (r#""\x{10FFFF}""#, r#"[1114111]"#, r#""􏿿""#),
        (r#"[$a,256]"#, r#"[97,256]"#, r#""aĀ""#),
        (r#"[$a|$b]"#, r#"[97|98]"#, r#"[97|98]"#),
        (
            r#"[<<"ab">>|<<"cd">>]"#,
            r#"[<<97,98>>|<<99,100>>]"#,
            r#"[<<"ab">>|<<"cd">>]"#,
        ),
        (r#""abc\x{ff}""#, r#"[97,98,99,255]"#, r#""abcÿ""#),
        (
            r#"[8,9,10,11,12,13,27]"#,
            r#"[8,9,10,11,12,13,27]"#,
            r#""\b\t\n\v\f\r\e""#,
        ),
        (r#"[7]"#, r#"[7]"#, r#"[7]"#),
        (r#"[127]"#, r#"[127]"#, r#"[127]"#),
        (r#""\s""#, r#"[32]"#, r#"" ""#),
        (
            r#"#{{a,b} => #{}, "ab" => <<"x">>}"#,
            r#"#{{a,b} => #{},[97,98] => <<120>>}"#,
            r#"#{{a,b} => #{},"ab" => <<"x">>}"#,
        ),
        (r#"[#{}]"#, r#"[#{}]"#, r#"[#{}]"#),
        (r#"0"#, r#"0"#, r#"0"#),
        (r#"-1"#, r#"-1"#, r#"-1"#),
        (
            r#"9223372036854775807"#,
            r#"9223372036854775807"#,
            r#"9223372036854775807"#,
        ),
        (
            r#"-9223372036854775808"#,
            r#"-9223372036854775808"#,
            r#"-9223372036854775808"#,
        ),
        (
            r#"9223372036854775808"#,
            r#"9223372036854775808"#,
            r#"9223372036854775808"#,
        ),
        (
            r#"-9223372036854775809"#,
            r#"-9223372036854775809"#,
            r#"-9223372036854775809"#,
        ),
        (
            r#"123456789012345678901234567890"#,
            r#"123456789012345678901234567890"#,
            r#"123456789012345678901234567890"#,
        ),
        (r#"16#ff"#, r#"255"#, r#"255"#),
        (r#"-16#FF"#, r#"-255"#, r#"-255"#),
        (r#"2#1010"#, r#"10"#, r#"10"#),
        (r#"36#zz"#, r#"1295"#, r#"1295"#),
        (r#"1_000_000"#, r#"1000000"#, r#"1000000"#),
        (r#"$a"#, r#"97"#, r#"97"#),
        (r#"$\n"#, r#"10"#, r#"10"#),
        (r#"$\s"#, r#"32"#, r#"32"#),
        (r#"$\x{4F60}"#, r#"20320"#, r#"20320"#),
        (r#"$\^A"#, r#"1"#, r#"1"#),
        (r#"$\101"#, r#"65"#, r#"65"#),
        (r#"100.0"#, r#"100.0"#, r#"100.0"#),
        (r#"1000.0"#, r#"1.0e3"#, r#"1.0e3"#),
        (r#"0.0001"#, r#"0.0001"#, r#"0.0001"#),
        (r#"0.00015"#, r#"1.5e-4"#, r#"1.5e-4"#),
        (
            r#"9007199254740991.0"#,
            r#"9007199254740991.0"#,
            r#"9007199254740991.0"#,
        ),
        (
            r#"9007199254740992.0"#,
            r#"9.007199254740992e15"#,
            r#"9.007199254740992e15"#,
        ),
        (
            r#"1.2345678901234568e17"#,
            r#"1.2345678901234568e17"#,
            r#"1.2345678901234568e17"#,
        ),
        (r#"1.0e-5"#, r#"1.0e-5"#, r#"1.0e-5"#),
        (r#"1.5e300"#, r#"1.5e300"#, r#"1.5e300"#),
        (r#"-0.0"#, r#"-0.0"#, r#"-0.0"#),
        (r#"12345.678"#, r#"12345.678"#, r#"12345.678"#),
        (r#"5.0e-324"#, r#"5.0e-324"#, r#"5.0e-324"#),
        (
            r#"1.7976931348623157e308"#,
            r#"1.7976931348623157e308"#,
            r#"1.7976931348623157e308"#,
        ),
        (
            r#"2.2250738585072014e-308"#,
            r#"2.2250738585072014e-308"#,
            r#"2.2250738585072014e-308"#,
        ),
        (r#"0.3"#, r#"0.3"#, r#"0.3"#),
        (r#"123456789.0"#, r#"123456789.0"#, r#"123456789.0"#),
        (r#"1.0e15"#, r#"1.0e15"#, r#"1.0e15"#),
        (
            r#"[{a,[{b,[{c,[]}]}]}]"#,
            r#"[{a,[{b,[{c,[]}]}]}]"#,
            r#"[{a,[{b,[{c,[]}]}]}]"#,
        ),
        (r#"{{{}}}"#, r#"{{{}}}"#, r#"{{{}}}"#),
        (r#"[[]]"#, r#"[[]]"#, r#"[[]]"#),
        (r#"[[[1]|2]|3]"#, r#"[[[1]|2]|3]"#, r#"[[[1]|2]|3]"#),
        (
            r#"{a,"b",<<"c">>,[$d],#{e => {f}}}"#,
            r#"{a,[98],<<99>>,[100],#{e => {f}}}"#,
            r#"{a,"b",<<"c">>,"d",#{e => {f}}}"#,
        ),
        (
            r#"#{1 => a, 1.0 => b}"#,
            r#"#{1 => a,1.0 => b}"#,
            r#"#{1 => a,1.0 => b}"#,
        ),
        (
            r#"#{a => #{b => #{c => [1,2,3]}}}"#,
            r#"#{a => #{b => #{c => [1,2,3]}}}"#,
            r#"#{a => #{b => #{c => [1,2,3]}}}"#,
        ),
        (r#"<<"é"/utf8, 1>>"#, r#"<<195,169,1>>"#, r#"<<195,169,1>>"#),
        (r#"<<195,169,200>>"#, r#"<<195,169,200>>"#, r#"<<"Ã©È">>"#),
        (
            r#"<<"abc", 128>>"#,
            r#"<<97,98,99,128>>"#,
            r#"<<97,98,99,128>>"#,
        ),
        (r#"<<255,255,255>>"#, r#"<<255,255,255>>"#, r#"<<"ÿÿÿ">>"#),
        (
            r#"<<"\x{FFFD}"/utf8>>"#,
            r#"<<239,191,189>>"#,
            r#"<<"�"/utf8>>"#,
        ),
        (
            r#"<<16#EF,16#BF,16#BE>>"#,
            r#"<<239,191,190>>"#,
            r#"<<239,191,190>>"#,
        ),
        (
            r#"<<"\x{D7FF}"/utf8>>"#,
            r#"<<237,159,191>>"#,
            r#"<<"퟿"/utf8>>"#,
        ),
        (
            r#"<<"\x{10000}"/utf8>>"#,
            r#"<<240,144,128,128>>"#,
            r#"<<"𐀀"/utf8>>"#,
        ),
        (
            r#"<<"a\x{80}"/utf8>>"#,
            r#"<<97,194,128>>"#,
            r#"<<97,194,128>>"#,
        ),
        (
            r#"<<"a\x{9f}"/utf8>>"#,
            r#"<<97,194,159>>"#,
            r#"<<97,194,159>>"#,
        ),
        (
            r#"<<"ab\x{a0}"/utf8>>"#,
            r#"<<97,98,194,160>>"#,
            r#"<<"ab "/utf8>>"#,
        ),
        (r#"<<1,2,3:5>>"#, r#"<<1,2,3:5>>"#, r#"<<1,2,3:5>>"#),
        (r#"<<0:1>>"#, r#"<<0:1>>"#, r#"<<0:1>>"#),
        (r#"<<0:7>>"#, r#"<<0:7>>"#, r#"<<0:7>>"#),
        (r#"<<300:12>>"#, r#"<<18,12:4>>"#, r#"<<18,12:4>>"#),
        (r#"<<-1:4>>"#, r#"<<15:4>>"#, r#"<<15:4>>"#),
        (r#"<<-1>>"#, r#"<<255>>"#, r#"<<"ÿ">>"#),
        (
            r#"<<1:64>>"#,
            r#"<<0,0,0,0,0,0,0,1>>"#,
            r#"<<0,0,0,0,0,0,0,1>>"#,
        ),
        (
            r#"<<16#123456789abcdef0123:72>>"#,
            r#"<<35,69,103,137,171,205,239,1,35>>"#,
            r#"<<35,69,103,137,171,205,239,1,35>>"#,
        ),
        (r#"[65534]"#, r#"[65534]"#, r#"[65534]"#),
        (r#"[65533]"#, r#"[65533]"#, r#""�""#),
        (r#"[55296]"#, r#"[55296]"#, r#"[55296]"#),
        (r#"[57344]"#, r#"[57344]"#, r#""""#),
        (r#"[1114112]"#, r#"[1114112]"#, r#"[1114112]"#),
        (r#"[-1]"#, r#"[-1]"#, r#"[-1]"#),
        (r#"[$a, -1]"#, r#"[97,-1]"#, r#"[97,-1]"#),
        (r#"[$a, 1.0]"#, r#"[97,1.0]"#, r#"[97,1.0]"#),
        (r#""a\x{7f}""#, r#"[97,127]"#, r#"[97,127]"#),
        (r#"'hello world'"#, r#"'hello world'"#, r#"'hello world'"#),
        (r#"'\x{ff}'"#, r#"ÿ"#, r#"ÿ"#),
        (r#"'ÿÿ'"#, r#"ÿÿ"#, r#"ÿÿ"#),
        (r#"'a\x{100}'"#, r#"'a\x{100}'"#, r#"'aĀ'"#),
        (r#"'Ab'"#, r#"'Ab'"#, r#"'Ab'"#),
        (r#"'_'"#, r#"'_'"#, r#"'_'"#),
        (r#"'a\s'"#, r#"'a '"#, r#"'a '"#),
        (r#"'\x{7f}'"#, r#"'\d'"#, r#"'\d'"#),
        (r#"'\x{a0}'"#, r#"' '"#, r#"' '"#),
        (r#"'\x{9f}'"#, r#"'\237'"#, r#"'\237'"#),
        (
            r#"['a\x{9f}',"a\x{9f}",<<"a\x{9f}">>]"#,
            r#"['a\237',[97,159],<<97,159>>]"#,
            r#"['a\237',[97,159],<<97,159>>]"#,
        ),
        (
            r#"{'EXIT', normal}"#,
            r#"{'EXIT',normal}"#,
            r#"{'EXIT',normal}"#,
        ),
        (
            r#"[ok, error, true, false, undefined, nil]"#,
            r#"[ok,error,true,false,undefined,nil]"#,
            r#"[ok,error,true,false,undefined,nil]"#,
        ),
        (r#""\\""#, r#"[92]"#, r#""\\""#),
        (r#""'""#, r#"[39]"#, r#""'""#),
        (r#"'\\'"#, r#"'\\'"#, r#"'\\'"#),
        (r#""\x{1F600}""#, r#"[128512]"#, r#""😀""#),
        (
            r#"<<"\x{1F600}"/utf8>>"#,
            r#"<<240,159,152,128>>"#,
            r#"<<"😀"/utf8>>"#,
        ),
        (r#"'\x{1F600}'"#, r#"'\x{1F600}'"#, r#"'😀'"#),
        (
            r#"<<-1:65>>"#,
            r#"<<255,255,255,255,255,255,255,255,1:1>>"#,
            r#"<<255,255,255,255,255,255,255,255,1:1>>"#,
        ),
        (
            r#"<<$a,"bc":16>>"#,
            r#"<<97,0,98,0,99>>"#,
            r#"<<97,0,98,0,99>>"#,
        ),
        (r#"<<1024/utf8>>"#, r#"<<208,128>>"#, r#"<<"Ѐ"/utf8>>"#),
        (r#"16#FF_FF"#, r#"65535"#, r#"65535"#),
        (r#"'a\'b\x41\101\s'"#, r#"'a\'bAA '"#, r#"'a\'bAA '"#),
        (r#"$\^a"#, r#"1"#, r#"1"#),
        (r#"<<1:3,1:5>>"#, r#"<<33>>"#, r#"<<"!">>"#),
        (r#""ab" "c""#, r#"[97,98,99]"#, r#""abc""#),
        (r#"[a|"b"]"#, r#"[a,98]"#, r#"[a,98]"#),
        (r#"- 5"#, r#"-5"#, r#"-5"#),
    ];

    #[test]
    fn golden_values_from_otp_25() {
        for &(src, w, p) in GOLDEN {
            let t = parse(src);
            assert_eq!(t.to_string(), w, "~w of {src}");
            assert_eq!(format!("{t:#}"), p, "~tp of {src}");
            assert!(parse(w).exact_eq(&t), "{w} reads back as {src}");
            assert!(parse(p).exact_eq(&t), "{p} reads back as {src}");
        }
    }

    /// Floats (their bits) and `io_lib:format("~w", [F])` from OTP 25;
    /// the first six are ties between two shortest digit strings.
    const FLOATS: &[(u64, &str)] = &[
        (0x430b7ff0b6ef01e2, "967562026147900.2"),
        (0xc30b7ff0b6ef01e2, "-967562026147900.2"),
        (0x430122d9f3f66b02, "602924262542688.2"),
        (0xc30122d9f3f66b02, "-602924262542688.2"),
        (0x4307c00279cbed52, "835630166277546.2"),
        (0xc307c00279cbed52, "-835630166277546.2"),
        (0xc1eb112dcdfed1db, "-3632885359.963117"),
        (0x8a9f683bb87ef4c2, "-1.6341518306310488e-257"),
        (0x540ed3ad17e3ca65, "8.230721649937189e96"),
        (0x4708aa922c8be74c, "1.600933941695714e34"),
        (0x43956fa5f3a25f6a, "3.861589157577919e17"),
        (0xc31bb60f053f8000, "-1.95e15"),
        (0x424176592e000000, "1.5e11"),
        (0x82873a0a340b175a, "-1.7757512551525718e-296"),
        (0x22e7a34217165ee5, "1.5507355745671494e-140"),
        (0x86fa24eac33f534a, "-4.7195375788577914e-275"),
        (0xc17923c7c0459c8f, "-26360956.01699501"),
        (0xeeca342edaa3707e, "-4.84966463907303e225"),
        (0xc19167570834f8d6, "-72996290.05173048"),
        (0x3f102895028e86bb, "6.163987622056614e-5"),
        (0x3fb3333333333333, "0.075"),
        (0xbc319cf1e5010e7c, "-9.54806222035465e-19"),
        (0x862ee394c428cb19, "-6.806717377274873e-279"),
        (0x4d438a2868f3c4d1, "1.6076315509747757e64"),
        (0x3281832e195e3dc9, "2.0786298884121503e-65"),
        (0x3ea593c60c31ed8f, "6.430518840883634e-7"),
        (0x3e87abe075a4d267, "1.763656268333571e-7"),
        (0x3fa8f9f348484af2, "0.04878196961739957"),
        (0x9191b3d002cb3438, "-4.782502507807167e-224"),
        (0x4190366400000000, "6.8e7"),
        (0x3e75798ee2308c3a, "8.0e-8"),
        (0x46c1112041148a9e, "6.923156484446356e32"),
        (0x8d1bddb001b563fc, "-1.5941811284683568e-245"),
        (0x43ae6bdebb11b33f, "1.0960452693415443e18"),
        (0xc40bbf9aa9ce595d, "-6.39835780376929e19"),
        (0xc03099999999999a, "-16.6"),
        (0xba9b51000ff14b66, "-2.2066018008448328e-26"),
        (0xc3dd7d843dc3b480, "-8.5e18"),
        (0xbc8b9904efbe6091, "-4.7874432846845006e-17"),
        (0x8c086beae3ba35bf, "-1.0659256089972085e-250"),
        (0x754dd536ba03939f, "1.1198537294405776e257"),
        (0xb88840cf8de66aff, "-2.2807568664055252e-36"),
        (0xbd252bd555ad0701, "-3.760764851312926e-14"),
        (0x418015bbbabaf98b, "33732471.34129628"),
        (0x7629bb599a22e6a0, "1.5825485133973259e261"),
        (0xbbd44e618acfb3c3, "-1.7200000000000002e-20"),
        (0x9b9a9427262f1e1f, "-1.0494376513607043e-175"),
        (0x451581b6d300d023, "6.500000000000001e24"),
        (0x4136e36000000000, "1.5e6"),
        (0xaf7778cdad0a6fa4, "-4.948905865071609e-80"),
        (0xa2fbcfbe9625164f, "-3.649105935996412e-140"),
        (0x156f051a90e81b01, "1.9323859726164466e-205"),
        (0x3e4466ae23ae1ed1, "9.5e-9"),
        (0xc1d9ad8eda4e16b0, "-1723218793.2201347"),
        (0x41a34fd900000000, "1.62e8"),
        (0x51d21c08ef633de9, "1.4072313732618702e86"),
    ];

    #[test]
    fn floats_from_otp_25() {
        for &(bits, text) in FLOATS {
            let x = f64::from_bits(bits);
            assert_eq!(Term::Float(x).to_string(), text, "{x:e}");
            assert!(parse(text).exact_eq(&Term::Float(x)), "{text}");
        }
    }

    fn node() -> Atom {
        Atom::new("node@host.example")
    }

    fn pid(id: u32) -> Pid {
        Pid {
            node: node(),
            id,
            serial: 7,
            creation: 0xdead_beef,
        }
    }

    fn sample_terms() -> Vec<Term> {
        let local = LocalFun {
            arity: 2,
            uniq: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0xff],
            index: 6,
            module: Atom::new("erl_eval"),
            old_index: 3,
            old_uniq: 123_456_789,
            pid: pid(85),
            free_vars: vec![Term::atom("x"), Term::ByteList(Bytes::from_static(b"str"))],
        };
        let no_vars = LocalFun {
            free_vars: Vec::new(),
            module: Atom::new("Elixir.Foo"),
            ..local.clone()
        };
        vec![
            Term::Int(0),
            Term::Int(i64::MIN),
            Term::Int(i64::MAX),
            Term::BigInt(Box::new(BigInt::from(i64::MAX) + 1)),
            Term::BigInt(Box::new(-(BigInt::from(u128::MAX) * BigInt::from(3)))),
            Term::Float(0.1),
            Term::Float(-1.0e-300),
            Term::Float(1.0e300),
            Term::atom("ok"),
            Term::atom("Elixir.Enum"),
            Term::atom("with 'quotes' and \\ \u{0} \u{7f} \u{9f} é 你好 😀"),
            Term::atom(""),
            Term::binary(Bytes::from_static(b"")),
            Term::binary(Bytes::from_static(b"hello")),
            Term::binary("héllo wörld".as_bytes().to_vec()),
            Term::binary(vec![0, 1, 2, 255, 128]),
            Term::binary(vec![b'a', 0xe9]),
            Term::binary(b"\"quoted\" \\ \n\t\x1b".to_vec()),
            Term::bitstring(vec![0x20], 3).unwrap_or(Term::NIL),
            Term::bitstring(vec![1, 2, 0xf0], 4).unwrap_or(Term::NIL),
            Term::bitstring(vec![0xff], 1).unwrap_or(Term::NIL),
            Term::NIL,
            Term::ByteList(Bytes::from_static(b"abc")),
            Term::ByteList(Bytes::from_static(b"\x00\x01\xff")),
            Term::List(vec![Term::Int(20320), Term::Int(22909)]),
            Term::List(vec![Term::Int(-1), Term::Float(2.5), Term::atom("a")]),
            Term::list_with_tail(vec![Term::Int(1), Term::Int(2)], Term::atom("tail")),
            Term::list_with_tail(vec![Term::NIL], Term::binary(b"x".to_vec())),
            Term::tuple(vec![]),
            Term::tuple(vec![Term::atom("a"), Term::tuple(vec![Term::NIL])]),
            Term::map(vec![]),
            Term::map(vec![
                (Term::atom("b"), Term::Int(1)),
                (
                    Term::atom("a"),
                    Term::map(vec![(Term::Int(1), Term::Float(1.0))]),
                ),
                (Term::Int(1), Term::Int(2)),
                (Term::Float(1.0), Term::Int(3)),
                (Term::ByteList(Bytes::from_static(b"k")), Term::NIL),
            ]),
            Term::Pid(pid(0)),
            Term::Pid(Pid {
                node: Atom::new("nonode@nohost"),
                id: u32::MAX,
                serial: 0,
                creation: 0,
            }),
            Term::Port(Port {
                node: node(),
                id: u64::MAX,
                creation: 3,
            }),
            Term::Port(Port {
                node: Atom::new("Ünïcode@höst"),
                id: 5,
                creation: 0,
            }),
            Term::Ref(Box::new(Reference::new(node(), 9, &[1]).unwrap())),
            Term::Ref(Box::new(
                Reference::new(Atom::new("a"), 9, &[1, 2, 3, 4, u32::MAX]).unwrap(),
            )),
            Term::Fun(Box::new(Fun::Export {
                module: Atom::new("lists"),
                function: Atom::new("map"),
                arity: 2,
            })),
            Term::Fun(Box::new(Fun::Export {
                module: Atom::new("Elixir.Enum"),
                function: Atom::new("and"),
                arity: 255,
            })),
            Term::Fun(Box::new(Fun::Local(local.clone()))),
            Term::Fun(Box::new(Fun::Local(no_vars))),
            Term::tuple(vec![
                Term::Pid(pid(1)),
                Term::Fun(Box::new(Fun::Local(LocalFun {
                    free_vars: vec![Term::Fun(Box::new(Fun::Local(local)))],
                    ..LocalFun {
                        arity: 0,
                        uniq: [0; 16],
                        index: 0,
                        module: Atom::new("m"),
                        old_index: 0,
                        old_uniq: 0,
                        pid: pid(2),
                        free_vars: Vec::new(),
                    }
                }))),
            ]),
        ]
    }

    #[test]
    fn round_trips() {
        for t in sample_terms() {
            for text in [t.to_string(), format!("{t:#}")] {
                let back = parse(&text);
                assert!(back.exact_eq(&t), "{text} read back as {back:?}, not {t:?}");
                // Display shows every field of pids, refs and funs.
                assert_eq!(back.to_string(), t.to_string());
                assert_eq!(format!("{back:#}"), format!("{t:#}"));
            }
        }
        // All of them at once, nested.
        let all = Term::List(sample_terms());
        let back = parse(&all.to_string());
        assert!(back.exact_eq(&all));
        assert_eq!(back.to_string(), all.to_string());
        assert!(parse(&format!("{all:#}")).exact_eq(&all));
    }

    #[test]
    fn special_forms() {
        let t = Term::Pid(pid(85));
        assert_eq!(t.to_string(), "#Pid<'node@host.example'.85.7.3735928559>");
        let t = Term::Ref(Box::new(
            Reference::new(Atom::new("a@b"), 2, &[10, 20, 30]).unwrap(),
        ));
        assert_eq!(t.to_string(), "#Ref<a@b.10.20.30.2>");
        let t = Term::Port(Port {
            node: Atom::new("a@b"),
            id: 4,
            creation: 1,
        });
        assert_eq!(t.to_string(), "#Port<a@b.4.1>");
        let t = Term::Port(Port {
            node: Atom::new("你@b"),
            id: 4,
            creation: 1,
        });
        assert_eq!(t.to_string(), r"#Port<'\x{4F60}@b'.4.1>");
        assert_eq!(format!("{t:#}"), "#Port<'你@b'.4.1>");
        let local = sample_terms()
            .into_iter()
            .find(|t| matches!(t, Term::Fun(f) if matches!(**f, Fun::Local(_))))
            .unwrap();
        assert_eq!(
            local.to_string(),
            "#Fun<erl_eval,2,6,16#000102030405060708090A0B0C0D0EFF,3,123456789,\
             #Pid<'node@host.example'.85.7.3735928559>,[x,[115,116,114]]>"
        );
        assert_eq!(
            format!("{local:#}"),
            "#Fun<erl_eval,2,6,16#000102030405060708090A0B0C0D0EFF,3,123456789,\
             #Pid<'node@host.example'.85.7.3735928559>,[x,\"str\"]>"
        );
        let f = parse("fun 'Elixir.Enum':map/2");
        assert_eq!(f.to_string(), "fun 'Elixir.Enum':map/2");
        assert_eq!(
            parse("fun   lists : map / 2").to_string(),
            "fun lists:map/2"
        );
        // Spaces are allowed inside the special forms too.
        assert!(parse("#Pid< a@b . 1 . 2 . 3 >").exact_eq(&Term::Pid(Pid {
            node: Atom::new("a@b"),
            id: 1,
            serial: 2,
            creation: 3
        })));
        // `fun` alone is an atom.
        assert!(parse("[fun]").exact_eq(&Term::List(vec![Term::atom("fun")])));
    }

    #[test]
    fn literals() {
        let cases: &[(&str, Term)] = &[
            ("\"abc\"", Term::ByteList(Bytes::from_static(b"abc"))),
            ("\"ab\" \"c\"", Term::ByteList(Bytes::from_static(b"abc"))),
            ("\"\"", Term::NIL),
            ("\"é\"", Term::ByteList(Bytes::from_static(&[0xe9]))),
            ("\"a你\"", Term::List(vec![Term::Int(97), Term::Int(20320)])),
            ("<<\"ü\"/utf8>>", Term::binary(vec![0xc3, 0xbc])),
            ("<<\"ü\">>", Term::binary(vec![0xfc])),
            (
                "<< 1 , 2 : 4 >>",
                Term::bitstring(vec![1, 0x20], 4).unwrap(),
            ),
            ("<<1:3>>", Term::bitstring(vec![0x20], 3).unwrap()),
            ("<<1:3,1:5>>", Term::binary(vec![0x21])),
            ("<<$a,\"bc\":16>>", Term::binary(vec![97, 0, 98, 0, 99])),
            ("<<1024/utf8>>", Term::binary("\u{400}".as_bytes().to_vec())),
            ("<<-1:65>>", Term::bitstring(vec![0xff; 9], 1).unwrap()),
            ("<<1:0>>", Term::binary(Vec::new())),
            ("$a", Term::Int(97)),
            ("$\\n", Term::Int(10)),
            ("$\\x{1F600}", Term::Int(0x1f600)),
            ("$\\^a", Term::Int(1)),
            ("$ ", Term::Int(32)),
            ("16#ff", Term::Int(255)),
            ("16#FF_FF", Term::Int(65535)),
            ("2#1010", Term::Int(10)),
            ("-5", Term::Int(-5)),
            ("- 5", Term::Int(-5)),
            ("+5", Term::Int(5)),
            ("1.5e3", Term::Float(1500.0)),
            ("1.0e-5", Term::Float(1.0e-5)),
            ("1.0E+2", Term::Float(100.0)),
            ("-0.0", Term::Float(-0.0)),
            ("9223372036854775807", Term::Int(i64::MAX)),
            ("-9223372036854775808", Term::Int(i64::MIN)),
            ("-16#8000000000000000", Term::Int(i64::MIN)),
            ("'a\\'b\\x41\\101\\s'", Term::atom("a'bAA ")),
            ("'\\x{4F60}'", Term::atom("你")),
            ("ok.", Term::atom("ok")),
            ("  ok  .  \n", Term::atom("ok")),
            (
                "% comment\n[1, % one\n 2]",
                Term::List(vec![Term::Int(1), Term::Int(2)]),
            ),
            (
                "[a|b]",
                Term::list_with_tail(vec![Term::atom("a")], Term::atom("b")),
            ),
            (
                "[a|[b]]",
                Term::List(vec![Term::atom("a"), Term::atom("b")]),
            ),
            (
                "[a|\"b\"]",
                Term::List(vec![Term::atom("a"), Term::Int(98)]),
            ),
            (
                "#{ k => v }",
                Term::map(vec![(Term::atom("k"), Term::atom("v"))]),
            ),
            (
                "#{k => 1, k => 2}",
                Term::map(vec![(Term::atom("k"), Term::Int(2))]),
            ),
            ("{\n\t}", Term::tuple(vec![])),
            ("a@b_C", Term::atom("a@b_C")),
            ("ßtraße", Term::atom("ßtraße")),
        ];
        for (text, want) in cases {
            let got = parse(text);
            assert!(got.exact_eq(want), "{text}: {got:?}, want {want:?}");
        }
        assert!(matches!(parse("\"abc\""), Term::ByteList(_)));
        assert!(matches!(parse("9223372036854775807"), Term::Int(_)));
        assert!(matches!(parse("9223372036854775808"), Term::BigInt(_)));
        assert!(matches!(parse("-9223372036854775809"), Term::BigInt(_)));
        assert!(matches!(parse("16#10000000000000000"), Term::BigInt(_)));
        assert!(matches!(parse("-9223372036854775808"), Term::Int(i64::MIN)));
        let big = "1234567890123456789012345678901234567890";
        assert_eq!(parse(big).to_string(), big);
        assert_eq!(parse(&format!("-{big}")).to_string(), format!("-{big}"));
    }

    fn err(text: &str) -> (usize, usize, String) {
        match text.parse::<Term>() {
            Ok(t) => panic!("{text:?} parsed as {t:?}"),
            Err(e) => (e.line, e.column, e.message),
        }
    }

    #[test]
    fn error_positions() {
        let cases: &[(&str, usize, usize)] = &[
            ("", 1, 1),
            ("[1,2", 1, 5),
            ("{a,,b}", 1, 4),
            ("\n  [1, X]", 2, 7),
            ("[1 2]", 1, 4),
            ("'abc", 1, 1),
            ("\"abc", 1, 1),
            ("foo bar", 1, 5),
            ("ok..", 1, 4),
            ("1.0e400", 1, 1),
            ("#{a}", 1, 4),
            ("#{a => }", 1, 8),
            ("<<256:3/utf8>>", 1, 3),
            ("<<256/utf8:3>>", 1, 11),
            ("<<\"你\">>", 1, 3),
            ("<<1.5>>", 1, 3),
            ("<<1/float>>", 1, 5),
            ("37#1", 1, 1),
            ("16#", 1, 4),
            ("1e5", 1, 2),
            ("-a", 1, 2),
            ("#Pid<a.1.2>", 1, 11),
            ("#Pid<a.1.2.4294967296>", 1, 12),
            ("#Ref<a>", 1, 1),
            ("#Ref<a.1.2.3.4.5.6.7>", 1, 19),
            ("fun a:b/256", 1, 9),
            ("fun a:b", 1, 8),
            ("$", 1, 2),
            ("'\\x{110000}'", 1, 2),
            ("'\\x{D800}'", 1, 2),
            ("[1|2,3]", 1, 5),
            ("É", 1, 1),
            ("你", 1, 1),
            ("<0.1.0>", 1, 1),
            ("[1,\n 2,\n ]", 3, 2),
        ];
        for &(text, line, column) in cases {
            let (l, c, m) = err(text);
            assert_eq!((l, c), (line, column), "{text:?}: {m}");
        }
        let long = format!("'{}'", "a".repeat(256));
        assert_eq!(err(&long).0, 1);
        assert_eq!(err("[1 2]").2, "expected ',', '|' or ']', found '2'");
    }

    #[test]
    fn prefixes_never_panic() {
        let mut texts: Vec<String> = GOLDEN
            .iter()
            .flat_map(|g| [g.0, g.1, g.2])
            .map(String::from)
            .collect();
        for t in sample_terms() {
            texts.push(t.to_string());
            texts.push(format!("{t:#}"));
        }
        for text in &texts {
            for (i, _) in text.char_indices() {
                let _ = text[..i].parse::<Term>();
                let _ = text[i..].parse::<Term>();
            }
        }
    }

    fn nested(depth: usize) -> String {
        format!("{}{}", "[{".repeat(depth / 2), "}]".repeat(depth / 2))
    }

    #[test]
    fn depth_limit_on_a_small_stack() {
        let handle = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let text = nested(MAX_DEPTH);
                let t = parse(&text);
                assert_eq!(t.to_string(), text);
                assert_eq!(format!("{t:#}"), text);
                let (_, column, message) = err(&nested(MAX_DEPTH + 2));
                assert_eq!(column, MAX_DEPTH + 1);
                assert!(message.contains("nesting"), "{message}");
                let deep_map = format!("{}1{}", "#{1 => ".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
                assert_eq!(parse(&deep_map).to_string(), deep_map);
                assert!(err(&format!("[{deep_map}]")).2.contains("nesting"));
                // Unclosed deep input fails cleanly too.
                assert!(err(&"[".repeat(100_000)).2.contains("nesting"));
            })
            .unwrap();
        handle.join().unwrap();
    }

    /// The bits Erlang puts in a bitstring for integer segments, one by
    /// one: each value modulo 2^size, most significant bit first.
    fn segment_bits(segments: &[(BigInt, u64)]) -> Term {
        let mut bits = Vec::new();
        for (v, n) in segments {
            let m = BigInt::from(1) << *n;
            let (_, r) = (((v % &m) + &m) % &m).into_parts();
            bits.extend((0..*n).rev().map(|i| r.bit(i)));
        }
        let mut bytes = vec![0u8; bits.len().div_ceil(8)];
        for (i, _) in bits.iter().enumerate().filter(|(_, b)| **b) {
            bytes[i / 8] |= 0x80 >> (i % 8);
        }
        let last = match bits.len() % 8 {
            0 => 8,
            n => n as u8,
        };
        Term::bitstring(bytes, last).unwrap()
    }

    fn segments_text(segments: &[(BigInt, u64)]) -> String {
        let parts: Vec<String> = segments.iter().map(|(v, n)| format!("{v}:{n}")).collect();
        format!("<<{}>>", parts.join(","))
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn integer_segments_hold_their_value_modulo_two_to_the_size(
            segments in proptest::collection::vec(
                (
                    prop_oneof![
                        any::<i8>().prop_map(BigInt::from),
                        any::<i64>().prop_map(BigInt::from),
                        (any::<i128>(), 0u32..120).prop_map(|(x, k)| BigInt::from(x) << k),
                    ],
                    0u64..300,
                ),
                1..6,
            )
        ) {
            let text = segments_text(&segments);
            let t = parse(&text);
            prop_assert!(t.exact_eq(&segment_bits(&segments)), "{text} -> {t}");
        }
    }

    #[test]
    fn long_segments_are_filled_by_sign_and_cut_like_short_ones() {
        let cases: Vec<(BigInt, u64)> = vec![
            (BigInt::from(1), 3),
            (BigInt::from(-1), 100_003),
            (BigInt::from(5), 7),
            (BigInt::from(-2), 90_001),
            (BigInt::from(u64::MAX) * 3 - 7, 2_000_011),
            (-(BigInt::from(u64::MAX) << 70usize), 130),
            // No bits of a large integer (which once underflowed).
            (BigInt::from(u64::MAX) * 1000, 0),
        ];
        let text = segments_text(&cases);
        assert!(parse(&text).exact_eq(&segment_bits(&cases)));
        // What a fuzzer found slow: one segment of 400 million bits is
        // built at memory speed, as zeros and then the value.
        let t = parse("<<1:399999999>>");
        let Term::BitBinary(b) = &t else {
            panic!("not a bitstring")
        };
        assert_eq!((b.bytes.len(), b.bits), (50_000_000, 7));
        assert_eq!(b.bytes.last(), Some(&0b10));
        assert!(b.bytes[..49_999_999].iter().all(|&x| x == 0));
    }

    /// A segment size near `u64::MAX` once wrapped the length check to
    /// nothing, and the parser asked the allocator for 2^61 bytes (the
    /// `parse` fuzzer found it). Every such size is refused as too long,
    /// alone or after other segments, as OTP refuses it with
    /// `system_limit` (`<<1:18446744073709551615>>` in `erl`). So is one
    /// bit past the parser's own 64 MiB limit, which is lower than OTP's.
    #[test]
    fn segment_sizes_past_the_limit_are_refused_without_wrapping() {
        let max = u64::MAX;
        for text in [
            format!("<<1:{max}>>"),
            format!("<<-1:{}>>", max - 63),
            format!("<<1:8,2:{max}>>"),
            format!("<<1:3,\"ab\":{}>>", max - 2),
            format!("<<1:{}>>", MAX_BINARY_BITS + 1),
            // The fuzzer's input.
            "<<-9999999999991999999999000000000006744073709551615,\
             0000997792863:00000018446744073709551615,0000997792863:00000"
                .to_string(),
        ] {
            let (_, _, message) = err(&text);
            assert!(message.contains("too long"), "{text}: {message}");
        }
        // The limit itself still parses.
        let t = parse(&format!("<<0:{MAX_BINARY_BITS}>>"));
        assert!(matches!(&t, Term::Binary(b) if b.len() as u64 * 8 == MAX_BINARY_BITS));
    }
}
