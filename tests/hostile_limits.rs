//! A peer that completes a real handshake with a Node and then pushes
//! past each limit: frame size, handshake time, nesting depth, atom
//! length, new atoms per connection, pending fragments, message size and
//! handshakes in progress.
//! Each time the node closes that connection and logs why, delivers
//! nothing of the offending message, and keeps serving its connection to a
//! real `erl` node, made before the attack.

mod hostile_peer;

use std::num::NonZeroU64;
use std::time::Duration;

use erldist::connection::control::{ControlMessage, DistMessage};
use erldist::connection::dist_header::DistEncoder;
use erldist::flags::DistFlags;
use erldist::testing::{require_erl, unique_name};
use erldist::{Atom, Encoder, Term};
use hostile_peer::{assert_logged, capture, frame, send_name_packet, Evil, Target};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CLOSE: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_secs(1);

/// Pass-through framing: the peer offers no header flags.
const PLAIN: DistFlags = DistFlags::EMPTY;

fn blob(n: usize) -> Term {
    Term::binary(vec![7u8; n])
}

async fn expect_blob(t: &mut Target, n: usize) {
    let got = t
        .inbox
        .recv_timeout(hostile_peer::T)
        .await
        .unwrap()
        .expect("the message within the limits arrives");
    assert_eq!(got, blob(n));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_and_slow_handshakes_are_cut_off() {
    if !require_erl() {
        return;
    }
    capture();
    let mut t = Target::start(|b| {
        b.max_frame_size(64 * 1024)
            .handshake_timeout(Duration::from_secs(1))
    })
    .await;

    // Within the limit: delivered. Past it: only the 4-byte length is
    // needed for the node to hang up.
    let mut evil = Evil::connect(t.addr()).await;
    evil.handshake(&t.name(), PLAIN).await;
    let ok = evil.reg_send(PLAIN, blob(32 * 1024));
    evil.write(&ok).await;
    expect_blob(&mut t, 32 * 1024).await;
    evil.write(&(1024 * 1024u32).to_be_bytes()).await;
    evil.write(&[112; 1000]).await;
    evil.assert_closed(CLOSE).await;
    assert_logged("frame of 1048576 bytes exceeds the limit of 65536 bytes").await;
    t.assert_not_connected(&evil.name).await;
    t.assert_still_serving().await;

    // A peer that connects and says nothing.
    let mut silent = Evil::connect(t.addr()).await;
    silent.assert_closed(CLOSE).await;
    assert_logged("timed out after 1s awaiting send_name").await;

    // A peer that sends its name one byte at a time, slower than the
    // handshake step allows.
    let name =
        erldist::handshake::NodeName::parse(&format!("{}@localhost", unique_name("slow"))).unwrap();
    let bytes = send_name_packet(&name);
    let stream = TcpStream::connect(t.addr()).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let dribble = tokio::spawn(async move {
        for b in bytes.iter() {
            if wr.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(CLOSE, async {
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    dribble.abort();
    assert!(closed.is_ok(), "a slow handshake was kept open");
    t.assert_not_connected(&name).await;
    t.assert_still_serving().await;
    t.node.shutdown().await;
}

/// A pass-through frame `inbox ! Payload` from `evil`, the payload given
/// as raw bytes after its version byte: so that the test never interns
/// the atoms it holds (the node runs in this process).
fn raw_reg_send(evil: &Evil, payload_body: &[u8]) -> Vec<u8> {
    let control = ControlMessage::RegSend {
        from: evil.pid(),
        to_name: Atom::from("inbox"),
    }
    .to_term();
    let mut p = vec![112];
    p.extend(Encoder::new().encode(&control).unwrap());
    p.push(131);
    p.extend_from_slice(payload_body);
    frame(&p)
}

/// A list of `n` atoms `<tag>_<i>` in the external format.
fn fresh_atoms(tag: &str, n: usize) -> Vec<u8> {
    let mut v = vec![108];
    v.extend_from_slice(&(n as u32).to_be_bytes());
    for i in 0..n {
        let text = format!("{tag}_{i}");
        v.push(119);
        v.push(text.len() as u8);
        v.extend_from_slice(text.as_bytes());
    }
    v.push(106);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terms_past_the_limits_close_the_connection() {
    if !require_erl() {
        return;
    }
    capture();
    let mut t = Target::start(|b| b.max_nesting_depth(100).max_new_atoms(50)).await;

    // Nesting: 90 levels pass, 200 do not.
    let nest = |depth: usize| {
        let mut term = Term::atom("core");
        for _ in 0..depth {
            term = Term::List(vec![term]);
        }
        term
    };
    let mut evil = Evil::connect(t.addr()).await;
    evil.handshake(&t.name(), PLAIN).await;
    let ok = evil.reg_send(PLAIN, nest(90));
    evil.write(&ok).await;
    let got = t.inbox.recv_timeout(hostile_peer::T).await.unwrap();
    assert_eq!(got, Some(nest(90)));
    let deep = evil.reg_send(PLAIN, nest(200));
    evil.write(&deep).await;
    evil.assert_closed(CLOSE).await;
    assert_logged("nesting deeper than 100").await;
    t.assert_inbox_empty(QUIET).await;
    t.assert_not_connected(&evil.name).await;
    t.assert_still_serving().await;

    // An atom of 256 characters (ATOM_UTF8_EXT allows 65535 bytes; Erlang
    // allows 255 characters).
    let mut evil = Evil::connect(t.addr()).await;
    evil.handshake(&t.name(), PLAIN).await;
    let mut long = vec![118, 1, 0];
    long.extend_from_slice(&[b'a'; 256]);
    let f = raw_reg_send(&evil, &long);
    evil.write(&f).await;
    evil.assert_closed(CLOSE).await;
    assert_logged("atom too long: 256 characters").await;
    t.assert_inbox_empty(QUIET).await;
    t.assert_still_serving().await;

    // New atoms: 50 per connection. Two messages of 20 fresh atoms each
    // arrive; the third would make 60 and closes the connection.
    let tag = unique_name("fresh");
    let mut evil = Evil::connect(t.addr()).await;
    evil.handshake(&t.name(), PLAIN).await;
    for m in 0..3 {
        let f = raw_reg_send(&evil, &fresh_atoms(&format!("{tag}_{m}"), 20));
        evil.write(&f).await;
    }
    for m in 0..2 {
        let got = t
            .inbox
            .recv_timeout(hostile_peer::T)
            .await
            .unwrap()
            .expect("a message within the atom budget arrives");
        let first = got.list_elems().and_then(|l| l.first().cloned());
        assert_eq!(first, Some(Term::atom(&format!("{tag}_{m}_0"))));
    }
    evil.assert_closed(CLOSE).await;
    assert_logged("too many new atoms from one source (limit 50)").await;
    t.assert_inbox_empty(QUIET).await;
    assert!(
        !t.node.registered().is_empty(),
        "the node still has its names"
    );
    t.assert_not_connected(&evil.name).await;
    // A new connection from a peer gets a budget of its own.
    let mut again = Evil::connect(t.addr()).await;
    again.handshake(&t.name(), PLAIN).await;
    let f = raw_reg_send(&again, &fresh_atoms(&format!("{tag}_again"), 20));
    again.write(&f).await;
    assert!(t
        .inbox
        .recv_timeout(hostile_peer::T)
        .await
        .unwrap()
        .is_some());
    t.assert_still_serving().await;
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragments_past_the_limits_close_the_connection() {
    if !require_erl() {
        return;
    }
    capture();
    let mut t = Target::start(|b| b.max_pending_fragments(4).max_message_size(64 * 1024)).await;
    let frag = DistFlags::FRAGMENTS;

    let mut evil = Evil::connect(t.addr()).await;
    let outcome = evil.handshake(&t.name(), frag).await;
    assert!(outcome.flags.contains(frag), "fragments negotiated");
    let from = evil.pid();
    let msg = |n: usize| {
        DistMessage::new(
            ControlMessage::RegSend {
                from,
                to_name: Atom::from("inbox"),
            },
            Some(blob(n)),
        )
        .unwrap()
    };
    let mut enc = DistEncoder::new(frag).fragment_size(16 * 1024);
    // A message in 3 fragments, within the limits: delivered.
    let mut bytes = Vec::new();
    for f in enc
        .encode_fragments(&msg(40 * 1024), NonZeroU64::MIN)
        .unwrap()
    {
        bytes.extend(frame(&f));
    }
    evil.write(&bytes).await;
    expect_blob(&mut t, 40 * 1024).await;
    // Five messages left unfinished: the fifth pending one is too many.
    let mut bytes = Vec::new();
    for seq in 10..15u64 {
        let frames = enc
            .encode_fragments(&msg(20 * 1024), NonZeroU64::new(seq).unwrap())
            .unwrap();
        assert_eq!(frames.len(), 2);
        bytes.extend(frame(&frames[0]));
    }
    evil.write(&bytes).await;
    evil.assert_closed(CLOSE).await;
    assert_logged("sequence 14: more than 4 sequences pending").await;
    t.assert_inbox_empty(QUIET).await;
    t.assert_not_connected(&evil.name).await;
    t.assert_still_serving().await;

    // One message larger than 64 KiB, in fragments each well under it.
    let mut evil = Evil::connect(t.addr()).await;
    evil.handshake(&t.name(), frag).await;
    let mut enc = DistEncoder::new(frag).fragment_size(16 * 1024);
    let mut bytes = Vec::new();
    let big = DistMessage::new(
        ControlMessage::RegSend {
            from: evil.pid(),
            to_name: Atom::from("inbox"),
        },
        Some(blob(100 * 1024)),
    )
    .unwrap();
    for f in enc.encode_fragments(&big, NonZeroU64::MIN).unwrap() {
        bytes.extend(frame(&f));
    }
    evil.write(&bytes).await;
    evil.assert_closed(CLOSE).await;
    assert_logged("bytes or more, limit 65536").await;
    t.assert_inbox_empty(QUIET).await;
    t.assert_still_serving().await;
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_in_progress_are_capped() {
    if !require_erl() {
        return;
    }
    capture();
    const CAP: usize = 4;
    let mut t = Target::start(|b| {
        b.max_handshakes(CAP)
            .handshake_timeout(Duration::from_secs(3))
    })
    .await;
    // CAP connections that say nothing hold every slot...
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(Evil::connect(t.addr()).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...so the next ones are closed at once, long before the handshake
    // timeout would close them.
    for _ in 0..3 {
        let mut extra = Evil::connect(t.addr()).await;
        let started = std::time::Instant::now();
        extra.assert_closed(CLOSE).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "closed after {:?}, not at once",
            started.elapsed()
        );
    }
    assert_logged("too many handshakes in progress").await;
    // The idle ones time out and free their slots; a real node that
    // connects afterwards gets in.
    for mut c in idle {
        c.assert_closed(CLOSE).await;
    }
    t.assert_still_serving().await;
    let mut late = tokio::task::block_in_place(|| {
        erldist::testing::ErlNode::start("late", t.epmd.port(), hostile_peer::COOKIE)
    })
    .expect("start erl");
    let me = t.name();
    let pong =
        tokio::task::block_in_place(|| late.eval(&format!("net_adm:ping('{me}')."))).unwrap();
    assert_eq!(pong, "pong");
    t.node.shutdown().await;
}
