//! The handshake messages and their 2-byte length framing.
//!
//! Every handshake message travels as `[Len:u16][payload]` (`{packet,2}`).
//! [`decode_packet`] cuts packets out of a read buffer; each message type
//! has `encode` (payload only) and `decode` (one whole payload).
//!
//! | Message | Tag | Payload after the tag | Sent by |
//! |---|---|---|---|
//! | [`SendName`] | `N` | Flags:u64 Creation:u32 Nlen:u16 Name | initiator |
//! | [`OldSendName`] | `n` | Version:u16 Flags:u32 Name | old initiators |
//! | [`Status`] | `s` | text (`named:` also Nlen:u16 Name Creation:u32) | both |
//! | [`Challenge`] | `N` | Flags:u64 Challenge:u32 Creation:u32 Nlen:u16 Name | acceptor |
//! | [`Complement`] | `c` | FlagsHigh:u32 Creation:u32 | old initiators |
//! | [`ChallengeReply`] | `r` | Challenge:u32 Digest:16 | initiator |
//! | [`ChallengeAck`] | `a` | Digest:16 | acceptor |
//!
//! `N` is both the new name and the new challenge: which one a packet is
//! depends on who awaits it, so the states decode the type they await.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::cookie::Digest;
use crate::flags::DistFlags;

/// The largest handshake payload: the 2-byte length's limit.
pub const MAX_PACKET: usize = u16::MAX as usize;

/// A malformed handshake message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The payload ended early.
    #[error("{message} message truncated: {len} bytes, at least {needed} needed")]
    Truncated {
        /// The message being decoded.
        message: &'static str,
        /// Its length.
        len: usize,
        /// The least length it needs.
        needed: usize,
    },
    /// Another message than the one awaited.
    #[error("expected the {expected} message (tag {tag:?}), got tag {got}")]
    UnexpectedTag {
        /// The message awaited.
        expected: &'static str,
        /// Its tag.
        tag: char,
        /// The tag received (as a number: it may be any byte).
        got: u8,
    },
    /// Extra bytes after a fixed-size message.
    #[error("{message} message has {extra} bytes too many")]
    TrailingBytes {
        /// The message.
        message: &'static str,
        /// How many.
        extra: usize,
    },
    /// A name or status that is not UTF-8.
    #[error("{message} message: the name is not UTF-8")]
    NotUtf8 {
        /// The message.
        message: &'static str,
    },
    /// A payload too long for the 2-byte length.
    #[error("handshake payload of {0} bytes exceeds 65535")]
    TooLong(usize),
}

/// Cuts one `[Len:u16][payload]` packet off the front of `buf`:
/// `Ok(None)` (and `buf` untouched) until it is complete. Never fails:
/// every length is valid; the result shares `buf`'s memory.
pub fn decode_packet(buf: &mut BytesMut) -> Option<Bytes> {
    let len = usize::from(u16::from_be_bytes([*buf.first()?, *buf.get(1)?]));
    if buf.len() < 2 + len {
        buf.reserve(2 + len - buf.len());
        return None;
    }
    buf.advance(2);
    Some(buf.split_to(len).freeze())
}

/// Appends `[Len:u16]` and the payload `encode` writes, patching the length
/// once it is known.
///
/// # Errors
/// [`MessageError::TooLong`] when the payload exceeds 65535 bytes (then
/// `out` is left as it was).
pub fn encode_packet(
    out: &mut BytesMut,
    encode: impl FnOnce(&mut BytesMut),
) -> Result<(), MessageError> {
    let start = out.len();
    out.put_u16(0);
    encode(out);
    let len = out.len() - start - 2;
    if len > MAX_PACKET {
        out.truncate(start);
        return Err(MessageError::TooLong(len));
    }
    if let Some(head) = out.get_mut(start..start + 2) {
        head.copy_from_slice(&(len as u16).to_be_bytes());
    }
    Ok(())
}

/// A length-checked reader over one payload.
struct Reader<'a> {
    data: &'a [u8],
    message: &'static str,
    len: usize,
}

impl<'a> Reader<'a> {
    fn new(
        payload: &'a [u8],
        message: &'static str,
        tag: u8,
        needed: usize,
    ) -> Result<Reader<'a>, MessageError> {
        let (&got, rest) = payload.split_first().ok_or(MessageError::Truncated {
            message,
            len: 0,
            needed,
        })?;
        if got != tag {
            return Err(MessageError::UnexpectedTag {
                expected: message,
                tag: char::from(tag),
                got,
            });
        }
        if payload.len() < needed {
            return Err(MessageError::Truncated {
                message,
                len: payload.len(),
                needed,
            });
        }
        Ok(Reader {
            data: rest,
            message,
            len: payload.len(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], MessageError> {
        if self.data.len() < n {
            return Err(MessageError::Truncated {
                message: self.message,
                len: self.len,
                needed: self.len - self.data.len() + n,
            });
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], MessageError> {
        let (message, len, needed) = (self.message, self.len, self.len - self.data.len() + N);
        self.take(N)?
            .try_into()
            .map_err(|_| MessageError::Truncated {
                message,
                len,
                needed,
            })
    }

    fn u16(&mut self) -> Result<u16, MessageError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, MessageError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, MessageError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn digest(&mut self) -> Result<Digest, MessageError> {
        Ok(Digest(self.array()?))
    }

    fn text(&self, bytes: &[u8]) -> Result<String, MessageError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| MessageError::NotUtf8 {
            message: self.message,
        })
    }

    fn name16(&mut self) -> Result<String, MessageError> {
        let n = usize::from(self.u16()?);
        let b = self.take(n)?;
        self.text(b)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    fn finish(&self) -> Result<(), MessageError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(MessageError::TrailingBytes {
                message: self.message,
                extra: self.data.len(),
            })
        }
    }
}

/// `send_name`, version 6 (`N`): the initiator's flags, creation and name
/// (or host alone with [`DistFlags::NAME_ME`]). Bytes after the name are
/// ignored, as the protocol requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendName {
    /// The initiator's flags.
    pub flags: DistFlags,
    /// The initiator's creation (0 with `NAME_ME`).
    pub creation: u32,
    /// `alive@host`, or the host alone with `NAME_ME`.
    pub name: String,
}

impl SendName {
    const TAG: u8 = b'N';

    /// Writes the payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(Self::TAG);
        out.put_u64(self.flags.0);
        out.put_u32(self.creation);
        out.put_u16(self.name.len() as u16);
        out.put_slice(self.name.as_bytes());
    }

    /// Reads one payload.
    ///
    /// # Errors
    /// [`MessageError`] when it is not a well-formed `send_name`.
    pub fn decode(payload: &[u8]) -> Result<SendName, MessageError> {
        let mut r = Reader::new(payload, "send_name", Self::TAG, 15)?;
        Ok(SendName {
            flags: DistFlags(r.u64()?),
            creation: r.u32()?,
            name: r.name16()?,
        })
    }
}

/// `send_name`, version 5 (`n`): 32-bit flags, no creation; followed by a
/// [`Complement`]. OTP 25.3+ accepts it again; erldist accepts it and never
/// sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OldSendName {
    /// The protocol version (5).
    pub version: u16,
    /// The low 32 bits of the flags.
    pub flags: u32,
    /// `alive@host`.
    pub name: String,
}

impl OldSendName {
    const TAG: u8 = b'n';

    /// Writes the payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(Self::TAG);
        out.put_u16(self.version);
        out.put_u32(self.flags);
        out.put_slice(self.name.as_bytes());
    }

    /// Reads one payload.
    ///
    /// # Errors
    /// [`MessageError`] when it is not a well-formed old `send_name`.
    pub fn decode(payload: &[u8]) -> Result<OldSendName, MessageError> {
        let mut r = Reader::new(payload, "old send_name", Self::TAG, 7)?;
        let version = r.u16()?;
        let flags = r.u32()?;
        let rest = r.rest();
        Ok(OldSendName {
            version,
            flags,
            name: r.text(rest)?,
        })
    }
}

/// Either form of `send_name`, as an acceptor receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameMessage {
    /// Version 6.
    New(SendName),
    /// Version 5.
    Old(OldSendName),
}

impl NameMessage {
    /// Reads either form.
    ///
    /// # Errors
    /// [`MessageError`] when it is neither.
    pub fn decode(payload: &[u8]) -> Result<NameMessage, MessageError> {
        match payload.first() {
            Some(&OldSendName::TAG) => OldSendName::decode(payload).map(NameMessage::Old),
            _ => SendName::decode(payload).map(NameMessage::New),
        }
    }

    /// Writes the payload.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            NameMessage::New(m) => m.encode(out),
            NameMessage::Old(m) => m.encode(out),
        }
    }
}

/// A status message (`s` and text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// `ok`: go on.
    Ok,
    /// `ok_simultaneous`: the acceptor dropped its own attempt to connect to
    /// the initiator; go on.
    OkSimultaneous,
    /// `nok`: the acceptor's own attempt wins; give this one up.
    Nok,
    /// `not_allowed`: refused (flags or allow list).
    NotAllowed,
    /// `alive`: the acceptor has a connection to a node of this name; the
    /// initiator answers [`Status::True`] (that one is stale) or
    /// [`Status::False`].
    Alive,
    /// `true`: the initiator's answer to `alive`, go on.
    True,
    /// `false`: the initiator's answer to `alive`, give up.
    False,
    /// `named:`: the name and creation the acceptor gives a `NAME_ME`
    /// initiator.
    Named {
        /// The full name.
        name: String,
        /// The creation.
        creation: u32,
    },
    /// Any other text.
    Other(String),
}

impl Status {
    const TAG: u8 = b's';
    const NAMED: &'static [u8] = b"named:";

    /// Writes the payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(Self::TAG);
        let text: &str = match self {
            Status::Ok => "ok",
            Status::OkSimultaneous => "ok_simultaneous",
            Status::Nok => "nok",
            Status::NotAllowed => "not_allowed",
            Status::Alive => "alive",
            Status::True => "true",
            Status::False => "false",
            Status::Other(t) => t,
            Status::Named { name, creation } => {
                out.put_slice(Self::NAMED);
                out.put_u16(name.len() as u16);
                out.put_slice(name.as_bytes());
                out.put_u32(*creation);
                return;
            }
        };
        out.put_slice(text.as_bytes());
    }

    /// Reads one payload.
    ///
    /// # Errors
    /// [`MessageError`] when it is not a status or `named:` is malformed.
    pub fn decode(payload: &[u8]) -> Result<Status, MessageError> {
        let mut r = Reader::new(payload, "status", Self::TAG, 1)?;
        let text = r.rest();
        if let Some(named) = text.strip_prefix(Self::NAMED) {
            let mut r = Reader {
                data: named,
                message: "status named:",
                len: payload.len(),
            };
            let name = r.name16()?;
            let creation = r.u32()?;
            // OTP ignores what follows.
            return Ok(Status::Named { name, creation });
        }
        Ok(match text {
            b"ok" => Status::Ok,
            b"ok_simultaneous" => Status::OkSimultaneous,
            b"nok" => Status::Nok,
            b"not_allowed" => Status::NotAllowed,
            b"alive" => Status::Alive,
            b"true" => Status::True,
            b"false" => Status::False,
            other => Status::Other(String::from_utf8_lossy(other).into_owned()),
        })
    }
}

/// `send_challenge`, version 6 (`N`): the acceptor's full flag offer, its
/// challenge, creation and name. Bytes after the name are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The acceptor's flags.
    pub flags: DistFlags,
    /// The challenge the initiator must answer.
    pub challenge: u32,
    /// The acceptor's creation.
    pub creation: u32,
    /// The acceptor's full name.
    pub name: String,
}

impl Challenge {
    const TAG: u8 = b'N';

    /// Writes the payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(Self::TAG);
        out.put_u64(self.flags.0);
        out.put_u32(self.challenge);
        out.put_u32(self.creation);
        out.put_u16(self.name.len() as u16);
        out.put_slice(self.name.as_bytes());
    }

    /// Reads one payload.
    ///
    /// # Errors
    /// [`MessageError`] when it is not a well-formed challenge (an old `n`
    /// challenge included: erldist only speaks version 6 as initiator).
    pub fn decode(payload: &[u8]) -> Result<Challenge, MessageError> {
        let mut r = Reader::new(payload, "challenge", Self::TAG, 19)?;
        Ok(Challenge {
            flags: DistFlags(r.u64()?),
            challenge: r.u32()?,
            creation: r.u32()?,
            name: r.name16()?,
        })
    }
}

/// `send_complement` (`c`): the high flag bits and creation an old-name
/// initiator could not put in its `n` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Complement {
    /// Flag bits 32 to 63.
    pub flags_high: u32,
    /// The initiator's creation.
    pub creation: u32,
}

impl Complement {
    const TAG: u8 = b'c';

    /// Writes the payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(Self::TAG);
        out.put_u32(self.flags_high);
        out.put_u32(self.creation);
    }

    /// Reads one payload (extra bytes are ignored, as by OTP).
    ///
    /// # Errors
    /// [`MessageError`] when it is not a complement.
    pub fn decode(payload: &[u8]) -> Result<Complement, MessageError> {
        let mut r = Reader::new(payload, "complement", Self::TAG, 9)?;
        Ok(Complement {
            flags_high: r.u32()?,
            creation: r.u32()?,
        })
    }
}

/// `send_challenge_reply` (`r`): the initiator's own challenge and its
/// answer to the acceptor's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChallengeReply {
    /// The challenge the acceptor must answer.
    pub challenge: u32,
    /// The digest of the acceptor's challenge.
    pub digest: Digest,
}

impl ChallengeReply {
    const TAG: u8 = b'r';

    /// Writes the payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(Self::TAG);
        out.put_u32(self.challenge);
        out.put_slice(&self.digest.0);
    }

    /// Reads one payload: exactly 21 bytes, as OTP matches it.
    ///
    /// # Errors
    /// [`MessageError`] when it is not a challenge reply.
    pub fn decode(payload: &[u8]) -> Result<ChallengeReply, MessageError> {
        let mut r = Reader::new(payload, "challenge_reply", Self::TAG, 21)?;
        let m = ChallengeReply {
            challenge: r.u32()?,
            digest: r.digest()?,
        };
        r.finish()?;
        Ok(m)
    }
}

/// `send_challenge_ack` (`a`): the acceptor's answer to the initiator's
/// challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChallengeAck {
    /// The digest of the initiator's challenge.
    pub digest: Digest,
}

impl ChallengeAck {
    const TAG: u8 = b'a';

    /// Writes the payload.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(Self::TAG);
        out.put_slice(&self.digest.0);
    }

    /// Reads one payload: exactly 17 bytes.
    ///
    /// # Errors
    /// [`MessageError`] when it is not a challenge ack.
    pub fn decode(payload: &[u8]) -> Result<ChallengeAck, MessageError> {
        let mut r = Reader::new(payload, "challenge_ack", Self::TAG, 17)?;
        let m = ChallengeAck {
            digest: r.digest()?,
        };
        r.finish()?;
        Ok(m)
    }
}

/// Any handshake message, for sending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// `send_name` (either version).
    Name(NameMessage),
    /// A status.
    Status(Status),
    /// A challenge.
    Challenge(Challenge),
    /// A complement.
    Complement(Complement),
    /// A challenge reply.
    ChallengeReply(ChallengeReply),
    /// A challenge ack.
    ChallengeAck(ChallengeAck),
}

impl Message {
    /// Writes the payload.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Message::Name(m) => m.encode(out),
            Message::Status(m) => m.encode(out),
            Message::Challenge(m) => m.encode(out),
            Message::Complement(m) => m.encode(out),
            Message::ChallengeReply(m) => m.encode(out),
            Message::ChallengeAck(m) => m.encode(out),
        }
    }

    /// Writes `[Len:u16]` and the payload.
    ///
    /// # Errors
    /// [`MessageError::TooLong`] (a name over 65000 bytes or so).
    pub fn encode_packet(&self, out: &mut BytesMut) -> Result<(), MessageError> {
        encode_packet(out, |o| self.encode(o))
    }

    /// The message's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Name(NameMessage::New(_)) => "send_name",
            Message::Name(NameMessage::Old(_)) => "old send_name",
            Message::Status(_) => "status",
            Message::Challenge(_) => "challenge",
            Message::Complement(_) => "complement",
            Message::ChallengeReply(_) => "challenge_reply",
            Message::ChallengeAck(_) => "challenge_ack",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Message> {
        vec![
            Message::Name(NameMessage::New(SendName {
                flags: DistFlags(0xD_07DF_7FBD),
                creation: 0x6B08_4235,
                name: "lab_a@127.0.0.1".into(),
            })),
            Message::Name(NameMessage::Old(OldSendName {
                version: 5,
                flags: 0x07DF_7FBD,
                name: "old@localhost".into(),
            })),
            Message::Status(Status::Ok),
            Message::Status(Status::Named {
                name: "2NE5IYUJ4T3Y@127.0.0.1".into(),
                creation: 0xab75_02d4,
            }),
            Message::Challenge(Challenge {
                flags: DistFlags(0xD_07DF_7FBD),
                challenge: 0x62A7_120D,
                creation: 0x6B08_42A7,
                name: "lab_b@127.0.0.1".into(),
            }),
            Message::Complement(Complement {
                flags_high: 0xD,
                creation: 7,
            }),
            Message::ChallengeReply(ChallengeReply {
                challenge: 0xc150_7388,
                digest: Digest([0xe4; 16]),
            }),
            Message::ChallengeAck(ChallengeAck {
                digest: Digest([7; 16]),
            }),
        ]
    }

    fn decode_as(template: &Message, payload: &[u8]) -> Result<Message, MessageError> {
        Ok(match template {
            Message::Name(_) => Message::Name(NameMessage::decode(payload)?),
            Message::Status(_) => Message::Status(Status::decode(payload)?),
            Message::Challenge(_) => Message::Challenge(Challenge::decode(payload)?),
            Message::Complement(_) => Message::Complement(Complement::decode(payload)?),
            Message::ChallengeReply(_) => Message::ChallengeReply(ChallengeReply::decode(payload)?),
            Message::ChallengeAck(_) => Message::ChallengeAck(ChallengeAck::decode(payload)?),
        })
    }

    #[test]
    fn every_message_round_trips_through_a_packet() {
        for m in samples() {
            let mut buf = BytesMut::new();
            m.encode_packet(&mut buf).unwrap();
            let packet = decode_packet(&mut buf).unwrap();
            assert!(buf.is_empty());
            assert_eq!(decode_as(&m, &packet).unwrap(), m, "{}", m.name());
        }
    }

    #[test]
    fn every_prefix_of_a_packet_is_incomplete() {
        for m in samples() {
            let mut full = BytesMut::new();
            m.encode_packet(&mut full).unwrap();
            for n in 0..full.len() {
                let mut prefix = BytesMut::from(&full[..n]);
                assert_eq!(decode_packet(&mut prefix), None, "{} prefix {n}", m.name());
                assert_eq!(prefix.len(), n, "buffer untouched");
            }
        }
    }

    #[test]
    fn every_prefix_of_a_payload_is_refused() {
        for m in samples() {
            let mut full = BytesMut::new();
            m.encode(&mut full);
            for n in 0..full.len() {
                let got = decode_as(&m, &full[..n]);
                if matches!(m, Message::Status(_) | Message::Name(NameMessage::Old(_))) && n >= 1 {
                    // Text to the end: a prefix may be another valid text,
                    // never the same message.
                    assert_ne!(got, Ok(m.clone()), "{} prefix {n}", m.name());
                } else {
                    assert!(got.is_err(), "{} prefix {n}", m.name());
                }
            }
        }
    }

    #[test]
    fn matches_bytes_captured_from_otp_25() {
        let captured =
            hex::decode("4e0000000d07df7fbd6b084235000f6c61625f61403132372e302e302e31").unwrap();
        let m = SendName::decode(&captured).unwrap();
        assert_eq!(m.flags, DistFlags(0xD_07DF_7FBD));
        assert_eq!(m.creation, 0x6B08_4235);
        assert_eq!(m.name, "lab_a@127.0.0.1");
        let mut out = BytesMut::new();
        m.encode(&mut out);
        assert_eq!(&out[..], &captured[..]);
        let named = hex::decode(
            "736e616d65643a0016324e45354959554a345433594031323".to_owned()
                + "72e302e302e31ab7502d4",
        )
        .unwrap();
        assert_eq!(
            Status::decode(&named).unwrap(),
            Status::Named {
                name: "2NE5IYUJ4T3Y@127.0.0.1".into(),
                creation: 0xab75_02d4
            }
        );
    }

    #[test]
    fn fixed_size_messages_refuse_trailing_bytes_and_wrong_tags() {
        let mut p = BytesMut::new();
        ChallengeAck {
            digest: Digest([1; 16]),
        }
        .encode(&mut p);
        p.put_u8(0);
        assert!(matches!(
            ChallengeAck::decode(&p),
            Err(MessageError::TrailingBytes { extra: 1, .. })
        ));
        assert!(matches!(
            ChallengeReply::decode(&p),
            Err(MessageError::UnexpectedTag { got: b'a', .. })
        ));
    }

    #[test]
    fn oversized_payloads_are_refused() {
        let mut out = BytesMut::new();
        let big = SendName {
            flags: DistFlags(0),
            creation: 0,
            name: "a".repeat(70_000),
        };
        assert!(matches!(
            encode_packet(&mut out, |o| big.encode(o)),
            Err(MessageError::TooLong(_))
        ));
        assert!(out.is_empty());
    }
}
