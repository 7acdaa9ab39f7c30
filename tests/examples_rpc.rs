//! `examples/rpc.rs` (S7) against a real Elixir chat node.

#[path = "examples_common.rs"]
mod common;

use common::*;
use erldist::testing::{require_elixir, unique_name, RealEpmd};

#[test]
fn rpc_calls_into_elixir_and_back() {
    if !require_elixir() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let kate = chat_node("kate", &epmd);
    let me = format!("{}@localhost", unique_name("alex"));
    let (status, out, err) = run_example(
        "rpc",
        &[kate.name(), "--sname", &me, "--cookie", COOKIE],
        &epmd,
    );
    assert!(status.success(), "{status}\n{out}\n{err}");
    let expected = format!(
        "String.upcase(\"hello\") = \"HELLO\"\n\
         Hi, my name is Kate\n\
         Kate.say_name() = ok\n\
         String.to_integer(\"x\") raised error: badarg\n\
         Rusty.add called from Elixir with [1,2]\n\
         :erpc.call(:\"{me}\", Rusty, :add, [1, 2]) on {} = 3\n",
        kate.name()
    );
    assert_eq!(out, expected, "{err}");
}
