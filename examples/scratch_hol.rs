use erldist::testing::RealEpmd;
use erldist::{Node, Term};
use std::time::{Duration, Instant};

#[allow(dead_code)]
fn queues(ports: (u16, u16)) -> Vec<(String, u64, u64)> {
    // (which, tx_queue, rx_queue) for sockets between the two ports
    let s = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let mut out = vec![];
    for l in s.lines().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        let lp = u16::from_str_radix(f[1].split(':').nth(1).unwrap(), 16).unwrap();
        let rp = u16::from_str_radix(f[2].split(':').nth(1).unwrap(), 16).unwrap();
        let q: Vec<&str> = f[4].split(':').collect();
        let tx = u64::from_str_radix(q[0], 16).unwrap();
        let rx = u64::from_str_radix(q[1], 16).unwrap();
        if lp == ports.0 || rp == ports.0 || lp == ports.1 || rp == ports.1 {
            out.push((format!("{lp}->{rp}"), tx, rx));
        }
    }
    out
}

const PORT: u16 = 47001;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let epmd = RealEpmd::start().unwrap();
    let a = Node::builder("ha@localhost")
        .cookie("c")
        .epmd("localhost", epmd.port())
        .port(PORT)
        .start()
        .await
        .unwrap();
    let b = Node::builder("hb@localhost")
        .cookie("c")
        .epmd("localhost", epmd.port())
        .port(PORT + 1)
        .start()
        .await
        .unwrap();
    a.connect(b.name().as_ref()).await.unwrap();
    let _ports = (PORT + 1, PORT + 1);
    let stamp: std::sync::Arc<std::sync::Mutex<Option<Instant>>> = Default::default();
    let st = stamp.clone();
    let echo = b.spawn(move |mut p| async move {
        while let Ok(m) = p.recv().await {
            *st.lock().unwrap() = Some(Instant::now());
            if let Some([Term::Pid(f), body]) = m.as_tuple() {
                p.send(*f, body.clone());
            }
        }
    });
    let sink = b.spawn(|mut p| async move {
        while let Ok(m) = p.recv().await {
            if let Some([Term::Pid(f), _]) = m.as_tuple() {
                p.send(*f, Term::atom("done"));
            }
        }
    });
    let mut p = a.process();
    let mut q = a.process();
    let big = Term::binary(vec![1u8; 64 << 20]);
    let qpid = q.pid();
    let delay: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse().unwrap())
        .unwrap_or(0);
    let mut rtts = vec![];
    for i in 0..16 {
        let t0 = Instant::now();
        q.send(sink, Term::tuple(vec![Term::Pid(qpid), big.clone()]));
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let t = Instant::now();
        p.send(
            echo,
            Term::tuple(vec![Term::Pid(p.pid()), Term::atom("ping")]),
        );
        let _ = p.recv().await.unwrap();
        let rtt = t.elapsed();
        let there = stamp.lock().unwrap().take().unwrap() - t;
        let _ = q.recv().await.unwrap();
        let del = t0.elapsed();
        if i > 0 {
            rtts.push(rtt.as_micros());
        }
        println!(
            "rtt {:>6} us (there {:>6}) delivery {:>6} us",
            rtt.as_micros(),
            there.as_micros(),
            del.as_micros()
        );
    }
    rtts.sort();
    println!("median {}", rtts[rtts.len() / 2]);
}
