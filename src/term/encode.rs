//! Encoding the External Term Format, byte for byte as OTP's
//! `term_to_binary(T, [{minor_version, 2}])` (the OTP 26+ default) writes it:
//! the smallest integer form, `STRING_EXT` for lists of bytes, UTF-8 atoms,
//! and maps of up to 32 keys in key order.

use std::cmp::Ordering;
use std::io::Write;

use bytes::BufMut;
use num_bigint::{BigInt, Sign};

use super::atom::{Atom, MAX_ATOM_CHARS};
use super::tags::*;
use super::{Fun, Map, Pid, Term};

/// Why a term could not be encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A float that is NaN or infinite (Erlang floats are finite).
    #[error("float {0} is not finite")]
    NonFiniteFloat(f64),
    /// An atom longer than 255 characters.
    #[error("atom of {0} characters is longer than 255")]
    AtomTooLong(usize),
    /// A map with the same key twice.
    #[error("map has a duplicate key")]
    DuplicateMapKey,
    /// A bitstring whose bit count is outside 1..=8.
    #[error("bitstring bit count {0} not in 1..=8")]
    BadBitCount(u8),
    /// A size that does not fit its length field.
    #[error("{0} too large for the external format")]
    TooLarge(&'static str),
    /// Nesting deeper than the encoder's limit.
    #[error("nesting deeper than {0}")]
    TooDeep(usize),
    /// zlib failed (only when compressing).
    #[error("compression failed: {0}")]
    Compression(String),
}

/// A configured encoder.
///
/// ```
/// use erldist::{term, Encoder};
/// let bytes = Encoder::new().encode(&term!({ok, 42})).unwrap();
/// assert_eq!(bytes, [131, 104, 2, 119, 2, b'o', b'k', 97, 42]);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Encoder {
    compression: Option<u32>,
    max_depth: usize,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder {
            compression: None,
            max_depth: 1 << 16,
        }
    }
}

impl Encoder {
    /// An encoder that writes what `term_to_binary(T, [{minor_version, 2}])`
    /// writes.
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Compresses with zlib at `level` (0..=9; OTP's `compressed` is 6), as
    /// `term_to_binary(T, [compressed])`: the compressed form is written
    /// only when it is smaller.
    pub fn compressed(mut self, level: u32) -> Encoder {
        self.compression = Some(level.min(9));
        self
    }

    /// Sets the deepest nesting the encoder accepts (default 65536).
    pub fn max_depth(mut self, depth: usize) -> Encoder {
        self.max_depth = depth;
        self
    }

    /// Encodes `term` with the version byte 131.
    pub fn encode(&self, term: &Term) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::with_capacity(64);
        self.encode_to(term, &mut out)?;
        Ok(out)
    }

    /// Appends `term`, with the version byte 131, to `out`.
    pub fn encode_to<B: BufMut>(&self, term: &Term, out: &mut B) -> Result<(), EncodeError> {
        match self.compression {
            None => {
                out.put_u8(VERSION);
                self.encode_body(term, out)
            }
            Some(level) => {
                let mut body = Vec::new();
                self.encode_body(term, &mut body)?;
                let mut z = flate2::write::ZlibEncoder::new(
                    Vec::with_capacity(body.len() / 2 + 16),
                    flate2::Compression::new(level),
                );
                z.write_all(&body)
                    .map_err(|e| EncodeError::Compression(e.to_string()))?;
                let packed = z
                    .finish()
                    .map_err(|e| EncodeError::Compression(e.to_string()))?;
                out.put_u8(VERSION);
                if packed.len() + 5 < body.len() {
                    out.put_u8(COMPRESSED);
                    out.put_u32(
                        u32::try_from(body.len()).map_err(|_| EncodeError::TooLarge("term"))?,
                    );
                    out.put_slice(&packed);
                } else {
                    out.put_slice(&body);
                }
                Ok(())
            }
        }
    }

    /// Appends `term` without a version byte (as terms follow a
    /// distribution header).
    pub fn encode_body<B: BufMut>(&self, term: &Term, out: &mut B) -> Result<(), EncodeError> {
        Writer {
            out,
            max_depth: self.max_depth,
            cache: None,
        }
        .term(term, 0)
    }

    /// Appends `term` without a version byte, writing `ATOM_CACHE_REF i`
    /// for each atom for which `atom_ref` returns `Some(i)` (the index of
    /// the atom in a distribution header's atom cache references) and the
    /// atom's text otherwise.
    pub fn encode_body_with_atom_refs<B: BufMut>(
        &self,
        term: &Term,
        out: &mut B,
        atom_ref: &mut dyn FnMut(Atom) -> Option<u8>,
    ) -> Result<(), EncodeError> {
        Writer {
            out,
            max_depth: self.max_depth,
            cache: Some(atom_ref),
        }
        .term(term, 0)
    }
}

impl Term {
    /// Encodes the term as `term_to_binary(T, [{minor_version, 2}])` does.
    ///
    /// # Errors
    /// An [`EncodeError`] for terms Erlang cannot hold: non-finite floats,
    /// atoms over 255 characters, maps with duplicate keys.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        Encoder::new().encode(self)
    }
}

/// Decides, per atom, whether to write `ATOM_CACHE_REF` with the given
/// index instead of the atom's text.
type AtomRefs<'a> = Option<&'a mut dyn FnMut(Atom) -> Option<u8>>;

struct Writer<'o, 'a, B> {
    out: &'o mut B,
    max_depth: usize,
    cache: AtomRefs<'a>,
}

impl<B: BufMut> Writer<'_, '_, B> {
    fn term(&mut self, t: &Term, depth: usize) -> Result<(), EncodeError> {
        if depth > self.max_depth {
            return Err(EncodeError::TooDeep(self.max_depth));
        }
        match t {
            Term::Int(i) => {
                self.int(*i);
                Ok(())
            }
            // Checking the stack costs a little; every 16 levels is enough.
            Term::Tuple(_)
            | Term::List(_)
            | Term::ImproperList(_)
            | Term::Map(_)
            | Term::Fun(_)
                if depth % 16 == 0 =>
            {
                super::deep(|| self.term_at(t, depth))
            }
            _ => self.term_at(t, depth),
        }
    }

    fn term_at(&mut self, t: &Term, depth: usize) -> Result<(), EncodeError> {
        match t {
            Term::Int(i) => self.int(*i),
            Term::BigInt(b) => self.big(b),
            Term::Float(f) => {
                if !f.is_finite() {
                    return Err(EncodeError::NonFiniteFloat(*f));
                }
                self.out.put_u8(NEW_FLOAT_EXT);
                self.out.put_f64(*f);
            }
            Term::Atom(a) => self.atom(*a)?,
            Term::Binary(b) => {
                self.out.put_u8(BINARY_EXT);
                self.out.put_u32(len32(b.len(), "binary")?);
                self.out.put_slice(b);
            }
            Term::BitBinary(bb) => {
                if !(1..=8).contains(&bb.bits) {
                    return Err(EncodeError::BadBitCount(bb.bits));
                }
                if bb.bytes.is_empty() {
                    self.out.put_u8(BINARY_EXT);
                    self.out.put_u32(0);
                } else if bb.bits == 8 {
                    self.out.put_u8(BINARY_EXT);
                    self.out.put_u32(len32(bb.bytes.len(), "binary")?);
                    self.out.put_slice(&bb.bytes);
                } else {
                    self.out.put_u8(BIT_BINARY_EXT);
                    self.out.put_u32(len32(bb.bytes.len(), "bitstring")?);
                    self.out.put_u8(bb.bits);
                    let (init, last) = bb.bytes.split_at(bb.bytes.len() - 1);
                    self.out.put_slice(init);
                    // The unused low bits are written as zeros.
                    self.out.put_u8(last[0] & (0xffu8 << (8 - bb.bits)));
                }
            }
            Term::Tuple(v) => {
                if v.len() < 256 {
                    self.out.put_u8(SMALL_TUPLE_EXT);
                    self.out.put_u8(v.len() as u8);
                } else {
                    self.out.put_u8(LARGE_TUPLE_EXT);
                    self.out.put_u32(len32(v.len(), "tuple")?);
                }
                for e in v {
                    self.term(e, depth + 1)?;
                }
            }
            Term::List(v) => self.list(v, None, depth)?,
            Term::ByteList(b) => {
                if b.is_empty() {
                    self.out.put_u8(NIL_EXT);
                } else if b.len() <= 0xffff {
                    self.out.put_u8(STRING_EXT);
                    self.out.put_u16(b.len() as u16);
                    self.out.put_slice(b);
                } else {
                    self.out.put_u8(LIST_EXT);
                    self.out.put_u32(len32(b.len(), "list")?);
                    for &c in b.iter() {
                        self.out.put_u8(SMALL_INTEGER_EXT);
                        self.out.put_u8(c);
                    }
                    self.out.put_u8(NIL_EXT);
                }
            }
            Term::ImproperList(l) => self.list(&l.elems, Some(&l.tail), depth)?,
            Term::Map(m) => self.map(m, depth)?,
            Term::Pid(p) => self.pid(p)?,
            Term::Port(p) => {
                // OTP writes port numbers of up to 28 bits in the old form.
                if p.id < 1 << 28 {
                    self.out.put_u8(NEW_PORT_EXT);
                    self.atom(p.node)?;
                    self.out.put_u32(p.id as u32);
                } else {
                    self.out.put_u8(V4_PORT_EXT);
                    self.atom(p.node)?;
                    self.out.put_u64(p.id);
                }
                self.out.put_u32(p.creation);
            }
            Term::Ref(r) => {
                self.out.put_u8(NEWER_REFERENCE_EXT);
                self.out.put_u16(r.ids().len() as u16);
                self.atom(r.node)?;
                self.out.put_u32(r.creation);
                for &w in r.ids() {
                    self.out.put_u32(w);
                }
            }
            Term::Fun(f) => match &**f {
                Fun::Export {
                    module,
                    function,
                    arity,
                } => {
                    self.out.put_u8(EXPORT_EXT);
                    self.atom(*module)?;
                    self.atom(*function)?;
                    self.out.put_u8(SMALL_INTEGER_EXT);
                    self.out.put_u8(*arity);
                }
                Fun::Local(l) => {
                    // The size field counts from itself to the end; measure
                    // the body first, since a BufMut cannot be patched.
                    let mut body = Vec::with_capacity(64);
                    {
                        let mut w = Writer {
                            out: &mut body,
                            max_depth: self.max_depth,
                            cache: self.cache.take(),
                        };
                        w.out.put_u8(l.arity);
                        w.out.put_slice(&l.uniq);
                        w.out.put_u32(l.index);
                        w.out.put_u32(len32(l.free_vars.len(), "fun environment")?);
                        w.atom(l.module)?;
                        w.int(i64::from(l.old_index));
                        w.int(i64::from(l.old_uniq));
                        w.pid(&l.pid)?;
                        let written = l.free_vars.iter().try_for_each(|v| w.term(v, depth + 1));
                        self.cache = w.cache.take();
                        written?;
                    }
                    self.out.put_u8(NEW_FUN_EXT);
                    self.out.put_u32(len32(body.len() + 4, "fun")?);
                    self.out.put_slice(&body);
                }
            },
        }
        Ok(())
    }

    fn int(&mut self, i: i64) {
        if (0..=255).contains(&i) {
            self.out.put_u8(SMALL_INTEGER_EXT);
            self.out.put_u8(i as u8);
        } else if let Ok(i) = i32::try_from(i) {
            self.out.put_u8(INTEGER_EXT);
            self.out.put_i32(i);
        } else {
            let m = i.unsigned_abs();
            let n = 8 - (m.leading_zeros() / 8) as usize;
            self.out.put_u8(SMALL_BIG_EXT);
            self.out.put_u8(n as u8);
            self.out.put_u8(u8::from(i < 0));
            self.out.put_slice(&m.to_le_bytes()[..n]);
        }
    }

    fn big(&mut self, b: &BigInt) {
        if let Ok(i) = i64::try_from(b) {
            return self.int(i);
        }
        let (sign, digits) = b.to_bytes_le();
        if digits.len() < 256 {
            self.out.put_u8(SMALL_BIG_EXT);
            self.out.put_u8(digits.len() as u8);
        } else {
            self.out.put_u8(LARGE_BIG_EXT);
            // A BigInt of 2^32 bytes is beyond any memory this runs in.
            self.out.put_u32(digits.len() as u32);
        }
        self.out.put_u8(u8::from(sign == Sign::Minus));
        self.out.put_slice(&digits);
    }

    fn atom(&mut self, a: Atom) -> Result<(), EncodeError> {
        if let Some(i) = self.cache.as_mut().and_then(|f| f(a)) {
            self.out.put_u8(ATOM_CACHE_REF);
            self.out.put_u8(i);
            return Ok(());
        }
        let s = a.as_str();
        if s.len() < 256 {
            self.out.put_u8(SMALL_ATOM_UTF8_EXT);
            self.out.put_u8(s.len() as u8);
        } else {
            let chars = s.chars().count();
            if chars > MAX_ATOM_CHARS {
                return Err(EncodeError::AtomTooLong(chars));
            }
            self.out.put_u8(ATOM_UTF8_EXT);
            self.out.put_u16(s.len() as u16);
        }
        self.out.put_slice(s.as_bytes());
        Ok(())
    }

    fn pid(&mut self, p: &Pid) -> Result<(), EncodeError> {
        self.out.put_u8(NEW_PID_EXT);
        self.atom(p.node)?;
        self.out.put_u32(p.id);
        self.out.put_u32(p.serial);
        self.out.put_u32(p.creation);
        Ok(())
    }

    fn list(
        &mut self,
        elems: &[Term],
        tail: Option<&Term>,
        depth: usize,
    ) -> Result<(), EncodeError> {
        if elems.is_empty() {
            return match tail {
                None => {
                    self.out.put_u8(NIL_EXT);
                    Ok(())
                }
                Some(t) => self.term(t, depth),
            };
        }
        if tail.is_none() && elems.len() <= 0xffff && elems.iter().all(is_byte) {
            self.out.put_u8(STRING_EXT);
            self.out.put_u16(elems.len() as u16);
            for e in elems {
                if let Term::Int(i) = e {
                    self.out.put_u8(*i as u8);
                }
            }
            return Ok(());
        }
        self.out.put_u8(LIST_EXT);
        self.out.put_u32(len32(elems.len(), "list")?);
        for e in elems {
            self.term(e, depth + 1)?;
        }
        match tail {
            None => self.out.put_u8(NIL_EXT),
            Some(t) => self.term(t, depth + 1)?,
        }
        Ok(())
    }

    fn map(&mut self, m: &Map, depth: usize) -> Result<(), EncodeError> {
        self.out.put_u8(MAP_EXT);
        self.out.put_u32(len32(m.len(), "map")?);
        let in_order = m
            .entries
            .windows(2)
            .all(|w| w[0].0.exact_cmp(&w[1].0) == Ordering::Less);
        if in_order || m.len() > 32 {
            for (k, v) in &m.entries {
                self.term(k, depth + 1)?;
                self.term(v, depth + 1)?;
            }
            return Ok(());
        }
        // OTP writes small maps in key order.
        let mut sorted: Vec<&(Term, Term)> = m.entries.iter().collect();
        sorted.sort_by(|a, b| a.0.exact_cmp(&b.0));
        if sorted.windows(2).any(|w| w[0].0.exact_eq(&w[1].0)) {
            return Err(EncodeError::DuplicateMapKey);
        }
        for (k, v) in sorted {
            self.term(k, depth + 1)?;
            self.term(v, depth + 1)?;
        }
        Ok(())
    }
}

fn is_byte(t: &Term) -> bool {
    matches!(t, Term::Int(i) if (0..=255).contains(i))
}

fn len32(n: usize, what: &'static str) -> Result<u32, EncodeError> {
    u32::try_from(n).map_err(|_| EncodeError::TooLarge(what))
}
