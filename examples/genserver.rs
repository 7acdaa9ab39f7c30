//! `GenServer` both ways: a Rust `GenServer` that Elixir calls, and Rust
//! calling an Elixir `GenServer`.
//!
//! The server is a counter registered as `Counter` (the atom
//! `Elixir.Counter`, as Elixir names it): `GenServer.call({Counter, node},
//! {:add, n})` answers the new total, `GenServer.call({Counter, node},
//! :get)` the total, `GenServer.cast({Counter, node}, {:add, n})` adds
//! without an answer; anything else is answered `{:error, :badarg}`. It
//! prints each request it handles.
//!
//! Given a PEER (a node running the lesson's chat project), the example
//! first calls the peer's `Chat.TaskSupervisor` (a `GenServer`) from Rust,
//! then has the peer call and cast the Rust counter (`GenServer.call/2`
//! and `GenServer.cast/2` running on the peer, asked through `:erpc`),
//! prints what Elixir got, and exits. Without a PEER, or with `--serve`, it
//! serves until Ctrl-C, for any node to call.
//!
//! ```text
//! cd tests/fixtures/chat && iex --sname kate@localhost --cookie secret_token -S mix
//! ```
//!
//! ```text
//! $ cargo run --example genserver -- kate@localhost --cookie secret_token
//! GenServer.call({Chat.TaskSupervisor, :"kate@localhost"}, :which_children) = []
//! handle_call {add,2} from kate@localhost
//! kate@localhost: GenServer.call({Counter, :"counter@localhost"}, {:add, 2}) = 2
//! handle_call {add,3} from kate@localhost
//! kate@localhost: GenServer.call({Counter, :"counter@localhost"}, {:add, 3}) = 5
//! handle_cast {add,10}
//! handle_call get from kate@localhost
//! kate@localhost: GenServer.call({Counter, :"counter@localhost"}, :get) = 15
//! ```
//!
//! Or serving, and calling from iex:
//!
//! ```text
//! $ cargo run --example genserver -- --cookie secret_token
//! iex(kate@localhost)> GenServer.call({Counter, :"counter@localhost"}, {:add, 2})
//! 2
//! ```
//!
//! Options: `--sname NAME` (default `counter@localhost`), `--cookie C`
//! (default: `$HOME/.erlang.cookie`), `--serve`. The EPMD port is
//! `$ERL_EPMD_PORT` (default 4369). Status lines go to stderr.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use erldist::node::gen_server::{self, elixir_module, CallReply, Caller, Flow, GenServer};
use erldist::{Atom, Node, Process, Term};

#[derive(Parser)]
#[command(about = "A Rust GenServer that Elixir calls, and Rust calling an Elixir GenServer")]
struct Args {
    /// A BEAM node running the chat project, e.g. kate@localhost.
    peer: Option<String>,
    /// This node's name.
    #[arg(long, default_value = "counter@localhost")]
    sname: String,
    /// The cookie (default: $HOME/.erlang.cookie).
    #[arg(long)]
    cookie: Option<String>,
    /// Keep serving after the calls through PEER, until Ctrl-C.
    #[arg(long)]
    serve: bool,
}

const TIMEOUT: Duration = Duration::from_secs(5);

/// The counter.
struct Counter(i64);

impl Counter {
    /// `{add, N}` with an integer N.
    fn add(request: &Term) -> Option<i64> {
        match request.as_tuple() {
            Some([tag, Term::Int(n)]) if tag.is_atom("add") => Some(*n),
            _ => None,
        }
    }
}

impl GenServer for Counter {
    async fn handle_call(&mut self, request: Term, from: Caller, _p: &mut Process) -> CallReply {
        println!("handle_call {request} from {}", from.pid.node);
        if request.is_atom("get") {
            return CallReply::Reply(Term::from(self.0));
        }
        match Counter::add(&request) {
            Some(n) => {
                self.0 += n;
                CallReply::Reply(Term::from(self.0))
            }
            None => CallReply::Reply(Term::Tuple(vec![Term::atom("error"), Term::atom("badarg")])),
        }
    }

    async fn handle_cast(&mut self, request: Term, _p: &mut Process) -> Flow {
        println!("handle_cast {request}");
        if let Some(n) = Counter::add(&request) {
            self.0 += n;
        }
        Flow::Continue
    }
}

/// Has `peer` run `GenServer.<fun>({Counter, me}, request)`.
async fn through_peer(
    node: &Node,
    peer: &str,
    fun: &str,
    request: Term,
    shown: &str,
) -> Result<(), String> {
    let me = Term::Tuple(vec![
        Term::Atom(elixir_module("Counter")),
        Term::Atom(node.name()),
    ]);
    let got = node
        .rpc(peer, "Elixir.GenServer", fun, vec![me, request], TIMEOUT)
        .await
        .map_err(|e| format!("GenServer.{fun} on {peer} failed: {e}"))?;
    if fun == "call" {
        println!(
            "{peer}: GenServer.call({{Counter, :\"{}\"}}, {shown}) = {got}",
            node.name()
        );
    }
    Ok(())
}

async fn demo(node: &Node, peer: &str) -> Result<(), String> {
    // Rust calling an Elixir GenServer: Task.Supervisor.children/1 is
    // GenServer.call(sup, :which_children).
    let mut me = node.process();
    let sup = (elixir_module("Chat.TaskSupervisor"), Atom::from(peer));
    let children = me
        .call_timeout(sup, Term::atom("which_children"), Some(TIMEOUT))
        .await
        .map_err(|e| format!("GenServer.call to {peer}'s Chat.TaskSupervisor failed: {e}"))?;
    println!("GenServer.call({{Chat.TaskSupervisor, :\"{peer}\"}}, :which_children) = {children}");
    // Elixir calling the Rust GenServer.
    let add = |n: i64| Term::Tuple(vec![Term::atom("add"), Term::from(n)]);
    through_peer(node, peer, "call", add(2), "{:add, 2}").await?;
    through_peer(node, peer, "call", add(3), "{:add, 3}").await?;
    through_peer(node, peer, "cast", add(10), "{:add, 10}").await?;
    through_peer(node, peer, "call", Term::atom("get"), ":get").await
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut builder = Node::builder(&args.sname);
    if let Some(c) = &args.cookie {
        builder = builder.cookie(c);
    }
    let node = match builder.start().await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("cannot start {}: {e}", args.sname);
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = gen_server::start(&node, Some(elixir_module("Counter")), Counter(0)) {
        eprintln!("cannot register Counter: {e}");
        return ExitCode::FAILURE;
    }
    let mut code = ExitCode::SUCCESS;
    if let Some(peer) = &args.peer {
        if let Err(e) = demo(&node, peer).await {
            eprintln!("{e}");
            code = ExitCode::FAILURE;
        }
    }
    if args.peer.is_none() || args.serve {
        eprintln!("{} serves Counter (Ctrl-C to stop)", node.name());
        let _ = tokio::signal::ctrl_c().await;
    }
    node.shutdown().await;
    code
}
