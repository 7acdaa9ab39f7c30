//! Remote calls both ways, as `erpc` does them.
//!
//! Calling a BEAM node: [`Node::rpc`] spawns `erpc:execute_call/4` there
//! with a monitor (exactly what `erpc:call/5` does) and reads the result
//! from the `'DOWN'` reason: a value, or an exception of a class, or why
//! the call could not be made ([`RpcError`]).
//!
//! Being called: [`Node::register_fn`] makes a Rust function callable as
//! `Module:Function(Args...)` from other nodes, by `erpc:call/4`,
//! `rpc:call/4`, `rpc:cast/4` and `spawn/4` alike.
//!
//! ```no_run
//! # async fn f(node: erldist::Node) {
//! use erldist::{node::Exception, Term};
//! node.register_fn("Elixir.Rusty", "add", |args: Vec<Term>| async move {
//!     match args.as_slice() {
//!         [Term::Int(a), Term::Int(b)] => Ok(Term::from(a + b)),
//!         _ => Err(Exception::error(Term::atom("badarg"))),
//!     }
//! });
//! // On the BEAM node: :erpc.call(:"rust@localhost", Rusty, :add, [1, 2]) == 3
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::connection::control::Mfa;
use crate::term::{Atom, Term};

use super::spawn::SpawnError;
use super::{Node, Process};

/// The future a registered function returns, boxed.
pub(crate) type BoxFuture = Pin<Box<dyn Future<Output = Result<Term, Exception>> + Send>>;

/// A registered function: runs in the process spawned for the call.
pub(crate) type RustFn = Arc<dyn Fn(Process, Vec<Term>) -> BoxFuture + Send + Sync>;

/// An Erlang exception, raised by a Rust function called from another
/// node: the caller sees it with its class and reason, as if an Erlang
/// function had raised it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Exception {
    /// `error(Reason)`; the stack defaults to `[{Module, Function, Arity, []}]`.
    #[error("error: {reason}")]
    Error {
        /// The reason.
        reason: Term,
        /// The stack trace to report, if not the default.
        stack: Option<Term>,
    },
    /// `exit(Reason)`.
    #[error("exit: {0}")]
    Exit(Term),
    /// `throw(Value)`.
    #[error("throw: {0}")]
    Throw(Term),
}

impl Exception {
    /// `error(Reason)`.
    pub fn error(reason: impl Into<Term>) -> Exception {
        Exception::Error {
            reason: reason.into(),
            stack: None,
        }
    }

    /// `exit(Reason)`.
    pub fn exit(reason: impl Into<Term>) -> Exception {
        Exception::Exit(reason.into())
    }

    /// `throw(Value)`.
    pub fn throw(value: impl Into<Term>) -> Exception {
        Exception::Throw(value.into())
    }

    /// The `undef` error of calling a function nobody registered, with
    /// the stack OTP reports: `[{M, F, Args, []}]`.
    pub(crate) fn undef(m: Atom, f: Atom, args: &[Term]) -> Exception {
        Exception::Error {
            reason: Term::atom("undef"),
            stack: Some(Term::List(vec![Term::Tuple(vec![
                Term::Atom(m),
                Term::Atom(f),
                Term::List(args.to_vec()),
                Term::NIL,
            ])])),
        }
    }

    /// The exit reason of a process ending with this exception, as an
    /// Erlang process's: `{Reason, Stack}` for errors,
    /// `{{nocatch, Value}, Stack}` for throws, the reason for exits.
    pub(crate) fn exit_reason(self, m: Atom, f: Atom, arity: usize) -> Term {
        match self {
            Exception::Exit(r) => r,
            Exception::Error { reason, stack } => {
                Term::Tuple(vec![reason, stack.unwrap_or_else(|| stack_of(m, f, arity))])
            }
            Exception::Throw(t) => Term::Tuple(vec![
                Term::Tuple(vec![Term::atom("nocatch"), t]),
                stack_of(m, f, arity),
            ]),
        }
    }
}

/// `[{M, F, Arity, []}]`.
pub(crate) fn stack(m: Atom, f: Atom, arity: usize) -> Term {
    stack_of(m, f, arity)
}

fn stack_of(m: Atom, f: Atom, arity: usize) -> Term {
    Term::List(vec![Term::Tuple(vec![
        Term::Atom(m),
        Term::Atom(f),
        Term::from(arity as i64),
        Term::NIL,
    ])])
}

/// Why a remote call did not return a value. The variants follow what
/// `erpc:call/5` raises; [`RpcError::to_badrpc`] gives what `rpc:call/5`
/// returns instead.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The function raised an error (`error({exception, Reason, Stack})`
    /// from `erpc`).
    #[error("error: {reason}")]
    Error {
        /// The reason (`undef`, `badarith`, ...).
        reason: Term,
        /// The stack trace the remote node reported.
        stack: Term,
    },
    /// The function exited (`exit({exception, Reason})`).
    #[error("exit: {0}")]
    Exit(Term),
    /// The function threw a value.
    #[error("throw: {0}")]
    Throw(Term),
    /// The process running the call ended otherwise (killed, say):
    /// `exit({signal, Reason})`.
    #[error("the call's process ended: {0}")]
    Signal(Term),
    /// `erpc` refused the arguments (`error({erpc, Reason})`).
    #[error("erpc error: {0}")]
    Erpc(Term),
    /// No answer in time (`{erpc, timeout}`); the call is abandoned.
    #[error("timeout")]
    Timeout,
    /// The node could not be reached, or went down (`{erpc, noconnection}`).
    #[error("no connection")]
    NoConnection,
    /// The node does not support spawning (`{erpc, notsup}`).
    #[error("not supported by the remote node")]
    NotSup,
    /// The node refused to spawn the call (`{erpc, Reason}`).
    #[error("spawn refused: {0:?}")]
    SpawnRefused(Atom),
}

fn tuple(elems: Vec<Term>) -> Term {
    Term::Tuple(elems)
}

impl RpcError {
    /// What `rpc:call/5` returns for this outcome: `{badrpc, ...}`, or the
    /// thrown value (rpc returns throws as values).
    pub fn to_badrpc(&self) -> Term {
        let badrpc = |r: Term| tuple(vec![Term::atom("badrpc"), r]);
        let exit = |r: Term| badrpc(tuple(vec![Term::atom("EXIT"), r]));
        match self {
            RpcError::Error { reason, stack } => exit(tuple(vec![reason.clone(), stack.clone()])),
            RpcError::Exit(r) | RpcError::Signal(r) => exit(r.clone()),
            RpcError::Throw(t) => match t.as_tuple() {
                Some([tag, _]) if tag.is_atom("EXIT") => badrpc(t.clone()),
                _ => t.clone(),
            },
            RpcError::Erpc(r) if r.is_atom("noconnection") => badrpc(Term::atom("nodedown")),
            RpcError::Erpc(r) if r.is_atom("timeout") || r.is_atom("notsup") => badrpc(r.clone()),
            RpcError::Erpc(r) => exit(r.clone()),
            RpcError::Timeout => badrpc(Term::atom("timeout")),
            RpcError::NoConnection => badrpc(Term::atom("nodedown")),
            RpcError::NotSup => badrpc(Term::atom("notsup")),
            RpcError::SpawnRefused(a) => exit(Term::Atom(*a)),
        }
    }
}

impl Node {
    /// Makes `function` callable as `module:function(Args...)` from other
    /// nodes (`erpc:call`, `rpc:call`, `rpc:cast`, `spawn/4`, ...), with any
    /// number of arguments. For Elixir modules, give the full atom:
    /// `"Elixir.Rusty"`. A later registration replaces an earlier one.
    ///
    /// The function's `Err` is raised in the caller as an exception of its
    /// class; spawned as a process (`spawn/4`), it is the exit reason.
    pub fn register_fn<F, Fut>(&self, module: impl Into<Atom>, function: impl Into<Atom>, f: F)
    where
        F: Fn(Vec<Term>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Term, Exception>> + Send + 'static,
    {
        let f: RustFn = Arc::new(move |_p, args| Box::pin(f(args)));
        self.insert_fn(module.into(), function.into(), f);
    }

    /// As [`Node::register_fn`], for a function that needs its process:
    /// to receive messages (a process spawned by `spawn/4` that waits for
    /// `{hi, Pid}`, say), link, or print to its group leader.
    pub fn register_process_fn<F, Fut>(
        &self,
        module: impl Into<Atom>,
        function: impl Into<Atom>,
        f: F,
    ) where
        F: Fn(Process, Vec<Term>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Term, Exception>> + Send + 'static,
    {
        let f: RustFn = Arc::new(move |p, args| Box::pin(f(p, args)));
        self.insert_fn(module.into(), function.into(), f);
    }

    /// Removes a registered function; returns whether there was one.
    pub fn unregister_fn(&self, module: impl Into<Atom>, function: impl Into<Atom>) -> bool {
        self.inner
            .spawn
            .functions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(module.into(), function.into()))
            .is_some()
    }

    fn insert_fn(&self, m: Atom, f: Atom, fun: RustFn) {
        self.inner
            .spawn
            .functions
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert((m, f), fun);
    }

    /// Calls `module:function(args...)` on `peer` and waits at most
    /// `timeout` for the result, with `erpc:call/5`'s semantics: the call
    /// runs in a new process on `peer` whose group leader is this node's
    /// default one ([`Node::default_group_leader`]).
    ///
    /// # Errors
    /// [`RpcError`]: the exception the function raised (class, reason,
    /// stack), a timeout (the call is abandoned), or why it could not be
    /// made.
    pub async fn rpc(
        &self,
        peer: impl Into<Atom>,
        module: impl Into<Atom>,
        function: impl Into<Atom>,
        args: Vec<Term>,
        timeout: Duration,
    ) -> Result<Term, RpcError> {
        let gl = self.default_group_leader();
        self.rpc_with_group_leader(peer, module, function, args, timeout, gl)
            .await
    }

    /// As [`Node::rpc`], with the group leader of the process running the
    /// call given: what it prints goes there.
    ///
    /// # Errors
    /// As [`Node::rpc`].
    pub async fn rpc_with_group_leader(
        &self,
        peer: impl Into<Atom>,
        module: impl Into<Atom>,
        function: impl Into<Atom>,
        args: Vec<Term>,
        timeout: Duration,
        group_leader: crate::term::Pid,
    ) -> Result<Term, RpcError> {
        let peer = peer.into();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut me = self.process();
        let res = Term::Ref(Box::new(self.make_ref()));
        let mfa = Mfa {
            module: Atom::from("erpc"),
            function: Atom::from("execute_call"),
            arity: 4,
        };
        let args = vec![
            res.clone(),
            Term::Atom(module.into()),
            Term::Atom(function.into()),
            Term::List(args),
        ];
        let spawn = self.spawn_request(
            me.pid(),
            peer,
            group_leader,
            mfa,
            vec![Term::atom("monitor")],
            args,
        );
        let (req_id, _pid) = match tokio::time::timeout_at(deadline, spawn).await {
            Err(_) => return Err(RpcError::Timeout),
            Ok(Err(SpawnError::NoConnection(_) | SpawnError::Exited)) => {
                return Err(RpcError::NoConnection)
            }
            Ok(Err(SpawnError::Refused(a))) if a.as_str() == "notsup" => {
                return Err(RpcError::NotSup)
            }
            Ok(Err(SpawnError::Refused(a))) => return Err(RpcError::SpawnRefused(a)),
            Ok(Ok(r)) => r,
        };
        let is_down = |m: &Term| {
            matches!(m.as_tuple(), Some([tag, Term::Ref(r), ..])
                if tag.is_atom("DOWN") && **r == req_id)
        };
        let down = match tokio::time::timeout_at(deadline, me.recv_match(is_down)).await {
            Err(_) => {
                me.demonitor(&req_id);
                return Err(RpcError::Timeout);
            }
            Ok(Err(_)) => return Err(RpcError::NoConnection),
            Ok(Ok(m)) => m,
        };
        let reason = match down.as_tuple() {
            Some([_, _, _, _, reason]) => reason.clone(),
            _ => Term::atom("badarg"),
        };
        Err(match reason.as_tuple() {
            Some([r, tag, v]) if r.exact_eq(&res) => match tag.as_atom().map(|a| a.as_str()) {
                Some("return") => return Ok(v.clone()),
                Some("throw") => RpcError::Throw(v.clone()),
                Some("exit") => RpcError::Exit(v.clone()),
                Some("error") => match v.as_tuple() {
                    Some([e, r]) if e.is_atom("erpc") => RpcError::Erpc(r.clone()),
                    _ => RpcError::Signal(reason.clone()),
                },
                _ => RpcError::Signal(reason.clone()),
            },
            Some([r, tag, reason, stack]) if r.exact_eq(&res) && tag.is_atom("error") => {
                RpcError::Error {
                    reason: reason.clone(),
                    stack: stack.clone(),
                }
            }
            _ if reason.is_atom("noconnection") => RpcError::NoConnection,
            _ => RpcError::Signal(reason),
        })
    }
}
