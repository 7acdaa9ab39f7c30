//! Helpers shared by the codec tests: finding the real `erl`, running the
//! golden-data escript, and generating random terms.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use erldist::{Atom, Fun, Pid, Port, Reference, Term};
use proptest::prelude::*;

/// Whether `escript` (real OTP) can be run: fails the test under CI when
/// it cannot, skips it otherwise (see `erldist::testing::require_programs`).
pub fn erl_available() -> bool {
    erldist::testing::require_programs(&["escript", "erl"])
}

fn golden_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden.escript")
}

/// Runs the golden escript with `args`, feeding it `input`; its stdout.
pub fn golden(args: &[&str], input: &str) -> String {
    let mut child = Command::new("escript")
        .arg(golden_script())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start escript");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().expect("run escript");
    writer.join().expect("writer");
    assert!(
        out.status.success(),
        "escript {args:?} failed: {:?}",
        out.status
    );
    String::from_utf8(out.stdout).expect("escript output is UTF-8")
}

pub fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap_or_else(|e| panic!("bad hex from escript ({e}): {s:.60}"))
}

pub fn unhex_text(s: &str) -> String {
    String::from_utf8(unhex(s)).expect("UTF-8 text")
}

// ---- random terms ----

fn arb_atom() -> impl Strategy<Value = Atom> {
    prop_oneof![
        prop::sample::select(vec![
            "ok",
            "error",
            "true",
            "false",
            "nil",
            "undefined",
            "kate@localhost"
        ]),
        "[a-z][a-zA-Z0-9_@]{0,10}".prop_map(|s| Box::leak(s.into_boxed_str()) as &str),
        "[ -~]{0,12}".prop_map(|s| Box::leak(s.into_boxed_str()) as &str),
        "[a-zé好😀 'A.\\\\\n]{1,8}".prop_map(|s| Box::leak(s.into_boxed_str()) as &str),
    ]
    .prop_map(Atom::from)
}

fn arb_int() -> impl Strategy<Value = Term> {
    prop_oneof![
        (0i64..=255).prop_map(Term::Int),
        any::<i32>().prop_map(|i| Term::Int(i64::from(i))),
        any::<i64>().prop_map(Term::Int),
        any::<i128>().prop_map(Term::from),
        (any::<u128>(), any::<u128>(), any::<bool>()).prop_map(|(a, b, neg)| {
            let big: num_bigint::BigInt = (num_bigint::BigInt::from(a) << 128u32) + b;
            Term::from(if neg { -big } else { big })
        }),
    ]
}

fn arb_float() -> impl Strategy<Value = Term> {
    prop_oneof![
        any::<f64>().prop_filter("finite", |f| f.is_finite()),
        (-1e6f64..1e6),
        (-1000i32..1000).prop_map(f64::from),
        prop::sample::select(vec![
            0.0,
            -0.0,
            0.1,
            1e21,
            1e22,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE
        ]),
    ]
    .prop_map(Term::Float)
}

fn arb_pid() -> impl Strategy<Value = Pid> {
    (arb_node(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
        |(node, id, serial, creation)| Pid {
            node,
            id: id & 0x7fff_ffff,
            serial: serial & 0x7fff_ffff,
            creation,
        },
    )
}

fn arb_node() -> impl Strategy<Value = Atom> {
    prop::sample::select(vec!["kate@localhost", "alex@127.0.0.1", "nonode@nohost"])
        .prop_map(Atom::from)
}

fn arb_leaf() -> impl Strategy<Value = Term> {
    prop_oneof![
        3 => arb_int(),
        2 => arb_float(),
        3 => arb_atom().prop_map(Term::Atom),
        // Both sides of erldist::INLINE_BINARY: held in the term, or shared.
        2 => prop::collection::vec(any::<u8>(), 0..20).prop_map(Term::binary),
        1 => prop::collection::vec(any::<u8>(), 20..48).prop_map(Term::binary),
        1 => (prop::collection::vec(any::<u8>(), 1..6), 1u8..8)
            .prop_map(|(v, bits)| {
                let mut v = v;
                let last = v.len() - 1;
                v[last] &= 0xffu8 << (8 - bits);
                Term::bitstring(v, bits).expect("bits in range")
            }),
        2 => prop::collection::vec(any::<u8>(), 1..20).prop_map(|v| Term::ByteList(v.into())),
        1 => Just(Term::NIL),
        1 => arb_pid().prop_map(Term::Pid),
        1 => (arb_node(), any::<u32>(), any::<u32>()).prop_map(|(node, id, creation)| Term::Port(Port {
            node,
            id: u64::from(id),
            creation
        })),
        1 => (arb_node(), any::<u32>(), prop::collection::vec(any::<u32>(), 1..=5))
            .prop_map(|(node, creation, ids)| Term::from(
                Reference::new(node, creation, &ids).expect("1..=5 words")
            )),
        1 => (arb_atom(), arb_atom(), 0u8..=255).prop_map(|(module, function, arity)| {
            Term::Fun(Box::new(Fun::Export { module, function, arity }))
        }),
    ]
}

/// Random terms of every kind, nested a few levels.
pub fn arb_term() -> impl Strategy<Value = Term> {
    arb_leaf().prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Term::Tuple),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Term::List),
            (prop::collection::vec(inner.clone(), 1..4), inner.clone())
                .prop_map(|(elems, tail)| Term::list_with_tail(elems, tail)),
            prop::collection::vec((inner.clone(), inner.clone()), 0..6).prop_map(Term::map),
            prop::collection::vec((arb_atom().prop_map(Term::Atom), inner.clone()), 30..40)
                .prop_map(Term::map),
        ]
    })
}
