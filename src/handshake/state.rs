//! The handshake as explicit states, without I/O.
//!
//! Each state is a type that awaits exactly one message; `handle` consumes
//! the state and returns the messages to send and the next state, or a
//! [`Failure`] (with, sometimes, a last status to send before closing).
//! The caller (the tokio driver, or a test) moves packets between a socket
//! and these states.
//!
//! ```text
//! Initiator (A)                                   Acceptor (B)
//! Initiator::start ── send_name ──────────────▶  AwaitName
//! AwaitStatus      ◀────────────── status ─────   (Arbiter::accept_pending)
//!   (alive: ── status true/false ──────────────▶  AwaitAliveReply)
//! AwaitChallenge   ◀────────────── challenge ──
//!                  (old 'n' name: ── complement ▶ AwaitComplement)
//!                  ── challenge_reply ─────────▶  AwaitReply (checks digest)
//! AwaitAck         ◀────────────── challenge_ack
//! HandshakeOutcome                                HandshakeOutcome
//! ```
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use super::cookie::{Cookie, Cookies, Digest};
use super::messages::{
    Challenge, ChallengeAck, ChallengeReply, Complement, Message, MessageError, NameMessage,
    SendName, Status,
};
use super::name::{NameError, NameMode, NodeName};
use crate::flags::DistFlags;

/// The local node as the handshake sees it.
#[derive(Clone, Debug)]
pub enum LocalName {
    /// A fixed name, `alive@host`.
    Static(NodeName),
    /// No name yet: ask the peer for one (`DFLAG_NAME_ME`), giving our
    /// host. Only as initiator.
    Dynamic {
        /// Our host name.
        host: String,
    },
}

impl LocalName {
    /// The naming mode: from the host's dots.
    pub fn mode(&self) -> NameMode {
        match self {
            LocalName::Static(n) => n.mode(),
            LocalName::Dynamic { host } if host.contains('.') => NameMode::Long,
            LocalName::Dynamic { .. } => NameMode::Short,
        }
    }
}

/// What the handshake needs to know about the local node.
#[derive(Clone, Debug)]
pub struct HandshakeConfig {
    /// Our name.
    pub name: LocalName,
    /// Our creation (from EPMD); 0 with a dynamic name.
    pub creation: u32,
    /// The flags we offer (with [`DistFlags::PUBLISHED`] for a visible
    /// node).
    pub flags: DistFlags,
    /// The flags a peer must offer (after digest expansion).
    pub required: DistFlags,
    /// The cookies.
    pub cookies: Cookies,
}

/// Which side of the handshake we were.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We connected.
    Initiator,
    /// We accepted.
    Acceptor,
}

/// The result of a successful handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeOutcome {
    /// Our side.
    pub role: Role,
    /// Our name (as assigned by the peer, for a dynamic name).
    pub local_name: NodeName,
    /// Our creation (as assigned by the peer, for a dynamic name).
    pub local_creation: u32,
    /// The peer's name.
    pub peer_name: NodeName,
    /// The peer's creation.
    pub peer_creation: u32,
    /// The flags the peer offered, with `MANDATORY_25_DIGEST` expanded.
    pub peer_flags: DistFlags,
    /// The flags in effect on the connection: ours and the peer's.
    pub flags: DistFlags,
    /// Whether the connection is visible (both offered `PUBLISHED`), i.e.
    /// part of `nodes()`; else hidden.
    pub visible: bool,
    /// Acceptor only: the peer replaced a connection we considered up
    /// (status `alive`, answered `true`): the driver must close the old one
    /// before sending the ack, as OTP does.
    pub replaces_old: bool,
}

/// A handshake failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// A malformed message.
    #[error("bad handshake message while awaiting {step}: {source}")]
    Message {
        /// The step.
        step: &'static str,
        /// What was wrong.
        #[source]
        source: MessageError,
    },
    /// The peer's name is not a valid node name (OTP closes silently).
    #[error("the peer sent an invalid node name: {0}")]
    InvalidPeerName(#[source] NameError),
    /// The peer's name does not fit our naming mode (short vs long).
    #[error(transparent)]
    NameMode(NameError),
    /// The peer answered `not_allowed`: it refused our flags or our name
    /// (its log says which).
    #[error("{peer} refused the connection (status not_allowed: missing flags or not in its allow list)")]
    NotAllowed {
        /// The peer.
        peer: String,
    },
    /// The peer answered `nok`: it is connecting to us at the same time and
    /// its own attempt wins (its name is greater than ours).
    #[error("simultaneous connect: {peer}'s own connection to us wins (status nok)")]
    SimultaneousLost {
        /// The peer.
        peer: String,
    },
    /// We answered `nok`: our own connection attempt to this peer wins.
    #[error("simultaneous connect: our own connection to {peer} wins; refused its attempt")]
    SimultaneousWon {
        /// The peer.
        peer: String,
    },
    /// A connection to this node is already up, and it is not stale (the
    /// status `alive` was answered `false`).
    #[error("already connected to {peer}")]
    AlreadyConnected {
        /// The peer.
        peer: String,
    },
    /// Another handshake with this node is already replacing the connection.
    #[error("a connection setup with {peer} is already pending")]
    AlreadyPending {
        /// The peer.
        peer: String,
    },
    /// A status we cannot act on here.
    #[error("unexpected handshake status {status:?} from {peer}")]
    UnexpectedStatus {
        /// The peer.
        peer: String,
        /// The status text.
        status: String,
    },
    /// The peer lacks flags we require.
    #[error("{peer} cannot handle {}: refused", .missing.names().join(", "))]
    MissingFlags {
        /// The peer.
        peer: String,
        /// What it lacks.
        missing: DistFlags,
    },
    /// The peer answered under another name than the one we dialled.
    #[error("dialled {expected} but the peer calls itself {got}")]
    NameMismatch {
        /// The name dialled.
        expected: String,
        /// The name it sent.
        got: String,
    },
    /// The peer's digest was wrong: it does not have our cookie for it.
    #[error("the peer's digest was wrong: {peer} does not share our cookie")]
    PeerDigestWrong {
        /// The peer.
        peer: String,
    },
    /// We cannot give the peer a dynamic name.
    #[error("cannot give a dynamic name to a node on host {host}")]
    DynamicNameRefused {
        /// Its host.
        host: String,
    },
    /// The name the peer assigned us does not fit our host.
    #[error("{peer} assigned us the name {name:?}, which is not on our host")]
    BadAssignedName {
        /// The peer.
        peer: String,
        /// The name.
        name: String,
    },
    /// A dynamic name cannot be used to accept connections.
    #[error("a node without a name cannot accept connections")]
    NoLocalName,
    /// The peer's challenge is one this node has itself sent, as acceptor,
    /// on a handshake still waiting for its answer: answering it would
    /// hand the peer the digest it needs there (a reflection attack).
    #[error("{peer} sent back a challenge of our own (reflection): refused")]
    ReflectedChallenge {
        /// The peer.
        peer: String,
    },
}

// ------------------------------------------------- issued challenges

/// The challenges sent by acceptors in this process and not yet answered,
/// by local node name (with a count, should one repeat).
fn issued() -> &'static Mutex<HashMap<(String, u32), usize>> {
    static ISSUED: OnceLock<Mutex<HashMap<(String, u32), usize>>> = OnceLock::new();
    ISSUED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Whether `node`'s acceptor has `challenge` outstanding.
fn was_issued(node: &str, challenge: u32) -> bool {
    let table = issued().lock().unwrap_or_else(|e| e.into_inner());
    table.contains_key(&(node.to_owned(), challenge))
}

/// An outstanding acceptor challenge: registered while the acceptor's
/// states live, removed when the handshake ends either way.
#[derive(Debug)]
struct Issued {
    key: (String, u32),
}

impl Issued {
    fn new(node: &str, challenge: u32) -> Issued {
        let key = (node.to_owned(), challenge);
        let mut table = issued().lock().unwrap_or_else(|e| e.into_inner());
        *table.entry(key.clone()).or_insert(0) += 1;
        Issued { key }
    }
}

impl Drop for Issued {
    fn drop(&mut self) {
        let mut table = issued().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = table.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                table.remove(&self.key);
            }
        }
    }
}

/// A failed step: the error, and a last message for the peer, if OTP
/// sends one in this case (`not_allowed`, `nok`, `false`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Send this before closing, if any.
    pub send: Option<Message>,
    /// What went wrong.
    pub error: HandshakeError,
}

impl From<HandshakeError> for Failure {
    fn from(error: HandshakeError) -> Failure {
        Failure { send: None, error }
    }
}

/// A successful step: messages to send (in order), and the next state.
#[derive(Debug)]
pub struct Step<S> {
    /// Send these, in order.
    pub send: Vec<Message>,
    /// The next state.
    pub next: S,
}

/// How the local node's connection table answers an incoming handshake
/// (`net_kernel`'s `accept_pending` replies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcceptPending {
    /// No connection or attempt: go on (status `ok`).
    Ok,
    /// We were connecting to the peer too and we lose: our attempt was
    /// cancelled (status `ok_simultaneous`).
    OkPending,
    /// We were connecting to the peer too and we win (status `nok`).
    NokPending,
    /// A connection to the peer is up: ask the peer whether it is stale
    /// (status `alive`).
    UpPending,
    /// Someone is already replacing the up connection: refuse (OTP closes
    /// without a status).
    AlreadyPending,
}

/// The local node's connection table, consulted by the handshake for the
/// simultaneous-connect rules (implemented by the driver's table).
pub trait Arbiter {
    /// An incoming handshake from `peer`: register it as pending, and, if
    /// we have our own pending attempt to `peer`, keep ours if
    /// `local_wins` (our name is greater, [`AcceptPending::NokPending`]),
    /// else cancel ours ([`AcceptPending::OkPending`]).
    fn accept_pending(&self, peer: &NodeName, local_wins: bool) -> AcceptPending;

    /// The peer said `alive`: is our attempt still the one the table
    /// waits for (then the peer's connection is stale)?
    fn is_pending(&self, peer: &NodeName) -> bool;

    /// Picks a name and creation for a peer on `host` asking for one
    /// (`DFLAG_NAME_ME`); `None` refuses.
    fn assign_name(&self, host: &str) -> Option<(NodeName, u32)> {
        let _ = host;
        None
    }
}

/// An [`Arbiter`] without a table: every incoming handshake is new, every
/// attempt pending, dynamic names refused.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoArbiter;

impl Arbiter for NoArbiter {
    fn accept_pending(&self, _: &NodeName, _: bool) -> AcceptPending {
        AcceptPending::Ok
    }
    fn is_pending(&self, _: &NodeName) -> bool {
        true
    }
}

fn check_flags(peer: &str, offered: DistFlags, required: DistFlags) -> Result<(), HandshakeError> {
    let missing = required.missing_from(offered);
    if missing == DistFlags::EMPTY {
        Ok(())
    } else {
        Err(HandshakeError::MissingFlags {
            peer: peer.to_owned(),
            missing,
        })
    }
}

/// Whether our name wins a simultaneous connect: OTP compares the node
/// atoms, i.e. their text by code points (byte order of UTF-8).
pub fn local_wins(local: &NodeName, peer: &NodeName) -> bool {
    local.as_str() > peer.as_str()
}

// ---------------------------------------------------------------- initiator

#[derive(Debug)]
struct InitCommon {
    name: LocalName,
    creation: u32,
    flags: DistFlags,
    required: DistFlags,
    cookie: Cookie,
    peer: NodeName,
    own_challenge: u32,
}

/// The initiator's first step.
#[derive(Debug)]
pub struct Initiator;

impl Initiator {
    /// Starts a handshake with `peer`: checks the naming modes match, and
    /// returns the `send_name` to send and the next state. `own_challenge`
    /// is the challenge we will send (from a CSPRNG:
    /// [`gen_challenge`](super::gen_challenge)).
    ///
    /// # Errors
    /// [`HandshakeError::NameMode`] when `peer` does not fit our naming mode.
    pub fn start(
        config: &HandshakeConfig,
        peer: NodeName,
        own_challenge: u32,
    ) -> Result<(SendName, AwaitStatus), HandshakeError> {
        peer.check_mode(config.name.mode())
            .map_err(HandshakeError::NameMode)?;
        let (name, flags, creation) = match &config.name {
            LocalName::Static(n) => (n.as_str().to_owned(), config.flags, config.creation),
            LocalName::Dynamic { host } => (
                host.clone(),
                // OTP: NAME_ME instead of PUBLISHED; dynamic nodes are hidden.
                DistFlags(config.flags.0 & !DistFlags::PUBLISHED.0) | DistFlags::NAME_ME,
                0,
            ),
        };
        let send = SendName {
            flags,
            creation,
            name,
        };
        let common = InitCommon {
            name: config.name.clone(),
            creation,
            flags,
            required: config.required,
            cookie: config.cookies.for_peer(&peer).clone(),
            peer,
            own_challenge,
        };
        Ok((send, AwaitStatus { c: common }))
    }
}

/// Initiator, after `send_name`: awaits the status.
#[derive(Debug)]
pub struct AwaitStatus {
    c: InitCommon,
}

impl AwaitStatus {
    /// The peer we dialled.
    pub fn peer(&self) -> &NodeName {
        &self.c.peer
    }

    /// Handles the status (`dist_util:recv_status/1`).
    ///
    /// # Errors
    /// A [`Failure`] for `not_allowed`, `nok`, an `alive` we answer
    /// `false` (the failure carries that answer), unknown statuses, and a
    /// dynamic-name request answered with anything but `named:`.
    pub fn handle(
        mut self,
        status: Status,
        arbiter: &dyn Arbiter,
    ) -> Result<Step<AwaitChallenge>, Failure> {
        let peer = self.c.peer.to_string();
        let dynamic_host = match &self.c.name {
            LocalName::Dynamic { host } => Some(host.clone()),
            LocalName::Static(_) => None,
        };
        let mut send = Vec::new();
        match (status, dynamic_host) {
            (Status::Named { name, creation }, Some(host)) => {
                let assigned = NodeName::from_peer(&name)
                    .ok()
                    .filter(|n| n.host() == host)
                    .ok_or_else(|| HandshakeError::BadAssignedName {
                        peer: peer.clone(),
                        name: name.clone(),
                    })?;
                self.c.name = LocalName::Static(assigned);
                self.c.creation = creation;
            }
            (Status::NotAllowed, _) => return Err(HandshakeError::NotAllowed { peer }.into()),
            (other, Some(_)) => {
                return Err(HandshakeError::UnexpectedStatus {
                    peer,
                    status: format!("{other:?}"),
                }
                .into())
            }
            (Status::Ok | Status::OkSimultaneous, None) => {}
            (Status::Nok, None) => return Err(HandshakeError::SimultaneousLost { peer }.into()),
            (Status::Alive, None) => {
                if arbiter.is_pending(&self.c.peer) {
                    send.push(Message::Status(Status::True));
                } else {
                    return Err(Failure {
                        send: Some(Message::Status(Status::False)),
                        error: HandshakeError::AlreadyConnected { peer },
                    });
                }
            }
            (other, None) => {
                return Err(HandshakeError::UnexpectedStatus {
                    peer,
                    status: format!("{other:?}"),
                }
                .into())
            }
        }
        Ok(Step {
            send,
            next: AwaitChallenge { c: self.c },
        })
    }
}

/// Initiator, after the status: awaits the challenge.
#[derive(Debug)]
pub struct AwaitChallenge {
    c: InitCommon,
}

impl AwaitChallenge {
    /// Handles the challenge (`dist_util:recv_challenge/1`): checks the
    /// peer's name is the one dialled and its flags, and answers.
    ///
    /// OTP does not check the last: an attacker who can make this node
    /// dial it could otherwise have the node answer, here, the challenge
    /// it sent the attacker on another connection, where the attacker
    /// poses as a node with our cookie.
    ///
    /// # Errors
    /// [`HandshakeError::NameMismatch`], [`HandshakeError::MissingFlags`],
    /// [`HandshakeError::ReflectedChallenge`].
    pub fn handle(self, challenge: Challenge) -> Result<Step<AwaitAck>, Failure> {
        if challenge.name != self.c.peer.as_str() {
            return Err(HandshakeError::NameMismatch {
                expected: self.c.peer.to_string(),
                got: challenge.name,
            }
            .into());
        }
        if let LocalName::Static(me) = &self.c.name {
            if was_issued(me.as_str(), challenge.challenge) {
                return Err(HandshakeError::ReflectedChallenge {
                    peer: self.c.peer.to_string(),
                }
                .into());
            }
        }
        let peer_flags = challenge.flags.expanded();
        check_flags(self.c.peer.as_str(), peer_flags, self.c.required)?;
        let reply = ChallengeReply {
            challenge: self.c.own_challenge,
            digest: self.c.cookie.digest(challenge.challenge),
        };
        Ok(Step {
            send: vec![Message::ChallengeReply(reply)],
            next: AwaitAck {
                peer_flags,
                peer_creation: challenge.creation,
                c: self.c,
            },
        })
    }
}

/// Initiator, after the challenge reply: awaits the ack.
#[derive(Debug)]
pub struct AwaitAck {
    c: InitCommon,
    peer_flags: DistFlags,
    peer_creation: u32,
}

impl AwaitAck {
    /// The peer's name.
    pub fn peer(&self) -> &NodeName {
        &self.c.peer
    }

    /// Handles the ack: checks the peer's digest of our challenge.
    ///
    /// # Errors
    /// [`HandshakeError::PeerDigestWrong`].
    pub fn handle(self, ack: ChallengeAck) -> Result<HandshakeOutcome, Failure> {
        let expected: Digest = self.c.cookie.digest(self.c.own_challenge);
        if !expected.ct_eq(&ack.digest) {
            return Err(HandshakeError::PeerDigestWrong {
                peer: self.c.peer.to_string(),
            }
            .into());
        }
        let local_name = match self.c.name {
            LocalName::Static(n) => n,
            // AwaitStatus made it static or failed.
            LocalName::Dynamic { host } => {
                return Err(HandshakeError::BadAssignedName {
                    peer: self.c.peer.to_string(),
                    name: host,
                }
                .into())
            }
        };
        let flags = self.c.flags & self.peer_flags;
        Ok(HandshakeOutcome {
            role: Role::Initiator,
            local_name,
            local_creation: self.c.creation,
            visible: flags.contains(DistFlags::PUBLISHED),
            peer_name: self.c.peer,
            peer_creation: self.peer_creation,
            peer_flags: self.peer_flags,
            flags,
            replaces_old: false,
        })
    }
}

// ----------------------------------------------------------------- acceptor

#[derive(Debug)]
struct AccCommon {
    name: NodeName,
    creation: u32,
    flags: DistFlags,
    required: DistFlags,
    cookies: Cookies,
    challenge: u32,
    /// Keeps `challenge` registered as outstanding while the handshake runs.
    _issued: Issued,
}

/// The acceptor's first step.
#[derive(Debug)]
pub struct Acceptor;

impl Acceptor {
    /// Starts accepting; `challenge` is the one we will send (from a
    /// CSPRNG).
    ///
    /// # Errors
    /// [`HandshakeError::NoLocalName`] with a dynamic local name.
    pub fn start(config: &HandshakeConfig, challenge: u32) -> Result<AwaitName, HandshakeError> {
        let LocalName::Static(name) = &config.name else {
            return Err(HandshakeError::NoLocalName);
        };
        Ok(AwaitName {
            c: AccCommon {
                name: name.clone(),
                creation: config.creation,
                flags: config.flags,
                required: config.required,
                cookies: config.cookies.clone(),
                challenge,
                _issued: Issued::new(name.as_str(), challenge),
            },
        })
    }
}

/// What the acceptor knows about the peer after its name.
#[derive(Debug)]
struct PeerHello {
    name: NodeName,
    flags: DistFlags,
    creation: u32,
    /// The flags we offer this peer (NAME_ME instead of PUBLISHED for a
    /// dynamic name).
    our_flags: DistFlags,
    replaces_old: bool,
}

/// Acceptor: awaits `send_name`.
#[derive(Debug)]
pub struct AwaitName {
    c: AccCommon,
}

/// What follows the name on the acceptor's side.
#[derive(Debug)]
pub enum AfterName {
    /// Await the challenge reply.
    Reply(AwaitReply),
    /// We sent `alive`: await the peer's `true`/`false`.
    AliveReply(AwaitAliveReply),
    /// The peer sent an old name: await its complement.
    Complement(AwaitComplement),
}

impl AwaitName {
    /// Handles `send_name` (`dist_util:recv_name/1`, `check_dflags/2`,
    /// `mark_pending/1`).
    ///
    /// # Errors
    /// A [`Failure`]: invalid name (closed silently, as OTP), missing flags
    /// (`not_allowed`), our simultaneous attempt wins (`nok`), a setup
    /// already pending, a dynamic name we cannot give.
    pub fn handle(
        self,
        msg: NameMessage,
        arbiter: &dyn Arbiter,
    ) -> Result<Step<AfterName>, Failure> {
        let (flags, name, creation, old) = match msg {
            NameMessage::New(m) => (m.flags.expanded(), m.name, m.creation, false),
            NameMessage::Old(m) => (DistFlags(u64::from(m.flags)).expanded(), m.name, 0, true),
        };
        let dynamic = !old && flags.contains(DistFlags::NAME_ME);
        let (peer, creation) = if dynamic {
            if name.is_empty() || name.contains('@') {
                return Err(HandshakeError::InvalidPeerName(NameError::Invalid {
                    name,
                    reason: "a dynamic-name request must carry a host alone",
                })
                .into());
            }
            arbiter
                .assign_name(&name)
                .ok_or(HandshakeError::DynamicNameRefused { host: name })?
        } else {
            (
                NodeName::from_peer(&name).map_err(HandshakeError::InvalidPeerName)?,
                creation,
            )
        };
        // An old name carries only the low 32 flag bits: check those now,
        // the rest after the complement.
        let required = if old {
            DistFlags(self.c.required.0 & 0xFFFF_FFFF)
        } else {
            self.c.required
        };
        if let Err(error) = check_flags(peer.as_str(), flags, required) {
            return Err(Failure {
                send: Some(Message::Status(Status::NotAllowed)),
                error,
            });
        }
        let our_flags = if dynamic {
            DistFlags(self.c.flags.0 & !DistFlags::PUBLISHED.0) | DistFlags::NAME_ME
        } else {
            self.c.flags
        };
        let status = match arbiter.accept_pending(&peer, local_wins(&self.c.name, &peer)) {
            AcceptPending::Ok if dynamic => Status::Named {
                name: peer.to_string(),
                creation,
            },
            AcceptPending::Ok => Status::Ok,
            AcceptPending::OkPending => Status::OkSimultaneous,
            AcceptPending::NokPending => {
                return Err(Failure {
                    send: Some(Message::Status(Status::Nok)),
                    error: HandshakeError::SimultaneousWon {
                        peer: peer.to_string(),
                    },
                })
            }
            AcceptPending::AlreadyPending => {
                return Err(HandshakeError::AlreadyPending {
                    peer: peer.to_string(),
                }
                .into())
            }
            AcceptPending::UpPending => Status::Alive,
        };
        let alive = status == Status::Alive;
        let hello = PeerHello {
            name: peer,
            flags,
            creation,
            our_flags,
            replaces_old: alive,
        };
        let mut send = vec![Message::Status(status)];
        let next = if alive {
            AfterName::AliveReply(AwaitAliveReply { c: self.c, hello })
        } else {
            send.push(challenge_for(&self.c, &hello));
            if old {
                AfterName::Complement(AwaitComplement { c: self.c, hello })
            } else {
                AfterName::Reply(AwaitReply { c: self.c, hello })
            }
        };
        Ok(Step { send, next })
    }
}

fn challenge_for(c: &AccCommon, hello: &PeerHello) -> Message {
    Message::Challenge(Challenge {
        flags: hello.our_flags,
        challenge: c.challenge,
        creation: c.creation,
        name: c.name.to_string(),
    })
}

/// Acceptor, after sending `alive`: awaits `true` or `false`.
#[derive(Debug)]
pub struct AwaitAliveReply {
    c: AccCommon,
    hello: PeerHello,
}

impl AwaitAliveReply {
    /// Handles the peer's answer (`dist_util:do_alive/1`): `true` goes on
    /// with the challenge.
    ///
    /// # Errors
    /// [`HandshakeError::AlreadyConnected`] for `false`,
    /// [`HandshakeError::UnexpectedStatus`] otherwise.
    pub fn handle(self, status: Status) -> Result<Step<AwaitReply>, Failure> {
        let peer = self.hello.name.to_string();
        match status {
            Status::True => Ok(Step {
                send: vec![challenge_for(&self.c, &self.hello)],
                next: AwaitReply {
                    c: self.c,
                    hello: self.hello,
                },
            }),
            Status::False => Err(HandshakeError::AlreadyConnected { peer }.into()),
            other => Err(HandshakeError::UnexpectedStatus {
                peer,
                status: format!("{other:?}"),
            }
            .into()),
        }
    }
}

/// Acceptor, after an old name and our challenge: awaits the complement.
#[derive(Debug)]
pub struct AwaitComplement {
    c: AccCommon,
    hello: PeerHello,
}

impl AwaitComplement {
    /// Handles the complement: the high flags and the creation.
    ///
    /// # Errors
    /// [`HandshakeError::MissingFlags`] when the full flags lack one we
    /// require.
    pub fn handle(mut self, m: Complement) -> Result<AwaitReply, Failure> {
        self.hello.flags = DistFlags(self.hello.flags.0 | (u64::from(m.flags_high) << 32));
        self.hello.creation = m.creation;
        check_flags(self.hello.name.as_str(), self.hello.flags, self.c.required)?;
        Ok(AwaitReply {
            c: self.c,
            hello: self.hello,
        })
    }
}

/// Acceptor, after the challenge: awaits the reply.
#[derive(Debug)]
pub struct AwaitReply {
    c: AccCommon,
    hello: PeerHello,
}

impl AwaitReply {
    /// The peer's name.
    pub fn peer(&self) -> &NodeName {
        &self.hello.name
    }

    /// Handles the reply (`dist_util:recv_challenge_reply/3`): checks the
    /// peer's digest of our challenge, and returns the ack to send and the
    /// outcome. If [`HandshakeOutcome::replaces_old`], close the old
    /// connection before sending the ack.
    ///
    /// # Errors
    /// [`HandshakeError::PeerDigestWrong`]: the peer's cookie differs.
    pub fn handle(
        self,
        reply: ChallengeReply,
    ) -> Result<(ChallengeAck, HandshakeOutcome), Failure> {
        let cookie = self.c.cookies.for_peer(&self.hello.name);
        if !cookie.digest(self.c.challenge).ct_eq(&reply.digest) {
            return Err(HandshakeError::PeerDigestWrong {
                peer: self.hello.name.to_string(),
            }
            .into());
        }
        let ack = ChallengeAck {
            digest: cookie.digest(reply.challenge),
        };
        let flags = self.hello.our_flags & self.hello.flags;
        Ok((
            ack,
            HandshakeOutcome {
                role: Role::Acceptor,
                local_name: self.c.name,
                local_creation: self.c.creation,
                peer_name: self.hello.name,
                peer_creation: self.hello.creation,
                peer_flags: self.hello.flags,
                visible: flags.contains(DistFlags::PUBLISHED),
                flags,
                replaces_old: self.hello.replaces_old,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::Cookie;
    use std::cell::Cell;

    fn config(name: &str, cookie: &str, flags: DistFlags) -> HandshakeConfig {
        HandshakeConfig {
            name: LocalName::Static(NodeName::parse(name).unwrap()),
            creation: 42,
            flags,
            required: DistFlags::MANDATORY_26,
            cookies: Cookies::new(Cookie::new(cookie).unwrap()),
        }
    }

    const OTP25: DistFlags = DistFlags(0xD_07DF_7FBD);

    struct Table {
        answer: AcceptPending,
        pending: bool,
        asked: Cell<Option<bool>>,
    }

    impl Arbiter for Table {
        fn accept_pending(&self, _: &NodeName, local_wins: bool) -> AcceptPending {
            self.asked.set(Some(local_wins));
            self.answer
        }
        fn is_pending(&self, _: &NodeName) -> bool {
            self.pending
        }
        fn assign_name(&self, host: &str) -> Option<(NodeName, u32)> {
            Some((NodeName::from_peer(&format!("DYN@{host}")).unwrap(), 77))
        }
    }

    fn table(answer: AcceptPending) -> Table {
        Table {
            answer,
            pending: true,
            asked: Cell::new(None),
        }
    }

    fn status_of(m: &Message) -> &Status {
        match m {
            Message::Status(s) => s,
            other => panic!("not a status: {other:?}"),
        }
    }

    /// Runs both machines against each other in memory.
    fn run(
        a_cfg: &HandshakeConfig,
        b_cfg: &HandshakeConfig,
        table_b: &Table,
    ) -> Result<(HandshakeOutcome, HandshakeOutcome), Failure> {
        let b_name = match &b_cfg.name {
            LocalName::Static(n) => n.clone(),
            LocalName::Dynamic { .. } => unreachable!(),
        };
        let (name, a) = Initiator::start(a_cfg, b_name, 1111)?;
        let b = Acceptor::start(b_cfg, 2222)?;
        let step = b.handle(NameMessage::New(name), table_b)?;
        let status = status_of(&step.send[0]).clone();
        let a = a.handle(status, &NoArbiter)?;
        let reply_b = match step.next {
            AfterName::Reply(r) => r,
            other => panic!("{other:?}"),
        };
        let Message::Challenge(ch) = step.send[1].clone() else {
            panic!()
        };
        let a = a.next.handle(ch)?;
        let Message::ChallengeReply(r) = a.send[0] else {
            panic!()
        };
        let (ack, out_b) = reply_b.handle(r)?;
        let out_a = a.next.handle(ack)?;
        Ok((out_a, out_b))
    }

    #[test]
    fn both_roles_agree_on_flags_names_and_visibility() {
        let a = config("a@localhost", "c", OTP25);
        let b = config("b@localhost", "c", OTP25 & !DistFlags::SPAWN);
        let (oa, ob) = run(&a, &b, &table(AcceptPending::Ok)).unwrap();
        assert_eq!(oa.flags, ob.flags);
        assert!(!oa.flags.contains(DistFlags::SPAWN));
        assert_eq!(oa.peer_name.as_str(), "b@localhost");
        assert_eq!(ob.peer_name.as_str(), "a@localhost");
        assert_eq!((oa.peer_creation, ob.peer_creation), (42, 42));
        assert!(oa.visible && ob.visible);
        assert_eq!(oa.role, Role::Initiator);
    }

    #[test]
    fn hidden_on_either_side_makes_the_connection_hidden() {
        let a = config("a@localhost", "c", OTP25 & !DistFlags::PUBLISHED);
        let b = config("b@localhost", "c", OTP25);
        let (oa, ob) = run(&a, &b, &table(AcceptPending::Ok)).unwrap();
        assert!(!oa.visible && !ob.visible);
    }

    #[test]
    fn wrong_cookie_fails_at_the_acceptor() {
        let a = config("a@localhost", "one", OTP25);
        let b = config("b@localhost", "two", OTP25);
        let err = run(&a, &b, &table(AcceptPending::Ok)).unwrap_err();
        assert!(matches!(err.error, HandshakeError::PeerDigestWrong { .. }));
        assert_eq!(err.send, None);
    }

    #[test]
    fn a_wrong_ack_is_the_peers_digest_wrong() {
        let a = config("a@localhost", "c", OTP25);
        let (_, st) = Initiator::start(&a, NodeName::parse("b@localhost").unwrap(), 5).unwrap();
        let st = st.handle(Status::Ok, &NoArbiter).unwrap().next;
        let st = st
            .handle(Challenge {
                flags: OTP25,
                challenge: 9,
                creation: 1,
                name: "b@localhost".into(),
            })
            .unwrap()
            .next;
        let bad = ChallengeAck {
            digest: Cookie::new("other").unwrap().digest(5),
        };
        assert!(matches!(
            st.handle(bad).unwrap_err().error,
            HandshakeError::PeerDigestWrong { .. }
        ));
    }

    #[test]
    fn a_peer_without_a_required_flag_is_refused_by_name() {
        let a = config("a@localhost", "c", DistFlags(OTP25.0 & !DistFlags::V4_NC.0));
        let b = config("b@localhost", "c", OTP25);
        let err = run(&a, &b, &table(AcceptPending::Ok)).unwrap_err();
        assert_eq!(err.send, Some(Message::Status(Status::NotAllowed)));
        assert!(err.error.to_string().contains("V4_NC"), "{}", err.error);
        // The digest stands for the OTP 25 set.
        let a = config(
            "a@localhost",
            "c",
            DistFlags::MANDATORY_25_DIGEST | DistFlags::UNLINK_ID | DistFlags::V4_NC,
        );
        assert!(run(&a, &b, &table(AcceptPending::Ok)).is_ok());
    }

    #[test]
    fn the_initiator_refuses_a_challenge_from_another_name_or_without_flags() {
        let a = config("a@localhost", "c", OTP25);
        let start = || {
            Initiator::start(&a, NodeName::parse("b@localhost").unwrap(), 5)
                .unwrap()
                .1
                .handle(Status::Ok, &NoArbiter)
                .unwrap()
                .next
        };
        let ch = |name: &str, flags| Challenge {
            flags,
            challenge: 1,
            creation: 1,
            name: name.into(),
        };
        assert!(matches!(
            start().handle(ch("b@otherhost", OTP25)).unwrap_err().error,
            HandshakeError::NameMismatch { .. }
        ));
        assert!(matches!(
            start()
                .handle(ch("b@localhost", DistFlags::PUBLISHED))
                .unwrap_err()
                .error,
            HandshakeError::MissingFlags { .. }
        ));
    }

    #[test]
    fn short_and_long_names_refuse_each_other() {
        let a = config("a@localhost", "c", OTP25);
        let err = Initiator::start(&a, NodeName::parse("b@127.0.0.1").unwrap(), 1).unwrap_err();
        assert!(matches!(err, HandshakeError::NameMode(_)));
        let l = config("a@127.0.0.1", "c", OTP25);
        assert!(Initiator::start(&l, NodeName::parse("b@localhost").unwrap(), 1).is_err());
    }

    #[test]
    fn simultaneous_connect_follows_net_kernel() {
        let b = config("b@localhost", "c", OTP25);
        let hello = |from: &str| {
            NameMessage::New(SendName {
                flags: OTP25,
                creation: 1,
                name: from.into(),
            })
        };
        // b > a: b keeps its own attempt, answers nok.
        let t = table(AcceptPending::NokPending);
        let err = Acceptor::start(&b, 1)
            .unwrap()
            .handle(hello("a@localhost"), &t)
            .unwrap_err();
        assert_eq!(t.asked.get(), Some(true));
        assert_eq!(err.send, Some(Message::Status(Status::Nok)));
        // b < c: b gave up its own attempt.
        let t = table(AcceptPending::OkPending);
        let step = Acceptor::start(&b, 1)
            .unwrap()
            .handle(hello("c@localhost"), &t)
            .unwrap();
        assert_eq!(t.asked.get(), Some(false));
        assert_eq!(step.send[0], Message::Status(Status::OkSimultaneous));
        // The initiator: nok is a lost race; ok_simultaneous goes on.
        let a = config("a@localhost", "c", OTP25);
        let st = || {
            Initiator::start(&a, NodeName::parse("b@localhost").unwrap(), 1)
                .unwrap()
                .1
        };
        assert!(matches!(
            st().handle(Status::Nok, &NoArbiter).unwrap_err().error,
            HandshakeError::SimultaneousLost { .. }
        ));
        assert!(st().handle(Status::OkSimultaneous, &NoArbiter).is_ok());
    }

    #[test]
    fn alive_is_answered_from_the_table() {
        let a = config("a@localhost", "c", OTP25);
        let st = || {
            Initiator::start(&a, NodeName::parse("b@localhost").unwrap(), 1)
                .unwrap()
                .1
        };
        let step = st()
            .handle(Status::Alive, &table(AcceptPending::Ok))
            .unwrap();
        assert_eq!(step.send, vec![Message::Status(Status::True)]);
        let mut t = table(AcceptPending::Ok);
        t.pending = false;
        let err = st().handle(Status::Alive, &t).unwrap_err();
        assert_eq!(err.send, Some(Message::Status(Status::False)));

        // The acceptor side: alive, then true, then the challenge.
        let b = config("b@localhost", "c", OTP25);
        let step = Acceptor::start(&b, 1)
            .unwrap()
            .handle(
                NameMessage::New(SendName {
                    flags: OTP25,
                    creation: 1,
                    name: "a@localhost".into(),
                }),
                &table(AcceptPending::UpPending),
            )
            .unwrap();
        assert_eq!(step.send, vec![Message::Status(Status::Alive)]);
        let AfterName::AliveReply(w) = step.next else {
            panic!()
        };
        let step = w.handle(Status::True).unwrap();
        assert!(matches!(step.send[0], Message::Challenge(_)));
    }

    #[test]
    fn dynamic_names_are_asked_and_given() {
        let mut a = config("a@localhost", "c", OTP25);
        a.name = LocalName::Dynamic {
            host: "localhost".into(),
        };
        let b = config("b@localhost", "c", OTP25);
        let (name, st) = Initiator::start(&a, NodeName::parse("b@localhost").unwrap(), 3).unwrap();
        assert!(name.flags.contains(DistFlags::NAME_ME));
        assert!(!name.flags.contains(DistFlags::PUBLISHED));
        assert_eq!((name.name.as_str(), name.creation), ("localhost", 0));
        let step = Acceptor::start(&b, 4)
            .unwrap()
            .handle(NameMessage::New(name), &table(AcceptPending::Ok))
            .unwrap();
        assert_eq!(
            step.send[0],
            Message::Status(Status::Named {
                name: "DYN@localhost".into(),
                creation: 77
            })
        );
        let Message::Challenge(ch) = step.send[1].clone() else {
            panic!()
        };
        assert!(ch.flags.contains(DistFlags::NAME_ME));
        let AfterName::Reply(rb) = step.next else {
            panic!()
        };
        let st = st
            .handle(status_of(&step.send[0]).clone(), &NoArbiter)
            .unwrap()
            .next;
        let st = st.handle(ch).unwrap();
        let Message::ChallengeReply(r) = st.send[0] else {
            panic!()
        };
        let (ack, ob) = rb.handle(r).unwrap();
        let oa = st.next.handle(ack).unwrap();
        assert_eq!(oa.local_name.as_str(), "DYN@localhost");
        assert_eq!(oa.local_creation, 77);
        assert_eq!(ob.peer_name.as_str(), "DYN@localhost");
        assert!(!oa.visible && !ob.visible);
    }

    #[test]
    fn old_names_are_completed() {
        let b = config("b@localhost", "c", OTP25);
        let step = Acceptor::start(&b, 4)
            .unwrap()
            .handle(
                NameMessage::Old(crate::handshake::OldSendName {
                    version: 5,
                    flags: (OTP25.0 & 0xFFFF_FFFF) as u32,
                    name: "a@localhost".into(),
                }),
                &table(AcceptPending::Ok),
            )
            .unwrap();
        assert_eq!(step.send.len(), 2);
        let AfterName::Complement(c) = step.next else {
            panic!()
        };
        let r = c
            .handle(Complement {
                flags_high: (OTP25.0 >> 32) as u32,
                creation: 9,
            })
            .unwrap();
        let cookie = Cookie::new("c").unwrap();
        let (_, out) = r
            .handle(ChallengeReply {
                challenge: 8,
                digest: cookie.digest(4),
            })
            .unwrap();
        assert_eq!(out.peer_creation, 9);
        assert!(out.peer_flags.contains(DistFlags::V4_NC));
        // Without the high flags we require, it is refused.
        let step = Acceptor::start(&b, 4)
            .unwrap()
            .handle(
                NameMessage::Old(crate::handshake::OldSendName {
                    version: 5,
                    flags: (OTP25.0 & 0xFFFF_FFFF) as u32,
                    name: "a@localhost".into(),
                }),
                &table(AcceptPending::Ok),
            )
            .unwrap();
        let AfterName::Complement(c) = step.next else {
            panic!()
        };
        assert!(c
            .handle(Complement {
                flags_high: 0,
                creation: 9
            })
            .is_err());
    }

    #[test]
    fn a_challenge_of_our_own_acceptor_is_not_answered() {
        // Node n accepts a connection (from an attacker posing as a node
        // with the cookie) and sends challenge 5555; the attacker makes n
        // dial it and sends n that same challenge, to get its digest.
        let n = config("reflect_n@localhost", "c", OTP25);
        let pending = Acceptor::start(&n, 5555).unwrap();
        let dial = || {
            let (_, st) =
                Initiator::start(&n, NodeName::parse("evil@localhost").unwrap(), 9).unwrap();
            st.handle(Status::Ok, &NoArbiter)
                .unwrap()
                .next
                .handle(Challenge {
                    flags: OTP25,
                    challenge: 5555,
                    creation: 1,
                    name: "evil@localhost".into(),
                })
        };
        let err = dial().unwrap_err();
        assert!(
            matches!(err.error, HandshakeError::ReflectedChallenge { .. }),
            "{:?}",
            err.error
        );
        // Another node of this process may be sent the same number.
        let other = config("reflect_m@localhost", "c", OTP25);
        let (_, st) =
            Initiator::start(&other, NodeName::parse("evil@localhost").unwrap(), 9).unwrap();
        let st = st.handle(Status::Ok, &NoArbiter).unwrap().next;
        assert!(st
            .handle(Challenge {
                flags: OTP25,
                challenge: 5555,
                creation: 1,
                name: "evil@localhost".into(),
            })
            .is_ok());
        // Once n's accepting handshake is over, the number is free again.
        drop(pending);
        assert!(dial().is_ok());
    }
}
