//! S2: `Node.spawn_link(:kate@localhost, fn -> Kate.say_name end)`, from Rust.
//!
//! Spawns a linked process running `Kate.say_name/0` on a BEAM node. The
//! process's group leader is a Rust group leader of this program, so the
//! text Kate prints (`IO.puts "Hi, my name is Kate"`) appears **here**, as
//! it appears on alex in the lesson. The link brings the process's exit
//! back too.
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
//! $ cargo run --example say_name -- kate@localhost --cookie secret_token
//! spawned #Pid<...> on kate@localhost
//! Hi, my name is Kate
//! #Pid<...> exited: normal
//! ```
//!
//! Options: `--sname NAME` (this node's name, default `alex@localhost`),
//! `--cookie C` (default: `$HOME/.erlang.cookie`). The EPMD port is
//! `$ERL_EPMD_PORT` (default 4369).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use erldist::node::{GroupLeaderConfig, SpawnOpts};
use erldist::{Node, Term};

#[derive(Parser)]
#[command(about = "S2: spawn_link Kate.say_name/0 on a BEAM node; its output arrives here")]
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

const TIMEOUT: Duration = Duration::from_secs(10);

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
    // The group leader: an I/O server whose output we print as it comes.
    let (tx, mut output) = tokio::sync::mpsc::unbounded_channel();
    let gl = node.start_group_leader(GroupLeaderConfig::channel(tx));
    let mut alex = node.process();
    alex.set_group_leader(gl);
    // The link's exit signal becomes a message instead of killing us.
    alex.trap_exit(true);
    let kate = match alex
        .spawn_remote(
            args.peer.as_str(),
            "Elixir.Kate",
            "say_name",
            vec![],
            SpawnOpts::new().link(),
        )
        .await
    {
        Ok(s) => s.pid,
        Err(e) => {
            eprintln!("cannot spawn Kate.say_name on {}: {e}", args.peer);
            return ExitCode::FAILURE;
        }
    };
    let shown = Term::Pid(kate);
    println!("spawned {shown} on {}", args.peer);
    // Its exit reaches us through the link, after its output (an I/O
    // request waits for the group leader's reply before the process goes
    // on), so everything it printed is in the channel by then.
    let exit = alex
        .recv_match_timeout(TIMEOUT, |m| {
            matches!(m.as_tuple(), Some([tag, Term::Pid(p), _]) if tag.is_atom("EXIT") && *p == kate)
        })
        .await;
    while let Ok(out) = output.try_recv() {
        print!("{}", out.text);
    }
    let code = match exit {
        Ok(Some(msg)) => {
            let reason = msg.as_tuple().map(|t| t[2].clone()).unwrap_or(msg);
            println!("{shown} exited: {reason}");
            if reason.is_atom("normal") {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Ok(None) => {
            eprintln!("no exit from {shown} within {TIMEOUT:?}");
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
