//! Elixir's `Task.Supervisor`, both ways: starting a supervised task on
//! an Elixir node and awaiting its result (`Task.Supervisor.async/4` and
//! `Task.await/2`), and a Rust [`TaskSupervisor`] that Elixir nodes start
//! tasks on, running Rust functions registered by module and function.
//!
//! # Wire format
//!
//! This is the protocol of **Elixir 1.14**, read from its compiled
//! `Task.Supervisor`, `Task.Supervised`, `Task` and `DynamicSupervisor`
//! and tested against Debian's Elixir 1.14.0 on OTP 25. Other Elixir
//! versions that keep these message shapes work the same; none other was
//! available to test:
//!
//! 1. the owner calls the supervisor (a `gen_server` call, timeout
//!    `infinity`) with `{start_task, [Owner, monitor], temporary, nil}`,
//!    where `Owner` is `{OwnerNode, OwnerNameOrPid, OwnerPid}`; the
//!    supervisor answers `{ok, TaskPid}` (or `{error, max_children}`);
//! 2. the owner links to the task (`async`, not `async_nolink`), monitors
//!    it and makes the monitor reference an alias (`Ref`), then sends the
//!    task `{OwnerPid, Ref, ReplyTo, Callers, {Module, Function, Args}}`
//!    with `ReplyTo = Ref` (the owner's pid on OTP before 24);
//! 3. the task, which monitors the owner and waits 5 s for that message
//!    (exiting `{shutdown, Reason}` if the owner dies, `timeout` if
//!    nothing comes), runs `apply(Module, Function, Args)` and sends
//!    `{Ref, Result}` to `ReplyTo`, then exits `normal`; if the function
//!    raises, the task exits with the error, which kills the linked owner
//!    and fires its monitor;
//! 4. `Task.await` takes `{Ref, Result}` (or the monitor's `'DOWN'`,
//!    exiting with its reason, `noconnection` becoming
//!    `{nodedown, Node}`).
//!
//! The Rust supervisor also accepts `Task.Supervisor.start_child/4`
//! (`{start_task, [Owner, Callers, {M, F, A}], Restart, Shutdown}`: run,
//! answer nothing) and the older `async` form the lesson shows in its
//! error message, `{start_task, [OwnerPid, monitor, {Node, OwnerPid},
//! {M, F, A}], temporary, nil}` followed by `{OwnerPid, Ref}` and answered
//! with `{Ref, Result}` to the owner's pid (untested: no such Elixir
//! here). `Task.Supervisor.children/1` (`which_children`) and
//! `terminate_child/2` are answered too.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use super::gen_server::{down_reason, CallError, CallReply, Caller, Flow, GenServer};
use super::{Dest, MonitorTarget, Node, Process, RegisterError};
use crate::term::{Atom, Pid, Reference, Term};

/// How long a task started with `async` waits for its owner's
/// `{Owner, Ref, ReplyTo, Callers, MFA}` message (Elixir's 5 s).
pub const OWNER_MESSAGE_TIMEOUT: Duration = Duration::from_millis(5000);

/// The default `Task.await/2` timeout: 5 s.
pub const DEFAULT_AWAIT_TIMEOUT: Duration = Duration::from_millis(5000);

/// Why a task could not be started or awaited. [`TaskError::reason`]
/// gives the exit reason an Elixir owner would see.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    /// The call to the supervisor failed (no such supervisor, node down,
    /// supervisor died).
    #[error("cannot reach the task supervisor: {0}")]
    Supervisor(#[from] CallError),
    /// The supervisor refused to start the task (`{error, Reason}`, e.g.
    /// `max_children`).
    #[error("the supervisor refused the task: {0}")]
    Refused(Term),
    /// The supervisor answered something else than `{ok, Pid}`.
    #[error("unexpected answer from the supervisor: {0}")]
    BadReply(Term),
    /// The task exited without a result, with this reason.
    #[error("the task exited: {0}")]
    Exit(Term),
    /// The task's node went down (`{nodedown, Node}`).
    #[error("node {0} is down (nodedown)")]
    NodeDown(Atom),
    /// No result in time (`timeout`).
    #[error("no result in time (timeout)")]
    Timeout,
    /// The awaiting process itself exited (e.g. killed through its link
    /// to a task that crashed).
    #[error("the owner process exited: {0}")]
    OwnerExited(Term),
}

impl TaskError {
    /// The exit reason an Elixir owner would get.
    pub fn reason(&self) -> Term {
        match self {
            TaskError::Supervisor(e) => e.reason(),
            TaskError::Refused(r) | TaskError::BadReply(r) => r.clone(),
            TaskError::Exit(r) | TaskError::OwnerExited(r) => r.clone(),
            TaskError::NodeDown(n) => Term::Tuple(vec![Term::atom("nodedown"), Term::Atom(*n)]),
            TaskError::Timeout => Term::atom("timeout"),
        }
    }
}

/// A task started with [`Process::task_async`], to pass to
/// [`Process::task_await`] (Elixir's `%Task{}`).
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    /// The task's process.
    pub pid: Pid,
    /// The reference its result comes tagged with (the owner's monitor on
    /// the task).
    pub reference: Reference,
    alias: Reference,
    owner: Pid,
}

fn mfa(module: Atom, function: Atom, args: Vec<Term>) -> Term {
    Term::Tuple(vec![
        Term::Atom(module),
        Term::Atom(function),
        Term::List(args),
    ])
}

impl Process {
    /// Starts `Module.function(args...)` under a task supervisor
    /// (`Task.Supervisor.async/4`): e.g. `(Chat.TaskSupervisor,
    /// kate@localhost)` with [`elixir_module`](super::gen_server::elixir_module)
    /// names. This process is linked to the task, as Elixir's owner is: if
    /// the task crashes, this process is killed unless it traps exits (see
    /// [`task_async_nolink`](Process::task_async_nolink)).
    ///
    /// # Errors
    /// [`TaskError::Supervisor`] if the supervisor cannot be called,
    /// [`TaskError::Refused`] if it refuses.
    pub async fn task_async(
        &mut self,
        supervisor: impl Into<MonitorTarget>,
        module: impl Into<Atom>,
        function: impl Into<Atom>,
        args: Vec<Term>,
    ) -> Result<Task, TaskError> {
        self.start_task(
            supervisor.into(),
            true,
            module.into(),
            function.into(),
            args,
        )
        .await
    }

    /// As [`task_async`](Process::task_async) without the link
    /// (`Task.Supervisor.async_nolink/4`): a crash of the task only shows
    /// as [`TaskError::Exit`] from [`task_await`](Process::task_await).
    ///
    /// # Errors
    /// As [`task_async`](Process::task_async).
    pub async fn task_async_nolink(
        &mut self,
        supervisor: impl Into<MonitorTarget>,
        module: impl Into<Atom>,
        function: impl Into<Atom>,
        args: Vec<Term>,
    ) -> Result<Task, TaskError> {
        self.start_task(
            supervisor.into(),
            false,
            module.into(),
            function.into(),
            args,
        )
        .await
    }

    async fn start_task(
        &mut self,
        supervisor: MonitorTarget,
        link: bool,
        module: Atom,
        function: Atom,
        args: Vec<Term>,
    ) -> Result<Task, TaskError> {
        let me = self.pid();
        let name = self.entry.state().name;
        let owner = Term::Tuple(vec![
            Term::Atom(self.node.name()),
            name.map_or(Term::Pid(me), Term::Atom),
            Term::Pid(me),
        ]);
        let request = Term::Tuple(vec![
            Term::atom("start_task"),
            Term::List(vec![owner, Term::atom("monitor")]),
            Term::atom("temporary"),
            Term::atom("nil"),
        ]);
        let answer = self.call_timeout(supervisor, request, None).await?;
        let pid = match answer.as_tuple() {
            Some([ok, Term::Pid(pid)]) if ok.is_atom("ok") => *pid,
            Some([err, reason]) if err.is_atom("error") => {
                return Err(TaskError::Refused(reason.clone()))
            }
            _ => return Err(TaskError::BadReply(answer)),
        };
        if link {
            self.link(pid);
        }
        let reference = self.monitor(pid);
        let alias = self.alias();
        self.send(
            pid,
            Term::Tuple(vec![
                Term::Pid(me),
                Term::Ref(Box::new(reference)),
                Term::Ref(Box::new(alias)),
                Term::List(vec![Term::Pid(me)]),
                mfa(module, function, args),
            ]),
        );
        Ok(Task {
            pid,
            reference,
            alias,
            owner: me,
        })
    }

    /// Waits for a task's result (`Task.await/2`); `None` waits forever.
    /// On timeout the task goes on running, as in Elixir (where the owner
    /// would exit); its late result is dropped.
    ///
    /// # Errors
    /// [`TaskError::Exit`] or [`TaskError::NodeDown`] if the task ended
    /// without a result, [`TaskError::Timeout`], and
    /// [`TaskError::OwnerExited`] if this process was killed (by its link
    /// to a crashed task, say). A task owned by another process is
    /// [`TaskError::BadReply`].
    pub async fn task_await(
        &mut self,
        task: Task,
        timeout: Option<Duration>,
    ) -> Result<Term, TaskError> {
        if task.owner != self.pid() {
            return Err(TaskError::BadReply(Term::atom("invalid_owner")));
        }
        let r = task.reference;
        let is_reply =
            move |m: &Term| matches!(m.as_tuple(), Some([Term::Ref(got), _]) if **got == r);
        let pred = |m: &Term| is_reply(m) || down_reason(m, &r).is_some();
        let got = match timeout {
            Some(t) => self.recv_match_timeout(t, pred).await,
            None => self.recv_match(pred).await.map(Some),
        };
        self.unalias(&task.alias);
        self.demonitor(&r);
        let msg = match got {
            Ok(Some(m)) => m,
            Ok(None) => {
                self.flush_down(&r);
                return match self.take_matching(is_reply) {
                    Some(m) => Ok(second(m)),
                    None => Err(TaskError::Timeout),
                };
            }
            Err(e) => return Err(TaskError::OwnerExited(e.reason)),
        };
        if let Some(reason) = down_reason(&msg, &r) {
            return Err(if reason.is_atom("noconnection") {
                TaskError::NodeDown(task.pid.node)
            } else {
                TaskError::Exit(reason)
            });
        }
        self.flush_down(&r);
        Ok(second(msg))
    }
}

fn second(msg: Term) -> Term {
    match msg {
        Term::Tuple(mut t) if t.len() == 2 => t.pop().unwrap_or(Term::NIL),
        other => other,
    }
}

/// What a task function returns: `Ok(result)` is sent to the owner;
/// `Err(reason)` ends the task with that exit reason, as an exception
/// would in Elixir (the linked owner then exits too).
pub type TaskResult = Result<Term, Term>;

type BoxFuture = Pin<Box<dyn Future<Output = TaskResult> + Send>>;
type Handler = Arc<dyn Fn(Process, Vec<Term>) -> BoxFuture + Send + Sync>;

/// A Rust `Task.Supervisor`: register it under the name Elixir nodes use
/// (e.g. `Chat.TaskSupervisor`) and they can start tasks on this node with
/// `Task.Supervisor.async({Chat.TaskSupervisor, :"rust@host"}, Module,
/// :function, args)`. Each `{Module, function, arity}` runs a Rust function
/// registered with [`function`](TaskSupervisor::function); anything else
/// exits the task with `{undef, [{Module, Function, Args, []}]}`, as a
/// missing function does in Elixir.
///
/// ```no_run
/// # async fn f(node: erldist::Node) {
/// use erldist::node::gen_server::elixir_module;
/// use erldist::node::task::TaskSupervisor;
/// use erldist::Term;
/// TaskSupervisor::new()
///     .function(elixir_module("Chat"), "receive_message", 1, |_task, args| async move {
///         if let Some(Term::Binary(text)) = args.first() {
///             println!("{}", String::from_utf8_lossy(text));
///         }
///         Ok(Term::atom("ok"))
///     })
///     .start(&node, elixir_module("Chat.TaskSupervisor"))
///     .unwrap();
/// # }
/// ```
#[derive(Clone, Default)]
pub struct TaskSupervisor {
    handlers: HashMap<(Atom, Atom, usize), Handler>,
}

impl std::fmt::Debug for TaskSupervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut keys: Vec<String> = self
            .handlers
            .keys()
            .map(|(m, f, a)| format!("{m}.{f}/{a}"))
            .collect();
        keys.sort();
        f.debug_struct("TaskSupervisor")
            .field("functions", &keys)
            .finish()
    }
}

impl TaskSupervisor {
    /// A supervisor with no functions yet.
    pub fn new() -> TaskSupervisor {
        TaskSupervisor::default()
    }

    /// Registers the Rust function run for `module.function/arity`. It
    /// gets the task's own process (to send, call or start tasks
    /// elsewhere, like moebi answering "chicken?") and the arguments.
    pub fn function<F, Fut>(
        mut self,
        module: impl Into<Atom>,
        function: impl Into<Atom>,
        arity: usize,
        f: F,
    ) -> TaskSupervisor
    where
        F: Fn(Process, Vec<Term>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = TaskResult> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |p, args| Box::pin(f(p, args)));
        self.handlers
            .insert((module.into(), function.into(), arity), handler);
        self
    }

    /// Starts the supervisor on `node`, registered as `name`; returns its
    /// pid.
    ///
    /// # Errors
    /// The name is taken.
    pub fn start(self, node: &Node, name: impl Into<Atom>) -> Result<Pid, RegisterError> {
        super::gen_server::start(
            node,
            Some(name),
            SupServer {
                functions: Arc::new(self.handlers),
                children: HashSet::new(),
            },
        )
    }
}

struct SupServer {
    functions: Arc<HashMap<(Atom, Atom, usize), Handler>>,
    children: HashSet<Pid>,
}

/// How a started task gets its function and answers.
enum Start {
    /// Elixir 1.11+ `async`: wait for `{OwnerPid, Ref, ReplyTo, _, MFA}`.
    Modern { owner: Pid, monitor: bool },
    /// `start_child`: run `MFA` at once, answer nobody.
    NoReply { mfa: Term },
    /// Older `async`: wait for `{OwnerPid, Ref}`, answer the owner.
    Old {
        owner: Pid,
        monitor: bool,
        mfa: Term,
    },
}

fn parse_start(args: &[Term]) -> Option<Start> {
    let owner_pid = |t: &Term| -> Option<Pid> {
        match t {
            Term::Pid(p) => Some(*p),
            // {Node, NameOrPid, Pid}
            Term::Tuple(e) => match e.as_slice() {
                [_, _, Term::Pid(p)] => Some(*p),
                _ => None,
            },
            _ => None,
        }
    };
    match args {
        [owner, mode] => Some(Start::Modern {
            owner: owner_pid(owner)?,
            monitor: mode.is_atom("monitor"),
        }),
        [_, _, mfa] => Some(Start::NoReply { mfa: mfa.clone() }),
        [owner, mode, _, mfa] => Some(Start::Old {
            owner: owner_pid(owner)?,
            monitor: mode.is_atom("monitor"),
            mfa: mfa.clone(),
        }),
        _ => None,
    }
}

impl GenServer for SupServer {
    async fn init(&mut self, p: &mut Process) -> Result<(), Term> {
        // As a supervisor: children's exits are messages, not our death.
        p.trap_exit(true);
        Ok(())
    }

    async fn handle_call(&mut self, request: Term, _from: Caller, p: &mut Process) -> CallReply {
        if request.is_atom("which_children") {
            return CallReply::Reply(Term::List(
                self.children
                    .iter()
                    .map(|pid| {
                        Term::Tuple(vec![
                            Term::atom("undefined"),
                            Term::Pid(*pid),
                            Term::atom("worker"),
                            Term::List(vec![Term::atom("Elixir.Task.Supervised")]),
                        ])
                    })
                    .collect(),
            ));
        }
        let Some(t) = request.as_tuple() else {
            return CallReply::Reply(unknown(&request));
        };
        match t {
            [label, args, _restart, _shutdown] if label.is_atom("start_task") => {
                let start = args.list_elems().and_then(|a| parse_start(&a));
                let Some(start) = start else {
                    return CallReply::Reply(unknown(&request));
                };
                let functions = self.functions.clone();
                let pid = p.spawn_link(move |task| run_task(task, functions, start));
                self.children.insert(pid);
                CallReply::Reply(Term::Tuple(vec![Term::atom("ok"), Term::Pid(pid)]))
            }
            [label, Term::Pid(pid)] if label.is_atom("terminate_child") => {
                if self.children.remove(pid) {
                    p.exit(*pid, Term::atom("shutdown"));
                    CallReply::Reply(Term::atom("ok"))
                } else {
                    CallReply::Reply(Term::Tuple(vec![
                        Term::atom("error"),
                        Term::atom("not_found"),
                    ]))
                }
            }
            _ => CallReply::Reply(unknown(&request)),
        }
    }

    async fn handle_info(&mut self, msg: Term, _p: &mut Process) -> Flow {
        if let Some([label, Term::Pid(pid), _]) = msg.as_tuple() {
            if label.is_atom("EXIT") {
                self.children.remove(pid);
            }
        }
        Flow::Continue
    }
}

fn unknown(request: &Term) -> Term {
    Term::Tuple(vec![
        Term::atom("error"),
        Term::Tuple(vec![Term::atom("unknown_call"), request.clone()]),
    ])
}

/// The body of a task process.
async fn run_task(
    mut p: Process,
    functions: Arc<HashMap<(Atom, Atom, usize), Handler>>,
    start: Start,
) -> Result<(), Term> {
    let (mfa, answer) = match start {
        Start::NoReply { mfa } => (mfa, None),
        Start::Modern { owner, monitor } => {
            let mref = monitor.then(|| p.monitor(owner));
            let msg = wait_owner(&mut p, mref, monitor, |m| match m.as_tuple() {
                Some([Term::Pid(o), _, _, _, _]) => *o == owner,
                _ => false,
            })
            .await?;
            match msg {
                Term::Tuple(mut e) if e.len() == 5 => {
                    let mfa = e.pop().unwrap_or(Term::NIL);
                    let _callers = e.pop();
                    let reply_to = e.pop().unwrap_or(Term::NIL);
                    let tag = e.pop().unwrap_or(Term::NIL);
                    (mfa, Some((reply_to, tag)))
                }
                _ => return Err(Term::atom("badarg")),
            }
        }
        Start::Old {
            owner,
            monitor,
            mfa,
        } => {
            let mref = monitor.then(|| p.monitor(owner));
            let msg = wait_owner(
                &mut p,
                mref,
                monitor,
                |m| matches!(m.as_tuple(), Some([Term::Pid(o), _]) if *o == owner),
            )
            .await?;
            let tag = second(msg);
            (mfa, Some((Term::Pid(owner), tag)))
        }
    };
    let pid = p.pid();
    let node = p.node().clone();
    let result = apply(p, &functions, mfa).await?;
    if let Some((reply_to, tag)) = answer {
        let dest = match reply_to {
            Term::Ref(r) => Dest::Alias(*r),
            Term::Pid(pid) => Dest::Pid(pid),
            Term::Atom(name) => Dest::Name(name),
            _ => return Err(Term::atom("badarg")),
        };
        node.send_from(Some(pid), dest, Term::Tuple(vec![tag, result]));
    }
    Ok(())
}

/// Waits for the owner's message: as Elixir's task, at most 5 s, and
/// `{shutdown, Reason}` if the owner dies first.
async fn wait_owner(
    p: &mut Process,
    mref: Option<Reference>,
    monitor: bool,
    is_msg: impl Fn(&Term) -> bool,
) -> Result<Term, Term> {
    let pred = |m: &Term| is_msg(m) || mref.is_some_and(|r| down_reason(m, &r).is_some());
    let got = if monitor {
        p.recv_match_timeout(OWNER_MESSAGE_TIMEOUT, pred).await
    } else {
        p.recv_match(pred).await.map(Some)
    };
    let msg = match got {
        Ok(Some(m)) => m,
        Ok(None) => return Err(Term::atom("timeout")),
        Err(e) => return Err(e.reason),
    };
    if let Some(r) = mref {
        if let Some(reason) = down_reason(&msg, &r) {
            return Err(Term::Tuple(vec![Term::atom("shutdown"), reason]));
        }
        p.demonitor(&r);
        p.flush_down(&r);
    }
    Ok(msg)
}

/// Runs `{M, F, Args}` with the registered function, or fails as a
/// missing function does: `{undef, [{M, F, Args, []}]}`.
async fn apply(
    p: Process,
    functions: &HashMap<(Atom, Atom, usize), Handler>,
    mfa: Term,
) -> Result<Term, Term> {
    let parts = match &mfa {
        Term::Tuple(e) => match e.as_slice() {
            [Term::Atom(m), Term::Atom(f), args] => {
                args.list_elems().map(|a| (*m, *f, a.into_owned()))
            }
            _ => None,
        },
        _ => None,
    };
    let Some((m, f, args)) = parts else {
        return Err(Term::Tuple(vec![Term::atom("badarg"), mfa]));
    };
    match functions.get(&(m, f, args.len())) {
        Some(h) => h(p, args).await,
        None => Err(Term::Tuple(vec![
            Term::atom("undef"),
            Term::List(vec![Term::Tuple(vec![
                Term::Atom(m),
                Term::Atom(f),
                Term::List(args),
                Term::NIL,
            ])]),
        ])),
    }
}
