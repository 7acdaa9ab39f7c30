//! Encoding the External Term Format, byte for byte as OTP's
//! `term_to_binary(T, [{minor_version, 2}])` (the OTP 26+ default) writes it:
//! the smallest integer form, `STRING_EXT` for lists of bytes, UTF-8 atoms,
//! and maps of up to 32 keys in key order.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::io::Write;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use num_bigint::{BigInt, Sign};

use super::atom::{Atom, EXT_BLOCK};
use super::binary::BinaryView;
use super::tags::*;
use super::{Binary, Fun, Map, Pid, Reference, Term, INLINE_BINARY, SMALL_MAP};

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
        // A lone binary or string: its exact size; else room for most
        // messages.
        let size = match term {
            Term::Binary(b) => 6 + b.len(),
            Term::ByteList(b) => 4 + b.len(),
            _ => 64,
        };
        let mut out = Vec::with_capacity(size);
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
                _ => self.gathered(term, out, true, &mut NoRefs),
            },
            Some(level) => {
                let mut body = Vec::new();
                self.gathered(term, &mut body, false, &mut NoRefs)?;
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
        self.gathered(term, out, false, &mut NoRefs)
    }

    /// Writes `term` (after the version byte if `version`) to `out`, which
    /// may be any `BufMut`, through a [`Stage`].
    #[inline(always)]
    fn gathered<B: BufMut, C: AtomRefs>(
        &self,
        term: &Term,
        out: &mut B,
        version: bool,
        refs: &mut C,
    ) -> Result<(), EncodeError> {
        let mut stage = Stage::new(out);
        let at = if version {
            stage.put_array(0, [VERSION])
        } else {
            0
        };
        let r = self.write(at, term, &mut stage, refs);
        if let Ok(at) = r {
            stage.flush(at);
        }
        r.map(|_| ())
    }

    /// Writes `term` (no version byte) to `out`.
    #[inline(always)]
    fn write<O: Out, C: AtomRefs>(
        &self,
        at: usize,
        term: &Term,
        out: &mut O,
        refs: &mut C,
    ) -> Result<usize, EncodeError> {
        Writer {
            out,
            max_depth: self.max_depth,
            refs,
        }
        .top(at, term)
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
        self.gathered(term, out, false, &mut DynRefs(atom_ref))
    }

    /// Appends `term` without a version byte, as
    /// [`encode_body_with_atom_refs`](Self::encode_body_with_atom_refs)
    /// does (every atom as text without `atom_ref`), except that binaries
    /// of [`SHARE_MIN`] bytes or more are not copied: their bytes are left
    /// out of `out` and returned, each with the offset (from where `out`
    /// ended before the call) at which they belong. `atom_ref` must give
    /// the same answer each time it is asked for the same atom during the
    /// call (a frame's references do): an answer is reused for the same
    /// atom asked for again right after.
    pub(crate) fn encode_body_sharing(
        &self,
        term: &Term,
        out: &mut BytesMut,
        atom_ref: Option<&mut dyn FnMut(Atom) -> Option<u8>>,
    ) -> Result<Vec<(usize, Bytes)>, EncodeError> {
        let mut sharing = Sharing {
            atom_ref,
            last: None,
            shared: Vec::new(),
        };
        self.gathered(term, out, false, &mut sharing)?;
        Ok(sharing.shared)
    }

    /// Encodes `term` with the version byte 131, as [`Encoder::encode`]
    /// does, except that binaries of 16 KiB or more are not copied: the
    /// result holds the bytes written around them and the binaries
    /// themselves (`Bytes`, shared with `term`), in order.
    ///
    /// [`Encoded`] is a [`bytes::Buf`] whose
    /// [`chunks_vectored`](Buf::chunks_vectored) gives every piece, so a
    /// vectored write (`tokio::io::AsyncWriteExt::write_all_buf`, or
    /// `writev`) sends the term without ever copying its large binaries.
    /// This avoids the copy; it does not make copying faster: for terms
    /// without large binaries it costs a little more than
    /// [`Encoder::encode`] (one allocation more). With
    /// [`compressed`](Encoder::compressed) the bytes are compressed as
    /// usual, in one piece.
    ///
    /// ```
    /// use bytes::{Buf, Bytes};
    /// use erldist::{Encoder, Term};
    ///
    /// let big = Bytes::from(vec![7u8; 100_000]);
    /// let term = Term::tuple(vec![Term::atom("data"), Term::binary(big.clone())]);
    /// let enc = Encoder::new();
    /// let shared = enc.encode_shared(&term).unwrap();
    /// // The same bytes as the copying encoder writes...
    /// assert_eq!(shared.len(), 100_000 + 14);
    /// assert_eq!(shared.to_vec(), enc.encode(&term).unwrap());
    /// // ...of which the binary is the caller's own buffer, not a copy.
    /// let chunks: Vec<&[u8]> = shared.pieces().collect();
    /// assert_eq!(chunks.len(), 2);
    /// assert_eq!(chunks[1].as_ptr(), big.as_ptr());
    /// ```
    ///
    /// # Errors
    /// As [`Encoder::encode`].
    pub fn encode_shared(&self, term: &Term) -> Result<Encoded, EncodeError> {
        if self.compression.is_some() {
            return Ok(Encoded::whole(Bytes::from(self.encode(term)?)));
        }
        let mut out = BytesMut::with_capacity(64);
        let mut sharing = Sharing {
            atom_ref: None,
            last: None,
            shared: Vec::new(),
        };
        self.gathered(term, &mut out, true, &mut sharing)?;
        Ok(Encoded::new(out.freeze(), sharing.shared))
    }
}

/// A term encoded by [`Encoder::encode_shared`]: the bytes the encoder
/// wrote and, in between, the large binaries it did not copy. A
/// [`bytes::Buf`] over all of them in order (with
/// [`chunks_vectored`](Buf::chunks_vectored) for vectored writes); the
/// bytes are exactly those [`Encoder::encode`] writes.
#[derive(Clone, Debug, Default)]
pub struct Encoded {
    /// The pieces not yet consumed, in order, none of them empty.
    pieces: VecDeque<Bytes>,
    /// The bytes of all pieces.
    remaining: usize,
}

impl Encoded {
    /// One piece.
    fn whole(b: Bytes) -> Encoded {
        let mut e = Encoded::default();
        e.push(b);
        e
    }

    /// `written` with each `(offset, binary)` of `shared` put back at its
    /// offset.
    fn new(written: Bytes, shared: Vec<(usize, Bytes)>) -> Encoded {
        let mut e = Encoded::default();
        let mut at = 0;
        for (offset, b) in shared {
            e.push(written.slice(at..offset.clamp(at, written.len())));
            e.push(b);
            at = offset.clamp(at, written.len());
        }
        e.push(written.slice(at..));
        e
    }

    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.remaining += b.len();
            self.pieces.push_back(b);
        }
    }

    /// How many bytes remain (all of them until the `Buf` is advanced).
    pub fn len(&self) -> usize {
        self.remaining
    }

    /// Whether no bytes remain.
    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// The remaining pieces, in order: runs of written bytes and shared
    /// binaries.
    pub fn pieces(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.pieces.iter().map(|b| &b[..])
    }

    /// The remaining bytes in one `Vec` (a copy of every piece).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.remaining);
        for p in &self.pieces {
            v.extend_from_slice(p);
        }
        v
    }
}

impl Buf for Encoded {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.pieces.front().map_or(&[], |b| &b[..])
    }

    fn advance(&mut self, mut cnt: usize) {
        cnt = cnt.min(self.remaining);
        self.remaining -= cnt;
        while cnt > 0 {
            let Some(front) = self.pieces.front_mut() else {
                break;
            };
            if cnt < front.len() {
                front.advance(cnt);
                break;
            }
            cnt -= front.len();
            self.pieces.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, piece) in dst.iter_mut().zip(&self.pieces) {
            *slot = IoSlice::new(piece);
            n += 1;
        }
        n
    }
}

impl From<Encoded> for Vec<u8> {
    fn from(e: Encoded) -> Vec<u8> {
        e.to_vec()
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
    /// Binaries (and byte lists) this long or longer are offered to
    /// [`AtomRefs::share`].
    #[inline(always)]
    fn share_from(&self) -> usize {
        usize::MAX
    }

    fn index(&mut self, a: Atom) -> Option<u8>;

    /// Takes `b` aside, given the output's position (`Out::position`)
    /// where its bytes would go; `false` to have them copied.
    #[inline]
    fn share(&mut self, _position: usize, _b: &Bytes) -> bool {
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
/// offset in the output (counted from where the call began writing).
struct Sharing<'a> {
    atom_ref: Option<&'a mut dyn FnMut(Atom) -> Option<u8>>,
    /// The last atom asked for and `atom_ref`'s answer: a list of like
    /// terms (`[{item, ..}, ..]`) asks for the same atom again and again.
    last: Option<(Atom, Option<u8>)>,
    shared: Vec<(usize, Bytes)>,
}

impl AtomRefs for Sharing<'_> {
    #[inline(always)]
    fn share_from(&self) -> usize {
        SHARE_MIN
    }

    #[inline]
    fn index(&mut self, a: Atom) -> Option<u8> {
        let f = self.atom_ref.as_mut()?;
        match self.last {
            Some((last, ix)) if last == a => ix,
            _ => {
                let ix = f(a);
                self.last = Some((a, ix));
                ix
            }
        }
    }

    fn share(&mut self, position: usize, b: &Bytes) -> bool {
        self.shared.push((position, b.clone()));
        true
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

/// Where the writer puts its bytes: a [`Stage`] in front of any
/// `BufMut`. Small writes of a variable length (atoms, short binaries)
/// are made as fixed-size copies of which only the head is kept: no call
/// to `memcpy` for them.
///
/// The write position is not kept in the output: each write takes it
/// (`at`) and returns the next one, so that the writer carries it in a
/// register from one write to the next, through its recursive calls,
/// instead of loading and storing it in memory around every write.
trait Out {
    /// Appends `s`, of any length.
    fn put(&mut self, at: usize, s: &[u8]) -> usize;

    /// Appends the `N` bytes of `a`.
    fn put_array<const N: usize>(&mut self, at: usize, a: [u8; N]) -> usize;

    /// Appends the first `n` bytes of `block` (`n <= N`).
    fn put_padded<const N: usize>(&mut self, at: usize, block: &[u8; N], n: usize) -> usize;

    /// Lends `f` a window of `N` bytes at the end of the output; the first
    /// bytes of it, as many as `f` returns (at most `N`), are kept.
    fn window<const N: usize>(&mut self, at: usize, f: impl FnOnce(&mut [u8; N]) -> usize)
        -> usize;

    /// How many bytes were written through this output since it began
    /// (not counting what the buffer behind it already held), with the
    /// writer at `at`.
    fn position(&self, at: usize) -> usize;

    /// Appends `s`: short ones (the common case) without `memcpy`.
    #[inline(always)]
    fn put_short(&mut self, at: usize, s: &[u8]) -> usize {
        if s.len() <= SHORT {
            self.window::<SHORT>(at, |w| copy_short(w, s))
        } else {
            self.put(at, s)
        }
    }
}

/// The most integers of a list written in one window.
const INT_RUN: usize = 16;

/// The longest write that [`Out::put_short`] makes without `memcpy`.
const SHORT: usize = 64;

/// Copies `src` (at most [`SHORT`] bytes) to the start of `dst` with a few
/// fixed-size copies (the first and last bytes, overlapping), and returns
/// its length.
#[inline(always)]
fn copy_short(dst: &mut [u8; SHORT], src: &[u8]) -> usize {
    #[inline(always)]
    fn two<const K: usize>(dst: &mut [u8; SHORT], src: &[u8]) {
        let n = src.len();
        if let (Some(a), Some(b)) = (src.first_chunk::<K>(), src.last_chunk::<K>()) {
            if let Some(d) = dst.first_chunk_mut::<K>() {
                *d = *a;
            }
            if let Some(d) = dst
                .get_mut(n.saturating_sub(K)..)
                .and_then(|d| d.first_chunk_mut::<K>())
            {
                *d = *b;
            }
        }
    }
    let n = src.len();
    match n {
        32..=SHORT => two::<32>(dst, src),
        16..=31 => two::<16>(dst, src),
        8..=15 => two::<8>(dst, src),
        4..=7 => two::<4>(dst, src),
        _ => {
            for (d, s) in dst.iter_mut().zip(src.iter().take(3)) {
                *d = *s;
            }
        }
    }
    n.min(SHORT)
}

/// How many bytes a [`Stage`] gathers before passing them on (small
/// enough for the stage to be zeroed with a few inline stores rather than
/// a call to `memset`).
const STAGE: usize = 224;

/// Small writes gathered on the stack and passed on to a `BufMut` in
/// blocks (one `put_slice` for a small term): any `BufMut` gets the
/// direct buffers' fixed-size writes. Long writes go straight through.
/// The position in the stage is the writer's `at` ([`Out`]).
struct Stage<'b, B> {
    buf: [u8; STAGE],
    /// Bytes passed on so far.
    passed: usize,
    out: &'b mut B,
}

impl<'b, B: BufMut> Stage<'b, B> {
    #[inline(always)]
    fn new(out: &'b mut B) -> Self {
        Stage {
            buf: [0; STAGE],
            passed: 0,
            out,
        }
    }

    /// Passes on the `at` bytes gathered; returns the new position, 0.
    #[inline(never)]
    fn flush(&mut self, at: usize) -> usize {
        if let Some(s) = self.buf.get(..at) {
            self.out.put_slice(s);
            self.passed += s.len();
        }
        0
    }

    /// `N` free bytes at `at` (moved to the start of the stage if it must
    /// be flushed first), and where they start.
    #[inline(always)]
    fn room<const N: usize>(&mut self, at: usize) -> (usize, Option<&mut [u8; N]>) {
        const { assert!(N <= STAGE) };
        let at = if at + N > STAGE { self.flush(at) } else { at };
        (
            at,
            self.buf
                .get_mut(at..)
                .and_then(|w| w.first_chunk_mut::<N>()),
        )
    }
}

impl<B: BufMut> Out for Stage<'_, B> {
    #[inline]
    fn put(&mut self, at: usize, s: &[u8]) -> usize {
        let mut at = at;
        if s.len() > STAGE - at.min(STAGE) {
            at = self.flush(at);
            if s.len() > STAGE / 2 {
                self.out.put_slice(s);
                self.passed += s.len();
                return at;
            }
        }
        match self.buf.get_mut(at..at + s.len()) {
            Some(d) => {
                d.copy_from_slice(s);
                at + s.len()
            }
            None => at,
        }
    }

    #[inline(always)]
    fn put_array<const N: usize>(&mut self, at: usize, a: [u8; N]) -> usize {
        match self.room::<N>(at) {
            (at, Some(w)) => {
                *w = a;
                at + N
            }
            (at, None) => at,
        }
    }

    #[inline(always)]
    fn put_padded<const N: usize>(&mut self, at: usize, block: &[u8; N], n: usize) -> usize {
        match self.room::<N>(at) {
            (at, Some(w)) => {
                *w = *block;
                at + n.min(N)
            }
            (at, None) => at,
        }
    }

    #[inline(always)]
    fn window<const N: usize>(
        &mut self,
        at: usize,
        f: impl FnOnce(&mut [u8; N]) -> usize,
    ) -> usize {
        match self.room::<N>(at) {
            (at, Some(w)) => at + f(w).min(N),
            (at, None) => at,
        }
    }

    #[inline(always)]
    fn position(&self, at: usize) -> usize {
        self.passed + at
    }

    #[inline(always)]
    fn put_short(&mut self, at: usize, s: &[u8]) -> usize {
        // Without flushing early: the fixed-size copy where the stage has
        // room for it, a plain one otherwise.
        if s.len() <= SHORT && at + SHORT <= STAGE {
            self.window::<SHORT>(at, |w| copy_short(w, s))
        } else {
            self.put(at, s)
        }
    }
}

/// An atom as the writer puts it: its padded external form, or a
/// reference into the distribution header's atom cache.
#[derive(Clone, Copy)]
enum AtomOut {
    Block(&'static [u8; EXT_BLOCK], usize),
    Ref(u8),
}

impl AtomOut {
    /// Writes the atom at the start of `w`; returns how many bytes.
    #[inline(always)]
    fn write(self, w: &mut [u8; EXT_BLOCK]) -> usize {
        match self {
            AtomOut::Block(b, n) => {
                *w = *b;
                n.min(EXT_BLOCK)
            }
            AtomOut::Ref(i) => {
                w[0] = ATOM_CACHE_REF;
                w[1] = i;
                2
            }
        }
    }
}

/// Writes `head`, the atom, then `tail`, into the start of `w`
/// (`W = H + EXT_BLOCK + T`); returns how many bytes.
#[inline(always)]
fn head_atom_tail<const H: usize, const T: usize, const W: usize>(
    w: &mut [u8; W],
    head: [u8; H],
    atom: AtomOut,
    tail: [u8; T],
) -> usize {
    const { assert!(W == H + EXT_BLOCK + T) };
    if let Some(h) = w.first_chunk_mut::<H>() {
        *h = head;
    }
    let n = match w
        .get_mut(H..)
        .and_then(|a| a.first_chunk_mut::<EXT_BLOCK>())
    {
        Some(a) => atom.write(a),
        None => 0,
    };
    if let Some(t) = w.get_mut(H + n..).and_then(|t| t.first_chunk_mut::<T>()) {
        *t = tail;
    }
    H + n + T
}

/// The writer's result: where the output goes on (see [`Out`]), or an
/// error, boxed so that the result of each step fits in two registers
/// (errors are rare; the success path is what runs).
type Step = Result<usize, Box<EncodeError>>;

#[cold]
#[inline(never)]
fn fail(e: EncodeError) -> Box<EncodeError> {
    Box::new(e)
}

struct Writer<'o, 'r, O, C: ?Sized> {
    out: &'o mut O,
    max_depth: usize,
    refs: &'r mut C,
}

impl<O: Out, C: AtomRefs> Writer<'_, '_, O, C> {
    /// Writes `t` with the output at `at`; returns where it ends.
    ///
    /// The first level of a compound term is written here, inline, instead
    /// of by a call to [`Writer::other`] as the levels below it are: one
    /// call less for each term, which for messages of a few small terms
    /// is a few per cent of the time.
    #[inline(always)]
    fn top(&mut self, at: usize, t: &Term) -> Result<usize, EncodeError> {
        match t {
            Term::Int(_) | Term::Atom(_) | Term::Binary(_) => self.term(at, t, 0),
            // What `other` does at depth 0, where it checks no stack.
            _ => self.other_at(at, t, 0),
        }
        .map_err(|e| *e)
    }

    /// Writes `t`, at nesting `depth` (already within the limit): the
    /// common scalars inline, the rest out of line.
    #[inline(always)]
    fn term(&mut self, at: usize, t: &Term, depth: usize) -> Step {
        match t {
            Term::Int(i) => Ok(self.int(at, *i)),
            Term::Atom(a) => self.atom(at, *a),
            Term::Binary(b) => self.binary_term(at, b),
            _ => self.other(at, t, depth),
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
    fn other(&mut self, at: usize, t: &Term, depth: usize) -> Step {
        // Checking the stack costs a little; every 16 levels is enough,
        // and not at the top, where most terms end well before the first
        // check.
        if depth % 16 == 15 {
            self.other_deep(at, t, depth)
        } else {
            self.other_at(at, t, depth)
        }
    }

    /// [`Writer::other`] on a stack with room for the next 16 levels.
    #[inline(never)]
    fn other_deep(&mut self, at: usize, t: &Term, depth: usize) -> Step {
        super::deep(|| self.other_at(at, t, depth))
    }

    /// Writes `t`, a term that [`Writer::term`] does not write inline.
    ///
    /// A tuple or proper list whose last element is itself a tuple or list
    /// is written without a call for that element: the loop goes on with
    /// it, and the `NIL_EXT` that ends each such list is written once the
    /// innermost term is done (they all follow it). Nested terms are
    /// usually in that place (`{tag, Value, Rest}`, `[Rest]`), and a
    /// return per level costs more than the level itself once they nest
    /// deeper than the processor predicts returns.
    ///
    /// At every level 16 *k* + 15 the loop goes on by a call to
    /// [`Writer::other`] instead, which checks the stack there; as every
    /// call goes at least one level deeper, no more than 16 calls come
    /// between two checks, however the term mixes the two ways.
    #[inline(always)]
    fn other_at(&mut self, at: usize, t: &Term, depth: usize) -> Step {
        let (mut at, mut t, mut depth) = (at, t, depth);
        let mut nils = 0usize;
        loop {
            let (list, v, last, init) = match t {
                Term::Tuple(v) if v.len() < 256 => match v.split_last() {
                    Some((last, init)) if is_nested(last) => (false, v, last, init),
                    _ => break,
                },
                Term::List(v) => match v.split_last() {
                    Some((last, init)) if is_nested(last) => (true, v, last, init),
                    _ => break,
                },
                _ => break,
            };
            if list {
                let n = len32(v.len(), "list")?.to_be_bytes();
                at = self.out.put_array(at, [LIST_EXT, n[0], n[1], n[2], n[3]]);
                let d = self.inner(depth)?;
                at = self.list_items(at, init, d)?;
                nils += 1;
            } else {
                at = self.out.put_array(at, [SMALL_TUPLE_EXT, v.len() as u8]);
                let d = self.inner(depth)?;
                for e in init {
                    at = self.term(at, e, d)?;
                }
            }
            t = last;
            depth += 1;
            if depth % 16 == 15 {
                at = self.other(at, t, depth)?;
                return Ok(self.nils(at, nils));
            }
        }
        let at = self.other_one(at, t, depth)?;
        Ok(self.nils(at, nils))
    }

    /// `n` times `NIL_EXT`.
    #[inline(always)]
    fn nils(&mut self, at: usize, n: usize) -> usize {
        let mut at = at;
        for _ in 0..n {
            at = self.out.put_array(at, [NIL_EXT]);
        }
        at
    }

    /// [`Writer::other_at`] for one term.
    #[inline(always)]
    fn other_one(&mut self, at: usize, t: &Term, depth: usize) -> Step {
        match t {
            Term::Tuple(v) => self.tuple(at, v, depth),
            Term::List(v) => self.list(at, v, None, depth),
            Term::Map(m) => self.map(at, m, depth),
            Term::Pid(p) => self.pid(at, p),
            Term::Ref(r) => self.reference(at, r),
            Term::ByteList(b) if !b.is_empty() && b.len() < self.refs.share_from().min(0x10000) => {
                let n = (b.len() as u16).to_be_bytes();
                let at = self.out.put_array(at, [STRING_EXT, n[0], n[1]]);
                Ok(self.out.put_short(at, b))
            }
            Term::Float(f) if f.is_finite() => Ok(self.float(at, *f)),
            _ => self.rare(at, t, depth),
        }
    }

    /// A finite float, as `NEW_FLOAT_EXT`.
    #[inline(always)]
    fn float(&mut self, at: usize, f: f64) -> usize {
        let b = f.to_bits().to_be_bytes();
        self.out.put_array(
            at,
            [
                NEW_FLOAT_EXT,
                b[0],
                b[1],
                b[2],
                b[3],
                b[4],
                b[5],
                b[6],
                b[7],
            ],
        )
    }

    /// The kinds of terms that messages seldom hold, out of line.
    #[cold]
    #[inline(never)]
    fn rare(&mut self, at: usize, t: &Term, depth: usize) -> Step {
        let mut at = at;
        match t {
            Term::Int(i) => at = self.int(at, *i),
            Term::Atom(a) => at = self.atom(at, *a)?,
            Term::Binary(b) => at = self.binary_term(at, b)?,
            Term::BigInt(b) => at = self.big(at, b),
            Term::Float(f) => {
                if !f.is_finite() {
                    return Err(fail(EncodeError::NonFiniteFloat(*f)));
                }
                at = self.float(at, *f);
            }
            Term::BitBinary(bb) => {
                if !(1..=8).contains(&bb.bits) {
                    return Err(fail(EncodeError::BadBitCount(bb.bits)));
                }
                if bb.bytes.is_empty() {
                    at = self.out.put_array(at, [BINARY_EXT, 0, 0, 0, 0]);
                } else if bb.bits == 8 {
                    at = self.binary(at, &bb.bytes)?;
                } else {
                    let n = len32(bb.bytes.len(), "bitstring")?.to_be_bytes();
                    at = self
                        .out
                        .put_array(at, [BIT_BINARY_EXT, n[0], n[1], n[2], n[3], bb.bits]);
                    let (init, last) = bb.bytes.split_at(bb.bytes.len() - 1);
                    at = self.out.put(at, init);
                    // The unused low bits are written as zeros.
                    at = self
                        .out
                        .put_array(at, [last[0] & (0xffu8 << (8 - bb.bits))]);
                }
            }
            Term::Tuple(v) => at = self.tuple(at, v, depth)?,
            Term::List(v) => at = self.list(at, v, None, depth)?,
            Term::ByteList(b) => {
                if b.is_empty() {
                    at = self.out.put_array(at, [NIL_EXT]);
                } else if b.len() <= 0xffff {
                    let n = (b.len() as u16).to_be_bytes();
                    at = self.out.put_array(at, [STRING_EXT, n[0], n[1]]);
                    if b.len() >= self.refs.share_from() {
                        at = self.large_binary(at, b);
                    } else {
                        at = self.out.put_short(at, b);
                    }
                } else {
                    let n = len32(b.len(), "list")?.to_be_bytes();
                    at = self.out.put_array(at, [LIST_EXT, n[0], n[1], n[2], n[3]]);
                    for &c in b.iter() {
                        at = self.out.put_array(at, [SMALL_INTEGER_EXT, c]);
                    }
                    at = self.out.put_array(at, [NIL_EXT]);
                }
            }
            Term::ImproperList(l) => at = self.list(at, &l.elems, Some(&l.tail), depth)?,
            Term::Map(m) => at = self.map(at, m, depth)?,
            Term::Pid(p) => at = self.pid(at, p)?,
            Term::Port(p) => {
                // OTP writes port numbers of up to 28 bits in the old form.
                if p.id < 1 << 28 {
                    at = self.out.put_array(at, [NEW_PORT_EXT]);
                    at = self.atom(at, p.node)?;
                    at = self.out.put_array(at, (p.id as u32).to_be_bytes());
                } else {
                    at = self.out.put_array(at, [V4_PORT_EXT]);
                    at = self.atom(at, p.node)?;
                    at = self.out.put_array(at, p.id.to_be_bytes());
                }
                at = self.out.put_array(at, p.creation.to_be_bytes());
            }
            Term::Ref(r) => at = self.reference(at, r)?,
            Term::Fun(f) => match &**f {
                Fun::Export {
                    module,
                    function,
                    arity,
                } => {
                    at = self.out.put_array(at, [EXPORT_EXT]);
                    at = self.atom(at, *module)?;
                    at = self.atom(at, *function)?;
                    at = self.out.put_array(at, [SMALL_INTEGER_EXT, *arity]);
                }
                Fun::Local(l) => {
                    // The size field counts from itself to the end; measure
                    // the body first, since a BufMut cannot be patched.
                    let mut body = Vec::with_capacity(64);
                    {
                        let mut stage = Stage::new(&mut body);
                        let mut w = Writer {
                            out: &mut stage,
                            max_depth: self.max_depth,
                            refs: &mut NoShare(&mut *self.refs as &mut dyn AtomRefs),
                        };
                        let mut b = w.out.put_array(0, [l.arity]);
                        b = w.out.put_array(b, l.uniq);
                        b = w.out.put_array(b, l.index.to_be_bytes());
                        b = w.out.put_array(
                            b,
                            len32(l.free_vars.len(), "fun environment")?.to_be_bytes(),
                        );
                        b = w.atom(b, l.module)?;
                        b = w.int(b, i64::from(l.old_index));
                        b = w.int(b, i64::from(l.old_uniq));
                        b = w.pid(b, &l.pid)?;
                        if !l.free_vars.is_empty() {
                            let d = w.inner(depth)?;
                            for v in &l.free_vars {
                                b = w.term(b, v, d)?;
                            }
                        }
                        stage.flush(b);
                    }
                    let n = len32(body.len() + 4, "fun")?.to_be_bytes();
                    at = self
                        .out
                        .put_array(at, [NEW_FUN_EXT, n[0], n[1], n[2], n[3]]);
                    at = self.out.put(at, &body);
                }
            },
        }
        Ok(at)
    }

    #[inline(always)]
    fn int(&mut self, at: usize, i: i64) -> usize {
        if (0..=255).contains(&i) {
            self.out.put_array(at, [SMALL_INTEGER_EXT, i as u8])
        } else if let Ok(i) = i32::try_from(i) {
            let b = i.to_be_bytes();
            self.out
                .put_array(at, [INTEGER_EXT, b[0], b[1], b[2], b[3]])
        } else {
            self.small_big(at, i)
        }
    }

    /// Writes the integers that `elems` starts with, up to [`INT_RUN`] of
    /// them, in one window; returns how many (at least one) and where the
    /// output goes on.
    #[inline(never)]
    fn ints(&mut self, at: usize, elems: &[Term]) -> (usize, usize) {
        let mut taken = 0;
        let run = elems.get(..INT_RUN).unwrap_or(elems);
        let mut at = self.out.window::<{ 8 * INT_RUN }>(at, |w| {
            let mut at = 0;
            for e in run {
                let Term::Int(i) = *e else { break };
                // Each integer as one 8-byte store (tag, then the value
                // big-endian), of which 2 or 5 bytes are kept.
                let (word, n) = if (0..=255).contains(&i) {
                    (u64::from(SMALL_INTEGER_EXT) | (i as u64) << 8, 2)
                } else if let Ok(i) = i32::try_from(i) {
                    (
                        u64::from(INTEGER_EXT) | u64::from((i as u32).swap_bytes()) << 8,
                        5,
                    )
                } else {
                    break;
                };
                let Some(d) = w.get_mut(at..).and_then(|d| d.first_chunk_mut::<8>()) else {
                    break;
                };
                *d = word.to_le_bytes();
                at += n;
                taken += 1;
            }
            at
        });
        if taken == 0 {
            // Beyond 32 bits.
            if let Some(Term::Int(i)) = elems.first() {
                at = self.small_big(at, *i);
            }
            taken = 1;
        }
        (taken, at)
    }

    #[inline(never)]
    fn small_big(&mut self, at: usize, i: i64) -> usize {
        let m = i.unsigned_abs().to_le_bytes();
        let n = 8 - (i.unsigned_abs().leading_zeros() / 8) as usize;
        self.out.put_padded(
            at,
            &[
                SMALL_BIG_EXT,
                n as u8,
                u8::from(i < 0),
                m[0],
                m[1],
                m[2],
                m[3],
                m[4],
                m[5],
                m[6],
                m[7],
            ],
            3 + n,
        )
    }

    fn big(&mut self, at: usize, b: &BigInt) -> usize {
        if let Ok(i) = i64::try_from(b) {
            return self.int(at, i);
        }
        let (sign, digits) = b.to_bytes_le();
        let at = if digits.len() < 256 {
            self.out.put_array(at, [SMALL_BIG_EXT, digits.len() as u8])
        } else {
            // A BigInt of 2^32 bytes is beyond any memory this runs in.
            let n = (digits.len() as u32).to_be_bytes();
            self.out
                .put_array(at, [LARGE_BIG_EXT, n[0], n[1], n[2], n[3]])
        };
        let at = self.out.put_array(at, [u8::from(sign == Sign::Minus)]);
        self.out.put(at, &digits)
    }

    /// A binary term: one fixed-size block when it is held in place.
    #[inline(always)]
    fn binary_term(&mut self, at: usize, b: &Binary) -> Step {
        match b.view() {
            BinaryView::Inline(n, block) => Ok(self.out.window::<{ 5 + INLINE_BINARY }>(at, |w| {
                if let Some((head, rest)) = w.split_first_chunk_mut::<5>() {
                    *head = [BINARY_EXT, 0, 0, 0, n];
                    if let Some(r) = rest.first_chunk_mut::<INLINE_BINARY>() {
                        *r = *block;
                    }
                }
                5 + usize::from(n)
            })),
            BinaryView::Shared(b) => self.binary(at, b),
        }
    }

    #[inline(always)]
    fn binary(&mut self, at: usize, b: &Bytes) -> Step {
        let n = len32(b.len(), "binary")?.to_be_bytes();
        let at = self.out.put_array(at, [BINARY_EXT, n[0], n[1], n[2], n[3]]);
        if b.len() >= self.refs.share_from() {
            Ok(self.large_binary(at, b))
        } else {
            Ok(self.out.put_short(at, b))
        }
    }

    /// A large binary's bytes: shared if the caller takes them, else
    /// copied (out of line: the common path stays small).
    #[inline(never)]
    fn large_binary(&mut self, at: usize, b: &Bytes) -> usize {
        if self.refs.share(self.out.position(at), b) {
            at
        } else {
            self.out.put(at, b)
        }
    }

    /// How the atom is written: a cache reference, its padded external
    /// form, or (`None`) the long way, [`Writer::atom_long`].
    #[inline(always)]
    fn atom_out(&mut self, a: Atom) -> Option<AtomOut> {
        if let Some(i) = self.refs.index(a) {
            return Some(AtomOut::Ref(i));
        }
        a.ext_block().map(|(b, n)| AtomOut::Block(b, n))
    }

    #[inline(always)]
    fn atom(&mut self, at: usize, a: Atom) -> Step {
        match self.atom_out(a) {
            Some(AtomOut::Block(b, n)) => Ok(self.out.put_padded(at, b, n)),
            Some(AtomOut::Ref(i)) => Ok(self.out.put_array(at, [ATOM_CACHE_REF, i])),
            None => self.atom_long(at, a),
        }
    }

    /// An atom whose external form is longer than [`EXT_BLOCK`] bytes (or
    /// that cannot be encoded).
    #[cold]
    #[inline(never)]
    fn atom_long(&mut self, at: usize, a: Atom) -> Step {
        match a.ext_bytes() {
            Some(ext) => Ok(self.out.put(at, ext)),
            None => Err(too_long(a)),
        }
    }

    #[inline(always)]
    fn pid(&mut self, at: usize, p: &Pid) -> Step {
        let (i, s, c) = (
            p.id.to_be_bytes(),
            p.serial.to_be_bytes(),
            p.creation.to_be_bytes(),
        );
        let tail = [
            i[0], i[1], i[2], i[3], s[0], s[1], s[2], s[3], c[0], c[1], c[2], c[3],
        ];
        match self.atom_out(p.node) {
            // One write for the whole pid.
            Some(node) => Ok(self.out.window::<{ 1 + EXT_BLOCK + 12 }>(at, |w| {
                head_atom_tail(w, [NEW_PID_EXT], node, tail)
            })),
            None => {
                let at = self.out.put_array(at, [NEW_PID_EXT]);
                let at = self.atom_long(at, p.node)?;
                Ok(self.out.put_array(at, tail))
            }
        }
    }

    #[inline(always)]
    fn reference(&mut self, at: usize, r: &Reference) -> Step {
        let ids = r.ids();
        let n = (ids.len() as u16).to_be_bytes();
        let head = [NEWER_REFERENCE_EXT, n[0], n[1]];
        match (self.atom_out(r.node), ids) {
            // As OTP makes them (three words): one write for the whole
            // reference, its tail made in registers (built in memory with
            // 4-byte stores, it would be read back with one 16-byte load,
            // which waits for those stores to complete).
            (Some(node), &[a, b, c]) => {
                let h = (u64::from(r.creation) << 32 | u64::from(a)).to_be_bytes();
                let l = (u64::from(b) << 32 | u64::from(c)).to_be_bytes();
                let tail = [
                    h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], l[0], l[1], l[2], l[3], l[4],
                    l[5], l[6], l[7],
                ];
                Ok(self
                    .out
                    .window::<{ 3 + EXT_BLOCK + 16 }>(at, |w| head_atom_tail(w, head, node, tail)))
            }
            _ => {
                let mut words = [0u8; 4 + 4 * Reference::MAX_WORDS];
                words[..4].copy_from_slice(&r.creation.to_be_bytes());
                for (chunk, w) in words[4..].chunks_exact_mut(4).zip(ids) {
                    chunk.copy_from_slice(&w.to_be_bytes());
                }
                let at = self.out.put_array(at, head);
                let at = self.atom(at, r.node)?;
                Ok(self.out.put(at, &words[..4 + 4 * ids.len()]))
            }
        }
    }

    #[inline(always)]
    fn tuple(&mut self, at: usize, v: &[Term], depth: usize) -> Step {
        let mut at = if v.len() < 256 {
            self.out.put_array(at, [SMALL_TUPLE_EXT, v.len() as u8])
        } else {
            let n = len32(v.len(), "tuple")?.to_be_bytes();
            self.out
                .put_array(at, [LARGE_TUPLE_EXT, n[0], n[1], n[2], n[3]])
        };
        if v.is_empty() {
            return Ok(at);
        }
        let d = self.inner(depth)?;
        for e in v {
            at = self.term(at, e, d)?;
        }
        Ok(at)
    }

    #[inline(always)]
    fn list(&mut self, at: usize, elems: &[Term], tail: Option<&Term>, depth: usize) -> Step {
        if elems.is_empty() {
            return match tail {
                None => Ok(self.out.put_array(at, [NIL_EXT])),
                Some(t) => self.term(at, t, depth),
            };
        }
        if tail.is_none() && elems.len() <= 0xffff && elems.iter().all(is_byte) {
            let n = (elems.len() as u16).to_be_bytes();
            let mut at = self.out.put_array(at, [STRING_EXT, n[0], n[1]]);
            let mut chunk = [0u8; 64];
            for part in elems.chunks(chunk.len()) {
                for (c, e) in chunk.iter_mut().zip(part) {
                    if let Term::Int(i) = e {
                        *c = *i as u8;
                    }
                }
                at = self.out.put_short(at, &chunk[..part.len()]);
            }
            return Ok(at);
        }
        let n = len32(elems.len(), "list")?.to_be_bytes();
        let at = self.out.put_array(at, [LIST_EXT, n[0], n[1], n[2], n[3]]);
        let d = self.inner(depth)?;
        let at = self.list_items(at, elems, d)?;
        match tail {
            None => Ok(self.out.put_array(at, [NIL_EXT])),
            Some(t) => self.term(at, t, d),
        }
    }

    /// Writes a list's elements, at nesting `d`.
    #[inline(always)]
    fn list_items(&mut self, at: usize, elems: &[Term], d: usize) -> Step {
        let mut at = at;
        let mut rest = elems;
        while let Some((e, more)) = rest.split_first() {
            if let (Term::Int(_), Some(Term::Int(_))) = (e, more.first()) {
                // A run of integers, many per write.
                let (taken, next) = self.ints(at, rest);
                at = next;
                rest = rest.get(taken..).unwrap_or_default();
            } else {
                at = self.term(at, e, d)?;
                rest = more;
            }
        }
        Ok(at)
    }

    fn map(&mut self, at: usize, m: &Map, depth: usize) -> Step {
        let n = len32(m.len(), "map")?.to_be_bytes();
        let mut at = self.out.put_array(at, [MAP_EXT, n[0], n[1], n[2], n[3]]);
        if m.entries.is_empty() {
            return Ok(at);
        }
        let in_order = m.len() > SMALL_MAP
            || m.entries
                .windows(2)
                .all(|w| key_cmp(&w[0].0, &w[1].0) == Ordering::Less);
        if in_order {
            let d = self.inner(depth)?;
            for (k, v) in &m.entries {
                at = self.term(at, k, d)?;
                at = self.term(at, v, d)?;
            }
            return Ok(at);
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
            at = self.term(at, k, d)?;
            at = self.term(at, v, d)?;
        }
        Ok(at)
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

/// Whether `t` is a tuple or a list of terms.
fn is_nested(t: &Term) -> bool {
    matches!(t, Term::Tuple(_) | Term::List(_))
}

fn is_byte(t: &Term) -> bool {
    matches!(t, Term::Int(i) if (0..=255).contains(i))
}

fn len32(n: usize, what: &'static str) -> Result<u32, EncodeError> {
    u32::try_from(n).map_err(|_| EncodeError::TooLarge(what))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of one integer, written the plain way.
    fn int_ext(i: i64) -> Vec<u8> {
        if (0..=255).contains(&i) {
            vec![SMALL_INTEGER_EXT, i as u8]
        } else if let Ok(i) = i32::try_from(i) {
            let mut v = vec![INTEGER_EXT];
            v.extend_from_slice(&i.to_be_bytes());
            v
        } else {
            let m = i.unsigned_abs().to_le_bytes();
            let n = 8 - (i.unsigned_abs().leading_zeros() / 8) as usize;
            let mut v = vec![SMALL_BIG_EXT, n as u8, u8::from(i < 0)];
            v.extend_from_slice(&m[..n]);
            v
        }
    }

    /// Every entry point: `encode`, `encode_to` into another `BufMut`
    /// type (`&mut Vec`), `encode_body_sharing` into a `BytesMut`, and
    /// `encode_shared` flattened.
    fn all_ways(t: &Term) -> Vec<u8> {
        let enc = Encoder::new();
        let direct = enc.encode(t).unwrap();
        let mut staged = Vec::new();
        enc.encode_to(t, &mut &mut staged).unwrap();
        assert_eq!(staged, direct, "{t:?}");
        let mut bm = BytesMut::new();
        bm.put_u8(VERSION);
        let shared = enc.encode_body_sharing(t, &mut bm, None).unwrap();
        assert!(shared.is_empty() || direct.len() >= SHARE_MIN);
        let flat = Encoder::new().encode_shared(t).unwrap().to_vec();
        assert_eq!(flat, direct, "{t:?}");
        direct
    }

    #[test]
    fn integer_runs_write_each_integer_as_the_plain_path_does() {
        let values = [
            0,
            1,
            255,
            256,
            -1,
            i64::from(i32::MAX),
            i64::from(i32::MIN),
            i64::from(i32::MAX) + 1,
            i64::MIN,
            i64::MAX,
            77,
        ];
        for len in [1, 2, 3, 15, 16, 17, 31, 32, 33, 100] {
            for shift in 0..values.len() {
                let ints: Vec<i64> = (0..len)
                    .map(|k| values[(k + shift) % values.len()])
                    .collect();
                let mut elems: Vec<Term> = ints.iter().map(|&i| Term::Int(i)).collect();
                let mut want = vec![VERSION];
                if ints.iter().all(|i| (0..=255).contains(i)) {
                    want.push(STRING_EXT);
                    want.extend_from_slice(&(len as u16).to_be_bytes());
                    want.extend(ints.iter().map(|&i| i as u8));
                } else {
                    want.push(LIST_EXT);
                    want.extend_from_slice(&(len as u32).to_be_bytes());
                    for &i in &ints {
                        want.extend(int_ext(i));
                    }
                    want.push(NIL_EXT);
                }
                assert_eq!(all_ways(&Term::List(elems.clone())), want, "{ints:?}");
                // A term between integers ends the run.
                elems.insert(len / 2, Term::atom("x"));
                let got = all_ways(&Term::List(elems.clone()));
                assert!(Term::decode(&got).unwrap().exact_eq(&Term::List(elems)));
            }
        }
    }

    #[test]
    fn every_output_gets_the_same_bytes() {
        let long_node = Atom::from("a_node_name_of_more_than_thirty_bytes@host");
        let short_node = Atom::from("n@h");
        let mut elems = Vec::new();
        for n in [
            0, 1, 3, 4, 7, 8, 15, 16, 31, 32, 33, 63, 64, 65, 200, 600, 5000,
        ] {
            elems.push(Term::binary(vec![n as u8; n]));
            if n > 0 {
                elems.push(Term::ByteList(Bytes::from(vec![b'a'; n])));
            }
            elems.push(Term::atom(&"é".repeat(n.min(255) / 2)));
        }
        for node in [long_node, short_node] {
            elems.push(Term::Pid(Pid {
                node,
                id: 1,
                serial: 2,
                creation: 3,
            }));
            for words in [&[1u32][..], &[1, 2, 3], &[1, 2, 3, 4, 5]] {
                elems.push(Term::Ref(Box::new(Reference::new(node, 9, words).unwrap())));
            }
        }
        elems.push(Term::Float(1.5));
        elems.push(Term::Int(1 << 40));
        let t = Term::tuple(vec![
            Term::List(elems.clone()),
            Term::map(elems.iter().cloned().zip(elems.iter().cloned())),
        ]);
        let bytes = all_ways(&t);
        assert!(Term::decode(&bytes).unwrap().exact_eq(&t));
    }

    #[test]
    fn encode_shared_leaves_large_binaries_out_and_reads_as_one_buffer() {
        let big = |n: usize, b: u8| Bytes::from(vec![b; n]);
        let (a, b, c) = (big(SHARE_MIN, 1), big(SHARE_MIN + 1, 2), big(70_000, 3));
        let t = Term::list(vec![
            Term::Binary(a.clone().into()),
            Term::Binary(b.clone().into()),
            Term::tuple(vec![Term::atom("x"), Term::Binary(c.clone().into())]),
            Term::ByteList(big(SHARE_MIN, b'z')),
            Term::binary(vec![4; SHARE_MIN - 1]),
        ]);
        let enc = Encoder::new();
        let want = enc.encode(&t).unwrap();
        let mut e = enc.encode_shared(&t).unwrap();
        assert_eq!(e.len(), want.len());
        assert_eq!(e.to_vec(), want);
        let shared: Vec<*const u8> = e.pieces().map(|p| p.as_ptr()).collect();
        for bin in [&a, &b, &c] {
            assert!(shared.contains(&bin.as_ptr()));
        }
        // Vectored: every piece, in order.
        let mut slots = [IoSlice::new(&[]); 16];
        let n = e.chunks_vectored(&mut slots);
        let joined: Vec<u8> = slots[..n].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(joined, want);
        // Read in odd steps across the pieces.
        let mut read = Vec::new();
        while e.has_remaining() {
            let step = e.chunk().len().min(9999);
            read.extend_from_slice(&e.chunk()[..step]);
            e.advance(step);
        }
        assert_eq!(read, want);
        assert!(e.is_empty());
        // A lone binary, and compression (one piece).
        let lone = Term::Binary(c.clone().into());
        let e = enc.encode_shared(&lone).unwrap();
        assert_eq!(e.pieces().count(), 2);
        assert_eq!(e.to_vec(), enc.encode(&lone).unwrap());
        let z = enc.compressed(6);
        let e = z.encode_shared(&t).unwrap();
        assert_eq!(e.pieces().count(), 1);
        assert_eq!(Vec::from(e), z.encode(&t).unwrap());
        // Errors are reported as by encode.
        let bad = Term::list(vec![Term::Binary(a.into()), Term::Float(f64::NAN)]);
        assert!(matches!(
            enc.encode_shared(&bad),
            Err(EncodeError::NonFiniteFloat(_))
        ));
    }
}
