//! Peers that misbehave during the handshake (disconnect, garbage, silence)
//! on both sides, lookup failures, and two erldist nodes connecting to
//! each other at once. Each failure ends within the setup timeout, closes
//! the socket and leaves nothing in the connection table.

mod connection_support;

use std::time::{Duration, Instant};

use connection_support::{reg_send, RustNode};
use erldist::connection::driver::{
    accept, connect, ConnectError, ConnectionEvent, LocalNodeConfig,
};
use erldist::connection::framing::decode_pass_through;
use erldist::epmd::EpmdClient;
use erldist::handshake::{Cookie, NodeName};
use erldist::testing::{require_erl, RealEpmd};
use erldist::Term;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SETUP: Duration = Duration::from_millis(400);

fn local(name: &str) -> LocalNodeConfig {
    let mut c = LocalNodeConfig::new(NodeName::parse(name).unwrap(), 7, Cookie::new("c").unwrap());
    c.setup_timeout = SETUP;
    c
}

/// Reads until EOF (or fails the test after 2 s): the other side closed.
async fn assert_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 256];
    let r = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(r.is_ok(), "socket still open");
}

/// Runs `accept` against a raw client that does `client`.
async fn accept_against<F, Fut>(client: F) -> (ConnectError, Duration, LocalNodeConfig)
where
    F: FnOnce(TcpStream) -> Fut,
    Fut: std::future::Future<Output = TcpStream>,
{
    let cfg = local("acc@localhost");
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let c = TcpStream::connect(addr).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    let started = Instant::now();
    let (res, mut c) = tokio::join!(accept(&cfg, s), client(c));
    let err = res.unwrap_err();
    let took = started.elapsed();
    assert_closed(&mut c).await;
    assert_eq!(cfg.table.handshakes_in_progress(), 0);
    assert_eq!(cfg.table.running_connections(), 0);
    assert!(cfg.table.peers().is_empty());
    (err, took, cfg)
}

#[tokio::test]
async fn accept_peer_disconnecting_mid_handshake() {
    let (err, _, _) = accept_against(|mut c| async move {
        c.write_all(&[0, 30, b'N', 0, 0]).await.unwrap();
        c.shutdown().await.unwrap();
        c
    })
    .await;
    assert!(
        matches!(
            err,
            ConnectError::Closed {
                step: "send_name",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn accept_peer_sending_garbage() {
    let (err, _, _) = accept_against(|mut c| async move {
        c.write_all(&[0, 5, b'x', 1, 2, 3, 4]).await.unwrap();
        c
    })
    .await;
    assert!(matches!(err, ConnectError::Handshake { .. }), "{err}");
    // A valid name that is not a node name: closed without a status.
    let (err, _, _) = accept_against(|mut c| async move {
        let mut p = vec![0, 19, b'N'];
        p.extend(0xD_07DF_7FBDu64.to_be_bytes());
        p.extend([0, 0, 0, 1, 0, 4]);
        p.extend(b"nope");
        c.write_all(&p).await.unwrap();
        c
    })
    .await;
    assert!(err.to_string().contains("invalid node name"), "{err}");
}

#[tokio::test]
async fn accept_peer_that_never_answers_times_out() {
    let (err, took, _) = accept_against(|c| async move { c }).await;
    assert!(matches!(err, ConnectError::Timeout { .. }), "{err}");
    assert!(took >= SETUP && took < SETUP * 3, "{took:?}");
}

#[tokio::test]
async fn accept_peer_missing_flags_is_refused_with_not_allowed() {
    let (err, _, _) = accept_against(|mut c| async move {
        let name = b"old@localhost";
        let mut p = vec![0, (15 + name.len()) as u8, b'N'];
        p.extend(0x1u64.to_be_bytes()); // PUBLISHED only
        p.extend([0, 0, 0, 1, 0, name.len() as u8]);
        p.extend(name);
        c.write_all(&p).await.unwrap();
        let mut status = [0u8; 14];
        c.read_exact(&mut status).await.unwrap();
        assert_eq!(&status, b"\x00\x0csnot_allowed");
        c
    })
    .await;
    assert!(err.to_string().contains("UTF8_ATOMS"), "{err}");
}

/// A fake node registered with a real EPMD; `serve` plays the peer.
async fn connect_against<F, Fut>(serve: F) -> (ConnectError, Duration)
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = TcpStream> + Send,
{
    let epmd = RealEpmd::start().unwrap();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = EpmdClient::with_address("127.0.0.1", epmd.port());
    let alive = erldist::testing::unique_name("fake");
    let _reg = client
        .register(&alive, l.local_addr().unwrap().port())
        .await
        .unwrap();
    let server = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut s = serve(s).await;
        assert_closed(&mut s).await;
    });
    let mut cfg = local("con@localhost");
    cfg.epmd = client;
    let started = Instant::now();
    let err = connect(
        &cfg,
        &NodeName::parse(&format!("{alive}@localhost")).unwrap(),
    )
    .await
    .unwrap_err();
    let took = started.elapsed();
    server.await.unwrap();
    assert_eq!(cfg.table.handshakes_in_progress(), 0);
    assert!(cfg.table.peers().is_empty());
    (err, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_to_misbehaving_peers() {
    if !require_erl() {
        return;
    }
    let (err, took) = connect_against(|s| async move { s }).await;
    assert!(
        matches!(err, ConnectError::Timeout { step: "status", .. }),
        "{err}"
    );
    assert!(took < SETUP * 3, "{took:?}");
    let (err, _) = connect_against(|mut s| async move {
        let mut b = [0u8; 64];
        let _ = s.read(&mut b).await;
        s.write_all(&[0, 3, 1, 2, 3]).await.unwrap();
        s
    })
    .await;
    assert!(matches!(err, ConnectError::Handshake { .. }), "{err}");
    let (err, _) = connect_against(|mut s| async move {
        let mut b = [0u8; 64];
        let _ = s.read(&mut b).await;
        s.write_all(b"\x00\x03sok").await.unwrap();
        s.shutdown().await.unwrap();
        s
    })
    .await;
    assert!(
        matches!(
            err,
            ConnectError::Closed {
                step: "challenge",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_and_connect_failures_are_typed() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let client = EpmdClient::with_address("127.0.0.1", epmd.port());
    let mut cfg = local("con@localhost");
    cfg.epmd = client.clone();
    let err = connect(&cfg, &NodeName::parse("nobody@localhost").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::NotRegistered { .. }), "{err}");
    // Registered, but nothing listens on the port.
    let port = erldist::testing::free_port().unwrap();
    let _reg = client.register("ghost", port).await.unwrap();
    let err = connect(&cfg, &NodeName::parse("ghost@localhost").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Connect { .. }), "{err}");
    assert!(cfg.table.peers().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_erldist_nodes_connecting_at_once_end_with_one_connection() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    for _ in 0..3 {
        let mut a = RustNode::start(
            "a",
            "localhost",
            epmd.port(),
            "c",
            false,
            Duration::from_secs(60),
        )
        .await;
        let mut b = RustNode::start(
            "b",
            "localhost",
            epmd.port(),
            "c",
            false,
            Duration::from_secs(60),
        )
        .await;
        let an = NodeName::parse(&a.name()).unwrap();
        let bn = NodeName::parse(&b.name()).unwrap();
        let (ra, rb) = tokio::join!(connect(&a.config, &bn), connect(&b.config, &an));
        // Each side ends with exactly one connection: its own or the one
        // it accepted.
        let conn_a = match ra {
            Ok(c) => c,
            Err(_) => tokio::time::timeout(Duration::from_secs(5), a.incoming.recv())
                .await
                .unwrap()
                .unwrap(),
        };
        let mut conn_b = match rb {
            Ok(c) => c,
            Err(_) => tokio::time::timeout(Duration::from_secs(5), b.incoming.recv())
                .await
                .unwrap()
                .unwrap(),
        };
        assert_eq!(a.config.table.running_connections(), 1);
        assert_eq!(b.config.table.running_connections(), 1);
        assert!(a.incoming.try_recv().is_err() && b.incoming.try_recv().is_err());
        // And it is the same connection: thousands of frames go through,
        // in order.
        let n = 5000;
        let frames: Vec<_> = (0..n)
            .map(|i| reg_send(&a.pid(1), "x", &Term::Int(i)))
            .collect();
        conn_a.handle().send_frames(frames).await.unwrap();
        for i in 0..n {
            match tokio::time::timeout(Duration::from_secs(5), conn_b.recv())
                .await
                .unwrap()
            {
                Some(ConnectionEvent::Frame(f)) => {
                    assert_eq!(decode_pass_through(f).unwrap().1, Some(Term::Int(i)));
                }
                other => panic!("{other:?}"),
            }
        }
        // Closing one side is seen by the other.
        conn_a.handle().close();
        match tokio::time::timeout(Duration::from_secs(5), conn_b.recv())
            .await
            .unwrap()
        {
            Some(ConnectionEvent::Down(r)) => {
                assert_eq!(r.to_string(), "connection closed by peer")
            }
            other => panic!("{other:?}"),
        }
    }
}
