//! What the benches' round trips share: an echo process and a large term
//! made of small ones (included with `#[path]` by `benches/messaging.rs`
//! and `benches/scale.rs`).

use erldist::{Node, Pid, Term};

/// An erldist echo: `{From, M}` -> `From ! M`, the message moved back out
/// of the tuple (not copied, as a BEAM echo does not copy it either).
pub fn echo(node: &Node) -> Pid {
    node.spawn(|mut p| async move {
        while let Ok(m) = p.recv().await {
            if let Term::Tuple(v) = m {
                let mut v = v.into_iter();
                if let (Some(Term::Pid(from)), Some(body)) = (v.next(), v.next()) {
                    p.send(from, body);
                }
            }
        }
    })
}

/// A list of `bytes / 26` small tuples, `{item, N, <<"abcdefgh">>}` with N
/// from 1,000,001 (26 bytes of ETF each): every element is encoded and
/// decoded, unlike a binary's bytes. `bench_peer:large_term/1` builds the
/// same.
pub fn item_list(bytes: usize) -> Term {
    Term::list(
        (1..=bytes / 26)
            .map(|i| {
                Term::tuple(vec![
                    Term::atom("item"),
                    Term::from(1_000_000 + i as i64),
                    Term::binary(&b"abcdefgh"[..]),
                ])
            })
            .collect(),
    )
}
