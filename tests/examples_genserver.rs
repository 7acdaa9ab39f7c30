//! `examples/genserver.rs`: a Rust GenServer that Elixir calls, and Rust
//! calling an Elixir GenServer, against a real Elixir chat node.

#[path = "examples_common.rs"]
mod common;

use common::*;
use erldist::testing::{require_elixir, unique_name, RealEpmd};

#[test]
fn genserver_through_the_peer() {
    if !require_elixir() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let kate = chat_node("kate", &epmd);
    let me = format!("{}@localhost", unique_name("counter"));
    let (status, out, err) = run_example(
        "genserver",
        &[kate.name(), "--sname", &me, "--cookie", COOKIE],
        &epmd,
    );
    assert!(status.success(), "{status}\n{out}\n{err}");
    let k = kate.name();
    let expected = format!(
        "GenServer.call({{Chat.TaskSupervisor, :\"{k}\"}}, :which_children) = []\n\
         handle_call {{add,2}} from {k}\n\
         {k}: GenServer.call({{Counter, :\"{me}\"}}, {{:add, 2}}) = 2\n\
         handle_call {{add,3}} from {k}\n\
         {k}: GenServer.call({{Counter, :\"{me}\"}}, {{:add, 3}}) = 5\n\
         handle_cast {{add,10}}\n\
         handle_call get from {k}\n\
         {k}: GenServer.call({{Counter, :\"{me}\"}}, :get) = 15\n"
    );
    assert_eq!(out, expected, "{err}");
}

/// Serving: Elixir's `GenServer.call/2` and `cast/2` from the chat node's
/// shell reach the Rust counter.
#[test]
fn elixir_calls_the_serving_genserver() {
    if !require_elixir() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let me = format!("{}@localhost", unique_name("counter"));
    let mut server = Running::start("genserver", &["--sname", &me, "--cookie", COOKIE], &epmd);
    assert!(server.wait_stderr("serves Counter"));
    let mut kate = chat_node("kate", &epmd);
    let call = |kate: &mut erldist::testing::ErlNode, req: &str| {
        eval(
            kate,
            &format!("'Elixir.GenServer':call({{'Elixir.Counter', '{me}'}}, {req})."),
        )
    };
    assert_eq!(call(&mut kate, "{add, 2}"), "2");
    assert!(server.wait_stdout(&format!("handle_call {{add,2}} from {}", kate.name())));
    assert_eq!(
        eval(
            &mut kate,
            &format!("'Elixir.GenServer':cast({{'Elixir.Counter', '{me}'}}, {{add, 40}}).")
        ),
        "ok"
    );
    assert_eq!(call(&mut kate, "get"), "42");
    assert_eq!(call(&mut kate, "nonsense"), "{error,badarg}");
    // A name the Rust node does not have: noproc, as in Elixir.
    let got = eval(
        &mut kate,
        &format!("catch 'Elixir.GenServer':call({{'Elixir.Nobody', '{me}'}}, get)."),
    );
    assert!(got.starts_with("{'EXIT',{noproc,"), "{got}");
}
