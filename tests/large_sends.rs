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
use erldist::testing::RealEpmd;
use erldist::Term;

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
/// not copied) and 50,000 small tuples (encoded: several fragments).
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
