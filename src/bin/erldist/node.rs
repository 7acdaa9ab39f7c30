//! The node commands: `ping`, `call`, `spawn` and `send`.
//!
//! Each starts a short-lived hidden node (as `erl_call` does), connects to
//! the target, does its one thing and exits: 0 on success, 1 when the
//! remote side fails (pang, badrpc, an abnormal exit), 2 on bad usage.

use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use erldist::node::{GroupLeaderConfig, GroupLeaderOpt, NodeError, SpawnOpts};
use erldist::{Atom, Node, Term};

/// Exit status for a failure of the remote side.
pub const FAILED: u8 = 1;
/// Exit status for bad usage.
pub const USAGE: u8 = 2;

/// Options common to the node commands.
#[derive(clap::Args, Clone, Debug)]
pub struct NodeOpts {
    /// The cookie (default: the contents of $HOME/.erlang.cookie).
    #[arg(long, value_name = "COOKIE")]
    pub cookie: Option<String>,
    /// This node's short name, NAME or NAME@HOST (default: a unique hidden
    /// name, erldist_<pid>_<n>@<host>).
    #[arg(long, value_name = "SELF", conflicts_with = "name")]
    pub sname: Option<String>,
    /// This node's long name, NAME@HOST.FQDN or NAME@IP.
    #[arg(long, value_name = "SELF")]
    pub name: Option<String>,
    /// Seconds to wait for the answer (fractions allowed), or `infinity`.
    /// `spawn` waits for its process without a limit unless given.
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
    pub timeout: Option<Timeout>,
    /// Make this node visible to the peer (default: hidden, as erl_call).
    #[arg(long)]
    pub visible: bool,
}

/// A time limit; `None` is `infinity`.
#[derive(Clone, Copy, Debug)]
pub struct Timeout(Option<Duration>);

fn parse_timeout(s: &str) -> Result<Timeout, String> {
    if s == "infinity" {
        return Ok(Timeout(None));
    }
    match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => {
            Ok(Timeout(Some(Duration::from_secs_f64(secs))))
        }
        _ => Err(format!("{s:?} is not a number of seconds nor `infinity`")),
    }
}

/// The default limit of `ping`, `call` and `send`.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl NodeOpts {
    fn limit(&self) -> Option<Duration> {
        match self.timeout {
            Some(Timeout(t)) => t,
            None => Some(DEFAULT_TIMEOUT),
        }
    }
}

/// A failure of a node command, with its exit status.
struct Failure {
    status: u8,
    message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        status: USAGE,
        message: message.into(),
    }
}

fn failed(message: impl Into<String>) -> Failure {
    Failure {
        status: FAILED,
        message: message.into(),
    }
}

/// Arguments of `erldist ping`.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  erldist ping --cookie secret app@localhost\n  pong")]
pub struct PingArgs {
    /// The node to ping: NAME@HOST, or NAME for NAME@<this host>.
    node: String,
    #[command(flatten)]
    opts: NodeOpts,
}

/// Arguments of `erldist call`.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  erldist call app@localhost lists seq '[1, 5]'\n  [1,2,3,4,5]")]
pub struct CallArgs {
    /// The node to call: NAME@HOST, or NAME for NAME@<this host>.
    node: String,
    /// The module.
    module: String,
    /// The function.
    function: String,
    /// The arguments, an Erlang list in text (default: `[]`).
    args: Option<String>,
    #[command(flatten)]
    opts: NodeOpts,
}

/// Arguments of `erldist spawn`.
#[derive(clap::Args)]
#[command(
    after_help = "Example:\n  erldist spawn app@localhost io format '[\"hi ~p~n\", [self()]]'\n  hi <12345.90.0>"
)]
pub struct SpawnArgs {
    /// The node to spawn on: NAME@HOST, or NAME for NAME@<this host>.
    node: String,
    /// The module.
    module: String,
    /// The function.
    function: String,
    /// The arguments, an Erlang list in text (default: `[]`).
    args: Option<String>,
    #[command(flatten)]
    opts: NodeOpts,
}

/// Arguments of `erldist send`.
#[derive(clap::Args)]
#[command(after_help = "Example:\n  erldist send app@localhost logger_sink '{log, <<\"hello\">>}'")]
pub struct SendArgs {
    /// The node: NAME@HOST, or NAME for NAME@<this host>.
    node: String,
    /// The name registered on NODE.
    #[arg(value_name = "NAME")]
    registered: String,
    /// The message, an Erlang term in text.
    term: String,
    #[command(flatten)]
    opts: NodeOpts,
}

/// `erldist ping NODE`.
pub fn ping(args: PingArgs) -> ExitCode {
    let prepared = full_node_name(&args.node);
    run(
        "ping",
        &args.opts,
        &args.node,
        prepared,
        move |node, opts, peer| async move {
            let result = within(opts.limit(), "no answer", async {
                connect(&node, &peer).await?;
                if node.ping(&peer).await {
                    Ok(())
                } else {
                    Err(failed("pang: no answer from net_kernel"))
                }
            })
            .await;
            // The answer on stdout, the reason on stderr.
            println!("{}", if result.is_ok() { "pong" } else { "pang" });
            result
        },
    )
}

/// `erldist call NODE M F [ARGS]`.
pub fn call(args: CallArgs) -> ExitCode {
    let prepared = mfa_args(&args.node, &args.module, &args.function, &args.args);
    run(
        "call",
        &args.opts,
        &args.node,
        prepared,
        move |node, opts, (peer, m, f, call_args)| async move {
            let limit = opts.limit();
            let started = tokio::time::Instant::now();
            within(limit, "timeout", connect(&node, &peer)).await?;
            // rpc takes a Duration: a long one stands for infinity.
            let left = limit
                .map(|l| l.saturating_sub(started.elapsed()))
                .unwrap_or(Duration::from_secs(100 * 365 * 24 * 3600));
            match node.rpc(peer.as_str(), m, f, call_args, left).await {
                Ok(v) => {
                    print_term(&v)?;
                    Ok(())
                }
                Err(e) => Err(failed(format!("{e}\n{}", e.to_badrpc()))),
            }
        },
    )
}

/// `erldist spawn NODE M F [ARGS]`.
pub fn spawn(args: SpawnArgs) -> ExitCode {
    let prepared = mfa_args(&args.node, &args.module, &args.function, &args.args);
    run(
        "spawn",
        &args.opts,
        &args.node,
        prepared,
        move |node, opts, (peer, m, f, spawn_args)| async move {
            // The process's output goes to our stdout as it comes.
            let gl = node.start_group_leader(GroupLeaderConfig::stdout());
            let mut me = node.process();
            me.trap_exit(true);
            let setup_limit = opts.timeout.map_or(Some(DEFAULT_TIMEOUT), |t| t.0);
            let spawned = within(setup_limit, "timeout", async {
                connect(&node, &peer).await?;
                me.spawn_remote(
                    peer.as_str(),
                    m,
                    f,
                    spawn_args,
                    SpawnOpts::new()
                        .link()
                        .group_leader(GroupLeaderOpt::Pid(gl)),
                )
                .await
                .map_err(|e| failed(format!("spawn: {e}")))
            })
            .await?;
            let pid = spawned.pid;
            let wait = async {
                loop {
                    let msg = me.recv().await.map_err(|e| failed(format!("{e}")))?;
                    if let Some([tag, from, reason]) = msg.as_tuple() {
                        if tag.is_atom("EXIT") && matches!(from, Term::Pid(p) if *p == pid) {
                            return Ok(reason.clone());
                        }
                    }
                }
            };
            let limit = opts.timeout.and_then(|t| t.0);
            let reason = tokio::select! {
                r = within(limit, "timeout", wait) => r,
                _ = tokio::signal::ctrl_c() => Err(failed("interrupted")),
            };
            let reason = match reason {
                Ok(r) => r,
                Err(f) => {
                    // Do not leave the process running behind us.
                    me.exit(pid, Term::atom("kill"));
                    node.shutdown().await;
                    return Err(f);
                }
            };
            let _ = std::io::stdout().flush();
            if reason.is_atom("normal") {
                Ok(())
            } else {
                Err(failed(format!(
                    "process {} exited: {reason}",
                    Term::Pid(pid)
                )))
            }
        },
    )
}

/// `erldist send NODE NAME TERM`.
pub fn send(args: SendArgs) -> ExitCode {
    let prepared = (|| {
        let peer = full_node_name(&args.node)?;
        let name = atom_arg(&args.registered)?;
        let msg: Term = args
            .term
            .parse()
            .map_err(|e| usage(format!("bad TERM {:?}: {e}", args.term)))?;
        Ok((peer, name, msg))
    })();
    run(
        "send",
        &args.opts,
        &args.node,
        prepared,
        move |node, opts, (peer, name, msg)| async move {
            within(opts.limit(), "timeout", async {
                connect(&node, &peer).await?;
                let me = node.process();
                me.send((name, Atom::from(peer.as_str())), msg);
                // The ping goes on the same connection after the message: its
                // answer means the message was delivered.
                if node.ping(&peer).await {
                    Ok(())
                } else {
                    Err(failed("the connection went down after sending"))
                }
            })
            .await
        },
    )
}

/// The node, module, function and arguments of `call` and `spawn`.
type Mfa = (String, Atom, Atom, Vec<Term>);

fn mfa_args(node: &str, m: &str, f: &str, args: &Option<String>) -> Result<Mfa, Failure> {
    Ok((
        full_node_name(node)?,
        atom_arg(m)?,
        atom_arg(f)?,
        parse_args(args.as_deref())?,
    ))
}

/// Reports `failure` and exits with its status.
fn exit_with(command: &str, failure: Failure) -> ! {
    for line in failure.message.lines() {
        eprintln!("erldist {command}: {line}");
    }
    std::process::exit(i32::from(failure.status));
}

/// Starts the runtime and the node, runs `body` with what `prepared`
/// holds (arguments checked before any network use: bad usage exits 2
/// at once), reports, and exits.
fn run<P, F, Fut>(
    command: &str,
    opts: &NodeOpts,
    target: &str,
    prepared: Result<P, Failure>,
    body: F,
) -> ExitCode
where
    F: FnOnce(Node, NodeOpts, P) -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let (prepared, peer) = match prepared.and_then(|p| Ok((p, full_node_name(target)?))) {
        Ok(p) => p,
        Err(f) => exit_with(command, f),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("erldist {command}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let opts = opts.clone();
    let result = runtime.block_on(async move {
        let node = match start_node(&opts, &peer).await {
            Ok(node) => node,
            Err(f) => {
                // ping answers pang whatever the reason.
                if command == "ping" && f.status == FAILED {
                    println!("pang");
                }
                return Err(f);
            }
        };
        let result = body(node.clone(), opts, prepared).await;
        let _ = std::io::stdout().flush();
        // Say goodbye to the peer, but do not wait long for it.
        let _ = tokio::time::timeout(Duration::from_millis(500), node.shutdown()).await;
        result
    });
    let _ = std::io::stdout().flush();
    // Do not wait for the runtime's tasks (connections, readers): exit now.
    match result {
        Ok(()) => std::process::exit(0),
        Err(f) => exit_with(command, f),
    }
}

/// The unique default name: `erldist_<pid>_<n>`.
fn default_alive(n: u32) -> String {
    format!("erldist_{}_{n}", std::process::id())
}

/// Starts this node. Without `--sname`/`--name`, its name follows the
/// target's mode, as nodes of both kinds cannot talk: a short name on this
/// host's short name, or for a long-named target (a dotted host) a long
/// name on this host's full name (or 127.0.0.1 when it has no dots).
async fn start_node(opts: &NodeOpts, peer: &str) -> Result<Node, Failure> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let explicit = match (&opts.sname, &opts.name) {
        (Some(s), _) => Some(if s.contains('@') {
            s.clone()
        } else {
            format!("{s}@{}", short_host()?)
        }),
        (None, Some(l)) => {
            if !l.contains('@') {
                return Err(usage(format!("--name {l:?}: a long name is NAME@HOST")));
            }
            Some(l.clone())
        }
        (None, None) => None,
    };
    let mut attempts = 0;
    loop {
        let name = match &explicit {
            Some(n) => n.clone(),
            None => format!(
                "{}@{}",
                default_alive(COUNTER.fetch_add(1, Ordering::Relaxed)),
                default_host(peer)?
            ),
        };
        // Like erl_call: a client that registers nothing, so it needs no
        // EPMD on this host.
        let mut builder = Node::builder(&name)
            .hidden(!opts.visible)
            .embedded_epmd(false)
            .register(false);
        if let Some(c) = &opts.cookie {
            builder = builder.cookie(c);
        }
        match builder.start().await {
            Ok(node) => return Ok(node),
            // A stale name of an earlier run with our pid: try the next.
            Err(NodeError::Epmd(e @ erldist::epmd::EpmdError::NameTaken { .. }))
                if explicit.is_none() && attempts < 5 =>
            {
                attempts += 1;
                tracing::debug!("EPMD refused {name}: {e}");
            }
            Err(e @ (NodeError::Name(_) | NodeError::Cookie(_))) => {
                return Err(usage(format!("cannot start the node {name}: {e}")))
            }
            Err(e) => return Err(failed(format!("cannot start the node {name}: {e}"))),
        }
    }
}

fn default_host(peer: &str) -> Result<String, Failure> {
    let long = peer.split_once('@').is_some_and(|(_, h)| h.contains('.'));
    if !long {
        return short_host();
    }
    let full = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    Ok(if full.contains('.') {
        full
    } else {
        "127.0.0.1".to_owned()
    })
}

fn short_host() -> Result<String, Failure> {
    erldist::handshake::local_short_host_name()
        .ok_or_else(|| failed("cannot find this host's name; give NAME@HOST"))
}

/// `NODE` as given, or `NODE@<short host>` when it has no host.
fn full_node_name(node: &str) -> Result<String, Failure> {
    if node.is_empty() || node.starts_with('@') || node.ends_with('@') {
        return Err(usage(format!("bad node name {node:?}")));
    }
    if node.contains('@') {
        Ok(node.to_owned())
    } else {
        Ok(format!("{node}@{}", short_host()?))
    }
}

/// A module or function name: as an atom in text (`'Elixir.Foo'`), or
/// taken literally (`Elixir.Foo`).
fn atom_arg(text: &str) -> Result<Atom, Failure> {
    if let Ok(Term::Atom(a)) = text.parse::<Term>() {
        return Ok(a);
    }
    if text.is_empty() || text.chars().count() > 255 {
        return Err(usage(format!("bad atom {text:?}")));
    }
    Ok(Atom::from(text))
}

/// ARGS: an Erlang list in text.
fn parse_args(text: Option<&str>) -> Result<Vec<Term>, Failure> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    let term: Term = text
        .parse()
        .map_err(|e| usage(format!("bad ARGS {text:?}: {e}")))?;
    match term.list_elems() {
        Some(elems) => Ok(elems.into_owned()),
        None => Err(usage(format!(
            "bad ARGS {text:?}: not a proper list, e.g. '[1, 5]'"
        ))),
    }
}

async fn connect(node: &Node, peer: &str) -> Result<(), Failure> {
    node.connect(peer).await.map_err(|e| match e {
        NodeError::Connect { peer, reason } => failed(format!("{peer}: {reason}")),
        e => failed(e.to_string()),
    })
}

async fn within<T>(
    limit: Option<Duration>,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    match limit {
        None => fut.await,
        Some(l) => match tokio::time::timeout(l, fut).await {
            Ok(r) => r,
            Err(_) => Err(failed(format!("{what} after {} s", l.as_secs_f64()))),
        },
    }
}

fn print_term(t: &Term) -> Result<(), Failure> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    writeln!(out, "{t}")
        .and_then(|_| out.flush())
        .map_err(|e| failed(format!("writing stdout: {e}")))
}
