//! `:global` names from Rust against real `erl` nodes: resolving and
//! sending to names registered on the cluster, registering Rust processes
//! (through a BEAM node's `global`), and what a visible or hidden Rust node does to `global:sync/0` on the
//! BEAM side (see the `erldist::node::global` docs).

mod erl_eval;
use erl_eval::{erl_term, eval};

use std::time::Duration;

use erldist::node::global::GlobalError;
use erldist::testing::{require_erl, unique_name, ErlNode, RealEpmd};
use erldist::{term, Node, Term};

const COOKIE: &str = "global_cookie";
const T: Duration = Duration::from_secs(10);

async fn rust_node(epmd: &RealEpmd, hidden: bool) -> Node {
    Node::builder(&format!("{}@localhost", unique_name("rust")))
        .cookie(COOKIE)
        .epmd("localhost", epmd.port())
        .embedded_epmd(false)
        .hidden(hidden)
        .start()
        .await
        .expect("start the Rust node")
}

fn erl(epmd: &RealEpmd) -> ErlNode {
    tokio::task::block_in_place(|| ErlNode::start("erl", epmd.port(), COOKIE)).expect("start erl")
}

/// Registers globally, as `name`, an Erlang process answering
/// `{From, Msg}` with `{echo, Msg}`.
fn register_echo(node: &mut ErlNode, name: &str) -> Term {
    let expr = format!(
        "begin P = spawn(fun L() -> receive {{From, M}} -> From ! {{echo, M}}, L() end end), \
         yes = global:register_name({name}, P), P end"
    );
    erl_term(node, &expr)
}

/// `global:sync()` on the node, given up after 5 s: `ok` or `timeout`.
fn sync_within_5s(node: &mut ErlNode) -> String {
    eval(
        node,
        "begin P = self(), spawn(fun() -> P ! {synced, global:sync()} end), \
         receive {synced, R} -> R after 5000 -> timeout end end.",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolves_sends_and_registers_global_names() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let mut e1 = erl(&epmd);
    let mut e2 = erl(&epmd);
    let e1_name = e1.name().to_owned();
    assert_eq!(
        eval(&mut e2, &format!("net_adm:ping('{e1_name}').")),
        "pong"
    );
    assert_eq!(eval(&mut e2, "global:sync()."), "ok");
    let echo = register_echo(&mut e1, "echo");
    // Registered on e2, which the Rust node never connects to: e1's
    // replica resolves it.
    let far = register_echo(&mut e2, "{far, <<\"away\">>}");
    let node = rust_node(&epmd, false).await;
    assert!(node.ping(&e1_name).await);

    assert_eq!(
        node.global_whereis_name(Term::atom("echo")).await.unwrap(),
        echo.as_pid().copied()
    );
    let far_name = term!({far, <<"away">>});
    assert_eq!(
        node.global_whereis_name(far_name.clone()).await.unwrap(),
        far.as_pid().copied()
    );
    assert_eq!(
        node.global_whereis_name(Term::atom("nobody"))
            .await
            .unwrap(),
        None
    );

    let mut me = node.process();
    let to = node
        .global_send(far_name.clone(), term!({(me.pid()), hi}))
        .await
        .unwrap();
    assert_eq!(Some(&to), far.as_pid());
    assert_eq!(me.recv_timeout(T).await.unwrap(), Some(term!({echo, hi})));
    assert_eq!(
        node.global_send(Term::atom("nobody"), term!(x)).await,
        Err(GlobalError::NotRegistered(Term::atom("nobody")))
    );

    let mut names = node.global_registered_names().await.unwrap();
    names.sort();
    let mut want = vec![Term::atom("echo"), far_name.clone()];
    want.sort();
    assert_eq!(names, want);

    // A Rust process registered globally through e1: e2, which only knows
    // e1, resolves it and sends to it; it can have one name only, and the
    // name is gone when it exits.
    let mut rusty = node.process();
    node.global_register_name(Term::atom("rusty"), rusty.pid())
        .await
        .unwrap();
    assert_eq!(
        node.global_whereis_name(Term::atom("rusty")).await.unwrap(),
        Some(rusty.pid())
    );
    assert_eq!(
        erl_term(&mut e2, "global:whereis_name(rusty)"),
        Term::Pid(rusty.pid())
    );
    eval(&mut e2, "global:send(rusty, {hello, from_e2}).");
    assert_eq!(
        rusty.recv_timeout(T).await.unwrap(),
        Some(term!({hello, from_e2}))
    );
    assert_eq!(
        node.global_register_name(Term::atom("rusty"), me.pid())
            .await,
        Err(GlobalError::Refused(Term::atom("rusty"))),
        "the name is taken"
    );
    assert_eq!(
        node.global_register_name(Term::atom("second"), rusty.pid())
            .await,
        Err(GlobalError::Refused(Term::atom("second"))),
        "one name per process"
    );
    drop(rusty);
    let gone = |e: &mut ErlNode| {
        let deadline = std::time::Instant::now() + T;
        while eval(e, "global:whereis_name(rusty).") != "undefined" {
            assert!(
                std::time::Instant::now() < deadline,
                "rusty stays registered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    tokio::task::block_in_place(|| {
        gone(&mut e1);
        gone(&mut e2);
    });

    // Unregistering, whoever has the name.
    node.global_register_name(Term::atom("temp"), me.pid())
        .await
        .unwrap();
    assert_eq!(
        eval(&mut e2, "global:whereis_name(temp) =/= undefined."),
        "true"
    );
    node.global_unregister_name(Term::atom("temp"))
        .await
        .unwrap();
    assert_eq!(eval(&mut e1, "global:whereis_name(temp)."), "undefined");
    assert_eq!(eval(&mut e2, "global:whereis_name(temp)."), "undefined");
    assert_eq!(eval(&mut e1, "is_pid(global:whereis_name(echo))."), "true");
    node.shutdown().await;
}

/// With only another Rust node (no `global_name_server` anywhere), the
/// answer is NoGlobalNode, at once rather than after a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_beam_node_there_is_no_global() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let a = rust_node(&epmd, false).await;
    assert_eq!(
        a.global_whereis_name(Term::atom("x")).await,
        Err(GlobalError::NoGlobalNode)
    );
    let b = rust_node(&epmd, false).await;
    a.connect(b.name().as_str()).await.unwrap();
    let started = std::time::Instant::now();
    assert_eq!(
        a.global_whereis_name(Term::atom("x")).await,
        Err(GlobalError::NoGlobalNode)
    );
    assert!(started.elapsed() < Duration::from_secs(5), "no timeout");
    assert_eq!(
        a.global_registered_names().await,
        Err(GlobalError::NoGlobalNode)
    );
    let p = a.process();
    assert_eq!(
        a.global_register_name(Term::atom("x"), p.pid()).await,
        Err(GlobalError::NoGlobalNode)
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// As documented: while a visible Rust node is connected, `global:sync()`
/// on the BEAM node blocks (global waits for a connect protocol erldist
/// does not run) though registration there still works; a hidden Rust
/// node leaves `global` alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_sync_blocks_with_a_visible_rust_node_not_a_hidden_one() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let mut e = erl(&epmd);

    let hidden = rust_node(&epmd, true).await;
    assert!(hidden.ping(e.name()).await);
    assert_eq!(sync_within_5s(&mut e), "ok");
    register_echo(&mut e, "while_hidden");
    assert!(hidden
        .global_whereis_name(Term::atom("while_hidden"))
        .await
        .unwrap()
        .is_some());

    let visible = rust_node(&epmd, false).await;
    assert!(visible.ping(e.name()).await);
    assert_eq!(sync_within_5s(&mut e), "timeout");
    let echo = register_echo(&mut e, "while_visible");
    assert_eq!(
        visible
            .global_whereis_name(Term::atom("while_visible"))
            .await
            .unwrap()
            .as_ref(),
        echo.as_pid()
    );
    visible.disconnect(e.name()).await;
    assert_eq!(sync_within_5s(&mut e), "ok", "unblocked once it is gone");
    hidden.shutdown().await;
    visible.shutdown().await;
}
