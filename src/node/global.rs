//! `:global` names, as a client: resolve names registered with
//! `:global.register_name/2` on the cluster, send to them, and register
//! Rust processes, all through a connected BEAM node's `global`.
//!
//! # How it works, and what it does not do
//!
//! `:global` keeps a replica of the name table on every node of a fully
//! connected cluster, and changes it under a cluster-wide lock. erldist
//! runs no `global_name_server` of its own and keeps no replica; it asks
//! one of the connected BEAM nodes' (the first that answers; a node
//! without `global`, such as another Rust node, is skipped):
//!
//! - [`Node::global_whereis_name`] sends `{whereis, Name, {Pid, Tag}}` to
//!   `global_name_server` (the message OTP 25's `global.erl` answers with
//!   `gen_server:reply(From, where(Name))`, after any global lock is
//!   released); a monitor on the server tells at once when a node has
//!   none. The answer is that node's view, the same on every node of a
//!   synced cluster;
//! - [`Node::global_send`] resolves, then sends (`:global.send/2`);
//! - [`Node::global_register_name`], [`Node::global_unregister_name`] and
//!   [`Node::global_registered_names`] call `global:register_name/2`,
//!   `unregister_name/1` and `registered_names/0` on that node over RPC.
//!   The BEAM node runs the locking protocol and registers the name on
//!   all nodes of its cluster; each of them monitors the Rust process and
//!   drops the name when it exits or becomes unreachable. This is how
//!   `erl_interface` C nodes register global names
//!   (`ei_global_register`, through `global:register_name_external/2`);
//!   erldist uses the plain `register_name/2`, so the name lives as long
//!   as the process, not as long as the BEAM node that registered it.
//!
//! What erldist does not do is take part in `global` as a node: answer
//! its connect protocol (`init_connect`, the lockers' `lock_set`
//! exchange, `set_lock` and `del_lock` calls, `exchange`, `resolved`,
//! `new_nodes`, `in_sync`, `lost_connection`) and keep a replica. The
//! consequences follow.
//!
//! # A visible Rust node and `global:sync/0`
//!
//! When a *visible* Rust node connects to a BEAM node, that node's
//! `global` starts its connect protocol with it and waits for an answer
//! that never comes. Checked on OTP 25.2 (tests/global_real.rs):
//!
//! - `global:sync()` on the BEAM node blocks (it waits until every
//!   visible node is synced) for as long as the Rust node is connected,
//!   and returns once it disconnects;
//! - `global:register_name/2`, `whereis_name/1` and `send/2` keep working
//!   on the BEAM nodes (the Rust node never becomes a "known" node, so
//!   registrations do not wait for it), and so does everything on this
//!   page;
//! - `global` does not make the other BEAM nodes connect to the Rust node
//!   (it would after a successful sync: `connect_all`); but each BEAM node
//!   that monitors a globally registered Rust process (every node of the
//!   cluster does) connects to it, with the same effect on its
//!   `global:sync()`.
//!
//! If anything in the cluster calls `global:sync()` (some libraries and
//! release scripts do), start the Rust node hidden
//! ([`NodeBuilder::hidden`](super::NodeBuilder::hidden)): BEAM's `global`
//! ignores hidden nodes, `sync` returns at once, and everything on this
//! page still works, since it only talks to `global_name_server` and
//! `erpc`.

use std::time::Duration;

use super::gen_server::down_reason;
use super::rpc::RpcError;
use super::{Dest, MonitorTarget, Node};
use crate::term::{Atom, Pid, Term};

/// How long one BEAM node may take to answer a `whereis` (it waits while a
/// global lock is held, e.g. during a registration elsewhere).
pub const WHEREIS_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a registration through a BEAM node may take (it waits for the
/// cluster-wide lock).
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a `:global` operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GlobalError {
    /// No connected node runs `global_name_server` (connect to a BEAM
    /// node of the cluster first).
    #[error("no connected node runs global_name_server")]
    NoGlobalNode,
    /// The name is not registered (`:global.send/2` exits with
    /// `{badarg, {Name, Msg}}`).
    #[error("no process is registered globally as {0}")]
    NotRegistered(Term),
    /// The node asked did not answer in time.
    #[error("global_name_server on {0} did not answer in time")]
    Timeout(Atom),
    /// The RPC to a BEAM node failed.
    #[error("{call} on {node} failed: {source}")]
    Rpc {
        /// The node asked.
        node: Atom,
        /// The function called, e.g. `global:register_name`.
        call: String,
        /// Why.
        source: RpcError,
    },
    /// A BEAM node answered something unexpected.
    #[error("unexpected answer from {node}: {answer}")]
    BadAnswer {
        /// The node asked.
        node: Atom,
        /// Its answer.
        answer: Term,
    },
    /// `global` refused the registration (`no`): the name is taken, or
    /// the process already has a global name.
    #[error("global refused to register {0}: the name is taken, or the process has one")]
    Refused(Term),
}

enum Asked {
    Answer(Term),
    NoServer,
}

impl Node {
    /// The connected nodes, visible ones first, to ask about `global`.
    fn global_candidates(&self) -> Vec<Atom> {
        let mut nodes = self.nodes();
        nodes.extend(self.hidden_nodes());
        nodes
    }

    /// The process registered globally as `name` (`:global.whereis_name/1`),
    /// asking a connected BEAM node's `global_name_server`; `None` if no
    /// process has the name.
    ///
    /// # Errors
    /// [`GlobalError::NoGlobalNode`] if no connected node runs `global`,
    /// [`GlobalError::Timeout`] if the one asked does not answer.
    pub async fn global_whereis_name(
        &self,
        name: impl Into<Term>,
    ) -> Result<Option<Pid>, GlobalError> {
        let name = name.into();
        for peer in self.global_candidates() {
            match self.ask_whereis(peer, &name).await? {
                Asked::NoServer => continue,
                Asked::Answer(Term::Pid(p)) => return Ok(Some(p)),
                Asked::Answer(a) if a.is_atom("undefined") => return Ok(None),
                Asked::Answer(answer) => return Err(GlobalError::BadAnswer { node: peer, answer }),
            }
        }
        Err(GlobalError::NoGlobalNode)
    }

    async fn ask_whereis(&self, peer: Atom, name: &Term) -> Result<Asked, GlobalError> {
        let mut me = self.process();
        let server = MonitorTarget::Remote(Atom::from("global_name_server"), peer);
        let mref = me.monitor(server);
        let tag = Term::Ref(Box::new(self.make_ref()));
        let from = Term::Tuple(vec![Term::Pid(me.pid()), tag.clone()]);
        me.send(
            Dest::Remote(Atom::from("global_name_server"), peer),
            Term::Tuple(vec![Term::atom("whereis"), name.clone(), from]),
        );
        let got = me
            .recv_match_timeout(WHEREIS_TIMEOUT, |m| {
                down_reason(m, &mref).is_some()
                    || matches!(m.as_tuple(), Some([t, _]) if t.exact_eq(&tag))
            })
            .await;
        me.demonitor(&mref);
        match got {
            Ok(Some(m)) if down_reason(&m, &mref).is_some() => Ok(Asked::NoServer),
            Ok(Some(Term::Tuple(mut t))) => Ok(Asked::Answer(t.pop().unwrap_or(Term::NIL))),
            Ok(Some(other)) => Err(GlobalError::BadAnswer {
                node: peer,
                answer: other,
            }),
            Ok(None) | Err(_) => Err(GlobalError::Timeout(peer)),
        }
    }

    /// Sends `msg` to the process registered globally as `name`
    /// (`:global.send/2`) and returns its PID.
    ///
    /// # Errors
    /// [`GlobalError::NotRegistered`] if no process has the name (where
    /// `:global.send/2` exits with `{badarg, {Name, Msg}}`), else as
    /// [`global_whereis_name`](Node::global_whereis_name).
    pub async fn global_send(
        &self,
        name: impl Into<Term>,
        msg: impl Into<Term>,
    ) -> Result<Pid, GlobalError> {
        let name = name.into();
        match self.global_whereis_name(name.clone()).await? {
            Some(pid) => {
                self.send(pid, msg);
                Ok(pid)
            }
            None => Err(GlobalError::NotRegistered(name)),
        }
    }

    /// Calls `global:Function(Args...)` on the first connected node that
    /// runs it (another Rust node answers `undef`: the next is tried).
    async fn global_rpc(
        &self,
        function: &str,
        args: Vec<Term>,
        timeout: Duration,
    ) -> Result<(Atom, Term), GlobalError> {
        let mut last = None;
        for peer in self.global_candidates() {
            match self
                .rpc(peer, "global", function, args.clone(), timeout)
                .await
            {
                Ok(answer) => return Ok((peer, answer)),
                Err(RpcError::Error { reason, .. }) if reason.is_atom("undef") => {}
                Err(RpcError::NotSup) | Err(RpcError::NoConnection) => {}
                Err(source) => {
                    last = Some(GlobalError::Rpc {
                        node: peer,
                        call: format!("global:{function}"),
                        source,
                    })
                }
            }
        }
        Err(last.unwrap_or(GlobalError::NoGlobalNode))
    }

    /// The names registered globally (`:global.registered_names/0`), from
    /// the first connected node that answers.
    ///
    /// # Errors
    /// [`GlobalError::NoGlobalNode`] if no connected node answers,
    /// [`GlobalError::Rpc`] if the call fails otherwise.
    pub async fn global_registered_names(&self) -> Result<Vec<Term>, GlobalError> {
        match self
            .global_rpc("registered_names", vec![], WHEREIS_TIMEOUT)
            .await?
        {
            (_, Term::List(names)) => Ok(names),
            (node, answer) => Err(GlobalError::BadAnswer { node, answer }),
        }
    }

    /// Registers `pid` globally as `name` (`:global.register_name/2`), by
    /// having a connected BEAM node's `global` do it: that node takes the
    /// cluster-wide lock and registers the name on every node of its
    /// cluster, each of which then monitors `pid` and drops the name when
    /// it exits (or its node becomes unreachable), as for any remote
    /// process. Waits at most [`REGISTER_TIMEOUT`] (the registration
    /// waits while another holds the global lock).
    ///
    /// # Errors
    /// [`GlobalError::Refused`] when `global` answers `no` (the name is
    /// taken, or `pid` already has a global name);
    /// [`GlobalError::NoGlobalNode`] with no BEAM node connected;
    /// [`GlobalError::Rpc`] if the call fails (on a timeout, the
    /// registration may still happen later).
    pub async fn global_register_name(
        &self,
        name: impl Into<Term>,
        pid: Pid,
    ) -> Result<(), GlobalError> {
        let name = name.into();
        let args = vec![name.clone(), Term::Pid(pid)];
        match self
            .global_rpc("register_name", args, REGISTER_TIMEOUT)
            .await?
        {
            (_, a) if a.is_atom("yes") => Ok(()),
            (_, a) if a.is_atom("no") => Err(GlobalError::Refused(name)),
            (node, answer) => Err(GlobalError::BadAnswer { node, answer }),
        }
    }

    /// Removes a global name, whoever has it (`:global.unregister_name/1`),
    /// through a connected BEAM node's `global` as
    /// [`global_register_name`](Node::global_register_name) does.
    ///
    /// # Errors
    /// As [`global_register_name`](Node::global_register_name), without
    /// `Refused`.
    pub async fn global_unregister_name(&self, name: impl Into<Term>) -> Result<(), GlobalError> {
        match self
            .global_rpc("unregister_name", vec![name.into()], REGISTER_TIMEOUT)
            .await?
        {
            (_, a) if a.is_atom("ok") => Ok(()),
            (node, answer) => Err(GlobalError::BadAnswer { node, answer }),
        }
    }
}
