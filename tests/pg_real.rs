//! `:pg` process groups against real `erl` nodes (OTP 25's `pg.erl`): a
//! Rust scope and an Erlang scope of the same name replicate each other's
//! members, through joins, leaves, exits and node down, whichever side
//! starts first, from a visible and from a hidden Rust node.

mod erl_eval;
use erl_eval::{erl_term, eval};

use std::time::Duration;

use erldist::node::pg::{Pg, PgError};
use erldist::testing::{erl_literal, require_erl, unique_name, ErlNode, RealEpmd};
use erldist::{Atom, Node, Pid, Term};

const COOKIE: &str = "pg_cookie";
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

/// `pg:get_members(Scope, Group)` on the Erlang node, in [`sorted`] order.
fn erl_members(node: &mut ErlNode, scope: &str, group: &str) -> Vec<Pid> {
    let t = erl_term(node, &format!("pg:get_members({scope}, {group})"));
    sorted(Vec::<Pid>::try_from(t).expect("a list of pids"))
}

/// `v` in one fixed order, to compare member lists as multisets.
fn sorted(mut v: Vec<Pid>) -> Vec<Pid> {
    v.sort_by_key(|p| (p.node.as_str(), p.id, p.serial, p.creation));
    v
}

/// Polls the Erlang node until `pg:get_members` is `want` (as a set).
fn erl_wait_members(node: &mut ErlNode, scope: &str, group: &str, want: &[Pid]) -> Vec<Pid> {
    let want = sorted(want.to_vec());
    let deadline = std::time::Instant::now() + T;
    loop {
        let got = erl_members(node, scope, group);
        if got == want || std::time::Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the Rust scope's members of `group` are `want` (as a set).
async fn rust_wait_members(pg: &Pg, group: &Term, want: &[Pid]) -> Vec<Pid> {
    let want = sorted(want.to_vec());
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let got = sorted(pg.get_members(group));
        if got == want || tokio::time::Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Spawns an Erlang process registered as `name` that joins `group` in
/// `scope` and waits for `stop`; returns its pid.
fn erl_member(node: &mut ErlNode, name: &str, scope: &str, group: &str) -> Pid {
    let t = erl_term(
        node,
        &format!(
            "begin P = spawn(fun() -> ok = pg:join({scope}, {group}, self()), \
             receive stop -> ok end end), register({name}, P), \
             timer:sleep(100), P end"
        ),
    );
    *t.as_pid().expect("a pid")
}

/// Rust starts its scope and joins before it is connected; the Erlang
/// scope starts after the connection (and discovers the Rust one). Joins,
/// leaves and exits on either side show on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_replicate_both_ways_through_join_leave_and_exit() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd, false).await;
    let mut e = erl(&epmd);
    let scope = "pg_test_scope";
    let workers = Term::atom("workers");
    let pg = Pg::start(&node, scope).unwrap();
    assert_eq!(
        node.whereis(scope),
        Some(pg.pid()),
        "the scope is registered"
    );

    let a = node.process();
    let b = node.process();
    pg.join(workers.clone(), a.pid()).await.unwrap();
    pg.join(workers.clone(), b.pid()).await.unwrap();
    assert_eq!(
        sorted(pg.get_local_members(&workers)),
        sorted(vec![a.pid(), b.pid()])
    );
    assert_eq!(pg.which_local_groups(), vec![workers.clone()]);

    assert!(node.ping(e.name()).await);
    assert!(eval(&mut e, &format!("element(1, pg:start({scope})).")) == "ok");
    assert_eq!(
        erl_wait_members(&mut e, scope, "workers", &[a.pid(), b.pid()]),
        sorted(vec![a.pid(), b.pid()]),
        "the Erlang scope sees the Rust members"
    );

    // An Erlang member shows on the Rust side, and not as a local one.
    let m1 = erl_member(&mut e, "m1", scope, "workers");
    assert_eq!(
        rust_wait_members(&pg, &workers, &[a.pid(), b.pid(), m1]).await,
        sorted(vec![a.pid(), b.pid(), m1])
    );
    assert_eq!(
        sorted(pg.get_local_members(&workers)),
        sorted(vec![a.pid(), b.pid()])
    );
    assert_eq!(
        erl_term(&mut e, &format!("pg:get_local_members({scope}, workers)")),
        Term::List(vec![Term::Pid(m1)])
    );

    // Rust leaves: once as a member, then not joined any more.
    assert!(pg.leave(workers.clone(), b.pid()).await.unwrap());
    assert!(!pg.leave(workers.clone(), b.pid()).await.unwrap());
    assert_eq!(
        erl_wait_members(&mut e, scope, "workers", &[a.pid(), m1]),
        sorted(vec![a.pid(), m1])
    );

    // A Rust member that exits leaves all its groups.
    pg.join(Term::atom("other"), a.pid()).await.unwrap();
    assert_eq!(
        erl_wait_members(&mut e, scope, "other", &[a.pid()]),
        vec![a.pid()]
    );
    drop(a);
    assert_eq!(erl_wait_members(&mut e, scope, "workers", &[m1]), vec![m1]);
    assert_eq!(erl_wait_members(&mut e, scope, "other", &[]), vec![]);
    assert_eq!(
        erl_term(&mut e, &format!("pg:which_groups({scope})")),
        Term::List(vec![workers.clone()])
    );

    // The Erlang member leaves, joins again, then exits.
    eval(&mut e, &format!("pg:leave({scope}, workers, whereis(m1))."));
    assert_eq!(rust_wait_members(&pg, &workers, &[]).await, vec![]);
    assert!(pg.which_groups().is_empty(), "an emptied group is gone");
    eval(&mut e, &format!("pg:join({scope}, workers, whereis(m1))."));
    assert_eq!(rust_wait_members(&pg, &workers, &[m1]).await, vec![m1]);
    eval(&mut e, "m1 ! stop.");
    assert_eq!(rust_wait_members(&pg, &workers, &[]).await, vec![]);

    // A disconnection drops the other side's members on both sides; the
    // scopes sync again when the nodes reconnect.
    let c = node.process();
    pg.join(workers.clone(), c.pid()).await.unwrap();
    let m2 = erl_member(&mut e, "m2", scope, "workers");
    let both = sorted(vec![c.pid(), m2]);
    assert_eq!(rust_wait_members(&pg, &workers, &both).await, both);
    assert_eq!(erl_wait_members(&mut e, scope, "workers", &both), both);
    node.disconnect(e.name()).await;
    assert_eq!(
        rust_wait_members(&pg, &workers, &[c.pid()]).await,
        vec![c.pid()]
    );
    assert_eq!(erl_wait_members(&mut e, scope, "workers", &[m2]), vec![m2]);
    assert!(node.ping(e.name()).await);
    assert_eq!(rust_wait_members(&pg, &workers, &both).await, both);
    assert_eq!(erl_wait_members(&mut e, scope, "workers", &both), both);
    eval(&mut e, "m2 ! stop.");
    drop(c);
    assert_eq!(rust_wait_members(&pg, &workers, &[]).await, vec![]);

    // Joining a process of another node is refused, as pg's nolocal.
    let err = pg.join(workers.clone(), m1).await.unwrap_err();
    assert_eq!(err, PgError::NotLocal(m1));
    node.shutdown().await;
}

/// A hidden Rust node (which BEAM scopes never discover by themselves)
/// starts its scope after connecting to a node whose scope already has
/// members; killing that node drops its members on the Rust side; a node
/// connecting later is discovered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_node_discovers_and_node_down_drops_members() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd, true).await;
    let mut e = erl(&epmd);
    let scope = "pg_hidden_scope";
    assert_eq!(
        eval(&mut e, &format!("element(1, pg:start({scope})).")),
        "ok"
    );
    let m1 = erl_member(&mut e, "m1", scope, "g");
    let m2 = erl_member(&mut e, "m2", scope, "{g, 2}");
    assert!(node.ping(e.name()).await);
    assert_eq!(node.hidden_nodes(), vec![Atom::from(e.name())]);

    let pg = Pg::start(&node, scope).unwrap();
    let g = Term::atom("g");
    let g2 = Term::Tuple(vec![Term::atom("g"), Term::from(2)]);
    assert_eq!(rust_wait_members(&pg, &g, &[m1]).await, vec![m1]);
    assert_eq!(rust_wait_members(&pg, &g2, &[m2]).await, vec![m2]);

    let me = node.process();
    pg.join_many(g2.clone(), vec![me.pid(), me.pid()])
        .await
        .unwrap();
    assert_eq!(
        erl_wait_members(&mut e, scope, "{g, 2}", &[m2, me.pid(), me.pid()]),
        sorted(vec![m2, me.pid(), me.pid()]),
        "joined twice: listed twice"
    );
    let erl_pid_literal = erl_literal(&Term::Pid(me.pid()));
    assert_eq!(
        eval(
            &mut e,
            &format!("lists:member({erl_pid_literal}, pg:get_members({scope}, g)).")
        ),
        "false"
    );

    e.kill();
    assert_eq!(rust_wait_members(&pg, &g, &[]).await, vec![]);
    assert_eq!(
        rust_wait_members(&pg, &g2, &[me.pid(), me.pid()]).await,
        vec![me.pid(), me.pid()],
        "the local members stay"
    );

    // A node that connects later is discovered when it comes up (it would
    // not discover a hidden node itself).
    let mut e2 = erl(&epmd);
    assert_eq!(
        eval(&mut e2, &format!("element(1, pg:start({scope})).")),
        "ok"
    );
    let m3 = erl_member(&mut e2, "m3", scope, "g");
    assert!(node.ping(e2.name()).await);
    assert_eq!(rust_wait_members(&pg, &g, &[m3]).await, vec![m3]);
    let ours = sorted(vec![me.pid(), me.pid()]);
    assert_eq!(erl_wait_members(&mut e2, scope, "{g, 2}", &ours), ours);
    node.shutdown().await;
}

/// Two Rust scopes on two Rust nodes replicate like BEAM ones; a scope
/// whose handles are all dropped stops, and its peer forgets its members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_scopes_replicate_and_a_dropped_scope_leaves() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let n1 = rust_node(&epmd, false).await;
    let n2 = rust_node(&epmd, false).await;
    let scope = "pg_rust_scope";
    let g = Term::from("a group");
    let pg1 = Pg::start(&n1, scope).unwrap();
    assert!(matches!(
        Pg::start(&n1, scope),
        Err(PgError::Register { .. })
    ));
    let pg2 = Pg::start(&n2, scope).unwrap();
    let p1 = n1.process();
    let p2 = n2.process();
    pg1.join(g.clone(), p1.pid()).await.unwrap();
    n1.connect(n2.name().as_str()).await.unwrap();
    pg2.join(g.clone(), p2.pid()).await.unwrap();
    let both = sorted(vec![p1.pid(), p2.pid()]);
    assert_eq!(rust_wait_members(&pg1, &g, &both).await, both);
    assert_eq!(rust_wait_members(&pg2, &g, &both).await, both);
    drop(pg2);
    assert_eq!(
        rust_wait_members(&pg1, &g, &[p1.pid()]).await,
        vec![p1.pid()]
    );
    n1.shutdown().await;
    n2.shutdown().await;
}
