//! Distribution frames through the public API: the OTP capture, the atom
//! cache across frames, fragments, and every way a peer can get a frame
//! wrong.

use std::num::NonZeroU64;

use erldist::bytes::Bytes;
use erldist::connection::control::{ControlError, ControlMessage, ControlOp, DistMessage};
use erldist::connection::dist_header::{
    read_frame_header, AtomCacheIn, DistDecoder, DistEncoder, FragmentError, FrameError,
    FrameHeader, FrameTag, Framing, HeaderErrorKind, ReassemblyLimits, TermRole,
};
use erldist::flags::DistFlags;
use erldist::{Atom, Pid, Reference, Term};

const BOTH: DistFlags = DistFlags(DistFlags::DIST_HDR_ATOM_CACHE.0 | DistFlags::FRAGMENTS.0);

fn pid(node: &str, id: u32) -> Pid {
    Pid {
        node: Atom::from(node),
        id,
        serial: 1,
        creation: 0x6400_0001,
    }
}

fn send(payload: Term) -> DistMessage {
    DistMessage::with_payload(
        ControlMessage::SendSender {
            from: pid("a@127.0.0.1", 90),
            to: pid("b@127.0.0.1", 91),
        },
        payload,
    )
    .unwrap()
}

fn big_payload(n: usize) -> Term {
    Term::tuple(vec![
        Term::atom("chunk"),
        Term::binary((0..n).map(|i| i as u8).collect::<Vec<u8>>()),
        Term::atom("end"),
    ])
}

/// protocol.md §4.3: the frame OTP 25.2.3 sent (header and the start of
/// the control term captured; the rest of the REG_SEND and the payload
/// filled in).
#[test]
fn decodes_the_header_otp_sent() {
    let mut f = vec![0x83, 0x44, 0x04, 0x8f, 0xdc, 0x00, 0x40, 0x0f];
    f.extend_from_slice(b"lab_a@127.0.0.1");
    f.extend_from_slice(&[0x05, 0x00, 0x75, 0x03]);
    f.extend_from_slice(b"rex");
    f.extend_from_slice(&[0x06, 0x10]);
    f.extend_from_slice(b"features_request");
    let header_len = f.len();
    f.extend_from_slice(&[0x68, 0x04, 0x61, 0x06, 0x58, 0x52, 0x00]);
    f.extend_from_slice(&[0, 0, 0, 0x4c, 0, 0, 0, 0, 0, 0, 0, 3]);
    f.extend_from_slice(&[0x52, 0x01, 0x52, 0x02, 0x52, 0x03]);

    let mut cache = AtomCacheIn::new();
    let (header, pos) = read_frame_header(&f, Framing::HeaderWithFragments, &mut cache).unwrap();
    assert_eq!(pos, header_len);
    let names: Vec<&str> = match &header {
        FrameHeader::Whole { atoms } => atoms.iter().map(|a| a.as_str()).collect(),
        other => panic!("{other:?}"),
    };
    assert_eq!(names, ["lab_a@127.0.0.1", "", "rex", "features_request"]);
    assert_eq!(
        cache.get(7 * 256 + 0x40),
        Some(Atom::from("lab_a@127.0.0.1"))
    );
    assert_eq!(cache.get(5), Some(Atom::from("")));
    assert_eq!(cache.get(4 * 256 + 0x75), Some(Atom::from("rex")));
    assert_eq!(cache.get(5 * 256 + 6), Some(Atom::from("features_request")));

    let mut rx = DistDecoder::new(BOTH);
    let msg = rx.decode_frame(Bytes::from(f)).unwrap().unwrap();
    let from = Pid {
        node: Atom::from("lab_a@127.0.0.1"),
        id: 0x4c,
        serial: 0,
        creation: 3,
    };
    assert_eq!(
        msg.control(),
        &ControlMessage::RegSend {
            from,
            to_name: Atom::from("rex")
        }
    );
    assert!(msg
        .payload()
        .unwrap()
        .exact_eq(&Term::atom("features_request")));
}

#[test]
fn long_atoms_flag_takes_two_byte_lengths() {
    let long = "é".repeat(200); // 400 bytes, 200 characters
    let mut f = vec![131, 68, 1, 0x18, 0x10];
    f.extend_from_slice(&400u16.to_be_bytes());
    f.extend_from_slice(long.as_bytes());
    f.extend_from_slice(&[104, 3, 97, 22, 88, 82, 0]);
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[88, 82, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[82, 0]);
    let mut rx = DistDecoder::new(BOTH);
    let msg = rx.decode_frame(Bytes::from(f)).unwrap().unwrap();
    assert_eq!(msg.payload().unwrap().as_atom().unwrap().as_str(), long);
    assert_eq!(rx.atom_cache().get(0x10), Some(Atom::from(long.as_str())));

    // And the encoder sets the flag for such atoms.
    let mut tx = DistEncoder::new(BOTH);
    let mut rx = DistDecoder::new(BOTH);
    let m = send(Term::atom(&long));
    let frame = tx.encode_frame(&m).unwrap();
    assert_eq!(rx.decode_frame(frame).unwrap(), Some(m));
}

#[test]
fn cache_pair_stays_in_step_over_many_frames() {
    let mut tx = DistEncoder::new(BOTH);
    let mut rx = DistDecoder::new(BOTH);
    let mut sizes = Vec::new();
    for i in 0..3000u32 {
        // Many distinct atoms: slots get overwritten, frames fill 255 refs.
        let atoms: Vec<Term> = (0..(i % 300))
            .map(|k| Term::atom(&format!("atom_{}", (k * 7 + i) % 5000)))
            .collect();
        let m = send(Term::tuple(vec![
            Term::List(atoms),
            Term::Int(i64::from(i)),
        ]));
        let frames = tx.encode(&m).unwrap();
        assert_eq!(frames.len(), 1);
        sizes.push(frames[0].len());
        let back = rx.decode_frame(frames[0].clone()).unwrap().unwrap();
        assert_eq!(back, m, "frame {i}");
        assert!(back.payload().unwrap().exact_eq(m.payload().unwrap()));
    }
    // Repeating a message is cheaper the second time.
    let m = send(Term::atom("same_again"));
    let a = tx.encode_frame(&m).unwrap();
    let b = tx.encode_frame(&m).unwrap();
    assert!(b.len() < a.len());
    rx.decode_frame(a).unwrap();
    assert_eq!(rx.decode_frame(b).unwrap(), Some(m));
}

#[test]
fn fragments_round_trip_in_order_and_interleaved() {
    let mut tx = DistEncoder::new(BOTH).fragment_size(1000);
    let mut rx = DistDecoder::new(BOTH);
    let a = send(big_payload(3500));
    let b = send(big_payload(1500));
    let fa = tx
        .encode_fragments(&a, NonZeroU64::new(11).unwrap())
        .unwrap();
    let fb = tx
        .encode_fragments(&b, NonZeroU64::new(12).unwrap())
        .unwrap();
    assert_eq!((fa.len(), fb.len()), (4, 2));
    assert_eq!(&fa[0][..2], [131, 69]);
    assert_eq!(u64::from_be_bytes(fa[0][10..18].try_into().unwrap()), 4);
    for (k, f) in fa[1..].iter().enumerate() {
        assert_eq!(&f[..2], [131, 70]);
        assert_eq!(u64::from_be_bytes(f[2..10].try_into().unwrap()), 11);
        assert_eq!(
            u64::from_be_bytes(f[10..18].try_into().unwrap()),
            3 - k as u64
        );
    }
    // First fragments in encoding order (they carry the headers); the
    // rest interleaved.
    let order = [&fa[0], &fb[0], &fa[1], &fb[1], &fa[2], &fa[3]];
    let mut got = Vec::new();
    for f in order {
        if let Some(m) = rx.decode_frame(f.clone()).unwrap() {
            got.push(m);
        }
    }
    assert_eq!(got, [b, a]);
    assert_eq!(rx.pending_fragments(), 0);
}

#[test]
fn small_payloads_are_not_fragmented_and_encode_numbers_sequences() {
    let mut tx = DistEncoder::new(BOTH).fragment_size(100);
    let mut rx = DistDecoder::new(BOTH);
    let f0 = tx.encode(&send(big_payload(10))).unwrap();
    assert_eq!(f0.len(), 1);
    rx.decode_frame(f0[0].clone()).unwrap();
    let f1 = tx.encode(&send(big_payload(500))).unwrap();
    let f2 = tx.encode(&send(big_payload(500))).unwrap();
    assert_ne!(f1[0][2..10], f2[0][2..10], "fresh sequence ids");
    for f in f1.into_iter().chain(f2) {
        rx.decode_frame(f).unwrap();
    }
    // Without FRAGMENTS a long message is one frame.
    let mut tx = DistEncoder::new(DistFlags::DIST_HDR_ATOM_CACHE).fragment_size(100);
    assert_eq!(tx.encode(&send(big_payload(500))).unwrap().len(), 1);
}

#[test]
fn fragment_errors() {
    let mut tx = DistEncoder::new(BOTH).fragment_size(100);
    let frames = tx
        .encode_fragments(&send(big_payload(350)), NonZeroU64::new(5).unwrap())
        .unwrap();
    assert_eq!(frames.len(), 4);

    let mut rx = DistDecoder::new(BOTH);
    assert_eq!(
        rx.decode_frame(frames[1].clone()),
        Err(FrameError::Fragment(FragmentError::UnknownSequence {
            sequence_id: 5,
            fragment_id: 3
        }))
    );
    let mut rx = DistDecoder::new(BOTH);
    rx.decode_frame(frames[0].clone()).unwrap();
    assert_eq!(
        rx.decode_frame(frames[2].clone()),
        Err(FrameError::Fragment(FragmentError::OutOfOrder {
            sequence_id: 5,
            expected: 3,
            found: 2
        }))
    );
    let mut rx = DistDecoder::new(BOTH);
    rx.decode_frame(frames[0].clone()).unwrap();
    assert_eq!(
        rx.decode_frame(frames[0].clone()),
        Err(FrameError::Fragment(FragmentError::DuplicateSequence {
            sequence_id: 5
        }))
    );

    let limits = ReassemblyLimits {
        max_pending: 1,
        max_message_size: 300,
        max_buffered: 1000,
    };
    let mut rx = DistDecoder::new(BOTH).limits(limits);
    let mut err = None;
    for f in &frames {
        if let Err(e) = rx.decode_frame(f.clone()) {
            err = Some(e);
            break;
        }
    }
    assert!(
        matches!(
            err,
            Some(FrameError::Fragment(FragmentError::TooLarge {
                sequence_id: 5,
                limit: 300,
                ..
            }))
        ),
        "{err:?}"
    );
    let mut rx = DistDecoder::new(BOTH).limits(limits);
    let other = tx
        .encode_fragments(&send(big_payload(350)), NonZeroU64::new(6).unwrap())
        .unwrap();
    rx.decode_frame(frames[0].clone()).unwrap();
    assert_eq!(
        rx.decode_frame(other[0].clone()),
        Err(FrameError::Fragment(FragmentError::TooManyPending {
            sequence_id: 6,
            limit: 1
        }))
    );
}

#[test]
fn first_fragment_with_sequence_zero_is_a_whole_message() {
    let mut tx = DistEncoder::new(BOTH);
    let m = send(Term::atom("x"));
    let whole = tx.encode_frame(&m).unwrap();
    // 131,68,N... → 131,69,0:64,1:64,N...
    let mut f = vec![131, 69];
    f.extend_from_slice(&0u64.to_be_bytes());
    f.extend_from_slice(&7u64.to_be_bytes());
    f.extend_from_slice(&whole[2..]);
    let mut rx = DistDecoder::new(BOTH);
    assert_eq!(rx.decode_frame(Bytes::from(f)).unwrap(), Some(m));
}

#[test]
fn frames_otp_refuses_are_refused() {
    let mut tx = DistEncoder::new(BOTH);
    let m = send(Term::atom("x"));
    let good = tx.encode_frame(&m).unwrap().to_vec();
    let decode = |framing: Framing, f: Vec<u8>| {
        DistDecoder::with_framing(framing).decode_frame(Bytes::from(f))
    };
    let hdr = Framing::HeaderWithFragments;

    // A pass-through frame on a header connection.
    let mut p = vec![112, 131];
    p.extend_from_slice(&good[3..]);
    let e = decode(hdr, p).unwrap_err();
    assert!(matches!(e, FrameError::Header(ref h) if h.kind == HeaderErrorKind::BadVersion(112)));

    // Fragments without FRAGMENTS.
    let mut frag = vec![131, 69];
    frag.extend_from_slice(&[0; 16]);
    frag.extend_from_slice(&good[2..]);
    let e = decode(Framing::Header, frag).unwrap_err();
    assert!(matches!(
        e,
        FrameError::Header(ref h) if h.kind == HeaderErrorKind::FragmentsNotNegotiated(FrameTag::DIST_FRAG_HEADER)
    ));

    // An unknown tag.
    let e = decode(hdr, vec![131, 71, 0]).unwrap_err();
    assert!(matches!(e, FrameError::Header(ref h) if h.kind == HeaderErrorKind::UnknownTag(71)));

    // 131 before a term after a header.
    let mut tx0 = DistEncoder::new(BOTH).without_atom_cache();
    let plain = tx0.encode_frame(&m).unwrap().to_vec();
    assert_eq!(&plain[..3], [131, 68, 0]);
    let mut v = plain[..3].to_vec();
    v.push(131);
    v.extend_from_slice(&plain[3..]);
    assert!(matches!(
        decode(hdr, v).unwrap_err(),
        FrameError::VersionMagic {
            role: TermRole::Control,
            offset: 3,
            header_mode: true
        }
    ));

    // A compressed payload.
    let ctl_end = plain.len() - 3; // the payload `x` is 119,1,'x'
    let mut c = plain[..ctl_end].to_vec();
    c.extend_from_slice(&[
        80, 0, 0, 0, 3, 0x78, 0x9c, 0x2b, 0x4f, 0xac, 0x00, 0x00, 0x02, 0x43, 0x01, 0x12,
    ]);
    assert!(matches!(
        decode(hdr, c).unwrap_err(),
        FrameError::Term {
            role: TermRole::Payload,
            ..
        }
    ));

    // Missing payload, trailing bytes.
    assert_eq!(
        decode(hdr, plain[..ctl_end].to_vec()).unwrap_err(),
        FrameError::Control(ControlError::MissingPayload {
            op: ControlOp::SEND_SENDER
        })
    );
    let mut t = plain.clone();
    t.push(106);
    assert_eq!(
        decode(hdr, t).unwrap_err(),
        FrameError::TrailingBytes {
            op: ControlOp::SEND_SENDER,
            count: 1
        }
    );

    // A control term OTP calls invalid: {5}.
    let e = decode(hdr, vec![131, 68, 0, 104, 1, 97, 5]).unwrap_err();
    assert_eq!(e, FrameError::Control(ControlError::NodeLink));

    // Pass-through: each term needs its 131; the first byte is not checked.
    let mut ptx = DistEncoder::new(DistFlags::EMPTY);
    let mut pf = ptx.encode_frame(&m).unwrap().to_vec();
    assert_eq!(&pf[..2], [112, 131]);
    pf[0] = 0;
    assert_eq!(
        decode(Framing::PassThrough, pf.clone()).unwrap(),
        Some(m.clone())
    );
    pf[1] = 104;
    assert!(matches!(
        decode(Framing::PassThrough, pf).unwrap_err(),
        FrameError::VersionMagic {
            header_mode: false,
            ..
        }
    ));
}

#[test]
fn a_tick_is_nothing() {
    let mut rx = DistDecoder::new(BOTH);
    assert_eq!(rx.decode_frame(Bytes::new()).unwrap(), None);
}

#[test]
fn every_strict_prefix_of_a_frame_fails() {
    let r = Reference::new(Atom::from("a@127.0.0.1"), 3, &[1, 2, 3]).unwrap();
    let msgs = vec![
        send(big_payload(40)),
        DistMessage::control_only(ControlMessage::MonitorP {
            from: pid("a@127.0.0.1", 1),
            to: erldist::connection::control::ProcRef::Name(Atom::from("logger")),
            reference: r,
        })
        .unwrap(),
    ];
    for framing in [Framing::PassThrough, Framing::HeaderWithFragments] {
        for m in &msgs {
            // The frame as a fresh cache sees it (all new entries), and as
            // the second frame (all cached refs).
            let mut tx = DistEncoder::with_framing(framing);
            let first = tx.encode_frame(m).unwrap();
            let second = tx.encode_frame(m).unwrap();
            for n in 1..first.len() {
                let mut rx = DistDecoder::with_framing(framing);
                let r = rx.decode_frame(first.slice(..n));
                assert!(
                    r.is_err(),
                    "{framing:?} prefix {n} of {}: {r:?}",
                    first.len()
                );
            }
            for n in 1..second.len() {
                let mut rx = DistDecoder::with_framing(framing);
                rx.decode_frame(first.clone()).unwrap();
                let r = rx.decode_frame(second.slice(..n));
                assert!(
                    r.is_err(),
                    "{framing:?} prefix {n} of {}: {r:?}",
                    second.len()
                );
            }
        }
    }
}
