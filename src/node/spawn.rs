//! Spawning across nodes (SPAWN_REQUEST / SPAWN_REPLY) and group leaders.
//!
//! Not implemented yet: a spawn request from a peer is refused with
//! `notsup`, as OTP itself answers when it cannot spawn.

use crate::connection::control::{ControlMessage, DistMessage, Mfa, SpawnFlags, SpawnResult};
use crate::term::{Atom, Pid, Reference, Term};

use super::Node;

impl Node {
    /// A peer asks this node to spawn `mfa` with `args` for `from`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spawn_request_in(
        &self,
        peer: Atom,
        req_id: Reference,
        from: Pid,
        _group_leader: Pid,
        _mfa: Mfa,
        _options: Vec<Term>,
        _args: Term,
    ) {
        let reply = ControlMessage::SpawnReply {
            req_id,
            to: from,
            flags: SpawnFlags(0),
            result: SpawnResult::Error(Atom::from("notsup")),
        };
        self.route_remote(peer, DistMessage::control_only(reply));
    }

    /// A peer answers a spawn request of ours.
    pub(crate) fn spawn_reply_in(
        &self,
        _req_id: Reference,
        _to: Pid,
        _flags: SpawnFlags,
        _result: SpawnResult,
    ) {
    }

    /// A peer sets the group leader of one of our processes.
    pub(crate) fn group_leader_in(&self, _leader: Pid, _target: Pid) {}
}
