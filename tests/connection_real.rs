//! erldist against real `erl` nodes and a private real `epmd`: both
//! directions, short and long names, visible and hidden, wrong cookies,
//! ticks and a frozen peer, dynamic names, simultaneous connect.

mod connection_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use connection_support::{eval, reg_send, run_net_kernel, RustNode};
use erldist::connection::driver::{connect, ConnectError, DownReason};
use erldist::handshake::{Cookie, HandshakeError, LocalName, NodeName};
use erldist::testing::{require_erl, ErlNode, RealEpmd};
use erldist::{term, Term};

const LONG_TICK: Duration = Duration::from_secs(60);

fn erl(prefix: &str, epmd: &RealEpmd, cookie: &str, args: &[&str]) -> Arc<Mutex<ErlNode>> {
    let n = tokio::task::block_in_place(|| ErlNode::start_with(prefix, epmd.port(), cookie, args))
        .unwrap();
    Arc::new(Mutex::new(n))
}

fn erl_long(prefix: &str, epmd: &RealEpmd, cookie: &str) -> Arc<Mutex<ErlNode>> {
    let n = tokio::task::block_in_place(|| ErlNode::start_long(prefix, epmd.port(), cookie, &[]))
        .unwrap();
    Arc::new(Mutex::new(n))
}

fn name_of(n: &Arc<Mutex<ErlNode>>) -> String {
    n.lock().unwrap().name().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_node_pings_erldist_visible_and_hidden() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = erl("peer", &epmd, "c1", &[]);
    for hidden in [false, true] {
        let mut rust =
            RustNode::start("rust", "localhost", epmd.port(), "c1", hidden, LONG_TICK).await;
        let ping = eval(&node, &format!("net_adm:ping('{}').", rust.name()));
        let (pong, (handle, _seen, _down)) = tokio::join!(ping, async {
            run_net_kernel(rust.incoming.recv().await.unwrap())
        });
        assert_eq!(pong, "pong", "hidden={hidden}");
        assert_eq!(handle.outcome().visible, !hidden);
        let visible = eval(&node, &format!("lists:member('{}', nodes()).", rust.name())).await;
        let in_hidden = eval(
            &node,
            &format!("lists:member('{}', nodes(hidden)).", rust.name()),
        )
        .await;
        assert_eq!(
            (visible.as_str(), in_hidden.as_str()),
            if hidden {
                ("false", "true")
            } else {
                ("true", "false")
            }
        );
        handle.close();
        assert_eq!(handle.closed().await, DownReason::LocalShutdown);
        let gone = eval(&node, &format!("(fun W(0) -> nodes(connected); W(N) -> case lists:member('{}', nodes(connected)) of true -> timer:sleep(50), W(N-1); false -> nodes(connected) end end)(100).", rust.name())).await;
        assert_eq!(gone, "[]");
        assert_eq!(rust.config.table.running_connections(), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erldist_connects_to_real_node_and_messages_arrive() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = erl("peer", &epmd, "c2", &[]);
    let rust = RustNode::start("rust", "localhost", epmd.port(), "c2", false, LONG_TICK).await;
    eval(
        &node,
        "register(sink, spawn(fun() -> receive M when element(1, M) =:= hello -> receive {get, P} -> P ! M end end end)).",
    )
    .await;
    let peer = NodeName::parse(&name_of(&node)).unwrap();
    let conn = connect(&rust.config, &peer).await.unwrap();
    assert!(conn.outcome().visible);
    assert_eq!(conn.outcome().peer_name, peer);
    let (handle, mut seen, _down) = run_net_kernel(conn);
    let msg = term!({hello, [1, 2, 3], <<"from rust">>});
    handle
        .send_frame(reg_send(&rust.pid(1), "sink", &msg))
        .await
        .unwrap();
    let got = eval(
        &node,
        "sink ! {get, self()}, receive M -> M after 5000 -> timeout end.",
    )
    .await;
    assert_eq!(got, msg.to_string());
    let visible = eval(&node, &format!("lists:member('{}', nodes()).", rust.name())).await;
    assert_eq!(visible, "true");
    // Our own is_auth call to its net_kernel is answered.
    let me = rust.pid(2);
    let tag = Term::Ref(Box::new(
        erldist::Reference::new(
            erldist::Atom::new(&rust.name()),
            rust.config.creation,
            &[1, 2, 3],
        )
        .unwrap(),
    ));
    let call = Term::tuple(vec![
        Term::atom("$gen_call"),
        Term::tuple(vec![Term::Pid(me), tag.clone()]),
        Term::tuple(vec![Term::atom("is_auth"), Term::atom(&rust.name())]),
    ]);
    handle
        .send_frame(reg_send(&me, "net_kernel", &call))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let (_, msg) = seen.recv().await.unwrap();
            if let Some(m) = msg {
                if m.as_tuple().is_some_and(|t| t.first() == Some(&tag)) {
                    return m;
                }
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(reply, Term::tuple(vec![tag, Term::atom("yes")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_names_both_ways_and_short_long_refuse_each_other() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = erl_long("peer", &epmd, "c3");
    let mut rust = RustNode::start("rust", "127.0.0.1", epmd.port(), "c3", false, LONG_TICK).await;
    // Real node → erldist.
    let ping = eval(&node, &format!("net_adm:ping('{}').", rust.name()));
    let (pong, conn) = tokio::join!(ping, async {
        let c = rust.incoming.recv().await.unwrap();
        run_net_kernel(c)
    });
    assert_eq!(pong, "pong");
    let (handle, _seen, _down) = conn;
    handle.close();
    handle.closed().await;
    let gone = eval(&node, "(fun W(0) -> nodes(); W(N) -> case nodes() of [] -> []; _ -> timer:sleep(50), W(N-1) end end)(100).").await;
    assert_eq!(gone, "[]");
    // erldist → real node.
    let peer = NodeName::parse(&name_of(&node)).unwrap();
    let conn = connect(&rust.config, &peer).await.unwrap();
    assert_eq!(conn.peer().host(), "127.0.0.1");
    drop(conn);
    // A short-name erldist node refuses the long-name peer, with a clear error.
    let short = RustNode::start("short", "localhost", epmd.port(), "c3", false, LONG_TICK).await;
    let err = connect(&short.config, &peer).await.unwrap_err();
    assert!(
        matches!(
            err,
            ConnectError::Handshake {
                source: HandshakeError::NameMode(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("fully qualified"), "{err}");
    // And a long-name OTP node refuses to dial the short-name one.
    let pang = eval(&node, &format!("net_adm:ping('{}').", short.name())).await;
    assert_eq!(pang, "pang");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cookie_both_ways_is_a_clear_error_and_the_peer_is_unharmed() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = erl("peer", &epmd, "right", &[]);
    let mut rust =
        RustNode::start("rust", "localhost", epmd.port(), "wrong", false, LONG_TICK).await;
    let peer = NodeName::parse(&name_of(&node)).unwrap();
    // We connect: the peer rejects our digest.
    let err = connect(&rust.config, &peer).await.unwrap_err();
    assert!(matches!(err, ConnectError::DigestRejected { .. }), "{err}");
    assert!(err.is_cookie_mismatch());
    assert_eq!(rust.config.table.handshakes_in_progress(), 0);
    assert!(rust.config.table.peers().is_empty());
    // It pings us: its digest is wrong for us.
    let pang = eval(&node, &format!("net_adm:ping('{}').", rust.name())).await;
    assert_eq!(pang, "pang");
    assert!(rust.incoming.try_recv().is_err());
    assert_eq!(eval(&node, "{nodes(connected), 1 + 1}.").await, "{[],2}");
    // A per-peer cookie fixes it.
    let mut config = rust.config.clone();
    config
        .cookies
        .set_for(peer.clone(), Cookie::new("right").unwrap());
    let conn = connect(&config, &peer).await.unwrap();
    assert_eq!(conn.peer(), &peer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_keep_an_idle_connection_up_and_a_frozen_peer_is_declared_down() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = erl("peer", &epmd, "c5", &["-kernel", "net_ticktime", "4"]);
    let rust = RustNode::start(
        "rust",
        "localhost",
        epmd.port(),
        "c5",
        false,
        Duration::from_secs(4),
    )
    .await;
    let peer = NodeName::parse(&name_of(&node)).unwrap();
    let conn = connect(&rust.config, &peer).await.unwrap();
    let (handle, _seen, down) = run_net_kernel(conn);
    // Idle for twice the tick time: still up on both sides.
    tokio::time::sleep(Duration::from_secs(9)).await;
    assert!(!handle.is_closed());
    let up = eval(&node, &format!("lists:member('{}', nodes()).", rust.name())).await;
    assert_eq!(up, "true");
    // Freeze the peer: no more ticks; down within the tick limit (4 s,
    // plus one interval of detection slack).
    let frozen = node.lock().unwrap().freeze().expect("freeze the node");
    let started = std::time::Instant::now();
    let reason = tokio::time::timeout(Duration::from_secs(8), down).await;
    drop(frozen);
    let reason = reason.expect("not declared down in time").unwrap();
    assert!(matches!(reason, DownReason::TickTimeout { .. }), "{reason}");
    assert!(
        started.elapsed() <= Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(rust.config.table.running_connections(), 0);
    node.lock().unwrap().kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamic_name_is_given_by_the_real_node() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = erl("peer", &epmd, "c6", &[]);
    let rust = RustNode::start("rust", "localhost", epmd.port(), "c6", false, LONG_TICK).await;
    let mut config = rust.config.clone();
    config.name = LocalName::Dynamic {
        host: "localhost".into(),
    };
    config.creation = 0;
    let peer = NodeName::parse(&name_of(&node)).unwrap();
    let conn = connect(&config, &peer).await.unwrap();
    let me = conn.outcome().local_name.clone();
    assert_eq!(me.host(), "localhost");
    assert_ne!(conn.outcome().local_creation, 0);
    assert!(!conn.outcome().visible);
    // The real node sends its challenge ack before it marks the connection
    // up (dist_util:connection/1), so it may list us a moment after our
    // `connect` returns: wait for that, up to 5 s.
    let hidden = eval(
        &node,
        &format!(
            "(fun W(0) -> false; W(N) -> case lists:member('{me}', nodes(hidden)) of \
             true -> true; false -> timer:sleep(50), W(N-1) end end)(100)."
        ),
    )
    .await;
    assert_eq!(hidden, "true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_connect_with_a_real_node_ends_with_one_connection() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = erl("peer", &epmd, "c7", &[]);
    // Names on both sides of the real node's, so both rules get exercised
    // across runs: "peer_..." vs "a..." / "z...".
    for prefix in ["aaa", "zzz"] {
        let mut rust =
            RustNode::start(prefix, "localhost", epmd.port(), "c7", false, LONG_TICK).await;
        let peer = NodeName::parse(&name_of(&node)).unwrap();
        let theirs = eval(
            &node,
            &format!("net_kernel:connect_node('{}').", rust.name()),
        );
        let ours = connect(&rust.config, &peer);
        let (theirs, ours) = tokio::join!(theirs, ours);
        // Whichever connection won, the winner is served here.
        let conn = match ours {
            Ok(c) => c,
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        ConnectError::Superseded { .. }
                            | ConnectError::AlreadyConnected { .. }
                            | ConnectError::Handshake {
                                source: HandshakeError::SimultaneousLost { .. },
                                ..
                            }
                    ),
                    "{e}"
                );
                tokio::time::timeout(Duration::from_secs(5), rust.incoming.recv())
                    .await
                    .unwrap()
                    .unwrap()
            }
        };
        let (handle, _seen, _down) = run_net_kernel(conn);
        let _ = theirs;
        let pong = eval(&node, &format!("net_adm:ping('{}').", rust.name())).await;
        assert_eq!(pong, "pong");
        assert_eq!(rust.config.table.running_connections(), 1);
        assert_eq!(eval(&node, "length(nodes()).").await, "1");
        handle.close();
        handle.closed().await;
        eval(&node, "(fun W(0) -> ok; W(N) -> case nodes() of [] -> ok; _ -> timer:sleep(50), W(N-1) end end)(100).").await;
    }
}
