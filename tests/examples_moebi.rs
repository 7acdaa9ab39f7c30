//! `examples/moebi.rs` (S5), run as a child process, against real Elixir
//! nodes of the lesson's chat project. moebi must be exactly
//! `moebi@localhost` for the lesson's `Chat.send_message/2` clause: each
//! test has its own EPMD, so the name is free.

#[path = "examples_common.rs"]
mod common;

use common::*;
use erldist::testing::{require_elixir, require_programs, RealEpmd};

#[test]
fn moebi_answers_chicken() {
    if !require_elixir() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let mut moebi = Running::start("moebi", &["--cookie", COOKIE], &epmd);
    assert!(moebi.wait_stderr("moebi@localhost is listening"));
    let mut alex = chat_node("alex", &epmd);
    let mut kate = chat_node("kate", &epmd);
    assert_eq!(eval(&mut alex, "net_adm:ping('moebi@localhost')."), "pong");
    assert_eq!(
        eval(
            &mut alex,
            "'Elixir.Chat':send_message('moebi@localhost', <<\"hi\">>)."
        ),
        "ok"
    );
    assert!(moebi.wait_stdout("hi"), "moebi printed hi");
    assert!(alex.wait_output("chicken?", T), "alex sees chicken?");
    // From kate: kate gets the answer, alex hears nothing more.
    assert_eq!(
        eval(
            &mut kate,
            "'Elixir.Chat':send_message('moebi@localhost', <<\"woof woof\">>)."
        ),
        "ok"
    );
    assert!(moebi.wait_stdout("woof woof"));
    assert!(kate.wait_output("chicken?", T), "kate sees chicken?");
    assert!(!alex.take_output().iter().any(|l| l == "chicken?"));
    assert_eq!(moebi.take_stdout(), Vec::<String>::new());
}

/// The Rust chat member (`examples/chat.rs`) talking to the Rust moebi:
/// `chat --send moebi@localhost hi` prints moebi's "chicken?" and exits 0.
#[test]
fn rust_chat_to_rust_moebi() {
    if !require_programs(&["epmd"]) {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let mut moebi = Running::start("moebi", &["--cookie", COOKIE], &epmd);
    assert!(moebi.wait_stderr("moebi@localhost is listening"));
    let (status, out, err) = run_example(
        "chat",
        &["--send", "moebi@localhost", "hi", "--cookie", COOKIE],
        &epmd,
    );
    assert!(status.success(), "{status}\n{out}\n{err}");
    assert_eq!(out, "chicken?\n", "{err}");
    assert!(moebi.wait_stdout("hi"));
}
