//! Calls and spawns addressed to the node itself: served by the same
//! registry of Rust functions, with `erpc`'s result forms.

use std::time::Duration;

use erldist::node::{Exception, RpcError, SpawnOpts};
use erldist::{term, Node, Term};

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn rpc_and_spawn_to_this_node() {
    let node = Node::local("self@localhost");
    node.register_fn("calc", "add", |args: Vec<Term>| async move {
        match args.as_slice() {
            [Term::Int(a), Term::Int(b)] => Ok(Term::from(a + b)),
            _ => Err(Exception::error(term!(badarg))),
        }
    });
    node.register_fn("calc", "boom", |_| async move {
        Err(Exception::exit(term!(boom)))
    });
    node.register_fn("calc", "toss", |_| async move {
        Err(Exception::throw(term!(ball)))
    });
    node.register_fn("calc", "slow", |_| async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(term!(late))
    });
    node.register_fn("calc", "crash", |_| async move {
        if true {
            panic!("oh no");
        }
        Ok(term!(never))
    });
    let me = node.name();
    // A panicking function raises an error, and the node carries on.
    assert_eq!(
        node.rpc(me, "calc", "crash", vec![], T).await,
        Err(RpcError::Error {
            reason: term!({panic, <<"oh no">>}),
            stack: term!([{calc, crash, 0, []}])
        })
    );
    assert_eq!(
        node.rpc(me, "calc", "add", vec![term!(1), term!(2)], T)
            .await,
        Ok(term!(3))
    );
    assert_eq!(
        node.rpc(me, "calc", "add", vec![term!(x)], T).await,
        Err(RpcError::Error {
            reason: term!(badarg),
            stack: term!([{calc, add, 1, []}])
        })
    );
    assert_eq!(
        node.rpc(me, "calc", "boom", vec![], T).await,
        Err(RpcError::Exit(term!(boom)))
    );
    assert_eq!(
        node.rpc(me, "calc", "toss", vec![], T).await,
        Err(RpcError::Throw(term!(ball)))
    );
    let undef = node.rpc(me, "calc", "nope", vec![term!(7)], T).await;
    assert_eq!(
        undef,
        Err(RpcError::Error {
            reason: term!(undef),
            stack: term!([{calc, nope, [7], []}])
        })
    );
    assert_eq!(
        undef.unwrap_err().to_badrpc(),
        term!({badrpc, {(Term::atom("EXIT")), {undef, [{calc, nope, [7], []}]}}})
    );
    assert_eq!(
        node.rpc(me, "calc", "slow", vec![], Duration::from_millis(100))
            .await,
        Err(RpcError::Timeout)
    );
    // Spawn with link and monitor.
    let mut p = node.process();
    p.trap_exit(true);
    let s = p
        .spawn_remote(
            me,
            "calc",
            "boom",
            vec![],
            SpawnOpts::new().link().monitor(),
        )
        .await
        .unwrap();
    let r = s.monitor.unwrap();
    let mut got = vec![
        tokio::time::timeout(T, p.recv()).await.unwrap().unwrap(),
        tokio::time::timeout(T, p.recv()).await.unwrap().unwrap(),
    ];
    got.sort_by(|a, b| a.exact_cmp(b));
    let mut want = vec![
        term!({(Term::atom("EXIT")), (s.pid), boom}),
        term!({(Term::atom("DOWN")), (Term::Ref(Box::new(r))), process, (s.pid), boom}),
    ];
    want.sort_by(|a, b| a.exact_cmp(b));
    assert_eq!(got, want);
    // A bad option.
    let mut opts = SpawnOpts::new();
    opts.extra.push(term!(bogus));
    assert!(p
        .spawn_remote(me, "calc", "add", vec![], opts)
        .await
        .is_err());
}
