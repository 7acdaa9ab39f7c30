//! erldist's EPMD client against the real `epmd` (and a real `erl` node).

use std::time::Duration;

use erldist::epmd::{Alive2Request, EpmdClient, EpmdError, NodeType};
use erldist::testing::{require_erl, unique_name, ErlNode, RealEpmd};

fn client(epmd: &RealEpmd) -> EpmdClient {
    EpmdClient::new()
        .port(epmd.port())
        .timeout(Duration::from_secs(5))
}

#[tokio::test]
async fn register_lookup_list_and_release_with_real_epmd() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let client = client(&epmd);
    let name = unique_name("reg");

    let reg = client.register(&name, 45678).await.unwrap();
    assert!(reg.creation() >= 4, "creation {}", reg.creation());
    assert_eq!(reg.name(), name);

    let info = client.port_please(&name).await.unwrap();
    assert_eq!(info.port, 45678);
    assert_eq!(info.node_type, NodeType::NORMAL);
    assert_eq!((info.highest_version, info.lowest_version), (6, 5));
    assert_eq!(info.name, name);
    // name@host is cut at the @.
    let again = client
        .port_please(&format!("{name}@localhost"))
        .await
        .unwrap();
    assert_eq!(again.port, 45678);

    let names = client.names().await.unwrap();
    assert_eq!(u32::from(epmd.port()), names.epmd_port);
    assert!(names
        .entries
        .iter()
        .any(|e| e.name == name && e.port == 45678));
    let text = epmd.names_text().unwrap();
    assert!(
        text.contains(&format!("name {name} at port 45678\n")),
        "{text}"
    );

    // A taken name is refused.
    match client.register(&name, 1).await {
        Err(EpmdError::NameTaken { name: n, .. }) => assert_eq!(n, name),
        other => panic!("expected NameTaken, got {other:?}"),
    }

    // The registration ends with the connection.
    let first_creation = reg.creation();
    drop(reg);
    let mut gone = false;
    for _ in 0..100 {
        if let Err(EpmdError::NoSuchNode { .. }) = client.port_please(&name).await {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "registration outlived its connection");
    assert!(!client
        .names()
        .await
        .unwrap()
        .entries
        .iter()
        .any(|e| e.name == name));

    // Registering the name again gets the next creation, as EPMD counts.
    let reg2 = client.register(&name, 45679).await.unwrap();
    assert_eq!(reg2.creation(), first_creation.wrapping_add(1));
}

#[tokio::test]
async fn old_style_registration_gets_the_short_reply() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let client = client(&epmd);
    let mut req = Alive2Request::new(unique_name("old"), 40000);
    req.highest_version = 5;
    req.node_type = NodeType::HIDDEN;
    req.extra = b"extra!".to_vec();
    let reg = client.register_with(req).await.unwrap();
    assert!((1..=3).contains(&reg.creation()), "{}", reg.creation());
    let info = client.port_please(reg.name()).await.unwrap();
    assert_eq!(info.node_type, NodeType::HIDDEN);
    assert_eq!(info.extra, b"extra!");
}

#[tokio::test]
async fn unknown_node_no_epmd_and_silent_peer_are_clear_errors() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    match client(&epmd).port_please("no_such_node_here").await {
        Err(EpmdError::NoSuchNode { name, .. }) => assert_eq!(name, "no_such_node_here"),
        other => panic!("{other:?}"),
    }

    // Nothing listening.
    let port = erldist::testing::free_port().unwrap();
    let nobody = EpmdClient::new().port(port);
    assert!(matches!(
        nobody.names().await,
        Err(EpmdError::Unreachable { .. })
    ));
    assert!(matches!(
        nobody.register("x", 1).await,
        Err(EpmdError::Unreachable { .. })
    ));

    // A peer that accepts and never answers: a timeout, not a hang.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let c = EpmdClient::new()
        .port(silent_port)
        .timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    assert!(matches!(
        c.port_please("x").await,
        Err(EpmdError::Timeout { .. })
    ));
    assert!(matches!(
        c.register("x", 1).await,
        Err(EpmdError::Timeout { .. })
    ));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn finds_a_real_node_registered_with_real_epmd() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = ErlNode::start("real", epmd.port(), "cookie").unwrap();
    let client = client(&epmd);
    let info = client.port_please(node.name()).await.unwrap();
    assert_eq!((info.highest_version, info.lowest_version), (6, 5));
    assert_ne!(info.port, 0);
    // Our client can see the name the node registered.
    let names = client.names().await.unwrap();
    assert!(names.entries.iter().any(|e| e.name == node.alive_name()));
}

/// EPMD keeps about a thousand connections at once and closes any beyond
/// that as soon as it accepts them. A node connecting while EPMD is that
/// busy (a burst of connects in a large cluster) tries its lookup again
/// after a short pause instead of failing the connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_waits_out_epmd_at_its_connection_limit() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = |prefix: &str| {
        erldist::Node::builder(&format!("{}@localhost", unique_name(prefix)))
            .cookie("limit_cookie")
            .epmd("localhost", epmd.port())
            .start()
    };
    let (a, b) = (node("lim_a").await.unwrap(), node("lim_b").await.unwrap());
    // Fill EPMD up: hold connections until it closes new ones at once.
    let mut held = Vec::new();
    let full = loop {
        let s = std::net::TcpStream::connect(("127.0.0.1", epmd.port())).unwrap();
        if held.len() % 100 == 99 && held.len() > 1000 && closed_by_peer(&s) {
            break true;
        }
        held.push(s);
        if held.len() > 4000 {
            break false;
        }
    };
    assert!(full, "EPMD took 4,000 connections without closing any");
    // Empty it a little later, while the connect is trying.
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(held);
    });
    let connected = tokio::time::timeout(Duration::from_secs(10), a.connect(b.name().as_ref()))
        .await
        .expect("connect in time");
    release.await.unwrap();
    connected.expect("the connect waits until EPMD answers");
    assert!(a.ping(b.name().as_ref()).await);
    a.shutdown().await;
    b.shutdown().await;
}

/// Whether the peer closes `s` without a word (within 100 ms).
fn closed_by_peer(s: &std::net::TcpStream) -> bool {
    use std::io::{ErrorKind, Read};
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut byte = [0u8; 1];
    match (&*s).read(&mut byte) {
        Ok(0) => true,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        Ok(_) => false,
    }
}
