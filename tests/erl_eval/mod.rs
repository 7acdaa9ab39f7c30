//! Evaluating Erlang on a real node from an async test. `ErlNode::eval`
//! blocks, so it runs in place on the (multi-thread) runtime's worker.
#![allow(dead_code)]

use erldist::testing::ErlNode;
use erldist::Term;

/// The text of `expr`'s value on `node`; panics, naming `expr`, if the
/// node cannot evaluate it.
pub fn eval(node: &mut ErlNode, expr: &str) -> String {
    tokio::task::block_in_place(|| node.eval(expr)).unwrap_or_else(|e| panic!("eval {expr}: {e}"))
}

/// `expr`'s value on `node` as a term (pids keep their node).
pub fn erl_term(node: &mut ErlNode, expr: &str) -> Term {
    tokio::task::block_in_place(|| node.eval_term(expr))
        .unwrap_or_else(|e| panic!("eval {expr}: {e}"))
}
