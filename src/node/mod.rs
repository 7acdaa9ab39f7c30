//! The node: Rust processes with PIDs, mailboxes, registered names, links
//! and monitors.
//!
//! A [`Node`] owns a table of live processes. Each process has an
//! unbounded mailbox (as in Erlang) and a small state under a lock: its
//! links, the monitors others hold on it, the monitors it holds, its
//! aliases and whether it traps exits. Signals between processes are
//! delivered by the sender: a message is pushed onto the receiver's
//! mailbox, an exit signal either becomes an `{'EXIT', From, Reason}`
//! message or ends the receiver. Ending a process propagates its exit
//! reason to its links and monitors exactly once.

mod builder;
pub mod gen_server;
pub mod global;
mod group_leader;
pub mod io;
mod mailbox;
mod net;
mod outq;
pub mod pg;
mod process;
pub mod pubsub;
mod rpc;
mod sched;
mod sendq;
mod spawn;
pub mod task;

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use futures_util::FutureExt;
use tokio::task::AbortHandle;

pub use builder::{NodeBuilder, NodeError, DEFAULT_DIST_BUF_BUSY_LIMIT};
pub use gen_server::{CallError, GenServer};
pub use group_leader::{GroupLeaderConfig, IoError, IoOutput, IoSink};
pub use net::NodeEvent;
pub use process::{Exited, Process};
pub use rpc::{Exception, RpcError};
pub use spawn::{GroupLeaderOpt, SpawnError, SpawnOpts, Spawned};

use crate::connection::control::{ControlMessage, ProcRef};
use net::Net;

use crate::term::{Atom, Pid, Reference, Term};

/// Where a message goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Dest {
    /// A process, local or remote.
    Pid(Pid),
    /// A name registered on this node.
    Name(Atom),
    /// A name registered on a node: `{Name, Node}`.
    Remote(Atom, Atom),
    /// A process alias (a reference made by [`Process::alias`]).
    Alias(Reference),
}

impl From<Pid> for Dest {
    fn from(p: Pid) -> Dest {
        Dest::Pid(p)
    }
}

impl From<&Pid> for Dest {
    fn from(p: &Pid) -> Dest {
        Dest::Pid(*p)
    }
}

impl From<Atom> for Dest {
    fn from(a: Atom) -> Dest {
        Dest::Name(a)
    }
}

impl From<&str> for Dest {
    fn from(a: &str) -> Dest {
        Dest::Name(Atom::from(a))
    }
}

impl From<(Atom, Atom)> for Dest {
    fn from((name, node): (Atom, Atom)) -> Dest {
        Dest::Remote(name, node)
    }
}

impl From<(&str, &str)> for Dest {
    fn from((name, node): (&str, &str)) -> Dest {
        Dest::Remote(Atom::from(name), Atom::from(node))
    }
}

impl From<Reference> for Dest {
    fn from(r: Reference) -> Dest {
        Dest::Alias(r)
    }
}

/// What a monitor watches.
#[derive(Clone, Debug, PartialEq)]
pub enum MonitorTarget {
    /// A process by PID.
    Pid(Pid),
    /// A name registered on this node.
    Name(Atom),
    /// A name registered on a node.
    Remote(Atom, Atom),
}

impl From<Pid> for MonitorTarget {
    fn from(p: Pid) -> MonitorTarget {
        MonitorTarget::Pid(p)
    }
}

impl From<Atom> for MonitorTarget {
    fn from(a: Atom) -> MonitorTarget {
        MonitorTarget::Name(a)
    }
}

impl From<&str> for MonitorTarget {
    fn from(a: &str) -> MonitorTarget {
        MonitorTarget::Name(Atom::from(a))
    }
}

impl From<(Atom, Atom)> for MonitorTarget {
    fn from((name, node): (Atom, Atom)) -> MonitorTarget {
        MonitorTarget::Remote(name, node)
    }
}

/// Why a name could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// Another process has the name.
    #[error("name {0:?} is already registered")]
    NameTaken(Atom),
    /// The process already has a name.
    #[error("the process is already registered as {0:?}")]
    AlreadyNamed(Atom),
    /// The process is not alive (or not on this node).
    #[error("no such process")]
    NoProc,
}

/// What a process function's result means as an exit reason: `()` and
/// `Ok(())` are `normal`; `Err(reason)` is `reason`.
pub trait IntoExitReason {
    /// The exit reason.
    fn into_exit_reason(self) -> Term;
}

impl IntoExitReason for () {
    fn into_exit_reason(self) -> Term {
        Term::atom("normal")
    }
}

impl<E: Into<Term>> IntoExitReason for Result<(), E> {
    fn into_exit_reason(self) -> Term {
        match self {
            Ok(()) => Term::atom("normal"),
            Err(e) => e.into(),
        }
    }
}

/// How an exit signal was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitKind {
    /// Through a link, when the linked process exited.
    Link,
    /// By `exit/2`.
    Exit2,
}

/// A monitor someone holds on a process.
#[derive(Clone, Debug)]
struct Watcher {
    pid: Pid,
    /// The name the monitor was made with (`'DOWN'` then names it).
    by_name: Option<Atom>,
}

/// What a mailbox carries: messages, then possibly the end.
pub(crate) enum Signal {
    /// A message.
    Message(Term),
    /// The process has exited: wakes a receiver that would wait forever.
    Exited,
}

/// What a monitor this process holds watches.
#[derive(Clone, Debug)]
pub(crate) enum Watched {
    /// A process.
    Pid(Pid),
    /// A name registered on a node.
    Name(Atom, Atom),
}

impl Watched {
    /// How a `'DOWN'` message names it.
    fn object(&self) -> Term {
        match self {
            Watched::Pid(p) => Term::Pid(*p),
            Watched::Name(name, node) => Term::Tuple(vec![Term::Atom(*name), Term::Atom(*node)]),
        }
    }
}

/// A process's state shared with the node.
pub(crate) struct ProcEntry {
    pid: Pid,
    mailbox: mailbox::Mailbox,
    state: Mutex<ProcState>,
}

/// A map looked up on every message (processes by number, names, peers):
/// foldhash, seeded per map, instead of SipHash. Its keys are the node's
/// own (process numbers it hands out, registered names, connected peers).
pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Default)]
struct ProcState {
    exited: Option<Term>,
    trap_exit: bool,
    /// Links, monitors and aliases, made on the first one: most processes
    /// have none, and an idle process costs less without them.
    rel: Option<Box<Relations>>,
    name: Option<Atom>,
    task: Option<AbortHandle>,
    /// The group leader, if set (else the node's default one).
    group_leader: Option<Pid>,
}

/// A process's links, monitors and aliases.
#[derive(Default)]
struct Relations {
    links: HashSet<Pid>,
    watchers: HashMap<Reference, Watcher>,
    /// Monitors this process holds: reference → what it watches.
    watching: HashMap<Reference, Watched>,
    aliases: HashSet<Reference>,
}

impl ProcState {
    /// The process's relations, made if it has none yet.
    fn rel(&mut self) -> &mut Relations {
        self.rel.get_or_insert_with(Box::default)
    }
}

impl ProcEntry {
    fn state(&self) -> MutexGuard<'_, ProcState> {
        // A panic never happens while the lock is held; recover anyway.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn exit_reason(&self) -> Option<Term> {
        self.state().exited.clone()
    }

    fn set_trap_exit(&self, on: bool) -> bool {
        std::mem::replace(&mut self.state().trap_exit, on)
    }

    fn deliver(&self, msg: Term) {
        // A closed mailbox means the process is gone: drop, as Erlang does.
        self.mailbox.push(Signal::Message(msg));
    }
}

struct NodeInner {
    name: Atom,
    creation: u32,
    procs: RwLock<FastMap<u32, Arc<ProcEntry>>>,
    names: RwLock<FastMap<Atom, Pid>>,
    aliases: RwLock<HashMap<Reference, Pid>>,
    next_id: AtomicU32,
    next_ref: AtomicU64,
    net: Option<Arc<Net>>,
    /// Spawn requests in flight, Rust functions callable from BEAM, the
    /// default group leader.
    spawn: spawn::SpawnState,
}

/// A node: the home of Rust processes.
///
/// Cloning a `Node` gives another handle to the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.inner.name)
            .field("creation", &self.inner.creation)
            .finish()
    }
}

fn atom(name: &str) -> Term {
    Term::atom(name)
}

impl Node {
    /// A node that is not (yet) connected to anything: its processes talk
    /// among themselves. The creation is taken from the clock.
    pub fn local(name: &str) -> Node {
        let creation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1)
            .max(4);
        Node::with_creation(Atom::from(name), creation)
    }

    pub(crate) fn with_creation(name: Atom, creation: u32) -> Node {
        Node::build(name, creation, None)
    }

    pub(crate) fn build(name: Atom, creation: u32, net: Option<Arc<Net>>) -> Node {
        Node {
            inner: Arc::new(NodeInner {
                name,
                creation,
                procs: RwLock::new(FastMap::default()),
                names: RwLock::new(FastMap::default()),
                aliases: RwLock::new(HashMap::new()),
                next_id: AtomicU32::new(1),
                next_ref: AtomicU64::new(1),
                net,
                spawn: spawn::SpawnState::default(),
            }),
        }
    }

    /// The node's name, e.g. `alex@localhost`.
    pub fn name(&self) -> Atom {
        self.inner.name
    }

    /// The node's creation (its incarnation number).
    pub fn creation(&self) -> u32 {
        self.inner.creation
    }

    /// A new unique reference (`make_ref/0`).
    pub fn make_ref(&self) -> Reference {
        let n = self.inner.next_ref.fetch_add(1, Ordering::Relaxed);
        let ids = [(n & 0x3_ffff) as u32, (n >> 18) as u32, (n >> 50) as u32];
        Reference::three(self.inner.name, self.inner.creation, ids)
    }

    /// Whether `pid` is a live process of this node.
    pub fn is_alive(&self, pid: Pid) -> bool {
        self.lookup(pid).is_some()
    }

    /// How many processes are alive on this node.
    pub fn process_count(&self) -> usize {
        self.read_procs().len()
    }

    /// The PID registered under `name` (`whereis/1`).
    pub fn whereis(&self, name: impl Into<Atom>) -> Option<Pid> {
        self.inner
            .names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&name.into())
            .copied()
    }

    /// The names registered on this node (`registered/0`).
    pub fn registered(&self) -> Vec<Atom> {
        self.inner
            .names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// Registers `pid` under `name` (`register/2`).
    ///
    /// # Errors
    /// The name is taken, the process already has a name, or is not alive.
    pub fn register(&self, name: impl Into<Atom>, pid: Pid) -> Result<(), RegisterError> {
        let name = name.into();
        let entry = self.lookup(pid).ok_or(RegisterError::NoProc)?;
        let mut names = self.inner.names.write().unwrap_or_else(|e| e.into_inner());
        let mut st = entry.state();
        if st.exited.is_some() {
            return Err(RegisterError::NoProc);
        }
        if let Some(old) = st.name {
            return Err(RegisterError::AlreadyNamed(old));
        }
        if names.contains_key(&name) {
            return Err(RegisterError::NameTaken(name));
        }
        names.insert(name, pid);
        st.name = Some(name);
        Ok(())
    }

    /// Removes a registered name (`unregister/1`); returns whether it was
    /// registered.
    pub fn unregister(&self, name: impl Into<Atom>) -> bool {
        let name = name.into();
        let pid = self
            .inner
            .names
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        match pid {
            Some(pid) => {
                if let Some(e) = self.lookup(pid) {
                    e.state().name = None;
                }
                true
            }
            None => false,
        }
    }

    /// A process owned by the caller: it lives until the returned handle
    /// is dropped (then it exits with reason `normal`), or until an exit
    /// signal ends it.
    pub fn process(&self) -> Process {
        self.new_process(true).0
    }

    /// Spawns a process running `f` (`spawn/1`). The process exits when
    /// the future ends: `normal` for `()` or `Ok(())`, the error for
    /// `Err(reason)`, and `{panic, Message}` if it panics (which never
    /// takes the node down).
    ///
    /// The process is a task on the tokio runtime, so, like any task, it
    /// should not compute for long without awaiting: run such work in
    /// [`tokio::task::block_in_place`] (on the multi-thread runtime) or
    /// [`tokio::task::spawn_blocking`]. Blocking the worker holds up more
    /// than the process: a message it has just sent to another node waits
    /// with it, because the connection's task, woken by the send, waits
    /// on that worker (tokio's LIFO slot, which other workers do not
    /// take) until the process next awaits. `block_in_place` hands the
    /// connection's task to another worker first.
    pub fn spawn<F, Fut, R>(&self, f: F) -> Pid
    where
        F: FnOnce(Process) -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoExitReason,
    {
        let (p, pid) = self.new_process(false);
        self.start_task(p, f);
        pid
    }

    /// Sends `msg` to `to` from no process in particular (like `erlang:send/2`
    /// from a process the receiver cannot see).
    pub fn send(&self, to: impl Into<Dest>, msg: impl Into<Term>) {
        self.send_from(None, to.into(), msg.into());
    }

    /// Waits while the connection a message to `to` goes on is busy, then
    /// sends `msg` from no process in particular: see
    /// [`Process::send_paced`].
    pub async fn send_paced(&self, to: impl Into<Dest>, msg: impl Into<Term>) {
        self.paced_from(None, to.into(), msg.into()).await;
    }

    /// Sends `msg` from no process in particular unless the connection it
    /// goes on is busy: see [`Process::send_nosuspend`].
    pub fn send_nosuspend(&self, to: impl Into<Dest>, msg: impl Into<Term>) -> bool {
        self.nosuspend_from(None, to.into(), msg.into())
    }

    /// Sends a copy of `msg`, as [`send`](Self::send) does, without
    /// cloning it when it goes to another node that is connected: it is
    /// encoded straight from `msg`. For a term sent many times.
    pub fn send_ref(&self, to: impl Into<Dest>, msg: &Term) {
        self.send_cow(None, to.into(), Cow::Borrowed(msg));
    }

    /// Sends an exit signal to `pid` as `exit(Pid, Reason)` from no
    /// process; reason `kill` cannot be trapped.
    pub fn kill(&self, pid: Pid, reason: impl Into<Term>) {
        self.exit_signal(self.system_pid(), pid, reason.into(), ExitKind::Exit2);
    }

    // ---- internals ----

    pub(crate) fn net(&self) -> Option<Arc<Net>> {
        self.inner.net.clone()
    }

    /// The other node a message to `to` goes to; `None` if it stays here.
    fn peer_of(&self, to: &Dest) -> Option<Atom> {
        let node = match to {
            Dest::Pid(p) => p.node,
            Dest::Remote(_, node) => *node,
            Dest::Alias(r) => r.node,
            Dest::Name(_) => return None,
        };
        (node != self.inner.name).then_some(node)
    }

    /// [`send_paced`](Self::send_paced) from `from`.
    pub(crate) async fn paced_from(&self, from: Option<Pid>, to: Dest, msg: Term) {
        if let (Some(peer), Some(net)) = (self.peer_of(&to), &self.inner.net) {
            net.not_busy(peer).await;
        }
        self.send_from(from, to, msg);
    }

    /// [`send_nosuspend`](Self::send_nosuspend) from `from`.
    pub(crate) fn nosuspend_from(&self, from: Option<Pid>, to: Dest, msg: Term) -> bool {
        if let (Some(peer), Some(net)) = (self.peer_of(&to), &self.inner.net) {
            if net.is_busy(peer) {
                return false;
            }
        }
        self.send_from(from, to, msg);
        true
    }

    /// The PID that stands for the node itself where a sender is needed
    /// and no process sends (`<node.0.0>`).
    pub(crate) fn system_pid(&self) -> Pid {
        Pid {
            node: self.inner.name,
            id: 0,
            serial: 0,
            creation: self.inner.creation,
        }
    }

    /// Sends the signal `control` (with `payload` if its operation takes
    /// one) to `peer`, connecting if need be (see [`net::Net::send`]).
    fn remote(&self, peer: Atom, control: ControlMessage, payload: Option<Cow<'_, Term>>) {
        // Borrowed, not cloned: a count taken and dropped on every send
        // is a shared write that senders on other threads wait for.
        if let Some(net) = &self.inner.net {
            net.send(self, peer, control, payload);
        }
    }

    fn read_procs(&self) -> std::sync::RwLockReadGuard<'_, FastMap<u32, Arc<ProcEntry>>> {
        self.inner.procs.read().unwrap_or_else(|e| e.into_inner())
    }

    fn is_local(&self, pid: &Pid) -> bool {
        pid.node == self.inner.name && pid.creation == self.inner.creation
    }

    fn lookup(&self, pid: Pid) -> Option<Arc<ProcEntry>> {
        if !self.is_local(&pid) || pid.serial != 0 {
            return None;
        }
        self.read_procs().get(&pid.id).cloned()
    }

    pub(crate) fn new_process(&self, exits_on_drop: bool) -> (Process, Pid) {
        let mut procs = self.inner.procs.write().unwrap_or_else(|e| e.into_inner());
        // Process numbers are 32 bits (V4_NC); skip 0 and any still in use
        // after a wrap.
        let id = loop {
            let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
            if id != 0 && !procs.contains_key(&id) {
                break id;
            }
        };
        let pid = Pid {
            node: self.inner.name,
            id,
            serial: 0,
            creation: self.inner.creation,
        };
        let entry = Arc::new(ProcEntry {
            pid,
            mailbox: mailbox::Mailbox::default(),
            state: Mutex::new(ProcState::default()),
        });
        procs.insert(id, entry.clone());
        drop(procs);
        let p = Process {
            entry,
            node: self.clone(),
            saved: Default::default(),
            exits_on_drop,
            closed: false,
        };
        (p, pid)
    }

    pub(crate) fn start_task<F, Fut, R>(&self, p: Process, f: F)
    where
        F: FnOnce(Process) -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoExitReason,
    {
        let entry = p.entry.clone();
        let node = self.clone();
        let guard = ExitGuard {
            node: self.clone(),
            entry: entry.clone(),
        };
        let handle = tokio::spawn(async move {
            let guard = guard;
            let reason = match AssertUnwindSafe(f(p)).catch_unwind().await {
                Ok(r) => r.into_exit_reason(),
                Err(panic) => {
                    let text = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "panic".into());
                    Term::Tuple(vec![atom("panic"), Term::from(text)])
                }
            };
            node.process_exit(&guard.entry, reason);
        });
        let mut st = entry.state();
        if st.exited.is_some() {
            // Killed before it started.
            handle.abort();
        } else {
            st.task = Some(handle.abort_handle());
        }
    }

    pub(crate) fn send_from(&self, from: Option<Pid>, to: Dest, msg: Term) {
        self.send_cow(from, to, Cow::Owned(msg));
    }

    /// [`send_from`](Self::send_from) of a borrowed or owned message: a
    /// borrowed one is copied only if it stays on this node or the
    /// connection must encode it.
    pub(crate) fn send_cow(&self, from: Option<Pid>, to: Dest, msg: Cow<'_, Term>) {
        match to {
            Dest::Pid(pid) if pid.node == self.inner.name => {
                // Delivered under the table's read lock: no reference
                // counting per message.
                if self.is_local(&pid) && pid.serial == 0 {
                    if let Some(e) = self.read_procs().get(&pid.id) {
                        mailbox::WakeBatch::deliver(e, Signal::Message(msg.into_owned()));
                    }
                }
            }
            Dest::Pid(pid) => {
                let control = match from {
                    Some(from) => ControlMessage::SendSender { from, to: pid },
                    None => ControlMessage::Send { to: pid },
                };
                self.remote(pid.node, control, Some(msg));
            }
            Dest::Name(name) => {
                if let Some(pid) = self.whereis(name) {
                    self.send_cow(from, Dest::Pid(pid), msg);
                }
            }
            Dest::Remote(name, node) if node == self.inner.name => {
                self.send_cow(from, Dest::Name(name), msg);
            }
            Dest::Remote(name, node) => {
                let from = from.unwrap_or_else(|| self.system_pid());
                self.remote(
                    node,
                    ControlMessage::RegSend {
                        from,
                        to_name: name,
                    },
                    Some(msg),
                );
            }
            Dest::Alias(r) if r.node != self.inner.name => {
                let from = from.unwrap_or_else(|| self.system_pid());
                self.remote(
                    r.node,
                    ControlMessage::AliasSend { from, alias: r },
                    Some(msg),
                );
            }
            Dest::Alias(r) => {
                let pid = self
                    .inner
                    .aliases
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&r)
                    .copied();
                if let Some(pid) = pid {
                    self.send_cow(from, Dest::Pid(pid), msg);
                }
            }
        }
    }

    pub(crate) fn link(&self, me: &Arc<ProcEntry>, pid: Pid) {
        if pid == me.pid {
            return;
        }
        if me.state().exited.is_some() {
            return;
        }
        me.state().rel().links.insert(pid);
        match self.lookup(pid) {
            Some(other) => {
                let mut st = other.state();
                if st.exited.is_none() {
                    st.rel().links.insert(me.pid);
                    return;
                }
            }
            None if pid.node != self.inner.name => {
                self.remote(
                    pid.node,
                    ControlMessage::Link {
                        from: me.pid,
                        to: pid,
                    },
                    None,
                );
                return;
            }
            None => {}
        }
        // The other process is dead: the link breaks at once with noproc.
        me.state().rel().links.remove(&pid);
        self.exit_signal(pid, me.pid, atom("noproc"), ExitKind::Link);
    }

    pub(crate) fn unlink(&self, me: &Arc<ProcEntry>, pid: Pid) {
        me.state().rel().links.remove(&pid);
        if pid.node != self.inner.name {
            let id = self
                .net()
                .map_or(1, |n| n.unlink_ids.fetch_add(1, Ordering::Relaxed));
            let control = ControlMessage::UnlinkId {
                id,
                from: me.pid,
                to: pid,
            };
            self.remote(pid.node, control, None);
        } else if let Some(other) = self.lookup(pid) {
            other.state().rel().links.remove(&me.pid);
        }
    }

    /// Delivers an exit signal from `from` to `to`.
    pub(crate) fn exit_signal(&self, from: Pid, to: Pid, reason: Term, kind: ExitKind) {
        if to.node != self.inner.name {
            let control = match kind {
                ExitKind::Link => ControlMessage::PayloadExit { from, to },
                ExitKind::Exit2 => ControlMessage::PayloadExit2 { from, to },
            };
            return self.remote(to.node, control, Some(Cow::Owned(reason)));
        }
        let Some(target) = self.lookup(to) else {
            return;
        };
        let untrappable = kind == ExitKind::Exit2 && reason.is_atom("kill");
        let (trap, exited) = {
            let mut st = target.state();
            if kind == ExitKind::Link {
                st.rel().links.remove(&from);
            }
            (st.trap_exit, st.exited.is_some())
        };
        if exited {
            return;
        }
        if untrappable {
            self.process_exit(&target, atom("killed"));
        } else if trap {
            target.deliver(Term::Tuple(vec![atom("EXIT"), Term::Pid(from), reason]));
        } else if !reason.is_atom("normal") || from == to {
            self.process_exit(&target, reason);
        }
    }

    pub(crate) fn monitor(&self, me: &Arc<ProcEntry>, target: MonitorTarget) -> Reference {
        let r = self.make_ref();
        let here = self.inner.name;
        let (watched, remote) = match target {
            MonitorTarget::Pid(pid) if pid.node != here => {
                (Watched::Pid(pid), Some((pid.node, ProcRef::Pid(pid))))
            }
            MonitorTarget::Remote(name, node) if node != here => {
                (Watched::Name(name, node), Some((node, ProcRef::Name(name))))
            }
            MonitorTarget::Pid(pid) => (Watched::Pid(pid), None),
            MonitorTarget::Name(name) | MonitorTarget::Remote(name, _) => {
                (Watched::Name(name, here), None)
            }
        };
        if let Some((node, to)) = remote {
            me.state().rel().watching.insert(r, watched);
            let control = ControlMessage::MonitorP {
                from: me.pid,
                to,
                reference: r,
            };
            self.remote(node, control, None);
            return r;
        }
        let (pid, by_name) = match &watched {
            Watched::Pid(p) => (Some(*p), None),
            Watched::Name(n, _) => (self.whereis(*n), Some(*n)),
        };
        if let Some(entry) = pid.and_then(|p| self.lookup(p)) {
            let mut st = entry.state();
            if st.exited.is_none() {
                st.rel().watchers.insert(
                    r,
                    Watcher {
                        pid: me.pid,
                        by_name,
                    },
                );
                drop(st);
                me.state().rel().watching.insert(r, Watched::Pid(entry.pid));
                return r;
            }
        }
        me.deliver(down(&r, watched.object(), atom("noproc")));
        r
    }

    pub(crate) fn demonitor(&self, me: &Arc<ProcEntry>, r: &Reference) {
        let watched = me.state().rel().watching.remove(r);
        self.drop_monitor(me.pid, r, watched);
    }

    /// Removes the other end of a monitor that `watcher` held.
    fn drop_monitor(&self, watcher: Pid, r: &Reference, watched: Option<Watched>) {
        let (node, to) = match watched {
            Some(Watched::Pid(p)) if p.node != self.inner.name => (p.node, ProcRef::Pid(p)),
            Some(Watched::Name(n, node)) if node != self.inner.name => (node, ProcRef::Name(n)),
            Some(Watched::Pid(p)) => {
                if let Some(entry) = self.lookup(p) {
                    entry.state().rel().watchers.remove(r);
                }
                return;
            }
            Some(Watched::Name(..)) | None => return,
        };
        let control = ControlMessage::DemonitorP {
            from: watcher,
            to,
            reference: *r,
        };
        self.remote(node, control, None);
    }

    pub(crate) fn alias(&self, me: &Arc<ProcEntry>) -> Reference {
        let r = self.make_ref();
        me.state().rel().aliases.insert(r);
        self.inner
            .aliases
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(r, me.pid);
        r
    }

    pub(crate) fn unalias(&self, me: &Arc<ProcEntry>, r: &Reference) -> bool {
        if !me.state().rel().aliases.remove(r) {
            return false;
        }
        self.inner
            .aliases
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(r);
        true
    }

    /// Ends a process with `reason`: once, whoever gets here first.
    pub(crate) fn process_exit(&self, entry: &Arc<ProcEntry>, reason: Term) {
        let st = {
            let mut st = entry.state();
            if st.exited.is_some() {
                return;
            }
            st.exited = Some(reason.clone());
            ProcState {
                exited: None,
                trap_exit: false,
                rel: st.rel.take(),
                name: st.name.take(),
                task: st.task.take(),
                group_leader: None,
            }
        };
        let rel = st.rel.map(|r| *r).unwrap_or_default();
        let pid = entry.pid;
        entry.mailbox.push(Signal::Exited);
        self.inner
            .procs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&pid.id);
        if let Some(name) = st.name {
            let mut names = self.inner.names.write().unwrap_or_else(|e| e.into_inner());
            if names.get(&name) == Some(&pid) {
                names.remove(&name);
            }
        }
        if !rel.aliases.is_empty() {
            let mut aliases = self
                .inner
                .aliases
                .write()
                .unwrap_or_else(|e| e.into_inner());
            for r in &rel.aliases {
                aliases.remove(r);
            }
        }
        for (r, w) in rel.watching {
            self.drop_monitor(pid, &r, Some(w));
        }
        for linked in rel.links {
            self.exit_signal(pid, linked, reason.clone(), ExitKind::Link);
        }
        for (r, w) in rel.watchers {
            if w.pid.node != self.inner.name {
                let from = match w.by_name {
                    Some(name) => ProcRef::Name(name),
                    None => ProcRef::Pid(pid),
                };
                let control = ControlMessage::PayloadMonitorPExit {
                    from,
                    to: w.pid,
                    reference: r,
                };
                self.remote(w.pid.node, control, Some(Cow::Borrowed(&reason)));
                continue;
            }
            let object = match w.by_name {
                Some(name) => Term::Tuple(vec![Term::Atom(name), Term::Atom(self.inner.name)]),
                None => Term::Pid(pid),
            };
            self.send_from(
                Some(pid),
                Dest::Pid(w.pid),
                down(&r, object, reason.clone()),
            );
        }
        if let Some(task) = st.task {
            // Ends the task at its next await, if it is not the one exiting.
            task.abort();
        }
    }
}

/// `{'DOWN', Ref, process, Object, Reason}`.
fn down(r: &Reference, object: Term, reason: Term) -> Term {
    Term::Tuple(vec![
        atom("DOWN"),
        Term::Ref(Box::new(*r)),
        atom("process"),
        object,
        reason,
    ])
}

/// Ends a spawned process whose task is dropped (aborted, or the runtime
/// shut down) without reaching its end.
struct ExitGuard {
    node: Node,
    entry: Arc<ProcEntry>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        let reason = self.entry.exit_reason().unwrap_or_else(|| atom("killed"));
        self.node.process_exit(&self.entry, reason);
    }
}
