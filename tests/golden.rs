//! Golden tests against the real OTP: the `erl` installed here writes a
//! corpus of thousands of terms (`tests/fixtures/golden.escript`), and
//! erldist must decode every one, encode it back to the very same bytes,
//! print it as `~w` prints it and parse that text back. The other way round,
//! OTP decodes what erldist encodes and writes the same bytes again.

mod common;

use std::cmp::Ordering;

use common::{arb_term, erl_available, golden, unhex, unhex_text};
use erldist::{DecodeErrorKind, Term};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};

/// Terms in the corpus: a few hundred fixed edge cases plus random ones.
const CORPUS_RANDOM: &str = "3000";

struct Failures(Vec<String>);

impl Failures {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok && self.0.len() < 30 {
            self.0.push(what());
        }
    }
    fn assert_none(self, total: usize, what: &str) {
        assert!(
            self.0.is_empty(),
            "{} of {total} {what} failed, first ones:\n{}",
            self.0.len(),
            self.0.join("\n")
        );
    }
}

#[test]
fn decodes_and_reencodes_the_otp_corpus_byte_for_byte() {
    if !erl_available() {
        return;
    }
    let mut fails = Failures(Vec::new());
    let mut count = 0;
    for line in corpus().lines() {
        count += 1;
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 7, "corpus line: {line:.80}");
        let (kind, bin, compressed, old1, old0) = (cols[0], cols[1], cols[2], cols[5], cols[6]);
        let bytes = unhex(bin);
        let term = match Term::decode(&bytes) {
            Ok(t) => t,
            Err(e) => {
                fails.check(false, || format!("{kind} {bin:.80}: decode failed: {e}"));
                continue;
            }
        };
        // Zero-copy decoding gives the same term.
        let shared = Term::decode_bytes(&bytes.clone().into()).expect("decode_bytes");
        fails.check(shared.exact_eq(&term), || {
            format!("{kind} {bin:.80}: decode_bytes differs")
        });
        // Encoding gives OTP's bytes back.
        match term.encode() {
            Ok(again) => fails.check(again == bytes, || {
                format!(
                    "{kind}: encode differs\n  otp:  {bin:.200}\n  ours: {:.200}",
                    hex::encode_upper(&again)
                )
            }),
            Err(e) => fails.check(false, || format!("{kind} {bin:.80}: encode failed: {e}")),
        }
        // The compressed form and the old forms decode to the same term.
        for (form, hex) in [
            ("compressed", compressed),
            ("minor_version 1", old1),
            ("minor_version 0", old0),
        ] {
            match Term::decode(&unhex(hex)) {
                Ok(t) => fails.check(t.exact_eq(&term), || {
                    format!("{kind} {bin:.80}: {form} form differs")
                }),
                Err(e) => fails.check(false, || format!("{kind} {hex:.80}: {form} form: {e}")),
            }
        }
    }
    assert!(count > 3000, "corpus too small: {count}");
    fails.assert_none(count, "corpus terms");
}

/// The corpus, made once per test run.
fn corpus() -> &'static str {
    static CORPUS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CORPUS.get_or_init(|| golden(&["corpus", CORPUS_RANDOM, "1"], ""))
}

#[test]
fn prints_and_parses_the_otp_corpus_as_w() {
    if !erl_available() {
        return;
    }
    let mut fails = Failures(Vec::new());
    let mut text_count = 0;
    for line in corpus().lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let (kind, w) = (cols[0], cols[3]);
        let term = Term::decode(&unhex(cols[1])).expect("decode");
        // Text: Display is ~w, and ~w parses back.
        if w != "-" {
            text_count += 1;
            let expected = unhex_text(w);
            let ours = term.to_string();
            fails.check(ours == expected, || {
                format!("{kind}: Display differs\n  ~w:   {expected:.200}\n  ours: {ours:.200}")
            });
            match expected.parse::<Term>() {
                Ok(parsed) => fails.check(parsed.exact_eq(&term), || {
                    format!("{kind}: parsing ~w text gives another term: {expected:.200}")
                }),
                Err(e) => fails.check(false, || {
                    format!("{kind}: cannot parse ~w text {expected:.200}: {e}")
                }),
            }
        }
    }
    assert!(text_count > 2000, "too few printable terms: {text_count}");
    fails.assert_none(text_count, "printable corpus terms");
}

#[test]
fn alternate_display_matches_tp_on_one_line() {
    if !erl_available() {
        return;
    }
    let corpus = golden(&["corpus", "1000", "2"], "");
    let mut fails = Failures(Vec::new());
    let mut count = 0;
    for line in corpus.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let p = cols[4];
        if p == "-" {
            continue;
        }
        let expected = unhex_text(p);
        if expected.contains('\n') {
            continue;
        }
        count += 1;
        let term = Term::decode(&unhex(cols[1])).expect("decode");
        let ours = format!("{term:#}");
        fails.check(ours == expected, || {
            format!("~p:   {expected:.200}\n  ours: {ours:.200}")
        });
        match expected.parse::<Term>() {
            Ok(parsed) => fails.check(parsed.exact_eq(&term), || {
                format!("parsing ~p text {expected:.200} gives another term")
            }),
            Err(e) => fails.check(false, || {
                format!("cannot parse ~p text {expected:.200}: {e}")
            }),
        }
    }
    assert!(count > 500, "too few one-line ~p terms: {count}");
    fails.assert_none(count, "~p texts");
}

#[test]
fn orders_terms_as_otp_does() {
    if !erl_available() {
        return;
    }
    let pairs = golden(&["pairs", "4000", "1"], "");
    let mut fails = Failures(Vec::new());
    let mut count = 0;
    for line in pairs.lines() {
        count += 1;
        let cols: Vec<&str> = line.split('\t').collect();
        let a = Term::decode(&unhex(cols[0])).expect("decode a");
        let b = Term::decode(&unhex(cols[1])).expect("decode b");
        let expected = match cols[2] {
            "lt" => Ordering::Less,
            "eq" => Ordering::Equal,
            _ => Ordering::Greater,
        };
        let exact = cols[3] == "true";
        fails.check(a.cmp(&b) == expected, || {
            format!("{a} vs {b}: otp says {expected:?}, we say {:?}", a.cmp(&b))
        });
        fails.check(b.cmp(&a) == expected.reverse(), || {
            format!("{b} vs {a}: not antisymmetric")
        });
        fails.check(a.exact_eq(&b) == exact, || {
            format!("{a} =:= {b}: otp says {exact}")
        });
    }
    assert_eq!(count, 4000);
    fails.assert_none(count, "pairs");
}

/// Random terms made in Rust: OTP decodes our bytes and writes the very
/// same bytes again, and prints them as our Display does.
#[test]
fn otp_reads_what_we_write() {
    if !erl_available() {
        return;
    }
    let mut runner = TestRunner::new(Config {
        rng_seed: proptest::test_runner::RngSeed::Fixed(7),
        ..Config::default()
    });
    let strategy = arb_term();
    let terms: Vec<Term> = (0..2000)
        .map(|_| strategy.new_tree(&mut runner).expect("tree").current())
        .collect();
    let input: String = terms
        .iter()
        .map(|t| hex::encode(t.encode().expect("encode")) + "\n")
        .collect();
    let answers = golden(&["reencode"], &input);
    let mut fails = Failures(Vec::new());
    let mut count = 0;
    for (term, answer) in terms.iter().zip(answers.lines()) {
        count += 1;
        let ours = term.encode().expect("encode");
        let cols: Vec<&str> = answer.split('\t').collect();
        if cols[0] == "error" {
            fails.check(false, || format!("otp rejects {term}: {}", cols[1]));
            continue;
        }
        let theirs = unhex(cols[0]);
        if theirs != ours {
            // Maps of over 32 keys are hash maps in OTP, written in the order
            // of its internal hash; those need only decode to the same term.
            let same = Term::decode(&theirs).is_ok_and(|t| t.exact_eq(term));
            fails.check(same && has_large_map(term), || {
                format!(
                    "{term}: otp writes\n  {}\n  we write\n  {}",
                    cols[0],
                    hex::encode_upper(&ours)
                )
            });
        }
        if cols[1] != "-" {
            let w = unhex_text(cols[1]);
            fails.check(w == term.to_string(), || {
                format!("~w {w:.200} but Display {term:.200}")
            });
        }
    }
    assert_eq!(count, terms.len(), "escript answered fewer lines");
    fails.assert_none(count, "terms");
}

fn has_large_map(t: &Term) -> bool {
    match t {
        Term::Map(m) => m.len() > 32 || m.iter().any(|(k, v)| has_large_map(k) || has_large_map(v)),
        Term::Tuple(v) | Term::List(v) => v.iter().any(has_large_map),
        Term::ImproperList(l) => l.elems.iter().any(has_large_map) || has_large_map(&l.tail),
        _ => false,
    }
}

/// Old forms that OTP 25 no longer writes (PID_EXT, PORT_EXT,
/// REFERENCE_EXT, NEW_REFERENCE_EXT, SMALL_ATOM_EXT): OTP still reads them;
/// we must read them as OTP does.
#[test]
fn decodes_old_forms_as_otp_does() {
    if !erl_available() {
        return;
    }
    let node = |name: &str| {
        let mut v = vec![100, 0, name.len() as u8];
        v.extend_from_slice(name.as_bytes());
        v
    };
    let mut cases: Vec<Vec<u8>> = Vec::new();
    let k = node("kate@localhost");
    cases.push([&[131, 103][..], &k, &[0, 0, 0, 85, 0, 0, 0, 1, 2]].concat()); // PID_EXT
    cases.push([&[131, 102][..], &k, &[0, 0, 0, 7, 3]].concat()); // PORT_EXT
    cases.push([&[131, 101][..], &k, &[0, 0, 0, 9, 1]].concat()); // REFERENCE_EXT
    cases.push(
        [
            &[131, 114, 0, 3][..],
            &k,
            &[2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3],
        ]
        .concat(),
    ); // NEW_REFERENCE_EXT
    cases.push(vec![131, 115, 3, b'a', 0xe9, b'b']); // SMALL_ATOM_EXT, Latin-1
    cases.push(vec![131, 100, 0, 2, 0xf6, 0xe5]); // ATOM_EXT, Latin-1
    cases.push({
        let mut v = vec![131, 99];
        let mut f = format!("{:.20e}", 1.5f64).into_bytes();
        f.resize(31, 0);
        v.extend(f);
        v
    }); // FLOAT_EXT
    cases.push(vec![131, 108, 0, 0, 0, 0, 106]); // LIST_EXT of length 0
    cases.push(vec![131, 110, 0, 0]); // SMALL_BIG_EXT zero
    cases.push(vec![131, 110, 3, 1, 5, 0, 0]); // non-normalized SMALL_BIG_EXT
    let input: String = cases.iter().map(|c| hex::encode(c) + "\n").collect();
    let answers = golden(&["reencode"], &input);
    for (case, answer) in cases.iter().zip(answers.lines()) {
        let cols: Vec<&str> = answer.split('\t').collect();
        assert_ne!(cols[0], "error", "otp rejects {case:?}");
        let ours = Term::decode(case).unwrap_or_else(|e| panic!("{case:?}: {e}"));
        assert_eq!(
            hex::encode_upper(ours.encode().expect("encode")),
            cols[0],
            "old form {case:?} decodes to another term than OTP's"
        );
    }
}

/// Inputs that OTP's binary_to_term rejects, we reject too, with an error
/// that says where.
#[test]
fn rejects_what_otp_rejects() {
    if !erl_available() {
        return;
    }
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "empty"),
        (vec![130, 97, 1], "bad version"),
        (vec![131], "no tag"),
        (vec![131, 97], "truncated small int"),
        (vec![131, 98, 0, 0], "truncated int"),
        (vec![131, 104, 2, 97, 1], "short tuple"),
        (
            vec![131, 108, 255, 255, 255, 255, 97, 1, 106],
            "list longer than input",
        ),
        (
            vec![131, 109, 255, 255, 255, 250, 1, 2],
            "binary longer than input",
        ),
        (
            vec![131, 116, 0, 0, 0, 2, 97, 1, 97, 2, 97, 1, 97, 3],
            "duplicate map key",
        ),
        (
            vec![131, 70, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0],
            "infinite float",
        ),
        (vec![131, 77, 0, 0, 0, 1, 0, 0xff], "bitstring with 0 bits"),
        (vec![131, 77, 0, 0, 0, 1, 9, 0xff], "bitstring with 9 bits"),
        (vec![131, 200], "unknown tag"),
        (vec![131, 119, 2, 0xff, 0xfe], "invalid UTF-8 atom"),
        (
            unhex("835A0006770161000000010000000100000001000000010000000100000001"),
            "reference with 6 words",
        ),
        (
            vec![131, 88, 97, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
            "pid whose node is not an atom",
        ),
        (vec![131, 80, 0, 0, 0, 10, 1, 2, 3], "bad zlib"),
        (
            vec![
                131, 80, 0, 0, 0, 3, 0x78, 0x9c, 0x4b, 0x04, 0x00, 0x00, 0x62, 0x00, 0x62,
            ],
            "compressed size mismatch",
        ),
    ];
    let input: String = cases.iter().map(|(c, _)| hex::encode(c) + "\n").collect();
    let answers = golden(&["reencode"], &input);
    for ((case, what), answer) in cases.iter().zip(answers.lines()) {
        assert!(
            answer.starts_with("error"),
            "OTP accepts the {what} case {case:?}: {answer}"
        );
        let e = Term::decode(case).expect_err(what);
        assert!(
            e.offset <= case.len(),
            "{what}: offset {} past the input",
            e.offset
        );
        assert!(!e.to_string().is_empty());
    }
    // binary_to_term/1 ignores bytes after the term; we refuse them, since
    // they mean the input is not what the caller thinks it is.
    let e = Term::decode(&[131, 97, 1, 0]).unwrap_err();
    assert_eq!((e.offset, e.kind), (3, DecodeErrorKind::TrailingBytes(1)));
    // Specific errors name the problem and the byte.
    let e = Term::decode(&[131, 104, 2, 97, 1]).unwrap_err();
    assert!(
        matches!(e.kind, DecodeErrorKind::UnexpectedEnd { .. }),
        "{e}"
    );
    let e = Term::decode(&[131, 108, 255, 255, 255, 255, 97, 1, 106]).unwrap_err();
    assert!(
        matches!(e.kind, DecodeErrorKind::LengthTooLarge { .. }),
        "{e}"
    );
    assert_eq!(e.offset, 6);
    let e = Term::decode(&[131, 200]).unwrap_err();
    assert_eq!((e.offset, e.kind), (1, DecodeErrorKind::UnknownTag(200)));
}

/// Every input the fuzzers kept (`fuzz/regressions/`): OTP and erldist
/// accept the same ones and read them as the same term. The one deliberate
/// difference: OTP ignores bytes after the term, erldist refuses them.
#[test]
fn fuzz_regressions_decode_as_otp_does() {
    if !erl_available() {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let mut files = Vec::new();
    for dir in std::fs::read_dir(&root).expect("fuzz/regressions") {
        let dir = dir.expect("entry").path();
        // The other targets' inputs are not the external format (protocol
        // bytes, term text): tests/fuzz_regressions.rs replays them.
        let not_etf = [
            "epmd_request",
            "handshake_initiator",
            "handshake_acceptor",
            "dist_frames",
            "parse",
        ];
        if !dir.is_dir()
            || dir
                .file_name()
                .is_some_and(|n| not_etf.iter().any(|p| n == *p))
        {
            continue;
        }
        for f in std::fs::read_dir(&dir).expect("dir") {
            let f = f.expect("entry").path();
            if f.extension().is_none() {
                files.push(f);
            }
        }
    }
    assert!(files.len() >= 6, "regression inputs missing: {files:?}");
    let inputs: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(f).expect("read"))
        .collect();
    let answer_lines = golden(
        &["reencode"],
        &inputs
            .iter()
            .map(|i| hex::encode(i) + "\n")
            .collect::<String>(),
    );
    for ((file, input), answer) in files.iter().zip(&inputs).zip(answer_lines.lines()) {
        let ours = Term::decode(input);
        let cols: Vec<&str> = answer.split('\t').collect();
        match (cols[0], ours) {
            ("error", Ok(t)) => panic!("{file:?}: OTP rejects, we read {t}"),
            ("error", Err(_)) => {}
            (_, Err(e)) if matches!(e.kind, DecodeErrorKind::TrailingBytes(_)) => {}
            (_, Err(e)) => panic!("{file:?}: OTP reads it, we fail: {e}"),
            (otp, Ok(t)) => assert_eq!(
                hex::encode_upper(t.encode().expect("encode")),
                otp,
                "{file:?}"
            ),
        }
    }
}
