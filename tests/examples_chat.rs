//! `examples/chat.rs` (S4): a Rust chat member, run as a child process,
//! against a real Elixir node of the lesson's chat project.

#[path = "examples_common.rs"]
mod common;

use common::*;
use erldist::testing::{require_elixir, unique_name, RealEpmd};

/// Elixir's `Chat.send_message(:rust@localhost, "hi")` prints `hi` on the
/// Rust member and returns `:ok`.
#[test]
fn elixir_sends_to_the_rust_chat_member() {
    if !require_elixir() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let me = format!("{}@localhost", unique_name("kate"));
    let mut chat = Running::start("chat", &["--sname", &me, "--cookie", COOKIE], &epmd);
    assert!(
        chat.wait_stderr("joined the chat"),
        "the chat example joins"
    );
    let mut alex = chat_node("alex", &epmd);
    assert_eq!(
        eval(
            &mut alex,
            &format!("'Elixir.Chat':send_message('{me}', <<\"hi\">>).")
        ),
        "ok"
    );
    assert!(chat.wait_stdout("hi"), "the example printed hi");
    // Exactly the text, UTF-8 and spaces included, one line each.
    assert_eq!(
        eval(
            &mut alex,
            &format!("'Elixir.Chat':send_message('{me}', <<\"héllo, 世界 🐔\"/utf8>>).")
        ),
        "ok"
    );
    assert!(chat.wait_stdout("héllo, 世界 🐔"));
    assert_eq!(chat.take_stdout(), Vec::<String>::new());
}

/// `chat --send NODE TEXT` delivers to an Elixir chat node and exits 0.
#[test]
fn the_rust_chat_sends_to_elixir() {
    if !require_elixir() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let mut alex = chat_node("alex", &epmd);
    let (status, out, err) = run_example(
        "chat",
        &["--send", alex.name(), "hello from rust", "--cookie", COOKIE],
        &epmd,
    );
    assert!(status.success(), "{status}\n{out}\n{err}");
    assert!(
        alex.wait_output("hello from rust", T),
        "alex printed the message"
    );
    assert!(
        err.contains(&format!("delivered to {}: ok", alex.name())),
        "{err}"
    );
    // To a node that is not there: a clear failure, not a hang.
    let (status, _, err) = run_example(
        "chat",
        &["--send", "nobody@localhost", "x", "--cookie", COOKIE],
        &epmd,
    );
    assert!(!status.success());
    assert!(err.contains("cannot send to nobody@localhost"), "{err}");
}
