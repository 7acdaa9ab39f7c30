//! `examples/say_name.rs` (S2) against a real Elixir chat node.

#[path = "examples_common.rs"]
mod common;

use common::*;
use erldist::testing::{require_elixir, unique_name, RealEpmd};

#[test]
fn say_name_prints_kates_name_here() {
    if !require_elixir() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let kate = chat_node("kate", &epmd);
    let me = format!("{}@localhost", unique_name("alex"));
    let (status, out, err) = run_example(
        "say_name",
        &[kate.name(), "--sname", &me, "--cookie", COOKIE],
        &epmd,
    );
    assert!(status.success(), "{status}\n{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("spawned #Pid<")
            && lines[0].ends_with(&format!(" on {}", kate.name())),
        "{out}"
    );
    assert_eq!(lines[1], "Hi, my name is Kate");
    assert!(lines[2].ends_with(" exited: normal"), "{out}");
    // The same pid spawned and exited.
    assert_eq!(
        lines[0].split(' ').nth(1),
        lines[2].split(' ').next(),
        "{out}"
    );
}
