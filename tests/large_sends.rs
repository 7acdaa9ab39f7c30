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
    Term::tuple(vec![Term::Binary(binary.into()), Term::list(items)])
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

/// Nodes that accept frames of at most `max_frame_size` send each other
/// messages larger than that: the sender cuts them into fragments that
/// fit (half its own limit), not into the frames of up to 2 MiB it sends
/// by default, which the receiver would refuse by closing the connection.
/// With a 256 KiB limit, a 1 MiB binary (its bytes shared with the frames);
/// with 48 KiB, a list of binaries encoded into one buffer of 60 KiB
/// (no binary large enough to be shared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_with_a_small_frame_limit_exchange_large_messages() {
    let epmd = RealEpmd::start().expect("epmd");
    let pieces = Term::list((0..5).map(|i| Term::binary(vec![i; 12 << 10])).collect());
    for (limit, msg) in [
        (256 << 10, Term::binary(vec![5u8; 1 << 20])),
        (48 << 10, pieces),
    ] {
        let start = || {
            Node::builder(&format!("{}@localhost", unique_name("frames")))
                .cookie(common::COOKIE)
                .epmd("localhost", epmd.port())
                .embedded_epmd(false)
                .max_frame_size(limit)
                .start()
        };
        let a = start().await.expect("start a");
        let b = start().await.expect("start b");
        assert!(a.ping(b.name().as_ref()).await, "the nodes connect");
        let mut sink = b.process();
        let sender = a.process();
        sender.send(sink.pid(), msg.clone());
        let got = sink
            .recv_timeout(common::T)
            .await
            .expect("the sink is alive");
        assert_eq!(got, Some(msg), "the message arrives (limit {limit})");
        assert!(
            a.nodes().contains(&b.name()),
            "still connected (limit {limit}): {:?}",
            a.nodes()
        );
        a.shutdown().await;
        b.shutdown().await;
    }
}

/// While one process streams a large binary to another node, another
/// process's round trip to that node goes between its fragments: the reply
/// comes back before the large message has been delivered, every time.
/// (Before the connection tasks gave other tasks a turn, the reply waited
/// for the whole large message in about one round trip of four: the
/// process it woke sat in a worker's next-task slot, behind a task that
/// never had to wait.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_round_trip_is_not_held_up_by_a_large_message() {
    let epmd = RealEpmd::start().expect("epmd");
    let (a, b) = common::connected_rust_pair(&epmd).await;
    let echo = b.spawn(|mut p| async move {
        while let Ok(m) = p.recv().await {
            if let Some([Term::Pid(from), body]) = m.as_tuple() {
                p.send(*from, body.clone());
            }
        }
    });
    let sink = b.spawn(|mut p| async move {
        while let Ok(m) = p.recv().await {
            if let Some([Term::Pid(from), Term::Binary(b)]) = m.as_tuple() {
                p.send(*from, Term::from(b.len() as i64));
            }
        }
    });
    let large = Term::binary(vec![1u8; 32 << 20]);
    let mut streamer = a.process();
    let mut pinger = a.process();
    let (s, me) = (streamer.pid(), pinger.pid());
    // In tasks on the workers, as node.spawn runs processes.
    tokio::spawn(async move {
        for round in 0..10 {
            streamer.send(sink, Term::tuple(vec![Term::Pid(s), large.clone()]));
            pinger.send(echo, Term::tuple(vec![Term::Pid(me), Term::from(round)]));
            let reply = pinger.recv().await.expect("the echo's reply");
            assert_eq!(reply, Term::from(round));
            // The large message is not there yet.
            let early = streamer.recv_timeout(Duration::ZERO).await.expect("alive");
            assert_eq!(
                early, None,
                "round {round}: the reply waited for the large message"
            );
            let size = streamer.recv().await.expect("the sink's answer");
            assert_eq!(size, Term::from(32i64 << 20));
        }
    })
    .await
    .expect("the rounds");
    a.shutdown().await;
    b.shutdown().await;
}
