//! Helpers for the spawn, RPC and group-leader tests against real nodes
//! (included by them with `#[path]`; no tests of its own).
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use erldist::testing::{unique_name, ErlNode, RealEpmd};
use erldist::{Node, Pid, Term};

pub const COOKIE: &str = "secret_token";
pub const T: Duration = Duration::from_secs(10);

pub async fn rust_node(epmd: &RealEpmd) -> Node {
    Node::builder(&format!("{}@localhost", unique_name("rust")))
        .cookie(COOKIE)
        .epmd("localhost", epmd.port())
        .embedded_epmd(false)
        .start()
        .await
        .expect("start the Rust node")
}

/// Two Rust nodes registered with `epmd`, connected to each other.
pub async fn connected_rust_pair(epmd: &RealEpmd) -> (Node, Node) {
    let a = rust_node(epmd).await;
    let b = rust_node(epmd).await;
    assert!(a.ping(b.name().as_ref()).await, "the nodes connect");
    (a, b)
}

pub fn erl(epmd: &RealEpmd) -> ErlNode {
    erl_with(epmd, &[])
}

pub fn erl_with(epmd: &RealEpmd, args: &[&str]) -> ErlNode {
    tokio::task::block_in_place(|| ErlNode::start_with("erl", epmd.port(), COOKIE, args))
        .expect("start erl")
}

/// An `erl` node that has Elixir and the lesson's `Kate` module loaded
/// (compiled with `elixirc` into a temporary directory).
pub fn erl_with_kate(epmd: &RealEpmd) -> (ErlNode, tempdir::Dir) {
    let dir = tempdir::Dir::new("kate");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat/lib/kate.ex");
    let status = std::process::Command::new("elixirc")
        .arg("-o")
        .arg(&dir.0)
        .arg(src)
        .status()
        .expect("run elixirc");
    assert!(status.success(), "elixirc kate.ex");
    let ebin = dir.0.to_string_lossy().into_owned();
    let node = erl_with(
        epmd,
        &["-pa", "/usr/lib/elixir/lib/elixir/ebin", "-pa", &ebin],
    );
    (node, dir)
}

pub mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);

    impl Dir {
        pub fn new(prefix: &str) -> Dir {
            let path = std::env::temp_dir().join(erldist::testing::unique_name(prefix));
            std::fs::create_dir_all(&path).expect("temp dir");
            Dir(path)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub fn eval(node: &mut ErlNode, expr: &str) -> String {
    tokio::task::block_in_place(|| node.eval(expr)).unwrap_or_else(|e| panic!("eval {expr}: {e}"))
}

pub fn parse(text: &str) -> Term {
    text.parse().unwrap_or_else(|e| panic!("parse {text}: {e}"))
}

/// The value of `expr` on the Erlang node, as a term (pids keep their node).
pub fn erl_term(node: &mut ErlNode, expr: &str) -> Term {
    tokio::task::block_in_place(|| node.eval_term(expr))
        .unwrap_or_else(|e| panic!("eval {expr}: {e}"))
}

/// An Erlang expression for `t` (pids included).
pub fn erl_expr(t: impl Into<Term>) -> String {
    erldist::testing::erl_literal(&t.into())
}

pub fn erl_pid(node: &mut ErlNode, expr: &str) -> Pid {
    erl_term(node, expr).try_into().expect("a pid")
}

pub fn atom(s: &str) -> Term {
    Term::atom(s)
}
