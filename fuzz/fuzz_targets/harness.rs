//! The checks of the fuzz targets added for hostile input (issue #9) and of
//! the text parser's, shared by the targets (`fuzz_targets/<name>.rs`
//! declare `mod harness;`) and by
//! the main crate's `tests/fuzz_regressions.rs`, which replays every input
//! kept under `fuzz/regressions/<name>/` through the same function.
#![allow(dead_code)]

use bytes::BytesMut;
use erldist::connection::dist_header::{DistDecoder, DistEncoder, Framing, ReassemblyLimits};
use erldist::connection::framing::{decode_frame, Frame};
use erldist::epmd::protocol::Request;
use erldist::flags::DistFlags;
use erldist::handshake::{
    decode_packet, AcceptPending, Acceptor, AfterName, Arbiter, Challenge, ChallengeAck,
    ChallengeReply, Complement, Cookie, Cookies, HandshakeConfig, Initiator, LocalName,
    NameMessage, NodeName, Status, DEFAULT_FLAGS, REQUIRED_FLAGS,
};
use erldist::{DecodeOptions, Term};

/// Arbitrary bytes into the EPMD server's request parser, as a client
/// would send them: `Request::decode` streaming over the input fed in
/// chunks, and `Request::decode_exact` on the whole.
///
/// Whatever decodes must encode back to the bytes it came from (a
/// request's encoding is canonical, but for the one optional trailing NUL
/// after a name, which `epmd_srv.c` accepts and the encoder does not
/// write), and decode again to the same request.
pub fn epmd_request(data: &[u8]) {
    // The first byte picks the chunk size for the streaming decode.
    let Some((&chunk, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    'feed: for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match Request::decode(&mut buf) {
                Ok(Some(req)) => decoded.push(req),
                Ok(None) => break,
                // The server closes the connection on the first error.
                Err(_) => break 'feed,
            }
        }
    }
    for req in &decoded {
        let bytes = req.to_bytes();
        let again = Request::decode_exact(&bytes)
            .unwrap_or_else(|e| panic!("{req:?} encodes to bytes that do not decode: {e}"));
        assert_eq!(&again, req, "request round trip");
    }
    // The whole input at once: one request and nothing else, or an error.
    if let Ok(req) = Request::decode_exact(input) {
        assert_eq!(decoded.first(), Some(&req), "streaming and exact differ");
        let bytes = req.to_bytes();
        assert!(
            bytes[..] == input[..] || (input.len() == bytes.len() + 1 && input.last() == Some(&0)),
            "{req:?} does not encode to its input"
        );
    }
}

const INIT_CHALLENGE: u32 = 0x1234_5678;

struct InitTable {
    pending: bool,
}

impl Arbiter for InitTable {
    fn accept_pending(&self, _: &NodeName, _: bool) -> AcceptPending {
        AcceptPending::Ok
    }
    fn is_pending(&self, _: &NodeName) -> bool {
        self.pending
    }
}

/// The initiator's handshake states (`erldist::handshake::state`) driven by
/// arbitrary peer bytes, cut into `[Len:u16]` packets as the driver cuts
/// them.
///
/// The first input byte picks the setup: a static or dynamic local name,
/// whether the arbiter still waits for this attempt (the answer to
/// `alive`), and whether the harness writes the right digest into the
/// peer's ack (so the fuzzer can reach a completed handshake at all).
/// Every step must return a value or an error, never panic; a handshake
/// completes only with the right digest and with the dialled peer.
pub fn handshake_initiator(data: &[u8]) {
    let Some((&setup, input)) = data.split_first() else {
        return;
    };
    let dynamic = setup & 1 != 0;
    let table = InitTable {
        pending: setup & 2 != 0,
    };
    let fix_digest = setup & 4 != 0;
    let cookie = Cookie::new("fuzzcookie").expect("cookie");
    let name = if dynamic {
        LocalName::Dynamic {
            host: "localhost".into(),
        }
    } else {
        LocalName::Static(NodeName::parse("fuzz@localhost").expect("name"))
    };
    let config = HandshakeConfig {
        name,
        creation: 7,
        flags: DEFAULT_FLAGS | DistFlags::PUBLISHED,
        required: REQUIRED_FLAGS,
        cookies: Cookies::new(cookie.clone()),
    };
    let peer = NodeName::parse("peer@localhost").expect("peer");
    let Ok((_send_name, state)) = Initiator::start(&config, peer.clone(), INIT_CHALLENGE) else {
        return;
    };
    let mut buf = BytesMut::from(input);
    let mut next = || decode_packet(&mut buf);

    let Some(p) = next() else { return };
    let Ok(status) = Status::decode(&p) else {
        return;
    };
    let Ok(step) = state.handle(status, &table) else {
        return;
    };
    let Some(p) = next() else { return };
    let Ok(challenge) = Challenge::decode(&p) else {
        return;
    };
    let Ok(step) = step.next.handle(challenge) else {
        return;
    };
    let Some(p) = next() else { return };
    let Ok(mut ack) = ChallengeAck::decode(&p) else {
        return;
    };
    let right = cookie.digest(INIT_CHALLENGE);
    if fix_digest {
        ack.digest = right;
    }
    let digest_ok = ack.digest.ct_eq(&right);
    match step.next.handle(ack) {
        Ok(outcome) => {
            assert!(digest_ok, "a wrong digest completed the handshake");
            assert_eq!(outcome.peer_name, peer, "completed with another peer");
            if !dynamic {
                assert_eq!(outcome.local_name.as_str(), "fuzz@localhost");
            }
        }
        Err(f) => assert!(!digest_ok, "the right digest was refused: {:?}", f.error),
    }
}

const ACC_CHALLENGE: u32 = 0x8765_4321;

struct AccTable {
    answer: AcceptPending,
    named: bool,
}

impl Arbiter for AccTable {
    fn accept_pending(&self, _: &NodeName, _: bool) -> AcceptPending {
        self.answer
    }
    fn is_pending(&self, _: &NodeName) -> bool {
        true
    }
    fn assign_name(&self, host: &str) -> Option<(NodeName, u32)> {
        if !self.named {
            return None;
        }
        NodeName::from_peer(&format!("DYN@{host}"))
            .ok()
            .map(|n| (n, 9))
    }
}

/// The acceptor's handshake states (`erldist::handshake::state`) driven by
/// arbitrary peer bytes, cut into `[Len:u16]` packets as the driver cuts
/// them.
///
/// The first input byte picks the setup: the connection table's answer to
/// the new name (ok, simultaneous, up, already pending), and whether the
/// harness writes the right digest into the peer's challenge reply (so the
/// fuzzer can reach a completed handshake at all). Every step must return
/// a value or an error, never panic; a handshake completes only with the
/// right digest.
pub fn handshake_acceptor(data: &[u8]) {
    let Some((&setup, input)) = data.split_first() else {
        return;
    };
    let table = AccTable {
        answer: match setup & 7 {
            0 | 5 => AcceptPending::Ok,
            1 | 6 => AcceptPending::OkPending,
            2 => AcceptPending::NokPending,
            3 | 7 => AcceptPending::UpPending,
            _ => AcceptPending::AlreadyPending,
        },
        named: setup & 8 != 0,
    };
    let fix_digest = setup & 16 != 0;
    // Not the initiator target's name: the two run side by side in
    // tests/fuzz_regressions.rs, and an initiator refuses a challenge its
    // own node's acceptor has outstanding.
    let cookie = Cookie::new("fuzzcookie").expect("cookie");
    let config = HandshakeConfig {
        name: LocalName::Static(NodeName::parse("fuzz_acceptor@localhost").expect("name")),
        creation: 7,
        flags: DEFAULT_FLAGS | DistFlags::PUBLISHED,
        required: REQUIRED_FLAGS,
        cookies: Cookies::new(cookie.clone()),
    };
    let Ok(state) = Acceptor::start(&config, ACC_CHALLENGE) else {
        return;
    };
    let mut buf = BytesMut::from(input);
    let mut next = || decode_packet(&mut buf);

    let Some(p) = next() else { return };
    let Ok(name) = NameMessage::decode(&p) else {
        return;
    };
    let Ok(step) = state.handle(name, &table) else {
        return;
    };
    let reply_state = match step.next {
        AfterName::Reply(r) => r,
        AfterName::AliveReply(a) => {
            let Some(p) = next() else { return };
            let Ok(status) = Status::decode(&p) else {
                return;
            };
            let Ok(step) = a.handle(status) else { return };
            step.next
        }
        AfterName::Complement(c) => {
            let Some(p) = next() else { return };
            let Ok(m) = Complement::decode(&p) else {
                return;
            };
            let Ok(r) = c.handle(m) else { return };
            r
        }
    };
    let Some(p) = next() else { return };
    let Ok(mut reply) = ChallengeReply::decode(&p) else {
        return;
    };
    let right = cookie.digest(ACC_CHALLENGE);
    if fix_digest {
        reply.digest = right;
    }
    let digest_ok = reply.digest.ct_eq(&right);
    let peer = reply_state.peer().clone();
    match reply_state.handle(reply) {
        Ok((ack, outcome)) => {
            assert!(digest_ok, "a wrong digest completed the handshake");
            assert!(ack.digest.ct_eq(&cookie.digest(reply.challenge)));
            assert_eq!(outcome.peer_name, peer);
            assert!(outcome.peer_flags.contains(REQUIRED_FLAGS));
        }
        Err(f) => assert!(!digest_ok, "the right digest was refused: {:?}", f.error),
    }
}

const MAX_FRAME: usize = 1 << 20;
const LIMITS: ReassemblyLimits = ReassemblyLimits {
    max_pending: 4,
    max_message_size: 1 << 16,
    max_buffered: 1 << 17,
};

/// Bytes after the handshake, as a connection reads them: `[Len:u32]`
/// frames cut by `framing::decode_frame`, each read by a `DistDecoder`
/// (distribution header, atom cache, fragments, control message and
/// payload), with small limits so the fuzzer reaches them.
///
/// The first input byte picks the framing (pass-through, header, header
/// with fragments). Every frame must give a message, nothing yet, or an
/// error, never a panic; the limits must hold; every message must encode
/// (`DistEncoder`) and decode back to the same message.
pub fn dist_frames(data: &[u8]) {
    let Some((&setup, input)) = data.split_first() else {
        return;
    };
    let framing = match setup % 3 {
        0 => Framing::PassThrough,
        1 => Framing::Header,
        _ => Framing::HeaderWithFragments,
    };
    let options = DecodeOptions {
        max_depth: 64,
        ..DecodeOptions::default()
    };
    let mut decoder = DistDecoder::with_framing(framing)
        .limits(LIMITS)
        .decode_options(options);
    let mut buf = BytesMut::from(input);
    loop {
        let frame = match decode_frame(&mut buf, MAX_FRAME) {
            Ok(Some(Frame::Data(b))) => b,
            Ok(Some(Frame::Tick)) => continue,
            Ok(None) | Err(_) => break,
        };
        let msg = match decoder.decode_frame(frame) {
            Ok(Some(m)) => m,
            Ok(None) => {
                assert!(decoder.pending_fragments() <= LIMITS.max_pending);
                continue;
            }
            // The connection is closed after an error.
            Err(_) => break,
        };
        // What was read can be written and read back.
        let mut enc = DistEncoder::with_framing(framing);
        let frames = enc
            .encode(&msg)
            .unwrap_or_else(|e| panic!("decoded message does not encode: {e}; {msg:?}"));
        let mut dec = DistDecoder::with_framing(framing);
        let mut back = None;
        for f in frames {
            match dec.decode_frame(f) {
                Ok(Some(m)) => back = Some(m),
                Ok(None) => {}
                Err(e) => panic!("re-encoded message does not decode: {e}; {msg:?}"),
            }
        }
        let back = back.unwrap_or_else(|| panic!("re-encoded message incomplete: {msg:?}"));
        assert_eq!(back.control(), msg.control(), "control changed");
        match (back.payload(), msg.payload()) {
            (Some(a), Some(b)) => assert!(a.exact_eq(b), "payload changed"),
            (None, None) => {}
            _ => panic!("payload appeared or vanished"),
        }
    }
}

/// Arbitrary UTF-8 into `str::parse::<Term>()`; whatever parses must print
/// (`Display`, `~w`) as text that parses back to an `exact_eq` term.
/// Terms over 1 MiB in the external format are not printed: fifteen bytes
/// of text can ask for a 64 MiB bitstring (`<<1:536870911>>`), and
/// printing and parsing that back takes time in proportion to its size,
/// which the fuzzer would report as a timeout.
pub fn parse(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(term) = text.parse::<Term>() else {
        return;
    };
    if term.encode().is_ok_and(|b| b.len() > 1 << 20) {
        return;
    }
    let printed = term.to_string();
    let again = printed
        .parse::<Term>()
        .unwrap_or_else(|e| panic!("printed term {printed:?} does not parse: {e}"));
    assert!(
        again.exact_eq(&term),
        "text round trip changed the term: {printed:?}"
    );
}
