//! [`Binary`]: the bytes of a binary term, small ones held in place.
//!
//! A BEAM node copies binaries of up to 64 bytes onto the heap of the
//! process that receives them and shares only larger ones. A [`Binary`]
//! does the same for binaries of up to [`INLINE_BINARY`] bytes: such a
//! binary is kept in the term itself, so decoding, cloning and dropping
//! it touch no shared reference count, and keeping it does not keep alive
//! the whole buffer it arrived in. Larger binaries are a shared
//! [`Bytes`], as they were read.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::{Bytes, BytesMut};

/// The most bytes a [`Binary`] holds in place; longer binaries share a
/// buffer ([`Bytes`]). A binary this short takes no more room than a
/// `Bytes` does.
pub const INLINE_BINARY: usize = 23;

/// The bytes of a binary term ([`Term::Binary`](crate::Term::Binary)).
///
/// It dereferences to `[u8]`. Binaries of up to [`INLINE_BINARY`] bytes
/// are held in place; longer ones share their buffer, so cloning one, or
/// decoding one from a [`Bytes`] input
/// ([`Term::decode_bytes`](crate::Term::decode_bytes)), copies nothing.
/// Which of the two a binary is never shows in its value: equality,
/// order and hashing are those of its bytes.
///
/// ```
/// use erldist::{Binary, Term};
/// use erldist::bytes::Bytes;
///
/// let small = Binary::from("kate");
/// assert_eq!(&small[..], b"kate");
/// let large = Binary::from(Bytes::from(vec![7u8; 1000]));
/// assert_eq!(large.len(), 1000);
/// let shared: Bytes = large.to_bytes(); // the same buffer, not a copy
/// assert_eq!(shared.len(), 1000);
/// assert_eq!(Term::binary("kate"), Term::Binary(small));
/// ```
#[derive(Clone)]
pub struct Binary(Repr);

#[derive(Clone)]
enum Repr {
    /// `len` (at most [`INLINE_BINARY`]) bytes at the start of `bytes`;
    /// the rest is of no account.
    Inline { len: u8, bytes: [u8; INLINE_BINARY] },
    /// More than [`INLINE_BINARY`] bytes.
    Shared(Bytes),
}

/// How a [`Binary`] is held: its length (at most [`INLINE_BINARY`]) and
/// its bytes padded to [`INLINE_BINARY`] (with bytes of no account), or
/// its shared buffer.
pub(crate) enum BinaryView<'a> {
    Inline(u8, &'a [u8; INLINE_BINARY]),
    Shared(&'a Bytes),
}

// A term holding a binary is no larger than one holding a `Bytes`.
const _: () = assert!(std::mem::size_of::<Binary>() == std::mem::size_of::<Bytes>());

impl Binary {
    /// The empty binary, `<<>>`.
    pub const fn new() -> Binary {
        Binary(Repr::Inline {
            len: 0,
            bytes: [0; INLINE_BINARY],
        })
    }

    /// A binary holding a copy of `data`.
    #[inline]
    pub fn copy_from_slice(data: &[u8]) -> Binary {
        Binary::short_or(data, || Bytes::copy_from_slice(data))
    }

    /// `data` held in place when it is short enough, else the buffer
    /// `long` gives (which must hold the same bytes).
    #[inline(always)]
    pub(crate) fn short_or(data: &[u8], long: impl FnOnce() -> Bytes) -> Binary {
        if data.len() <= INLINE_BINARY {
            Binary::held(data)
        } else {
            Binary(Repr::Shared(long()))
        }
    }

    /// The first `len` (at most [`INLINE_BINARY`]) bytes of `block`.
    #[inline(always)]
    pub(crate) fn from_block(len: u8, block: [u8; INLINE_BINARY]) -> Binary {
        debug_assert!(usize::from(len) <= INLINE_BINARY);
        Binary(Repr::Inline { len, bytes: block })
    }

    /// `data` (at most [`INLINE_BINARY`] bytes, which every caller checks
    /// first) held in place.
    #[inline(always)]
    fn held(data: &[u8]) -> Binary {
        let n = data.len().min(INLINE_BINARY);
        let mut bytes = [0; INLINE_BINARY];
        if let (Some(to), Some(from)) = (bytes.get_mut(..n), data.get(..n)) {
            to.copy_from_slice(from);
        }
        Binary(Repr::Inline {
            len: n as u8,
            bytes,
        })
    }

    /// The bytes.
    #[inline]
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            Repr::Shared(b) => b,
        }
    }

    /// The bytes as a [`Bytes`]: the same buffer for a shared binary, a
    /// copy of a small one.
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            Repr::Inline { .. } => Bytes::copy_from_slice(self.as_slice()),
            Repr::Shared(b) => b.clone(),
        }
    }

    /// The binary as it is held, for the encoder.
    #[inline(always)]
    pub(crate) fn view(&self) -> BinaryView<'_> {
        match &self.0 {
            Repr::Inline { len, bytes } => BinaryView::Inline(*len, bytes),
            Repr::Shared(b) => BinaryView::Shared(b),
        }
    }
}

impl Default for Binary {
    fn default() -> Binary {
        Binary::new()
    }
}

impl Deref for Binary {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Binary {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Borrow<[u8]> for Binary {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<Bytes> for Binary {
    /// Shares `b`'s buffer, or copies it when it is short enough to be held
    /// in place (letting go of the buffer).
    #[inline]
    fn from(b: Bytes) -> Binary {
        if b.len() <= INLINE_BINARY {
            Binary::held(&b)
        } else {
            Binary(Repr::Shared(b))
        }
    }
}

impl From<BytesMut> for Binary {
    fn from(b: BytesMut) -> Binary {
        Binary::from(b.freeze())
    }
}

impl From<Vec<u8>> for Binary {
    fn from(v: Vec<u8>) -> Binary {
        if v.len() <= INLINE_BINARY {
            Binary::held(&v)
        } else {
            Binary(Repr::Shared(Bytes::from(v)))
        }
    }
}

impl From<Box<[u8]>> for Binary {
    fn from(v: Box<[u8]>) -> Binary {
        Binary::from(Vec::from(v))
    }
}

impl From<String> for Binary {
    fn from(s: String) -> Binary {
        Binary::from(s.into_bytes())
    }
}

impl From<&'static [u8]> for Binary {
    fn from(s: &'static [u8]) -> Binary {
        Binary::short_or(s, || Bytes::from_static(s))
    }
}

impl<const N: usize> From<&'static [u8; N]> for Binary {
    fn from(s: &'static [u8; N]) -> Binary {
        Binary::from(&s[..])
    }
}

impl From<&'static str> for Binary {
    fn from(s: &'static str) -> Binary {
        Binary::from(s.as_bytes())
    }
}

impl From<Binary> for Bytes {
    /// The shared buffer, or a copy of a binary held in place.
    fn from(b: Binary) -> Bytes {
        match b.0 {
            Repr::Shared(shared) => shared,
            Repr::Inline { .. } => b.to_bytes(),
        }
    }
}

impl From<Binary> for Vec<u8> {
    fn from(b: Binary) -> Vec<u8> {
        b.as_slice().to_vec()
    }
}

impl PartialEq for Binary {
    #[inline]
    fn eq(&self, other: &Binary) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Binary {}

impl PartialEq<[u8]> for Binary {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<&[u8]> for Binary {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_slice() == *other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Binary {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.as_slice() == other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Binary {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.as_slice() == *other
    }
}

impl PartialEq<Bytes> for Binary {
    fn eq(&self, other: &Bytes) -> bool {
        self.as_slice() == other.as_ref()
    }
}

impl PartialEq<Binary> for Bytes {
    fn eq(&self, other: &Binary) -> bool {
        self.as_ref() == other.as_slice()
    }
}

impl PartialOrd for Binary {
    fn partial_cmp(&self, other: &Binary) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Binary {
    fn cmp(&self, other: &Binary) -> std::cmp::Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl Hash for Binary {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl fmt::Debug for Binary {
    /// As [`Bytes`] shows itself: `b"..."`, ASCII where printable.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("b\"")?;
        for &b in self.as_slice() {
            match b {
                b'\n' => f.write_str("\\n")?,
                b'\r' => f.write_str("\\r")?,
                b'\t' => f.write_str("\\t")?,
                b'\\' | b'"' => write!(f, "\\{}", b as char)?,
                b'\0' => f.write_str("\\0")?,
                0x20..=0x7e => write!(f, "{}", b as char)?,
                _ => write!(f, "\\x{b:02x}")?,
            }
        }
        f.write_str("\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared buffer, when the binary is too long to be held in place.
    fn shared(b: &Binary) -> Option<&Bytes> {
        match b.view() {
            BinaryView::Inline(..) => None,
            BinaryView::Shared(s) => Some(s),
        }
    }

    #[test]
    fn short_binaries_are_held_in_place_and_long_ones_share_their_buffer() {
        for n in [0, 1, INLINE_BINARY - 1, INLINE_BINARY] {
            let data: Vec<u8> = (0..n as u8).collect();
            let from_bytes = Binary::from(Bytes::from(data.clone()));
            assert!(shared(&from_bytes).is_none(), "{n} bytes");
            assert_eq!(from_bytes.as_slice(), &data[..]);
            assert_eq!(Binary::copy_from_slice(&data), from_bytes);
            assert_eq!(Binary::from(data.clone()), from_bytes);
        }
        let long = Bytes::from(vec![9u8; INLINE_BINARY + 1]);
        let b = Binary::from(long.clone());
        assert_eq!(shared(&b).map(|s| s.as_ptr()), Some(long.as_ptr()));
        assert_eq!(b.to_bytes().as_ptr(), long.as_ptr());
        assert_eq!(Bytes::from(b).as_ptr(), long.as_ptr());
    }

    #[test]
    fn a_kept_small_binary_does_not_keep_the_buffer_it_was_decoded_from() {
        use crate::Term;
        let small = Binary::from(vec![b's'; INLINE_BINARY]);
        let large = Binary::from(vec![b'L'; INLINE_BINARY + 1]);
        for (kept, shares) in [(small, false), (large, true)] {
            let msg = Term::tuple(vec![
                Term::atom("data"),
                Term::Binary(kept.clone()),
                Term::binary(vec![0u8; 4096]),
            ]);
            let input = Bytes::from(msg.encode().unwrap());
            let Term::Tuple(elems) = Term::decode_bytes(&input).unwrap() else {
                panic!("a tuple");
            };
            let got = elems.into_iter().nth(1).unwrap();
            assert_eq!(got, Term::Binary(kept));
            // Only `got` can still hold the input's buffer.
            assert_eq!(
                !input.is_unique(),
                shares,
                "{} bytes",
                got.as_binary().unwrap().len()
            );
            // A lone binary too.
            let lone = Bytes::from(got.encode().unwrap());
            let again = Term::decode_bytes(&lone).unwrap();
            assert_eq!(!lone.is_unique(), shares);
            assert_eq!(again, got);
        }
    }

    #[test]
    fn equality_order_and_hash_are_those_of_the_bytes() {
        use std::collections::hash_map::DefaultHasher;
        let hash = |b: &Binary| {
            let mut h = DefaultHasher::new();
            b.hash(&mut h);
            h.finish()
        };
        let short = Binary::from(&b"abc"[..]);
        let copied = Binary::from(Bytes::copy_from_slice(b"abc"));
        assert_eq!(short, copied);
        assert_eq!(hash(&short), hash(&copied));
        let long_a = Binary::from(vec![1u8; 40]);
        let mut v = vec![1u8; 40];
        v[39] = 2;
        let long_b = Binary::from(v);
        assert!(long_a < long_b);
        assert!(short > long_a, "b\"abc\" sorts after 1s");
        assert!(Binary::new() < short);
        assert_eq!(short, b"abc");
        assert_eq!(long_a, Bytes::from(vec![1u8; 40]));
    }

    #[test]
    fn debug_shows_the_bytes_as_bytes_does() {
        for data in [&b"hello"[..], b"a\"b\\c\n\0\xff", &[0x41; 30]] {
            let ours = format!("{:?}", Binary::copy_from_slice(data));
            let theirs = format!("{:?}", Bytes::copy_from_slice(data));
            assert_eq!(ours, theirs);
        }
    }
}
