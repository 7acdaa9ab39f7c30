//! Decode and encode throughput of erldist on a fixed corpus, side by side
//! with the two other Rust ETF codecs, `eetf` and `erltf`, on the same bytes
//! in the same run.
//!
//! `cargo bench --bench codec` runs criterion (short settings, so the whole
//! run stays within a few minutes on a small machine) and then prints one
//! line per scenario and direction:
//!
//! ```text
//! scenario=<name>_<decode|encode> erldist=<MB/s> eetf=<MB/s> erltf=<MB/s> ratio=<erldist / faster peer>
//! scenario=large_binaries_encode ... ratio=<r> erldist_shared=<MB/s> ratio_shared=<erldist_shared / faster peer>
//! ```
//!
//! MB/s is ETF bytes per second / 1e6 (the bytes erldist writes for the
//! scenario's messages, the same count for all three), from criterion's
//! median estimate.
//!
//! Then, because criterion measures one routine for seconds before the
//! next and this machine's speed drifts over seconds, the same decode and
//! encode of erldist and eetf are timed again in alternating turns of a
//! few milliseconds (41 pairs per scenario and direction, about 4 s in
//! all; about 6 s with the copy floors below), printed as
//! `# interleaved scenario=<name>_<dir> ratio_eetf=<median> middle_half=<p25>..<p75> erldist=<MB/s> eetf=<MB/s>`
//! (the ratio is eetf's time / erldist's; the speeds are each side's
//! median turn, so that a line shows which side moved), and one more such
//! line, `build_terms`, for building small terms whose atoms are made
//! from strings (`Term::atom` against eetf's `Atom::from`, in thousands
//! of terms a second). `cargo test --benches` (criterion's test mode) runs
//! every routine once and prints no figures.
//!
//! A process's speed at small terms can turn on where its stack fell,
//! which address-space randomization draws anew at each start
//! (BENCHMARKS.md, *Lines that sit level*: in a scratch encoder, one
//! start in seven or so read `small_tuples` at 0.55–0.67 of the others'
//! speed).
//! So the interleaved turns are then run again in fresh processes of the
//! bench (`ERLDIST_CODEC_STARTS`, 5 starts in all unless set; 1 for this
//! process only), and one more line per scenario gathers every start:
//! `# starts scenario=<name>_<dir> ratio_eetf=<r1>,<r2>,.. median=<m> erldist=<s1>,<s2>,..`
//! (each start's `ratio_eetf` and erldist's speed, in the order run).
//!
//! Each encode scenario also times, in turns with eetf's encoder, the
//! least work any encoder into a reused `Vec<u8>` does: the finished bytes
//! of each message copied in with one `extend_from_slice` (the copy
//! floor). Its line,
//! `# floor scenario=<name>_encode ceiling_eetf=<median> middle_half=<p25>..<p75> floor=<MB/s> eetf=<MB/s>`,
//! gives eetf's time over the floor's: the highest `ratio_eetf` an encoder
//! could read where a message is mostly one block of bytes, which it must
//! copy. The `# starts` lines gather the floors too (`ceiling_eetf=`,
//! `floor=`).
//!
//! The APIs measured, each crate's fastest public one:
//! - decode: erldist `Term::decode_bytes` (binaries share the input),
//!   eetf `Term::decode(&[u8])`, erltf `decode_borrowed` (binaries and
//!   atoms borrow the input). The copying variants, erldist `Term::decode`
//!   and erltf `decode`, are measured too (`erldist_copy`, `erltf_owned`) and
//!   printed on `# variants` lines.
//! - encode: erldist `Encoder::encode_to` and eetf `Term::encode` into a
//!   reused `Vec<u8>`; erltf has only `encode(&term) -> Vec<u8>`
//!   (`encode_to_writer` encodes to a `Vec` and then copies), so its output
//!   allocation is part of its figure.
//! - encode, `large_binaries` only: erldist `Encoder::encode_shared`
//!   (`erldist_shared`), which does not copy binaries of 16 KiB or more
//!   but returns them beside the written bytes, ready for a vectored
//!   write (its allocations are part of its figure). It avoids the copy;
//!   it does not copy faster. Printed as its own figures, `erldist_shared=`
//!   and `ratio_shared=` (erldist_shared / the faster peer), after the
//!   copying encoder's `erldist=` and `ratio=`.
//!
//! Before measuring, every message is decoded by each peer and re-encoded;
//! the re-encoding must be the same bytes or decode (with erldist) to an
//! `exact_eq` term. Disagreements are printed on `# check` lines, and a
//! peer that cannot decode a scenario is shown as `n/a` for it.

#[path = "codec/corpus.rs"]
mod corpus;

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, Throughput};
use erldist::{Encoder, Term};

use corpus::Scenario;

/// How a peer's reading of a scenario compares with erldist's.
#[derive(Debug)]
enum Agreement {
    /// Decodes every message; re-encodes to the same bytes.
    Identical,
    /// Decodes every message; re-encodes to other bytes that decode to the
    /// same terms.
    Equivalent(String),
    /// Decodes every message, but to something else.
    Mismatch(String),
    /// Decodes every message but cannot encode some back.
    EncodeFailed(String),
    /// Cannot decode some message.
    DecodeFailed(String),
}

impl std::fmt::Display for Agreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Agreement::Identical => write!(f, "identical"),
            Agreement::Equivalent(why) => write!(f, "equivalent({why})"),
            Agreement::Mismatch(why) => write!(f, "MISMATCH({why})"),
            Agreement::EncodeFailed(why) => write!(f, "CANNOT-ENCODE({why})"),
            Agreement::DecodeFailed(why) => write!(f, "CANNOT-DECODE({why})"),
        }
    }
}

impl Agreement {
    fn rank(&self) -> u8 {
        match self {
            Agreement::Identical => 0,
            Agreement::Equivalent(_) => 1,
            Agreement::EncodeFailed(_) => 2,
            Agreement::Mismatch(_) => 3,
            Agreement::DecodeFailed(_) => 4,
        }
    }

    fn decodes(&self) -> bool {
        !matches!(self, Agreement::DecodeFailed(_))
    }

    fn encodes(&self) -> bool {
        self.decodes() && !matches!(self, Agreement::EncodeFailed(_))
    }

    fn worst(self, other: Agreement) -> Agreement {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }
}

/// Compares a peer's re-encoding of message `i` with erldist's bytes.
fn compare(i: usize, original: &Term, ours: &[u8], theirs: &[u8]) -> Agreement {
    if ours == theirs {
        return Agreement::Identical;
    }
    match Term::decode(theirs) {
        Ok(t) if t.exact_eq(original) => Agreement::Equivalent(format!(
            "message {i}: {} bytes from erldist, {} different bytes from the peer",
            ours.len(),
            theirs.len()
        )),
        Ok(_) => Agreement::Mismatch(format!("message {i} re-encodes to a different term")),
        Err(e) => Agreement::Mismatch(format!(
            "message {i} re-encodes to bytes erldist cannot decode: {e}"
        )),
    }
}

/// What the peers made of one scenario, and their native terms for the
/// encode benchmark.
struct Peers {
    eetf: Agreement,
    eetf_terms: Vec<eetf::Term>,
    erltf: Agreement,
    erltf_terms: Vec<erltf::OwnedTerm>,
}

fn check_peers(s: &Scenario) -> Peers {
    let mut eetf_agree = Agreement::Identical;
    let mut eetf_terms = Vec::new();
    let mut erltf_agree = Agreement::Identical;
    let mut erltf_terms = Vec::new();
    for (i, (term, bytes)) in s.terms.iter().zip(&s.encoded).enumerate() {
        // eetf
        if eetf_agree.decodes() {
            let a = match eetf::Term::decode(&bytes[..]) {
                Err(e) => Agreement::DecodeFailed(format!("message {i}: {e}")),
                Ok(t) => {
                    let mut out = Vec::new();
                    let a = match t.encode(&mut out) {
                        Err(e) => Agreement::EncodeFailed(format!("message {i}: {e}")),
                        Ok(()) => compare(i, term, bytes, &out),
                    };
                    eetf_terms.push(t);
                    a
                }
            };
            eetf_agree = eetf_agree.worst(a);
        }
        // erltf: the owned decoder, and the borrowed one the bench uses.
        if erltf_agree.decodes() {
            let a = match (erltf::decode(bytes), erltf::decode_borrowed(bytes)) {
                (Err(e), _) => Agreement::DecodeFailed(format!("message {i}: decode: {e}")),
                (_, Err(e)) => {
                    Agreement::DecodeFailed(format!("message {i}: decode_borrowed: {e}"))
                }
                (Ok(owned), Ok(borrowed)) => {
                    let a = if borrowed.to_owned() != owned {
                        Agreement::Mismatch(format!(
                            "message {i}: decode and decode_borrowed disagree"
                        ))
                    } else {
                        match erltf::encode(&owned) {
                            Err(e) => Agreement::EncodeFailed(format!("message {i}: {e}")),
                            Ok(out) => compare(i, term, bytes, &out),
                        }
                    };
                    erltf_terms.push(owned);
                    a
                }
            };
            erltf_agree = erltf_agree.worst(a);
        }
    }
    Peers {
        eetf: eetf_agree,
        eetf_terms,
        erltf: erltf_agree,
        erltf_terms,
    }
}

/// Asserts that `decode_bytes` shares the input buffer for binaries (and
/// that `decode` copies), on the scenario's largest binary.
fn check_zero_copy(s: &Scenario) -> String {
    let input = s.encoded.iter().max_by_key(|b| b.len()).expect("messages");
    let range = input.as_ptr() as usize..input.as_ptr() as usize + input.len();
    let shared = Term::decode_bytes(input).expect("decodes");
    let bin = shared.as_binary().expect("a binary");
    assert!(
        range.contains(&(bin.as_ptr() as usize)),
        "decode_bytes copied a {}-byte binary",
        bin.len()
    );
    let copied = Term::decode(input).expect("decodes");
    let copied_inside = range.contains(&(copied.as_binary().expect("a binary").as_ptr() as usize));
    format!(
        "# zero-copy: decode_bytes of a {}-byte binary points into the input buffer: yes; \
         Term::decode copies it: {}",
        bin.len(),
        if copied_inside { "no" } else { "yes" }
    )
}

/// One pass of erldist's decode over the scenario (binaries shared).
fn erldist_decode(s: &Scenario) {
    for m in &s.encoded {
        black_box(Term::decode_bytes(black_box(m)).unwrap());
    }
}

/// One pass of eetf's decode over the scenario's messages.
fn eetf_decode(slices: &[&[u8]]) {
    for m in slices {
        black_box(eetf::Term::decode(black_box(*m)).unwrap());
    }
}

/// One pass of erldist's encoder over the scenario, into a reused `buf`.
fn erldist_encode(s: &Scenario, buf: &mut Vec<u8>) {
    let enc = Encoder::new();
    for t in &s.terms {
        buf.clear();
        enc.encode_to(black_box(t), buf).unwrap();
        black_box(&buf);
    }
}

/// One pass of eetf's encoder over its terms, into a reused `buf`.
fn eetf_encode(terms: &[eetf::Term], buf: &mut Vec<u8>) {
    for t in terms {
        buf.clear();
        black_box(t).encode(&mut *buf).unwrap();
        black_box(&buf);
    }
}

/// One pass of the least work any encoder into a reused `buf` does: each
/// message's finished bytes (erldist's, the same as eetf's wherever the
/// `# check` line says `identical`) copied in with one
/// `extend_from_slice`. An encoder must at least write every byte; where a
/// message is mostly one block of bytes taken from the term, it must copy
/// that block too, so it cannot beat this pass by more than the header's
/// few bytes.
fn copy_floor(s: &Scenario, buf: &mut Vec<u8>) {
    for m in &s.encoded {
        buf.clear();
        buf.extend_from_slice(black_box(&m[..]));
        black_box(&buf);
    }
}

/// What [`alternate`] measured.
struct Alternated {
    /// The 25th, 50th and 75th percentiles of the ratios `b`/`a` of
    /// neighbouring turns.
    ratios: [f64; 3],
    /// The median time of one pass of `a` and of `b`, in seconds.
    median_pass: [f64; 2],
}

impl Alternated {
    /// The `# interleaved` line for `name`: the ratio, then each side's
    /// median speed, `per_pass` units a pass divided by `scale`, under the
    /// keys `erldist{suffix}` and `eetf{suffix}` (so that a line shows
    /// which side moved).
    fn line(&self, name: &str, per_pass: f64, scale: f64, suffix: &str, digits: usize) -> String {
        let [a, b] = self.median_pass.map(|t| per_pass / t / scale);
        format!(
            "# interleaved scenario={name} {} erldist{suffix}={a:.digits$} eetf{suffix}={b:.digits$}",
            self.ratio_fields("ratio_eetf")
        )
    }

    /// The `# floor` line for `name`, where `a` was [`copy_floor`]: eetf's
    /// time over the floor's is the highest `ratio_eetf` any encoder
    /// writing the same bytes could read (`ceiling_eetf`); speeds in MB/s
    /// of the `per_pass` ETF bytes.
    fn floor_line(&self, name: &str, per_pass: f64) -> String {
        let [a, b] = self.median_pass.map(|t| per_pass / t / 1e6);
        format!(
            "# floor scenario={name} {} floor={a:.1} eetf={b:.1}",
            self.ratio_fields("ceiling_eetf")
        )
    }

    /// `<key>=<median> middle_half=<p25>..<p75>`.
    fn ratio_fields(&self, key: &str) -> String {
        let [lo, mid, hi] = self.ratios;
        format!("{key}={mid:.2} middle_half={lo:.2}..{hi:.2}")
    }
}

/// Times `a` and `b` in turn, `ROUNDS` times, each turn a batch of passes
/// lasting a few milliseconds. Criterion measures one routine for seconds
/// and then the next, so a change in the machine's speed between the two
/// (common on a shared VM) moves its ratio; turns this short see the same
/// machine.
fn alternate(mut a: impl FnMut(), mut b: impl FnMut()) -> Alternated {
    const ROUNDS: usize = 41;
    let turn = Duration::from_millis(4);
    let passes = |f: &mut dyn FnMut()| {
        let start = std::time::Instant::now();
        let mut n = 0u32;
        while start.elapsed() < turn {
            f();
            n += 1;
        }
        n
    };
    let (na, nb) = (passes(&mut a).max(1), passes(&mut b).max(1));
    let time = |f: &mut dyn FnMut(), n: u32| {
        let start = std::time::Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed().as_secs_f64() / f64::from(n)
    };
    let mut pairs: Vec<(f64, f64)> = (0..ROUNDS)
        .map(|round| {
            // Each goes first in every other round.
            if round % 2 == 0 {
                let ta = time(&mut a, na);
                (ta, time(&mut b, nb))
            } else {
                let tb = time(&mut b, nb);
                (time(&mut a, na), tb)
            }
        })
        .collect();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[ROUNDS / 2]
    };
    let median_pass = [
        median(pairs.iter().map(|p| p.0).collect()),
        median(pairs.iter().map(|p| p.1).collect()),
    ];
    pairs.sort_by(|x, y| (x.1 / x.0).total_cmp(&(y.1 / y.0)));
    let ratio = |i: usize| pairs[i].1 / pairs[i].0;
    Alternated {
        ratios: [ratio(ROUNDS / 4), ratio(ROUNDS / 2), ratio(3 * ROUNDS / 4)],
        median_pass,
    }
}

/// `# interleaved` lines: erldist against eetf (the peer the goal names)
/// by [`alternate`], decode and encode, with the passes the criterion
/// groups time.
fn interleaved(s: &Scenario, peers: &Peers) -> Vec<String> {
    let slices: Vec<&[u8]> = s.encoded.iter().map(|b| &b[..]).collect();
    // MB/s of ETF bytes.
    let line = |dir: &str, t: Alternated| {
        t.line(
            &format!("{}_{dir}", s.name),
            s.total_bytes() as f64,
            1e6,
            "",
            1,
        )
    };
    let mut lines = Vec::new();
    if peers.eetf.decodes() {
        let r = alternate(|| erldist_decode(s), || eetf_decode(&slices));
        lines.push(line("decode", r));
    }
    if peers.eetf.encodes() {
        // One output buffer for both, as criterion's routines share one:
        // copying a long byte string runs at half speed or less when
        // source and destination sit at unlucky distances apart in memory
        // (seen at one page offset of the output in 16), so each side
        // writing its own buffer could turn on where the allocator put
        // the two.
        let out = std::cell::RefCell::new(Vec::new());
        let r = alternate(
            || erldist_encode(s, &mut out.borrow_mut()),
            || eetf_encode(&peers.eetf_terms, &mut out.borrow_mut()),
        );
        lines.push(line("encode", r));
        // The same turns with the copy floor in erldist's place.
        let r = alternate(
            || copy_floor(s, &mut out.borrow_mut()),
            || eetf_encode(&peers.eetf_terms, &mut out.borrow_mut()),
        );
        lines.push(r.floor_line(&format!("{}_encode", s.name), s.total_bytes() as f64));
    }
    lines
}

/// A `# interleaved` line for building terms whose atoms are made from
/// strings, as a program does for each message it sends:
/// `{hello, N, {get, key}}`, 1,000 times, with erldist's `Term::atom`
/// against eetf's `Atom::from` (each builds and drops its own term).
fn build_terms_line() -> String {
    let t = alternate(
        || {
            for n in 0..1000 {
                black_box(Term::tuple(vec![
                    Term::atom(black_box("hello")),
                    Term::from(n),
                    Term::tuple(vec![
                        Term::atom(black_box("get")),
                        Term::atom(black_box("key")),
                    ]),
                ]));
            }
        },
        || {
            for n in 0..1000 {
                black_box(eetf::Term::from(eetf::Tuple::from(vec![
                    eetf::Term::from(eetf::Atom::from(black_box("hello"))),
                    eetf::Term::from(eetf::FixInteger::from(n)),
                    eetf::Term::from(eetf::Tuple::from(vec![
                        eetf::Term::from(eetf::Atom::from(black_box("get"))),
                        eetf::Term::from(eetf::Atom::from(black_box("key"))),
                    ])),
                ])));
            }
        },
    );
    // Thousands of terms a second (1,000 a pass): MB/s has no meaning here.
    t.line("build_terms", 1000.0, 1e3, "_kterms", 0)
}

fn bench_scenario(c: &mut Criterion, s: &Scenario, peers: &Peers) {
    let bytes = s.total_bytes();
    let slices: Vec<&[u8]> = s.encoded.iter().map(|b| &b[..]).collect();

    let mut g = c.benchmark_group(format!("decode_{}", s.name));
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("erldist", |b| b.iter(|| erldist_decode(s)));
    g.bench_function("erldist_copy", |b| {
        b.iter(|| {
            for m in &slices {
                black_box(Term::decode(black_box(m)).unwrap());
            }
        })
    });
    if peers.eetf.decodes() {
        g.bench_function("eetf", |b| b.iter(|| eetf_decode(&slices)));
    }
    if peers.erltf.decodes() {
        g.bench_function("erltf", |b| {
            b.iter(|| {
                for m in &slices {
                    black_box(erltf::decode_borrowed(black_box(m)).unwrap());
                }
            })
        });
        g.bench_function("erltf_owned", |b| {
            b.iter(|| {
                for m in &slices {
                    black_box(erltf::decode(black_box(m)).unwrap());
                }
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group(format!("encode_{}", s.name));
    g.throughput(Throughput::Bytes(bytes));
    let mut buf = Vec::new();
    g.bench_function("erldist", |b| b.iter(|| erldist_encode(s, &mut buf)));
    if s.name == "large_binaries" {
        g.bench_function("erldist_shared", |b| {
            let enc = Encoder::new();
            b.iter(|| {
                for t in &s.terms {
                    black_box(enc.encode_shared(black_box(t)).unwrap());
                }
            })
        });
    }
    if peers.eetf.encodes() {
        g.bench_function("eetf", |b| {
            b.iter(|| eetf_encode(&peers.eetf_terms, &mut buf))
        });
    }
    if peers.erltf.encodes() {
        g.bench_function("erltf", |b| {
            b.iter(|| {
                for t in &peers.erltf_terms {
                    black_box(erltf::encode(black_box(t)).unwrap());
                }
            })
        });
    }
    g.finish();
}

/// Where criterion writes its results: `$CRITERION_HOME`, else
/// `<target dir>/criterion`.
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // The bench runs as <target>/<profile>/deps/codec-<hash>.
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(|p| p.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// Whether criterion measures in this run (`cargo bench`), as opposed to
/// its test mode (`cargo test --benches`, `--test`), `--list` or
/// `--profile-time`.
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| {
        args.iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    };
    has("--bench") && !has("--test") && !has("--list") && !has("--profile-time")
}

/// The MB/s of one benchmark measured in this run (its estimates written
/// since `since`), from criterion's median time per iteration.
fn throughput(dir: &std::path::Path, id: &str, bytes: u64, since: SystemTime) -> Option<f64> {
    let path = dir.join(id).join("new").join("estimates.json");
    let fresh = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t >= since);
    if !fresh {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    let ns = json["median"]["point_estimate"].as_f64()?;
    (ns > 0.0).then(|| bytes as f64 / ns * 1e3)
}

fn fmt_mbs(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.1}"))
}

fn print_summary(scenarios: &[Scenario], out: &std::path::Path, since: SystemTime) {
    let mut variants = Vec::new();
    println!();
    for s in scenarios {
        for dir in ["decode", "encode"] {
            let group = out.join(format!("{dir}_{}", s.name));
            let get = |id: &str| throughput(&group, id, s.total_bytes(), since);
            let (ours, eetf, erltf) = (get("erldist"), get("eetf"), get("erltf"));
            if ours.is_none() && eetf.is_none() && erltf.is_none() {
                continue; // filtered out of this run
            }
            let best_peer = match (eetf, erltf) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
            let ratio_of = |ours: Option<f64>| match (ours, best_peer) {
                (Some(o), Some(p)) => format!("{:.2}", o / p),
                _ => "n/a".to_string(),
            };
            // The non-copying encoder, where measured: its own figures.
            let shared = match get("erldist_shared") {
                Some(v) if dir == "encode" => format!(
                    " erldist_shared={} ratio_shared={}",
                    fmt_mbs(Some(v)),
                    ratio_of(Some(v))
                ),
                _ => String::new(),
            };
            println!(
                "scenario={}_{dir} erldist={} eetf={} erltf={} ratio={}{shared}",
                s.name,
                fmt_mbs(ours),
                fmt_mbs(eetf),
                fmt_mbs(erltf),
                ratio_of(ours),
            );
            if dir == "decode" {
                variants.push(format!(
                    "# variants scenario={}_decode erldist_copy={} erltf_owned={}",
                    s.name,
                    fmt_mbs(get("erldist_copy")),
                    fmt_mbs(get("erltf_owned")),
                ));
            }
        }
    }
    for v in variants {
        println!("{v}");
    }
}

fn main() {
    let since = SystemTime::now();
    let out = criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&out)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(2000))
        .nresamples(10_000)
        .without_plots()
        .configure_from_args();

    let scenarios = corpus::scenarios();
    if std::env::var_os(ONLY_INTERLEAVED).is_some() {
        let peers: Vec<Peers> = scenarios.iter().map(check_peers).collect();
        for l in interleaved_lines(&scenarios, &peers) {
            println!("{l}");
        }
        return;
    }
    let mut notes = Vec::new();
    for s in &scenarios {
        notes.push(format!(
            "# corpus scenario={} messages={} etf_bytes={}",
            s.name,
            s.encoded.len(),
            s.total_bytes()
        ));
    }
    let large = scenarios
        .iter()
        .find(|s| s.name == "large_binaries")
        .expect("large_binaries scenario");
    notes.push(check_zero_copy(large));
    let peers: Vec<Peers> = scenarios.iter().map(check_peers).collect();
    for (s, p) in scenarios.iter().zip(&peers) {
        notes.push(format!(
            "# check scenario={} eetf={} erltf={}",
            s.name, p.eetf, p.erltf
        ));
    }
    for n in &notes {
        println!("{n}");
    }

    for (s, p) in scenarios.iter().zip(&peers) {
        bench_scenario(&mut c, s, p);
    }
    c.final_summary();

    if measuring() {
        print_summary(&scenarios, &out, since);
        let mut lines = interleaved_lines(&scenarios, &peers);
        for l in &lines {
            println!("{l}");
        }
        for start in 2..=starts() {
            match interleaved_elsewhere() {
                Ok(more) => lines.extend(more),
                Err(e) => println!("# starts: start {start} failed: {e}"),
            }
        }
        for l in starts_lines(&lines) {
            println!("{l}");
        }
        // Repeat the notes next to the figures, criterion's output being long.
        for n in &notes {
            println!("{n}");
        }
    }
}

/// Set in a fresh process of the bench that is to run the interleaved
/// turns only ([`interleaved_elsewhere`]).
const ONLY_INTERLEAVED: &str = "ERLDIST_CODEC_ONLY_INTERLEAVED";

/// How many starts run the interleaved turns: `ERLDIST_CODEC_STARTS`, or
/// 5 (about 6 s each, copy floors included).
fn starts() -> usize {
    std::env::var("ERLDIST_CODEC_STARTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
}

/// Every `# interleaved` line, scenario by scenario, then `build_terms`.
fn interleaved_lines(scenarios: &[Scenario], peers: &[Peers]) -> Vec<String> {
    let mut lines: Vec<String> = scenarios
        .iter()
        .zip(peers)
        .flat_map(|(s, p)| interleaved(s, p))
        .collect();
    lines.push(build_terms_line());
    lines
}

/// The `# interleaved` lines of a fresh process of this bench, which
/// draws its own stack address (and runs nothing else).
fn interleaved_elsewhere() -> Result<Vec<String>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .env(ONLY_INTERLEAVED, "1")
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("exited with {}", out.status));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("# interleaved ") || l.starts_with("# floor "))
        .map(str::to_owned)
        .collect())
}

/// One `# starts` line per scenario seen in more than one start of
/// `lines` (`# interleaved` and `# floor` lines, in the order run): each
/// start's ratio (`ratio_eetf`, or `ceiling_eetf` for a floor) and
/// erldist's speed (the floor's for a floor), and the median ratio (the
/// upper of the middle two for an even number of starts).
fn starts_lines(lines: &[String]) -> Vec<String> {
    let field = |l: &str, key: &str| {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_owned)
    };
    // (name, ratio key, speed key, ratios, speeds)
    type Seen = (String, &'static str, &'static str, Vec<f64>, Vec<String>);
    let mut seen: Vec<Seen> = Vec::new();
    for l in lines {
        // The ratio's key, the speed's key as printed, the keys it is read from.
        let (ratio_key, speed_key, speed_keys): (_, _, &[&str]) = if l.starts_with("# floor ") {
            ("ceiling_eetf", "floor", &["floor"])
        } else {
            ("ratio_eetf", "erldist", &["erldist", "erldist_kterms"])
        };
        let (Some(name), Some(ratio)) = (field(l, "scenario"), field(l, ratio_key)) else {
            continue;
        };
        let Ok(ratio) = ratio.parse::<f64>() else {
            continue;
        };
        let Some(speed) = speed_keys.iter().find_map(|k| field(l, k)) else {
            continue;
        };
        match seen
            .iter_mut()
            .find(|(n, k, ..)| *n == name && *k == ratio_key)
        {
            Some((.., ratios, speeds)) => {
                ratios.push(ratio);
                speeds.push(speed);
            }
            None => seen.push((name, ratio_key, speed_key, vec![ratio], vec![speed])),
        }
    }
    seen.into_iter()
        .filter(|(.., ratios, _)| ratios.len() > 1)
        .map(|(name, ratio_key, speed_key, ratios, speeds)| {
            let mut sorted = ratios.clone();
            sorted.sort_by(f64::total_cmp);
            let median = sorted[sorted.len() / 2];
            let ratios: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
            format!(
                "# starts scenario={name} {ratio_key}={} median={median:.2} {speed_key}={}",
                ratios.join(","),
                speeds.join(",")
            )
        })
        .collect()
}
