//! Moebi, the dog of the lesson's chat (S5), as a Rust node.
//!
//! Moebi joins the chat as `moebi@localhost`: it registers
//! `Chat.TaskSupervisor`, as the `chat` application does on every node,
//! and runs, as Rust code, what Elixir's `Task.Supervisor.async/4` asks of
//! it. Every message it receives is printed on stdout, exactly its text,
//! one per line, and every sender is answered "chicken?" through the
//! sender's own chat: `Chat.send_message(:moebi@localhost, message)` runs
//! `Chat.receive_message_for_moebi(message, sender)` here, and moebi does
//! what `lib/chat.ex` does, `Chat.send_message(sender, "chicken?")` (a task
//! on `{Chat.TaskSupervisor, sender}`, awaited).
//!
//! ```text
//! cargo run --example moebi -- --cookie secret_token
//! ```
//!
//! Then, in the lesson's `chat` project (`tests/fixtures/chat` here):
//!
//! ```text
//! $ iex --sname alex@localhost --cookie secret_token -S mix
//! iex(alex@localhost)> Node.ping(:moebi@localhost)
//! :pong
//! iex(alex@localhost)> Chat.send_message(:moebi@localhost, "hi")
//! chicken?
//! :ok
//! ```
//!
//! and moebi prints `hi`.
//!
//! Options: `--sname NAME` (default `moebi@localhost`; the lesson's
//! `Chat.send_message/2` names the sender only to `moebi@localhost`, so
//! under another name moebi prints what it receives but cannot tell whom
//! to answer), `--cookie C` (default: `$HOME/.erlang.cookie`). The EPMD
//! port is `$ERL_EPMD_PORT` (default 4369). Status lines go to stderr.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use erldist::node::gen_server::elixir_module;
use erldist::node::task::TaskSupervisor;
use erldist::{Node, Term};

#[derive(Parser)]
#[command(about = "Moebi, the dog of the lesson's chat: answers every message with chicken?")]
struct Args {
    /// This node's name.
    #[arg(long, default_value = "moebi@localhost")]
    sname: String,
    /// The cookie (default: $HOME/.erlang.cookie).
    #[arg(long)]
    cookie: Option<String>,
}

/// `Task.await/1`'s default timeout.
const AWAIT: Duration = Duration::from_secs(5);

/// A message as the chat prints it: the text of a binary (Elixir string).
fn text(t: Option<&Term>) -> String {
    t.map(Term::to_text).unwrap_or_default()
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let mut builder = Node::builder(&args.sname);
    if let Some(cookie) = &args.cookie {
        builder = builder.cookie(cookie);
    }
    let node = match builder.start().await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("cannot start {}: {e}", args.sname);
            return ExitCode::FAILURE;
        }
    };
    let chat = elixir_module("Chat");
    let chat_sup = elixir_module("Chat.TaskSupervisor");
    let started = TaskSupervisor::new()
        // Chat.send_message/2 to any other name: no sender to answer.
        .function(chat, "receive_message", 1, |_task, args| async move {
            println!("{}", text(args.first()));
            Ok(Term::atom("ok"))
        })
        .function(
            chat,
            "receive_message_for_moebi",
            2,
            move |mut task, args| async move {
                println!("{}", text(args.first()));
                let Some(Term::Atom(from)) = args.get(1).cloned() else {
                    return Err(Term::atom("badarg"));
                };
                // Chat.send_message(from, "chicken?"); the sender is not
                // moebi@localhost, so it gets receive_message/1.
                let t = task
                    .task_async(
                        (chat_sup, from),
                        chat,
                        "receive_message",
                        vec![Term::from("chicken?")],
                    )
                    .await
                    .map_err(|e| e.reason())?;
                task.task_await(t, Some(AWAIT))
                    .await
                    .map_err(|e| e.reason())
            },
        )
        .start(&node, chat_sup);
    if let Err(e) = started {
        eprintln!("cannot register Chat.TaskSupervisor: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!("{} is listening (Ctrl-C to stop)", node.name());
    let _ = tokio::signal::ctrl_c().await;
    node.shutdown().await;
    ExitCode::SUCCESS
}
