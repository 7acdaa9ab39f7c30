//! The fuzz targets of `fuzz/` for hostile input (the EPMD request parser,
//! the handshake in both roles, frames after the handshake) and for term
//! text (`parse`), replayed as ordinary tests: every input kept under
//! `fuzz/regressions/<target>/` (each once crashed that target) and every
//! committed seed under `fuzz/seeds/<target>/` goes through the same
//! checks the fuzzer runs (`fuzz/fuzz_targets/harness.rs`). The targets of
//! the external format (`decode`, `decode_body`) are replayed by
//! `tests/golden.rs`, against OTP.
//!
//! `cargo test --test fuzz_regressions -- --ignored write_seeds` rewrites
//! the seeds of these targets.

#[path = "../fuzz/fuzz_targets/harness.rs"]
mod harness;

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use erldist::bytes::{BufMut, BytesMut};
use erldist::connection::control::{ControlMessage, DistMessage};
use erldist::connection::dist_header::{DistEncoder, Framing};
use erldist::flags::DistFlags;
use erldist::handshake::{
    encode_packet, Challenge, ChallengeAck, ChallengeReply, Complement, Cookie, Digest, Message,
    NameMessage, OldSendName, SendName, Status,
};
use erldist::{Atom, Pid, Reference, Term};

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 5] = [
    ("epmd_request", harness::epmd_request),
    ("handshake_initiator", harness::handshake_initiator),
    ("handshake_acceptor", harness::handshake_acceptor),
    ("dist_frames", harness::dist_frames),
    ("parse", harness::parse),
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted (none if it is missing).
fn inputs(kind: &str, target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join(kind).join(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .map(|e| e.expect("directory entry").path())
            .filter(|p| p.is_file())
            .filter(|p| {
                !p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

fn replay(kind: &str) -> usize {
    let mut n = 0;
    for (target, check) in TARGETS {
        for path in inputs(kind, target) {
            let data = std::fs::read(&path).expect("read input");
            let r = std::panic::catch_unwind(|| check(&data));
            assert!(r.is_ok(), "{target}: {} fails", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn every_kept_crash_input_passes_its_target() {
    // The directories exist even while empty (a `.keep` file).
    for (target, _) in TARGETS {
        assert!(
            fuzz_dir().join("regressions").join(target).is_dir(),
            "fuzz/regressions/{target} is missing"
        );
    }
    replay("regressions");
}

#[test]
fn every_seed_passes_its_target() {
    assert!(replay("seeds") >= 40, "the seed corpora are missing");
}

// ------------------------------------------------------------------ seeds

fn packet(m: &Message) -> Vec<u8> {
    let mut out = BytesMut::new();
    m.encode_packet(&mut out).expect("encode");
    out.to_vec()
}

fn raw_packet(payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_packet(&mut out, |o| o.put_slice(payload)).expect("encode");
    out.to_vec()
}

/// OTP 25.2.3's flag offer, as captured (protocol.md).
const OTP25: DistFlags = DistFlags(0xD_07DF_7FBD);

fn seq(setup: u8, packets: &[Vec<u8>]) -> Vec<u8> {
    let mut v = vec![setup];
    for p in packets {
        v.extend_from_slice(p);
    }
    v
}

fn initiator_seeds() -> Vec<Vec<u8>> {
    let challenge = packet(&Message::Challenge(Challenge {
        flags: OTP25,
        challenge: 0x62A7_120D,
        creation: 0x6B08_42A7,
        name: "peer@localhost".into(),
    }));
    let ack = packet(&Message::ChallengeAck(ChallengeAck {
        digest: Cookie::new("fuzzcookie")
            .expect("cookie")
            .digest(0x1234_5678),
    }));
    let wrong_ack = packet(&Message::ChallengeAck(ChallengeAck {
        digest: Digest([7; 16]),
    }));
    let st = |s: Status| packet(&Message::Status(s));
    let named = st(Status::Named {
        name: "DYN12345@localhost".into(),
        creation: 0xab75_02d4,
    });
    vec![
        seq(0, &[st(Status::Ok), challenge.clone(), ack.clone()]),
        seq(4, &[st(Status::Ok), challenge.clone(), wrong_ack.clone()]),
        seq(0, &[st(Status::Ok), challenge.clone(), wrong_ack.clone()]),
        seq(2, &[st(Status::Alive), challenge.clone(), ack.clone()]),
        seq(0, &[st(Status::Alive)]),
        seq(
            0,
            &[st(Status::OkSimultaneous), challenge.clone(), ack.clone()],
        ),
        seq(0, &[st(Status::Nok)]),
        seq(0, &[st(Status::NotAllowed)]),
        seq(0, &[st(Status::Other("garbage".into()))]),
        seq(1, &[named, challenge.clone(), ack.clone()]),
        seq(1, &[st(Status::Ok)]),
        seq(5, &[raw_packet(b"snamed:"), challenge]),
    ]
}

fn acceptor_seeds() -> Vec<Vec<u8>> {
    let name = |n: &str, flags: DistFlags| {
        packet(&Message::Name(NameMessage::New(SendName {
            flags,
            creation: 0x6B08_4235,
            name: n.into(),
        })))
    };
    let old = packet(&Message::Name(NameMessage::Old(OldSendName {
        version: 5,
        flags: (OTP25.0 & 0xFFFF_FFFF) as u32,
        name: "old@localhost".into(),
    })));
    let complement = packet(&Message::Complement(Complement {
        flags_high: (OTP25.0 >> 32) as u32,
        creation: 7,
    }));
    let reply = |cookie: &str| {
        packet(&Message::ChallengeReply(ChallengeReply {
            challenge: 0xc150_7388,
            digest: Cookie::new(cookie).expect("cookie").digest(0x8765_4321),
        }))
    };
    let st = |s: Status| packet(&Message::Status(s));
    let peer = name("peer@localhost", OTP25);
    vec![
        seq(0, &[peer.clone(), reply("fuzzcookie")]),
        seq(0, &[peer.clone(), reply("wrong")]),
        seq(16, &[peer.clone(), reply("wrong")]),
        seq(1, &[peer.clone(), reply("fuzzcookie")]),
        seq(2, std::slice::from_ref(&peer)),
        seq(3, &[peer.clone(), st(Status::True), reply("fuzzcookie")]),
        seq(3, &[peer.clone(), st(Status::False)]),
        seq(4, std::slice::from_ref(&peer)),
        seq(0, &[old.clone(), complement.clone(), reply("fuzzcookie")]),
        seq(
            0,
            &[old, raw_packet(b"c\0\0\0\0\0\0\0\0"), reply("fuzzcookie")],
        ),
        seq(
            8,
            &[
                name("localhost", OTP25 | DistFlags::NAME_ME),
                reply("fuzzcookie"),
            ],
        ),
        seq(0, &[name("peer@localhost", DistFlags::PUBLISHED)]),
        seq(0, &[name("not a name", OTP25)]),
        seq(0, &[raw_packet(b"N")]),
    ]
}

fn pid(node: &str, id: u32) -> Pid {
    Pid {
        node: Atom::from(node),
        id,
        serial: 0,
        creation: 0x639b_5510,
    }
}

fn control(t: Term) -> ControlMessage {
    ControlMessage::from_term(t).expect("control message")
}

fn messages() -> Vec<DistMessage> {
    let a = Term::Pid(pid("lab_a@127.0.0.1", 0x4c));
    let b = Term::Pid(pid("fuzz@localhost", 90));
    let r = Term::Ref(Box::new(
        Reference::new(Atom::from("lab_a@127.0.0.1"), 0x639b_5510, &[1, 2, 3]).expect("reference"),
    ));
    let i = |n: i64| Term::Int(n);
    let atom = Term::atom;
    let t = Term::tuple;
    let with = |c: Term, p: Term| DistMessage::new(control(c), Some(p)).expect("message");
    let alone = |c: Term| DistMessage::new(control(c), None).expect("message");
    let payload = t(vec![atom("features_request"), a.clone()]);
    let big = Term::List(
        (0..3000)
            .map(|n| t(vec![atom("chunk"), i(n)]))
            .collect::<Vec<_>>(),
    );
    vec![
        with(
            t(vec![i(6), a.clone(), atom(""), atom("rex")]),
            payload.clone(),
        ),
        with(t(vec![i(2), atom(""), b.clone()]), atom("hello")),
        with(t(vec![i(22), a.clone(), b.clone()]), big),
        alone(t(vec![i(1), a.clone(), b.clone()])),
        alone(t(vec![i(3), a.clone(), b.clone(), atom("normal")])),
        alone(t(vec![i(19), a.clone(), b.clone(), r.clone()])),
        alone(t(vec![i(20), a.clone(), atom("net_kernel"), r.clone()])),
        alone(t(vec![i(35), i(7), a.clone(), b.clone()])),
        with(
            t(vec![
                i(29),
                r.clone(),
                a.clone(),
                a.clone(),
                t(vec![atom("erlang"), atom("apply"), i(2)]),
                Term::List(vec![atom("link")]),
            ]),
            Term::List(vec![atom("x"), i(1)]),
        ),
        with(t(vec![i(33), a.clone(), r.clone()]), payload),
    ]
}

fn frame_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for (setup, framing) in [
        (0u8, Framing::PassThrough),
        (1, Framing::Header),
        (2, Framing::HeaderWithFragments),
    ] {
        // One connection's worth: every message, a tick, in order, so the
        // atom cache fills and is then referred to.
        let mut enc = DistEncoder::with_framing(framing).fragment_size(2048);
        let mut all = vec![setup];
        for (n, m) in messages().iter().enumerate() {
            let frames = enc
                .encode_fragments(m, NonZeroU64::new(n as u64 + 1).expect("nonzero"))
                .expect("encode");
            let mut one = vec![setup];
            for f in frames {
                let len = u32::try_from(f.len()).expect("frame length").to_be_bytes();
                all.extend_from_slice(&len);
                all.extend_from_slice(&f);
                one.extend_from_slice(&len);
                one.extend_from_slice(&f);
            }
            all.extend_from_slice(&[0, 0, 0, 0]);
            seeds.push(one);
        }
        seeds.push(all);
    }
    seeds
}

fn epmd_seeds() -> Vec<Vec<u8>> {
    use erldist::epmd::protocol::{Alive2Request, Request};
    let reqs = [
        Request::Alive2(Alive2Request::new("lab_a", 40123)),
        Request::PortPlease2 {
            name: "lab_a".into(),
        },
        Request::Names,
        Request::Dump,
        Request::Kill,
        Request::Stop {
            name: "lab_a".into(),
        },
    ];
    let mut seeds: Vec<Vec<u8>> = reqs
        .iter()
        .map(|r| {
            let mut v = vec![255];
            v.extend_from_slice(&r.to_bytes());
            v
        })
        .collect();
    // As the real erl sends them (OTP 25.2.3, erl_epmd.erl): ALIVE2_REQ
    // with type 'M', TCP, versions 6 and 5; a NUL-terminated old name.
    seeds.push(vec![
        3, 0, 13, 120, 0x9c, 0xbb, 77, 0, 0, 6, 0, 5, 0, 2, b'a', b'b', 0, 0,
    ]);
    seeds.push(vec![1, 0, 4, 122, b'a', b'b', 0]);
    seeds
}

/// Writes the seed corpora of the four targets (run by hand, `--ignored`).
#[test]
#[ignore]
fn write_seeds() {
    let sets = [
        ("epmd_request", epmd_seeds()),
        ("handshake_initiator", initiator_seeds()),
        ("handshake_acceptor", acceptor_seeds()),
        ("dist_frames", frame_seeds()),
    ];
    for (target, seeds) in sets {
        let dir = fuzz_dir().join("seeds").join(target);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("seed dir");
        for (n, s) in seeds.iter().enumerate() {
            std::fs::write(dir.join(format!("seed_{n:03}")), s).expect("write seed");
        }
    }
}
