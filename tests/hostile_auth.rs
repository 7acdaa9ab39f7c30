//! Authentication against hostile peers, with a Node beside a real `erl`
//! node: a peer without the cookie gets no message through, in either
//! role, even when it pipelines frames behind its handshake messages;
//! nothing is delivered before the handshake completes; and the cookie
//! never shows in the logs (every tracing event and span, at every level)
//! or in the errors. Each attack is paired with the same peer holding the
//! right cookie, whose pipelined message does arrive: so the checks can
//! fail.

mod hostile_peer;

use std::time::Duration;

use erldist::epmd::EpmdClient;
use erldist::flags::DistFlags;
use erldist::handshake::NodeName;
use erldist::testing::{require_erl, unique_name};
use erldist::Term;
use hostile_peer::{capture, captured_log, frame, send_name_packet, Evil, Target, COOKIE};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

const WRONG: &str = "WrongCookie_4f1a";
const CLOSE: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_secs(2);
const PLAIN: DistFlags = DistFlags::EMPTY;

/// The log so far holds what the attacks logged, and neither cookie.
fn assert_log_clean(expect: &str) {
    let log = captured_log();
    assert!(log.contains(expect), "the log lacks {expect:?}:\n{log}");
    for secret in [COOKIE, WRONG] {
        assert!(!log.contains(secret), "a cookie is in the log:\n{log}");
    }
}

fn hello(tag: &str) -> Term {
    Term::tuple(vec![Term::atom("pipelined"), Term::atom(tag)])
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialling_peer_without_the_cookie_gets_nothing_through() {
    if !require_erl() {
        return;
    }
    capture();
    let mut t = Target::start(|b| b).await;

    // The right cookie: the frames pipelined behind the challenge reply
    // are delivered once the handshake completes.
    let mut good = Evil::connect(t.addr()).await;
    let frames = good.reg_send(PLAIN, hello("good"));
    let st = good
        .handshake_until_reply(&t.name(), COOKIE, PLAIN, &frames)
        .await;
    let ack = erldist::handshake::ChallengeAck::decode(&good.recv_packet().await).unwrap();
    st.handle(ack).expect("the node proves the cookie");
    let got = t.inbox.recv_timeout(hostile_peer::T).await.unwrap();
    assert_eq!(got, Some(hello("good")));

    // A wrong cookie, the same frames behind the reply: closed, nothing
    // delivered, never connected.
    let mut bad = Evil::connect(t.addr()).await;
    let frames = bad.reg_send(PLAIN, hello("bad"));
    let _ = bad
        .handshake_until_reply(&t.name(), WRONG, PLAIN, &frames)
        .await;
    bad.assert_closed(CLOSE).await;
    t.assert_inbox_empty(QUIET).await;
    t.assert_not_connected(&bad.name).await;

    // Frames before the handshake is over (right after send_name), and
    // frames with no handshake at all: closed, nothing delivered.
    let mut early = Evil::connect(t.addr()).await;
    let mut bytes = send_name_packet(&early.name).to_vec();
    bytes.extend(early.reg_send(PLAIN, hello("early")));
    early.write(&bytes).await;
    early.assert_closed(CLOSE).await;
    let mut raw = Evil::connect(t.addr()).await;
    let frames = raw.reg_send(PLAIN, hello("raw"));
    raw.write(&frames).await;
    raw.assert_closed(CLOSE).await;
    // An empty frame (a tick) first, then a frame: as garbage.
    let mut ticker = Evil::connect(t.addr()).await;
    let mut bytes = frame(&[]);
    bytes.extend(ticker.reg_send(PLAIN, hello("tick")));
    ticker.write(&bytes).await;
    ticker.assert_closed(CLOSE).await;
    t.assert_inbox_empty(QUIET).await;

    t.assert_still_serving().await;
    assert_log_clean(&bad.name.to_string());
    t.node.shutdown().await;
}

/// A listener registered with the target's EPMD under a fresh name, that
/// accepts one connection and answers as `cookie`'s holder, pipelining
/// `inbox ! hello(tag)` behind its ack.
async fn hostile_acceptor(t: &Target, cookie: &'static str, tag: &'static str) -> NodeName {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let alive = unique_name("evilacc");
    let name = NodeName::parse(&format!("{alive}@localhost")).unwrap();
    let epmd = EpmdClient::with_address("127.0.0.1", t.epmd.port());
    let registration = epmd.register(&alive, port).await.unwrap();
    let me = name.clone();
    tokio::spawn(async move {
        let _registration = registration;
        let (s, _) = listener.accept().await.unwrap();
        let mut evil = Evil::accepted(s, me);
        let frames = evil.reg_send(PLAIN, hello(tag));
        evil.accept_with_cookie(cookie, &frames).await;
        // Hold the socket until the node closes it.
        evil.assert_closed(Duration::from_secs(30)).await;
    });
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_the_node_dials_without_the_cookie_gets_nothing_through() {
    if !require_erl() {
        return;
    }
    capture();
    let mut t = Target::start(|b| b).await;

    // The right cookie: connected, and the pipelined message arrives.
    let good = hostile_acceptor(&t, COOKIE, "good_acceptor").await;
    t.node
        .connect(good.as_str())
        .await
        .expect("connects to a peer with the cookie");
    let got = t.inbox.recv_timeout(hostile_peer::T).await.unwrap();
    assert_eq!(got, Some(hello("good_acceptor")));
    t.node.disconnect(good.as_str()).await;

    // A wrong ack: the connection fails and the frames behind the ack
    // are dropped.
    let bad = hostile_acceptor(&t, WRONG, "bad_acceptor").await;
    let err = t
        .node
        .connect(bad.as_str())
        .await
        .expect_err("a peer without the cookie is refused");
    let text = format!("{err} {err:?}");
    assert!(text.contains("cookie"), "{text}");
    for secret in [COOKIE, WRONG] {
        assert!(!text.contains(secret), "the error shows a cookie: {text}");
    }
    t.assert_inbox_empty(QUIET).await;
    t.assert_not_connected(&bad).await;

    t.assert_still_serving().await;
    assert_log_clean(bad.as_str());
    // Nor does a builder's Debug show it.
    let builder = format!("{:?}", erldist::Node::builder("x@localhost").cookie(WRONG));
    assert!(
        builder.contains("redacted") && !builder.contains(WRONG),
        "{builder}"
    );
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_does_not_answer_its_own_challenge_reflected_back() {
    if !require_erl() {
        return;
    }
    capture();
    let mut t = Target::start(|b| b).await;
    // The attacker dials the node and gets its challenge.
    let mut first = Evil::connect(t.addr()).await;
    first.write(&send_name_packet(&first.name)).await;
    let status = erldist::handshake::Status::decode(&first.recv_packet().await).unwrap();
    assert_eq!(status, erldist::handshake::Status::Ok);
    let theirs = erldist::handshake::Challenge::decode(&first.recv_packet().await).unwrap();
    // Then makes the node dial it, and sends it that same challenge.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let alive = unique_name("reflector");
    let name = NodeName::parse(&format!("{alive}@localhost")).unwrap();
    let registration = EpmdClient::with_address("127.0.0.1", t.epmd.port())
        .register(&alive, listener.local_addr().unwrap().port())
        .await
        .unwrap();
    let me = name.clone();
    let reflector = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        let mut evil = Evil::accepted(s, me);
        let _name = evil.recv_packet().await;
        evil.send(&erldist::handshake::Message::Status(
            erldist::handshake::Status::Ok,
        ))
        .await;
        evil.send(&erldist::handshake::Message::Challenge(
            erldist::handshake::Challenge {
                flags: erldist::handshake::DEFAULT_FLAGS | DistFlags::PUBLISHED,
                challenge: theirs.challenge,
                creation: evil.creation,
                name: evil.name.to_string(),
            },
        ))
        .await;
        // The node must hang up instead of answering with the digest.
        let mut answer = evil.buf.to_vec();
        let mut chunk = [0u8; 256];
        let closed = tokio::time::timeout(CLOSE, async {
            loop {
                match evil.stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => answer.extend_from_slice(&chunk[..n]),
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the node kept the connection open");
        assert!(answer.is_empty(), "the node answered: {answer:?}");
    });
    let err = t
        .node
        .connect(name.as_str())
        .await
        .expect_err("the node refuses to answer");
    assert!(err.to_string().contains("reflection"), "{err}");
    reflector.await.expect("the reflector saw no answer");
    drop(registration);
    // Without the digest the first connection goes nowhere.
    first.assert_closed(Duration::from_secs(15)).await;
    t.assert_not_connected(&first.name).await;
    t.assert_still_serving().await;
    t.node.shutdown().await;
}
