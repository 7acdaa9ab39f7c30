//! Decoding the External Term Format (`binary_to_term/1`).
//!
//! The decoder is recursive, each compound term decoding its elements
//! straight into a vector of their number; nesting is bounded by
//! [`DecodeOptions::max_depth`], and the stack grows on demand (every 16
//! levels, as the encoder's), so no input can overflow the machine stack
//! while it is decoded. Dropping a term is plain recursion, though: see
//! [`DecodeOptions::max_depth`] before raising the limit.
//! Every length field is checked against the
//! bytes that remain before anything is allocated for it, and the total
//! capacity reserved for elements never exceeds the input's length, so a
//! small input cannot make the decoder allocate much. Binaries share the
//! input buffer when it is given as [`Bytes`].
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::io::Read;

use bytes::Bytes;
use num_bigint::{BigInt, Sign};
use num_traits::ToPrimitive;

use super::atom::{Atom, AtomBudget, AtomError, AtomFromBytesError};
use super::tags::*;
use super::{Binary, BitBinary, Fun, LocalFun, Map, Pid, Port, Reference, Term, INLINE_BINARY};

/// Limits for decoding.
#[derive(Clone, Copy, Debug)]
pub struct DecodeOptions {
    /// The deepest nesting of tuples, lists, maps and funs accepted
    /// (default [`DEFAULT_MAX_DEPTH`]).
    ///
    /// Decoding grows its stack as it needs, but dropping the term does
    /// not: Rust drops nested vectors recursively. On a 2 MiB stack (a
    /// tokio worker's, or a spawned thread's), a term of nested maps about
    /// 8,400 levels deep overflows it in a debug build, and about 32,000
    /// in a release build; tuples and lists go about 40 % deeper. The
    /// default leaves room for twice its depth. Raise the limit beyond
    /// that only where such terms are dropped on a larger stack.
    pub max_depth: usize,
    /// The largest size a compressed term may declare for its contents.
    pub max_decompressed: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_depth: DEFAULT_MAX_DEPTH,
            max_decompressed: DEFAULT_MAX_DECOMPRESSED,
        }
    }
}

/// The default nesting limit.
pub const DEFAULT_MAX_DEPTH: usize = 4096;

/// The default limit of [`DecodeOptions::max_decompressed`].
const DEFAULT_MAX_DECOMPRESSED: usize = 256 * 1024 * 1024;

/// A decoding failure: what was wrong, and at which byte of the input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind} at byte {offset}")]
pub struct DecodeError {
    /// The byte offset in the input where the problem was found (inside a
    /// compressed term, the offset in its decompressed contents).
    pub offset: usize,
    /// What was wrong.
    pub kind: DecodeErrorKind,
}

/// What made decoding fail.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended inside a term.
    #[error("unexpected end of input ({needed} more bytes needed)")]
    UnexpectedEnd {
        /// How many more bytes were needed at least.
        needed: usize,
    },
    /// The input does not start with the version byte 131.
    #[error("bad version byte {0} (expected 131)")]
    BadVersion(u8),
    /// An unknown or unsupported tag.
    #[error("unknown tag {0}")]
    UnknownTag(u8),
    /// A tag that is known but not accepted here.
    #[error("unsupported tag {tag}: {why}")]
    Unsupported {
        /// The tag.
        tag: u8,
        /// Why it is refused.
        why: &'static str,
    },
    /// A field that must hold one kind of term held another tag.
    #[error("expected {expected}, found tag {tag}")]
    Expected {
        /// What was expected (atom, pid, integer...).
        expected: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// Nesting deeper than the limit.
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    /// A length that the rest of the input cannot hold.
    #[error("{what} claims {claimed} elements but only {available} bytes remain")]
    LengthTooLarge {
        /// What the length counts.
        what: &'static str,
        /// The length claimed.
        claimed: u64,
        /// The bytes that remain.
        available: usize,
    },
    /// An atom's text is not valid UTF-8.
    #[error("atom is not valid UTF-8")]
    InvalidUtf8Atom,
    /// An atom could not be created.
    #[error("{0}")]
    Atom(AtomError),
    /// An atom cache reference without a cache entry.
    #[error("atom cache reference {0} has no entry")]
    AtomCacheMiss(u8),
    /// A bitstring's bit count is outside 1..=8 (or not 0 when empty).
    #[error("bit count {0} not in 1..=8 (0 for an empty bitstring)")]
    BadBitCount(u8),
    /// A float that is not finite, or text that is not a float.
    #[error("invalid float")]
    BadFloat,
    /// A reference with more than five words.
    #[error("reference has {0} words (at most 5 allowed)")]
    BadReference(u16),
    /// A map with a key twice.
    #[error("duplicate map key")]
    DuplicateMapKey,
    /// A fun's size field disagrees with its contents.
    #[error("fun size field says {claimed} bytes, contents take {actual}")]
    BadFunSize {
        /// The size field.
        claimed: u32,
        /// The size of what was decoded.
        actual: usize,
    },
    /// A compressed term that does not inflate to its declared size.
    #[error("compressed term: {0}")]
    Compression(String),
    /// Bytes after the end of the term.
    #[error("{0} bytes after the end of the term")]
    TrailingBytes(usize),
}

/// A configured decoder.
///
/// ```
/// use erldist::{Decoder, Term};
/// let bytes = [131, 104, 2, 119, 2, b'o', b'k', 97, 42];
/// let t = Decoder::new().decode(&bytes).unwrap();
/// assert_eq!(t.to_string(), "{ok,42}");
/// ```
#[derive(Clone, Debug, Default)]
pub struct Decoder<'c> {
    opts: DecodeOptions,
    atom_cache: Option<&'c [Atom]>,
    atom_budget: Option<&'c AtomBudget>,
}

/// The decoder of [`Term::decode`] and [`Term::decode_bytes`]: a constant
/// in static memory, which the decoder reads without waiting for the
/// stores of a value built just before the call.
const DEFAULT_DECODER: Decoder<'static> = Decoder {
    opts: DecodeOptions {
        max_depth: DEFAULT_MAX_DEPTH,
        max_decompressed: DEFAULT_MAX_DECOMPRESSED,
    },
    atom_cache: None,
    atom_budget: None,
};

impl<'c> Decoder<'c> {
    /// A decoder with the default limits.
    pub fn new() -> Decoder<'static> {
        Decoder::default()
    }

    /// Sets the limits.
    pub fn options(mut self, opts: DecodeOptions) -> Self {
        self.opts = opts;
        self
    }

    /// Sets the nesting limit ([`DecodeOptions::max_depth`]: mind the
    /// stack that dropping such a term takes).
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.opts.max_depth = depth;
        self
    }

    /// Resolves `ATOM_CACHE_REF` indexes through `cache` (the atoms of a
    /// distribution header, in reference order).
    pub fn atom_cache<'d>(self, cache: &'d [Atom]) -> Decoder<'d>
    where
        'c: 'd,
    {
        Decoder {
            opts: self.opts,
            atom_cache: Some(cache),
            atom_budget: self.atom_budget,
        }
    }

    /// Charges the atoms this decoder creates (texts not yet in the atom
    /// table) to `budget`, failing with [`AtomError::BudgetSpent`] once it
    /// is spent. Without a budget only the table's own limit applies.
    pub fn atom_budget<'d>(self, budget: &'d AtomBudget) -> Decoder<'d>
    where
        'c: 'd,
    {
        Decoder {
            opts: self.opts,
            atom_cache: self.atom_cache,
            atom_budget: Some(budget),
        }
    }

    /// Decodes a whole term that starts with the version byte 131 (as
    /// `binary_to_term/1` does), copying binaries out of `input`.
    pub fn decode(&self, input: &[u8]) -> Result<Term, DecodeError> {
        self.decode_versioned(input, None).map_err(|e| *e)
    }

    /// Decodes a whole term that starts with the version byte 131; binaries
    /// longer than [`INLINE_BINARY`] bytes share `input`'s buffer (shorter
    /// ones are held in place, see [`Binary`]).
    pub fn decode_bytes(&self, input: &Bytes) -> Result<Term, DecodeError> {
        self.decode_versioned(input, Some(input)).map_err(|e| *e)
    }

    #[inline(always)]
    fn decode_versioned(&self, input: &[u8], owner: Option<&Bytes>) -> Result<Term, Fail> {
        match input {
            [VERSION, COMPRESSED, ..] => self.decode_compressed(input),
            [VERSION, ..] => {
                let (t, used) = self.decode_at(input, 1, owner)?;
                if used != input.len() {
                    return Err(trailing(used, input.len()));
                }
                Ok(t)
            }
            [] => Err(err(0, DecodeErrorKind::UnexpectedEnd { needed: 1 })),
            [v, ..] => Err(err(0, DecodeErrorKind::BadVersion(*v))),
        }
    }

    /// Decodes a compressed term (`131, 80`, size, zlib data).
    #[inline(never)]
    fn decode_compressed(&self, input: &[u8]) -> Result<Term, Fail> {
        let inflated = self.inflate(input, 2)?;
        let owner = Bytes::from(inflated);
        let (t, used) = self.decode_at(&owner, 0, Some(&owner))?;
        if used != owner.len() {
            return Err(trailing(used, owner.len()));
        }
        Ok(t)
    }

    /// Decodes one term without a version byte starting at `offset` of
    /// `input` (as terms follow a distribution header), returning it and
    /// the offset just past it. Binaries share `input`'s buffer.
    pub fn decode_body(&self, input: &Bytes, offset: usize) -> Result<(Term, usize), DecodeError> {
        self.decode_at(input, offset, Some(input)).map_err(|e| *e)
    }

    /// [`decode_body`](Self::decode_body) of a term that must end by `end`
    /// (a frame inside a larger buffer): nothing at or past `end` is read,
    /// as if the input ended there. Binaries share `input`'s buffer.
    pub fn decode_body_within(
        &self,
        input: &Bytes,
        offset: usize,
        end: usize,
    ) -> Result<(Term, usize), DecodeError> {
        let bounded = input.get(..end).unwrap_or(input);
        self.decode_at(bounded, offset, Some(input)).map_err(|e| *e)
    }

    fn inflate(&self, input: &[u8], at: usize) -> Result<Vec<u8>, Fail> {
        let size = input
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .ok_or_else(|| {
                err(
                    input.len(),
                    DecodeErrorKind::UnexpectedEnd {
                        needed: at + 4 - input.len(),
                    },
                )
            })
            .map(|b| u32::from_be_bytes(b) as usize)?;
        if size > self.opts.max_decompressed {
            return Err(err(
                at,
                DecodeErrorKind::Compression(format!(
                    "declares {size} bytes, more than the limit of {}",
                    self.opts.max_decompressed
                )),
            ));
        }
        let data = input.get(at + 4..).unwrap_or_default();
        // zlib expands at most about 1032:1; never reserve more than that.
        let mut out = Vec::with_capacity(size.min(data.len().saturating_mul(1032)));
        let mut z = flate2::read::ZlibDecoder::new(data).take(size as u64 + 1);
        z.read_to_end(&mut out)
            .map_err(|e| err(at + 4, DecodeErrorKind::Compression(e.to_string())))?;
        if out.len() != size {
            return Err(err(
                at + 4,
                DecodeErrorKind::Compression(format!(
                    "declares {size} bytes, inflates to {}{}",
                    out.len().min(size),
                    if out.len() > size { " or more" } else { "" }
                )),
            ));
        }
        Ok(out)
    }

    #[inline(always)]
    fn decode_at(
        &self,
        input: &[u8],
        offset: usize,
        owner: Option<&Bytes>,
    ) -> Result<(Term, usize), Fail> {
        // A lone binary or string shared with the input (common messages,
        // for which the encoder has a fast path too): no decoder state to
        // set up, and the term built where the caller takes it.
        if let Some(owner) = owner {
            let lone = match input.get(offset..) {
                Some([BINARY_EXT, a, b, c, d, ..]) => {
                    Some((5, u32::from_be_bytes([*a, *b, *c, *d]) as usize, true))
                }
                Some([STRING_EXT, a, b, ..]) => {
                    Some((3, usize::from(u16::from_be_bytes([*a, *b])), false))
                }
                _ => None,
            };
            if let Some((head, n, binary)) = lone {
                let start = offset + head;
                let end = start.saturating_add(n);
                // `owner` holds `input`: the first bound is the one that counts.
                if end <= input.len() && end <= owner.len() {
                    let share = || owner.slice(start..end);
                    let t = match input.get(start..end) {
                        // A short one held in place: no share of `owner` taken.
                        Some(s) if binary => Term::Binary(Binary::short_or(s, share)),
                        _ if binary => Term::Binary(share().into()),
                        _ => Term::ByteList(share()),
                    };
                    return Ok((t, end));
                }
            }
        }
        let mut st = State {
            r: Reader {
                data: input,
                pos: offset,
            },
            owner,
            cache: self.atom_cache,
            atom_budget: self.atom_budget,
            budget: input.len(),
            opts: &self.opts,
        };
        let t = st.run()?;
        Ok((t, st.r.pos))
    }
}

impl Term {
    /// Decodes a term written by `term_to_binary` (starting with 131,
    /// compressed or not), copying binaries out of `input`.
    ///
    /// # Errors
    /// A [`DecodeError`] naming the problem and its byte offset.
    pub fn decode(input: &[u8]) -> Result<Term, DecodeError> {
        DEFAULT_DECODER.decode(input)
    }

    /// Decodes like [`Term::decode`], but binaries in the result longer
    /// than [`INLINE_BINARY`] bytes share `input`'s buffer instead of being
    /// copied (shorter ones are held in place, see [`Binary`]).
    pub fn decode_bytes(input: &Bytes) -> Result<Term, DecodeError> {
        DEFAULT_DECODER.decode_bytes(input)
    }
}

/// The decoder's error inside: boxed, so that the result of each step
/// stays small (errors are rare; the success path is what runs).
type Fail = Box<DecodeError>;

#[cold]
#[inline(never)]
fn err(offset: usize, kind: DecodeErrorKind) -> Fail {
    Box::new(DecodeError { offset, kind })
}

#[cold]
#[inline(never)]
fn trailing(used: usize, len: usize) -> Fail {
    err(used, DecodeErrorKind::TrailingBytes(len - used))
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], Fail> {
        match self.data.get(self.pos..self.pos.wrapping_add(n)) {
            Some(s) if self.pos.checked_add(n).is_some() => {
                self.pos += n;
                Ok(s)
            }
            _ => Err(err(
                self.data.len(),
                DecodeErrorKind::UnexpectedEnd {
                    needed: n - self.remaining(),
                },
            )),
        }
    }

    /// The integer at the current position if it is a whole
    /// `SMALL_INTEGER_EXT` or `INTEGER_EXT` (the commonest elements of
    /// lists and tuples), read without the general dispatch; `None`
    /// otherwise, leaving the position as it was.
    #[inline(always)]
    fn small_int(&mut self) -> Option<i64> {
        let rest = self.data.get(self.pos..)?;
        match rest {
            [SMALL_INTEGER_EXT, b, ..] => {
                self.pos += 2;
                Some(i64::from(*b))
            }
            [INTEGER_EXT, a, b, c, d, ..] => {
                self.pos += 5;
                Some(i64::from(i32::from_be_bytes([*a, *b, *c, *d])))
            }
            _ => None,
        }
    }

    #[inline]
    fn u8(&mut self) -> Result<u8, Fail> {
        match self.data.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(err(self.pos, DecodeErrorKind::UnexpectedEnd { needed: 1 })),
        }
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Fail> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    #[inline]
    fn u16(&mut self) -> Result<u16, Fail> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    #[inline]
    fn u32(&mut self) -> Result<u32, Fail> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    #[inline]
    fn u64(&mut self) -> Result<u64, Fail> {
        Ok(u64::from_be_bytes(self.array()?))
    }
}

/// Where a decoded term goes: the elements of a compound term, or a
/// single term (the result, a list's tail, a map's key or value).
trait Sink {
    /// Puts the term `f` makes. Made by a closure so that it is built
    /// where it goes, after any room has been made for it: a term built
    /// first and moved in afterwards is copied with wider loads than the
    /// stores that built it, and the processor stalls on each such copy.
    fn put_with(&mut self, f: impl FnOnce() -> Term);

    #[inline(always)]
    fn put(&mut self, t: Term) {
        self.put_with(|| t);
    }
}

impl Sink for Vec<Term> {
    #[inline(always)]
    fn put_with(&mut self, f: impl FnOnce() -> Term) {
        // `OnceWith` has an exact length, so `extend` makes room first and
        // then writes what `f` returns straight into it.
        self.extend(std::iter::once_with(f));
    }
}

/// A single term.
impl Sink for Option<Term> {
    #[inline(always)]
    fn put_with(&mut self, f: impl FnOnce() -> Term) {
        *self = Some(f());
    }
}

struct State<'a, 'o> {
    r: Reader<'a>,
    owner: Option<&'o Bytes>,
    cache: Option<&'o [Atom]>,
    atom_budget: Option<&'o AtomBudget>,
    /// Elements that may still be reserved ahead of decoding them.
    budget: usize,
    opts: &'o DecodeOptions,
}

impl State<'_, '_> {
    fn run(&mut self) -> Result<Term, Fail> {
        let mut top: Option<Term> = None;
        self.push_term(0, &mut top)?;
        // push_term gives its sink a term whenever it succeeds.
        top.ok_or_else(|| err(self.r.pos, DecodeErrorKind::UnexpectedEnd { needed: 1 }))
    }

    /// The nesting of the elements of a compound term at `depth`, whose
    /// header was just read; fails past the limit.
    #[inline(always)]
    fn inner(&self, depth: usize) -> Result<usize, Fail> {
        if depth >= self.opts.max_depth {
            return Err(self.too_deep());
        }
        Ok(depth + 1)
    }

    #[cold]
    #[inline(never)]
    fn too_deep(&self) -> Fail {
        err(self.r.pos, DecodeErrorKind::TooDeep(self.opts.max_depth))
    }

    /// Decodes the elements of a compound term at nesting `depth` (from
    /// [`inner`](Self::inner)) with `f`. Nesting is bounded by
    /// `max_depth`, and every 16 levels the stack grows if it runs low, so
    /// no input can overflow it.
    ///
    /// Tuples and lists, the hot cases, spell the same test out instead:
    /// given to this function as a closure, their loop over elements was
    /// compiled as a function of its own, one more call and return at
    /// every level, and deeper than the processor's return stack each
    /// return is mispredicted.
    #[inline(always)]
    fn nested(
        &mut self,
        depth: usize,
        f: impl FnOnce(&mut Self) -> Result<(), Fail>,
    ) -> Result<(), Fail> {
        if depth % 16 == 0 {
            super::deep(|| f(self))
        } else {
            f(self)
        }
    }

    /// Decodes `n` terms at nesting `depth` onto `items`.
    #[inline(always)]
    fn elems(&mut self, items: &mut Vec<Term>, n: usize, depth: usize) -> Result<(), Fail> {
        for _ in 0..n {
            self.push_term(depth, items)?;
        }
        Ok(())
    }

    /// [`State::elems`] for a list's elements, which are often runs of
    /// integers: each run is gathered into an array and then written to
    /// `items` in one go. Pushing each integer as a term on its own makes
    /// the compiler build the term on the stack and copy it with wider
    /// loads than the stores that built it, and the processor stalls on
    /// every such copy. The array is set up only for a run of two or
    /// more: zeroing it before every element that begins none (a nested
    /// term, or a lone integer) cost nested lists several per cent.
    #[inline(always)]
    fn list_elems(&mut self, items: &mut Vec<Term>, n: usize, depth: usize) -> Result<(), Fail> {
        let mut left = n;
        while left > 0 {
            let Some(first) = self.r.small_int() else {
                self.push_term(depth, items)?;
                left -= 1;
                continue;
            };
            let second = if left > 1 { self.r.small_int() } else { None };
            let Some(second) = second else {
                // A lone integer, without the run's array to fill first.
                items.put_with(|| Term::Int(first));
                left -= 1;
                continue;
            };
            let mut run = [0i64; 16];
            run[0] = first;
            run[1] = second;
            let mut k = 2;
            for slot in run.iter_mut().take(left).skip(2) {
                match self.r.small_int() {
                    Some(i) => {
                        *slot = i;
                        k += 1;
                    }
                    None => break,
                }
            }
            items.extend(run.iter().take(k).map(|&i| Term::Int(i)));
            left -= k;
        }
        Ok(())
    }

    /// Decodes one term at nesting `depth` (the compound terms around it)
    /// and gives it to `out`. Inlined into the loops over elements, so that
    /// the common scalars cost no call; compound terms are decoded out of
    /// line, and put where they belong by the function that builds them
    /// rather than returned (a term returned through memory and copied at
    /// once makes the processor wait for the stores of its parts). For the
    /// same reason each kind of term is built in its own
    /// [`Sink::put_with`], not built first and put after the `match`.
    #[inline(always)]
    fn push_term<S: Sink>(&mut self, depth: usize, out: &mut S) -> Result<(), Fail> {
        if let Some(i) = self.r.small_int() {
            out.put_with(|| Term::Int(i));
            return Ok(());
        }
        let at = self.r.pos;
        let tag = self.r.u8()?;
        match tag {
            SMALL_ATOM_UTF8_EXT | ATOM_UTF8_EXT | ATOM_EXT | SMALL_ATOM_EXT | ATOM_CACHE_REF => {
                let a = self.atom_after(tag, at)?;
                out.put_with(|| Term::Atom(a));
            }
            SMALL_TUPLE_EXT => {
                let n = usize::from(self.r.u8()?);
                return self.tuple(n, depth, out);
            }
            LARGE_TUPLE_EXT => {
                let n = self.r.u32()? as usize;
                return self.tuple(n, depth, out);
            }
            NIL_EXT => out.put_with(|| Term::NIL),
            STRING_EXT => {
                let n = usize::from(self.r.u16()?);
                let b = self.take_bytes(n)?;
                out.put_with(|| Term::ByteList(b));
            }
            LIST_EXT => return self.list(depth, out),
            BINARY_EXT => {
                let n = self.r.u32()? as usize;
                let b = self.take_binary(n)?;
                out.put_with(|| Term::Binary(b));
            }
            MAP_EXT => return self.map(at, depth, out),
            NEW_FUN_EXT => return self.local_fun(depth, out),
            // With the integer tags when small_int found them cut short.
            _ => return self.scalar(tag, at, out),
        }
        Ok(())
    }

    #[inline(never)]
    fn tuple<S: Sink>(&mut self, n: usize, depth: usize, out: &mut S) -> Result<(), Fail> {
        if n == 0 {
            out.put(Term::Tuple(Vec::new()));
            return Ok(());
        }
        let mut items = self.reserve(n, 1, "tuple")?;
        let d = self.inner(depth)?;
        if d % 16 == 0 {
            super::deep(|| self.elems(&mut items, n, d))?;
        } else {
            self.elems(&mut items, n, d)?;
        }
        out.put_with(|| Term::Tuple(items));
        Ok(())
    }

    #[inline(never)]
    fn list<S: Sink>(&mut self, depth: usize, out: &mut S) -> Result<(), Fail> {
        let n = self.r.u32()? as usize;
        // Each element and the tail take at least a byte.
        let mut items = self.reserve(n, 1, "list")?;
        let d = self.inner(depth)?;
        // The tail, unless it is `[]` (a proper list).
        let mut tail: Option<Term> = None;
        if d % 16 == 0 {
            super::deep(|| self.list_body(&mut items, n, d, &mut tail))?;
        } else {
            self.list_body(&mut items, n, d, &mut tail)?;
        }
        match tail {
            None if n == 0 => out.put_with(|| Term::NIL),
            None => out.put_with(|| Term::List(items)),
            Some(tail) => out.put(Term::list_with_tail(items, tail)),
        }
        Ok(())
    }

    /// A list's `n` elements and its tail (left `None` when it is `[]`).
    #[inline(always)]
    fn list_body(
        &mut self,
        items: &mut Vec<Term>,
        n: usize,
        d: usize,
        tail: &mut Option<Term>,
    ) -> Result<(), Fail> {
        self.list_elems(items, n, d)?;
        if self.r.data.get(self.r.pos) == Some(&NIL_EXT) {
            self.r.pos += 1;
            return Ok(());
        }
        self.push_term(d, tail)
    }

    #[inline(never)]
    fn map<S: Sink>(&mut self, at: usize, depth: usize, out: &mut S) -> Result<(), Fail> {
        let n = self.r.u32()? as usize;
        if n == 0 {
            out.put(Term::Map(Map::new()));
            return Ok(());
        }
        let mut entries = self.reserve(n, 2, "map")?;
        let d = self.inner(depth)?;
        self.nested(d, |st| {
            for _ in 0..n {
                let (mut k, mut v) = (None, None);
                st.push_term(d, &mut k)?;
                st.push_term(d, &mut v)?;
                if let (Some(k), Some(v)) = (k, v) {
                    entries.push((k, v));
                }
            }
            Ok(())
        })?;
        let m = check_map(entries, at)?;
        out.put_with(|| Term::Map(m));
        Ok(())
    }

    #[inline(never)]
    fn local_fun<S: Sink>(&mut self, depth: usize, out: &mut S) -> Result<(), Fail> {
        let start = self.r.pos;
        let size = self.r.u32()?;
        if size as usize > self.r.remaining() + 4 {
            return Err(err(
                start,
                DecodeErrorKind::LengthTooLarge {
                    what: "fun",
                    claimed: u64::from(size),
                    available: self.r.remaining() + 4,
                },
            ));
        }
        let arity = self.r.u8()?;
        let uniq = self.r.array::<16>()?;
        let index = self.r.u32()?;
        let num_free = self.r.u32()? as usize;
        let module = self.atom()?;
        let old_index = self.u32_int()?;
        let old_uniq = self.u32_int()?;
        let pid_at = self.r.pos;
        let pid_tag = self.r.u8()?;
        if pid_tag != NEW_PID_EXT && pid_tag != PID_EXT {
            return Err(err(
                pid_at,
                DecodeErrorKind::Expected {
                    expected: "pid",
                    tag: pid_tag,
                },
            ));
        }
        let pid = self.pid_after(pid_tag)?;
        let mut free_vars = self.reserve(num_free, 1, "fun environment")?;
        if num_free > 0 {
            let d = self.inner(depth)?;
            self.nested(d, |st| st.elems(&mut free_vars, num_free, d))?;
        }
        let fun = LocalFun {
            arity,
            uniq,
            index,
            module,
            old_index,
            old_uniq,
            pid,
            free_vars,
        };
        out.put(self.finish_fun(fun, start, size)?);
        Ok(())
    }

    /// Reserves room for `n` elements of at least `min_size` bytes each,
    /// after checking that the input can hold them.
    #[inline]
    fn reserve<T>(
        &mut self,
        n: usize,
        min_size: usize,
        what: &'static str,
    ) -> Result<Vec<T>, Fail> {
        let available = self.r.remaining();
        if n.saturating_mul(min_size) > available {
            return Err(err(
                self.r.pos,
                DecodeErrorKind::LengthTooLarge {
                    what,
                    claimed: n as u64,
                    available,
                },
            ));
        }
        let cap = n.min(self.budget);
        self.budget -= cap;
        Ok(Vec::with_capacity(cap))
    }

    /// The next `n` bytes, shared with the input when it is given as
    /// [`Bytes`] (sliced by position, which is cheaper than
    /// [`Bytes::slice_ref`]), copied otherwise.
    #[inline]
    fn take_bytes(&mut self, n: usize) -> Result<Bytes, Fail> {
        let start = self.r.pos;
        let s = self.r.take(n)?;
        Ok(match self.owner {
            // `owner` holds the input: the bound always holds.
            Some(owner) if self.r.pos <= owner.len() => owner.slice(start..self.r.pos),
            _ => Bytes::copy_from_slice(s),
        })
    }

    /// The next `n` bytes as a binary: held in place when they are few,
    /// else as [`take_bytes`](Self::take_bytes) gives them.
    #[inline]
    fn take_binary(&mut self, n: usize) -> Result<Binary, Fail> {
        if n <= INLINE_BINARY {
            // One fixed-size copy where the input has that many bytes left
            // (the bytes after the binary's end are not kept).
            if let Some(block) = self
                .r
                .data
                .get(self.r.pos..)
                .and_then(|rest| rest.first_chunk::<INLINE_BINARY>())
            {
                let b = Binary::from_block(n as u8, *block);
                self.r.pos += n;
                return Ok(b);
            }
            return Ok(Binary::copy_from_slice(self.r.take(n)?));
        }
        Ok(Binary::from(self.take_bytes(n)?))
    }

    /// `s` (a part of the input) as a binary, as
    /// [`take_binary`](Self::take_binary) makes one.
    #[inline]
    fn binary(&self, s: &[u8]) -> Binary {
        Binary::short_or(s, || self.bytes(s))
    }

    #[inline]
    fn bytes(&self, s: &[u8]) -> Bytes {
        match self.owner {
            Some(owner) => owner.slice_ref(s),
            None => Bytes::copy_from_slice(s),
        }
    }

    /// The terms that hold no other terms, but for the common ones
    /// [`term`](Self::term) reads itself (out of line, to keep its frame
    /// small).
    #[inline(never)]
    fn scalar<S: Sink>(&mut self, tag: u8, at: usize, out: &mut S) -> Result<(), Fail> {
        let t = match tag {
            // Whole integers are read before; these fail, cut short.
            SMALL_INTEGER_EXT => Term::Int(i64::from(self.r.u8()?)),
            INTEGER_EXT => Term::Int(i64::from(self.r.u32()? as i32)),
            BIT_BINARY_EXT => {
                let n = self.r.u32()? as usize;
                let bits = self.r.u8()?;
                // As binary_to_term: an empty bitstring has 0 bits, any
                // other 1..=8 in its last byte.
                let valid = if n == 0 {
                    bits == 0
                } else {
                    (1..=8).contains(&bits)
                };
                if !valid {
                    return Err(err(at + 5, DecodeErrorKind::BadBitCount(bits)));
                }
                let s = self.r.take(n)?;
                match s.last() {
                    None => Term::Binary(Binary::new()),
                    Some(_) if bits == 8 => Term::Binary(self.binary(s)),
                    Some(&last) => {
                        let mask = 0xffu8 << (8 - bits);
                        let bytes = if last & !mask == 0 {
                            self.bytes(s)
                        } else {
                            // Clear the unused bits, as the BEAM ignores them.
                            let mut v = s.to_vec();
                            if let Some(l) = v.last_mut() {
                                *l &= mask;
                            }
                            Bytes::from(v)
                        };
                        Term::BitBinary(Box::new(BitBinary { bytes, bits }))
                    }
                }
            }
            NEW_FLOAT_EXT => {
                let f = f64::from_bits(self.r.u64()?);
                if !f.is_finite() {
                    return Err(err(at, DecodeErrorKind::BadFloat));
                }
                out.put_with(|| Term::Float(f));
                return Ok(());
            }
            FLOAT_EXT => {
                let s = self.r.take(31)?;
                let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
                let f = std::str::from_utf8(s.get(..end).unwrap_or(s))
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| err(at, DecodeErrorKind::BadFloat))?;
                Term::Float(f)
            }
            SMALL_BIG_EXT | LARGE_BIG_EXT => {
                let n = if tag == SMALL_BIG_EXT {
                    usize::from(self.r.u8()?)
                } else {
                    self.r.u32()? as usize
                };
                // Any non-zero sign byte means negative, as binary_to_term reads it.
                let sign = self.r.u8()?;
                let digits = self.r.take(n)?;
                big_term(sign != 0, digits)
            }
            NEW_PID_EXT | PID_EXT => {
                let p = self.pid_after(tag)?;
                out.put_with(|| Term::Pid(p));
                return Ok(());
            }
            NEW_PORT_EXT | PORT_EXT | V4_PORT_EXT => {
                let node = self.atom()?;
                let id = if tag == V4_PORT_EXT {
                    self.r.u64()?
                } else {
                    u64::from(self.r.u32()?)
                };
                let creation = if tag == PORT_EXT {
                    u32::from(self.r.u8()?)
                } else {
                    self.r.u32()?
                };
                Term::Port(Port { node, id, creation })
            }
            NEWER_REFERENCE_EXT | NEW_REFERENCE_EXT => {
                let len = self.r.u16()?;
                if usize::from(len) > Reference::MAX_WORDS {
                    return Err(err(at + 1, DecodeErrorKind::BadReference(len)));
                }
                let node = self.atom()?;
                let creation = if tag == NEWER_REFERENCE_EXT {
                    self.r.u32()?
                } else {
                    u32::from(self.r.u8()?)
                };
                let mut ids = [0u32; 5];
                for id in ids.iter_mut().take(usize::from(len)) {
                    *id = self.r.u32()?;
                }
                let r = Reference::of_words(node, creation, len, ids)
                    .ok_or_else(|| err(at, DecodeErrorKind::BadReference(len)))?;
                let r = Box::new(r);
                out.put_with(|| Term::Ref(r));
                return Ok(());
            }
            REFERENCE_EXT => {
                let node = self.atom()?;
                let id = self.r.u32()?;
                let creation = u32::from(self.r.u8()?);
                let r = Reference::new(node, creation, &[id])
                    .ok_or_else(|| err(at, DecodeErrorKind::BadReference(1)))?;
                Term::Ref(Box::new(r))
            }
            EXPORT_EXT => {
                let module = self.atom()?;
                let function = self.atom()?;
                let tag_at = self.r.pos;
                let t = self.r.u8()?;
                if t != SMALL_INTEGER_EXT {
                    return Err(err(
                        tag_at,
                        DecodeErrorKind::Expected {
                            expected: "small integer arity",
                            tag: t,
                        },
                    ));
                }
                let arity = self.r.u8()?;
                Term::Fun(Box::new(Fun::Export {
                    module,
                    function,
                    arity,
                }))
            }
            FUN_EXT => {
                return Err(err(
                    at,
                    DecodeErrorKind::Unsupported {
                        tag,
                        why: "the old fun format, not decoded by OTP since OTP 23",
                    },
                ))
            }
            LOCAL_EXT => {
                return Err(err(
                    at,
                    DecodeErrorKind::Unsupported {
                        tag,
                        why: "LOCAL_EXT is only meaningful to the node that wrote it",
                    },
                ))
            }
            COMPRESSED => {
                return Err(err(
                    at,
                    DecodeErrorKind::Unsupported {
                        tag,
                        why: "a compressed term may only appear at the top level",
                    },
                ))
            }
            other => return Err(err(at, DecodeErrorKind::UnknownTag(other))),
        };
        out.put(t);
        Ok(())
    }

    fn finish_fun(&self, fun: LocalFun, start: usize, size: u32) -> Result<Term, Fail> {
        let actual = self.r.pos - start;
        if actual != size as usize {
            return Err(err(
                start,
                DecodeErrorKind::BadFunSize {
                    claimed: size,
                    actual,
                },
            ));
        }
        Ok(Term::Fun(Box::new(Fun::Local(fun))))
    }

    /// An integer field of a fun that must fit in 32 bits.
    fn u32_int(&mut self) -> Result<u32, Fail> {
        let at = self.r.pos;
        let tag = self.r.u8()?;
        let v: i64 = match tag {
            SMALL_INTEGER_EXT => i64::from(self.r.u8()?),
            INTEGER_EXT => i64::from(self.r.u32()? as i32),
            SMALL_BIG_EXT => {
                let n = usize::from(self.r.u8()?);
                let sign = self.r.u8()?;
                let digits = self.r.take(n)?;
                match big_term(sign == 1, digits) {
                    Term::Int(i) => i,
                    _ => -1,
                }
            }
            _ => {
                return Err(err(
                    at,
                    DecodeErrorKind::Expected {
                        expected: "integer",
                        tag,
                    },
                ))
            }
        };
        // OTP writes the unsigned 32-bit value; some encoders wrote the
        // signed reading of it.
        u32::try_from(v)
            .or_else(|_| i32::try_from(v).map(|i| i as u32))
            .map_err(|_| {
                err(
                    at,
                    DecodeErrorKind::Expected {
                        expected: "32-bit integer",
                        tag,
                    },
                )
            })
    }

    fn pid_after(&mut self, tag: u8) -> Result<Pid, Fail> {
        let node = self.atom()?;
        let id = self.r.u32()?;
        let serial = self.r.u32()?;
        let creation = if tag == PID_EXT {
            u32::from(self.r.u8()?)
        } else {
            self.r.u32()?
        };
        Ok(Pid {
            node,
            id,
            serial,
            creation,
        })
    }

    /// An atom field (node, module, function).
    fn atom(&mut self) -> Result<Atom, Fail> {
        let at = self.r.pos;
        let tag = self.r.u8()?;
        match tag {
            SMALL_ATOM_UTF8_EXT | ATOM_UTF8_EXT | ATOM_EXT | SMALL_ATOM_EXT | ATOM_CACHE_REF => {
                self.atom_after(tag, at)
            }
            _ => Err(err(
                at,
                DecodeErrorKind::Expected {
                    expected: "atom",
                    tag,
                },
            )),
        }
    }

    #[inline(always)]
    fn atom_after(&mut self, tag: u8, at: usize) -> Result<Atom, Fail> {
        let len = match tag {
            SMALL_ATOM_UTF8_EXT => usize::from(self.r.u8()?),
            ATOM_UTF8_EXT => usize::from(self.r.u16()?),
            ATOM_EXT | SMALL_ATOM_EXT => return self.latin1_atom(tag, at),
            _ => {
                let i = self.r.u8()?;
                return self
                    .cache
                    .and_then(|c| c.get(usize::from(i)).copied())
                    .ok_or_else(|| err(at, DecodeErrorKind::AtomCacheMiss(i)));
            }
        };
        let raw = self.r.take(len)?;
        Atom::try_from_utf8(raw, self.atom_budget).map_err(|e| utf8_atom_error(e, at))
    }

    /// An atom in the old Latin-1 forms (`ATOM_EXT`, `SMALL_ATOM_EXT`).
    #[inline(never)]
    fn latin1_atom(&mut self, tag: u8, at: usize) -> Result<Atom, Fail> {
        let len = if tag == ATOM_EXT {
            usize::from(self.r.u16()?)
        } else {
            usize::from(self.r.u8()?)
        };
        let raw = self.r.take(len)?;
        if !raw.is_ascii() {
            let text: String = raw.iter().map(|&b| char::from(b)).collect();
            let atom = match self.atom_budget {
                Some(b) => Atom::try_new_within(&text, b),
                None => Atom::try_new(&text),
            };
            return atom.map_err(|e| err(at, DecodeErrorKind::Atom(e)));
        }
        Atom::try_from_utf8(raw, self.atom_budget).map_err(|e| utf8_atom_error(e, at))
    }
}

#[cold]
#[inline(never)]
fn utf8_atom_error(e: AtomFromBytesError, at: usize) -> Fail {
    match e {
        AtomFromBytesError::Utf8 => err(at, DecodeErrorKind::InvalidUtf8Atom),
        AtomFromBytesError::Atom(e) => err(at, DecodeErrorKind::Atom(e)),
    }
}

/// An integer from little-endian magnitude bytes, as `Int` when it fits.
fn big_term(negative: bool, digits: &[u8]) -> Term {
    if digits.len() <= 8 {
        let mut m: u64 = 0;
        for (i, &d) in digits.iter().enumerate() {
            m |= u64::from(d) << (8 * i);
        }
        if !negative {
            if let Ok(i) = i64::try_from(m) {
                return Term::Int(i);
            }
        } else if m <= 1u64 << 63 {
            return Term::Int((m as i64).wrapping_neg());
        }
    }
    let sign = if negative { Sign::Minus } else { Sign::Plus };
    let b = BigInt::from_bytes_le(sign, digits);
    match b.to_i64() {
        Some(i) => Term::Int(i),
        None => Term::BigInt(Box::new(b)),
    }
}

/// Checks a decoded map for duplicate keys (which `binary_to_term`
/// rejects). Maps from OTP with up to 32 keys arrive sorted, which makes
/// the check a single pass.
fn check_map(entries: Vec<(Term, Term)>, at: usize) -> Result<Map, Fail> {
    use std::cmp::Ordering;
    let sorted = entries.windows(2).all(|w| match w {
        [a, b] => a.0.exact_cmp(&b.0) == Ordering::Less,
        _ => true,
    });
    if !sorted {
        let mut keys: Vec<&Term> = entries.iter().map(|(k, _)| k).collect();
        keys.sort_by(|a, b| a.exact_cmp(b));
        if keys
            .windows(2)
            .any(|w| matches!(w, [a, b] if a.exact_eq(b)))
        {
            return Err(err(at, DecodeErrorKind::DuplicateMapKey));
        }
    }
    Ok(Map { entries })
}
