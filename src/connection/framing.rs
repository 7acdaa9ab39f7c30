//! Framing after the handshake: `[Len:u32][payload]` packets, where an
//! empty packet is a tick; and the pass-through payload form
//! `112, 131 Control [131 Message]` used when no distribution header flag
//! (`DIST_HDR_ATOM_CACHE`, `FRAGMENTS`) is negotiated.
//!
//! Sans-IO: [`decode_frame`] cuts frames out of a read buffer without
//! copying (`split_to(len).freeze()`).
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::term::{DecodeError, Decoder, EncodeError, Encoder, Term};

/// The default limit on a received frame's size: 128 MiB. OTP itself has
/// no limit but memory; a peer announcing more is refused.
pub const DEFAULT_MAX_FRAME: usize = 128 * 1024 * 1024;

/// The first byte of a pass-through payload (`ERL_PASS_THROUGH`, `p`).
pub const PASS_THROUGH: u8 = 112;

/// The version byte before each term of a pass-through payload.
pub const VERSION_MAGIC: u8 = 131;

/// A tick: the empty frame, 4 zero bytes.
pub const TICK: [u8; 4] = [0; 4];

/// One received frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// An empty frame: a keep-alive tick.
    Tick,
    /// A payload, sharing the read buffer's memory.
    Data(Bytes),
}

/// A frame payload to send, in pieces written back to back: `head`
/// (headers, small), `body` and `more` (the encoded message or a slice of
/// it, shared with the encoder's buffer and with the message's large
/// binaries rather than copied). The length prefix covers them all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OutFrame {
    /// The first bytes of the payload.
    pub head: Bytes,
    /// The payload's next bytes.
    pub body: Bytes,
    /// The rest of the payload, if it is in more than two pieces.
    pub more: Vec<Bytes>,
}

impl OutFrame {
    /// A frame whose payload is one piece.
    pub fn whole(payload: Bytes) -> OutFrame {
        OutFrame {
            head: payload,
            ..OutFrame::default()
        }
    }

    /// The payload's length (what the length prefix says).
    pub fn len(&self) -> usize {
        self.head.len() + self.body.len() + self.more.iter().map(Bytes::len).sum::<usize>()
    }

    /// The pieces, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Bytes> {
        [&self.head, &self.body].into_iter().chain(self.more.iter())
    }

    /// Whether the payload is empty (a tick).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload as one buffer (copies unless one piece is empty).
    pub fn into_bytes(self) -> Bytes {
        if self.more.is_empty() {
            if self.body.is_empty() {
                return self.head;
            }
            if self.head.is_empty() {
                return self.body;
            }
        }
        let mut out = BytesMut::with_capacity(self.len());
        for piece in self.iter() {
            out.put_slice(piece);
        }
        out.freeze()
    }
}

/// A frame that breaks the framing rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The peer announced a frame larger than the limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Cuts one frame off the front of `buf`: `Ok(None)` (and `buf` untouched
/// but for reserving room) until a whole frame is there.
///
/// # Errors
/// [`FrameError::TooLarge`] when the length exceeds `max`.
pub fn decode_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, FrameError> {
    let Some(head) = buf.get(..4).and_then(|h| <[u8; 4]>::try_from(h).ok()) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(head) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    if len == 0 {
        return Ok(Some(Frame::Tick));
    }
    Ok(Some(Frame::Data(buf.split_to(len).freeze())))
}

/// How much of `buf` is whole frames, from its start: the byte count
/// (headers included), and how many bytes the frame after them needs in
/// all (header included) if `buf` holds only part of it. Cutting a run of
/// frames at once lets them share one buffer without one reference count
/// each.
///
/// # Errors
/// [`FrameError::TooLarge`] for a frame whose length exceeds `max`, even
/// one after whole frames.
pub fn whole_frames(buf: &[u8], max: usize) -> Result<(usize, Option<usize>), FrameError> {
    let mut at = 0;
    loop {
        let Some(head) = buf
            .get(at..at + 4)
            .and_then(|h| <[u8; 4]>::try_from(h).ok())
        else {
            return Ok((at, None));
        };
        let len = u32::from_be_bytes(head) as usize;
        if len > max {
            return Err(FrameError::TooLarge { len, max });
        }
        if buf.len() - at < 4 + len {
            return Ok((at, Some(4 + len)));
        }
        at += 4 + len;
    }
}

/// The 4-byte length header of a frame with this payload length, or
/// `None` if it does not fit in 32 bits.
pub fn frame_header(len: usize) -> Option<[u8; 4]> {
    u32::try_from(len).ok().map(u32::to_be_bytes)
}

/// A pass-through payload that breaks the rules OTP enforces.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PassThroughError {
    /// The payload does not start with `112`.
    #[error("pass-through frame starts with {0}, not 112")]
    NotPassThrough(u8),
    /// The payload is empty.
    #[error("empty pass-through frame")]
    Empty,
    /// A term does not start with 131.
    #[error("term at byte {offset} does not start with 131")]
    MissingMagic {
        /// Where.
        offset: usize,
    },
    /// A compressed term (131, 80): OTP rejects them in distribution
    /// frames ("got a corrupted external term") and disconnects.
    #[error("compressed term at byte {offset}: not allowed in distribution frames")]
    Compressed {
        /// Where.
        offset: usize,
    },
    /// A term does not decode.
    #[error("bad term in pass-through frame: {0}")]
    Term(#[from] DecodeError),
    /// Bytes after the message term.
    #[error("{0} bytes after the message term")]
    TrailingBytes(usize),
    /// The control term is not a tuple starting with an integer operation.
    #[error("the control message is not a tuple with an operation: {0}")]
    BadControl(String),
}

/// Encodes a pass-through payload: `112, 131 Control [131 Message]`.
///
/// ```
/// use erldist::connection::framing::{decode_pass_through, encode_pass_through};
/// use erldist::{term, Term};
/// let control = term!({2, (Term::atom("")), 7});
/// let bytes = encode_pass_through(&control, Some(&term!(hello))).unwrap();
/// let (c, msg) = decode_pass_through(bytes).unwrap();
/// assert_eq!((c, msg), (control, Some(term!(hello))));
/// ```
///
/// # Errors
/// The encoder's, for terms it cannot encode.
pub fn encode_pass_through(control: &Term, msg: Option<&Term>) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::with_capacity(64);
    out.put_u8(PASS_THROUGH);
    let enc = Encoder::new();
    enc.encode_to(control, &mut out)?;
    if let Some(m) = msg {
        enc.encode_to(m, &mut out)?;
    }
    Ok(out.freeze())
}

/// Decodes a pass-through payload as strictly as OTP: `112`, then `131`
/// and the control tuple (an integer operation first), then optionally
/// `131` and the message, and nothing else. Compressed terms and atom
/// cache references are refused. Binaries in the result share `frame`.
///
/// # Errors
/// [`PassThroughError`].
pub fn decode_pass_through(frame: Bytes) -> Result<(Term, Option<Term>), PassThroughError> {
    match frame.first() {
        None => return Err(PassThroughError::Empty),
        Some(&PASS_THROUGH) => {}
        Some(&b) => return Err(PassThroughError::NotPassThrough(b)),
    }
    let dec = Decoder::new();
    let term_at = |offset: usize| -> Result<(Term, usize), PassThroughError> {
        match frame.get(offset) {
            Some(&VERSION_MAGIC) => {}
            _ => return Err(PassThroughError::MissingMagic { offset }),
        }
        if frame.get(offset + 1) == Some(&80) {
            return Err(PassThroughError::Compressed { offset });
        }
        Ok(dec.decode_body(&frame, offset + 1)?)
    };
    let (control, end) = term_at(1)?;
    match control.as_tuple() {
        Some([op, ..]) if op.as_i64().is_some() => {}
        _ => return Err(PassThroughError::BadControl(control.to_string())),
    }
    if end == frame.len() {
        return Ok((control, None));
    }
    let (msg, end) = term_at(end)?;
    if end != frame.len() {
        return Err(PassThroughError::TrailingBytes(frame.len() - end));
    }
    Ok((control, Some(msg)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn whole_frames_counts_complete_frames_and_what_the_next_needs() {
        let mut buf = Vec::new();
        for payload in [&b"ab"[..], b"", b"cde"] {
            buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            buf.extend_from_slice(payload);
        }
        let whole = buf.len();
        assert_eq!(whole_frames(&buf, 100), Ok((whole, None)));
        buf.extend_from_slice(&10u32.to_be_bytes());
        buf.extend_from_slice(b"12");
        assert_eq!(whole_frames(&buf, 100), Ok((whole, Some(14))));
        assert_eq!(whole_frames(&buf[..whole + 2], 100), Ok((whole, None)));
        assert_eq!(
            whole_frames(&buf, 9),
            Err(FrameError::TooLarge { len: 10, max: 9 })
        );
    }

    use super::*;
    use crate::term;

    #[test]
    fn frames_and_ticks_are_cut_without_copying() {
        let mut buf = BytesMut::new();
        buf.put_slice(&TICK);
        buf.put_slice(&[0, 0, 0, 3, 1, 2, 3, 0, 0]);
        assert_eq!(decode_frame(&mut buf, 10).unwrap(), Some(Frame::Tick));
        let ptr = buf[4..].as_ptr();
        let Some(Frame::Data(d)) = decode_frame(&mut buf, 10).unwrap() else {
            panic!()
        };
        assert_eq!((&d[..], d.as_ptr()), (&[1u8, 2, 3][..], ptr));
        assert_eq!(decode_frame(&mut buf, 10).unwrap(), None);
        assert_eq!(buf.len(), 2);
    }

    #[test]
    fn every_prefix_of_a_frame_is_incomplete() {
        let full = [0, 0, 0, 5, 9, 9, 9, 9, 9];
        for n in 0..full.len() {
            let mut b = BytesMut::from(&full[..n]);
            assert_eq!(decode_frame(&mut b, 100).unwrap(), None);
            assert_eq!(b.len(), n);
        }
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut b = BytesMut::from(&[0x10, 0, 0, 0][..]);
        assert_eq!(
            decode_frame(&mut b, DEFAULT_MAX_FRAME),
            Err(FrameError::TooLarge {
                len: 0x1000_0000,
                max: DEFAULT_MAX_FRAME
            })
        );
    }

    #[test]
    fn pass_through_round_trips_with_and_without_message() {
        let c = term!({6, (Term::atom("")), (Term::atom("")), net_kernel});
        let b = encode_pass_through(&c, None).unwrap();
        assert_eq!(decode_pass_through(b).unwrap(), (c.clone(), None));
        let m = term!({ok, <<"x">>});
        let b = encode_pass_through(&c, Some(&m)).unwrap();
        assert_eq!(b[0], 112);
        assert_eq!(decode_pass_through(b).unwrap(), (c, Some(m)));
    }

    #[test]
    fn pass_through_is_strict() {
        let c = term!({2, (Term::atom("")), x});
        let good = encode_pass_through(&c, Some(&term!(1))).unwrap();
        let mut v = good.to_vec();
        v.push(0);
        assert!(matches!(
            decode_pass_through(Bytes::from(v)),
            Err(PassThroughError::TrailingBytes(1))
        ));
        let mut v = good.to_vec();
        v[0] = 113;
        assert!(decode_pass_through(Bytes::from(v)).is_err());
        // A compressed control term.
        let mut z = vec![112];
        let big = Term::tuple(vec![
            Term::Int(2),
            Term::atom(""),
            Term::binary(vec![0u8; 1000]),
        ]);
        z.extend(Encoder::new().compressed(6).encode(&big).unwrap());
        assert_eq!(z[2], 80);
        assert!(matches!(
            decode_pass_through(Bytes::from(z)),
            Err(PassThroughError::Compressed { offset: 1 })
        ));
        // A control that is not a tuple with an op.
        let b = encode_pass_through(&term!(hello), None).unwrap();
        assert!(matches!(
            decode_pass_through(b),
            Err(PassThroughError::BadControl(_))
        ));
        // Every strict prefix fails, but the one that is the control alone.
        let control_only = encode_pass_through(&c, None).unwrap().len();
        for n in 0..good.len() {
            assert_eq!(
                decode_pass_through(good.slice(..n)).is_ok(),
                n == control_only,
                "prefix {n}"
            );
        }
    }
}
