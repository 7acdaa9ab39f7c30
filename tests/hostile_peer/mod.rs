//! A hostile peer for the `hostile_*` tests: a raw TCP socket that runs a
//! real handshake with the crate's own sans-IO pieces (or a broken one on
//! purpose), then writes whatever frames a test wants, and an erldist
//! [`Node`] beside a real `erl` node to attack and check.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use erldist::bytes::{Bytes, BytesMut};
use erldist::connection::control::{ControlMessage, DistMessage};
use erldist::connection::dist_header::DistEncoder;
use erldist::epmd::EpmdClient;
use erldist::flags::DistFlags;
use erldist::handshake::{
    decode_packet, gen_challenge, Challenge, ChallengeAck, ChallengeReply, Cookie, Cookies,
    HandshakeConfig, HandshakeOutcome, Initiator, LocalName, Message, NameMessage, NoArbiter,
    NodeName, SendName, Status, DEFAULT_FLAGS, REQUIRED_FLAGS,
};
use erldist::testing::{unique_name, ErlNode, RealEpmd};
use erldist::{Atom, Node, NodeBuilder, Pid, Process, Term};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const COOKIE: &str = "hostile_cookie";
pub const T: Duration = Duration::from_secs(10);

/// The node under attack, a real `erl` node connected to it, and a
/// registered process (`inbox`) a peer can send to.
pub struct Target {
    pub node: Node,
    pub port: u16,
    pub erl: ErlNode,
    pub inbox: Process,
    // Dropped last: kills the EPMD.
    pub epmd: RealEpmd,
}

impl Target {
    /// Starts the node (`tweak` sets its limits), learns its port, and an
    /// `erl` node connected to it.
    pub async fn start(tweak: impl FnOnce(NodeBuilder) -> NodeBuilder) -> Target {
        let epmd = RealEpmd::start().expect("start epmd");
        let alive = unique_name("target");
        // The node binds a port the OS picks (a port picked here and bound
        // later could be taken in between), and EPMD tells which.
        let builder = Node::builder(&format!("{alive}@localhost"))
            .cookie(COOKIE)
            .epmd("localhost", epmd.port())
            .embedded_epmd(false);
        let node = tweak(builder).start().await.expect("start the node");
        let port = EpmdClient::with_address("127.0.0.1", epmd.port())
            .port_please(&alive)
            .await
            .expect("the node is registered in EPMD")
            .port;
        let inbox = node.process();
        inbox.register("inbox").expect("register inbox");
        let erl = tokio::task::block_in_place(|| ErlNode::start("erl", epmd.port(), COOKIE))
            .expect("start erl");
        assert!(node.ping(erl.name()).await, "the node reaches erl");
        Target {
            node,
            port,
            erl,
            inbox,
            epmd,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn name(&self) -> String {
        self.node.name().to_string()
    }

    /// The node is up, still connected to `erl` over the connection made
    /// at the start, and messages flow both ways on it.
    pub async fn assert_still_serving(&mut self) {
        let erl_name = Atom::from(self.erl.name());
        assert!(
            self.node.nodes().contains(&erl_name),
            "the connection to erl is gone: {:?}",
            self.node.nodes()
        );
        let me = self.name();
        let sent = tokio::task::block_in_place(|| {
            self.erl.eval(&format!(
                "{{inbox, '{me}'}} ! {{from_erl, <<\"still here\">>}}, ok."
            ))
        })
        .expect("eval on erl");
        assert_eq!(sent, "ok");
        let got = self
            .inbox
            .recv_timeout(T)
            .await
            .expect("inbox alive")
            .expect("erl's message arrives");
        assert!(
            got.exact_eq(&Term::tuple(vec![
                Term::atom("from_erl"),
                Term::binary(b"still here".to_vec())
            ])),
            "{got}"
        );
        assert!(self.node.ping(self.erl.name()).await, "ping erl");
    }

    /// Nothing reaches `inbox` for `wait`.
    pub async fn assert_inbox_empty(&mut self, wait: Duration) {
        let got = self.inbox.recv_timeout(wait).await.expect("inbox alive");
        assert!(got.is_none(), "the inbox got {got:?}");
    }

    /// The hostile peer `name` is not (or no longer) among the node's
    /// peers, visible or hidden.
    pub async fn assert_not_connected(&self, name: &NodeName) {
        let atom = Atom::from(name.as_str());
        let gone = wait_async(T, || {
            !self.node.nodes().contains(&atom) && !self.node.hidden_nodes().contains(&atom)
        })
        .await;
        assert!(gone, "{name} is still connected");
    }
}

// ------------------------------------------------ a log that keeps all

/// Every event and span field, as text: a tracing subscriber for the
/// whole test binary, enabled at every level.
pub struct Capture(Mutex<String>);

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut log = self.0.lock().unwrap();
        let _ = write!(log, "span {} ", span.metadata().name());
        span.record(&mut Fields(&mut log));
        log.push('\n');
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut log = self.0.lock().unwrap();
        values.record(&mut Fields(&mut log));
        log.push('\n');
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut log = self.0.lock().unwrap();
        let _ = write!(log, "{} ", event.metadata().level());
        event.record(&mut Fields(&mut log));
        log.push('\n');
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

pub fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(String::new()))));
        let _ = tracing::subscriber::set_global_default(CaptureRef(c));
        c
    })
}

struct CaptureRef(&'static Capture);

impl tracing::Subscriber for CaptureRef {
    fn enabled(&self, m: &tracing::Metadata<'_>) -> bool {
        self.0.enabled(m)
    }
    fn new_span(&self, s: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        self.0.new_span(s)
    }
    fn record(&self, i: &tracing::span::Id, r: &tracing::span::Record<'_>) {
        self.0.record(i, r)
    }
    fn record_follows_from(&self, a: &tracing::span::Id, b: &tracing::span::Id) {
        self.0.record_follows_from(a, b)
    }
    fn event(&self, e: &tracing::Event<'_>) {
        self.0.event(e)
    }
    fn enter(&self, i: &tracing::span::Id) {
        self.0.enter(i)
    }
    fn exit(&self, i: &tracing::span::Id) {
        self.0.exit(i)
    }
}

/// Everything logged so far (by every test of the binary).
pub fn captured_log() -> String {
    capture().0.lock().unwrap().clone()
}

/// Waits until the log holds `text` (the reason a connection was closed).
pub async fn assert_logged(text: &str) {
    let found = wait_async(T, || captured_log().contains(text)).await;
    assert!(found, "the log lacks {text:?}:\n{}", captured_log());
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub async fn wait_async(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A raw peer speaking the wire protocol by hand.
pub struct Evil {
    pub stream: TcpStream,
    pub buf: BytesMut,
    pub name: NodeName,
    pub creation: u32,
}

pub fn packet(m: &Message) -> BytesMut {
    let mut out = BytesMut::new();
    m.encode_packet(&mut out).expect("encode packet");
    out
}

/// `[Len:u32]` and the payload.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = u32::try_from(payload.len())
        .expect("frame length")
        .to_be_bytes()
        .to_vec();
    v.extend_from_slice(payload);
    v
}

impl Evil {
    /// Connects to `addr` as a fresh node name, without a handshake.
    pub async fn connect(addr: SocketAddr) -> Evil {
        let stream = TcpStream::connect(addr).await.expect("connect");
        Evil {
            stream,
            buf: BytesMut::new(),
            name: NodeName::parse(&format!("{}@localhost", unique_name("evil"))).unwrap(),
            creation: 0x0bad_0001,
        }
    }

    /// Wraps an accepted socket.
    pub fn accepted(stream: TcpStream, name: NodeName) -> Evil {
        Evil {
            stream,
            buf: BytesMut::new(),
            name,
            creation: 0x0bad_0002,
        }
    }

    pub fn config(&self, cookie: &str, extra: DistFlags) -> HandshakeConfig {
        HandshakeConfig {
            name: LocalName::Static(self.name.clone()),
            creation: self.creation,
            flags: DEFAULT_FLAGS | DistFlags::PUBLISHED | extra,
            required: REQUIRED_FLAGS,
            cookies: Cookies::new(Cookie::new(cookie).unwrap()),
        }
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    pub async fn send(&mut self, m: &Message) {
        let p = packet(m);
        self.write(&p).await;
    }

    /// The next handshake packet (fails the test after `T`).
    pub async fn recv_packet(&mut self) -> Bytes {
        let deadline = Instant::now() + T;
        loop {
            if let Some(p) = decode_packet(&mut self.buf) {
                return p;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, self.stream.read_buf(&mut self.buf))
                .await
                .expect("handshake packet in time")
                .expect("read");
            assert!(n > 0, "closed during the handshake");
        }
    }

    /// The initiator's side with this cookie, up to and including the
    /// challenge reply: returns the pending state's expected outcome
    /// check, i.e. the ack handler. The reply has been sent.
    pub async fn handshake_until_reply(
        &mut self,
        target: &str,
        cookie: &str,
        extra: DistFlags,
        after_reply: &[u8],
    ) -> erldist::handshake::AwaitAck {
        let config = self.config(cookie, extra);
        let peer = NodeName::parse(target).unwrap();
        let (send, st) =
            Initiator::start(&config, peer, gen_challenge().unwrap()).expect("initiator");
        self.send(&Message::Name(NameMessage::New(send))).await;
        let status = Status::decode(&self.recv_packet().await).expect("status");
        let step = st.handle(status, &NoArbiter).expect("status ok");
        for m in &step.send {
            self.send(m).await;
        }
        let ch = Challenge::decode(&self.recv_packet().await).expect("challenge");
        let step = step.next.handle(ch).expect("challenge ok");
        // The reply and whatever the test pipelines after it, in one write.
        let mut out = BytesMut::new();
        for m in &step.send {
            out.extend_from_slice(&packet(m));
        }
        out.extend_from_slice(after_reply);
        self.write(&out).await;
        step.next
    }

    /// A full handshake as initiator with the right cookie, offering
    /// `extra` flags; returns the outcome.
    pub async fn handshake(&mut self, target: &str, extra: DistFlags) -> HandshakeOutcome {
        let st = self.handshake_until_reply(target, COOKIE, extra, &[]).await;
        let ack = ChallengeAck::decode(&self.recv_packet().await).expect("ack");
        st.handle(ack).expect("handshake completes")
    }

    /// The acceptor's side, answering with `cookie`'s digests whatever the
    /// initiator's digest was, and pipelining `after_ack` behind the ack.
    pub async fn accept_with_cookie(&mut self, cookie: &str, after_ack: &[u8]) {
        let cookie = Cookie::new(cookie).unwrap();
        let p = self.recv_packet().await;
        let NameMessage::New(_name) = NameMessage::decode(&p).expect("send_name") else {
            panic!("old send_name");
        };
        self.send(&Message::Status(Status::Ok)).await;
        let challenge = gen_challenge().unwrap();
        self.send(&Message::Challenge(Challenge {
            flags: DEFAULT_FLAGS | DistFlags::PUBLISHED,
            challenge,
            creation: self.creation,
            name: self.name.to_string(),
        }))
        .await;
        let reply = ChallengeReply::decode(&self.recv_packet().await).expect("reply");
        let mut out = packet(&Message::ChallengeAck(ChallengeAck {
            digest: cookie.digest(reply.challenge),
        }));
        out.extend_from_slice(after_ack);
        // The node may have closed already; a failed write is fine.
        let _ = self.stream.write_all(&out).await;
    }

    pub fn pid(&self) -> Pid {
        Pid {
            node: Atom::from(self.name.as_str()),
            id: 77,
            serial: 0,
            creation: self.creation,
        }
    }

    /// `inbox ! msg` from this peer, as frames for `flags` (a fresh
    /// encoder: no atom cache state carried over).
    pub fn reg_send(&self, flags: DistFlags, msg: Term) -> Vec<u8> {
        let m = DistMessage::new(
            ControlMessage::RegSend {
                from: self.pid(),
                to_name: Atom::from("inbox"),
            },
            Some(msg),
        )
        .expect("message");
        let mut enc = DistEncoder::new(flags);
        let mut out = Vec::new();
        for f in enc.encode(&m).expect("encode") {
            out.extend_from_slice(&frame(&f));
        }
        out
    }

    /// Waits until the other side closes the socket (reading and
    /// dropping whatever comes, ticks included); fails the test if it is
    /// still open after `within`.
    pub async fn assert_closed(&mut self, within: Duration) {
        let mut buf = vec![0u8; 64 * 1024];
        let r = tokio::time::timeout(within, async {
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(r.is_ok(), "the node kept the connection open");
    }
}

/// A `send_name` packet for a fresh name, as the first bytes of a raw
/// handshake.
pub fn send_name_packet(name: &NodeName) -> BytesMut {
    packet(&Message::Name(NameMessage::New(SendName {
        flags: DEFAULT_FLAGS | DistFlags::PUBLISHED,
        creation: 1,
        name: name.to_string(),
    })))
}
