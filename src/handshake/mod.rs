//! The distribution handshake: names, cookies, challenges and flags.
//!
//! Everything here is sans-IO: message codecs ([`messages`]), cookies and
//! digests ([`cookie`]), node names ([`name`]) and the initiator and
//! acceptor state machines ([`state`]). The tokio driver in
//! [`connection::driver`](crate::connection::driver) runs them on sockets.
//!
//! erldist speaks protocol version 6 (`DFLAG_HANDSHAKE_23`, OTP 23+):
//! it always sends the `N` name message (OTP 25.0–25.2 drop the old `n`),
//! and as acceptor also takes the old `n` message with its `c` complement
//! (OTP 25.3+ accept it again; OTP 23/24 send it in rare cases).
//!
//! # Flags
//!
//! [`DEFAULT_FLAGS`] is what erldist's term codec and pass-through framing
//! implement; layers above add the flags of the control messages they
//! handle (monitors, spawn, aliases, ...). [`REQUIRED_FLAGS`] is what a
//! peer must offer: what OTP 26 and 27 require (a superset of OTP 25's
//! set), since erldist relies on them (`UNLINK_ID`, `V4_NC`).

pub mod cookie;
pub mod messages;
pub mod name;
pub mod state;

pub use cookie::{gen_challenge, Cookie, CookieError, Cookies, Digest};
pub use messages::{
    decode_packet, encode_packet, Challenge, ChallengeAck, ChallengeReply, Complement, Message,
    MessageError, NameMessage, OldSendName, SendName, Status,
};
pub use name::{local_short_host_name, NameError, NameMode, NodeName};
pub use state::{
    AcceptPending, Acceptor, AfterName, Arbiter, AwaitAck, AwaitAliveReply, AwaitChallenge,
    AwaitComplement, AwaitName, AwaitReply, AwaitStatus, Failure, HandshakeConfig, HandshakeError,
    HandshakeOutcome, Initiator, LocalName, NoArbiter, Role, Step,
};

use crate::flags::DistFlags;

/// The flags a peer must offer: OTP 26's mandatory set (which contains
/// OTP 25's). Every OTP 25+ node offers them.
pub const REQUIRED_FLAGS: DistFlags = DistFlags::MANDATORY_26;

/// What erldist implements at the connection level, offered by default
/// (with [`DistFlags::PUBLISHED`] for a visible node):
///
/// - the mandatory sets of OTP 25 and 26, which the term codec handles
///   (extended pids, ports and references, new funs, exports, bit
///   binaries, new floats, UTF-8 atoms, maps, big creations, `V4_NC`), the
///   version 6 handshake, and `UNLINK_ID` (required by OTP 26+; the link
///   protocol itself is the layer above's);
/// - `MANDATORY_25_DIGEST`, as OTP 25+ sends it;
/// - `SMALL_ATOM_TAGS`: the decoder accepts `SMALL_ATOM_EXT`.
///
/// Not offered: `DIST_HDR_ATOM_CACHE` and `FRAGMENTS` (the pass-through
/// `p` framing is used instead), and the control-message flags
/// (`DIST_MONITOR`, `DIST_MONITOR_NAME`, `SEND_SENDER`, `EXIT_PAYLOAD`,
/// `SPAWN`, `ALIAS`, `UNICODE_IO`, `BIG_SEQTRACE_LABELS`), which the layer
/// that handles those messages adds.
pub const DEFAULT_FLAGS: DistFlags = DistFlags(
    DistFlags::MANDATORY_26.0 | DistFlags::MANDATORY_25_DIGEST.0 | DistFlags::SMALL_ATOM_TAGS.0,
);
