//! Moebi, the dog of the lesson's chat (S5), as a Rust node.
//!
//! ```text
//! cargo run --example moebi            # moebi@localhost, cookie from ~/.erlang.cookie
//! cargo run --example moebi -- mycookie
//! ```
//!
//! Then, in the lesson's `chat` project (`tests/fixtures/chat` here):
//!
//! ```text
//! iex --sname alex@localhost -S mix
//! iex(alex@localhost)> Chat.send_message(:moebi@localhost, "hi")
//! chicken?
//! :ok
//! ```
//!
//! Moebi registers `Chat.TaskSupervisor` and runs, as Rust code, what
//! Elixir's `Task.Supervisor.async/4` asks of it: `Chat.receive_message/1`
//! prints the message; `Chat.receive_message_for_moebi/2` prints it and
//! answers "chicken?" through the sender's chat (a task on the sender's
//! `Chat.TaskSupervisor`, as `Chat.send_message(from, "chicken?")` does).

use std::process::ExitCode;
use std::time::Duration;

use erldist::node::gen_server::elixir_module;
use erldist::node::task::TaskSupervisor;
use erldist::{Node, Term};

fn text(t: Option<&Term>) -> String {
    match t {
        Some(Term::Binary(b)) => String::from_utf8_lossy(b).into_owned(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut builder = Node::builder("moebi@localhost");
    if let Some(cookie) = std::env::args().nth(1) {
        builder = builder.cookie(&cookie);
    }
    let node = match builder.start().await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("cannot start moebi@localhost: {e}");
            return ExitCode::FAILURE;
        }
    };
    let chat = elixir_module("Chat");
    let started = TaskSupervisor::new()
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
                // Chat.send_message(from, "chicken?")
                let t = task
                    .task_async(
                        (elixir_module("Chat.TaskSupervisor"), from),
                        chat,
                        "receive_message",
                        vec![Term::from("chicken?")],
                    )
                    .await
                    .map_err(|e| e.reason())?;
                task.task_await(t, Some(Duration::from_secs(5)))
                    .await
                    .map_err(|e| e.reason())
            },
        )
        .start(&node, elixir_module("Chat.TaskSupervisor"));
    if let Err(e) = started {
        eprintln!("cannot register Chat.TaskSupervisor: {e}");
        return ExitCode::FAILURE;
    }
    println!("moebi@localhost is listening (Ctrl-C to stop)");
    let _ = tokio::signal::ctrl_c().await;
    node.shutdown().await;
    ExitCode::SUCCESS
}
