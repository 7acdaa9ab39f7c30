//! A Rust process: a PID with a mailbox.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use super::{Dest, MonitorTarget, Node, ProcEntry, Signal};
use crate::term::{Atom, Pid, Reference, Term};

/// The process has exited: its mailbox is closed, with the reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("process exited: {reason}")]
pub struct Exited {
    /// The exit reason (`normal`, `killed`, `noconnection`, ...).
    pub reason: Term,
}

/// A Rust process: its PID, its mailbox, and the operations of an Erlang
/// process (send, receive, link, monitor, register, trap exits).
///
/// A `Process` comes from [`Node::spawn`] (a task that exits when its
/// function returns) or [`Node::process`] (owned by the caller; it exits
/// when dropped). Either way it behaves, to every node, as an Erlang
/// process: messages from one sender arrive in the order sent; exit
/// signals from links kill it unless it traps exits.
///
/// ```
/// # #[tokio::main] async fn main() {
/// use erldist::{term, Node, Pid};
/// let node = Node::local("doc@localhost");
/// let mut me = node.process();
/// // An echo process: answers {From, Msg} with Msg.
/// let echo = node.spawn(|mut p| async move {
///     while let Ok(msg) = p.recv().await {
///         if let Ok((from, text)) = <(Pid, erldist::Term)>::try_from(msg) {
///             p.send(from, text);
///         }
///     }
/// });
/// me.send(echo, term!({(me.pid()), hello}));
/// assert_eq!(me.recv().await.unwrap(), term!(hello));
/// # }
/// ```
pub struct Process {
    pub(super) entry: Arc<ProcEntry>,
    pub(super) node: Node,
    /// Messages received but skipped by a selective receive, in order.
    pub(super) saved: VecDeque<Term>,
    /// Whether dropping the handle ends the process (attached processes);
    /// spawned processes end when their task does.
    pub(super) exits_on_drop: bool,
    /// The mailbox has delivered its end: every later receive fails at once.
    pub(super) closed: bool,
}

impl Process {
    /// The process's PID.
    pub fn pid(&self) -> Pid {
        self.entry.pid
    }

    /// The node the process runs on.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Sends `msg` to `to`: a PID (local or remote), a registered name on
    /// this node, `(name, node)`, or an alias. Like Erlang's `!`: sending
    /// to a dead process or an unreachable node is silently dropped.
    ///
    /// A message to a connected node is encoded here, by the sending
    /// process, as a BEAM process encodes its own: the connection only
    /// frames it, so one process's large message does not hold up the
    /// others' small ones. Sending a large term therefore takes about as
    /// long as encoding it (a 1 MiB list of small tuples: a few
    /// milliseconds); see [`Node::spawn`](crate::Node::spawn) for work
    /// that long.
    pub fn send(&self, to: impl Into<Dest>, msg: impl Into<Term>) {
        self.node.send_from(Some(self.pid()), to.into(), msg.into());
    }

    /// Waits while the connection a message to `to` goes on is busy, then
    /// sends `msg` as [`send`](Self::send) does. BEAM does the same to a
    /// process sending on a busy connection: it suspends it until enough
    /// is written out.
    ///
    /// A process that streams to another node this way queues no more
    /// than about
    /// [`dist_buf_busy_limit`](crate::NodeBuilder::dist_buf_busy_limit)
    /// (1 MiB by default) beyond what the connection's writer (up to
    /// 2 MiB) and the sockets hold; with
    /// [`send`](Self::send) the queue grows for as long as the process
    /// sends faster than the peer reads.
    ///
    /// It does not wait for a destination on this node. If the
    /// connection goes down while it waits, the message is sent as
    /// [`send`](Self::send) would then send it (a new connection is
    /// tried); what was queued for the old one is lost.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use erldist::{term, Node};
    /// let node = Node::local("doc_send_paced@localhost");
    /// let mut me = node.process();
    /// me.send_paced(me.pid(), term!(hello)).await;
    /// assert_eq!(me.recv().await.unwrap(), term!(hello));
    /// # }
    /// ```
    pub async fn send_paced(&self, to: impl Into<Dest>, msg: impl Into<Term>) {
        self.node
            .paced_from(Some(self.pid()), to.into(), msg.into())
            .await;
    }

    /// Sends `msg` to `to` unless the connection it goes on is busy, as
    /// Erlang's `erlang:send_nosuspend/2`: `true` if the message was
    /// queued (or stays on this node), `false` if it was not sent because
    /// what is queued for that node weighs
    /// [`dist_buf_busy_limit`](crate::NodeBuilder::dist_buf_busy_limit) or
    /// more.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use erldist::{term, Node};
    /// let node = Node::local("doc_send_nosuspend@localhost");
    /// let mut me = node.process();
    /// assert!(me.send_nosuspend(me.pid(), term!(hello)));
    /// assert_eq!(me.recv().await.unwrap(), term!(hello));
    /// # }
    /// ```
    pub fn send_nosuspend(&self, to: impl Into<Dest>, msg: impl Into<Term>) -> bool {
        self.node
            .nosuspend_from(Some(self.pid()), to.into(), msg.into())
    }

    /// Sends a copy of `msg`, as [`send`](Self::send) does, without
    /// cloning it when it goes to another node that is connected: it is
    /// encoded straight from `msg` (a term sent many times, or to many
    /// processes, is not copied for each).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use erldist::{term, Node};
    /// let node = Node::local("doc_send_ref@localhost");
    /// let mut me = node.process();
    /// let hello = term!({hello, 42});
    /// for _ in 0..3 {
    ///     me.send_ref(me.pid(), &hello);
    /// }
    /// for _ in 0..3 {
    ///     assert_eq!(me.recv().await.unwrap(), hello);
    /// }
    /// # }
    /// ```
    pub fn send_ref(&self, to: impl Into<Dest>, msg: &Term) {
        self.node
            .send_cow(Some(self.pid()), to.into(), std::borrow::Cow::Borrowed(msg));
    }

    /// Waits for the next message.
    ///
    /// # Errors
    /// [`Exited`] once the process has exited (killed by a link, say).
    pub async fn recv(&mut self) -> Result<Term, Exited> {
        if let Some(m) = self.saved.pop_front() {
            return Ok(m);
        }
        if self.closed {
            return Err(self.exited());
        }
        match self.entry.mailbox.pop().await {
            Signal::Message(m) => Ok(m),
            Signal::Exited => Err(self.close()),
        }
    }

    /// Waits for the next message at most `timeout`; `Ok(None)` when none
    /// came (`receive ... after`).
    pub async fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Term>, Exited> {
        match tokio::time::timeout(timeout, self.recv()).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Takes a message already in the mailbox, if any, without waiting.
    pub fn try_recv(&mut self) -> Option<Term> {
        self.saved
            .pop_front()
            .or_else(|| match self.entry.mailbox.try_pop() {
                Some(Signal::Message(m)) => Some(m),
                _ => None,
            })
    }

    /// Selective receive: waits for the first message for which `pred`
    /// holds, leaving the others in the mailbox in their order.
    pub async fn recv_match(
        &mut self,
        mut pred: impl FnMut(&Term) -> bool,
    ) -> Result<Term, Exited> {
        if let Some(i) = self.saved.iter().position(&mut pred) {
            if let Some(m) = self.saved.remove(i) {
                return Ok(m);
            }
        }
        if self.closed {
            return Err(self.exited());
        }
        loop {
            match self.entry.mailbox.pop().await {
                Signal::Message(m) if pred(&m) => return Ok(m),
                Signal::Message(m) => self.saved.push_back(m),
                Signal::Exited => return Err(self.close()),
            }
        }
    }

    /// Selective receive with a timeout; `Ok(None)` when no matching
    /// message came in time (the others stay in the mailbox).
    pub async fn recv_match_timeout(
        &mut self,
        timeout: Duration,
        pred: impl FnMut(&Term) -> bool,
    ) -> Result<Option<Term>, Exited> {
        match tokio::time::timeout(timeout, self.recv_match(pred)).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// How many messages wait in the mailbox.
    pub fn mailbox_len(&self) -> usize {
        self.saved.len() + self.entry.mailbox.len()
    }

    fn close(&mut self) -> Exited {
        self.closed = true;
        self.exited()
    }

    fn exited(&self) -> Exited {
        Exited {
            reason: self
                .entry
                .exit_reason()
                .unwrap_or_else(|| Term::atom("normal")),
        }
    }

    /// Links to `pid` (`link/1`). If `pid` is already dead, an exit signal
    /// with reason `noproc` arrives instead.
    pub fn link(&self, pid: Pid) {
        self.node.link(&self.entry, pid);
    }

    /// Removes the link to `pid` (`unlink/1`).
    pub fn unlink(&self, pid: Pid) {
        self.node.unlink(&self.entry, pid);
    }

    /// Sets whether exit signals become `{'EXIT', From, Reason}` messages
    /// (`process_flag(trap_exit, On)`); returns the old value.
    pub fn trap_exit(&self, on: bool) -> bool {
        self.entry.set_trap_exit(on)
    }

    /// Sends an exit signal to `pid` (`exit/2`). Reason `kill` cannot be
    /// trapped.
    pub fn exit(&self, pid: Pid, reason: impl Into<Term>) {
        self.node
            .exit_signal(self.pid(), pid, reason.into(), super::ExitKind::Exit2);
    }

    /// Monitors a process, by PID or registered name (local or
    /// `(name, node)`); a `{'DOWN', Ref, process, Object, Reason}` message
    /// arrives when it exits (at once, with `noproc`, if it is not alive).
    pub fn monitor(&self, target: impl Into<MonitorTarget>) -> Reference {
        self.node.monitor(&self.entry, target.into())
    }

    /// Removes a monitor (`demonitor/1`); a `'DOWN'` message already in
    /// the mailbox stays there.
    pub fn demonitor(&self, reference: &Reference) {
        self.node.demonitor(&self.entry, reference);
    }

    /// Registers this process under `name` on its node (`register/2`).
    ///
    /// # Errors
    /// [`super::RegisterError`] if the name is taken or the process
    /// already has a name.
    pub fn register(&self, name: impl Into<Atom>) -> Result<(), super::RegisterError> {
        self.node.register(name.into(), self.pid())
    }

    /// A new alias for this process (`alias/0`): messages sent to the
    /// reference arrive here until [`Process::unalias`].
    pub fn alias(&self) -> Reference {
        self.node.alias(&self.entry)
    }

    /// Deactivates an alias (`unalias/1`); returns whether it was active.
    pub fn unalias(&self, alias: &Reference) -> bool {
        self.node.unalias(&self.entry, alias)
    }

    /// The process's group leader (`group_leader/0`): the I/O server its
    /// output goes to, and that processes it spawns on other nodes print
    /// to. Unless set, the node's default one ([`Node::default_group_leader`]).
    pub fn group_leader(&self) -> Pid {
        let set = self.entry.state().group_leader;
        set.unwrap_or_else(|| self.node.default_group_leader())
    }

    /// Sets the process's group leader (`group_leader/2` on itself).
    pub fn set_group_leader(&self, leader: Pid) {
        self.entry.state().group_leader = Some(leader);
    }

    /// Spawns a process linked to this one (`spawn_link/1`).
    pub fn spawn_link<F, Fut, R>(&self, f: F) -> Pid
    where
        F: FnOnce(Process) -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: super::IntoExitReason,
    {
        let (child, pid) = self.node.new_process(false);
        self.node.link(&self.entry, pid);
        self.node.start_task(child, f);
        pid
    }

    /// Spawns a process monitored by this one (`spawn_monitor/1`).
    pub fn spawn_monitor<F, Fut, R>(&self, f: F) -> (Pid, Reference)
    where
        F: FnOnce(Process) -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: super::IntoExitReason,
    {
        let (child, pid) = self.node.new_process(false);
        let r = self.node.monitor(&self.entry, MonitorTarget::Pid(pid));
        self.node.start_task(child, f);
        (pid, r)
    }

    /// Ends the process now with `reason` (`exit/1`): links and monitors
    /// see `reason`.
    pub fn exit_self(self, reason: impl Into<Term>) {
        self.node.process_exit(&self.entry, reason.into());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exits_on_drop {
            self.node.process_exit(&self.entry, Term::atom("normal"));
        }
    }
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.entry.pid)
            .finish()
    }
}
