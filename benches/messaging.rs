//! Messaging between nodes, erldist side by side with BEAM.
//!
//! `cargo bench --bench messaging` starts everything itself: a real `epmd`
//! (`RealEpmd`), two real `erl` nodes, A and B, loaded with
//! `benches/messaging/bench_peer.erl` (compiled with `erlc` into a temp
//! dir), and erldist nodes in this process. Each scenario runs the erldist
//! variant and the BEAM variant back to back, a few times each, and the
//! median is taken. BEAM->BEAM figures are timed inside Erlang
//! (`erlang:monotonic_time`) and returned through `eval`. One line per
//! scenario:
//!
//! ```text
//! scenario=<name> erldist=<value> beam=<value> ratio=<r> edp=<value> ratio_edp=<r> unit=<unit> ...
//! ```
//!
//! `ratio` > 1 means erldist is ahead: erldist / beam for rates, beam /
//! erldist for times and bytes. Per-run figures are printed on `#` lines.
//! Where the `edp_node` crate can run the same scenario, its median is on
//! the same line as `edp=<value>` with `ratio_edp=<r>` (erldist against
//! edp, same direction); `edp=n/a` (with the reason on a `#` line) where it
//! cannot, `edp=failed` (with the reason) where it failed. See
//! `benches/messaging/edp.rs`.
//!
//! edp_node sends every message from no process (`SEND`, no sender on the
//! wire), where erldist's and BEAM's processes name themselves
//! (`SEND_SENDER`), which costs the receiving node a little more. So the
//! streams that edp runs are also run from erldist without a sender
//! (`Node::send_ref`), like for like with edp: `erldist_anon=<value>
//! ratio_edp_anon=<r>` on the same line.
//! Without `--bench` (as `cargo test --benches` runs it) every scenario runs
//! once with small counts, as a smoke test.

// `--features bench-mimalloc`: the whole bench process (erldist and edp
// alike) allocates through mimalloc instead of the system's allocator.
#[cfg(feature = "bench-mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// The codec bench's corpus: the terms of the `mixed_terms` scenario.
#[allow(dead_code)]
#[path = "codec/corpus.rs"]
mod corpus;
#[path = "messaging/edp.rs"]
mod edp;
#[path = "common/round_trip.rs"]
mod round_trip;
#[path = "messaging/scenarios.rs"]
mod scenarios;

fn main() {
    if std::env::var_os(scenarios::MEMORY_CHILD_ENV).is_some() {
        scenarios::memory_child();
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    if !erldist::testing::require_erl() || !erldist::testing::require_programs(&["erlc", "epmd"]) {
        println!("scenario=all skipped reason=no erl/erlc/epmd on PATH");
        return;
    }
    println!(
        "# allocator: {}",
        if cfg!(feature = "bench-mimalloc") {
            "mimalloc (--features bench-mimalloc)"
        } else {
            "the system's (glibc malloc)"
        }
    );
    let workers = std::env::var("ERLDIST_BENCH_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(scenarios::run(full));
}
