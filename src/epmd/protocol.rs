//! The EPMD wire protocol, sans-IO: requests and responses as Rust values,
//! with encoders and decoders over bytes.
//!
//! Every request travels as `[Length:u16][Request]` (the length excludes
//! itself); responses have no length prefix. Most responses end where their
//! fields say; `NAMES` and `DUMP` responses end when EPMD closes the
//! connection, so their decoders take an `eof` flag.
//!
//! Streaming decoders (`decode`) take a growing buffer and return
//! `Ok(None)` while more bytes are needed (the buffer is left untouched),
//! `Ok(Some(_))` once a message is complete (its bytes are consumed), and
//! `Err` on a protocol violation. Whole-message decoders (`decode_exact`)
//! take exactly one message and reject trailing bytes.
//!
//! Sources: the OTP `erl_dist_protocol` guide, OTP 25's `erl_epmd.erl` (the
//! client every Erlang node runs) and `erts/epmd/src/epmd_srv.c` (the
//! daemon).
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use bytes::{Buf, BufMut, BytesMut};
use std::fmt;

/// Largest request body (after the two length bytes) the real EPMD accepts.
///
/// `epmd_srv.c` reads into a buffer of `INBUF_SIZE = 3 * MAXSYMLEN = 3060`
/// bytes and closes the connection when `Length + 2 >= INBUF_SIZE`, so the
/// largest length field it takes is 3057.
pub const MAX_REQUEST_LEN: usize = 3 * MAX_NAME_BYTES - 3;

/// Largest node name, in bytes, EPMD stores (`MAXSYMLEN`: 255 characters of
/// up to 4 UTF-8 bytes each). The same limit applies to the `Extra` field.
pub const MAX_NAME_BYTES: usize = 255 * 4;

/// Largest node name, in characters (an atom's limit).
pub const MAX_NAME_CHARS: usize = 255;

/// The default EPMD port (`?erlang_daemon_port`).
pub const DEFAULT_PORT: u16 = 4369;

/// Highest distribution protocol version OTP 25 registers (`epmd_dist_high`).
pub const DIST_VERSION_HIGH: u16 = 6;
/// Lowest distribution protocol version OTP 25 registers (`epmd_dist_low`).
pub const DIST_VERSION_LOW: u16 = 5;

/// Result byte EPMD sends for success.
pub const RESULT_OK: u8 = 0;

/// The first byte of a request or response: which message it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tag(pub u8);

impl Tag {
    /// `ALIVE2_REQ` (`'x'`): register a node.
    pub const ALIVE2_REQ: Tag = Tag(b'x');
    /// `ALIVE2_X_RESP` (`'v'`): registration reply with a 32-bit creation.
    pub const ALIVE2_X_RESP: Tag = Tag(b'v');
    /// `ALIVE2_RESP` (`'y'`): registration reply with a 16-bit creation.
    pub const ALIVE2_RESP: Tag = Tag(b'y');
    /// `PORT_PLEASE2_REQ` (`'z'`): look a node up.
    pub const PORT_PLEASE2_REQ: Tag = Tag(b'z');
    /// `PORT2_RESP` (`'w'`): the answer to a lookup.
    pub const PORT2_RESP: Tag = Tag(b'w');
    /// `NAMES_REQ` (`'n'`): list the registered names.
    pub const NAMES_REQ: Tag = Tag(b'n');
    /// `DUMP_REQ` (`'d'`): list registered and remembered names (debug).
    pub const DUMP_REQ: Tag = Tag(b'd');
    /// `KILL_REQ` (`'k'`): ask EPMD to exit.
    pub const KILL_REQ: Tag = Tag(b'k');
    /// `STOP_REQ` (`'s'`): drop one registration (relaxed mode only).
    pub const STOP_REQ: Tag = Tag(b's');
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_ascii_graphic() {
            write!(f, "'{}' ({})", self.0 as char, self.0)
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// The node type field of `ALIVE2_REQ` / `PORT2_RESP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeType(pub u8);

impl NodeType {
    /// `77` (`'M'`): a normal Erlang node. OTP sends this even for hidden
    /// nodes.
    pub const NORMAL: NodeType = NodeType(77);
    /// `72` (`'H'`): a hidden node (C node).
    pub const HIDDEN: NodeType = NodeType(72);
}

/// The transport protocol field of `ALIVE2_REQ` / `PORT2_RESP`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Transport(pub u8);

impl Transport {
    /// `0`: TCP over IPv4 (what OTP sends, also for IPv6).
    pub const TCP_IPV4: Transport = Transport(0);
}

/// A violation of the EPMD protocol found while decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A request length field of zero or above [`MAX_REQUEST_LEN`].
    #[error("request length {len} out of range (1..={MAX_REQUEST_LEN})")]
    BadLength {
        /// The length field received.
        len: usize,
    },
    /// A first byte that is not a known message.
    #[error("unknown message tag {tag}")]
    UnknownTag {
        /// The tag received.
        tag: Tag,
    },
    /// The message ended before its fields did.
    #[error("{what}: message truncated")]
    Truncated {
        /// Which message or field.
        what: &'static str,
    },
    /// Bytes left over after a complete message.
    #[error("{what}: {extra} trailing bytes")]
    TrailingBytes {
        /// Which message.
        what: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// A node name that is empty, contains NUL or is not UTF-8.
    #[error("{what}: invalid node name")]
    InvalidName {
        /// Which message.
        what: &'static str,
    },
    /// A reply that is not one of the expected forms.
    #[error("unexpected reply: {detail}")]
    UnexpectedReply {
        /// What was wrong.
        detail: String,
    },
}

/// A bounds-checked reader over one message.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }
    fn u8(&mut self) -> Result<u8, ProtocolError> {
        let (&b, rest) = self.buf.split_first().ok_or(self.truncated())?;
        self.buf = rest;
        Ok(b)
    }
    fn u16(&mut self) -> Result<u16, ProtocolError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let b = self.bytes(N)?;
        b.try_into().map_err(|_| self.truncated())
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(self.truncated());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
    fn finish(self) -> Result<(), ProtocolError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::TrailingBytes {
                what: self.what,
                extra: self.buf.len(),
            })
        }
    }
    fn truncated(&self) -> ProtocolError {
        ProtocolError::Truncated { what: self.what }
    }
}

/// A node name as the protocol carries it: UTF-8, not empty, no NUL.
fn name_from_bytes(bytes: &[u8], what: &'static str) -> Result<String, ProtocolError> {
    if bytes.is_empty() || bytes.contains(&0) {
        return Err(ProtocolError::InvalidName { what });
    }
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtocolError::InvalidName { what })
}

/// The big-endian `u16` at `at` of `buf`, if the buffer holds it.
fn be_u16_at(buf: &[u8], at: usize) -> Option<u16> {
    let b: [u8; 2] = buf.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_be_bytes(b))
}

fn put_u16_len(out: &mut BytesMut, len: usize) {
    // Lengths written here come from values whose size we bound on
    // construction; saturate rather than wrap if a caller bypassed that.
    out.put_u16(u16::try_from(len).unwrap_or(u16::MAX));
}

/// `ALIVE2_REQ`: register a node with EPMD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alive2Request {
    /// The node's distribution listen port.
    pub port: u16,
    /// Normal or hidden.
    pub node_type: NodeType,
    /// Transport protocol, `0` for TCP.
    pub transport: Transport,
    /// Highest distribution version the node speaks.
    pub highest_version: u16,
    /// Lowest distribution version the node speaks.
    pub lowest_version: u16,
    /// The node's name: the part before `@`.
    pub name: String,
    /// Opaque extra data, returned to whoever looks the node up.
    pub extra: Vec<u8>,
}

impl Alive2Request {
    /// A request as OTP 25 sends it: type `'M'`, TCP, versions 6..5, no
    /// extra data.
    pub fn new(name: impl Into<String>, port: u16) -> Self {
        Alive2Request {
            port,
            node_type: NodeType::NORMAL,
            transport: Transport::TCP_IPV4,
            highest_version: DIST_VERSION_HIGH,
            lowest_version: DIST_VERSION_LOW,
            name: name.into(),
            extra: Vec::new(),
        }
    }

    /// Whether EPMD answers this request with the extended reply
    /// (`ALIVE2_X_RESP`, 32-bit creation): when the highest version is 6 or
    /// more.
    pub fn wants_extended_reply(&self) -> bool {
        self.highest_version >= 6
    }

    fn encode_body(&self, out: &mut BytesMut) {
        out.put_u8(Tag::ALIVE2_REQ.0);
        out.put_u16(self.port);
        out.put_u8(self.node_type.0);
        out.put_u8(self.transport.0);
        out.put_u16(self.highest_version);
        out.put_u16(self.lowest_version);
        put_u16_len(out, self.name.len());
        out.put_slice(self.name.as_bytes());
        put_u16_len(out, self.extra.len());
        out.put_slice(&self.extra);
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        let port = r.u16()?;
        let node_type = NodeType(r.u8()?);
        let transport = Transport(r.u8()?);
        let highest_version = r.u16()?;
        let lowest_version = r.u16()?;
        let nlen = usize::from(r.u16()?);
        let name = name_from_bytes(r.bytes(nlen)?, "ALIVE2_REQ")?;
        let elen = usize::from(r.u16()?);
        let extra = r.bytes(elen)?.to_vec();
        Ok(Alive2Request {
            port,
            node_type,
            transport,
            highest_version,
            lowest_version,
            name,
            extra,
        })
    }
}

/// A request to EPMD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `ALIVE2_REQ`: register a node; the connection then stays open for as
    /// long as the registration lasts.
    Alive2(Alive2Request),
    /// `PORT_PLEASE2_REQ`: look up a node by name.
    PortPlease2 {
        /// The name (the part before `@`).
        name: String,
    },
    /// `NAMES_REQ`: list the registered names.
    Names,
    /// `DUMP_REQ`: list registered and remembered names (local peers only).
    Dump,
    /// `KILL_REQ`: ask EPMD to exit (local peers only).
    Kill,
    /// `STOP_REQ`: drop a registration (local peers, relaxed mode only).
    Stop {
        /// The name to drop.
        name: String,
    },
}

impl Request {
    /// Appends the request, with its length prefix, to `out`.
    ///
    /// The length is written as a placeholder and patched once the body is
    /// known.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u16(0);
        match self {
            Request::Alive2(a) => a.encode_body(out),
            Request::PortPlease2 { name } => {
                out.put_u8(Tag::PORT_PLEASE2_REQ.0);
                out.put_slice(name.as_bytes());
            }
            Request::Names => out.put_u8(Tag::NAMES_REQ.0),
            Request::Dump => out.put_u8(Tag::DUMP_REQ.0),
            Request::Kill => out.put_u8(Tag::KILL_REQ.0),
            Request::Stop { name } => {
                out.put_u8(Tag::STOP_REQ.0);
                out.put_slice(name.as_bytes());
            }
        }
        let len = out.len() - start - 2;
        let len = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
        if let Some(slot) = out.get_mut(start..start + 2) {
            slot.copy_from_slice(&len);
        }
    }

    /// The request as bytes, length prefix included.
    pub fn to_bytes(&self) -> BytesMut {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out
    }

    /// Streaming decode of one length-prefixed request from `buf`.
    ///
    /// Returns `Ok(None)` while the request is incomplete (reserving room
    /// for the rest), and consumes the request's bytes when it returns one.
    /// A length field of 0 or above [`MAX_REQUEST_LEN`] is an error as soon
    /// as the two length bytes are in, so a peer cannot make us buffer more
    /// than the real EPMD would.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        let Some(len) = be_u16_at(buf, 0) else {
            return Ok(None);
        };
        let len = usize::from(len);
        if len == 0 || len > MAX_REQUEST_LEN {
            return Err(ProtocolError::BadLength { len });
        }
        if buf.len() < 2 + len {
            buf.reserve(2 + len - buf.len());
            return Ok(None);
        }
        buf.advance(2);
        let body = buf.split_to(len);
        Request::decode_body(&body).map(Some)
    }

    /// Decodes exactly one length-prefixed request; trailing bytes are an
    /// error.
    pub fn decode_exact(bytes: &[u8]) -> Result<Request, ProtocolError> {
        let mut buf = BytesMut::from(bytes);
        match Request::decode(&mut buf)? {
            None => Err(ProtocolError::Truncated { what: "request" }),
            Some(_) if !buf.is_empty() => Err(ProtocolError::TrailingBytes {
                what: "request",
                extra: buf.len(),
            }),
            Some(req) => Ok(req),
        }
    }

    /// Decodes a request body (what follows the length field).
    ///
    /// The rules follow `epmd_srv.c`: `PORT_PLEASE2_REQ` and `STOP_REQ` may
    /// carry one trailing NUL (old clients sent C strings); names must be
    /// non-empty UTF-8 without NUL; `NAMES`, `DUMP` and `KILL` are the tag
    /// alone.
    pub fn decode_body(body: &[u8]) -> Result<Request, ProtocolError> {
        let mut r = Reader::new(body, "request");
        let tag = Tag(r.u8()?);
        let req = match tag {
            Tag::ALIVE2_REQ => {
                r.what = "ALIVE2_REQ";
                Request::Alive2(Alive2Request::decode_body(&mut r)?)
            }
            Tag::PORT_PLEASE2_REQ => Request::PortPlease2 {
                name: c_name(r.rest(), "PORT_PLEASE2_REQ")?,
            },
            Tag::STOP_REQ => Request::Stop {
                name: c_name(r.rest(), "STOP_REQ")?,
            },
            Tag::NAMES_REQ => Request::Names,
            Tag::DUMP_REQ => Request::Dump,
            Tag::KILL_REQ => Request::Kill,
            tag => return Err(ProtocolError::UnknownTag { tag }),
        };
        r.finish()?;
        Ok(req)
    }

    /// The request's tag.
    pub fn tag(&self) -> Tag {
        match self {
            Request::Alive2(_) => Tag::ALIVE2_REQ,
            Request::PortPlease2 { .. } => Tag::PORT_PLEASE2_REQ,
            Request::Names => Tag::NAMES_REQ,
            Request::Dump => Tag::DUMP_REQ,
            Request::Kill => Tag::KILL_REQ,
            Request::Stop { .. } => Tag::STOP_REQ,
        }
    }
}

/// A name sent as the rest of a request, possibly NUL-terminated.
fn c_name(bytes: &[u8], what: &'static str) -> Result<String, ProtocolError> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    name_from_bytes(bytes, what)
}

/// The reply to `ALIVE2_REQ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alive2Response {
    /// `ALIVE2_X_RESP`: the reply to a node registering with highest
    /// version 6 or more. Result `0` is success; on failure EPMD sends
    /// creation 99.
    Extended {
        /// `0` on success.
        result: u8,
        /// The creation number the node must use.
        creation: u32,
    },
    /// `ALIVE2_RESP`: the reply to an older node; creation is 1..=3.
    Legacy {
        /// `0` on success.
        result: u8,
        /// The creation number.
        creation: u16,
    },
}

impl Alive2Response {
    /// The result byte: `0` on success.
    pub fn result(&self) -> u8 {
        match *self {
            Alive2Response::Extended { result, .. } | Alive2Response::Legacy { result, .. } => {
                result
            }
        }
    }

    /// The creation number, widened to 32 bits.
    pub fn creation(&self) -> u32 {
        match *self {
            Alive2Response::Extended { creation, .. } => creation,
            Alive2Response::Legacy { creation, .. } => u32::from(creation),
        }
    }

    /// Appends the reply to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match *self {
            Alive2Response::Extended { result, creation } => {
                out.put_u8(Tag::ALIVE2_X_RESP.0);
                out.put_u8(result);
                out.put_u32(creation);
            }
            Alive2Response::Legacy { result, creation } => {
                out.put_u8(Tag::ALIVE2_RESP.0);
                out.put_u8(result);
                out.put_u16(creation);
            }
        }
    }

    /// Streaming decode; accepts either form.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Self>, ProtocolError> {
        let Some(&tag) = buf.first() else {
            return Ok(None);
        };
        let need = match Tag(tag) {
            Tag::ALIVE2_X_RESP => 6,
            Tag::ALIVE2_RESP => 4,
            tag => {
                return Err(ProtocolError::UnexpectedReply {
                    detail: format!("ALIVE2 reply with tag {tag}"),
                })
            }
        };
        if buf.len() < need {
            return Ok(None);
        }
        let msg = buf.split_to(need);
        let mut r = Reader::new(&msg, "ALIVE2 reply");
        let _ = r.u8()?;
        let result = r.u8()?;
        let reply = if need == 6 {
            Alive2Response::Extended {
                result,
                creation: r.u32()?,
            }
        } else {
            Alive2Response::Legacy {
                result,
                creation: r.u16()?,
            }
        };
        Ok(Some(reply))
    }

    /// Decodes exactly one reply; trailing bytes are an error.
    pub fn decode_exact(bytes: &[u8]) -> Result<Self, ProtocolError> {
        decode_exact_with(bytes, "ALIVE2 reply", Self::decode)
    }
}

fn decode_exact_with<T>(
    bytes: &[u8],
    what: &'static str,
    decode: impl FnOnce(&mut BytesMut) -> Result<Option<T>, ProtocolError>,
) -> Result<T, ProtocolError> {
    let mut buf = BytesMut::from(bytes);
    match decode(&mut buf)? {
        None => Err(ProtocolError::Truncated { what }),
        Some(_) if !buf.is_empty() => Err(ProtocolError::TrailingBytes {
            what,
            extra: buf.len(),
        }),
        Some(v) => Ok(v),
    }
}

/// What EPMD knows about a registered node: the body of a successful
/// `PORT2_RESP`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's distribution listen port.
    pub port: u16,
    /// Normal or hidden.
    pub node_type: NodeType,
    /// Transport protocol.
    pub transport: Transport,
    /// Highest distribution version the node speaks.
    pub highest_version: u16,
    /// Lowest distribution version the node speaks.
    pub lowest_version: u16,
    /// The node's name (before `@`).
    pub name: String,
    /// The extra data the node registered.
    pub extra: Vec<u8>,
}

/// The reply to `PORT_PLEASE2_REQ`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Port2Response {
    /// Result 0: the node is registered.
    Found(NodeInfo),
    /// Result ≠ 0 (EPMD sends 1): no such node.
    NotFound {
        /// The result byte.
        result: u8,
    },
}

impl Port2Response {
    /// Appends the reply to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(Tag::PORT2_RESP.0);
        match self {
            Port2Response::NotFound { result } => out.put_u8(*result),
            Port2Response::Found(n) => {
                out.put_u8(RESULT_OK);
                out.put_u16(n.port);
                out.put_u8(n.node_type.0);
                out.put_u8(n.transport.0);
                out.put_u16(n.highest_version);
                out.put_u16(n.lowest_version);
                put_u16_len(out, n.name.len());
                out.put_slice(n.name.as_bytes());
                put_u16_len(out, n.extra.len());
                out.put_slice(&n.extra);
            }
        }
    }

    /// Streaming decode.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Self>, ProtocolError> {
        let Some(&[tag, result]) = buf.get(..2) else {
            if let Some(&tag) = buf.first() {
                check_tag(tag, Tag::PORT2_RESP)?;
            }
            return Ok(None);
        };
        check_tag(tag, Tag::PORT2_RESP)?;
        if result != RESULT_OK {
            buf.advance(2);
            return Ok(Some(Port2Response::NotFound { result }));
        }
        // Fixed part: tag, result, port, type, proto, high, low, nlen.
        let Some(nlen) = be_u16_at(buf, 10) else {
            return Ok(None);
        };
        let nlen = usize::from(nlen);
        let Some(elen) = be_u16_at(buf, 12 + nlen) else {
            return Ok(None);
        };
        let elen = usize::from(elen);
        let total = 14 + nlen + elen;
        if buf.len() < total {
            return Ok(None);
        }
        let msg = buf.split_to(total);
        let mut r = Reader::new(&msg, "PORT2_RESP");
        r.bytes(2)?;
        let port = r.u16()?;
        let node_type = NodeType(r.u8()?);
        let transport = Transport(r.u8()?);
        let highest_version = r.u16()?;
        let lowest_version = r.u16()?;
        let nlen = usize::from(r.u16()?);
        let name = name_from_bytes(r.bytes(nlen)?, "PORT2_RESP")?;
        let elen = usize::from(r.u16()?);
        let extra = r.bytes(elen)?.to_vec();
        r.finish()?;
        Ok(Some(Port2Response::Found(NodeInfo {
            port,
            node_type,
            transport,
            highest_version,
            lowest_version,
            name,
            extra,
        })))
    }

    /// Decodes exactly one reply; trailing bytes are an error.
    pub fn decode_exact(bytes: &[u8]) -> Result<Self, ProtocolError> {
        decode_exact_with(bytes, "PORT2_RESP", Self::decode)
    }
}

fn check_tag(got: u8, want: Tag) -> Result<(), ProtocolError> {
    if got == want.0 {
        Ok(())
    } else {
        Err(ProtocolError::UnexpectedReply {
            detail: format!("expected tag {want}, got {}", Tag(got)),
        })
    }
}

/// One line of a `NAMES` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameEntry {
    /// The node name (before `@`).
    pub name: String,
    /// Its distribution port.
    pub port: u16,
}

/// The reply to `NAMES_REQ`: EPMD's own port, then one line
/// `name <name> at port <port>\n` per registered node, newest first; the
/// reply ends when EPMD closes the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamesResponse {
    /// The port EPMD listens on (OTP checks it against the port it dialled).
    pub epmd_port: u32,
    /// The registered nodes, in EPMD's order.
    pub entries: Vec<NameEntry>,
}

impl NamesResponse {
    /// Appends the reply to `out`, in the exact text format of `epmd_srv.c`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.epmd_port);
        for e in &self.entries {
            out.put_slice(format!("name {} at port {}\n", e.name, e.port).as_bytes());
        }
    }

    /// The text part of the reply, as `epmd -names` prints it after its
    /// header line.
    pub fn text(&self) -> String {
        self.entries
            .iter()
            .map(|e| format!("name {} at port {}\n", e.name, e.port))
            .collect()
    }

    /// Streaming decode: the reply is complete only at end of stream, so
    /// this returns `Ok(None)` until `eof` is true. Lines that do not parse
    /// are skipped, as OTP's `erl_epmd` does; a last line without its
    /// newline means the reply was cut short.
    pub fn decode(buf: &mut BytesMut, eof: bool) -> Result<Option<Self>, ProtocolError> {
        if !eof {
            return Ok(None);
        }
        let msg = buf.split();
        let mut r = Reader::new(&msg, "NAMES reply");
        let epmd_port = r.u32()?;
        let text = r.rest();
        let mut entries = Vec::new();
        let mut lines = text.split(|&b| b == b'\n');
        let last = lines.next_back().unwrap_or_default();
        if !last.is_empty() {
            return Err(ProtocolError::Truncated {
                what: "NAMES reply line",
            });
        }
        for line in lines {
            if let Some(e) = parse_names_line(line) {
                entries.push(e);
            }
        }
        Ok(Some(NamesResponse { epmd_port, entries }))
    }

    /// Decodes a complete reply (everything EPMD sent before closing).
    pub fn decode_exact(bytes: &[u8]) -> Result<Self, ProtocolError> {
        let mut buf = BytesMut::from(bytes);
        NamesResponse::decode(&mut buf, true)?.ok_or(ProtocolError::Truncated {
            what: "NAMES reply",
        })
    }
}

/// Parses `name <name> at port <port>` as `erl_epmd:parse_line/1` does: the
/// name runs to the first space.
fn parse_names_line(line: &[u8]) -> Option<NameEntry> {
    let line = std::str::from_utf8(line).ok()?;
    let rest = line.strip_prefix("name ")?;
    let (name, rest) = rest.split_once(' ')?;
    let port = rest.strip_prefix("at port ")?.parse().ok()?;
    Some(NameEntry {
        name: name.to_owned(),
        port,
    })
}

/// One line of a `DUMP` reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpEntry {
    /// The node name.
    pub name: String,
    /// The node's (last) distribution port.
    pub port: u16,
    /// The file descriptor of the registering connection, in EPMD.
    pub fd: i32,
}

/// The reply to `DUMP_REQ`: EPMD's port, then the active names and the
/// remembered (old/unused) ones, each line followed by a NUL byte, exactly
/// as `epmd_srv.c` writes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpResponse {
    /// The port EPMD listens on.
    pub epmd_port: u32,
    /// Registered names.
    pub active: Vec<DumpEntry>,
    /// Names registered before and since released.
    pub unused: Vec<DumpEntry>,
}

impl DumpResponse {
    /// Appends the reply to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.epmd_port);
        for e in &self.active {
            out.put_slice(
                format!(
                    "active name     <{}> at port {}, fd = {}\n\0",
                    e.name, e.port, e.fd
                )
                .as_bytes(),
            );
        }
        for e in &self.unused {
            out.put_slice(
                format!(
                    "old/unused name <{}>, port = {}, fd = {} \n\0",
                    e.name, e.port, e.fd
                )
                .as_bytes(),
            );
        }
    }

    /// Decodes a complete reply into EPMD's port and the text, with the NUL
    /// separators removed (as `epmd -dump` prints it).
    pub fn decode_text(bytes: &[u8]) -> Result<(u32, String), ProtocolError> {
        let mut r = Reader::new(bytes, "DUMP reply");
        let port = r.u32()?;
        let text: Vec<u8> = r.rest().iter().copied().filter(|&b| b != 0).collect();
        Ok((port, String::from_utf8_lossy(&text).into_owned()))
    }
}

/// The reply to `KILL_REQ`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KillResponse {
    /// `"OK"`: EPMD exits.
    Ok,
    /// `"NO"`: nodes are registered and EPMD is not in relaxed mode.
    No,
}

impl KillResponse {
    /// Appends the reply to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(match self {
            KillResponse::Ok => b"OK",
            KillResponse::No => b"NO",
        });
    }

    /// Streaming decode.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Self>, ProtocolError> {
        let Some(msg) = buf.get(..2) else {
            return match (buf.first(), buf.is_empty()) {
                (_, true) | (Some(b'O' | b'N'), _) => Ok(None),
                _ => Err(ProtocolError::UnexpectedReply {
                    detail: format!("KILL reply {:?}", String::from_utf8_lossy(buf)),
                }),
            };
        };
        let reply = match msg {
            b"OK" => KillResponse::Ok,
            b"NO" => KillResponse::No,
            other => {
                return Err(ProtocolError::UnexpectedReply {
                    detail: format!("KILL reply {:?}", String::from_utf8_lossy(other)),
                })
            }
        };
        buf.advance(2);
        Ok(Some(reply))
    }

    /// Decodes exactly one reply; trailing bytes are an error.
    pub fn decode_exact(bytes: &[u8]) -> Result<Self, ProtocolError> {
        decode_exact_with(bytes, "KILL reply", Self::decode)
    }
}

/// The reply to `STOP_REQ` (relaxed mode only).
///
/// The real EPMD answers a name it does not hold with `"NOEXIST"` and then,
/// falling through, `"STOPPED"` as well: 14 bytes in all. We send the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopResponse {
    /// `"STOPPED"`: the registration was dropped.
    Stopped,
    /// `"NOEXIST"` (followed by `"STOPPED"`): no such name.
    NoExist,
}

impl StopResponse {
    /// Appends the reply to `out`, as `epmd_srv.c` writes it.
    pub fn encode(&self, out: &mut BytesMut) {
        if *self == StopResponse::NoExist {
            out.put_slice(b"NOEXIST");
        }
        out.put_slice(b"STOPPED");
    }

    /// Decodes a complete reply (everything before EPMD closed).
    pub fn decode_exact(bytes: &[u8]) -> Result<Self, ProtocolError> {
        match bytes {
            b"STOPPED" => Ok(StopResponse::Stopped),
            b"NOEXIST" | b"NOEXISTSTOPPED" => Ok(StopResponse::NoExist),
            [] => Err(ProtocolError::Truncated { what: "STOP reply" }),
            other => Err(ProtocolError::UnexpectedReply {
                detail: format!("STOP reply {:?}", String::from_utf8_lossy(other)),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_requests() -> Vec<Request> {
        let mut full = Alive2Request::new("nöde", 45979);
        full.extra = b"extra".to_vec();
        full.node_type = NodeType::HIDDEN;
        vec![
            Request::Alive2(Alive2Request::new("lab_c", 42905)),
            Request::Alive2(full),
            Request::PortPlease2 {
                name: "lab_b".into(),
            },
            Request::Names,
            Request::Dump,
            Request::Kill,
            Request::Stop {
                name: "lab_b".into(),
            },
        ]
    }

    #[test]
    fn alive2_request_matches_otp_capture() {
        // Captured from OTP 25.2.3 (protocol.md §1.2).
        let want = [
            0x00, 0x12, 0x78, 0xa7, 0x99, 0x4d, 0x00, 0x00, 0x06, 0x00, 0x05, 0x00, 0x05, 0x6c,
            0x61, 0x62, 0x5f, 0x63, 0x00, 0x00,
        ];
        let req = Request::Alive2(Alive2Request::new("lab_c", 0xa799));
        assert_eq!(&req.to_bytes()[..], &want[..]);
        assert_eq!(Request::decode_exact(&want).unwrap(), req);
    }

    #[test]
    fn requests_round_trip() {
        for req in all_requests() {
            let bytes = req.to_bytes();
            assert_eq!(Request::decode_exact(&bytes).unwrap(), req);
        }
    }

    #[test]
    fn every_request_prefix_is_incomplete() {
        for req in all_requests() {
            let bytes = req.to_bytes();
            for n in 0..bytes.len() {
                let mut buf = BytesMut::from(&bytes[..n]);
                assert_eq!(Request::decode(&mut buf), Ok(None), "{req:?} prefix {n}");
                assert_eq!(buf.len(), n, "buffer untouched");
            }
        }
    }

    #[test]
    fn request_rejects_trailing_bytes() {
        let mut bytes = Request::Names.to_bytes();
        bytes.put_u8(0);
        assert!(matches!(
            Request::decode_exact(&bytes),
            Err(ProtocolError::TrailingBytes { .. })
        ));
        // Trailing bytes inside the length-delimited body.
        assert!(matches!(
            Request::decode_exact(&[0, 2, b'n', 0]),
            Err(ProtocolError::TrailingBytes { .. })
        ));
    }

    #[test]
    fn request_length_limits_match_epmd() {
        let mut zero = BytesMut::from(&[0u8, 0][..]);
        assert_eq!(
            Request::decode(&mut zero),
            Err(ProtocolError::BadLength { len: 0 })
        );
        let mut big = BytesMut::from(&[0x0b, 0xf2][..]); // 3058
        assert_eq!(
            Request::decode(&mut big),
            Err(ProtocolError::BadLength { len: 3058 })
        );
        let mut ok = BytesMut::from(&[0x0b, 0xf1][..]); // 3057: wait for more
        assert_eq!(Request::decode(&mut ok), Ok(None));
    }

    #[test]
    fn port_please_accepts_one_trailing_nul_and_rejects_bad_names() {
        assert_eq!(
            Request::decode_exact(b"\x00\x04zab\x00").unwrap(),
            Request::PortPlease2 { name: "ab".into() }
        );
        for bad in [
            &b"\x00\x01z"[..],
            b"\x00\x02z\x00",
            b"\x00\x04za\x00b",
            b"\x00\x02z\xff",
        ] {
            assert!(matches!(
                Request::decode_exact(bad),
                Err(ProtocolError::InvalidName { .. })
            ));
        }
    }

    #[test]
    fn unknown_tags_and_truncated_alive2_are_errors() {
        assert!(matches!(
            Request::decode_exact(b"\x00\x01Q"),
            Err(ProtocolError::UnknownTag { tag: Tag(b'Q') })
        ));
        // Name length pointing past the end of the body.
        assert!(matches!(
            Request::decode_exact(b"\x00\x0dx\x00\x01M\x00\x00\x06\x00\x05\x00\x09ab"),
            Err(ProtocolError::Truncated { .. })
        ));
    }

    fn alive2_responses() -> Vec<Alive2Response> {
        vec![
            Alive2Response::Extended {
                result: 0,
                creation: 0x1234_5678,
            },
            Alive2Response::Extended {
                result: 1,
                creation: 99,
            },
            Alive2Response::Legacy {
                result: 0,
                creation: 3,
            },
        ]
    }

    #[test]
    fn alive2_responses_round_trip_and_prefixes_are_incomplete() {
        for resp in alive2_responses() {
            let mut bytes = BytesMut::new();
            resp.encode(&mut bytes);
            assert_eq!(Alive2Response::decode_exact(&bytes).unwrap(), resp);
            for n in 0..bytes.len() {
                let mut buf = BytesMut::from(&bytes[..n]);
                assert_eq!(Alive2Response::decode(&mut buf), Ok(None));
                assert_eq!(buf.len(), n);
            }
            let mut long = bytes.clone();
            long.put_u8(7);
            assert!(Alive2Response::decode_exact(&long).is_err());
        }
        assert!(Alive2Response::decode_exact(b"q").is_err());
    }

    fn port2_responses() -> Vec<Port2Response> {
        vec![
            Port2Response::NotFound { result: 1 },
            Port2Response::Found(NodeInfo {
                port: 45979,
                node_type: NodeType::NORMAL,
                transport: Transport::TCP_IPV4,
                highest_version: 6,
                lowest_version: 5,
                name: "lab_b".into(),
                extra: vec![],
            }),
            Port2Response::Found(NodeInfo {
                port: 1,
                node_type: NodeType::HIDDEN,
                transport: Transport(1),
                highest_version: 6,
                lowest_version: 6,
                name: "ü".into(),
                extra: vec![0, 1, 2],
            }),
        ]
    }

    #[test]
    fn port2_matches_capture() {
        let want = b"\x77\x00\xb3\x9b\x4d\x00\x00\x06\x00\x05\x00\x05lab_b\x00\x00";
        let mut out = BytesMut::new();
        port2_responses()[1].encode(&mut out);
        assert_eq!(&out[..], &want[..]);
    }

    #[test]
    fn port2_responses_round_trip_and_prefixes_are_incomplete() {
        for resp in port2_responses() {
            let mut bytes = BytesMut::new();
            resp.encode(&mut bytes);
            assert_eq!(Port2Response::decode_exact(&bytes).unwrap(), resp);
            for n in 0..bytes.len() {
                let mut buf = BytesMut::from(&bytes[..n]);
                assert_eq!(Port2Response::decode(&mut buf), Ok(None), "{resp:?} {n}");
                assert_eq!(buf.len(), n);
            }
            let mut long = bytes.clone();
            long.put_u8(7);
            assert!(Port2Response::decode_exact(&long).is_err());
        }
        assert!(Port2Response::decode_exact(b"v\x00").is_err());
    }

    #[test]
    fn names_round_trip_and_text_matches_epmd() {
        let resp = NamesResponse {
            epmd_port: 4369,
            entries: vec![
                NameEntry {
                    name: "lab_py".into(),
                    port: 45523,
                },
                NameEntry {
                    name: "lab_b".into(),
                    port: 45979,
                },
            ],
        };
        let mut bytes = BytesMut::new();
        resp.encode(&mut bytes);
        assert_eq!(
            &bytes[..],
            &b"\x00\x00\x11\x11name lab_py at port 45523\nname lab_b at port 45979\n"[..]
        );
        assert_eq!(NamesResponse::decode_exact(&bytes).unwrap(), resp);
        for n in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..n]);
            assert_eq!(NamesResponse::decode(&mut buf, false), Ok(None));
            assert_eq!(buf.len(), n);
            // Cut short and closed: an error unless the cut falls on a line
            // boundary.
            let closed = NamesResponse::decode_exact(&bytes[..n]);
            assert_eq!(closed.is_ok(), n == 4 || n == 30, "prefix {n}: {closed:?}");
        }
    }

    #[test]
    fn names_skips_lines_otp_would_skip() {
        let got =
            NamesResponse::decode_exact(b"\x00\x00\x11\x11garbage\nname a at port 1\n").unwrap();
        assert_eq!(
            got.entries,
            vec![NameEntry {
                name: "a".into(),
                port: 1
            }]
        );
    }

    #[test]
    fn dump_matches_epmd_format() {
        let resp = DumpResponse {
            epmd_port: 24370,
            active: vec![DumpEntry {
                name: "probe1".into(),
                port: 37119,
                fd: 5,
            }],
            unused: vec![DumpEntry {
                name: "probe2".into(),
                port: 38255,
                fd: 5,
            }],
        };
        let mut bytes = BytesMut::new();
        resp.encode(&mut bytes);
        // Observed from the real epmd 25.2.3.
        let want = b"\x00\x00_2active name     <probe1> at port 37119, fd = 5\n\x00\
old/unused name <probe2>, port = 38255, fd = 5 \n\x00";
        assert_eq!(&bytes[..], &want[..]);
        let (port, text) = DumpResponse::decode_text(&bytes).unwrap();
        assert_eq!(port, 24370);
        assert!(text.starts_with("active name     <probe1>"));
    }

    #[test]
    fn kill_and_stop_replies() {
        for resp in [KillResponse::Ok, KillResponse::No] {
            let mut bytes = BytesMut::new();
            resp.encode(&mut bytes);
            assert_eq!(KillResponse::decode_exact(&bytes).unwrap(), resp);
            for n in 0..bytes.len() {
                let mut buf = BytesMut::from(&bytes[..n]);
                assert_eq!(KillResponse::decode(&mut buf), Ok(None));
            }
        }
        assert!(KillResponse::decode_exact(b"XX").is_err());
        let mut out = BytesMut::new();
        StopResponse::NoExist.encode(&mut out);
        assert_eq!(&out[..], b"NOEXISTSTOPPED");
        assert_eq!(
            StopResponse::decode_exact(&out).unwrap(),
            StopResponse::NoExist
        );
        assert_eq!(
            StopResponse::decode_exact(b"STOPPED").unwrap(),
            StopResponse::Stopped
        );
        assert!(StopResponse::decode_exact(b"").is_err());
    }
}
