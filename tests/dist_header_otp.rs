//! The terms after a header this crate writes, with their
//! `ATOM_CACHE_REF`s, decoded by the real OTP (`erts_debug:dist_ext_to_term/2`
//! resolves references through the header's atoms, as the receiver does).

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{erl_available, unhex};
use erldist::connection::control::{ControlMessage, DistMessage, Mfa, ProcRef};
use erldist::connection::dist_header::{
    read_frame_header, AtomCacheIn, DistEncoder, FrameHeader, Framing,
};
use erldist::flags::DistFlags;
use erldist::{term, Atom, Decoder, Encoder, Pid, Reference, Term};

const SCRIPT: &str = r#"#!/usr/bin/env escript
main(_) -> loop().
loop() ->
    case io:get_line("") of
        eof -> ok;
        Line ->
            [A, B] = string:lexemes(string:trim(Line), " "),
            Atoms = binary_to_term(binary:decode_hex(list_to_binary(A))),
            Body = binary:decode_hex(list_to_binary(B)),
            T = erts_debug:dist_ext_to_term(Atoms, <<131, Body/binary>>),
            io:format("~s~n", [binary:encode_hex(term_to_binary(T, [{minor_version, 2}]))]),
            loop()
    end.
"#;

#[test]
fn otp_decodes_what_the_encoder_writes() {
    if !erl_available() {
        return;
    }
    let node = Atom::from("kate@localhost");
    let a = Pid {
        node,
        id: 90,
        serial: 2,
        creation: 0x6400_0001,
    };
    let b = Pid {
        node: Atom::from("alex@127.0.0.1"),
        id: 91,
        serial: 0,
        creation: 7,
    };
    let r = Reference::new(node, 0x6400_0001, &[1, 2, 3]).unwrap();
    let msgs = [
        DistMessage::with_payload(
            ControlMessage::RegSend {
                from: a,
                to_name: Atom::from("rex"),
            },
            Term::tuple(vec![
                Term::atom("$gen_call"),
                Term::tuple(vec![
                    Term::Pid(a),
                    Term::list_with_tail(vec![Term::atom("alias")], Term::Ref(Box::new(r))),
                ]),
                term!({call, erlang, node, [], user}),
            ]),
        )
        .unwrap(),
        DistMessage::with_payload(
            ControlMessage::SpawnRequest {
                req_id: r,
                from: a,
                group_leader: a,
                mfa: Mfa {
                    module: Atom::from("io"),
                    function: Atom::from("format"),
                    arity: 1,
                },
                options: vec![
                    Term::atom("monitor"),
                    Term::tuple(vec![Term::atom("priority"), Term::atom("high")]),
                ],
            },
            Term::List(vec![Term::ByteList(b"hello~n"[..].into())]),
        )
        .unwrap(),
        DistMessage::control_only(ControlMessage::MonitorP {
            from: a,
            to: ProcRef::Name(Atom::from("logger")),
            reference: r,
        })
        .unwrap(),
        DistMessage::with_payload(
            ControlMessage::SendSender { from: a, to: b },
            Term::List(
                (0..300)
                    .map(|i| Term::atom(&format!("a{}", i % 280)))
                    .collect(),
            ),
        )
        .unwrap(),
    ];
    let mut tx = DistEncoder::new(DistFlags::DIST_HDR_ATOM_CACHE | DistFlags::FRAGMENTS);
    let mut cache = AtomCacheIn::new();
    let mut input = String::new();
    let mut expected = Vec::new();
    // Twice: new entries, then cached references.
    for m in msgs.iter().chain(msgs.iter()) {
        let frame = tx.encode_frame(m).unwrap();
        let (header, pos) =
            read_frame_header(&frame, Framing::HeaderWithFragments, &mut cache).unwrap();
        let FrameHeader::Whole { atoms } = header else {
            panic!("{header:?}")
        };
        assert!(!atoms.is_empty());
        let atoms_term = Encoder::new()
            .encode(&Term::Tuple(atoms.iter().map(|a| Term::Atom(*a)).collect()))
            .unwrap();
        let (_, ctl_end) = Decoder::new()
            .atom_cache(&atoms)
            .decode_body(&frame, pos)
            .unwrap();
        let mut parts = vec![(pos, ctl_end, m.control().to_term())];
        if let Some(p) = m.payload() {
            parts.push((ctl_end, frame.len(), p.clone()));
        }
        for (start, end, t) in parts {
            input.push_str(&format!(
                "{} {}\n",
                hex::encode(&atoms_term),
                hex::encode(&frame[start..end])
            ));
            expected.push(t);
        }
    }
    let dir = std::env::temp_dir().join(format!("erldist-dist-hdr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("dist_ext.escript");
    std::fs::write(&script, SCRIPT).unwrap();
    let mut child = Command::new("escript")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success());
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    assert_eq!(lines.len(), expected.len());
    for (line, want) in lines.iter().zip(&expected) {
        let got = Term::decode(&unhex(line)).unwrap();
        assert!(got.exact_eq(want), "OTP read {got} for {want}");
    }
}
