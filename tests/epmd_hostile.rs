//! Hostile input to erldist's EPMD server: it keeps serving well-behaved
//! clients throughout. These tests need no Erlang installation.

use std::time::{Duration, Instant};

use erldist::epmd::{EpmdClient, EpmdError, EpmdServer, EpmdServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn server(max_connections: usize) -> EpmdServer {
    EpmdServer::start(EpmdServerConfig {
        max_connections,
        request_timeout: Duration::from_millis(300),
        write_timeout: Duration::from_millis(300),
        ..EpmdServerConfig::with_port(0)
    })
    .await
    .unwrap()
}

fn client(server: &EpmdServer) -> EpmdClient {
    EpmdClient::new()
        .port(server.port())
        .timeout(Duration::from_secs(3))
}

/// Waits for the server to close `s`; returns what it sent first.
async fn closed_by_server(s: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(within, s.read_to_end(&mut out))
        .await
        .expect("server did not close the connection")
        .ok();
    out
}

/// A tiny deterministic generator (no extra dependency).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u8 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as u8
    }
}

#[tokio::test]
async fn random_bytes_are_dropped_and_service_continues() {
    let server = server(256).await;
    let c = client(&server);
    let reg = c.register("steady", 7000).await.unwrap();
    let mut rng = Lcg(42);
    for round in 0..200 {
        let len = 1 + usize::from(rng.next()) * 4;
        let junk: Vec<u8> = (0..len).map(|_| rng.next()).collect();
        let mut s = TcpStream::connect(("127.0.0.1", server.port()))
            .await
            .unwrap();
        let _ = s.write_all(&junk).await;
        drop(s);
        if round % 20 == 0 {
            assert_eq!(c.port_please("steady").await.unwrap().port, 7000);
        }
    }
    assert_eq!(c.names().await.unwrap().entries.len(), 1);
    assert_eq!(server.names().len(), 1);
    drop(reg);
}

#[tokio::test]
async fn truncated_requests_and_oversized_lengths_are_closed() {
    let server = server(64).await;
    let port = server.port();
    let c = client(&server);
    let _reg = c.register("steady", 7000).await.unwrap();

    // Oversized length field: closed at once, without waiting for a body.
    for len in [3058u16, 0xffff] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(&len.to_be_bytes()).await.unwrap();
        let started = Instant::now();
        assert!(closed_by_server(&mut s, Duration::from_secs(2))
            .await
            .is_empty());
        assert!(started.elapsed() < Duration::from_millis(250));
    }
    // Zero length.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(&[0, 0]).await.unwrap();
    assert!(closed_by_server(&mut s, Duration::from_secs(2))
        .await
        .is_empty());

    // A request cut short then abandoned, and one cut short and left
    // hanging: the second is dropped after the request timeout.
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(&[0, 10, b'x', 1]).await.unwrap();
    drop(s);
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(&[0, 7, b'z', b's']).await.unwrap();
    assert!(closed_by_server(&mut s, Duration::from_secs(2))
        .await
        .is_empty());

    // Every prefix of a registration, each on its own connection.
    let full =
        erldist::epmd::protocol::Request::Alive2(erldist::epmd::Alive2Request::new("partial", 1))
            .to_bytes();
    for n in 1..full.len() {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(&full[..n]).await.unwrap();
    }
    assert!(c.port_please("partial").await.is_err());
    assert_eq!(c.port_please("steady").await.unwrap().port, 7000);
}

#[tokio::test]
async fn slow_clients_and_silent_clients_are_dropped() {
    let server = server(64).await;
    let port = server.port();
    // Silent: dropped after the request timeout (300 ms here).
    let mut silent = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let started = Instant::now();
    closed_by_server(&mut silent, Duration::from_secs(2)).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");

    // Trickling a byte every 100 ms does not extend the deadline.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let started = Instant::now();
    let mut cut = false;
    for b in b"\x00\x10zsomeverylongname" {
        if slow.write_all(&[*b]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(1) {
            break;
        }
    }
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), slow.read_to_end(&mut rest)).await;
    assert!(cut || rest.is_empty());
    assert!(started.elapsed() < Duration::from_secs(3));
    // The task forgets a connection just after closing it: poll.
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.connections() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(server.connections(), 0);

    // Clients that never read their NAMES reply do not hold the server
    // (a reply too large for the socket buffers hits the write timeout).
    let c = client(&server);
    let mut regs = Vec::new();
    for i in 0..50 {
        regs.push(
            c.register(&format!("n{i}_{}", "x".repeat(200)), 1)
                .await
                .unwrap(),
        );
    }
    let mut lazy = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(&[0, 1, b'n']).await.unwrap();
        lazy.push(s);
    }
    assert_eq!(c.names().await.unwrap().entries.len(), 50);
}

#[tokio::test]
async fn many_idle_connections_do_not_lock_clients_out() {
    let server = server(32).await;
    let port = server.port();
    let c = client(&server);
    let reg = c.register("steady", 7000).await.unwrap();
    let mut idle = Vec::new();
    for _ in 0..300 {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)).await {
            idle.push(s);
        }
    }
    // The cap holds, registrations survive eviction, clients get served.
    assert!(server.connections() <= 33, "{}", server.connections());
    assert_eq!(c.port_please("steady").await.unwrap().port, 7000);
    let reg2 = c.register("second", 7001).await.unwrap();
    assert_eq!(c.names().await.unwrap().entries.len(), 2);
    // Idle connections go after the request timeout.
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.connections() > 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.connections(), 2);
    drop(idle);
    drop((reg, reg2));
}

#[tokio::test]
async fn data_after_registration_ends_it_and_close_releases_the_name() {
    let server = server(64).await;
    let c = client(&server);
    let reg = c.register("chatty", 7000).await.unwrap();
    let mut raw = TcpStream::connect(("127.0.0.1", server.port()))
        .await
        .unwrap();
    let req =
        erldist::epmd::protocol::Request::Alive2(erldist::epmd::Alive2Request::new("raw", 7001))
            .to_bytes();
    raw.write_all(&req).await.unwrap();
    let mut reply = [0u8; 6];
    raw.read_exact(&mut reply).await.unwrap();
    assert_eq!(reply[..2], [b'v', 0]);
    assert_eq!(server.names().len(), 2);
    // Anything more on a registration connection ends it, as in epmd.
    raw.write_all(b"hello").await.unwrap();
    closed_by_server(&mut raw, Duration::from_secs(2)).await;
    assert!(matches!(
        c.port_please("raw").await,
        Err(EpmdError::NoSuchNode { .. })
    ));
    drop(reg);
    let deadline = Instant::now() + Duration::from_secs(2);
    while !server.names().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(server.names().is_empty());
}

#[tokio::test]
async fn shutdown_releases_everything_and_embedding_works() {
    // ensure_running on a free port starts an embedded EPMD; a second call
    // finds it and starts nothing.
    let (port, embedded) = erldist::testing::on_free_port(erldist::epmd::ensure_running)
        .await
        .unwrap();
    assert!(embedded.is_some());
    assert!(erldist::epmd::ensure_running(port).await.unwrap().is_none());
    let client = EpmdClient::new().port(port);
    let (mut reg, second) = erldist::epmd::register_or_embed(&client, "emb", 9000, true)
        .await
        .unwrap();
    assert!(second.is_none());
    assert_eq!(client.port_please("emb").await.unwrap().port, 9000);
    // Shutting the embedded EPMD down drops the registrations.
    embedded.unwrap().shutdown().await;
    tokio::time::timeout(Duration::from_secs(2), reg.closed())
        .await
        .unwrap();
    assert!(matches!(
        client.names().await,
        Err(EpmdError::Unreachable { .. })
    ));

    // register_or_embed starts one when none runs, unless told not to.
    assert!(matches!(
        erldist::epmd::register_or_embed(&client, "emb", 9000, false).await,
        Err(EpmdError::Unreachable { .. })
    ));
    let (reg, server) = erldist::epmd::register_or_embed(&client, "emb", 9000, true)
        .await
        .unwrap();
    let server = server.expect("embedded EPMD started");
    assert_eq!(server.port(), port);
    assert_eq!(client.port_please("emb").await.unwrap().port, 9000);
    drop(reg);
    drop(server);
}
