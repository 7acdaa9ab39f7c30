//! An echo process for the benches' round trips (included with `#[path]`
//! by `benches/messaging.rs` and `benches/scale.rs`).

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
