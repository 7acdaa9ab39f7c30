//! `gen_server` both ways: calling any `GenServer` (Erlang or Elixir) from
//! a Rust process, and writing a registered Rust server that Erlang and
//! Elixir call with `gen_server:call/3` / `GenServer.call/3` and `cast`.
//!
//! # The wire protocol (OTP 24 and later)
//!
//! A call, as `gen:do_call/4` makes it: the caller monitors the server
//! (`MONITOR_P`, by pid or by `{Name, Node}`), sends
//! `{'$gen_call', {CallerPid, [alias | Alias]}, Request}` and waits for
//! `{[alias | Alias], Reply}` (the server answers to the alias with
//! `ALIAS_SEND`) or for the monitor's `'DOWN'`. OTP uses one reference as
//! both monitor and alias; erldist uses two, which the server cannot tell
//! apart. After the reply, or on timeout, the alias is deactivated, so a
//! late reply is dropped instead of reaching the caller's mailbox.
//!
//! A server answers the tag it was given, as `gen:reply/2` does: to the
//! alias in `[alias | A]` (or `[[alias | A] | _]`), otherwise to the
//! caller's pid (the pre-OTP 24 plain reference tag).
//!
//! A cast is `{'$gen_cast', Request}`, sent and forgotten.
//!
//! ```
//! # #[tokio::main] async fn main() {
//! use erldist::node::gen_server::{self, CallReply, GenServer};
//! use erldist::{term, Node, Process, Term};
//!
//! /// A counter: `{add, N}` calls answer the new total.
//! struct Counter(i64);
//!
//! impl GenServer for Counter {
//!     async fn handle_call(&mut self, req: Term, _from: gen_server::Caller, _p: &mut Process) -> CallReply {
//!         match <(Term, i64)>::try_from(req) {
//!             Ok((tag, n)) if tag.is_atom("add") => {
//!                 self.0 += n;
//!                 CallReply::Reply(Term::from(self.0))
//!             }
//!             _ => CallReply::Reply(term!({error, badarg})),
//!         }
//!     }
//! }
//!
//! let node = Node::local("doc@localhost");
//! gen_server::start(&node, Some("counter"), Counter(0)).unwrap();
//! let mut me = node.process();
//! assert_eq!(me.call("counter", term!({add, 2})).await.unwrap(), term!(2));
//! assert_eq!(me.call("counter", term!({add, 3})).await.unwrap(), term!(5));
//! // An unknown name fails at once with noproc, not after a timeout.
//! assert!(matches!(me.call("nobody", term!(hi)).await, Err(gen_server::CallError::NoProc)));
//! # }
//! ```

use std::future::Future;
use std::time::Duration;

use super::{Dest, MonitorTarget, Node, Process, RegisterError, Signal};
use crate::term::{Atom, Pid, Reference, Term};

/// The default call timeout, as `gen_server:call/2`'s: 5 seconds.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(5000);

/// Why a call failed. Each variant stands for the exit reason an Erlang
/// caller would get ([`CallError::reason`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No process has the pid or name (`noproc`), reported at once.
    #[error("no such process (noproc)")]
    NoProc,
    /// The server's node is unreachable or went down during the call
    /// (`{nodedown, Node}`).
    #[error("node {0} is down (nodedown)")]
    NodeDown(Atom),
    /// No reply in time (`timeout`). A late reply is dropped.
    #[error("no reply in time (timeout)")]
    Timeout,
    /// The server exited during the call with this reason.
    #[error("the server exited: {0}")]
    Exit(Term),
    /// The calling process itself exited (it was killed while waiting).
    #[error("the calling process exited: {0}")]
    CallerExited(Term),
}

impl CallError {
    /// The exit reason an Erlang caller would see (the first element of
    /// `{Reason, {gen_server, call, Args}}`): `noproc`, `{nodedown, Node}`,
    /// `timeout`, or the server's exit reason.
    pub fn reason(&self) -> Term {
        match self {
            CallError::NoProc => Term::atom("noproc"),
            CallError::NodeDown(n) => Term::Tuple(vec![Term::atom("nodedown"), Term::Atom(*n)]),
            CallError::Timeout => Term::atom("timeout"),
            CallError::Exit(r) | CallError::CallerExited(r) => r.clone(),
        }
    }

    /// From a `'DOWN'` reason of the monitor on the server.
    fn from_down(reason: Term, target: &MonitorTarget) -> CallError {
        if reason.is_atom("noproc") {
            CallError::NoProc
        } else if reason.is_atom("noconnection") {
            let node = match target {
                MonitorTarget::Pid(p) => p.node,
                MonitorTarget::Remote(_, n) => *n,
                MonitorTarget::Name(_) => Atom::from("nonode@nohost"),
            };
            CallError::NodeDown(node)
        } else {
            CallError::Exit(reason)
        }
    }
}

impl From<CallError> for Term {
    fn from(e: CallError) -> Term {
        e.reason()
    }
}

impl From<(&str, &str)> for MonitorTarget {
    fn from((name, node): (&str, &str)) -> MonitorTarget {
        MonitorTarget::Remote(Atom::from(name), Atom::from(node))
    }
}

impl From<&Pid> for MonitorTarget {
    fn from(p: &Pid) -> MonitorTarget {
        MonitorTarget::Pid(*p)
    }
}

fn dest_of(target: &MonitorTarget) -> Dest {
    match target {
        MonitorTarget::Pid(p) => Dest::Pid(*p),
        MonitorTarget::Name(n) => Dest::Name(*n),
        MonitorTarget::Remote(n, node) => Dest::Remote(*n, *node),
    }
}

fn alias_tag(alias: Reference) -> Term {
    Term::list_with_tail(vec![Term::atom("alias")], Term::Ref(Box::new(alias)))
}

/// Whether `msg` is `{'DOWN', r, process, _, _}`; gives the reason.
pub(crate) fn down_reason(msg: &Term, r: &Reference) -> Option<Term> {
    match msg.as_tuple()? {
        [label, Term::Ref(got), kind, _, reason]
            if label.is_atom("DOWN") && kind.is_atom("process") && **got == *r =>
        {
            Some(reason.clone())
        }
        _ => None,
    }
}

/// `{Tag, Reply}` with exactly this tag.
fn tagged_reply(msg: &Term, tag: &Term) -> bool {
    matches!(msg.as_tuple(), Some([t, _]) if t == tag)
}

impl Process {
    /// Calls a `gen_server` (`GenServer.call/2`) with the default 5 s
    /// timeout; see [`call_timeout`](Process::call_timeout).
    ///
    /// # Errors
    /// As [`call_timeout`](Process::call_timeout).
    pub async fn call(
        &mut self,
        server: impl Into<MonitorTarget>,
        request: impl Into<Term>,
    ) -> Result<Term, CallError> {
        self.call_timeout(server, request, Some(DEFAULT_CALL_TIMEOUT))
            .await
    }

    /// Calls a `gen_server` (`GenServer.call/3`): a pid, a name registered
    /// on this node, or `(name, node)`; `None` waits forever
    /// (`:infinity`). Other messages stay in the mailbox.
    ///
    /// # Errors
    /// [`CallError::NoProc`] at once when nothing has the name or pid,
    /// [`CallError::NodeDown`] when the node cannot be reached or goes
    /// down, [`CallError::Exit`] when the server dies during the call,
    /// [`CallError::Timeout`], and [`CallError::CallerExited`] if this
    /// process is killed while it waits.
    pub async fn call_timeout(
        &mut self,
        server: impl Into<MonitorTarget>,
        request: impl Into<Term>,
        timeout: Option<Duration>,
    ) -> Result<Term, CallError> {
        let target = server.into();
        let mref = self.monitor(target.clone());
        let alias = self.alias();
        let tag = alias_tag(alias);
        let from = Term::Tuple(vec![Term::Pid(self.pid()), tag.clone()]);
        self.send(
            dest_of(&target),
            Term::Tuple(vec![Term::atom("$gen_call"), from, request.into()]),
        );
        let pred = |m: &Term| tagged_reply(m, &tag) || down_reason(m, &mref).is_some();
        let got = match timeout {
            Some(t) => self.recv_match_timeout(t, pred).await,
            None => self.recv_match(pred).await.map(Some),
        };
        self.unalias(&alias);
        self.demonitor(&mref);
        let msg = match got {
            Ok(Some(m)) => m,
            Ok(None) => {
                // As gen does: a reply that raced the timeout still counts.
                self.flush_down(&mref);
                return match self.take_matching(|m| tagged_reply(m, &tag)) {
                    Some(m) => Ok(second(m)),
                    None => Err(CallError::Timeout),
                };
            }
            Err(e) => return Err(CallError::CallerExited(e.reason)),
        };
        if let Some(reason) = down_reason(&msg, &mref) {
            return Err(CallError::from_down(reason, &target));
        }
        self.flush_down(&mref);
        Ok(second(msg))
    }

    /// Casts to a `gen_server` (`GenServer.cast/2`): sends
    /// `{'$gen_cast', Request}` and returns at once, whether or not the
    /// server exists.
    pub fn cast(&self, server: impl Into<MonitorTarget>, request: impl Into<Term>) {
        let target = server.into();
        self.send(
            dest_of(&target),
            Term::Tuple(vec![Term::atom("$gen_cast"), request.into()]),
        );
    }

    /// Removes a `'DOWN'` for `mref` from the mailbox, if one is there
    /// (`demonitor(Ref, [flush])`).
    pub(crate) fn flush_down(&mut self, mref: &Reference) {
        let _ = self.take_matching(|m| down_reason(m, mref).is_some());
    }

    /// Takes the first message for which `pred` holds among those already
    /// in the mailbox, without waiting.
    pub(crate) fn take_matching(&mut self, mut pred: impl FnMut(&Term) -> bool) -> Option<Term> {
        if !self.closed {
            loop {
                match self.entry.mailbox.try_pop() {
                    Some(Signal::Message(m)) => self.saved.push_back(m),
                    Some(Signal::Exited) => {
                        self.closed = true;
                        break;
                    }
                    None => break,
                }
            }
        }
        let i = self.saved.iter().position(&mut pred)?;
        self.saved.remove(i)
    }
}

/// The second element of a 2-tuple (the reply in `{Tag, Reply}`).
fn second(msg: Term) -> Term {
    match msg {
        Term::Tuple(mut t) if t.len() == 2 => t.pop().unwrap_or(Term::NIL),
        other => other,
    }
}

/// Who made a call: the caller's pid and the tag to answer. Keep it to
/// answer later with [`reply`] (after returning [`CallReply::NoReply`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Caller {
    /// The calling process.
    pub pid: Pid,
    /// The tag of the call: `[alias | Ref]` from OTP 24 on, a plain
    /// reference before.
    pub tag: Term,
}

impl Caller {
    /// Parses `{'$gen_call', {From, Tag}, Request}`.
    pub fn parse_call(msg: &Term) -> Option<(Caller, Term)> {
        let (tag, pid, request) = super::net::gen_call(msg)?;
        Some((Caller { pid, tag }, request))
    }

    /// The alias the reply goes to, if the tag carries one.
    pub fn alias(&self) -> Option<Reference> {
        fn alias_of(t: &Term) -> Option<Reference> {
            match t {
                Term::ImproperList(l) => match (l.elems.as_slice(), &l.tail) {
                    ([a], Term::Ref(r)) if a.is_atom("alias") => Some(**r),
                    _ => None,
                },
                _ => None,
            }
        }
        alias_of(&self.tag).or_else(|| match &self.tag {
            // [[alias | A] | _]
            Term::ImproperList(l) => l.elems.first().and_then(alias_of),
            Term::List(l) => l.first().and_then(alias_of),
            _ => None,
        })
    }
}

/// Answers a call as `gen:reply/2` does: `{Tag, Reply}` to the alias in
/// the tag (`ALIAS_SEND`), or to the caller's pid if the tag has none.
/// `p` is the replying process (the sender the caller's node sees).
pub fn reply(p: &Process, to: &Caller, reply: impl Into<Term>) {
    let msg = Term::Tuple(vec![to.tag.clone(), reply.into()]);
    match to.alias() {
        Some(a) => p.send(Dest::Alias(a), msg),
        None => p.send(Dest::Pid(to.pid), msg),
    }
}

/// What [`GenServer::handle_call`] decides.
#[derive(Clone, Debug, PartialEq)]
pub enum CallReply {
    /// Answer the caller (`{reply, Reply, State}`).
    Reply(Term),
    /// Answer later with [`reply`] (`{noreply, State}`).
    NoReply,
    /// Answer, then stop with the reason (`{stop, Reason, Reply, State}`).
    ReplyAndStop(Term, Term),
    /// Stop with the reason without answering (`{stop, Reason, State}`):
    /// the caller sees the server exit with it.
    Stop(Term),
}

/// What [`GenServer::handle_cast`] and [`GenServer::handle_info`] decide.
#[derive(Clone, Debug, PartialEq)]
pub enum Flow {
    /// Go on (`{noreply, State}`).
    Continue,
    /// Stop with the reason (`{stop, Reason, State}`).
    Stop(Term),
}

/// A `gen_server` written in Rust: the callbacks of Erlang's behaviour,
/// as async methods with `&mut self` as the state. Start it with
/// [`start`].
///
/// Every callback gets the server's own [`Process`], to send, monitor,
/// trap exits, or call other servers.
pub trait GenServer: Send + 'static {
    /// Runs first, before any message (`init/1`); an `Err` stops the
    /// server with that reason.
    fn init(&mut self, p: &mut Process) -> impl Future<Output = Result<(), Term>> + Send {
        let _ = p;
        async { Ok(()) }
    }

    /// A call (`handle_call/3`).
    fn handle_call(
        &mut self,
        request: Term,
        from: Caller,
        p: &mut Process,
    ) -> impl Future<Output = CallReply> + Send;

    /// A cast (`handle_cast/2`); ignored by default.
    fn handle_cast(&mut self, request: Term, p: &mut Process) -> impl Future<Output = Flow> + Send {
        let _ = (request, p);
        async { Flow::Continue }
    }

    /// Any other message (`handle_info/2`); ignored by default.
    fn handle_info(&mut self, msg: Term, p: &mut Process) -> impl Future<Output = Flow> + Send {
        let _ = (msg, p);
        async { Flow::Continue }
    }

    /// Runs when the server stops by a callback's decision
    /// (`terminate/2`).
    fn terminate(&mut self, reason: &Term, p: &mut Process) -> impl Future<Output = ()> + Send {
        let _ = (reason, p);
        async {}
    }
}

/// Starts `server` in a new process, registered under `name` if given
/// (`gen_server:start/4` with `{local, Name}`); returns its pid.
///
/// The process runs until a callback stops it, or an exit signal ends
/// it. Erlang and Elixir reach a named server as `{Name, Node}`; for an
/// Elixir module name, register `"Elixir.Module.Name"` (see
/// [`elixir_module`]).
///
/// # Errors
/// The name is taken.
pub fn start<S: GenServer>(
    node: &Node,
    name: Option<impl Into<Atom>>,
    server: S,
) -> Result<Pid, RegisterError> {
    let (p, pid) = node.new_process(false);
    if let Some(name) = name {
        if let Err(e) = node.register(name, pid) {
            p.exit_self(Term::atom("normal"));
            return Err(e);
        }
    }
    node.start_task(p, move |p| run(p, server));
    Ok(pid)
}

/// The atom Elixir uses for a module: `Chat.TaskSupervisor` is the atom
/// `'Elixir.Chat.TaskSupervisor'`. A name already starting with
/// `Elixir.` is kept as it is.
pub fn elixir_module(name: &str) -> Atom {
    if name.starts_with("Elixir.") {
        Atom::from(name)
    } else {
        Atom::from(format!("Elixir.{name}").as_str())
    }
}

async fn run<S: GenServer>(mut p: Process, mut server: S) -> Result<(), Term> {
    server.init(&mut p).await?;
    loop {
        let msg = match p.recv().await {
            Ok(m) => m,
            Err(e) => return Err(e.reason),
        };
        let stop = if let Some((from, request)) = Caller::parse_call(&msg) {
            match server.handle_call(request, from.clone(), &mut p).await {
                CallReply::Reply(r) => {
                    reply(&p, &from, r);
                    None
                }
                CallReply::NoReply => None,
                CallReply::ReplyAndStop(reason, r) => {
                    reply(&p, &from, r);
                    Some(reason)
                }
                CallReply::Stop(reason) => Some(reason),
            }
        } else if let Some(request) = cast_request(&msg) {
            flow(server.handle_cast(request, &mut p).await)
        } else {
            flow(server.handle_info(msg, &mut p).await)
        };
        if let Some(reason) = stop {
            server.terminate(&reason, &mut p).await;
            return if reason.is_atom("normal") {
                Ok(())
            } else {
                Err(reason)
            };
        }
    }
}

fn flow(f: Flow) -> Option<Term> {
    match f {
        Flow::Continue => None,
        Flow::Stop(r) => Some(r),
    }
}

/// `{'$gen_cast', Request}` → `Request`.
fn cast_request(msg: &Term) -> Option<Term> {
    match msg.as_tuple()? {
        [label, request] if label.is_atom("$gen_cast") => Some(request.clone()),
        _ => None,
    }
}
