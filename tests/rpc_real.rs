//! RPC both ways against real `erl` nodes (the lesson's S7): `erpc` and
//! `rpc` semantics, exceptions of each class with their reasons, timeouts,
//! nodes that are not there, and BEAM nodes calling Rust functions.

#[path = "spawn_common.rs"]
mod common;

use std::time::Duration;

use common::*;
use erldist::node::{Exception, GroupLeaderConfig, RpcError};
use erldist::testing::{require_erl, RealEpmd};
use erldist::{term, Atom, Term};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_calls_beam() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl(&epmd);
    let peer = e.name().to_owned();
    let rpc = |m: &'static str, f: &'static str, args: Vec<Term>| {
        let node = node.clone();
        let peer = peer.clone();
        async move { node.rpc(peer.as_str(), m, f, args, T).await }
    };
    assert_eq!(
        rpc("erlang", "node", vec![]).await,
        Ok(Term::Atom(Atom::from(e.name())))
    );
    assert_eq!(
        rpc("lists", "sum", vec![term!([1, 2, 3])]).await,
        Ok(term!(6))
    );
    // Exceptions come back with their class and reason.
    match rpc("erlang", "error", vec![term!(oops)]).await {
        Err(RpcError::Error { reason, stack }) => {
            assert_eq!(reason, term!(oops));
            assert!(stack.list_elems().is_some(), "a stack: {stack}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        rpc("erlang", "exit", vec![term!(bye)]).await,
        Err(RpcError::Exit(term!(bye)))
    );
    assert_eq!(
        rpc("erlang", "throw", vec![term!(ball)]).await,
        Err(RpcError::Throw(term!(ball)))
    );
    let undef = rpc("nomod", "nofun", vec![term!(1)]).await.unwrap_err();
    assert_eq!(
        undef,
        RpcError::Error {
            reason: term!(undef),
            stack: term!([{nomod, nofun, [1], []}])
        }
    );
    // What rpc:call would return, as the BEAM itself reports it.
    let want = erl_term(
        &mut e,
        "{rpc:call(node(), erlang, exit, [bye]), rpc:call(node(), nomod, nofun, [1]), rpc:call(node(), erlang, throw, [ball])}",
    );
    let exit = RpcError::Exit(term!(bye)).to_badrpc();
    let throw = RpcError::Throw(term!(ball)).to_badrpc();
    assert_eq!(Term::Tuple(vec![exit, undef.to_badrpc(), throw]), want);
    // A timeout.
    let slow = node
        .rpc(
            e.name(),
            "timer",
            "sleep",
            vec![term!(3000)],
            Duration::from_millis(200),
        )
        .await;
    assert_eq!(slow, Err(RpcError::Timeout));
    // The remote process was killed by a signal.
    let killed = rpc("erlang", "exit", vec![atom("kill")]).await;
    assert_eq!(killed, Err(RpcError::Exit(atom("kill"))));
    // A node that is not there.
    let none = node
        .rpc("nobody@localhost", "erlang", "node", vec![], T)
        .await;
    assert_eq!(none, Err(RpcError::NoConnection));
    assert_eq!(
        RpcError::NoConnection.to_badrpc(),
        term!({badrpc, nodedown})
    );
    // Output of the call goes to the group leader given.
    let (tx, mut out) = tokio::sync::mpsc::unbounded_channel();
    let gl = node.start_group_leader(GroupLeaderConfig::channel(tx));
    let r = node
        .rpc_with_group_leader(
            e.name(),
            "io",
            "format",
            vec![term!("hi ~p~n"), term!([[1, 2]])],
            T,
            gl,
        )
        .await;
    assert_eq!(r, Ok(atom("ok")));
    let line = tokio::time::timeout(T, out.recv()).await.unwrap().unwrap();
    assert_eq!(line.text, "hi [1,2]\n");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beam_calls_rust() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl(&epmd);
    let me = node.name();
    node.register_fn("Elixir.Rusty", "add", |args: Vec<Term>| async move {
        match args.as_slice() {
            [Term::Int(a), Term::Int(b)] => Ok(Term::from(a + b)),
            _ => Err(Exception::error(atom("badarg"))),
        }
    });
    node.register_fn("Elixir.Rusty", "fail", |_| async move {
        Err(Exception::error(atom("badarg")))
    });
    node.register_fn("Elixir.Rusty", "quit", |_| async move {
        Err(Exception::exit(atom("bye")))
    });
    node.register_fn("Elixir.Rusty", "toss", |_| async move {
        Err(Exception::throw(atom("ball")))
    });
    node.register_fn("Elixir.Rusty", "slow", |_| async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(atom("late"))
    });
    let (tx, mut casts) = tokio::sync::mpsc::unbounded_channel();
    node.register_fn("Elixir.Rusty", "note", move |args: Vec<Term>| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(args);
            Ok(atom("ok"))
        }
    });
    node.register_process_fn("Elixir.Rusty", "greet", |mut p, args| async move {
        let name = args
            .first()
            .and_then(|a| a.as_binary())
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        p.put_chars(&format!("Hello {name} from Rust\n"))
            .await
            .map_err(|e| Exception::error(Term::from(e.to_string())))?;
        Ok(atom("ok"))
    });
    let call = |e: &mut erldist::testing::ErlNode, expr: &str| {
        erl_term(e, &expr.replace("N", &format!("'{me}'")))
    };
    assert_eq!(
        call(&mut e, "erpc:call(N, 'Elixir.Rusty', add, [1, 2])"),
        term!(3)
    );
    assert_eq!(
        call(&mut e, "rpc:call(N, 'Elixir.Rusty', add, [40, 2])"),
        term!(42)
    );
    assert_eq!(
        call(&mut e, "rpc:call(N, 'Elixir.Rusty', fail, [])"),
        term!({badrpc, {(atom("EXIT")), {badarg, [{(atom("Elixir.Rusty")), fail, 0, []}]}}})
    );
    assert_eq!(
        call(
            &mut e,
            "try erpc:call(N, 'Elixir.Rusty', fail, []) catch C:R -> {C, R} end"
        ),
        term!({error, {exception, badarg, [{(atom("Elixir.Rusty")), fail, 0, []}]}})
    );
    assert_eq!(
        call(
            &mut e,
            "{rpc:call(N, 'Elixir.Rusty', quit, []), catch erpc:call(N, 'Elixir.Rusty', quit, [])}"
        ),
        term!({{badrpc, {(atom("EXIT")), bye}}, {(atom("EXIT")), {exception, bye}}})
    );
    assert_eq!(
        call(
            &mut e,
            "{rpc:call(N, 'Elixir.Rusty', toss, []), catch erpc:call(N, 'Elixir.Rusty', toss, [])}"
        ),
        term!({ball, ball})
    );
    assert_eq!(
        call(&mut e, "rpc:call(N, nomod, nofun, [1])"),
        term!({badrpc, {(atom("EXIT")), {undef, [{nomod, nofun, [1], []}]}}})
    );
    assert_eq!(
        call(
            &mut e,
            "try erpc:call(N, 'Elixir.Rusty', slow, [], 200) catch C:R -> {C, R} end"
        ),
        term!({error, {erpc, timeout}})
    );
    assert_eq!(
        call(&mut e, "rpc:call(N, 'Elixir.Rusty', slow, [], 200)"),
        term!({badrpc, timeout})
    );
    assert_eq!(
        call(&mut e, "rpc:cast(N, 'Elixir.Rusty', note, [x, 1])"),
        term!(true)
    );
    let args = tokio::time::timeout(T, casts.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(args, vec![term!(x), term!(1)]);
    node.shutdown().await;
}
