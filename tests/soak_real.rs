//! Load: many Rust processes exchange messages with three real `erl` nodes
//! for a bounded time (20 s by default; `ERLDIST_SOAK_SECS=300` for a longer
//! soak), with per-sender sequence numbers checked at every receiver.
//!
//! Three kinds of traffic run at once against every real node:
//! - Rust senders stream `{msg, Self, Seq}` to the node's `soak_check`, which
//!   checks each sender's sequence and acks every 500 messages;
//! - the node's own processes stream the same way to a Rust sink, which checks
//!   and acks the same way;
//! - Rust clients round-trip `{Self, Seq}` through the node's `soak_echo` and
//!   check that the echoes come back in order.
//!
//! Every stream ends with `{fin, Sender, Last}`, so the receivers prove there
//! was no loss (last seen = last sent), no duplication and no reordering
//! (each message is the previous one plus one). The senders keep at most
//! 2,000 messages in flight, so memory must stay flat: the test samples its
//! own resident set after a warm-up and at the end.

mod erl_eval;
use erl_eval::eval;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use erldist::testing::{require_erl, unique_name, ErlNode, RealEpmd};
use erldist::{Atom, Dest, Node, Pid, Process, Term};
use tokio::sync::mpsc;

const COOKIE: &str = "soak_cookie";
/// Receivers ack every ACK messages; senders keep at most WINDOW unacked.
const ACK: i64 = 500;
const WINDOW: i64 = 2000;
/// Echo clients keep this many round trips in flight.
const ECHO_WINDOW: i64 = 50;
/// Per real node: Rust senders, BEAM senders, Rust echo clients.
const RUST_SENDERS: usize = 4;
const BEAM_SENDERS: usize = 4;
const ECHO_CLIENTS: usize = 2;
/// How long any single wait may take before the test calls it a hang.
const HANG: Duration = Duration::from_secs(20);

fn soak_secs() -> u64 {
    std::env::var("ERLDIST_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// A temporary directory with soak_peer.beam, removed on drop.
struct Beams(PathBuf);

impl Beams {
    fn compile() -> Beams {
        let dir = std::env::temp_dir().join(unique_name("soak_beams"));
        std::fs::create_dir_all(&dir).unwrap();
        let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/soak_peer.erl");
        let ok = Command::new("erlc")
            .arg("-o")
            .arg(&dir)
            .arg(src)
            .status()
            .expect("run erlc")
            .success();
        assert!(ok, "erlc {src}");
        Beams(dir)
    }
}

impl Drop for Beams {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Resident set size of this test process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn tuple(elems: Vec<Term>) -> Term {
    Term::Tuple(elems)
}

/// `{Tag, A, B}` with an atom tag, as (A, B).
fn tagged3<'a>(t: &'a Term, tag: &str) -> Option<(&'a Term, &'a Term)> {
    match t.as_tuple()? {
        [Term::Atom(a), x, y] if a.as_str() == tag => Some((x, y)),
        _ => None,
    }
}

/// One sender's stream as seen by a receiver.
#[derive(Debug, Default, Clone, Copy)]
struct Stream {
    last: i64,
    errors: u64,
    fin: Option<i64>,
}

/// A Rust sink: checks `{msg, From, Seq}` streams, acks every ACK, and
/// returns the per-sender results once `senders` fins have arrived.
async fn sink(mut p: Process, senders: usize) -> HashMap<Pid, Stream> {
    let mut streams: HashMap<Pid, Stream> = HashMap::new();
    let mut fins = 0;
    while fins < senders {
        let m = match p.recv_timeout(HANG).await {
            Ok(Some(m)) => m,
            other => panic!("sink: no message for {HANG:?} ({other:?}); {fins} fins"),
        };
        if let Some((Term::Pid(from), Term::Int(seq))) = tagged3(&m, "msg") {
            let s = streams.entry(*from).or_default();
            if *seq != s.last + 1 {
                s.errors += 1;
            }
            s.last = *seq;
            if seq % ACK == 0 {
                p.send(*from, tuple(vec![Term::atom("ack"), Term::Int(*seq)]));
            }
        } else if let Some((Term::Pid(from), Term::Int(n))) = tagged3(&m, "fin") {
            streams.entry(*from).or_default().fin = Some(*n);
            fins += 1;
        } else {
            panic!("sink: unexpected {m}");
        }
    }
    streams
}

/// A Rust sender: streams to `to` until `until`, keeping at most WINDOW
/// unacked, then sends fin; returns the last sequence number sent.
async fn sender(mut p: Process, to: Dest, until: Instant) -> i64 {
    let me = Term::Pid(p.pid());
    let (mut seq, mut acked) = (1i64, 0i64);
    loop {
        if seq - acked > WINDOW {
            match p.recv_timeout(HANG).await {
                Ok(Some(m)) => acked = acked.max(ack_of(&m)),
                other => panic!("sender: no ack for {HANG:?} ({other:?}) at {seq}"),
            }
            continue;
        }
        if seq % ACK == 0 && Instant::now() >= until {
            p.send(
                to.clone(),
                tuple(vec![Term::atom("fin"), me, Term::Int(seq - 1)]),
            );
            return seq - 1;
        }
        p.send(
            to.clone(),
            tuple(vec![Term::atom("msg"), me.clone(), Term::Int(seq)]),
        );
        while let Some(m) = p.try_recv() {
            acked = acked.max(ack_of(&m));
        }
        seq += 1;
        if seq % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
}

fn ack_of(m: &Term) -> i64 {
    match m.as_tuple() {
        Some([Term::Atom(a), Term::Int(n)]) if a.as_str() == "ack" => *n,
        _ => panic!("sender: unexpected {m}"),
    }
}

/// A Rust echo client: round trips through `echo` with ECHO_WINDOW in
/// flight until `until`; returns (round trips, out-of-order echoes).
async fn echo_client(mut p: Process, echo: Dest, until: Instant) -> (i64, u64) {
    let me = Term::Pid(p.pid());
    let (mut sent, mut got, mut errors) = (0i64, 0i64, 0u64);
    while sent < ECHO_WINDOW {
        sent += 1;
        p.send(echo.clone(), tuple(vec![me.clone(), Term::Int(sent)]));
    }
    while got < sent {
        let m = match p.recv_timeout(HANG).await {
            Ok(Some(m)) => m,
            other => panic!("echo client: no echo for {HANG:?} ({other:?})"),
        };
        match m.as_tuple() {
            Some([Term::Atom(a), Term::Int(n)]) if a.as_str() == "echo" => {
                got += 1;
                if *n != got {
                    errors += 1;
                }
            }
            _ => panic!("echo client: unexpected {m}"),
        }
        if Instant::now() < until {
            sent += 1;
            p.send(echo.clone(), tuple(vec![me.clone(), Term::Int(sent)]));
        }
    }
    (got, errors)
}

/// Waits for a spawned result, calling a missing one a hang.
async fn take<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str, secs: u64) -> T {
    let wait = Duration::from_secs(secs) + HANG * 2;
    match tokio::time::timeout(wait, rx.recv()).await {
        Ok(Some(v)) => v,
        _ => panic!("{what}: no result within {wait:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_three_real_nodes_loses_duplicates_and_reorders_nothing() {
    if !require_erl() {
        return;
    }
    let secs = soak_secs();
    let beams = Beams::compile();
    let epmd = RealEpmd::start().unwrap();
    let pa = beams.0.to_string_lossy().into_owned();
    let mut peers: Vec<ErlNode> = (0..3)
        .map(|_| {
            tokio::task::block_in_place(|| {
                ErlNode::start_with("soak", epmd.port(), COOKIE, &["-pa", &pa])
            })
            .expect("start erl")
        })
        .collect();
    let node = Node::builder(&format!("{}@localhost", unique_name("rust_soak")))
        .cookie(COOKIE)
        .epmd("localhost", epmd.port())
        .embedded_epmd(false)
        .start()
        .await
        .expect("start the Rust node");
    for peer in &mut peers {
        assert_eq!(eval(peer, "soak_peer:start()."), "ok");
        node.connect(peer.name()).await.expect("connect");
    }

    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    let (sink_tx, mut sink_rx) = mpsc::unbounded_channel();
    let (send_tx, mut send_rx) = mpsc::unbounded_channel();
    let (echo_tx, mut echo_rx) = mpsc::unbounded_channel();
    for (i, peer) in peers.iter_mut().enumerate() {
        let peer_name = Atom::from(peer.name());
        // The BEAM side streams to a Rust sink registered for it.
        let sink_name = format!("soak_sink_{i}");
        let tx = sink_tx.clone();
        let pid = node.spawn(move |p| async move {
            let _ = tx.send(sink(p, BEAM_SENDERS).await);
        });
        node.register(sink_name.as_str(), pid).unwrap();
        for _ in 0..RUST_SENDERS {
            let tx = send_tx.clone();
            let to = Dest::Remote(Atom::from("soak_check"), peer_name);
            node.spawn(move |p| async move {
                let _ = tx.send(sender(p, to, until).await);
            });
        }
        for _ in 0..ECHO_CLIENTS {
            let tx = echo_tx.clone();
            let to = Dest::Remote(Atom::from("soak_echo"), peer_name);
            node.spawn(move |p| async move {
                let _ = tx.send(echo_client(p, to, until).await);
            });
        }
        let expr = format!(
            "soak_peer:stream({{'{sink_name}', '{}'}}, {}, {BEAM_SENDERS}).",
            node.name(),
            secs * 1000
        );
        assert_eq!(eval(peer, &expr), "ok");
    }

    // Memory after a warm-up, then at the end of the traffic.
    tokio::time::sleep(Duration::from_secs(secs / 4 + 1)).await;
    let warm_rss = rss();
    let mut sent_by_rust = 0i64;
    for _ in 0..peers.len() * RUST_SENDERS {
        sent_by_rust += take(&mut send_rx, "Rust sender", secs).await;
    }
    let end_rss = rss();

    // Every Rust sink got every BEAM stream whole and in order.
    let mut got_by_rust = 0i64;
    for _ in 0..peers.len() {
        let streams = take(&mut sink_rx, "Rust sink", secs).await;
        assert_eq!(streams.len(), BEAM_SENDERS, "{streams:?}");
        for (from, s) in streams {
            assert_eq!(s.errors, 0, "reordered/duplicated from {from}: {s:?}");
            assert_eq!(s.fin, Some(s.last), "lost from {from}: {s:?}");
            assert!(s.last > 0, "{from} sent nothing");
            got_by_rust += s.last;
        }
    }
    // Every echo came back in order.
    let mut round_trips = 0i64;
    for _ in 0..peers.len() * ECHO_CLIENTS {
        let (n, errors) = take(&mut echo_rx, "echo client", secs).await;
        assert_eq!(errors, 0, "echoes out of order");
        assert!(n > 0);
        round_trips += n;
    }
    // Every BEAM checker saw every Rust stream whole and in order: poll
    // until the fins have arrived.
    let mut got_by_beam = 0i64;
    for peer in &mut peers {
        let mut report = String::new();
        let done = erldist::testing::wait_until(HANG, || {
            report = tokio::task::block_in_place(|| peer.eval("soak_peer:report().")).unwrap();
            !report.contains("none")
        });
        assert!(done, "fins missing at {}: {report}", peer.name());
        let entries = match report.parse::<Term>().unwrap() {
            Term::List(v) => v,
            other => panic!("report {other}"),
        };
        assert_eq!(entries.len(), RUST_SENDERS, "{report}");
        for e in entries {
            let [Term::Int(last), Term::Int(errors), Term::Int(fin)] =
                e.as_tuple().expect("a tuple")
            else {
                panic!("report entry {e}");
            };
            assert_eq!(*errors, 0, "reordered/duplicated at {}: {e}", peer.name());
            assert_eq!(last, fin, "lost at {}: {e}", peer.name());
            got_by_beam += last;
        }
    }
    assert_eq!(got_by_beam, sent_by_rust);

    let elapsed = start.elapsed().as_secs_f64();
    let total = got_by_beam + got_by_rust + 2 * round_trips;
    eprintln!(
        "soak: {secs} s, 3 real nodes: {sent_by_rust} Rust->BEAM, {got_by_rust} BEAM->Rust, \
         {round_trips} round trips; {total} messages, {:.0} msg/s; rss {} MiB after warm-up, \
         {} MiB at the end",
        total as f64 / elapsed,
        warm_rss >> 20,
        end_rss >> 20
    );
    // Flat memory: bounded windows mean nothing may pile up. Allow the
    // allocator some slack, not growth with the message count.
    assert!(
        end_rss <= warm_rss + warm_rss / 2 + (16 << 20),
        "memory grew: {warm_rss} -> {end_rss}"
    );
    node.shutdown().await;
    for mut peer in peers {
        peer.kill();
    }
}
