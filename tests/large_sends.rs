//! A large message sent by value to another node: the sending process
//! hands its term over, the message arrives whole, and nothing of the term
//! is kept once the message has gone (the node frees it apart from the
//! sender, after the connection has written the message).

#[path = "spawn_common.rs"]
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use erldist::testing::{unique_name, RealEpmd};
use erldist::{Node, Term};

/// A binary's bytes that report when they are freed.
struct Watched {
    bytes: Vec<u8>,
    freed: Arc<AtomicBool>,
}

impl AsRef<[u8]> for Watched {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.freed.store(true, Ordering::SeqCst);
    }
}

/// `{Binary, [{item, N} ...]}`: a 64 KiB binary (shared with the frames,
/// not copied) and 50,000 small tuples (about 500 KB, encoded by the
/// sending process).
fn message(binary: Bytes) -> Term {
    let items = (0..50_000)
        .map(|i| Term::tuple(vec![Term::atom("item"), Term::from(i)]))
        .collect();
    Term::tuple(vec![Term::Binary(binary), Term::list(items)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_message_sent_by_value_arrives_and_is_not_kept() {
    let epmd = RealEpmd::start().expect("epmd");
    let (a, b) = common::connected_rust_pair(&epmd).await;
    let freed = Arc::new(AtomicBool::new(false));
    let watched = Bytes::from_owner(Watched {
        bytes: vec![7u8; 64 << 10],
        freed: Arc::clone(&freed),
    });
    let expected = message(Bytes::from(vec![7u8; 64 << 10]));
    let mut sink = b.process();
    let to = sink.pid();
    let msg = message(watched);
    a.spawn(move |p| async move {
        p.send(to, msg);
    });
    let got = sink
        .recv_timeout(common::T)
        .await
        .expect("the sink is alive")
        .expect("the message arrives");
    assert_eq!(got, expected);
    // The sender's term and the frames that shared its binary are gone.
    let t0 = Instant::now();
    while !freed.load(Ordering::SeqCst) {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "the sent term is still held 5 s after it arrived"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Nodes that accept frames of at most 256 KiB (`max_frame_size`) send
/// each other a 1 MiB message: the sender cuts it into fragments that fit
/// (half its own limit), not into the 2 MiB frames it sends by default,
/// which the receiver would refuse by closing the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_a_small_frame_limit_exchange_large_messages() {
    const LIMIT: usize = 256 << 10;
    let epmd = RealEpmd::start().expect("epmd");
    let start = || {
        Node::builder(&format!("{}@localhost", unique_name("frames")))
            .cookie(common::COOKIE)
            .epmd("localhost", epmd.port())
            .embedded_epmd(false)
            .max_frame_size(LIMIT)
            .start()
    };
    let a = start().await.expect("start a");
    let b = start().await.expect("start b");
    assert!(a.ping(b.name().as_ref()).await, "the nodes connect");
    let big = Term::binary(vec![5u8; 1 << 20]);
    let mut sink = b.process();
    let sender = a.process();
    sender.send(sink.pid(), big.clone());
    let got = sink
        .recv_timeout(common::T)
        .await
        .expect("the sink is alive");
    assert_eq!(got, Some(big), "the message arrives");
    assert!(
        a.nodes().contains(&b.name()),
        "still connected: {:?}",
        a.nodes()
    );
    a.shutdown().await;
    b.shutdown().await;
}
