//! `:global` names, as a client: resolve names registered with
//! `:global.register_name/2` on the cluster and send to them. Registering
//! a Rust process globally is refused, because it needs `global`'s locking
//! protocol, which erldist does not run.
//!
//! # How it works, and what it does not do
//!
//! `:global` keeps a replica of the name table on every node of a
//! fully connected cluster. erldist runs no `global_name_server` of its
//! own; it asks one of the connected BEAM nodes':
//!
//! - [`Node::global_whereis_name`] sends `{whereis, Name, {Pid, Tag}}` to
//!   `global_name_server` on a connected node (the message OTP 25's
//!   `global.erl` answers with `gen_server:reply(From, where(Name))`,
//!   waiting while a global lock is set), trying the connected nodes in
//!   turn and skipping those without a `global_name_server` (a monitor
//!   tells at once); the answer is that node's view, the same on every
//!   node of a synced cluster;
//! - [`Node::global_send`] resolves, then sends (`:global.send/2`);
//! - [`Node::global_registered_names`] calls
//!   `global:registered_names()` on a connected node over RPC.
//!
//! Taking part in `global` would mean answering its connect protocol
//! (`init_connect`, the lockers' `lock_set` exchange, `set_lock` and
//! `del_lock` calls, `exchange`, `resolved`, `new_nodes`, `in_sync`,
//! `lost_connection`) and its name registration (`register` and
//! `unregister` multicalls under the cluster-wide lock). erldist does not,
//! so [`Node::global_register_name`] and [`Node::global_unregister_name`]
//! return [`GlobalError::Unsupported`] rather than pretending.
//!
//! # A visible Rust node and `global:sync/0`
//!
//! When a *visible* Rust node connects to a BEAM node, that node's
//! `global` starts its connect protocol with it and waits for an answer
//! that never comes. Checked on OTP 25.2 (tests/global_real.rs):
//!
//! - `global:sync()` on the BEAM node blocks (it waits until every
//!   visible node is synced), for as long as the Rust node is connected;
//! - `global:register_name/2`, `whereis_name/1` and `send/2` keep working
//!   on the BEAM nodes (the Rust node never becomes a "known" node, so
//!   registrations do not wait for it);
//! - `global` does not make the other BEAM nodes connect to the Rust node
//!   (it would after a successful sync: `connect_all`).
//!
//! If anything in the cluster calls `global:sync()` (some libraries and
//! release scripts do), start the Rust node hidden
//! ([`NodeBuilder::hidden`](super::NodeBuilder::hidden)): BEAM's `global`
//! ignores hidden nodes, `sync` returns at once, and everything on this
//! page still works, since it only sends messages to `global_name_server`.

use std::time::Duration;

use super::gen_server::down_reason;
use super::rpc::RpcError;
use super::{Dest, MonitorTarget, Node};
use crate::term::{Atom, Pid, Term};

/// How long one BEAM node may take to answer a `whereis` (it waits while a
/// global lock is held, e.g. during a registration elsewhere).
pub const WHEREIS_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a `:global` operation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
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
    #[error("global:registered_names() on {node} failed: {source}")]
    Rpc {
        /// The node asked.
        node: Atom,
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
    /// Registering (or unregistering) a global name needs `global`'s
    /// cluster-wide locking protocol, which erldist does not run.
    #[error(
        "registering global names is not supported: erldist does not take part in \
         global's locking protocol (register the name on a BEAM node, or use :pg)"
    )]
    Unsupported,
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

    /// The names registered globally (`:global.registered_names/0`), from
    /// the first connected node that answers.
    ///
    /// # Errors
    /// [`GlobalError::NoGlobalNode`] if no connected node answers,
    /// [`GlobalError::Rpc`] if the call fails otherwise.
    pub async fn global_registered_names(&self) -> Result<Vec<Term>, GlobalError> {
        let mut last = None;
        for peer in self.global_candidates() {
            let res = self
                .rpc(peer, "global", "registered_names", vec![], WHEREIS_TIMEOUT)
                .await;
            match res {
                Ok(Term::List(names)) => return Ok(names),
                Ok(answer) => return Err(GlobalError::BadAnswer { node: peer, answer }),
                // Another Rust node, say: try the next one.
                Err(RpcError::Error { reason, .. }) if reason.is_atom("undef") => {}
                Err(RpcError::NotSup) | Err(RpcError::NoConnection) => {}
                Err(source) => last = Some(GlobalError::Rpc { node: peer, source }),
            }
        }
        Err(last.unwrap_or(GlobalError::NoGlobalNode))
    }

    /// Would register `pid` globally as `name` (`:global.register_name/2`);
    /// always refused: see the [module documentation](crate::node::global).
    ///
    /// # Errors
    /// Always [`GlobalError::Unsupported`].
    pub fn global_register_name(&self, name: impl Into<Term>, pid: Pid) -> Result<(), GlobalError> {
        let _ = (name.into(), pid);
        Err(GlobalError::Unsupported)
    }

    /// Would remove a global name (`:global.unregister_name/1`); always
    /// refused, as [`global_register_name`](Node::global_register_name).
    ///
    /// # Errors
    /// Always [`GlobalError::Unsupported`].
    pub fn global_unregister_name(&self, name: impl Into<Term>) -> Result<(), GlobalError> {
        let _ = name.into();
        Err(GlobalError::Unsupported)
    }
}
