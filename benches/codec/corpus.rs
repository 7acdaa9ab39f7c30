//! The benchmark's fixed corpus: scenarios of realistic messages, built
//! deterministically (a fixed-seed generator, no randomness from outside)
//! and encoded with erldist.

use bytes::Bytes;
use erldist::{Atom, Pid, Reference, Term};

/// One scenario: a set of messages and their ETF encodings (by erldist).
pub struct Scenario {
    pub name: &'static str,
    pub terms: Vec<Term>,
    pub encoded: Vec<Bytes>,
}

impl Scenario {
    fn new(name: &'static str, terms: Vec<Term>) -> Scenario {
        let encoded = terms
            .iter()
            .map(|t| Bytes::from(t.encode().expect("corpus term encodes")))
            .collect();
        Scenario {
            name,
            terms,
            encoded,
        }
    }

    /// The ETF bytes of all messages together: the throughput unit.
    pub fn total_bytes(&self) -> u64 {
        self.encoded.iter().map(|b| b.len() as u64).sum()
    }
}

/// A small deterministic generator (64-bit LCG, high bits out).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 17
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }

    fn text(&mut self, n: usize) -> Vec<u8> {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,-";
        (0..n)
            .map(|_| CHARS[self.below(CHARS.len() as u64) as usize])
            .collect()
    }
}

fn atom(s: &str) -> Term {
    Term::atom(s)
}

fn bin(s: impl Into<Vec<u8>>) -> Term {
    Term::binary(Bytes::from(s.into()))
}

fn node() -> Atom {
    Atom::from("app@bench-host")
}

fn pid(g: &mut Lcg) -> Term {
    Term::Pid(Pid {
        node: node(),
        id: g.below(1 << 15) as u32,
        serial: g.below(8) as u32,
        creation: 1_700_000_123,
    })
}

fn reference(g: &mut Lcg) -> Term {
    let ids = [g.next() as u32, g.next() as u32, g.next() as u32];
    Term::Ref(Box::new(
        Reference::new(node(), 1_700_000_123, &ids).expect("three words"),
    ))
}

/// `{hello, 42}`, gen_server calls and casts, replies: the small control
/// messages a node exchanges most.
fn small_tuples(g: &mut Lcg) -> Vec<Term> {
    (0..1000)
        .map(|i| match i % 5 {
            0 => Term::tuple(vec![atom("hello"), Term::Int(g.below(1000) as i64)]),
            1 => Term::tuple(vec![
                atom("$gen_call"),
                Term::tuple(vec![pid(g), reference(g)]),
                Term::tuple(vec![atom("get"), atom("key")]),
            ]),
            2 => Term::tuple(vec![
                atom("$gen_cast"),
                Term::tuple(vec![
                    atom("put"),
                    atom("counter"),
                    Term::Int(g.below(1 << 40) as i64 - (1 << 39)),
                ]),
            ]),
            3 => Term::tuple(vec![
                reference(g),
                Term::tuple(vec![atom("ok"), Term::list(vec![atom("a"), atom("b")])]),
            ]),
            _ => Term::tuple(vec![
                atom("error"),
                Term::tuple(vec![atom("badarg"), Term::Int(i)]),
            ]),
        })
        .collect()
}

/// Elixir-struct-like maps: atom keys, binary values, a nested map.
fn maps_binaries(g: &mut Lcg) -> Vec<Term> {
    (0..200)
        .map(|i| {
            let tags = (0..g.below(4) + 1)
                .map(|_| {
                    let n = g.below(10) as usize + 3;
                    bin(g.text(n))
                })
                .collect();
            let bio = g.below(200) as usize;
            Term::map([
                (atom("__struct__"), atom("Elixir.MyApp.Accounts.User")),
                (atom("id"), Term::Int(i)),
                (atom("name"), bin(format!("User Number {i}"))),
                (atom("email"), bin(format!("user{i}@example.com"))),
                (atom("bio"), bin(g.text(bio))),
                (
                    atom("active"),
                    atom(if i % 3 == 0 { "false" } else { "true" }),
                ),
                (atom("tags"), Term::list(tags)),
                (
                    atom("meta"),
                    Term::map([
                        (atom("inserted_at"), bin("2024-05-17T09:12:44.512Z")),
                        (atom("updated_at"), bin("2025-01-02T18:00:03.001Z")),
                        (atom("score"), Term::Float(g.below(10_000) as f64 / 7.0)),
                        (atom("role"), atom("member")),
                    ]),
                ),
            ])
        })
        .collect()
}

/// Two big binaries: 64 KiB and 1 MiB.
fn large_binaries(g: &mut Lcg) -> Vec<Term> {
    vec![bin(g.bytes(64 * 1024)), bin(g.bytes(1024 * 1024))]
}

/// Long lists of integers, most of them beyond 255 (so `LIST_EXT` of
/// `INTEGER_EXT`, not byte lists), a few small ones mixed in.
fn int_lists(g: &mut Lcg) -> Vec<Term> {
    (0..20)
        .map(|_| {
            Term::list(
                (0..1000)
                    .map(|j| {
                        if j % 8 == 0 {
                            Term::Int(g.below(256) as i64)
                        } else {
                            Term::Int(g.below(2_000_000) as i64 - 1_000_000)
                        }
                    })
                    .collect(),
            )
        })
        .collect()
}

/// Byte-list strings (`STRING_EXT`), short and long.
fn byte_strings(g: &mut Lcg) -> Vec<Term> {
    (0..200)
        .map(|i| {
            let n = if i % 10 == 0 {
                4000
            } else {
                20 + g.below(300) as usize
            };
            Term::ByteList(Bytes::from(g.text(n)))
        })
        .collect()
}

/// Nested tuples and lists, 300 to 500 levels deep.
fn deep_nesting(g: &mut Lcg) -> Vec<Term> {
    (0..10)
        .map(|i| {
            let depth = 300 + 20 * i;
            let mut t = Term::Int(g.below(1000) as i64);
            for level in 0..depth {
                t = match (level + i) % 3 {
                    0 => Term::tuple(vec![atom("node"), Term::Int(level as i64), t]),
                    1 => Term::list(vec![t]),
                    _ => Term::list(vec![Term::Int(level as i64 + 1000), t, atom("x")]),
                };
            }
            t
        })
        .collect()
}

/// All scenarios, in report order.
pub fn scenarios() -> Vec<Scenario> {
    let mut g = Lcg(0x5eed_e71d);
    vec![
        Scenario::new("small_tuples", small_tuples(&mut g)),
        Scenario::new("maps_binaries", maps_binaries(&mut g)),
        Scenario::new("large_binaries", large_binaries(&mut g)),
        Scenario::new("int_lists", int_lists(&mut g)),
        Scenario::new("byte_strings", byte_strings(&mut g)),
        Scenario::new("deep_nesting", deep_nesting(&mut g)),
    ]
}
