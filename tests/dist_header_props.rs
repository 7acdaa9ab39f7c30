//! Property tests of distribution frames: random terms round trip through
//! a sender/receiver cache pair, with and without fragments; random bytes
//! never panic the receiver.

mod common;

use common::arb_term;
use erldist::bytes::Bytes;
use erldist::connection::control::{ControlMessage, DistMessage};
use erldist::connection::dist_header::{DistDecoder, DistEncoder, Framing};
use erldist::{Atom, Pid, Term};
use proptest::prelude::*;

fn send(payload: Term) -> DistMessage {
    let pid = |node: &str, id| Pid {
        node: Atom::from(node),
        id,
        serial: 0,
        creation: 1,
    };
    DistMessage::with_payload(
        ControlMessage::SendSender {
            from: pid("kate@localhost", 1),
            to: pid("alex@127.0.0.1", 2),
        },
        payload,
    )
    .unwrap()
}

const FRAMINGS: [Framing; 3] = [
    Framing::PassThrough,
    Framing::Header,
    Framing::HeaderWithFragments,
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn terms_round_trip_through_a_cache_pair(
        terms in prop::collection::vec(arb_term(), 1..8),
        fragment_size in 1usize..64,
        framing in prop::sample::select(FRAMINGS.to_vec()),
    ) {
        let mut tx = DistEncoder::with_framing(framing).fragment_size(fragment_size);
        let mut rx = DistDecoder::with_framing(framing);
        for t in terms {
            let m = send(t);
            let frames = tx.encode(&m).unwrap();
            let last = frames.len() - 1;
            for (i, f) in frames.into_iter().enumerate() {
                let got = rx.decode_frame(f).unwrap();
                if i < last {
                    prop_assert!(got.is_none());
                } else {
                    let got = got.unwrap();
                    prop_assert!(got.payload().unwrap().exact_eq(m.payload().unwrap()));
                    prop_assert_eq!(got.control(), m.control());
                }
            }
        }
        prop_assert_eq!(rx.pending_fragments(), 0);
    }

    #[test]
    fn random_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        prefix in prop::sample::select(vec![&[][..], &[131, 68][..], &[131, 69][..], &[131, 70][..], &[112, 131][..]]),
        framing in prop::sample::select(FRAMINGS.to_vec()),
    ) {
        let mut rx = DistDecoder::with_framing(framing);
        let mut f = prefix.to_vec();
        f.extend_from_slice(&bytes);
        let _ = rx.decode_frame(Bytes::from(f.clone()));
        let _ = rx.decode_frame(Bytes::from(f));
    }

    #[test]
    fn mutated_frames_never_panic(
        t in arb_term(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        framing in prop::sample::select(FRAMINGS.to_vec()),
    ) {
        let mut tx = DistEncoder::with_framing(framing).fragment_size(16);
        let frames = tx.encode(&send(t)).unwrap();
        let mut rx = DistDecoder::with_framing(framing);
        for f in frames {
            let mut v = f.to_vec();
            for (at, b) in &flips {
                let i = at.index(v.len());
                v[i] ^= b;
            }
            if rx.decode_frame(Bytes::from(v)).is_err() {
                break;
            }
        }
    }
}
