//! Encoding the External Term Format, byte for byte as OTP's
//! `term_to_binary(T, [{minor_version, 2}])` (the OTP 26+ default) writes it:
//! the smallest integer form, `STRING_EXT` for lists of bytes, UTF-8 atoms,
//! and maps of up to 32 keys in key order.

use std::cmp::Ordering;
use std::io::Write;

use bytes::{BufMut, Bytes, BytesMut};
use num_bigint::{BigInt, Sign};

use super::atom::Atom;
use super::tags::*;
use super::{Fun, Map, Pid, Reference, Term, SMALL_MAP};

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
            None => match term {
                // A lone binary or string: the version byte and the header
                // in one write.
                Term::Binary(b) if b.len() <= u32::MAX as usize => {
                    let n = (b.len() as u32).to_be_bytes();
                    out.put_slice(&[VERSION, BINARY_EXT, n[0], n[1], n[2], n[3]]);
                    out.put_slice(b);
                    Ok(())
                }
                Term::ByteList(b) if !b.is_empty() && b.len() <= 0xffff => {
                    let n = (b.len() as u16).to_be_bytes();
                    out.put_slice(&[VERSION, STRING_EXT, n[0], n[1]]);
                    out.put_slice(b);
                    Ok(())
                }
                _ => {
                    out.put_u8(VERSION);
                    self.encode_body(term, out)
                }
            },
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
    #[inline]
    pub fn encode_body<B: BufMut>(&self, term: &Term, out: &mut B) -> Result<(), EncodeError> {
        Writer {
            out,
            max_depth: self.max_depth,
            refs: &mut NoRefs,
        }
        .top(term)
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
            refs: &mut DynRefs(atom_ref),
        }
        .top(term)
    }

    /// Appends `term` without a version byte, as
    /// [`encode_body_with_atom_refs`](Self::encode_body_with_atom_refs)
    /// does (every atom as text without `atom_ref`), except that binaries
    /// of [`SHARE_MIN`] bytes or more are not copied: their bytes are left
    /// out of `out` and returned, each with the offset (from where `out`
    /// ended before the call) at which they belong.
    pub(crate) fn encode_body_sharing(
        &self,
        term: &Term,
        out: &mut BytesMut,
        atom_ref: Option<&mut dyn FnMut(Atom) -> Option<u8>>,
    ) -> Result<Vec<(usize, Bytes)>, EncodeError> {
        let mut sharing = Sharing {
            atom_ref,
            start: out.remaining_mut(),
            shared: Vec::new(),
        };
        Writer {
            out,
            max_depth: self.max_depth,
            refs: &mut sharing,
        }
        .top(term)?;
        Ok(sharing.shared)
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

/// Binaries of at least this many bytes may be left out of the output and
/// shared instead (see [`Encoder::encode_body_sharing`]).
pub(crate) const SHARE_MIN: usize = 16 * 1024;

/// Decides, per atom, whether to write `ATOM_CACHE_REF` with the given
/// index instead of the atom's text; and, per large binary, whether to
/// take it aside instead of copying it into the output.
trait AtomRefs {
    fn index(&mut self, a: Atom) -> Option<u8>;

    /// Takes `b` aside, given the output's `remaining_mut()` where its
    /// bytes would go; `false` to have them copied.
    #[inline]
    fn share(&mut self, _remaining_mut: usize, _b: &Bytes) -> bool {
        false
    }
}

/// Another writer's choice of atoms, with no binary taken aside (for a
/// nested buffer whose bytes are copied into the output later).
struct NoShare<'a>(&'a mut dyn AtomRefs);

impl AtomRefs for NoShare<'_> {
    #[inline]
    fn index(&mut self, a: Atom) -> Option<u8> {
        self.0.index(a)
    }
}

/// Atom references as given, and large binaries taken aside with their
/// offset in the output.
struct Sharing<'a> {
    atom_ref: Option<&'a mut dyn FnMut(Atom) -> Option<u8>>,
    /// The output's `remaining_mut()` when writing began.
    start: usize,
    shared: Vec<(usize, Bytes)>,
}

impl AtomRefs for Sharing<'_> {
    #[inline]
    fn index(&mut self, a: Atom) -> Option<u8> {
        self.atom_ref.as_mut().and_then(|f| f(a))
    }

    fn share(&mut self, remaining_mut: usize, b: &Bytes) -> bool {
        match self.start.checked_sub(remaining_mut) {
            Some(offset) => {
                self.shared.push((offset, b.clone()));
                true
            }
            None => false,
        }
    }
}

/// Every atom written as text (the plain encoder: no check per atom).
struct NoRefs;

impl AtomRefs for NoRefs {
    #[inline(always)]
    fn index(&mut self, _: Atom) -> Option<u8> {
        None
    }
}

/// The distribution header's choice, atom by atom.
struct DynRefs<'a>(&'a mut dyn FnMut(Atom) -> Option<u8>);

impl AtomRefs for DynRefs<'_> {
    #[inline]
    fn index(&mut self, a: Atom) -> Option<u8> {
        (self.0)(a)
    }
}

/// The writer's error: boxed, so that the result of each step fits in a
/// register (errors are rare; the success path is what runs).
type Step = Result<(), Box<EncodeError>>;

#[cold]
#[inline(never)]
fn fail(e: EncodeError) -> Box<EncodeError> {
    Box::new(e)
}

struct Writer<'o, 'r, B, C: ?Sized> {
    out: &'o mut B,
    max_depth: usize,
    refs: &'r mut C,
}

impl<B: BufMut, C: AtomRefs> Writer<'_, '_, B, C> {
    #[inline]
    fn top(&mut self, t: &Term) -> Result<(), EncodeError> {
        self.term(t, 0).map_err(|e| *e)
    }

    /// Writes `t`, at nesting `depth` (already within the limit): the
    /// common scalars inline, the rest out of line.
    #[inline(always)]
    fn term(&mut self, t: &Term, depth: usize) -> Step {
        match t {
            Term::Int(i) => {
                self.int(*i);
                Ok(())
            }
            Term::Atom(a) => self.atom(*a),
            Term::Binary(b) => self.binary(b),
            _ => self.other(t, depth),
        }
    }

    /// Checks that the elements of a compound term at `depth` may nest one
    /// level deeper.
    #[inline(always)]
    fn inner(&self, depth: usize) -> Result<usize, Box<EncodeError>> {
        let d = depth + 1;
        if d > self.max_depth {
            return Err(fail(EncodeError::TooDeep(self.max_depth)));
        }
        Ok(d)
    }

    #[inline(never)]
    fn other(&mut self, t: &Term, depth: usize) -> Step {
        match t {
            // Checking the stack costs a little; every 16 levels is
            // enough, and not at the top, where most terms end well before
            // the first check.
            Term::Tuple(_)
            | Term::List(_)
            | Term::ImproperList(_)
            | Term::Map(_)
            | Term::Fun(_)
                if depth % 16 == 15 =>
            {
                super::deep(|| self.other_at(t, depth))
            }
            _ => self.other_at(t, depth),
        }
    }

    #[inline(always)]
    fn other_at(&mut self, t: &Term, depth: usize) -> Step {
        match t {
            Term::Int(i) => self.int(*i),
            Term::Atom(a) => self.atom(*a)?,
            Term::Binary(b) => self.binary(b)?,
            Term::BigInt(b) => self.big(b),
            Term::Float(f) => {
                if !f.is_finite() {
                    return Err(fail(EncodeError::NonFiniteFloat(*f)));
                }
                let b = f.to_bits().to_be_bytes();
                self.out.put_slice(&[
                    NEW_FLOAT_EXT,
                    b[0],
                    b[1],
                    b[2],
                    b[3],
                    b[4],
                    b[5],
                    b[6],
                    b[7],
                ]);
            }
            Term::BitBinary(bb) => {
                if !(1..=8).contains(&bb.bits) {
                    return Err(fail(EncodeError::BadBitCount(bb.bits)));
                }
                if bb.bytes.is_empty() {
                    self.out.put_slice(&[BINARY_EXT, 0, 0, 0, 0]);
                } else if bb.bits == 8 {
                    self.binary(&bb.bytes)?;
                } else {
                    let n = len32(bb.bytes.len(), "bitstring")?.to_be_bytes();
                    self.out
                        .put_slice(&[BIT_BINARY_EXT, n[0], n[1], n[2], n[3], bb.bits]);
                    let (init, last) = bb.bytes.split_at(bb.bytes.len() - 1);
                    self.out.put_slice(init);
                    // The unused low bits are written as zeros.
                    self.out.put_u8(last[0] & (0xffu8 << (8 - bb.bits)));
                }
            }
            Term::Tuple(v) => self.tuple(v, depth)?,
            Term::List(v) => self.list(v, None, depth)?,
            Term::ByteList(b) => {
                if b.is_empty() {
                    self.out.put_u8(NIL_EXT);
                } else if b.len() <= 0xffff {
                    let n = (b.len() as u16).to_be_bytes();
                    self.out.put_slice(&[STRING_EXT, n[0], n[1]]);
                    self.out.put_slice(b);
                } else {
                    let n = len32(b.len(), "list")?.to_be_bytes();
                    self.out.put_slice(&[LIST_EXT, n[0], n[1], n[2], n[3]]);
                    for &c in b.iter() {
                        self.out.put_slice(&[SMALL_INTEGER_EXT, c]);
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
                let ids = r.ids();
                let n = (ids.len() as u16).to_be_bytes();
                self.out.put_slice(&[NEWER_REFERENCE_EXT, n[0], n[1]]);
                self.atom(r.node)?;
                let mut words = [0u8; 4 + 4 * Reference::MAX_WORDS];
                words[..4].copy_from_slice(&r.creation.to_be_bytes());
                for (chunk, w) in words[4..].chunks_exact_mut(4).zip(ids) {
                    chunk.copy_from_slice(&w.to_be_bytes());
                }
                if ids.len() == 3 {
                    // As OTP makes them: a fixed-size write.
                    self.out.put_slice(&words[..16]);
                } else {
                    self.out.put_slice(&words[..4 + 4 * ids.len()]);
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
                    self.out.put_slice(&[SMALL_INTEGER_EXT, *arity]);
                }
                Fun::Local(l) => {
                    // The size field counts from itself to the end; measure
                    // the body first, since a BufMut cannot be patched.
                    let mut body = Vec::with_capacity(64);
                    {
                        let mut w = Writer {
                            out: &mut body,
                            max_depth: self.max_depth,
                            refs: &mut NoShare(&mut *self.refs as &mut dyn AtomRefs),
                        };
                        w.out.put_u8(l.arity);
                        w.out.put_slice(&l.uniq);
                        w.out.put_u32(l.index);
                        w.out.put_u32(len32(l.free_vars.len(), "fun environment")?);
                        w.atom(l.module)?;
                        w.int(i64::from(l.old_index));
                        w.int(i64::from(l.old_uniq));
                        w.pid(&l.pid)?;
                        if !l.free_vars.is_empty() {
                            let d = w.inner(depth)?;
                            for v in &l.free_vars {
                                w.term(v, d)?;
                            }
                        }
                    }
                    let n = len32(body.len() + 4, "fun")?.to_be_bytes();
                    self.out.put_slice(&[NEW_FUN_EXT, n[0], n[1], n[2], n[3]]);
                    self.out.put_slice(&body);
                }
            },
        }
        Ok(())
    }

    #[inline(always)]
    fn int(&mut self, i: i64) {
        if (0..=255).contains(&i) {
            self.out.put_slice(&[SMALL_INTEGER_EXT, i as u8]);
        } else if let Ok(i) = i32::try_from(i) {
            let b = i.to_be_bytes();
            self.out.put_slice(&[INTEGER_EXT, b[0], b[1], b[2], b[3]]);
        } else {
            self.small_big(i);
        }
    }

    #[inline(never)]
    fn small_big(&mut self, i: i64) {
        let m = i.unsigned_abs();
        let n = 8 - (m.leading_zeros() / 8) as usize;
        let mut b = [0u8; 11];
        b[0] = SMALL_BIG_EXT;
        b[1] = n as u8;
        b[2] = u8::from(i < 0);
        b[3..].copy_from_slice(&m.to_le_bytes());
        self.out.put_slice(&b[..3 + n]);
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

    #[inline(always)]
    fn binary(&mut self, b: &Bytes) -> Step {
        let n = len32(b.len(), "binary")?.to_be_bytes();
        self.out.put_slice(&[BINARY_EXT, n[0], n[1], n[2], n[3]]);
        if b.len() >= SHARE_MIN {
            self.large_binary(b);
        } else {
            self.out.put_slice(b);
        }
        Ok(())
    }

    /// A large binary's bytes: shared if the caller takes them, else
    /// copied (out of line: the common path stays small).
    #[inline(never)]
    fn large_binary(&mut self, b: &Bytes) {
        if !self.refs.share(self.out.remaining_mut(), b) {
            self.out.put_slice(b);
        }
    }

    #[inline(always)]
    fn atom(&mut self, a: Atom) -> Step {
        if let Some(i) = self.refs.index(a) {
            self.out.put_slice(&[ATOM_CACHE_REF, i]);
            return Ok(());
        }
        match a.ext_bytes() {
            Some(ext) => {
                self.out.put_slice(ext);
                Ok(())
            }
            None => Err(too_long(a)),
        }
    }

    fn pid(&mut self, p: &Pid) -> Step {
        self.out.put_u8(NEW_PID_EXT);
        self.atom(p.node)?;
        let (i, s, c) = (
            p.id.to_be_bytes(),
            p.serial.to_be_bytes(),
            p.creation.to_be_bytes(),
        );
        self.out.put_slice(&[
            i[0], i[1], i[2], i[3], s[0], s[1], s[2], s[3], c[0], c[1], c[2], c[3],
        ]);
        Ok(())
    }

    fn tuple(&mut self, v: &[Term], depth: usize) -> Step {
        if v.len() < 256 {
            self.out.put_slice(&[SMALL_TUPLE_EXT, v.len() as u8]);
        } else {
            let n = len32(v.len(), "tuple")?.to_be_bytes();
            self.out
                .put_slice(&[LARGE_TUPLE_EXT, n[0], n[1], n[2], n[3]]);
        }
        if v.is_empty() {
            return Ok(());
        }
        let d = self.inner(depth)?;
        for e in v {
            self.term(e, d)?;
        }
        Ok(())
    }

    fn list(&mut self, elems: &[Term], tail: Option<&Term>, depth: usize) -> Step {
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
            let n = (elems.len() as u16).to_be_bytes();
            self.out.put_slice(&[STRING_EXT, n[0], n[1]]);
            let mut chunk = [0u8; 64];
            for part in elems.chunks(chunk.len()) {
                for (c, e) in chunk.iter_mut().zip(part) {
                    if let Term::Int(i) = e {
                        *c = *i as u8;
                    }
                }
                self.out.put_slice(&chunk[..part.len()]);
            }
            return Ok(());
        }
        let n = len32(elems.len(), "list")?.to_be_bytes();
        self.out.put_slice(&[LIST_EXT, n[0], n[1], n[2], n[3]]);
        let d = self.inner(depth)?;
        for e in elems {
            self.term(e, d)?;
        }
        match tail {
            None => self.out.put_u8(NIL_EXT),
            Some(t) => self.term(t, d)?,
        }
        Ok(())
    }

    fn map(&mut self, m: &Map, depth: usize) -> Step {
        let n = len32(m.len(), "map")?.to_be_bytes();
        self.out.put_slice(&[MAP_EXT, n[0], n[1], n[2], n[3]]);
        if m.entries.is_empty() {
            return Ok(());
        }
        let in_order = m.len() > SMALL_MAP
            || m.entries
                .windows(2)
                .all(|w| key_cmp(&w[0].0, &w[1].0) == Ordering::Less);
        if in_order {
            let d = self.inner(depth)?;
            for (k, v) in &m.entries {
                self.term(k, d)?;
                self.term(v, d)?;
            }
            return Ok(());
        }
        // OTP writes small maps in key order.
        let mut sorted: Vec<&(Term, Term)> = m.entries.iter().collect();
        sorted.sort_by(|a, b| key_cmp(&a.0, &b.0));
        if sorted
            .windows(2)
            .any(|w| key_cmp(&w[0].0, &w[1].0) == Ordering::Equal)
        {
            return Err(fail(EncodeError::DuplicateMapKey));
        }
        let d = self.inner(depth)?;
        for (k, v) in sorted {
            self.term(k, d)?;
            self.term(v, d)?;
        }
        Ok(())
    }
}

/// The exact order of map keys ([`Term::exact_cmp`]), with the common
/// cases of atom and integer keys first.
#[inline]
fn key_cmp(a: &Term, b: &Term) -> Ordering {
    match (a, b) {
        (Term::Atom(x), Term::Atom(y)) => x.cmp(y),
        (Term::Int(x), Term::Int(y)) => x.cmp(y),
        _ => a.exact_cmp(b),
    }
}

#[cold]
#[inline(never)]
fn too_long(a: Atom) -> Box<EncodeError> {
    fail(EncodeError::AtomTooLong(a.as_str().chars().count()))
}

fn is_byte(t: &Term) -> bool {
    matches!(t, Term::Int(i) if (0..=255).contains(i))
}

fn len32(n: usize, what: &'static str) -> Result<u32, EncodeError> {
    u32::try_from(n).map_err(|_| EncodeError::TooLarge(what))
}
