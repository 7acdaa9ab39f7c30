//! S3: send `{:hi, self()}` to a process spawned on a BEAM node and receive
//! `:sup?` back.
//!
//! Spawns `Kate.reply/0` on the peer; it waits for `{:hi, pid}` and answers
//! `send(pid, :sup?)`. This program's process has a PID and a mailbox: it
//! sends `{hi, Pid}` and receives `sup?` selectively, with a timeout (what
//! `flush()` shows on alex in the lesson).
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
//! $ cargo run --example reply -- kate@localhost --cookie secret_token
//! spawned #Pid<...> on kate@localhost
//! sent {hi,#Pid<...>}
//! received 'sup?'
//! ```
//!
//! Options: `--sname NAME` (this node's name, default `alex@localhost`),
//! `--cookie C` (default: `$HOME/.erlang.cookie`). The EPMD port is
//! `$ERL_EPMD_PORT` (default 4369).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use erldist::node::SpawnOpts;
use erldist::{Node, Term};

#[derive(Parser)]
#[command(about = "S3: send {hi, self} to Kate.reply/0 on a BEAM node and receive sup?")]
struct Args {
    /// The BEAM node running the chat project, e.g. kate@localhost.
    peer: String,
    /// This node's name.
    #[arg(long, default_value = "alex@localhost")]
    sname: String,
    /// The cookie (default: $HOME/.erlang.cookie).
    #[arg(long)]
    cookie: Option<String>,
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
    let mut alex = node.process();
    let kate = match alex
        .spawn_remote(
            args.peer.as_str(),
            "Elixir.Kate",
            "reply",
            vec![],
            SpawnOpts::new(),
        )
        .await
    {
        Ok(s) => s.pid,
        Err(e) => {
            eprintln!("cannot spawn Kate.reply on {}: {e}", args.peer);
            return ExitCode::FAILURE;
        }
    };
    println!("spawned {} on {}", Term::Pid(kate), args.peer);
    let hi = Term::Tuple(vec![Term::atom("hi"), Term::Pid(alex.pid())]);
    alex.send(kate, hi.clone());
    println!("sent {hi}");
    // receive do :sup? -> ... after 5000 -> ... end
    let code = match alex
        .recv_match_timeout(TIMEOUT, |m| m.is_atom("sup?"))
        .await
    {
        Ok(Some(msg)) => {
            println!("received {msg}");
            ExitCode::SUCCESS
        }
        Ok(None) => {
            eprintln!("no sup? within {TIMEOUT:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("exited: {e:?}");
            ExitCode::FAILURE
        }
    };
    node.shutdown().await;
    code
}
