//! Spawning across nodes (SPAWN_REQUEST / SPAWN_REPLY) and group leaders.
//!
//! Outgoing: [`Process::spawn_remote`] sends a spawn request for
//! `Module:Function(Args)` to a peer and waits for its reply; the link and
//! the monitor it asks for are set up when the reply comes, as OTP's
//! `spawn_request/5` does (the monitor's reference is the request id).
//!
//! Incoming: a peer's spawn request runs the Rust function registered
//! under the module and function name ([`Node::register_fn`]) as a new
//! Rust process; `erpc:execute_call/4` and `erpc:execute_cast/3` (what
//! `erpc:call`, `rpc:call` and `rpc:cast` spawn) are served the same way,
//! with the result encoded in the exit reason as `erpc` expects. A
//! function nobody registered runs nevertheless, and exits with `undef`,
//! as it would on a BEAM node.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use tokio::sync::{broadcast, oneshot};

use crate::connection::control::{ControlMessage, Mfa, SpawnFlags, SpawnResult};
use crate::term::{Atom, Pid, Reference, Term};

use super::net::NodeEvent;
use super::rpc::{Exception, RustFn};
use super::{Node, Process, Watched, Watcher};

/// Node-level state of spawning.
#[derive(Default)]
pub(crate) struct SpawnState {
    /// Our spawn requests waiting for their reply.
    pending: Mutex<HashMap<Reference, oneshot::Sender<(SpawnFlags, SpawnResult)>>>,
    /// Rust functions callable from other nodes, by module and function.
    pub(super) functions: RwLock<HashMap<(Atom, Atom), RustFn>>,
    /// The node's default group leader, once started.
    pub(super) default_gl: Mutex<Option<Pid>>,
}

impl SpawnState {
    fn pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Reference, oneshot::Sender<(SpawnFlags, SpawnResult)>>>
    {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Which group leader a process spawned on another node gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GroupLeaderOpt {
    /// The spawning process's group leader ([`Process::group_leader`]),
    /// as `spawn/4` on a BEAM node does.
    #[default]
    Inherit,
    /// The spawning process itself: its mailbox receives the
    /// `{io_request, ...}` messages (see [`super::io`]).
    Caller,
    /// A given process, e.g. a group leader started with
    /// [`Node::start_group_leader`].
    Pid(Pid),
}

/// Options of a remote spawn (`spawn_opt/5`'s, as far as a remote node
/// gets them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpawnOpts {
    /// Link the new process to the caller.
    pub link: bool,
    /// Monitor the new process; the reference is in [`Spawned::monitor`].
    pub monitor: bool,
    /// The new process's group leader.
    pub group_leader: GroupLeaderOpt,
    /// Further options, sent as they are (e.g. `{priority, high}`); the
    /// remote node answers `badopt` to those it does not know.
    pub extra: Vec<Term>,
}

impl SpawnOpts {
    /// No link, no monitor, the caller's group leader.
    pub fn new() -> SpawnOpts {
        SpawnOpts::default()
    }

    /// Links the new process to the caller (`spawn_link/4`).
    pub fn link(mut self) -> SpawnOpts {
        self.link = true;
        self
    }

    /// Monitors the new process (`spawn_monitor/4`).
    pub fn monitor(mut self) -> SpawnOpts {
        self.monitor = true;
        self
    }

    /// Sets the new process's group leader.
    pub fn group_leader(mut self, gl: GroupLeaderOpt) -> SpawnOpts {
        self.group_leader = gl;
        self
    }
}

/// A process spawned on another node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spawned {
    /// Its PID.
    pub pid: Pid,
    /// The monitor's reference, if a monitor was asked for: a
    /// `{'DOWN', Ref, process, Pid, Reason}` message arrives when it exits.
    pub monitor: Option<Reference>,
}

/// Why a remote spawn failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// The remote node refused, with this reason (`badopt`, `notsup`,
    /// `system_limit`, ...).
    #[error("the remote node refused the spawn: {0}")]
    Refused(Atom),
    /// The node could not be reached, or the connection went down before
    /// the reply.
    #[error("no connection to {0}")]
    NoConnection(Atom),
    /// The spawning process exited while waiting.
    #[error("the spawning process exited")]
    Exited,
}

/// Removes a pending spawn request when its waiter gives up.
struct PendingGuard<'a> {
    node: &'a Node,
    req_id: Reference,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.node.inner.spawn.pending().remove(&self.req_id);
    }
}

impl Process {
    /// Spawns `module:function(args)` on `node` (`spawn_opt/5` with a
    /// node): returns the new PID once the node has answered, or the
    /// error it gave.
    ///
    /// With `link`, an exit on either side reaches the other; with
    /// `monitor`, a `'DOWN'` message with [`Spawned::monitor`] arrives.
    /// The group leader of the new process is this process's by default,
    /// so what it prints comes here (see [`Node::start_group_leader`]).
    /// Spawning on this very node runs the Rust function registered under
    /// the module and function name ([`Node::register_fn`]).
    ///
    /// # Errors
    /// [`SpawnError`]: refused by the node, no connection, or this process
    /// exited meanwhile.
    pub async fn spawn_remote(
        &self,
        node: impl Into<Atom>,
        module: impl Into<Atom>,
        function: impl Into<Atom>,
        args: Vec<Term>,
        opts: SpawnOpts,
    ) -> Result<Spawned, SpawnError> {
        let gl = match opts.group_leader {
            GroupLeaderOpt::Inherit => self.group_leader(),
            GroupLeaderOpt::Caller => self.pid(),
            GroupLeaderOpt::Pid(p) => p,
        };
        let mut options = Vec::new();
        if opts.link {
            options.push(Term::atom("link"));
        }
        if opts.monitor {
            options.push(Term::atom("monitor"));
        }
        options.extend(opts.extra);
        let mfa = Mfa {
            module: module.into(),
            function: function.into(),
            arity: u8::try_from(args.len())
                .map_err(|_| SpawnError::Refused(Atom::from("badarg")))?,
        };
        let (req_id, pid) = self
            .node
            .spawn_request(self.pid(), node.into(), gl, mfa, options, args)
            .await?;
        Ok(Spawned {
            pid,
            monitor: opts.monitor.then_some(req_id),
        })
    }
}

impl Node {
    /// Sends a spawn request for `from` and waits for the reply; the link
    /// and monitor are set up by [`Node::spawn_reply_in`].
    pub(crate) async fn spawn_request(
        &self,
        from: Pid,
        peer: Atom,
        group_leader: Pid,
        mfa: Mfa,
        options: Vec<Term>,
        args: Vec<Term>,
    ) -> Result<(Reference, Pid), SpawnError> {
        if peer == self.name() {
            return self.spawn_request_local(from, group_leader, &mfa, &options, args);
        }
        let net = self.net().ok_or(SpawnError::NoConnection(peer))?;
        let mut events = net.events.subscribe();
        self.connect(peer.as_str())
            .await
            .map_err(|_| SpawnError::NoConnection(peer))?;
        // A peer that cannot take spawn requests (an old or C node): notsup
        // at once, as OTP answers, instead of a request it would drop.
        if net
            .peer_flags(peer)
            .is_some_and(|f| !f.contains(crate::flags::DistFlags::SPAWN))
        {
            return Err(SpawnError::Refused(Atom::from("notsup")));
        }
        let req_id = self.make_ref();
        let (tx, mut rx) = oneshot::channel();
        self.inner.spawn.pending().insert(req_id, tx);
        let _guard = PendingGuard { node: self, req_id };
        let request = ControlMessage::SpawnRequest {
            req_id,
            from,
            group_leader,
            mfa,
            options: options.clone(),
        };
        self.remote(peer, request, Some(Cow::Owned(Term::List(args))));
        let reply = loop {
            tokio::select! {
                r = &mut rx => break r.map_err(|_| SpawnError::Exited)?,
                ev = events.recv() => match ev {
                    Ok(NodeEvent::Down(n, _)) if n == peer => {
                        // The reply may have come just before.
                        match rx.try_recv() {
                            Ok(r) => break r,
                            Err(_) => return Err(SpawnError::NoConnection(peer)),
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(SpawnError::NoConnection(peer))
                    }
                    _ => {}
                },
            }
        };
        match reply {
            (_, SpawnResult::Pid(pid)) => {
                if !self.is_alive(from) {
                    return Err(SpawnError::Exited);
                }
                Ok((req_id, pid))
            }
            (_, SpawnResult::Error(e)) if e.as_str() == "noconnection" => {
                Err(SpawnError::NoConnection(peer))
            }
            (_, SpawnResult::Error(e)) => Err(SpawnError::Refused(e)),
        }
    }

    /// A spawn request to this very node: served here, as OTP serves
    /// `spawn_request(node(), ...)`.
    fn spawn_request_local(
        &self,
        from: Pid,
        group_leader: Pid,
        mfa: &Mfa,
        options: &[Term],
        args: Vec<Term>,
    ) -> Result<(Reference, Pid), SpawnError> {
        let (mut link, mut monitor) = (false, false);
        for o in options {
            if o.is_atom("link") {
                link = true;
            } else if o.is_atom("monitor") {
                monitor = true;
            } else if !known_spawn_option(o) {
                return Err(SpawnError::Refused(Atom::from("badopt")));
            }
        }
        let caller = self.lookup(from).ok_or(SpawnError::Exited)?;
        let req_id = self.make_ref();
        let job = self.spawn_job(mfa, args);
        let (p, pid) = self.new_process(false);
        {
            let mut st = p.entry.state();
            st.group_leader = Some(group_leader);
            if link {
                st.rel().links.insert(from);
            }
            if monitor {
                st.rel().watchers.insert(
                    req_id,
                    Watcher {
                        pid: from,
                        by_name: None,
                    },
                );
            }
        }
        let caller_alive = {
            let mut st = caller.state();
            if st.exited.is_none() {
                if link {
                    st.rel().links.insert(pid);
                }
                if monitor {
                    st.rel().watching.insert(req_id, Watched::Pid(pid));
                }
                true
            } else {
                false
            }
        };
        if !caller_alive {
            self.process_exit(&p.entry, Term::atom("abandoned"));
            return Err(SpawnError::Exited);
        }
        self.start_task(p, move |p| job.run(p));
        Ok((req_id, pid))
    }

    /// A peer asks this node to spawn `mfa` with `args` for `from`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spawn_request_in(
        &self,
        peer: Atom,
        req_id: Reference,
        from: Pid,
        group_leader: Pid,
        mfa: Mfa,
        options: Vec<Term>,
        args: Term,
    ) {
        let refuse = |reason: &str| {
            let reply = ControlMessage::SpawnReply {
                req_id,
                to: from,
                flags: SpawnFlags::NONE,
                result: SpawnResult::Error(Atom::from(reason)),
            };
            self.remote(peer, reply, None);
        };
        let mut flags = SpawnFlags::NONE;
        for o in &options {
            if o.is_atom("link") {
                flags = flags | SpawnFlags::LINK;
            } else if o.is_atom("monitor") {
                flags = flags | SpawnFlags::MONITOR;
            } else if !known_spawn_option(o) {
                return refuse("badopt");
            }
        }
        let Some(args) = args.list_elems().map(|a| a.into_owned()) else {
            return refuse("badarg");
        };
        let job = self.spawn_job(&mfa, args);
        let (p, pid) = self.new_process(false);
        {
            let mut st = p.entry.state();
            st.group_leader = Some(group_leader);
            if flags.contains(SpawnFlags::LINK) {
                st.rel().links.insert(from);
            }
            if flags.contains(SpawnFlags::MONITOR) {
                st.rel().watchers.insert(
                    req_id,
                    Watcher {
                        pid: from,
                        by_name: None,
                    },
                );
            }
        }
        let reply = ControlMessage::SpawnReply {
            req_id,
            to: from,
            flags,
            result: SpawnResult::Pid(pid),
        };
        // The reply goes out before anything the new process does.
        self.remote(peer, reply, None);
        self.start_task(p, move |p| job.run(p));
    }

    /// What a spawned process runs, from its MFA and arguments.
    fn spawn_job(&self, mfa: &Mfa, args: Vec<Term>) -> Job {
        let lookup = |m: Atom, f: Atom| {
            self.inner
                .spawn
                .functions
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&(m, f))
                .cloned()
        };
        let erpc = mfa.module.as_str() == "erpc";
        match (erpc, mfa.function.as_str(), args.as_slice()) {
            (true, "execute_call", [res, Term::Atom(m), Term::Atom(f), a]) => {
                if let Some(a) = a.list_elems() {
                    return Job::Call {
                        res: res.clone(),
                        m: *m,
                        f: *f,
                        args: a.into_owned(),
                        fun: lookup(*m, *f),
                    };
                }
            }
            (true, "execute_cast", [Term::Atom(m), Term::Atom(f), a]) => {
                if let Some(a) = a.list_elems() {
                    return Job::Direct {
                        m: *m,
                        f: *f,
                        args: a.into_owned(),
                        fun: lookup(*m, *f),
                    };
                }
            }
            _ => {}
        }
        Job::Direct {
            m: mfa.module,
            f: mfa.function,
            fun: lookup(mfa.module, mfa.function),
            args,
        }
    }

    /// A peer answers a spawn request of ours: set up the link and the
    /// monitor it reports, then wake the waiter.
    pub(crate) fn spawn_reply_in(
        &self,
        req_id: Reference,
        to: Pid,
        flags: SpawnFlags,
        result: SpawnResult,
    ) {
        let waiter = self.inner.spawn.pending().remove(&req_id);
        let SpawnResult::Pid(pid) = result else {
            if let Some(w) = waiter {
                let _ = w.send((flags, result));
            }
            return;
        };
        let entry = self.lookup(to);
        let taken = match (&waiter, &entry) {
            (Some(_), Some(entry)) => {
                let mut st = entry.state();
                if st.exited.is_none() {
                    if flags.contains(SpawnFlags::LINK) {
                        st.rel().links.insert(pid);
                    }
                    if flags.contains(SpawnFlags::MONITOR) {
                        st.rel().watching.insert(req_id, Watched::Pid(pid));
                    }
                    true
                } else {
                    false
                }
            }
            _ => false,
        };
        let delivered = taken && waiter.is_some_and(|w| w.send((flags, result)).is_ok());
        if !delivered {
            // Nobody wants the process any more: abandon it, as
            // `spawn_request_abandon/1` does.
            if let Some(entry) = entry {
                let mut st = entry.state();
                st.rel().links.remove(&pid);
                st.rel().watching.remove(&req_id);
            }
            if flags.contains(SpawnFlags::MONITOR) {
                let demonitor = ControlMessage::DemonitorP {
                    from: to,
                    to: crate::connection::control::ProcRef::Pid(pid),
                    reference: req_id,
                };
                self.remote(pid.node, demonitor, None);
            }
            let kill = ControlMessage::PayloadExit2 { from: to, to: pid };
            self.remote(pid.node, kill, Some(Cow::Owned(Term::atom("abandoned"))));
        }
    }

    /// A peer sets the group leader of one of our processes.
    pub(crate) fn group_leader_in(&self, leader: Pid, target: Pid) {
        if let Some(entry) = self.lookup(target) {
            entry.state().group_leader = Some(leader);
        }
    }
}

/// Options OTP's `spawn_opt` accepts that mean nothing to a Rust process.
fn known_spawn_option(o: &Term) -> bool {
    let Some([Term::Atom(k), _]) = o.as_tuple() else {
        return false;
    };
    matches!(
        k.as_str(),
        "monitor"
            | "priority"
            | "fullsweep_after"
            | "min_heap_size"
            | "min_bin_vheap_size"
            | "max_heap_size"
            | "message_queue_data"
            | "async_dist"
    )
}

/// What a process spawned for a peer does.
enum Job {
    /// `erpc:execute_call(Res, M, F, A)`: the result goes in the exit
    /// reason.
    Call {
        res: Term,
        m: Atom,
        f: Atom,
        args: Vec<Term>,
        fun: Option<RustFn>,
    },
    /// `M:F(A...)` as a process: exits `normal` when it returns.
    Direct {
        m: Atom,
        f: Atom,
        args: Vec<Term>,
        fun: Option<RustFn>,
    },
}

impl Job {
    async fn run(self, p: Process) -> Result<(), Term> {
        match self {
            Job::Call {
                res,
                m,
                f,
                args,
                fun,
            } => {
                let outcome = call(fun, p, m, f, &args).await;
                Err(match outcome {
                    Ok(v) => Term::Tuple(vec![res, Term::atom("return"), v]),
                    Err(Exception::Throw(t)) => Term::Tuple(vec![res, Term::atom("throw"), t]),
                    Err(Exception::Exit(r)) => Term::Tuple(vec![res, Term::atom("exit"), r]),
                    Err(Exception::Error { reason, stack }) => Term::Tuple(vec![
                        res,
                        Term::atom("error"),
                        reason,
                        stack.unwrap_or_else(|| super::rpc::stack(m, f, args.len())),
                    ]),
                })
            }
            Job::Direct { m, f, args, fun } => {
                let outcome = call(fun, p, m, f, &args).await;
                match outcome {
                    Ok(_) => Ok(()),
                    Err(e) => Err(e.exit_reason(m, f, args.len())),
                }
            }
        }
    }
}

/// Runs a registered function (or raises `undef` if there is none); a
/// panic becomes `error({panic, Message})`, as a crash in Erlang code
/// would be an error.
async fn call(
    fun: Option<RustFn>,
    p: Process,
    m: Atom,
    f: Atom,
    args: &[Term],
) -> Result<Term, Exception> {
    use futures_util::FutureExt;
    let Some(fun) = fun else {
        return Err(Exception::undef(m, f, args));
    };
    match std::panic::AssertUnwindSafe(fun(p, args.to_vec()))
        .catch_unwind()
        .await
    {
        Ok(r) => r,
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            Err(Exception::error(Term::Tuple(vec![
                Term::atom("panic"),
                Term::from(text),
            ])))
        }
    }
}
