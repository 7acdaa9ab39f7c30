//! The scenarios of `benches/messaging.rs`: setup, the erldist variant of
//! each (timed here) and the BEAM variant (timed in `bench_peer.erl`).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use erldist::testing::{unique_name, ErlNode, RealEpmd};
use erldist::{Atom, Node, Pid, Term};

use crate::corpus;
use crate::edp::{self, Edp, Runs};

const COOKIE: &str = "bench_cookie";

/// Set in the child process that measures erldist's process memory.
pub const MEMORY_CHILD_ENV: &str = "ERLDIST_BENCH_MEMORY_CHILD";

/// Set (to `edp`) in the memory child that measures edp_node's processes.
const MEMORY_CHILD_IMPL_ENV: &str = "ERLDIST_BENCH_MEMORY_CHILD_IMPL";

/// Counts and repetitions: the full run, or a smoke test.
struct Plan {
    runs: usize,
    small: usize,
    kb: usize,
    mb: usize,
    /// `send_16mb`: binaries of 16 MiB per run.
    mb16: usize,
    mixed: usize,
    rounds: usize,
    servers: usize,
    call_ms: u64,
    connects: usize,
    procs: usize,
    /// `large_terms`: the message's size in bytes, and round trips per run.
    large: (usize, usize),
    /// `small_behind_large`: the large binary's size in bytes, and rounds
    /// per run.
    behind: (usize, usize),
    /// `pingpong_rtt` in bursts: pairs of blocks, and timed round trips
    /// per block.
    bursts: (usize, usize),
}

const FULL: Plan = Plan {
    runs: 5,
    small: 1_000_000,
    kb: 100_000,
    mb: 1_000,
    mb16: 25,
    mixed: 100_000,
    rounds: 10_000,
    servers: 120,
    call_ms: 2_000,
    connects: 7,
    procs: 100_000,
    large: (1 << 20, 20),
    behind: (64 << 20, 5),
    bursts: (20, 250),
};

const SMOKE: Plan = Plan {
    runs: 1,
    small: 1_000,
    kb: 100,
    mb: 2,
    mb16: 1,
    mixed: 3_000,
    rounds: 100,
    servers: 120,
    call_ms: 100,
    connects: 1,
    procs: 1_000,
    large: (64 << 10, 3),
    behind: (1 << 20, 2),
    bursts: (2, 50),
};

struct Env {
    a: ErlNode,
    b: ErlNode,
    r1: Node,
    r2: Node,
    /// edp_node's node connected to A, or why it could not be set up.
    edp: Result<Edp, String>,
    /// Where `erlc` put bench_peer.beam; removed at the end.
    dir: PathBuf,
    // Dropped last: the nodes above deregister from it.
    _epmd: RealEpmd,
}

fn parse(text: &str) -> Term {
    text.parse()
        .unwrap_or_else(|e| panic!("parse {text}: {e:?}"))
}

fn eval(node: &mut ErlNode, expr: &str) -> String {
    tokio::task::block_in_place(|| node.eval(expr)).unwrap_or_else(|e| panic!("eval {expr}: {e}"))
}

fn eval_i64(node: &mut ErlNode, expr: &str) -> i64 {
    parse(&eval(node, expr))
        .as_i64()
        .unwrap_or_else(|| panic!("{expr}: not an integer"))
}

/// The value of `expr` on the Erlang node, through term_to_binary (so pids
/// keep their node).
fn erl_term(node: &mut ErlNode, expr: &str) -> Term {
    let expr = expr.trim_end_matches('.');
    let bin = parse(&eval(node, &format!("term_to_binary(({expr})).")));
    Term::decode(bin.as_binary().expect("a binary")).expect("decode")
}

fn erl_pid(node: &mut ErlNode, expr: &str) -> Pid {
    erl_term(node, expr).try_into().expect("a pid")
}

/// An Erlang expression for `t` (pids included): binary_to_term of its bytes.
fn erl_expr(t: impl Into<Term>) -> String {
    let bytes = t.into().encode().expect("encode");
    let list: Vec<String> = bytes.iter().map(u8::to_string).collect();
    format!("binary_to_term(<<{}>>)", list.join(","))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn fmt_runs(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// ` edp runs [..]` for a `#` line (nothing when edp does not apply).
fn edp_runs_text(edp: &Runs) -> String {
    match edp {
        Runs::Ok(v) | Runs::Failed(v, _) => format!(" edp runs [{}]", fmt_runs(v)),
        Runs::NotApplicable(_) => String::new(),
    }
}

/// Prints the summary line; `higher_better` picks the ratio's direction
/// (also for `ratio_edp`, erldist against edp_node).
fn report(
    name: &str,
    unit: &str,
    rust: Vec<f64>,
    beam: Vec<f64>,
    edp: &Runs,
    higher_better: bool,
    extra: &str,
) {
    println!(
        "# {name}: erldist runs [{}] beam runs [{}]{} {unit}",
        fmt_runs(&rust),
        fmt_runs(&beam),
        edp_runs_text(edp)
    );
    match edp {
        Runs::NotApplicable(why) => println!("# {name}: edp=n/a: {why}"),
        Runs::Failed(_, why) => println!("# {name}: edp=failed: {why}"),
        Runs::Ok(_) => {}
    }
    let (r, b) = (median(rust), median(beam));
    let ratio = if higher_better { r / b } else { b / r };
    let edp_field = match edp {
        Runs::Ok(v) if !v.is_empty() => {
            let e = median(v.clone());
            let re = if higher_better { r / e } else { e / r };
            format!(" edp={e:.0} ratio_edp={re:.2}")
        }
        Runs::Failed(..) => " edp=failed".to_owned(),
        _ => " edp=n/a".to_owned(),
    };
    let line = format!(
        "scenario={name} erldist={r:.0} beam={b:.0} ratio={ratio:.2}{edp_field} unit={unit}{extra}"
    );
    println!("{line}");
    SUMMARY.with(|s| s.borrow_mut().push(line));
}

/// The ` erldist_anon=<median> ratio_edp_anon=<r>` fields of a stream
/// that edp ran (nothing otherwise), after a `#` line with their runs:
/// erldist's streams from no process, which like edp's carry no sender
/// (higher is better).
fn anon_field(name: &str, unit: &str, anon: &[f64], edp: &Runs) -> String {
    let Runs::Ok(e) = edp else {
        return String::new();
    };
    if anon.is_empty() || e.is_empty() {
        return String::new();
    }
    println!("# {name}: erldist_anon runs [{}] {unit}", fmt_runs(anon));
    let (a, e) = (median(anon.to_vec()), median(e.clone()));
    format!(" erldist_anon={a:.0} ratio_edp_anon={:.2}", a / e)
}

thread_local! {
    static SUMMARY: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

async fn start_rust(port: u16, prefix: &str) -> Node {
    Node::builder(&format!("{}@localhost", unique_name(prefix)))
        .cookie(COOKIE)
        .epmd("localhost", port)
        .embedded_epmd(false)
        .start()
        .await
        .expect("start an erldist node")
}

fn compile_peer() -> PathBuf {
    let dir = std::env::temp_dir().join(unique_name("erldist_bench"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/messaging/bench_peer.erl"
    );
    let ok = Command::new("erlc")
        .arg("-o")
        .arg(&dir)
        .arg(src)
        .status()
        .expect("run erlc")
        .success();
    assert!(ok, "erlc {src} failed");
    dir
}

/// Loads into `a` the `dist_util` that accepts edp_node's handshake, when
/// its OTP needs it (see [`edp::dist_util_patch`]).
fn patch_dist_util(a: &mut ErlNode, dir: &std::path::Path) -> Result<(), String> {
    let kernel = erl_term(a, "list_to_binary(code:lib_dir(kernel)).");
    let kernel = std::str::from_utf8(kernel.as_binary().expect("a binary"))
        .expect("utf-8 path")
        .to_owned();
    let Some(beam) = edp::dist_util_patch(&kernel, dir)? else {
        return Ok(());
    };
    let loaded = eval(
        a,
        &format!("code:unstick_mod(dist_util), code:load_abs(\"{beam}\")."),
    );
    if loaded != "{module,dist_util}" {
        return Err(format!("loading the patched dist_util on A: {loaded}"));
    }
    println!("# edp: A runs dist_util from {beam}.erl (the installed OTP's, accepting edp_node's 'n' handshake as OTP 25.3 does)");
    Ok(())
}

async fn setup() -> Env {
    let epmd = RealEpmd::start().expect("start epmd");
    let port = epmd.port();
    let beam_dir = compile_peer();
    let dir = beam_dir.to_str().expect("utf-8 temp dir").to_owned();
    let start = |prefix: &str| {
        tokio::task::block_in_place(|| ErlNode::start_with(prefix, port, COOKIE, &["-pa", &dir]))
            .expect("start erl")
    };
    let mut a = start("bench_a");
    // Before A makes any connection (see edp::dist_util_patch).
    let dist_util_patch = patch_dist_util(&mut a, &beam_dir);
    let mut b = start("bench_b");
    let r1 = start_rust(port, "bench_r1").await;
    let r2 = start_rust(port, "bench_r2").await;
    assert_eq!(
        eval(&mut b, &format!("net_adm:ping('{}').", a.name())),
        "pong"
    );
    assert!(r1.ping(a.name()).await && r2.ping(a.name()).await);
    assert!(r1.ping(r2.name().as_ref()).await);
    eval(&mut a, "bench_peer:start_echo().");
    let echo = erl_pid(&mut a, "whereis(bench_echo).");
    let edp = match dist_util_patch {
        // For profiling erldist alone.
        Ok(()) if std::env::var_os("ERLDIST_BENCH_NO_EDP").is_some() => {
            Err("left out (ERLDIST_BENCH_NO_EDP is set)".to_owned())
        }
        Ok(()) => Edp::setup(port, a.name(), echo, COOKIE).await,
        Err(e) => Err(e),
    };
    if let Err(e) = &edp {
        println!("# edp: not set up: {e}");
    }
    Env {
        a,
        b,
        r1,
        r2,
        edp,
        dir: beam_dir,
        _epmd: epmd,
    }
}

/// A fresh list of edp figures: empty, or failed already when edp could
/// not be set up.
fn edp_runs(env: &Env) -> Runs {
    match &env.edp {
        Ok(_) => Runs::Ok(Vec::new()),
        Err(e) => Runs::Failed(Vec::new(), format!("setup: {e}")),
    }
}

/// A reusable erldist sink (the protocol of `bench_peer:sink/1`).
fn rust_sink(node: &Node, n: usize) -> Pid {
    node.spawn(move |mut p| async move {
        loop {
            let Ok(m) = p.recv().await else { return };
            let from = match m.as_tuple() {
                Some([t, Term::Pid(f)]) if t.is_atom("start") => *f,
                _ => continue,
            };
            for _ in 0..n {
                if p.recv().await.is_err() {
                    return;
                }
            }
            p.send(
                from,
                Term::tuple(vec![Term::atom("done"), Term::Pid(p.pid())]),
            );
        }
    })
}

/// Who an erldist stream's messages come from, on the wire.
#[derive(Clone, Copy, PartialEq)]
enum Sender {
    /// The sending process (`Process::send_ref`: `SEND_SENDER`, as BEAM's
    /// processes send): the streams compared with BEAM's.
    Process,
    /// No process (`Node::send_ref`: `SEND`, no sender on the wire, as
    /// edp_node sends): the `erldist_anon` streams compared with edp's.
    Nobody,
}

/// Streams `n` messages (cycling through `msgs`) from a new process on
/// `node` to `sink` and waits for its `done`. With several `senders`, that
/// process sends `start` and spawns them, each sending `n / senders`
/// (`n` a multiple of `senders`, or the sink waits for ever). The process runs in a task
/// on the runtime's workers, as one started with `node.spawn` does (the
/// bench's own thread is not one of them, and a process there would be
/// woken across threads at every message). `from` says whether the
/// messages name their sender.
async fn rust_stream(
    node: &Node,
    sink: &Pid,
    n: usize,
    msgs: &[Term],
    senders: usize,
    from: Sender,
) -> Duration {
    let (mut p, sink) = (node.process(), *sink);
    let (node, msgs) = (node.clone(), Arc::new(msgs.to_vec()));
    tokio::spawn(async move {
        let t0 = Instant::now();
        p.send(
            sink,
            Term::tuple(vec![Term::atom("start"), Term::Pid(p.pid())]),
        );
        if senders == 1 {
            for msg in msgs.iter().cycle().take(n) {
                match from {
                    Sender::Process => p.send_ref(sink, msg),
                    Sender::Nobody => node.send_ref(sink, msg),
                }
            }
        } else {
            // Spawned after `start` is queued, as BEAM's coordinator does
            // in `stream_k_to_new_sink`.
            for _ in 0..senders {
                let (msgs, on) = (Arc::clone(&msgs), node.clone());
                node.spawn(move |s| async move {
                    for msg in msgs.iter().cycle().take(n / senders) {
                        match from {
                            Sender::Process => s.send_ref(sink, msg),
                            Sender::Nobody => on.send_ref(sink, msg),
                        }
                    }
                });
            }
        }
        loop {
            let m = p.recv().await.expect("sender alive");
            if matches!(m.as_tuple(), Some([t, _]) if t.is_atom("done")) {
                return t0.elapsed();
            }
        }
    })
    .await
    .expect("the streaming task")
}

/// On `from`, streams `n` copies of `msg` (Erlang source) from `senders`
/// processes to a new sink on node `to` and returns the time Erlang
/// measured.
fn beam_stream(from: &mut ErlNode, to: &str, n: usize, msg: &str, senders: usize) -> Duration {
    let call = if senders == 1 {
        format!("bench_peer:stream_to_new_sink('{to}', {n}, {msg}, 1).")
    } else {
        format!("bench_peer:stream_k_to_new_sink('{to}', {n}, {msg}, {senders}, 1).")
    };
    let us = erl_term(from, &call);
    let us = us.list_elems().expect("a list")[0].as_i64().expect("us");
    Duration::from_micros(us as u64)
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// The edp side of a stream to A: a sink of its own on A (so that a failed
/// edp run cannot upset the sink of the others) and an edp mailbox.
struct EdpStream {
    sink: Pid,
    sink_edp: edp_node::ExternalPid,
    me: edp::Mailbox,
}

async fn edp_stream_setup(env: &mut Env, n: usize, runs: &mut Runs) -> Option<EdpStream> {
    let Ok(e) = &env.edp else { return None };
    if !runs.live() {
        return None;
    }
    let me = match edp::Mailbox::new(&e.node).await {
        Ok(me) => me,
        Err(err) => {
            runs.push(Err(err));
            return None;
        }
    };
    let sink = fresh_sink(env, n);
    Some(EdpStream {
        sink,
        sink_edp: edp::edp_pid(sink),
        me,
    })
}

/// A new sink on A for one run of `n` messages. Every variant streams to
/// a sink of its own per run, as `stream_to_new_sink` gives the BEAM
/// variant: a sink that has taken runs before has a grown heap, which
/// slows the run that follows.
fn fresh_sink(env: &mut Env, n: usize) -> Pid {
    erl_pid(&mut env.a, &format!("bench_peer:start_sink({n})."))
}

fn end_sink(env: &mut Env, sink: Pid) {
    eval(&mut env.a, &format!("exit({}, kill).", erl_expr(sink)));
}

/// Gives an [`EdpStream`] a new sink (see [`fresh_sink`]).
fn renew_edp_sink(env: &mut Env, s: &mut Option<EdpStream>, n: usize) {
    if let Some(s) = s.as_mut() {
        end_sink(env, s.sink);
        s.sink = fresh_sink(env, n);
        s.sink_edp = edp::edp_pid(s.sink);
    }
}

/// One edp run of an [`EdpStream`]: its time, or why it failed.
async fn edp_stream_run(
    env: &Env,
    s: &mut Option<EdpStream>,
    n: usize,
    msgs: &[edp_node::OwnedTerm],
    senders: usize,
) -> Option<Result<Duration, String>> {
    let (Ok(e), Some(s)) = (&env.edp, s.as_mut()) else {
        return None;
    };
    Some(match e.ensure_connected().await {
        Ok(()) => edp::stream(&e.node, &mut s.me, &s.sink_edp, n, msgs, senders).await,
        Err(err) => Err(err),
    })
}

fn edp_stream_end(env: &mut Env, s: Option<EdpStream>) {
    if let Some(s) = s {
        end_sink(env, s.sink);
    }
}

/// What a `send_*` scenario streams: `n` messages of `unit_size` units
/// each, from `senders` processes at once (`n` a multiple of `senders`).
struct Load {
    n: usize,
    unit_size: usize,
    senders: usize,
}

/// erldist -> sink on A, against B -> sink on A, and edp -> sink on A.
/// Rates: `n * unit` per second.
async fn send_scenario(
    env: &mut Env,
    name: &str,
    unit: &str,
    load: Load,
    (rust_msg, erl_msg): (Term, &str),
    runs: usize,
) {
    let Load {
        n,
        unit_size,
        senders,
    } = load;
    let (mut rust, mut beam, mut anon) = (Vec::new(), Vec::new(), Vec::new());
    let mut edp = edp_runs(env);
    let mut edp_s = edp_stream_setup(env, n, &mut edp).await;
    let edp_msg = [edp::owned(&rust_msg)];
    let a_name = env.a.name().to_owned();
    for _ in 0..runs {
        let sink = fresh_sink(env, n);
        let one = std::slice::from_ref(&rust_msg);
        let d = rust_stream(&env.r1, &sink, n, one, senders, Sender::Process).await;
        end_sink(env, sink);
        rust.push(per_sec(n * unit_size, d));
        let d = beam_stream(&mut env.b, &a_name, n, erl_msg, senders);
        beam.push(per_sec(n * unit_size, d));
        if edp.live() {
            renew_edp_sink(env, &mut edp_s, n);
            if let Some(r) = edp_stream_run(env, &mut edp_s, n, &edp_msg, senders).await {
                edp.push(r.map(|d| per_sec(n * unit_size, d)));
            }
            let sink = fresh_sink(env, n);
            let d = rust_stream(&env.r1, &sink, n, one, senders, Sender::Nobody).await;
            end_sink(env, sink);
            anon.push(per_sec(n * unit_size, d));
        }
    }
    edp_stream_end(env, edp_s);
    let anon = anon_field(name, unit, &anon, &edp);
    let counts = if senders == 1 {
        format!(" n={n} runs={runs}")
    } else {
        format!(" n={n} senders={senders} runs={runs}")
    };
    report(
        name,
        unit,
        rust,
        beam,
        &edp,
        true,
        &format!("{anon}{counts}"),
    );
}

/// The mixed_terms stream: the codec corpus (benches/codec/corpus.rs),
/// its sets interleaved one term from each in turn, without terms of 1 MiB
/// or more (the 1 MiB binary is `send_1mb`'s); each with its ETF size.
fn mixed_corpus() -> Vec<(Term, usize)> {
    let sets: Vec<Vec<(Term, usize)>> = corpus::scenarios()
        .into_iter()
        .map(|s| {
            s.terms
                .into_iter()
                .zip(s.encoded.iter().map(|b| b.len()))
                .filter(|(_, len)| *len < 1 << 20)
                .collect()
        })
        .collect();
    let longest = sets.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|i| sets.iter().filter_map(move |set| set.get(i).cloned()))
        .collect()
}

/// erldist -> sink on A, against B -> sink on A, and edp -> sink on A, `n`
/// messages cycling through the same list of terms (B reads it from a file
/// of ETF written here).
async fn mixed_terms(env: &mut Env, n: usize, runs: usize) {
    let corpus = mixed_corpus();
    let terms: Vec<Term> = corpus.iter().map(|(t, _)| t.clone()).collect();
    let bytes: usize = corpus.iter().map(|(_, len)| *len).cycle().take(n).sum();
    let file = env.dir.join("mixed_terms.etf");
    let etf = Term::list(terms.clone())
        .encode()
        .expect("encode the corpus");
    std::fs::write(&file, etf).expect("write the corpus file");
    let file = file.to_str().expect("utf-8 temp dir").to_owned();
    let edp_msgs: Vec<edp_node::OwnedTerm> = terms.iter().map(edp::owned).collect();

    let (mut rust, mut beam) = (Vec::new(), Vec::new());
    let (mut rust_b, mut beam_b, mut edp_b) = (Vec::new(), Vec::new(), Vec::new());
    let mut anon = Vec::new();
    let mut edp = edp_runs(env);
    let mut edp_s = edp_stream_setup(env, n, &mut edp).await;
    let a_name = env.a.name().to_owned();
    for _ in 0..runs {
        let sink = fresh_sink(env, n);
        let d = rust_stream(&env.r1, &sink, n, &terms, 1, Sender::Process).await;
        end_sink(env, sink);
        rust.push(per_sec(n, d));
        rust_b.push(per_sec(bytes, d));
        let us = erl_term(
            &mut env.b,
            &format!("bench_peer:stream_terms_to_new_sink('{a_name}', \"{file}\", {n}, 1)."),
        );
        let d =
            Duration::from_micros(us.list_elems().expect("a list")[0].as_i64().expect("us") as u64);
        beam.push(per_sec(n, d));
        beam_b.push(per_sec(bytes, d));
        if edp.live() {
            renew_edp_sink(env, &mut edp_s, n);
            if let Some(r) = edp_stream_run(env, &mut edp_s, n, &edp_msgs, 1).await {
                if let Ok(d) = &r {
                    edp_b.push(per_sec(bytes, *d));
                }
                edp.push(r.map(|d| per_sec(n, d)));
            }
            let sink = fresh_sink(env, n);
            let d = rust_stream(&env.r1, &sink, n, &terms, 1, Sender::Nobody).await;
            end_sink(env, sink);
            anon.push(per_sec(n, d));
        }
    }
    edp_stream_end(env, edp_s);
    let edp_bytes = match &edp {
        Runs::NotApplicable(why) => Runs::NotApplicable(why),
        _ => Runs::Ok(edp_b.clone()),
    };
    println!(
        "# mixed_terms ETF bytes/s: erldist runs [{}] beam runs [{}]{} (medians erldist={:.0} beam={:.0}{}); {} distinct terms, {:.0} bytes/message on average",
        fmt_runs(&rust_b),
        fmt_runs(&beam_b),
        edp_runs_text(&edp_bytes),
        median(rust_b.clone()),
        median(beam_b.clone()),
        if edp_b.is_empty() {
            String::new()
        } else {
            format!(" edp={:.0}", median(edp_b.clone()))
        },
        terms.len(),
        bytes as f64 / n as f64,
    );
    let anon = anon_field("mixed_terms", "msg/s", &anon, &edp);
    report(
        "mixed_terms",
        "msg/s",
        rust,
        beam,
        &edp,
        true,
        &format!("{anon} n={n} runs={runs}"),
    );
}

/// An edp sink and an edp mailbox for A's reports (see
/// `bench_peer:stream_async/4`).
async fn edp_recv_setup(e: &Edp, n: usize) -> Result<(String, edp::Mailbox), String> {
    let sink = edp::sink(&e.node, n).await?;
    let me = edp::Mailbox::new(&e.node).await?;
    Ok((edp::erl_expr(&edp_node::OwnedTerm::Pid(sink)), me))
}

/// One run of A streaming `n` `{hello, 42}` to the edp sink: A's time.
async fn edp_recv_run(
    env: &mut Env,
    (sink, me): &mut (String, edp::Mailbox),
    n: usize,
) -> Result<Duration, String> {
    let Ok(e) = &env.edp else {
        return Err("no edp".into());
    };
    e.ensure_connected().await?;
    let me_expr = edp::erl_expr(&edp_node::OwnedTerm::Pid(me.pid.clone()));
    eval(
        &mut env.a,
        &format!("bench_peer:stream_async({sink}, {n}, {{hello, 42}}, {me_expr})."),
    );
    let wait = edp::RUN_TIMEOUT + Duration::from_secs(10);
    match me.recv_tagged("stream_us", wait).await? {
        edp_node::OwnedTerm::Integer(us) => Ok(Duration::from_micros(us as u64)),
        other => Err(format!(
            "A's stream to the edp sink: {other:?} (no done from the sink)"
        )),
    }
}

async fn recv_small(env: &mut Env, n: usize, runs: usize) {
    let sink = rust_sink(&env.r1, n);
    let b_name = env.b.name().to_owned();
    let (mut rust, mut beam) = (Vec::new(), Vec::new());
    let mut edp = edp_runs(env);
    let mut edp_s = match &env.edp {
        Ok(e) => match edp_recv_setup(e, n).await {
            Ok(s) => Some(s),
            Err(err) => {
                edp.push(Err(err));
                None
            }
        },
        Err(_) => None,
    };
    for _ in 0..runs {
        let us = eval_i64(
            &mut env.a,
            &format!("bench_peer:stream({}, {n}, {{hello, 42}}).", erl_expr(sink)),
        );
        rust.push(per_sec(n, Duration::from_micros(us as u64)));
        let d = beam_stream(&mut env.a, &b_name, n, "{hello, 42}", 1);
        beam.push(per_sec(n, d));
        if let Some(s) = edp_s.as_mut().filter(|_| edp.live()) {
            let r = edp_recv_run(env, s, n).await;
            edp.push(r.map(|d| per_sec(n, d)));
        }
    }
    env.r1.kill(sink, Term::atom("kill"));
    report(
        "recv_small",
        "msg/s",
        rust,
        beam,
        &edp,
        true,
        &format!(" n={n} runs={runs}"),
    );
}

/// The wall clock in nanoseconds since 1970, as `os:system_time(nanosecond)`
/// reads it on the Erlang nodes of this machine.
/// A real node (A) streams `n` binaries of `size` bytes to an erldist sink
/// on r1, against the same stream to an Erlang sink on B; payload bytes
/// per second. Binaries over 64 KiB come in BEAM's fragments.
async fn recv_binaries(env: &mut Env, name: &str, size: usize, n: usize, runs: usize) {
    let sink = rust_sink(&env.r1, n);
    let b_name = env.b.name().to_owned();
    let msg = format!("binary:copy(<<0>>, {size})");
    let bytes = (n * size) as f64;
    let (mut rust, mut beam) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let us = eval_i64(
            &mut env.a,
            &format!("bench_peer:stream({}, {n}, {msg}).", erl_expr(sink)),
        );
        rust.push(bytes / (us as f64 / 1e6));
        let d = beam_stream(&mut env.a, &b_name, n, &msg, 1);
        beam.push(bytes / d.as_secs_f64());
    }
    env.r1.kill(sink, Term::atom("kill"));
    report(
        name,
        "bytes/s",
        rust,
        beam,
        &Runs::NotApplicable("not measured for edp (recv_small has its receiving side)"),
        true,
        &format!(" n={n} runs={runs}"),
    );
}

fn wall_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// `recv_lag`'s erldist sink for one run (the protocol of
/// `bench_peer:lag_sink/2`): after `n` messages it sends `done` and gives
/// `lags` the nanoseconds from each `{stamp, T}`'s sending to its receipt.
fn rust_lag_sink(node: &Node, n: usize, lags: tokio::sync::oneshot::Sender<Vec<f64>>) -> Pid {
    node.spawn(move |mut p| async move {
        let Ok(m) = p.recv().await else { return };
        let Some([t, Term::Pid(from)]) = m.as_tuple() else {
            return;
        };
        let from = *from;
        if !t.is_atom("start") {
            return;
        }
        let mut got = Vec::new();
        for _ in 0..n {
            let Ok(m) = p.recv().await else { return };
            if let Some([t, Term::Int(sent)]) = m.as_tuple() {
                if t.is_atom("stamp") {
                    got.push((wall_ns() - sent) as f64);
                }
            }
        }
        p.send(
            from,
            Term::tuple(vec![Term::atom("done"), Term::Pid(p.pid())]),
        );
        let _ = lags.send(got);
    })
}

/// The median and the 99th percentile of `v`, in microseconds from
/// nanoseconds.
fn lag_us(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    let at = |q: usize| {
        v.get((v.len() * q / 100).min(v.len().saturating_sub(1)))
            .map_or(f64::NAN, |x| x / 1e3)
    };
    (at(50), at(99))
}

/// `recv_small`'s stream again, with every 997th message (every tenth in
/// short smoke runs) a `{stamp, T}`
/// of A's wall clock: how long messages wait between A's send and the
/// sink's receipt, to an erldist sink on r1 and to an Erlang sink on B.
/// With `burst` 0 A streams as fast as it can (`recv_lag`), else `burst`
/// messages at a time with a millisecond's wait after each
/// (`recv_lag_paced`, a rate both sinks keep up with).
async fn recv_lag(env: &mut Env, name: &str, n: usize, burst: usize, runs: usize) {
    // A prime, so that paced stamps fall all over the bursts.
    let every = (n / 10).clamp(1, 997);
    let b_name = env.b.name().to_owned();
    let (mut rust, mut beam) = (Vec::new(), Vec::new());
    let (mut rust_p99, mut beam_p99) = (Vec::new(), Vec::new());
    let (mut rust_rate, mut beam_rate) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sink = rust_lag_sink(&env.r1, n, tx);
        let us = eval_i64(
            &mut env.a,
            &format!(
                "bench_peer:stream_stamped({}, {n}, {every}, {burst}).",
                erl_expr(sink)
            ),
        );
        rust_rate.push(per_sec(n, Duration::from_micros(us as u64)));
        let (mid, p99) = lag_us(rx.await.expect("the erldist sink's lags"));
        rust.push(mid);
        rust_p99.push(p99);
        let t = erl_term(
            &mut env.a,
            &format!("bench_peer:stream_stamped_to_new_sink('{b_name}', {n}, {every}, {burst})."),
        );
        let (us, lags) = match t.as_tuple() {
            Some([Term::Int(us), lags]) => (*us, lags.list_elems().expect("a list of lags")),
            _ => panic!("stream_stamped_to_new_sink: {t}"),
        };
        beam_rate.push(per_sec(n, Duration::from_micros(us as u64)));
        let (mid, p99) = lag_us(
            lags.iter()
                .filter_map(Term::as_i64)
                .map(|x| x as f64)
                .collect(),
        );
        beam.push(mid);
        beam_p99.push(p99);
    }
    println!(
        "# {name} p99: erldist runs [{}] beam runs [{}] us",
        fmt_runs(&rust_p99),
        fmt_runs(&beam_p99)
    );
    println!(
        "# {name} throughput: erldist runs [{}] beam runs [{}] msg/s",
        fmt_runs(&rust_rate),
        fmt_runs(&beam_rate)
    );
    let extra = format!(
        " erldist_p99={:.0} beam_p99={:.0} erldist_msg_per_s={:.0} beam_msg_per_s={:.0} stamps_every={every} burst={burst} n={n} runs={runs}",
        median(rust_p99),
        median(beam_p99),
        median(rust_rate),
        median(beam_rate)
    );
    report(
        name,
        "us_median",
        rust,
        beam,
        &Runs::NotApplicable(
            "its sink would need to read A's stamps; recv_small has edp's stream figure",
        ),
        false,
        &extra,
    );
}

async fn rust_to_rust(env: &mut Env, n: usize, runs: usize) {
    let sink = rust_sink(&env.r2, n);
    let a_name = env.a.name().to_owned();
    let msg = Term::tuple(vec![Term::atom("hello"), Term::from(42)]);
    let (mut rust, mut beam) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let one = std::slice::from_ref(&msg);
        let d = rust_stream(&env.r1, &sink, n, one, 1, Sender::Process).await;
        rust.push(per_sec(n, d));
        let d = beam_stream(&mut env.b, &a_name, n, "{hello, 42}", 1);
        beam.push(per_sec(n, d));
    }
    env.r2.kill(sink, Term::atom("kill"));
    report(
        "rust_to_rust",
        "msg/s",
        rust,
        beam,
        &Runs::NotApplicable(
            "an edp_node node cannot accept a connection (Node::start registers \
             with EPMD but never listens; edp_client has no accept side), so one \
             edp node cannot connect to another",
        ),
        true,
        &format!(" n={n} runs={runs}"),
    );
}

/// Round trips of `body` from a process on `node` to `echo`, one untimed
/// first, in a task on the runtime's workers; the median in microseconds.
async fn large_rtt(node: &Node, echo: Pid, body: &Term, rounds: usize) -> f64 {
    let mut p = node.process();
    let body = body.clone();
    tokio::spawn(async move {
        let mut ts = Vec::with_capacity(rounds);
        for i in 0..=rounds {
            // The copy is made before the clock starts: BEAM's sender does
            // not copy its term either.
            let msg = Term::tuple(vec![Term::Pid(p.pid()), body.clone()]);
            let t0 = Instant::now();
            p.send(echo, msg);
            let back = p.recv().await.expect("alive");
            assert!(
                matches!(back, Term::List(_)),
                "the echo sends the list back"
            );
            if i > 0 {
                ts.push(t0.elapsed().as_secs_f64() * 1e6);
            }
        }
        median(ts)
    })
    .await
    .expect("the large_terms task")
}

/// Round trips of a large term made of small ones (not a binary: every
/// element is encoded and decoded): erldist->erldist against BEAM->BEAM,
/// and erldist->BEAM on the same line.
async fn large_terms(env: &mut Env, bytes: usize, rounds: usize, runs: usize) {
    let echo = crate::round_trip::echo(&env.r2);
    let beam_echo = erl_pid(&mut env.a, "whereis(bench_echo).");
    let beam_echo_expr = erl_expr(beam_echo);
    let body = crate::round_trip::item_list(bytes);
    let (mut rust, mut beam, mut mixed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        rust.push(large_rtt(&env.r1, echo, &body, rounds).await);
        beam.push(eval_i64(
            &mut env.b,
            &format!("bench_peer:large_terms({beam_echo_expr}, {bytes}, {rounds})."),
        ) as f64);
        mixed.push(large_rtt(&env.r1, beam_echo, &body, rounds).await);
    }
    env.r2.kill(echo, Term::atom("kill"));
    println!(
        "# large_terms: erldist->beam runs [{}] us_median",
        fmt_runs(&mixed)
    );
    let to_beam = median(mixed);
    report(
        "large_terms",
        "us_median",
        rust,
        beam,
        &Runs::NotApplicable(
            "erldist->erldist has no edp counterpart: an edp_node node cannot accept \
             a connection (see rust_to_rust)",
        ),
        false,
        &format!(
            " erldist_to_beam={to_beam:.0} bytes={bytes} elements={} rounds={rounds} runs={runs}",
            bytes / 26
        ),
    );
}

/// Rounds of a small round trip from a process on `node` to `echo`, each
/// made while another process on `node` sends `big` (a binary) to `sink`
/// (the sink protocol, `n` = 1), one untimed round first, in a task on the
/// runtime's workers: the medians, in microseconds, of the round trip and
/// of the time until the sink has `big` (`bench_peer:small_behind_large/4`
/// is the BEAM side).
async fn rust_behind_large(
    node: &Node,
    echo: Pid,
    sink: Pid,
    big: &Term,
    rounds: usize,
) -> (f64, f64) {
    let (mut p, q, big) = (node.process(), node.process(), big.clone());
    tokio::spawn(async move {
        let (mut rtts, mut dels) = (Vec::new(), Vec::new());
        for i in 0..=rounds {
            let t0 = Instant::now();
            q.send(
                sink,
                Term::tuple(vec![Term::atom("start"), Term::Pid(p.pid())]),
            );
            q.send_ref(sink, &big);
            let t1 = Instant::now();
            p.send(
                echo,
                Term::tuple(vec![Term::Pid(p.pid()), Term::atom("ping")]),
            );
            let (mut rtt, mut del) = (None, None);
            while rtt.is_none() || del.is_none() {
                let m = p.recv().await.expect("alive");
                if m.is_atom("ping") {
                    rtt = Some(t1.elapsed());
                } else if matches!(m.as_tuple(), Some([t, _]) if t.is_atom("done")) {
                    del = Some(t0.elapsed());
                }
            }
            if i > 0 {
                rtts.extend(rtt.map(|d| d.as_secs_f64() * 1e6));
                dels.extend(del.map(|d| d.as_secs_f64() * 1e6));
            }
        }
        (median(rtts), median(dels))
    })
    .await
    .expect("the small_behind_large task")
}

/// A small round trip while a large binary goes to the same node:
/// erldist->A against B->A (a process sends the binary to a sink on A, and
/// another makes the round trip to A's echo), and erldist->erldist (r1 to
/// r2) on the same line. Large messages go in fragments, and the small one
/// need not wait for all of them.
async fn small_behind_large(env: &mut Env, bytes: usize, rounds: usize, runs: usize) {
    let beam_echo = erl_pid(&mut env.a, "whereis(bench_echo).");
    let beam_echo_expr = erl_expr(beam_echo);
    let rust_echo = crate::round_trip::echo(&env.r2);
    let rust_sink = rust_sink(&env.r2, 1);
    let big = Term::binary(vec![1u8; bytes]);
    let (mut rust, mut beam, mut r2r) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rust_del, mut beam_del, mut r2r_del) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let sink = fresh_sink(env, 1);
        let (rtt, del) = rust_behind_large(&env.r1, beam_echo, sink, &big, rounds).await;
        rust.push(rtt);
        rust_del.push(del);
        end_sink(env, sink);
        let sink = fresh_sink(env, 1);
        let r = erl_term(
            &mut env.b,
            &format!(
                "bench_peer:small_behind_large({beam_echo_expr}, {}, {bytes}, {rounds}).",
                erl_expr(sink)
            ),
        );
        let r = r.as_tuple().expect("{RttUs, DeliveryUs}").to_vec();
        beam.push(r[0].as_i64().expect("us") as f64);
        beam_del.push(r[1].as_i64().expect("us") as f64);
        end_sink(env, sink);
        let (rtt, del) = rust_behind_large(&env.r1, rust_echo, rust_sink, &big, rounds).await;
        r2r.push(rtt);
        r2r_del.push(del);
    }
    env.r2.kill(rust_echo, Term::atom("kill"));
    env.r2.kill(rust_sink, Term::atom("kill"));
    println!(
        "# small_behind_large: erldist->erldist runs [{}] us_median",
        fmt_runs(&r2r)
    );
    println!(
        "# small_behind_large delivery: erldist runs [{}] beam runs [{}] erldist->erldist runs [{}] us_median",
        fmt_runs(&rust_del),
        fmt_runs(&beam_del),
        fmt_runs(&r2r_del)
    );
    let extra = format!(
        " erldist_to_erldist={:.0} erldist_delivery_us={:.0} beam_delivery_us={:.0} \
         erldist_to_erldist_delivery_us={:.0} bytes={bytes} rounds={rounds} runs={runs}",
        median(r2r),
        median(rust_del),
        median(beam_del),
        median(r2r_del)
    );
    report(
        "small_behind_large",
        "us_median",
        rust,
        beam,
        &Runs::NotApplicable(
            "not measured for edp: a small round trip through edp takes about 44 ms \
             even on an idle connection (see pingpong_rtt), longer than the large \
             message takes to deliver",
        ),
        false,
        &extra,
    );
}

/// How long an edp pingpong run may take: its round trips are slow (about
/// 40 ms: see the report), so a run stops after this long, short of
/// `rounds` if need be.
const EDP_PINGPONG_TIME: Duration = Duration::from_secs(10);

/// One edp pingpong run: 20 warm-up rounds, then up to `rounds` timed
/// ones within [`EDP_PINGPONG_TIME`]; the median and p99 in ns, and the
/// number of timed rounds.
async fn edp_pingpong_run(
    e: &Edp,
    me: &mut edp::Mailbox,
    rounds: usize,
) -> Result<(f64, f64, usize), String> {
    e.ensure_connected().await?;
    let run = async {
        for _ in 0..20 {
            edp::rtt(&e.node, me, &e.echo).await?;
        }
        let deadline = Instant::now() + EDP_PINGPONG_TIME;
        let mut ts = Vec::with_capacity(rounds);
        while ts.len() < rounds && (ts.is_empty() || Instant::now() < deadline) {
            let d = edp::rtt(&e.node, me, &e.echo).await?;
            ts.push(d.as_nanos() as f64);
        }
        let n = ts.len();
        let (median, p99) = median_and_p99(ts);
        Ok((median, p99, n))
    };
    tokio::time::timeout(edp::RUN_TIMEOUT, run)
        .await
        .unwrap_or_else(|_| Err(format!("not done within {} s", edp::RUN_TIMEOUT.as_secs())))
}

/// Round trips of `{Self, ping}` from a process on `node` to `echo` (200
/// untimed, then `rounds`): the median and the 99th percentile in ns.
async fn rust_pingpong(node: &Node, echo: Pid, rounds: usize) -> (f64, f64) {
    // In a task on the runtime's workers, as a process started with
    // `node.spawn` runs (see `rust_stream`).
    let mut p = node.process();
    let ts = tokio::spawn(async move {
        let mut ts = Vec::with_capacity(rounds);
        for i in 0..rounds + 200 {
            let t0 = Instant::now();
            p.send(
                echo,
                Term::tuple(vec![Term::Pid(p.pid()), Term::atom("ping")]),
            );
            let m = p.recv().await.expect("alive");
            debug_assert!(m.is_atom("ping"));
            if i >= 200 {
                ts.push(t0.elapsed().as_nanos() as f64);
            }
        }
        ts
    })
    .await
    .expect("the pingpong task");
    median_and_p99(ts)
}

/// The median and the 99th percentile of round-trip times, picked alike
/// for every side of the pingpong scenarios.
fn median_and_p99(mut ts: Vec<f64>) -> (f64, f64) {
    ts.sort_by(f64::total_cmp);
    let n = ts.len();
    (
        ts[(n / 2).saturating_sub(1)],
        ts[(n * 99 / 100).saturating_sub(1)],
    )
}

/// The floor under a round trip in this process: two tokio tasks echoing
/// 64 bytes (about the size of erldist's frames in `pingpong_rtt`) over a
/// loopback TCP connection, with no codec and no mailbox, timed as
/// [`rust_pingpong`] times erldist's (200 untimed, then `rounds`): the
/// median in ns.
async fn tokio_echo_floor(rounds: usize) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("its address");
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.expect("accept");
        s.set_nodelay(true).expect("nodelay");
        let mut buf = [0u8; 64];
        // Ends when the client's side closes.
        while s.read_exact(&mut buf).await.is_ok() {
            if s.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.set_nodelay(true).expect("nodelay");
    let ts = tokio::spawn(async move {
        let mut ts = Vec::with_capacity(rounds);
        let mut buf = [7u8; 64];
        for i in 0..rounds + 200 {
            let t0 = Instant::now();
            c.write_all(&buf).await.expect("write");
            c.read_exact(&mut buf).await.expect("read");
            if i >= 200 {
                ts.push(t0.elapsed().as_nanos() as f64);
            }
        }
        ts
    })
    .await
    .expect("the floor task");
    median_and_p99(ts).0
}

/// `bench_peer:pingpong/2` on `node` to the echo process `echo_expr`: the
/// median and the 99th percentile in ns.
fn beam_pingpong(node: &mut ErlNode, echo_expr: &str, rounds: usize) -> (f64, f64) {
    let r = parse(&eval(
        node,
        &format!("bench_peer:pingpong({echo_expr}, {rounds})."),
    ));
    let r = r.as_tuple().expect("{Median, P99}").to_vec();
    (
        r[0].as_i64().expect("ns") as f64,
        r[1].as_i64().expect("ns") as f64,
    )
}

/// The median and 99th percentile of each run of a round-trip scenario,
/// for each side.
#[derive(Default)]
struct RoundTrips {
    rust: Vec<f64>,
    rust_p99: Vec<f64>,
    beam: Vec<f64>,
    beam_p99: Vec<f64>,
}

impl RoundTrips {
    /// One run of each side: [`rust_pingpong`] from `node` to `echo`, then
    /// [`beam_pingpong`] from `erl` to `beam_echo`.
    async fn run(
        &mut self,
        node: &Node,
        echo: Pid,
        erl: &mut ErlNode,
        beam_echo: &str,
        rounds: usize,
    ) {
        let (m, p99) = rust_pingpong(node, echo, rounds).await;
        self.rust.push(m);
        self.rust_p99.push(p99);
        let (m, p99) = beam_pingpong(erl, beam_echo, rounds);
        self.beam.push(m);
        self.beam_p99.push(p99);
    }
}

/// `pingpong_rtt` between two nodes of one kind: r1 to an echo process on
/// r2 (both erldist nodes in this process), against B to A's echo.
async fn pingpong_rust_to_rust(env: &mut Env, rounds: usize, runs: usize) {
    let echo = env.r2.spawn(|mut p| async move {
        while let Ok(m) = p.recv().await {
            if let Some([Term::Pid(from), body]) = m.as_tuple() {
                p.send(*from, body.clone());
            }
        }
    });
    let a_echo = erl_expr(erl_pid(&mut env.a, "whereis(bench_echo)."));
    let mut t = RoundTrips::default();
    let mut floor = Vec::new();
    for _ in 0..runs {
        t.run(&env.r1, echo, &mut env.b, &a_echo, rounds).await;
        floor.push(tokio_echo_floor(rounds).await);
    }
    env.r2.kill(echo, Term::atom("kill"));
    let (rp99, bp99) = (median(t.rust_p99.clone()), median(t.beam_p99.clone()));
    println!(
        "# pingpong_rust_to_rust p99: erldist runs [{}] beam runs [{}] ns",
        fmt_runs(&t.rust_p99),
        fmt_runs(&t.beam_p99),
    );
    println!(
        "# pingpong_rust_to_rust floor: tokio_echo runs [{}] ns_median \
         (two tokio tasks echoing 64 bytes over loopback TCP: no codec, no mailbox)",
        fmt_runs(&floor),
    );
    report(
        "pingpong_rust_to_rust",
        "ns_median",
        t.rust,
        t.beam,
        &Runs::NotApplicable("an edp_node node cannot accept a connection (see rust_to_rust)"),
        false,
        &format!(
            " erldist_p99={rp99:.0} beam_p99={bp99:.0} ratio_p99={:.2} rounds={rounds} runs={runs}",
            bp99 / rp99
        ),
    );
}

/// `pingpong_rtt` in short bursts: `pairs` pairs of blocks of `rounds`
/// timed round trips (after each side's 200 untimed), one block from r1
/// and one from B to A's echo `echo`, the side that goes first taking
/// turns. Returns the median of each block, erldist's and BEAM's.
///
/// The runs of 10,000 round trips mostly measure a later state of the
/// machine: on this one, erldist's round trips to A take about 24 µs for
/// the first thousand or so after a pause, then about three times as long
/// on both legs, while on one CPU (`taskset -c 0`) they stay at about
/// 24 µs throughout. A block this short is mostly over before that
/// change (BENCHMARKS.md, *Lines that sit level*).
async fn pingpong_bursts(
    env: &mut Env,
    echo: Pid,
    echo_expr: &str,
    pairs: usize,
    rounds: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (mut rust, mut beam) = (Vec::new(), Vec::new());
    for i in 0..pairs {
        if i % 2 == 1 {
            beam.push(beam_pingpong(&mut env.b, echo_expr, rounds).0);
        }
        rust.push(rust_pingpong(&env.r1, echo, rounds).await.0);
        if i % 2 == 0 {
            beam.push(beam_pingpong(&mut env.b, echo_expr, rounds).0);
        }
    }
    (rust, beam)
}

async fn pingpong(env: &mut Env, rounds: usize, runs: usize, bursts: (usize, usize)) {
    let echo = erl_pid(&mut env.a, "whereis(bench_echo).");
    let echo_expr = erl_expr(echo);
    let mut t = RoundTrips::default();
    let (mut edp, mut ep, mut edp_rounds) = (edp_runs(env), Vec::new(), Vec::new());
    let mut edp_me = match &env.edp {
        Ok(e) => match edp::Mailbox::new(&e.node).await {
            Ok(me) => Some(me),
            Err(err) => {
                edp.push(Err(err));
                None
            }
        },
        Err(_) => None,
    };
    for _ in 0..runs {
        t.run(&env.r1, echo, &mut env.b, &echo_expr, rounds).await;
        if let (Ok(e), Some(me)) = (&env.edp, edp_me.as_mut().filter(|_| edp.live())) {
            let r = edp_pingpong_run(e, me, rounds).await;
            if let Ok((_, p99, n)) = r {
                ep.push(p99);
                edp_rounds.push(n as f64);
            }
            edp.push(r.map(|(m, _, _)| m));
        }
    }
    let (pairs, burst_rounds) = bursts;
    let (rb, bb) = pingpong_bursts(env, echo, &echo_expr, pairs, burst_rounds).await;
    let pair_ratios: Vec<f64> = bb.iter().zip(&rb).map(|(b, r)| b / r).collect();
    println!(
        "# pingpong_rtt bursts: erldist blocks [{}] beam blocks [{}] ns_median \
         ({pairs} pairs of blocks of {burst_rounds} timed round trips, in turns)",
        fmt_runs(&rb),
        fmt_runs(&bb),
    );
    let bursts_field = format!(
        " erldist_bursts={:.0} beam_bursts={:.0} ratio_bursts={:.2}",
        median(rb),
        median(bb),
        median(pair_ratios)
    );
    let (rp99, bp99) = (median(t.rust_p99.clone()), median(t.beam_p99.clone()));
    let edp_p99 = match &edp {
        Runs::Ok(_) if !ep.is_empty() => format!(" edp_p99={:.0}", median(ep.clone())),
        Runs::Failed(..) => " edp_p99=failed".to_owned(),
        _ => " edp_p99=n/a".to_owned(),
    };
    println!(
        "# pingpong_rtt p99: erldist runs [{}] beam runs [{}]{} ns",
        fmt_runs(&t.rust_p99),
        fmt_runs(&t.beam_p99),
        edp_runs_text(&Runs::Ok(ep))
    );
    if !edp_rounds.is_empty() {
        println!(
            "# pingpong_rtt: edp timed rounds per run [{}] (20 warm-up rounds, then up to {rounds} within {} s)",
            fmt_runs(&edp_rounds),
            EDP_PINGPONG_TIME.as_secs()
        );
    }
    report(
        "pingpong_rtt",
        "ns_median",
        t.rust,
        t.beam,
        &edp,
        false,
        &format!(
            " erldist_p99={rp99:.0} beam_p99={bp99:.0} ratio_p99={:.2}{edp_p99}{bursts_field} rounds={rounds} runs={runs}",
            bp99 / rp99
        ),
    );
}

async fn genserver_calls(env: &mut Env, servers: usize, ms: u64, runs: usize) {
    eval(&mut env.a, &format!("bench_peer:start_servers({servers})."));
    let a = Atom::from(env.a.name());
    let a_name = env.a.name().to_owned();
    let (mut rust, mut beam) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let total = Arc::new(AtomicU64::new(0));
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(servers);
        let deadline = Instant::now() + Duration::from_millis(ms);
        for i in 1..=servers {
            let (total, tx, a) = (Arc::clone(&total), tx.clone(), a);
            env.r1.spawn(move |mut p| async move {
                let server = (Atom::from(format!("bench_gs_{i}").as_str()), a);
                let mut c = 0;
                while Instant::now() < deadline {
                    let r = p.call(server, Term::atom("ping")).await;
                    assert!(matches!(&r, Ok(t) if t.is_atom("pong")), "{r:?}");
                    c += 1;
                }
                total.fetch_add(c, Ordering::Relaxed);
                drop(tx);
            });
        }
        drop(tx);
        while rx.recv().await.is_some() {}
        let n = total.load(Ordering::Relaxed);
        rust.push(n as f64 / (ms as f64 / 1000.0));
        let n = eval_i64(
            &mut env.b,
            &format!("bench_peer:calls('{a_name}', {servers}, {ms})."),
        );
        beam.push(n as f64 / (ms as f64 / 1000.0));
    }
    report(
        "genserver_calls",
        "calls/s",
        rust,
        beam,
        &Runs::NotApplicable(
            "edp_node has no gen_server call on the client side (its GenServer \
             trait is the server side only) and no send to a registered name on \
             another node (Node::send_to_name looks the name up locally)",
        ),
        true,
        &format!(" callers={servers} ms={ms} runs={runs}"),
    );
}

async fn connect(env: &mut Env, runs: usize) {
    let node = start_rust(env._epmd.port(), "bench_conn").await;
    let a_name = env.a.name().to_owned();
    let (mut rust, mut beam) = (Vec::new(), Vec::new());
    let mut edp = edp_runs(env);
    for i in 0..runs {
        if i > 0 {
            node.disconnect(&a_name).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // In a task on the runtime's workers, as `rust_stream` runs.
        let (n, a) = (node.clone(), a_name.clone());
        let took = tokio::spawn(async move {
            let t0 = Instant::now();
            assert!(n.ping(&a).await);
            t0.elapsed()
        })
        .await
        .expect("the connecting task");
        rust.push(took.as_micros() as f64);
        beam.push(eval_i64(&mut env.b, &format!("bench_peer:connect('{a_name}').")) as f64);
        if let (Ok(e), true) = (&env.edp, edp.live()) {
            let r = edp::connect_once(e).await;
            edp.push(r.map(|d| d.as_micros() as f64));
        }
    }
    node.shutdown().await;
    report(
        "connect",
        "us",
        rust,
        beam,
        &edp,
        false,
        &format!(" runs={runs}"),
    );
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    let kb: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("VmRSS kB");
    kb * 1024
}

/// In a fresh child process: RSS growth over spawning N idle processes,
/// per process; printed as `bytes=<n>`.
pub fn memory_child() {
    let n: usize = std::env::var(MEMORY_CHILD_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if std::env::var(MEMORY_CHILD_IMPL_ENV).is_ok_and(|v| v == "edp") {
        match rt.block_on(edp::memory_child(n, rss_bytes)) {
            Ok(bytes) => println!("bytes={bytes}"),
            Err(e) => println!("error={e}"),
        }
        return;
    }
    rt.block_on(async move {
        let node = Node::local("bench_mem@localhost");
        // Warm up the runtime and the node's tables a little.
        let warm: Vec<Pid> = (0..100)
            .map(|_| {
                node.spawn(|mut p| async move {
                    let _ = p.recv().await;
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        for p in warm {
            node.send(p, Term::atom("stop"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = rss_bytes();
        let pids: Vec<Pid> = (0..n)
            .map(|_| {
                node.spawn(|mut p| async move {
                    let _ = p.recv().await;
                })
            })
            .collect();
        // Let every process reach its recv.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_bytes();
        // The pid list itself is not a process's memory.
        let pid_list = (pids.capacity() * std::mem::size_of::<Pid>()) as u64;
        println!(
            "bytes={}",
            (after.saturating_sub(before).saturating_sub(pid_list)) / n as u64
        );
    });
}

/// Runs the memory child (`edp` picks edp_node's processes): its
/// `bytes=` figure, or what it said instead.
fn memory_child_run(n: usize, edp: bool) -> Result<f64, String> {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(&exe);
    cmd.env(MEMORY_CHILD_ENV, n.to_string());
    if edp {
        cmd.env(MEMORY_CHILD_IMPL_ENV, "edp");
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the memory child");
    // Bounded: a child that hangs is killed (by its pid) after 120 s.
    let deadline = Instant::now() + Duration::from_secs(120);
    while child
        .try_wait()
        .expect("wait for the memory child")
        .is_none()
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the memory child did not finish within 120 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("memory child output");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("bytes="))
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("memory child said {text:?}"))
}

fn process_memory(env: &mut Env, n: usize, runs: usize) {
    let (mut rust, mut beam) = (Vec::new(), Vec::new());
    let mut edp = edp_runs(env);
    for _ in 0..runs {
        let bytes = tokio::task::block_in_place(|| memory_child_run(n, false))
            .unwrap_or_else(|e| panic!("{e}"));
        rust.push(bytes);
        beam.push(eval_i64(&mut env.a, &format!("bench_peer:process_memory({n}).")) as f64);
        if edp.live() {
            edp.push(tokio::task::block_in_place(|| memory_child_run(n, true)));
        }
    }
    report(
        "process_memory",
        "bytes/process",
        rust,
        beam,
        &edp,
        false,
        &format!(" n={n} runs={runs}"),
    );
}

/// Whether `name` is to run: all scenarios, or those listed (comma
/// separated) in `ERLDIST_BENCH_ONLY`.
fn wanted(name: &str) -> bool {
    match std::env::var("ERLDIST_BENCH_ONLY") {
        Ok(list) if !list.is_empty() => list.split(',').any(|s| s.trim() == name),
        _ => true,
    }
}

pub async fn run(full: bool) {
    let plan = if full { FULL } else { SMOKE };
    let t0 = Instant::now();
    let mut env = setup().await;
    println!(
        "# erl nodes {} and {}; erldist nodes {} and {}; {} runs per scenario",
        env.a.name(),
        env.b.name(),
        env.r1.name(),
        env.r2.name(),
        plan.runs
    );
    let small = Term::tuple(vec![Term::atom("hello"), Term::from(42)]);
    if wanted("process_memory") {
        process_memory(&mut env, plan.procs, plan.runs);
    }
    let load = |n, unit_size, senders| Load {
        n,
        unit_size,
        senders,
    };
    if wanted("send_small") {
        let msg = (small.clone(), "{hello, 42}");
        send_scenario(
            &mut env,
            "send_small",
            "msg/s",
            load(plan.small, 1, 1),
            msg,
            plan.runs,
        )
        .await;
    }
    if wanted("send_small_x4") {
        let msg = (small.clone(), "{hello, 42}");
        send_scenario(
            &mut env,
            "send_small_x4",
            "msg/s",
            load(plan.small / 4 * 4, 1, 4),
            msg,
            plan.runs,
        )
        .await;
    }
    if wanted("recv_small") {
        recv_small(&mut env, plan.small, plan.runs).await;
    }
    if wanted("recv_16mb") {
        recv_binaries(&mut env, "recv_16mb", 16 << 20, plan.mb16, plan.runs).await;
    }
    if wanted("recv_lag") {
        recv_lag(&mut env, "recv_lag", plan.small, 0, plan.runs).await;
    }
    if wanted("recv_lag_paced") {
        // 400 messages, then a wait of at least a millisecond (about two
        // with the BEAM's timers): about 200,000 a second.
        recv_lag(&mut env, "recv_lag_paced", plan.small / 5, 400, plan.runs).await;
    }
    if wanted("rust_to_rust") {
        rust_to_rust(&mut env, plan.small, plan.runs).await;
    }
    // Binaries: 1 KiB, 1 MiB (one frame) and 16 MiB (in fragments).
    let binaries = [
        ("send_1kb", 1 << 10, plan.kb),
        ("send_1mb", 1 << 20, plan.mb),
        ("send_16mb", 16 << 20, plan.mb16),
    ];
    for (name, size, n) in binaries {
        if wanted(name) {
            let erl = format!("binary:copy(<<0>>, {size})");
            let msg = (Term::binary(vec![0u8; size]), erl.as_str());
            send_scenario(&mut env, name, "bytes/s", load(n, size, 1), msg, plan.runs).await;
        }
    }
    if wanted("mixed_terms") {
        mixed_terms(&mut env, plan.mixed, plan.runs).await;
    }
    if wanted("pingpong_rtt") {
        pingpong(&mut env, plan.rounds, plan.runs, plan.bursts).await;
    }
    if wanted("pingpong_rust_to_rust") {
        pingpong_rust_to_rust(&mut env, plan.rounds, plan.runs).await;
    }
    if wanted("large_terms") {
        let (bytes, rounds) = plan.large;
        large_terms(&mut env, bytes, rounds, plan.runs).await;
    }
    if wanted("small_behind_large") {
        let (bytes, rounds) = plan.behind;
        small_behind_large(&mut env, bytes, rounds, plan.runs).await;
    }
    if wanted("genserver_calls") {
        genserver_calls(&mut env, plan.servers, plan.call_ms, plan.runs).await;
    }
    if wanted("connect") {
        connect(&mut env, plan.connects).await;
    }
    println!("# summary ({:.0} s)", t0.elapsed().as_secs_f64());
    SUMMARY.with(|s| {
        for line in s.borrow().iter() {
            println!("{line}");
        }
    });
    env.r1.shutdown().await;
    env.r2.shutdown().await;
    if let Ok(e) = env.edp {
        e.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&env.dir);
}
