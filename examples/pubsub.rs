//! Phoenix.PubSub from Rust: subscribes to a topic of an Elixir node's
//! PubSub, prints what is broadcast there, and broadcasts a message of
//! its own.
//!
//! The peer runs `Phoenix.PubSub` with the default PG2 adapter, e.g. a
//! Phoenix application (`MyApp.PubSub`), or the stand-in in
//! `tests/fixtures/pubsub`:
//!
//! ```text
//! cd tests/fixtures/pubsub && iex --sname kate@localhost --cookie secret_token -S mix
//! iex> PubSubFixture.start(MyApp.PubSub)
//! iex> Phoenix.PubSub.subscribe(MyApp.PubSub, "room:lobby")
//! ```
//!
//! then:
//!
//! ```text
//! $ cargo run --example pubsub -- kate@localhost --cookie secret_token --say hello
//! ```
//!
//! It prints `sent {:rust_says, "hello"}`, and the iex shell's `flush()`
//! shows `{:rust_says, "hello"}`; then
//! `Phoenix.PubSub.broadcast(MyApp.PubSub, "room:lobby", {:new_msg, "hi"})`
//! in iex prints `received: {:new_msg, "hi"}` here.
//!
//! Options: `--pubsub NAME` (default `MyApp.PubSub`), `--topic T`
//! (default `room:lobby`), `--say TEXT` (broadcast `{:rust_says, TEXT}`
//! once subscribed), `--count N` (exit after N messages; default: run
//! until Ctrl-C), `--sname NAME` (default `alex@localhost`), `--cookie C`
//! (default: `$HOME/.erlang.cookie`). The EPMD port is `$ERL_EPMD_PORT`
//! (default 4369).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use erldist::node::pubsub::PubSub;
use erldist::{Atom, Node, Term};

#[derive(Parser)]
#[command(about = "Subscribe to and broadcast on an Elixir node's Phoenix.PubSub")]
struct Args {
    /// The node running Phoenix.PubSub, e.g. kate@localhost.
    peer: String,
    /// The PubSub's name.
    #[arg(long, default_value = "MyApp.PubSub")]
    pubsub: String,
    /// The topic.
    #[arg(long, default_value = "room:lobby")]
    topic: String,
    /// Broadcast {:rust_says, TEXT} once subscribed.
    #[arg(long)]
    say: Option<String>,
    /// Exit after this many messages (default: run until Ctrl-C).
    #[arg(long)]
    count: Option<usize>,
    /// This node's name.
    #[arg(long, default_value = "alex@localhost")]
    sname: String,
    /// The cookie (default: $HOME/.erlang.cookie).
    #[arg(long)]
    cookie: Option<String>,
}

/// A term as Elixir's `inspect` shows the common cases: `{:new_msg,
/// "hi"}`; others as Erlang writes them.
fn inspect(t: &Term) -> String {
    let join = |items: &[Term]| items.iter().map(inspect).collect::<Vec<_>>().join(", ");
    match t {
        Term::Binary(b) => match std::str::from_utf8(b) {
            Ok(s) => format!("{s:?}"),
            Err(_) => t.to_string(),
        },
        Term::Atom(a) => match a.as_str() {
            "nil" | "true" | "false" => a.as_str().to_owned(),
            s if s.starts_with("Elixir.") => s.trim_start_matches("Elixir.").to_owned(),
            s if s.chars().all(|c| c.is_alphanumeric() || c == '_') => format!(":{s}"),
            s => format!(":{s:?}"),
        },
        Term::Tuple(items) => format!("{{{}}}", join(items)),
        Term::List(items) => format!("[{}]", join(items)),
        other => other.to_string(),
    }
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
    let pubsub = match PubSub::start(&node, &args.pubsub).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot start {}: {e}", args.pubsub);
            return ExitCode::FAILURE;
        }
    };
    let mut sub = match pubsub.subscriber(&args.topic) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot subscribe: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = node.connect(&args.peer).await {
        eprintln!("cannot connect to {}: {e}", args.peer);
        return ExitCode::FAILURE;
    }
    // The peer's PubSub worker shows in the `:pg` scope once the two
    // scopes have synced: from then on, broadcasts go both ways.
    let peer = Atom::from(args.peer.as_str());
    let adapter = Term::Atom(pubsub.groups().first().copied().unwrap_or(pubsub.name()));
    let synced = async {
        while !pubsub
            .pg()
            .get_members(&adapter)
            .iter()
            .any(|p| p.node == peer)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(10), synced)
        .await
        .is_err()
    {
        eprintln!("{} runs no {} (PG2 adapter)", args.peer, args.pubsub);
        return ExitCode::FAILURE;
    }
    eprintln!(
        "subscribed to {} on {} ({})",
        args.topic, args.pubsub, args.peer
    );
    if let Some(text) = &args.say {
        let msg = Term::Tuple(vec![Term::atom("rust_says"), Term::from(text.as_str())]);
        // Not to ourselves: Elixir's subscribers get it.
        pubsub.broadcast_from(sub.pid(), &args.topic, msg.clone());
        println!("sent {}", inspect(&msg));
    }
    let mut seen = 0;
    while args.count.map_or(true, |n| seen < n) {
        let msg = tokio::select! {
            m = sub.recv() => m,
            _ = tokio::signal::ctrl_c() => break,
        };
        match msg {
            Ok(m) => println!("received: {}", inspect(&m)),
            Err(e) => {
                eprintln!("subscriber ended: {e}");
                break;
            }
        }
        seen += 1;
    }
    node.shutdown().await;
    ExitCode::SUCCESS
}
