//! A peer that does not offer DFLAG_SPAWN (an old or C node): spawn and RPC
//! fail at once with `notsup`, as OTP answers, instead of waiting for a
//! reply that cannot come.

use std::time::{Duration, Instant};

use erldist::connection::driver::{serve, LocalNodeConfig};
use erldist::epmd::{EpmdClient, EpmdServer, EpmdServerConfig};
use erldist::handshake::{Cookie, Cookies, NodeName};
use erldist::node::RpcError;
use erldist::testing::unique_name;
use erldist::Node;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_to_a_peer_without_spawn_is_notsup_at_once() {
    let epmd = EpmdServer::start(EpmdServerConfig::with_port(0))
        .await
        .unwrap();
    let port = epmd.port();
    // A bare connection-layer node: the handshake's default flags, no SPAWN.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let alive = unique_name("bare");
    let reg = EpmdClient::with_address("127.0.0.1", port)
        .register(&alive, listener.local_addr().unwrap().port())
        .await
        .unwrap();
    let name = NodeName::parse(&format!("{alive}@localhost")).unwrap();
    let mut config = LocalNodeConfig::new(
        name.clone(),
        reg.creation(),
        Cookies::new(Cookie::new("c").unwrap()),
    );
    config.epmd = EpmdClient::new().port(port);
    assert!(!config.flags.contains(erldist::flags::DistFlags::SPAWN));
    let (up_tx, mut up_rx) = mpsc::channel(4);
    tokio::spawn(serve(listener, config, up_tx, std::future::pending()));
    tokio::spawn(async move {
        while let Some(mut c) = up_rx.recv().await {
            tokio::spawn(async move { while c.recv().await.is_some() {} });
        }
    });
    let node = Node::builder(&format!("{}@localhost", unique_name("caller")))
        .cookie("c")
        .epmd("localhost", port)
        .start()
        .await
        .unwrap();
    let started = Instant::now();
    let r = node
        .rpc(
            name.as_str(),
            "erlang",
            "node",
            vec![],
            Duration::from_secs(10),
        )
        .await;
    assert!(matches!(r, Err(RpcError::NotSup)), "{r:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    node.shutdown().await;
    drop(reg);
}
