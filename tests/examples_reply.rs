//! `examples/reply.rs` (S3) against a real Elixir chat node.

#[path = "examples_common.rs"]
mod common;

use common::*;
use erldist::testing::{require_elixir, unique_name, RealEpmd};

#[test]
fn reply_receives_sup() {
    if !require_elixir() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let kate = chat_node("kate", &epmd);
    let me = format!("{}@localhost", unique_name("alex"));
    let (status, out, err) = run_example(
        "reply",
        &[kate.name(), "--sname", &me, "--cookie", COOKIE],
        &epmd,
    );
    assert!(status.success(), "{status}\n{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("spawned #Pid<"), "{out}");
    assert!(
        lines[1].starts_with("sent {hi,#Pid<") && lines[1].contains(&me),
        "{out}"
    );
    assert_eq!(lines[2], "received 'sup?'");
}

#[test]
fn reply_fails_cleanly_without_the_peer() {
    if !require_elixir() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let me = format!("{}@localhost", unique_name("alex"));
    let (status, out, err) = run_example(
        "reply",
        &["nobody@localhost", "--sname", &me, "--cookie", COOKIE],
        &epmd,
    );
    assert!(!status.success(), "{out}\n{err}");
    assert!(
        err.contains("cannot spawn Kate.reply on nobody@localhost"),
        "{err}"
    );
}
