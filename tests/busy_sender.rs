//! A process that sends to another node and then computes for a long
//! time: what it sent goes out while it computes, when the work runs in
//! `tokio::task::block_in_place`, as the [`erldist::Node::spawn`] docs
//! advise. (Without it, the woken connection task waits on the busy
//! worker until the work is done.)

#[path = "spawn_common.rs"]
mod common;

use std::time::{Duration, Instant};

use erldist::term;
use erldist::testing::RealEpmd;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_goes_out_while_its_sender_computes_in_block_in_place() {
    let epmd = RealEpmd::start().expect("epmd");
    let (a, b) = common::connected_rust_pair(&epmd).await;
    let mut sink = b.process();
    let to = sink.pid();
    let work = Duration::from_secs(2);
    let sent = Instant::now();
    a.spawn(move |p| async move {
        p.send(to, term!(hello));
        tokio::task::block_in_place(|| {
            while sent.elapsed() < work {
                std::hint::spin_loop();
            }
        });
    });
    let got = sink
        .recv_timeout(work / 2)
        .await
        .expect("the sink is alive");
    assert_eq!(
        got,
        Some(term!(hello)),
        "delivered while the sender computes"
    );
    assert!(sent.elapsed() < work, "before the work is done");
    a.shutdown().await;
    b.shutdown().await;
}
