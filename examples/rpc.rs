//! S7: remote calls, both ways, between this program and an Elixir node.
//!
//! Calls into Elixir with [`Node::rpc`] (what `:erpc.call/5` does):
//! `String.upcase("hello")` returns a value; `Kate.say_name()` prints on
//! the peer's behalf **here** (the call runs with this node's group
//! leader); `String.to_integer("x")` raises, and the exception comes back.
//! Then the other way: it makes `Rusty.add/2` a Rust function
//! ([`Node::register_fn`]) and asks the peer to run
//! `:erpc.call(this_node, Rusty, :add, [1, 2])`, which calls back into Rust.
//!
//! Start the peer, a node running the lesson's chat project:
//!
//! ```text
//! cd tests/fixtures/chat && iex --sname kate@localhost --cookie secret_token -S mix
//! ```
//!
//! then:
//!
//! ```text
//! $ cargo run --example rpc -- kate@localhost --cookie secret_token
//! String.upcase("hello") = "HELLO"
//! Hi, my name is Kate
//! Kate.say_name() = ok
//! String.to_integer("x") raised error: badarg
//! Rusty.add called from Elixir with [1,2]
//! :erpc.call(:"alex@localhost", Rusty, :add, [1, 2]) on kate@localhost = 3
//! ```
//!
//! While it runs (or with `--serve`, until Ctrl-C), `Rusty.add/2` can be
//! called from the peer's shell: `:erpc.call(:"alex@localhost", Rusty, :add, [1, 2])`.
//!
//! Options: `--sname NAME` (this node's name, default `alex@localhost`),
//! `--cookie C` (default: `$HOME/.erlang.cookie`). The EPMD port is
//! `$ERL_EPMD_PORT` (default 4369).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use erldist::node::Exception;
use erldist::{Node, Term};

#[derive(Parser)]
#[command(about = "S7: remote calls into an Elixir node, and from it into Rust")]
struct Args {
    /// The BEAM node running the chat project, e.g. kate@localhost.
    peer: String,
    /// This node's name.
    #[arg(long, default_value = "alex@localhost")]
    sname: String,
    /// The cookie (default: $HOME/.erlang.cookie).
    #[arg(long)]
    cookie: Option<String>,
    /// Keep serving Rusty.add/2 after the calls, until Ctrl-C.
    #[arg(long)]
    serve: bool,
}

/// A binary that is text as Elixir shows it (`"HELLO"`); other terms as
/// Erlang does.
fn elixir(t: &Term) -> String {
    match t {
        Term::Binary(b) => match std::str::from_utf8(b) {
            Ok(s) => format!("{s:?}"),
            Err(_) => t.to_string(),
        },
        other => other.to_string(),
    }
}

const TIMEOUT: Duration = Duration::from_secs(5);

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
    // Callable from other nodes as 'Elixir.Rusty':add(A, B).
    node.register_fn("Elixir.Rusty", "add", |args: Vec<Term>| async move {
        println!(
            "Rusty.add called from Elixir with {}",
            Term::List(args.clone())
        );
        match args.as_slice() {
            [Term::Int(a), Term::Int(b)] => Ok(Term::from(a + b)),
            _ => Err(Exception::error(Term::atom("badarg"))),
        }
    });
    let peer = args.peer.as_str();
    let mut ok = true;
    let string = "Elixir.String";

    // A value.
    match node
        .rpc(peer, string, "upcase", vec![Term::from("hello")], TIMEOUT)
        .await
    {
        Ok(v) => println!("String.upcase(\"hello\") = {}", elixir(&v)),
        Err(e) => {
            eprintln!("String.upcase on {peer} failed: {e}");
            ok = false;
        }
    }
    // Output: the call's group leader is this node's (stdout).
    match node
        .rpc(peer, "Elixir.Kate", "say_name", vec![], TIMEOUT)
        .await
    {
        Ok(v) => println!("Kate.say_name() = {v}"),
        Err(e) => {
            eprintln!("Kate.say_name on {peer} failed: {e}");
            ok = false;
        }
    }
    // An exception raised on the peer.
    match node
        .rpc(peer, string, "to_integer", vec![Term::from("x")], TIMEOUT)
        .await
    {
        Ok(v) => {
            eprintln!("String.to_integer(\"x\") returned {v}?");
            ok = false;
        }
        Err(e) => println!("String.to_integer(\"x\") raised {e}"),
    }
    // The other way: the peer calls Rust.
    let me = Term::Atom(node.name());
    let me_shown = format!(":\"{}\"", node.name());
    let call_back = vec![
        me.clone(),
        Term::atom("Elixir.Rusty"),
        Term::atom("add"),
        Term::List(vec![Term::from(1), Term::from(2)]),
    ];
    match node.rpc(peer, "erpc", "call", call_back, TIMEOUT).await {
        Ok(v) => println!(":erpc.call({me_shown}, Rusty, :add, [1, 2]) on {peer} = {v}"),
        Err(e) => {
            eprintln!(":erpc.call back from {peer} failed: {e}");
            ok = false;
        }
    }
    if args.serve {
        eprintln!("{} serves Rusty.add/2 (Ctrl-C to stop)", node.name());
        let _ = tokio::signal::ctrl_c().await;
    }
    node.shutdown().await;
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
