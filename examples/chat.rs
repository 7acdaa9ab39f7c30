//! A Rust member of the lesson's chat (S4): the `chat` Mix project in
//! `tests/fixtures/chat`, with no Elixir on this side.
//!
//! Joining: this node registers `Chat.TaskSupervisor`, as the `chat`
//! application does on every Elixir node, and runs as Rust code what
//! Elixir's `Task.Supervisor.async/4` asks of it. `Chat.receive_message/1`
//! prints the message, exactly its text, one per line on stdout;
//! `Chat.receive_message_for_moebi/2` prints it and answers "chicken?"
//! through the sender's chat, as `lib/chat.ex` does.
//!
//! ```text
//! $ cargo run --example chat -- --sname kate@localhost --cookie secret_token
//! ```
//!
//! and, on an Elixir node of the chat project
//! (`cd tests/fixtures/chat && iex --sname alex@localhost --cookie secret_token -S mix`):
//!
//! ```text
//! iex(alex@localhost)> Chat.send_message(:kate@localhost, "hi")
//! :ok
//! ```
//!
//! prints `hi` on the Rust side.
//!
//! Sending: `--send NODE TEXT` sends one message to NODE's chat exactly as
//! `Chat.send_message/2` does (a task on `{Chat.TaskSupervisor, NODE}`,
//! awaited as `Task.await/1` awaits it, 5 s), and exits 0 once it is
//! delivered. Sent to `moebi@localhost`, the answer ("chicken?") comes back
//! to this node's chat and is printed before it exits.
//!
//! ```text
//! $ cargo run --example chat -- --send alex@localhost "hi alex" --cookie secret_token
//! ```
//!
//! Options: `--sname NAME` (this node's name: needed to join; when sending,
//! a unique `chat_<pid>@localhost` by default), `--cookie C` (default:
//! `$HOME/.erlang.cookie`). The EPMD port is `$ERL_EPMD_PORT` (default
//! 4369). Status lines go to stderr; stdout has only the messages.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use erldist::node::gen_server::elixir_module;
use erldist::node::task::TaskSupervisor;
use erldist::{Atom, Node, Term};

#[derive(Parser)]
#[command(about = "A Rust member of the lesson's chat: join it, or send one message")]
struct Args {
    /// This node's name, e.g. kate@localhost (needed to join).
    #[arg(long)]
    sname: Option<String>,
    /// The cookie (default: $HOME/.erlang.cookie).
    #[arg(long)]
    cookie: Option<String>,
    /// Send TEXT to NODE's chat, as Chat.send_message/2 does, and exit.
    #[arg(long, num_args = 2, value_names = ["NODE", "TEXT"])]
    send: Option<Vec<String>>,
}

/// `Task.await/1`'s default timeout.
const AWAIT: Duration = Duration::from_secs(5);

/// A message as the chat prints it: the text of a binary (Elixir string).
fn text(t: Option<&Term>) -> String {
    t.map(Term::to_text).unwrap_or_default()
}

fn chat() -> Atom {
    elixir_module("Chat")
}

fn chat_sup() -> Atom {
    elixir_module("Chat.TaskSupervisor")
}

/// `Chat.send_message(recipient, message)` from `p`: a task on the
/// recipient's `Chat.TaskSupervisor`, awaited. As in `lib/chat.ex`,
/// `moebi@localhost` gets `receive_message_for_moebi(message, Node.self())`.
async fn send_message(
    p: &mut erldist::Process,
    recipient: Atom,
    message: &str,
) -> Result<Term, erldist::node::task::TaskError> {
    let (fun, args) = if recipient == Atom::from("moebi@localhost") {
        let me = Term::Atom(p.node().name());
        ("receive_message_for_moebi", vec![Term::from(message), me])
    } else {
        ("receive_message", vec![Term::from(message)])
    };
    let task = p
        .task_async((chat_sup(), recipient), chat(), fun, args)
        .await?;
    p.task_await(task, Some(AWAIT)).await
}

/// Registers `Chat.TaskSupervisor` with the chat's two functions.
fn join(node: &Node) -> Result<(), erldist::node::RegisterError> {
    TaskSupervisor::new()
        .function(chat(), "receive_message", 1, |_task, args| async move {
            println!("{}", text(args.first()));
            Ok(Term::atom("ok"))
        })
        .function(
            chat(),
            "receive_message_for_moebi",
            2,
            |mut task, args| async move {
                println!("{}", text(args.first()));
                let Some(Term::Atom(from)) = args.get(1).cloned() else {
                    return Err(Term::atom("badarg"));
                };
                send_message(&mut task, from, "chicken?")
                    .await
                    .map_err(|e| e.reason())
            },
        )
        .start(node, chat_sup())
        .map(|_| ())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let name = match (&args.sname, &args.send) {
        (Some(n), _) => n.clone(),
        (None, Some(_)) => format!("chat_{}@localhost", std::process::id()),
        (None, None) => {
            eprintln!("give --sname NAME to join the chat, or --send NODE TEXT");
            return ExitCode::from(2);
        }
    };
    let mut builder = Node::builder(&name);
    if let Some(c) = &args.cookie {
        builder = builder.cookie(c);
    }
    let node = match builder.start().await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("cannot start {name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = join(&node) {
        eprintln!("cannot register Chat.TaskSupervisor: {e}");
        return ExitCode::FAILURE;
    }
    let code = match args.send.as_deref() {
        Some([to, message]) => {
            let mut p = node.process();
            match send_message(&mut p, Atom::from(to.as_str()), message).await {
                Ok(result) => {
                    eprintln!("delivered to {to}: {result}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("cannot send to {to}: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!("{name} joined the chat (Ctrl-C to stop)");
            let _ = tokio::signal::ctrl_c().await;
            ExitCode::SUCCESS
        }
    };
    node.shutdown().await;
    code
}
