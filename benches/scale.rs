//! How erldist's costs grow: `cargo bench --bench scale`.
//!
//! Five sweeps, each printing one line per size:
//!
//! - `processes`: n idle processes on one node (spawn time, memory per
//!   process, then one message to each and the time until all have ended);
//! - `in_flight`: n small messages sent at once from one node to a sink on
//!   another (over TCP), the time until the sink has them all and the peak
//!   memory while they are in flight;
//! - `senders`: 1, 2 and 4 processes on one node sending small messages
//!   at once to a sink on another, 2,000,000 in all, and the rate;
//! - `message_size`: round trips of a binary of 1 KiB to 64 MiB between two
//!   nodes (fragmented on the wire), the same for a list of small tuples
//!   of 1 KiB to 16 MiB (`term_size`, with the time the sender spends in
//!   `send`), and the round trip of a small message sent while a 64 MiB
//!   message is on its way;
//! - `nodes`: n erldist nodes in one process forming a full mesh (every
//!   node connected to every other), the time to form it, the memory per
//!   connection, and a ping from one node to all others.
//!
//! Everything is erldist here (the BEAM comparisons are in
//! `benches/messaging.rs`); the nodes register with a private real `epmd`.
//! Without `--bench` (as `cargo test --benches` runs it) each sweep runs at
//! its smallest size only, as a smoke test.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use erldist::testing::{require_programs, unique_name, RealEpmd};
use erldist::{Node, Pid, Process, Term};

#[path = "common/round_trip.rs"]
mod round_trip;
use round_trip::{echo, item_list};

const COOKIE: &str = "scale_cookie";

fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// Samples RSS every 5 ms until dropped; `peak()` is the highest seen.
struct PeakRss {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl PeakRss {
    fn start() -> PeakRss {
        let peak = Arc::new(AtomicU64::new(rss()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        PeakRss { peak, stop }
    }

    fn peak(&self) -> u64 {
        self.peak.fetch_max(rss(), Ordering::Relaxed).max(rss())
    }
}

impl Drop for PeakRss {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

async fn start_node(epmd: &RealEpmd, prefix: &str) -> Node {
    Node::builder(&format!("{}@localhost", unique_name(prefix)))
        .cookie(COOKIE)
        .epmd("localhost", epmd.port())
        .embedded_epmd(false)
        .start()
        .await
        .expect("start a node")
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn processes(sizes: &[usize]) {
    let node = Node::local(&format!("{}@localhost", unique_name("scale_procs")));
    for &n in sizes {
        let base_count = node.process_count();
        settle().await;
        let before = rss();
        let t0 = Instant::now();
        let pids: Vec<Pid> = (0..n)
            .map(|_| {
                node.spawn(|mut p| async move {
                    let _ = p.recv().await;
                })
            })
            .collect();
        let spawn = t0.elapsed();
        settle().await;
        let per_proc = rss()
            .saturating_sub(before)
            .saturating_sub((pids.capacity() * std::mem::size_of::<Pid>()) as u64)
            / n as u64;
        let t1 = Instant::now();
        for p in &pids {
            node.send(*p, Term::atom("stop"));
        }
        while node.process_count() > base_count {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let fanout = t1.elapsed();
        println!(
            "scale=processes n={n} spawn_ns_per_process={:.0} bytes_per_process={per_proc} \
             message_and_exit_ns_per_process={:.0}",
            spawn.as_nanos() as f64 / n as f64,
            fanout.as_nanos() as f64 / n as f64
        );
    }
}

/// A sink that counts `n` messages after `{start, From}` and answers
/// `done`, again and again.
fn sink(node: &Node) -> Pid {
    node.spawn(move |mut p| async move {
        loop {
            let Ok(m) = p.recv().await else { return };
            let (from, n) = match m.as_tuple() {
                Some([t, Term::Pid(f), Term::Int(n)]) if t.is_atom("start") => (*f, *n),
                _ => continue,
            };
            for _ in 0..n {
                if p.recv().await.is_err() {
                    return;
                }
            }
            p.send(from, Term::atom("done"));
        }
    })
}

async fn wait_for(p: &mut Process, what: &str) {
    loop {
        match p.recv_timeout(Duration::from_secs(120)).await {
            Ok(Some(m)) if m.is_atom(what) => return,
            Ok(Some(_)) => continue,
            other => panic!("waiting for {what}: {other:?}"),
        }
    }
}

/// Two nodes, the first connected to the second.
async fn connected_pair(epmd: &RealEpmd) -> (Node, Node) {
    let a = start_node(epmd, "scale_a").await;
    let b = start_node(epmd, "scale_b").await;
    a.connect(b.name().as_ref()).await.expect("connect");
    (a, b)
}

/// Tells `sink` that `n` messages follow and to answer `done` to `p`.
fn start_count(p: &Process, sink: Pid, n: usize) {
    let start = vec![
        Term::atom("start"),
        Term::Pid(p.pid()),
        Term::from(n as i64),
    ];
    p.send(sink, Term::tuple(start));
}

async fn in_flight(epmd: &RealEpmd, sizes: &[usize]) {
    let (a, b) = connected_pair(epmd).await;
    let sink = sink(&b);
    let mut p = a.process();
    let msg = Term::tuple(vec![Term::atom("hello"), Term::from(42)]);
    for &n in sizes {
        settle().await;
        let before = rss();
        let peak = PeakRss::start();
        let t0 = Instant::now();
        start_count(&p, sink, n);
        for _ in 0..n {
            p.send(sink, msg.clone());
        }
        let queued = t0.elapsed();
        wait_for(&mut p, "done").await;
        let total = t0.elapsed();
        let peak_growth = peak.peak().saturating_sub(before);
        println!(
            "scale=in_flight n={n} queue_ms={:.1} drain_ms={:.1} msg_per_s={:.0} \
             peak_bytes_per_message={}",
            queued.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3,
            n as f64 / total.as_secs_f64(),
            peak_growth / n as u64
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// `k` processes on one node sending at once to a sink on another, `n`
/// small messages in all, from 1 to several senders: what the send path's
/// shared state (the peer queue and table) costs when senders on
/// different threads use it at once.
async fn senders(epmd: &RealEpmd, counts: &[usize], n: usize) {
    let (a, b) = connected_pair(epmd).await;
    let sink = sink(&b);
    let mut p = a.process();
    for &k in counts {
        settle().await;
        let t0 = Instant::now();
        // Queued to the peer before any sender's messages, so the sink
        // counts them all.
        start_count(&p, sink, n / k * k);
        for _ in 0..k {
            a.spawn(move |s| async move {
                let msg = Term::tuple(vec![Term::atom("hello"), Term::from(42)]);
                for _ in 0..n / k {
                    s.send_ref(sink, &msg);
                }
            });
        }
        wait_for(&mut p, "done").await;
        let total = t0.elapsed();
        println!(
            "scale=senders k={k} n={} ms={:.1} msg_per_s={:.0}",
            n / k * k,
            total.as_secs_f64() * 1e3,
            (n / k * k) as f64 / total.as_secs_f64()
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}

async fn round_trip(p: &mut Process, echo: Pid, body: Term) -> Duration {
    timed_round_trip(p, echo, body).await.1
}

/// A round trip through `echo`: the time spent in `send` and the time
/// until the echo is back.
async fn timed_round_trip(p: &mut Process, echo: Pid, body: Term) -> (Duration, Duration) {
    let msg = Term::tuple(vec![Term::Pid(p.pid()), body]);
    let t0 = Instant::now();
    p.send(echo, msg);
    let sent = t0.elapsed();
    match p.recv_timeout(Duration::from_secs(120)).await {
        Ok(Some(_)) => (sent, t0.elapsed()),
        other => panic!("no echo: {other:?}"),
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn message_size(epmd: &RealEpmd, sizes: &[usize]) {
    let (a, b) = connected_pair(epmd).await;
    let echo = echo(&b);
    let mut p = a.process();
    for &size in sizes {
        let body = Term::binary(vec![7u8; size]);
        let rounds = (256 << 20) / size.max(1) / 2;
        let rounds = rounds.clamp(3, 1000);
        round_trip(&mut p, echo, body.clone()).await;
        let mut rtts = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            rtts.push(round_trip(&mut p, echo, body.clone()).await);
        }
        let m = median(rtts);
        println!(
            "scale=message_size bytes={size} rounds={rounds} rtt_median_us={:.0} \
             mib_per_s_each_way={:.0}",
            m.as_secs_f64() * 1e6,
            2.0 * size as f64 / m.as_secs_f64() / (1 << 20) as f64
        );
    }
    // Terms that are not binaries (a list of small tuples) of about the
    // same sizes: every byte is encoded, and `send_us` is how long the
    // sending process spends in `send` itself.
    for &size in sizes.iter().filter(|&&s| s <= 16 << 20) {
        let body = item_list(size);
        let rounds = ((64 << 20) / size.max(1) / 2).clamp(3, 1000);
        round_trip(&mut p, echo, body.clone()).await;
        let (mut rtts, mut sends) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let (sent, rtt) = timed_round_trip(&mut p, echo, body.clone()).await;
            sends.push(sent);
            rtts.push(rtt);
        }
        let m = median(rtts);
        println!(
            "scale=term_size bytes={size} rounds={rounds} send_us={:.1} rtt_median_us={:.0} \
             mib_per_s_each_way={:.0}",
            median(sends).as_secs_f64() * 1e6,
            m.as_secs_f64() * 1e6,
            2.0 * size as f64 / m.as_secs_f64() / (1 << 20) as f64
        );
    }
    // A small message behind a large one from another process: the large
    // one goes out in fragments, and the small one need not wait for all
    // of them. The large one a binary (nothing to encode), then a list of
    // small tuples (`term`: every element encoded).
    let big = *sizes.last().unwrap_or(&(1 << 20));
    let small = Term::atom("ping");
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(round_trip(&mut p, echo, small.clone()).await);
    }
    let sink = sink(&b);
    let mut q = a.process();
    let larges = [
        ("", big, Term::binary(vec![1u8; big])),
        ("_term", big.min(16 << 20), item_list(big.min(16 << 20))),
    ];
    for (kind, bytes, large) in larges {
        let mut during = Vec::new();
        for _ in 0..5 {
            start_count(&q, sink, 1);
            let t0 = Instant::now();
            q.send_ref(sink, &large);
            during.push(round_trip(&mut p, echo, small.clone()).await);
            wait_for(&mut q, "done").await;
            let delivered = t0.elapsed();
            if during.len() == 5 {
                println!(
                    "scale=small_behind_large{kind} large_bytes={bytes} small_rtt_idle_us={:.0} \
                     small_rtt_during_us={:.0} large_delivery_us={:.0}",
                    median(idle.clone()).as_secs_f64() * 1e6,
                    median(during.clone()).as_secs_f64() * 1e6,
                    delivered.as_secs_f64() * 1e6
                );
            }
        }
    }
    a.shutdown().await;
    b.shutdown().await;
}

async fn nodes(epmd: &RealEpmd, sizes: &[usize]) {
    for &n in sizes {
        settle().await;
        let mut cluster = Vec::with_capacity(n);
        for _ in 0..n {
            cluster.push(start_node(epmd, "scale_n").await);
        }
        settle().await;
        let before = rss();
        let t0 = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, node) in cluster.iter().enumerate() {
            for other in &cluster[i + 1..] {
                let (node, peer) = (node.clone(), other.name().to_string());
                tasks.spawn(async move { node.connect(&peer).await });
            }
        }
        while let Some(r) = tasks.join_next().await {
            r.expect("join").expect("connect");
        }
        let mesh = t0.elapsed();
        settle().await;
        let connections = n * (n - 1) / 2;
        let per_conn = rss().saturating_sub(before) / connections.max(1) as u64;
        let visible: usize = cluster.iter().map(|c| c.nodes().len()).sum();
        assert_eq!(visible, n * (n - 1), "every node sees every other");
        let t1 = Instant::now();
        for other in &cluster[1..] {
            assert!(cluster[0].ping(other.name().as_ref()).await);
        }
        let ping = t1.elapsed() / (n as u32 - 1).max(1);
        println!(
            "scale=nodes n={n} connections={connections} mesh_ms={:.0} \
             bytes_per_connection_both_ends={per_conn} ping_us={:.0}",
            mesh.as_secs_f64() * 1e3,
            ping.as_secs_f64() * 1e6
        );
        for node in cluster {
            node.shutdown().await;
        }
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    if !require_programs(&["epmd"]) {
        println!("scale=all skipped reason=no epmd on PATH");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Everything runs in a task on the runtime's workers, as processes
    // started with `node.spawn` do: a process on the `block_on` thread,
    // which is not a worker, is woken across threads at every message.
    let all = async move {
        let epmd = RealEpmd::start().expect("epmd");
        let pick = |all: &'static [usize]| if full { all } else { &all[..1] };
        processes(pick(&[10_000, 100_000, 1_000_000])).await;
        in_flight(&epmd, pick(&[10_000, 100_000, 1_000_000])).await;
        let n = if full { 2_000_000 } else { 12_000 };
        senders(&epmd, if full { &[1, 2, 4] } else { &[1, 2] }, n).await;
        let sizes: &[usize] = if full {
            &[1 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20]
        } else {
            &[1 << 10, 1 << 20]
        };
        message_size(&epmd, sizes).await;
        nodes(&epmd, pick(&[10, 50, 100])).await;
    };
    rt.block_on(async { tokio::spawn(all).await.expect("the scale bench") });
}
