//! Control messages: the tuples of `erl_dist_protocol` §"Protocol between
//! connected nodes".
//!
//! Every distribution message is a *control term* — a tuple whose first
//! element is the operation ([`ControlOp`]) — optionally followed by a
//! *payload term* (a message, an exit reason, or a spawn argument list).
//! [`ControlMessage`] is the control term with typed fields;
//! [`DistMessage`] pairs it with its payload, present exactly when the
//! operation needs one ([`ControlMessage::has_payload`]).
//!
//! [`ControlMessage::from_term`] is as strict as OTP's receiver
//! (`erts_net_message` in `dist.c`), which logs
//! `Invalid distribution message` and drops the connection when a control
//! term has the wrong arity or field types, or an unknown operation. The
//! checks OTP makes that need to know *which node* a pid belongs to ("From
//! must be on the peer, To must be local") are not made here: that is the
//! node's job, which knows its own name and its peer's.
//!
//! Where OTP only checks a field in debug builds (the sender of
//! `SEND_SENDER` and `ALIAS_SEND`), the field is still typed here and a
//! wrong type rejected: the protocol says it is a pid. Fields OTP never
//! reads (the historical cookie slot of `SEND` and `REG_SEND`) are accepted
//! whatever they hold and written back as `''`.
//!
//! ```
//! use erldist::connection::control::{ControlMessage, ControlOp};
//! use erldist::{Atom, Pid, Term};
//!
//! let from = Pid { node: Atom::from("a@h"), id: 85, serial: 0, creation: 1 };
//! let msg = ControlMessage::RegSend { from, to_name: Atom::from("rex") };
//! let term = msg.to_term();
//! assert_eq!(term.to_string(), "{6,#Pid<a@h.85.0.1>,'',rex}");
//! assert_eq!(ControlMessage::from_term(term).unwrap(), msg);
//! assert_eq!(msg.op(), ControlOp::REG_SEND);
//! assert!(msg.has_payload());
//! ```
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::fmt;

use num_traits::ToPrimitive;

use crate::flags::DistFlags;
use crate::{Atom, Pid, Reference, Term};

/// A control message operation (`DOP_*` in OTP's `dist.h`), as the first
/// element of the control tuple.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ControlOp(pub u8);

macro_rules! ops {
    ($($(#[$doc:meta])* $name:ident = $value:expr;)*) => {
        impl ControlOp {
            $($(#[$doc])* pub const $name: ControlOp = ControlOp($value);)*

            /// The operation's name as in `dist.h` without `DOP_`, or
            /// `None` for numbers that are not operations.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $(ControlOp::$name => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

ops! {
    /// `{1, FromPid, ToPid}`.
    LINK = 1;
    /// `{2, '', ToPid}` + message.
    SEND = 2;
    /// `{3, FromPid, ToPid, Reason}`.
    EXIT = 3;
    /// `{4, FromPid, ToPid}` (old link protocol; refused from OTP 26).
    UNLINK = 4;
    /// `{5}`: ancient, invalid for every OTP this crate talks to.
    NODE_LINK = 5;
    /// `{6, FromPid, '', ToName}` + message.
    REG_SEND = 6;
    /// `{7, LeaderPid, TargetPid}`.
    GROUP_LEADER = 7;
    /// `{8, FromPid, ToPid, Reason}`.
    EXIT2 = 8;
    /// `{12, '', ToPid, Token}` + message.
    SEND_TT = 12;
    /// `{13, FromPid, ToPid, Token, Reason}`.
    EXIT_TT = 13;
    /// `{16, FromPid, '', ToName, Token}` + message.
    REG_SEND_TT = 16;
    /// `{18, FromPid, ToPid, Token, Reason}`.
    EXIT2_TT = 18;
    /// `{19, FromPid, ToProc, Ref}`.
    MONITOR_P = 19;
    /// `{20, FromPid, ToProc, Ref}`.
    DEMONITOR_P = 20;
    /// `{21, FromProc, ToPid, Ref, Reason}`.
    MONITOR_P_EXIT = 21;
    /// `{22, FromPid, ToPid}` + message.
    SEND_SENDER = 22;
    /// `{23, FromPid, ToPid, Token}` + message.
    SEND_SENDER_TT = 23;
    /// `{24, FromPid, ToPid}` + reason.
    PAYLOAD_EXIT = 24;
    /// `{25, FromPid, ToPid, Token}` + reason.
    PAYLOAD_EXIT_TT = 25;
    /// `{26, FromPid, ToPid}` + reason.
    PAYLOAD_EXIT2 = 26;
    /// `{27, FromPid, ToPid, Token}` + reason.
    PAYLOAD_EXIT2_TT = 27;
    /// `{28, FromProc, ToPid, Ref}` + reason.
    PAYLOAD_MONITOR_P_EXIT = 28;
    /// `{29, ReqId, FromPid, GroupLeader, {M, F, A}, OptList}` + argument list.
    SPAWN_REQUEST = 29;
    /// `{30, ReqId, FromPid, GroupLeader, {M, F, A}, OptList, Token}` + argument list.
    SPAWN_REQUEST_TT = 30;
    /// `{31, ReqId, ToPid, Flags, Result}`.
    SPAWN_REPLY = 31;
    /// `{32, ReqId, ToPid, Flags, Result, Token}`.
    SPAWN_REPLY_TT = 32;
    /// `{33, FromPid, Alias}` + message.
    ALIAS_SEND = 33;
    /// `{34, FromPid, Alias, Token}` + message.
    ALIAS_SEND_TT = 34;
    /// `{35, Id, FromPid, ToPid}`.
    UNLINK_ID = 35;
    /// `{36, Id, FromPid, ToPid}`.
    UNLINK_ID_ACK = 36;
}

impl fmt::Debug for ControlOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}({})", self.0),
            None => write!(f, "ControlOp({})", self.0),
        }
    }
}

impl fmt::Display for ControlOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A process named in a monitor: by pid, or by registered name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProcRef {
    /// A process identifier.
    Pid(Pid),
    /// A registered name (on the node that holds the process).
    Name(Atom),
}

impl ProcRef {
    fn to_term(self) -> Term {
        match self {
            ProcRef::Pid(p) => Term::Pid(p),
            ProcRef::Name(a) => Term::Atom(a),
        }
    }
}

/// The function a spawn request starts: `{Module, Function, Arity}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Mfa {
    /// The module.
    pub module: Atom,
    /// The function.
    pub function: Atom,
    /// The number of arguments (the length of the payload's list).
    pub arity: u8,
}

/// The flags of a spawn reply: which of link and monitor were set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SpawnFlags(pub u32);

impl SpawnFlags {
    /// No link, no monitor.
    pub const NONE: SpawnFlags = SpawnFlags(0);
    /// A link was set up (`ERTS_DIST_SPAWN_FLAG_LINK`).
    pub const LINK: SpawnFlags = SpawnFlags(1);
    /// A monitor was set up (`ERTS_DIST_SPAWN_FLAG_MONITOR`); its
    /// reference is the request id.
    pub const MONITOR: SpawnFlags = SpawnFlags(2);
    /// OTP refuses flag values from this one up (`1 bsl 27`).
    pub const LIMIT: u32 = 1 << 27;

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: SpawnFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for SpawnFlags {
    type Output = SpawnFlags;
    fn bitor(self, rhs: SpawnFlags) -> SpawnFlags {
        SpawnFlags(self.0 | rhs.0)
    }
}

/// What a spawn produced: the new process, or why there is none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpawnResult {
    /// The new process.
    Pid(Pid),
    /// The error (`badopt`, `system_limit`, `notsup`, ...).
    Error(Atom),
}

/// A control message: the control tuple with typed fields.
///
/// Variant names follow the operations (`DOP_*`); `Tt` variants carry a
/// sequential trace token. Each variant's documentation gives its tuple.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ControlMessage {
    /// `{1, From, To}`: link `From` and `To`.
    Link {
        /// The linking process (on the sender).
        from: Pid,
        /// The process to link to (on the receiver).
        to: Pid,
    },
    /// `{2, '', To}` + message.
    Send {
        /// The receiving process.
        to: Pid,
    },
    /// `{3, From, To, Reason}`: `From`, linked to `To`, exited.
    Exit {
        /// The process that exited.
        from: Pid,
        /// The linked process.
        to: Pid,
        /// The exit reason.
        reason: Term,
    },
    /// `{4, From, To}`: remove a link (old protocol).
    Unlink {
        /// The unlinking process.
        from: Pid,
        /// The other end of the link.
        to: Pid,
    },
    /// `{6, From, '', ToName}` + message: send to a registered name.
    RegSend {
        /// The sending process.
        from: Pid,
        /// The registered name on the receiver.
        to_name: Atom,
    },
    /// `{7, Leader, Target}`: make `Leader` the group leader of `Target`.
    GroupLeader {
        /// The new group leader.
        leader: Pid,
        /// The process whose group leader changes.
        target: Pid,
    },
    /// `{8, From, To, Reason}`: `exit(To, Reason)`.
    Exit2 {
        /// The process calling `exit/2`.
        from: Pid,
        /// The process receiving the exit signal.
        to: Pid,
        /// The exit reason.
        reason: Term,
    },
    /// `{12, '', To, Token}` + message.
    SendTt {
        /// The receiving process.
        to: Pid,
        /// The trace token.
        token: Term,
    },
    /// `{13, From, To, Token, Reason}`.
    ExitTt {
        /// The process that exited.
        from: Pid,
        /// The linked process.
        to: Pid,
        /// The trace token.
        token: Term,
        /// The exit reason.
        reason: Term,
    },
    /// `{16, From, '', ToName, Token}` + message.
    RegSendTt {
        /// The sending process.
        from: Pid,
        /// The registered name on the receiver.
        to_name: Atom,
        /// The trace token.
        token: Term,
    },
    /// `{18, From, To, Token, Reason}`.
    Exit2Tt {
        /// The process calling `exit/2`.
        from: Pid,
        /// The process receiving the exit signal.
        to: Pid,
        /// The trace token.
        token: Term,
        /// The exit reason.
        reason: Term,
    },
    /// `{19, From, To, Ref}`: `From` monitors `To`.
    MonitorP {
        /// The monitoring process.
        from: Pid,
        /// The monitored process, by pid or name.
        to: ProcRef,
        /// The monitor reference.
        reference: Reference,
    },
    /// `{20, From, To, Ref}`: `From` drops its monitor of `To`.
    DemonitorP {
        /// The monitoring process.
        from: Pid,
        /// The monitored process, by pid or name.
        to: ProcRef,
        /// The monitor reference.
        reference: Reference,
    },
    /// `{21, From, To, Ref, Reason}`: the monitored `From` died.
    MonitorPExit {
        /// The monitored process (by name if monitored by name).
        from: ProcRef,
        /// The monitoring process.
        to: Pid,
        /// The monitor reference.
        reference: Reference,
        /// The exit reason.
        reason: Term,
    },
    /// `{22, From, To}` + message.
    SendSender {
        /// The sending process.
        from: Pid,
        /// The receiving process.
        to: Pid,
    },
    /// `{23, From, To, Token}` + message.
    SendSenderTt {
        /// The sending process.
        from: Pid,
        /// The receiving process.
        to: Pid,
        /// The trace token.
        token: Term,
    },
    /// `{24, From, To}` + reason: `From`, linked to `To`, exited.
    PayloadExit {
        /// The process that exited.
        from: Pid,
        /// The linked process.
        to: Pid,
    },
    /// `{25, From, To, Token}` + reason.
    PayloadExitTt {
        /// The process that exited.
        from: Pid,
        /// The linked process.
        to: Pid,
        /// The trace token.
        token: Term,
    },
    /// `{26, From, To}` + reason: `exit(To, Reason)`.
    PayloadExit2 {
        /// The process calling `exit/2`.
        from: Pid,
        /// The process receiving the exit signal.
        to: Pid,
    },
    /// `{27, From, To, Token}` + reason.
    PayloadExit2Tt {
        /// The process calling `exit/2`.
        from: Pid,
        /// The process receiving the exit signal.
        to: Pid,
        /// The trace token.
        token: Term,
    },
    /// `{28, From, To, Ref}` + reason: the monitored `From` died.
    PayloadMonitorPExit {
        /// The monitored process (by name if monitored by name).
        from: ProcRef,
        /// The monitoring process.
        to: Pid,
        /// The monitor reference.
        reference: Reference,
    },
    /// `{29, ReqId, From, GroupLeader, {M, F, A}, Opts}` + argument list.
    SpawnRequest {
        /// The request id (and monitor reference, if one is asked for).
        req_id: Reference,
        /// The requesting process.
        from: Pid,
        /// The new process's group leader.
        group_leader: Pid,
        /// The function to run.
        mfa: Mfa,
        /// The spawn options (`link`, `monitor`, ...), a proper list.
        options: Vec<Term>,
    },
    /// `{30, ReqId, From, GroupLeader, {M, F, A}, Opts, Token}` + argument list.
    SpawnRequestTt {
        /// The request id.
        req_id: Reference,
        /// The requesting process.
        from: Pid,
        /// The new process's group leader.
        group_leader: Pid,
        /// The function to run.
        mfa: Mfa,
        /// The spawn options, a proper list.
        options: Vec<Term>,
        /// The trace token.
        token: Term,
    },
    /// `{31, ReqId, To, Flags, Result}`.
    SpawnReply {
        /// The request id.
        req_id: Reference,
        /// The requesting process.
        to: Pid,
        /// Which of link and monitor were set up.
        flags: SpawnFlags,
        /// The new process or an error atom.
        result: SpawnResult,
    },
    /// `{32, ReqId, To, Flags, Result, Token}`.
    SpawnReplyTt {
        /// The request id.
        req_id: Reference,
        /// The requesting process.
        to: Pid,
        /// Which of link and monitor were set up.
        flags: SpawnFlags,
        /// The new process or an error atom.
        result: SpawnResult,
        /// The trace token.
        token: Term,
    },
    /// `{33, From, Alias}` + message: send to a process alias.
    AliasSend {
        /// The sending process.
        from: Pid,
        /// The alias.
        alias: Reference,
    },
    /// `{34, From, Alias, Token}` + message.
    AliasSendTt {
        /// The sending process.
        from: Pid,
        /// The alias.
        alias: Reference,
        /// The trace token.
        token: Term,
    },
    /// `{35, Id, From, To}`: remove a link (new protocol). `Id` is not 0.
    UnlinkId {
        /// The unlink id, 1..=2^64-1.
        id: u64,
        /// The unlinking process.
        from: Pid,
        /// The other end of the link.
        to: Pid,
    },
    /// `{36, Id, From, To}`: acknowledges an `UnlinkId`.
    UnlinkIdAck {
        /// The id of the acknowledged unlink.
        id: u64,
        /// The acknowledging process.
        from: Pid,
        /// The process that unlinked.
        to: Pid,
    },
}

/// Why a control term or message was refused. Each is a reason for OTP to
/// drop the connection.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The control term is not a tuple.
    #[error("control message is a {found}, not a tuple")]
    NotATuple {
        /// The kind of term found.
        found: &'static str,
    },
    /// The control tuple is empty.
    #[error("control message is an empty tuple")]
    EmptyTuple,
    /// The first element is not an integer.
    #[error("control message operation is a {found}, not an integer")]
    OpNotInteger {
        /// The kind of term found.
        found: &'static str,
    },
    /// The operation is not one this crate knows (ops 9–11, 14, 15, 17,
    /// anything above 36, negative numbers).
    #[error("unknown control message operation {0}")]
    UnknownOp(String),
    /// `NODE_LINK` (5), which OTP treats as invalid.
    #[error("NODE_LINK (5) is not a valid control message")]
    NodeLink,
    /// The tuple has the wrong number of elements for its operation.
    #[error("{op}: tuple has {found} elements, expected {expected}")]
    Arity {
        /// The operation.
        op: ControlOp,
        /// The arity the operation needs.
        expected: usize,
        /// The arity found.
        found: usize,
    },
    /// An element has the wrong type.
    #[error("{op}: element {index} ({field}) should be {expected}, found {found}")]
    Field {
        /// The operation.
        op: ControlOp,
        /// The element's 1-based position in the tuple (1 is the op).
        index: usize,
        /// The field's name.
        field: &'static str,
        /// What the field must be.
        expected: &'static str,
        /// The kind of term found.
        found: &'static str,
    },
    /// The operation needs a payload term and there is none.
    #[error("{op} must be followed by a payload term")]
    MissingPayload {
        /// The operation.
        op: ControlOp,
    },
    /// The operation takes no payload term and one was given.
    #[error("{op} takes no payload term")]
    UnexpectedPayload {
        /// The operation.
        op: ControlOp,
    },
}

impl ControlMessage {
    /// The operation.
    pub fn op(&self) -> ControlOp {
        use ControlMessage::*;
        match self {
            Link { .. } => ControlOp::LINK,
            Send { .. } => ControlOp::SEND,
            Exit { .. } => ControlOp::EXIT,
            Unlink { .. } => ControlOp::UNLINK,
            RegSend { .. } => ControlOp::REG_SEND,
            GroupLeader { .. } => ControlOp::GROUP_LEADER,
            Exit2 { .. } => ControlOp::EXIT2,
            SendTt { .. } => ControlOp::SEND_TT,
            ExitTt { .. } => ControlOp::EXIT_TT,
            RegSendTt { .. } => ControlOp::REG_SEND_TT,
            Exit2Tt { .. } => ControlOp::EXIT2_TT,
            MonitorP { .. } => ControlOp::MONITOR_P,
            DemonitorP { .. } => ControlOp::DEMONITOR_P,
            MonitorPExit { .. } => ControlOp::MONITOR_P_EXIT,
            SendSender { .. } => ControlOp::SEND_SENDER,
            SendSenderTt { .. } => ControlOp::SEND_SENDER_TT,
            PayloadExit { .. } => ControlOp::PAYLOAD_EXIT,
            PayloadExitTt { .. } => ControlOp::PAYLOAD_EXIT_TT,
            PayloadExit2 { .. } => ControlOp::PAYLOAD_EXIT2,
            PayloadExit2Tt { .. } => ControlOp::PAYLOAD_EXIT2_TT,
            PayloadMonitorPExit { .. } => ControlOp::PAYLOAD_MONITOR_P_EXIT,
            SpawnRequest { .. } => ControlOp::SPAWN_REQUEST,
            SpawnRequestTt { .. } => ControlOp::SPAWN_REQUEST_TT,
            SpawnReply { .. } => ControlOp::SPAWN_REPLY,
            SpawnReplyTt { .. } => ControlOp::SPAWN_REPLY_TT,
            AliasSend { .. } => ControlOp::ALIAS_SEND,
            AliasSendTt { .. } => ControlOp::ALIAS_SEND_TT,
            UnlinkId { .. } => ControlOp::UNLINK_ID,
            UnlinkIdAck { .. } => ControlOp::UNLINK_ID_ACK,
        }
    }

    /// Whether the control term must be followed by a payload term: a
    /// message (ops 2, 6, 12, 16, 22, 23, 33, 34), an exit reason (24–28)
    /// or a spawn argument list (29, 30).
    pub fn has_payload(&self) -> bool {
        op_has_payload(self.op())
    }

    /// The distribution flags both nodes must have negotiated before this
    /// message may be sent, or `None` for messages every peer accepts.
    ///
    /// Monitors need `DIST_MONITOR`, and `DIST_MONITOR_NAME` as well when
    /// they name the process by registered name (OTP itself sends no
    /// monitor messages at all unless both are set). `UNLINK` (4) needs
    /// no flag, but OTP 26 and later refuse it: peers with `UNLINK_ID`
    /// should get `UNLINK_ID` instead.
    pub fn required_flag(&self) -> Option<DistFlags> {
        use ControlMessage::*;
        let monitor = |p: &ProcRef| match p {
            ProcRef::Pid(_) => DistFlags::DIST_MONITOR,
            ProcRef::Name(_) => DistFlags::DIST_MONITOR | DistFlags::DIST_MONITOR_NAME,
        };
        Some(match self {
            MonitorP { to, .. } | DemonitorP { to, .. } => monitor(to),
            MonitorPExit { from, .. } => monitor(from),
            SendSender { .. } | SendSenderTt { .. } => DistFlags::SEND_SENDER,
            PayloadExit { .. }
            | PayloadExitTt { .. }
            | PayloadExit2 { .. }
            | PayloadExit2Tt { .. } => DistFlags::EXIT_PAYLOAD,
            PayloadMonitorPExit { from, .. } => DistFlags::EXIT_PAYLOAD | monitor(from),
            SpawnRequest { .. }
            | SpawnRequestTt { .. }
            | SpawnReply { .. }
            | SpawnReplyTt { .. } => DistFlags::SPAWN,
            AliasSend { .. } | AliasSendTt { .. } => DistFlags::ALIAS,
            UnlinkId { .. } | UnlinkIdAck { .. } => DistFlags::UNLINK_ID,
            _ => return None,
        })
    }

    /// The control tuple, as it goes on the wire.
    pub fn to_term(&self) -> Term {
        let mut elems = Vec::with_capacity(op_arity(self.op()));
        let _ = self.each_element(|t| {
            elems.push(t);
            Ok::<(), std::convert::Infallible>(())
        });
        Term::Tuple(elems)
    }

    /// Gives the control tuple's elements to `f`, in order (there are
    /// [`op_arity`] of them): the encoder writes them without making the
    /// tuple. Stops at `f`'s first error.
    pub(crate) fn each_element<E>(
        &self,
        mut f: impl FnMut(Term) -> Result<(), E>,
    ) -> Result<(), E> {
        use ControlMessage::*;
        macro_rules! elements {
            ($($e:expr),* $(,)?) => {{
                $( f($e)?; )*
            }};
        }
        let op = Term::Int(i64::from(self.op().0));
        let pid = |p: &Pid| Term::Pid(*p);
        let atom = |a: &Atom| Term::Atom(*a);
        let rf = |r: &Reference| Term::Ref(Box::new(*r));
        let empty = || Term::Atom(Atom::from(""));
        let mfa = |m: &Mfa| {
            Term::Tuple(vec![
                Term::Atom(m.module),
                Term::Atom(m.function),
                Term::Int(i64::from(m.arity)),
            ])
        };
        let result = |r: &SpawnResult| match r {
            SpawnResult::Pid(p) => Term::Pid(*p),
            SpawnResult::Error(a) => Term::Atom(*a),
        };
        let flags = |f: &SpawnFlags| Term::Int(i64::from(f.0));
        match self {
            Link { from, to }
            | Unlink { from, to }
            | SendSender { from, to }
            | PayloadExit { from, to }
            | PayloadExit2 { from, to } => elements![op, pid(from), pid(to)],
            Send { to } => elements![op, empty(), pid(to)],
            Exit { from, to, reason } | Exit2 { from, to, reason } => {
                elements![op, pid(from), pid(to), reason.clone()]
            }
            RegSend { from, to_name } => elements![op, pid(from), empty(), atom(to_name)],
            GroupLeader { leader, target } => elements![op, pid(leader), pid(target)],
            SendTt { to, token } => elements![op, empty(), pid(to), token.clone()],
            ExitTt {
                from,
                to,
                token,
                reason,
            }
            | Exit2Tt {
                from,
                to,
                token,
                reason,
            } => elements![op, pid(from), pid(to), token.clone(), reason.clone()],
            RegSendTt {
                from,
                to_name,
                token,
            } => elements![op, pid(from), empty(), atom(to_name), token.clone()],
            MonitorP {
                from,
                to,
                reference,
            }
            | DemonitorP {
                from,
                to,
                reference,
            } => elements![op, pid(from), to.to_term(), rf(reference)],
            MonitorPExit {
                from,
                to,
                reference,
                reason,
            } => elements![op, from.to_term(), pid(to), rf(reference), reason.clone()],
            SendSenderTt { from, to, token }
            | PayloadExitTt { from, to, token }
            | PayloadExit2Tt { from, to, token } => {
                elements![op, pid(from), pid(to), token.clone()]
            }
            PayloadMonitorPExit {
                from,
                to,
                reference,
            } => elements![op, from.to_term(), pid(to), rf(reference)],
            SpawnRequest {
                req_id,
                from,
                group_leader,
                mfa: m,
                options,
            } => elements![
                op,
                rf(req_id),
                pid(from),
                pid(group_leader),
                mfa(m),
                Term::List(options.clone()),
            ],
            SpawnRequestTt {
                req_id,
                from,
                group_leader,
                mfa: m,
                options,
                token,
            } => elements![
                op,
                rf(req_id),
                pid(from),
                pid(group_leader),
                mfa(m),
                Term::List(options.clone()),
                token.clone(),
            ],
            SpawnReply {
                req_id,
                to,
                flags: f,
                result: r,
            } => elements![op, rf(req_id), pid(to), flags(f), result(r)],
            SpawnReplyTt {
                req_id,
                to,
                flags: f,
                result: r,
                token,
            } => elements![op, rf(req_id), pid(to), flags(f), result(r), token.clone()],
            AliasSend { from, alias } => elements![op, pid(from), rf(alias)],
            AliasSendTt { from, alias, token } => {
                elements![op, pid(from), rf(alias), token.clone()]
            }
            UnlinkId { id, from, to } | UnlinkIdAck { id, from, to } => {
                elements![op, Term::from(*id), pid(from), pid(to)]
            }
        }
        Ok(())
    }

    /// Reads a control tuple, as strictly as OTP's `erts_net_message`:
    /// exact arity, the right type in every field, known operations only.
    ///
    /// # Errors
    /// A [`ControlError`] naming the operation, the element and what was
    /// wrong with it.
    pub fn from_term(term: Term) -> Result<ControlMessage, ControlError> {
        match term {
            Term::Tuple(elems) => ControlMessage::from_elements(elems.into_iter()),
            other => Err(ControlError::NotATuple {
                found: other.kind(),
            }),
        }
    }

    /// [`from_term`](Self::from_term) for the control tuple's elements,
    /// wherever they are (the decoder reads them onto the stack).
    pub(crate) fn from_elements<I: ExactSizeIterator<Item = Term>>(
        mut elems: I,
    ) -> Result<ControlMessage, ControlError> {
        let len = elems.len();
        let raw_op = match elems.next() {
            None => return Err(ControlError::EmptyTuple),
            Some(Term::Int(i)) => i,
            Some(Term::BigInt(b)) => return Err(ControlError::UnknownOp(b.to_string())),
            Some(other) => {
                return Err(ControlError::OpNotInteger {
                    found: other.kind(),
                })
            }
        };
        let op = match u8::try_from(raw_op) {
            Ok(5) => return Err(ControlError::NodeLink),
            Ok(op) if ControlOp(op).name().is_some() => ControlOp(op),
            _ => return Err(ControlError::UnknownOp(raw_op.to_string())),
        };
        let expected = op_arity(op);
        if len != expected {
            return Err(ControlError::Arity {
                op,
                expected,
                found: len,
            });
        }
        // The op (element 1) is read.
        let mut f = Fields {
            op,
            index: 2,
            elems,
        };
        use ControlMessage as M;
        let msg = match op {
            ControlOp::LINK => M::Link {
                from: f.pid("from")?,
                to: f.pid("to")?,
            },
            ControlOp::SEND => {
                f.next("unused");
                M::Send { to: f.pid("to")? }
            }
            ControlOp::EXIT => M::Exit {
                from: f.pid("from")?,
                to: f.pid("to")?,
                reason: f.next("reason"),
            },
            ControlOp::UNLINK => M::Unlink {
                from: f.pid("from")?,
                to: f.pid("to")?,
            },
            ControlOp::REG_SEND => {
                let from = f.pid("from")?;
                f.next("unused");
                M::RegSend {
                    from,
                    to_name: f.atom("to_name")?,
                }
            }
            ControlOp::GROUP_LEADER => M::GroupLeader {
                leader: f.pid("leader")?,
                target: f.pid("target")?,
            },
            ControlOp::EXIT2 => M::Exit2 {
                from: f.pid("from")?,
                to: f.pid("to")?,
                reason: f.next("reason"),
            },
            ControlOp::SEND_TT => {
                f.next("unused");
                M::SendTt {
                    to: f.pid("to")?,
                    token: f.next("token"),
                }
            }
            ControlOp::EXIT_TT => M::ExitTt {
                from: f.pid("from")?,
                to: f.pid("to")?,
                token: f.next("token"),
                reason: f.next("reason"),
            },
            ControlOp::REG_SEND_TT => {
                let from = f.pid("from")?;
                f.next("unused");
                M::RegSendTt {
                    from,
                    to_name: f.atom("to_name")?,
                    token: f.next("token"),
                }
            }
            ControlOp::EXIT2_TT => M::Exit2Tt {
                from: f.pid("from")?,
                to: f.pid("to")?,
                token: f.next("token"),
                reason: f.next("reason"),
            },
            ControlOp::MONITOR_P => M::MonitorP {
                from: f.pid("from")?,
                to: f.proc_ref("to")?,
                reference: f.reference("reference")?,
            },
            ControlOp::DEMONITOR_P => M::DemonitorP {
                from: f.pid("from")?,
                to: f.proc_ref("to")?,
                reference: f.reference("reference")?,
            },
            ControlOp::MONITOR_P_EXIT => M::MonitorPExit {
                from: f.proc_ref("from")?,
                to: f.pid("to")?,
                reference: f.reference("reference")?,
                reason: f.next("reason"),
            },
            ControlOp::SEND_SENDER => M::SendSender {
                from: f.pid("from")?,
                to: f.pid("to")?,
            },
            ControlOp::SEND_SENDER_TT => M::SendSenderTt {
                from: f.pid("from")?,
                to: f.pid("to")?,
                token: f.next("token"),
            },
            ControlOp::PAYLOAD_EXIT => M::PayloadExit {
                from: f.pid("from")?,
                to: f.pid("to")?,
            },
            ControlOp::PAYLOAD_EXIT_TT => M::PayloadExitTt {
                from: f.pid("from")?,
                to: f.pid("to")?,
                token: f.next("token"),
            },
            ControlOp::PAYLOAD_EXIT2 => M::PayloadExit2 {
                from: f.pid("from")?,
                to: f.pid("to")?,
            },
            ControlOp::PAYLOAD_EXIT2_TT => M::PayloadExit2Tt {
                from: f.pid("from")?,
                to: f.pid("to")?,
                token: f.next("token"),
            },
            ControlOp::PAYLOAD_MONITOR_P_EXIT => M::PayloadMonitorPExit {
                from: f.proc_ref("from")?,
                to: f.pid("to")?,
                reference: f.reference("reference")?,
            },
            ControlOp::SPAWN_REQUEST => M::SpawnRequest {
                req_id: f.reference("req_id")?,
                from: f.pid("from")?,
                group_leader: f.pid("group_leader")?,
                mfa: f.mfa("mfa")?,
                options: f.list("options")?,
            },
            ControlOp::SPAWN_REQUEST_TT => M::SpawnRequestTt {
                req_id: f.reference("req_id")?,
                from: f.pid("from")?,
                group_leader: f.pid("group_leader")?,
                mfa: f.mfa("mfa")?,
                options: f.list("options")?,
                token: f.next("token"),
            },
            ControlOp::SPAWN_REPLY => M::SpawnReply {
                req_id: f.reference("req_id")?,
                to: f.pid("to")?,
                flags: f.spawn_flags("flags")?,
                result: f.spawn_result("result")?,
            },
            ControlOp::SPAWN_REPLY_TT => M::SpawnReplyTt {
                req_id: f.reference("req_id")?,
                to: f.pid("to")?,
                flags: f.spawn_flags("flags")?,
                result: f.spawn_result("result")?,
                token: f.next("token"),
            },
            ControlOp::ALIAS_SEND => M::AliasSend {
                from: f.pid("from")?,
                alias: f.reference("alias")?,
            },
            ControlOp::ALIAS_SEND_TT => M::AliasSendTt {
                from: f.pid("from")?,
                alias: f.reference("alias")?,
                token: f.next("token"),
            },
            ControlOp::UNLINK_ID => M::UnlinkId {
                id: f.u64("id", 1)?,
                from: f.pid("from")?,
                to: f.pid("to")?,
            },
            ControlOp::UNLINK_ID_ACK => M::UnlinkIdAck {
                id: f.u64("id", 0)?,
                from: f.pid("from")?,
                to: f.pid("to")?,
            },
            _ => return Err(ControlError::UnknownOp(raw_op.to_string())),
        };
        Ok(msg)
    }
}

/// Whether messages of operation `op` carry a payload term.
pub fn op_has_payload(op: ControlOp) -> bool {
    matches!(
        op.0,
        2 | 6 | 12 | 16 | 22 | 23 | 33 | 34 | 24..=28 | 29 | 30
    )
}

/// The tuple arity of a known operation (0 for unknown ones).
pub(crate) fn op_arity(op: ControlOp) -> usize {
    match op.0 {
        1 | 2 | 4 | 7 | 22 | 24 | 26 | 33 => 3,
        3 | 6 | 8 | 12 | 19 | 20 | 23 | 25 | 27 | 28 | 34 | 35 | 36 => 4,
        13 | 16 | 18 | 21 | 31 => 5,
        29 | 32 => 6,
        30 => 7,
        _ => 0,
    }
}

/// The elements of a control tuple being read, with the position for
/// error messages.
struct Fields<I> {
    op: ControlOp,
    index: usize,
    elems: I,
}

impl<I: Iterator<Item = Term>> Fields<I> {
    /// The next element, whatever it is. The arity was checked first, so
    /// there always is one; a missing one reads as `[]` and cannot occur.
    fn next(&mut self, _field: &'static str) -> Term {
        self.index += 1;
        self.elems.next().unwrap_or(Term::NIL)
    }

    fn wrong(&self, field: &'static str, expected: &'static str, found: &Term) -> ControlError {
        ControlError::Field {
            op: self.op,
            index: self.index - 1,
            field,
            expected,
            found: found.kind(),
        }
    }

    fn pid(&mut self, field: &'static str) -> Result<Pid, ControlError> {
        match self.next(field) {
            Term::Pid(p) => Ok(p),
            other => Err(self.wrong(field, "a pid", &other)),
        }
    }

    fn atom(&mut self, field: &'static str) -> Result<Atom, ControlError> {
        match self.next(field) {
            Term::Atom(a) => Ok(a),
            other => Err(self.wrong(field, "an atom", &other)),
        }
    }

    fn reference(&mut self, field: &'static str) -> Result<Reference, ControlError> {
        match self.next(field) {
            Term::Ref(r) => Ok(*r),
            other => Err(self.wrong(field, "a reference", &other)),
        }
    }

    fn proc_ref(&mut self, field: &'static str) -> Result<ProcRef, ControlError> {
        match self.next(field) {
            Term::Pid(p) => Ok(ProcRef::Pid(p)),
            Term::Atom(a) => Ok(ProcRef::Name(a)),
            other => Err(self.wrong(field, "a pid or an atom", &other)),
        }
    }

    fn mfa(&mut self, field: &'static str) -> Result<Mfa, ControlError> {
        let t = self.next(field);
        if let Term::Tuple(v) = &t {
            if let [Term::Atom(module), Term::Atom(function), Term::Int(arity)] = v.as_slice() {
                if let Ok(arity) = u8::try_from(*arity) {
                    return Ok(Mfa {
                        module: *module,
                        function: *function,
                        arity,
                    });
                }
            }
        }
        Err(self.wrong(field, "{atom, atom, 0..255}", &t))
    }

    fn list(&mut self, field: &'static str) -> Result<Vec<Term>, ControlError> {
        match self.next(field) {
            Term::List(v) => Ok(v),
            Term::ByteList(b) => Ok(b.iter().map(|&x| Term::Int(i64::from(x))).collect()),
            other => Err(self.wrong(field, "a proper list", &other)),
        }
    }

    fn spawn_flags(&mut self, field: &'static str) -> Result<SpawnFlags, ControlError> {
        let t = self.next(field);
        match &t {
            Term::Int(i) => match u32::try_from(*i) {
                Ok(f) if f < SpawnFlags::LIMIT => Ok(SpawnFlags(f)),
                _ => Err(self.wrong(field, "an integer in 0..2^27", &t)),
            },
            _ => Err(self.wrong(field, "an integer in 0..2^27", &t)),
        }
    }

    fn spawn_result(&mut self, field: &'static str) -> Result<SpawnResult, ControlError> {
        match self.next(field) {
            Term::Pid(p) => Ok(SpawnResult::Pid(p)),
            Term::Atom(a) => Ok(SpawnResult::Error(a)),
            other => Err(self.wrong(field, "a pid or an atom", &other)),
        }
    }

    fn u64(&mut self, field: &'static str, min: u64) -> Result<u64, ControlError> {
        let t = self.next(field);
        let value = match &t {
            Term::Int(i) => u64::try_from(*i).ok(),
            Term::BigInt(b) => b.to_u64(),
            _ => None,
        };
        match value {
            Some(v) if v >= min => Ok(v),
            _ if min == 0 => Err(self.wrong(field, "an integer in 0..2^64", &t)),
            _ => Err(self.wrong(field, "an integer in 1..2^64", &t)),
        }
    }
}

/// A whole distribution message: the control message and its payload term,
/// present exactly when the operation has one.
#[derive(Clone, Debug, PartialEq)]
pub struct DistMessage {
    control: ControlMessage,
    payload: Option<Term>,
}

impl DistMessage {
    /// A message, checking that `payload` is present iff the operation
    /// needs one.
    ///
    /// # Errors
    /// [`ControlError::MissingPayload`] or
    /// [`ControlError::UnexpectedPayload`].
    #[inline]
    pub fn new(
        control: ControlMessage,
        payload: Option<Term>,
    ) -> Result<DistMessage, ControlError> {
        let op = control.op();
        match (control.has_payload(), payload.is_some()) {
            (true, false) => Err(ControlError::MissingPayload { op }),
            (false, true) => Err(ControlError::UnexpectedPayload { op }),
            _ => Ok(DistMessage { control, payload }),
        }
    }

    /// A message of an operation without payload.
    ///
    /// # Errors
    /// [`ControlError::MissingPayload`] if the operation needs one.
    pub fn control_only(control: ControlMessage) -> Result<DistMessage, ControlError> {
        DistMessage::new(control, None)
    }

    /// A message of an operation with a payload.
    ///
    /// # Errors
    /// [`ControlError::UnexpectedPayload`] if the operation takes none.
    pub fn with_payload(
        control: ControlMessage,
        payload: Term,
    ) -> Result<DistMessage, ControlError> {
        DistMessage::new(control, Some(payload))
    }

    /// The control message.
    pub fn control(&self) -> &ControlMessage {
        &self.control
    }

    /// The payload term, if the operation has one.
    pub fn payload(&self) -> Option<&Term> {
        self.payload.as_ref()
    }

    /// The control message and payload.
    pub fn into_parts(self) -> (ControlMessage, Option<Term>) {
        (self.control, self.payload)
    }
}

/// The most elements a control tuple has (`SPAWN_REQUEST_TT`: 7).
pub(crate) const MAX_CONTROL_ELEMENTS: usize = 7;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn pid(node: &str, id: u32) -> Pid {
        Pid {
            node: Atom::from(node),
            id,
            serial: 0,
            creation: 7,
        }
    }

    fn reference(n: u32) -> Reference {
        Reference::new(Atom::from("a@h"), 7, &[n, 1, 2]).unwrap()
    }

    /// One message of every operation.
    pub(crate) fn every_op() -> Vec<ControlMessage> {
        use ControlMessage as M;
        let a = pid("a@h", 1);
        let b = pid("b@h", 2);
        let r = reference(9);
        let tok = Term::tuple(vec![Term::Int(0), Term::atom("label")]);
        let reason = Term::atom("normal");
        let mfa = Mfa {
            module: Atom::from("m"),
            function: Atom::from("f"),
            arity: 2,
        };
        vec![
            M::Link { from: a, to: b },
            M::Send { to: b },
            M::Exit {
                from: a,
                to: b,
                reason: reason.clone(),
            },
            M::Unlink { from: a, to: b },
            M::RegSend {
                from: a,
                to_name: Atom::from("rex"),
            },
            M::GroupLeader {
                leader: a,
                target: b,
            },
            M::Exit2 {
                from: a,
                to: b,
                reason: reason.clone(),
            },
            M::SendTt {
                to: b,
                token: tok.clone(),
            },
            M::ExitTt {
                from: a,
                to: b,
                token: tok.clone(),
                reason: reason.clone(),
            },
            M::RegSendTt {
                from: a,
                to_name: Atom::from("rex"),
                token: tok.clone(),
            },
            M::Exit2Tt {
                from: a,
                to: b,
                token: tok.clone(),
                reason: reason.clone(),
            },
            M::MonitorP {
                from: a,
                to: ProcRef::Pid(b),
                reference: r,
            },
            M::DemonitorP {
                from: a,
                to: ProcRef::Name(Atom::from("foo")),
                reference: r,
            },
            M::MonitorPExit {
                from: ProcRef::Name(Atom::from("foo")),
                to: a,
                reference: r,
                reason: reason.clone(),
            },
            M::SendSender { from: a, to: b },
            M::SendSenderTt {
                from: a,
                to: b,
                token: tok.clone(),
            },
            M::PayloadExit { from: a, to: b },
            M::PayloadExitTt {
                from: a,
                to: b,
                token: tok.clone(),
            },
            M::PayloadExit2 { from: a, to: b },
            M::PayloadExit2Tt {
                from: a,
                to: b,
                token: tok.clone(),
            },
            M::PayloadMonitorPExit {
                from: ProcRef::Pid(b),
                to: a,
                reference: r,
            },
            M::SpawnRequest {
                req_id: r,
                from: a,
                group_leader: a,
                mfa,
                options: vec![Term::atom("monitor")],
            },
            M::SpawnRequestTt {
                req_id: r,
                from: a,
                group_leader: a,
                mfa,
                options: vec![],
                token: tok.clone(),
            },
            M::SpawnReply {
                req_id: r,
                to: a,
                flags: SpawnFlags::LINK | SpawnFlags::MONITOR,
                result: SpawnResult::Pid(b),
            },
            M::SpawnReplyTt {
                req_id: r,
                to: a,
                flags: SpawnFlags::NONE,
                result: SpawnResult::Error(Atom::from("badopt")),
                token: tok.clone(),
            },
            M::AliasSend { from: a, alias: r },
            M::AliasSendTt {
                from: a,
                alias: r,
                token: tok,
            },
            M::UnlinkId {
                id: u64::MAX,
                from: a,
                to: b,
            },
            M::UnlinkIdAck {
                id: 0,
                from: b,
                to: a,
            },
        ]
    }

    #[test]
    fn every_op_round_trips_through_terms_and_bytes() {
        let all = every_op();
        assert_eq!(all.len(), 29);
        let mut seen = std::collections::HashSet::new();
        for msg in all {
            assert!(seen.insert(msg.op()), "{:?} twice", msg.op());
            let term = msg.to_term();
            let elems = term.as_tuple().unwrap();
            assert_eq!(elems.len(), op_arity(msg.op()), "{msg:?}");
            assert_eq!(elems[0].as_i64(), Some(i64::from(msg.op().0)));
            let bytes = term.encode().unwrap();
            let back = ControlMessage::from_term(Term::decode(&bytes).unwrap()).unwrap();
            assert_eq!(back, msg);
            assert!(back.to_term().exact_eq(&term));
        }
    }

    #[test]
    fn payload_ops_are_exactly_the_documented_ones() {
        let with: Vec<u8> = every_op()
            .iter()
            .filter(|m| m.has_payload())
            .map(|m| m.op().0)
            .collect();
        assert_eq!(
            with,
            [2, 6, 12, 16, 22, 23, 24, 25, 26, 27, 28, 29, 30, 33, 34]
        );
    }

    #[test]
    fn required_flags() {
        for msg in every_op() {
            let f = msg.required_flag();
            match msg.op().0 {
                1..=18 => assert_eq!(f, None, "{msg:?}"),
                22 | 23 => assert_eq!(f, Some(DistFlags::SEND_SENDER)),
                24..=27 => assert_eq!(f, Some(DistFlags::EXIT_PAYLOAD)),
                28 => assert_eq!(f, Some(DistFlags::EXIT_PAYLOAD | DistFlags::DIST_MONITOR)),
                19 => assert_eq!(f, Some(DistFlags::DIST_MONITOR)),
                20 | 21 => assert_eq!(
                    f,
                    Some(DistFlags::DIST_MONITOR | DistFlags::DIST_MONITOR_NAME)
                ),
                29..=32 => assert_eq!(f, Some(DistFlags::SPAWN)),
                33 | 34 => assert_eq!(f, Some(DistFlags::ALIAS)),
                35 | 36 => assert_eq!(f, Some(DistFlags::UNLINK_ID)),
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn cookie_slots_accept_anything_and_write_empty_atom() {
        let to = pid("b@h", 2);
        let t = Term::tuple(vec![Term::Int(2), Term::Int(42), Term::Pid(to)]);
        let msg = ControlMessage::from_term(t).unwrap();
        assert_eq!(msg, ControlMessage::Send { to });
        assert_eq!(
            msg.to_term().as_tuple().unwrap()[1].as_atom(),
            Some(Atom::from(""))
        );
    }

    #[test]
    fn rejects_what_otp_rejects() {
        let a = Term::Pid(pid("a@h", 1));
        let r = Term::Ref(Box::new(reference(1)));
        let t = Term::tuple;
        let i = Term::Int;
        let cases: Vec<(Term, &str)> = vec![
            (Term::atom("link"), "NotATuple"),
            (t(vec![]), "EmptyTuple"),
            (t(vec![Term::atom("x"), a.clone()]), "OpNotInteger"),
            (t(vec![i(5)]), "NodeLink"),
            (t(vec![i(9), a.clone(), a.clone()]), "UnknownOp"),
            (t(vec![i(37), i(0), a.clone(), a.clone()]), "UnknownOp"),
            (t(vec![i(-1)]), "UnknownOp"),
            (t(vec![i(1), a.clone()]), "Arity"),
            (t(vec![i(1), a.clone(), a.clone(), a.clone()]), "Arity"),
            (t(vec![i(1), a.clone(), r.clone()]), "Field"),
            (t(vec![i(6), a.clone(), Term::atom(""), a.clone()]), "Field"),
            (t(vec![i(19), a.clone(), i(3), r.clone()]), "Field"),
            (t(vec![i(19), a.clone(), a.clone(), a.clone()]), "Field"),
            (t(vec![i(35), i(0), a.clone(), a.clone()]), "Field"),
            (t(vec![i(35), i(-1), a.clone(), a.clone()]), "Field"),
            (
                t(vec![i(31), r.clone(), a.clone(), i(1 << 27), a.clone()]),
                "Field",
            ),
            (
                t(vec![i(31), r.clone(), a.clone(), i(-1), a.clone()]),
                "Field",
            ),
            (t(vec![i(31), r.clone(), a.clone(), i(0), i(1)]), "Field"),
            (
                t(vec![
                    i(29),
                    r.clone(),
                    a.clone(),
                    a.clone(),
                    t(vec![Term::atom("m"), Term::atom("f"), i(256)]),
                    Term::NIL,
                ]),
                "Field",
            ),
            (
                t(vec![
                    i(29),
                    r.clone(),
                    a.clone(),
                    a.clone(),
                    t(vec![Term::atom("m"), Term::atom("f"), i(1)]),
                    Term::list_with_tail(vec![Term::atom("link")], Term::atom("x")),
                ]),
                "Field",
            ),
            (t(vec![i(33), a.clone(), a.clone()]), "Field"),
        ];
        for (term, want) in cases {
            let text = term.to_string();
            let e = ControlMessage::from_term(term).unwrap_err();
            assert!(format!("{e:?}").starts_with(want), "{text}: {e:?}");
        }
    }

    #[test]
    fn unlink_ids_take_the_whole_u64_range() {
        let a = Term::Pid(pid("a@h", 1));
        let big = Term::from(u64::MAX);
        let t = Term::tuple(vec![Term::Int(35), big, a.clone(), a.clone()]);
        let m = ControlMessage::from_term(t).unwrap();
        assert!(matches!(m, ControlMessage::UnlinkId { id: u64::MAX, .. }));
        let over = Term::from(u128::from(u64::MAX) + 1);
        let t = Term::tuple(vec![Term::Int(36), over, a.clone(), a]);
        assert!(ControlMessage::from_term(t).is_err());
    }

    #[test]
    fn dist_message_checks_the_payload() {
        for msg in every_op() {
            let op = msg.op();
            if msg.has_payload() {
                assert_eq!(
                    DistMessage::new(msg.clone(), None),
                    Err(ControlError::MissingPayload { op })
                );
                let m = DistMessage::with_payload(msg.clone(), Term::atom("hi")).unwrap();
                assert_eq!(m.payload(), Some(&Term::atom("hi")));
            } else {
                assert_eq!(
                    DistMessage::new(msg.clone(), Some(Term::NIL)),
                    Err(ControlError::UnexpectedPayload { op })
                );
                let m = DistMessage::control_only(msg.clone()).unwrap();
                assert_eq!(m.into_parts(), (msg, None));
            }
        }
    }

    #[test]
    fn op_names() {
        assert_eq!(ControlOp::SEND_SENDER.name(), Some("SEND_SENDER"));
        assert_eq!(format!("{}", ControlOp(9)), "ControlOp(9)");
        assert_eq!(format!("{}", ControlOp::LINK), "LINK(1)");
    }
}
