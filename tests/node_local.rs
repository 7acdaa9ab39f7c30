//! Processes on one node, without any network: messages, selective
//! receive, names, links, exit signals, monitors and aliases behave as in
//! Erlang.

use std::time::Duration;

use erldist::{term, Atom, Node, Pid, Term};

const T: Duration = Duration::from_secs(5);

fn exit_msg(from: Pid, reason: Term) -> Term {
    term!({(Term::atom("EXIT")), (from), (reason)})
}

#[tokio::test]
async fn messages_arrive_in_order_per_sender() {
    let node = Node::local("order@localhost");
    let mut me = node.process();
    let sink = me.pid();
    for s in 0..4 {
        node.spawn(move |p| async move {
            for i in 0..10_000 {
                p.send(sink, term!({(s), (i)}));
            }
        });
    }
    let mut next = [0i64; 4];
    for _ in 0..40_000 {
        let m = me.recv().await.unwrap();
        let (s, i): (usize, i64) = m.try_into().unwrap();
        assert_eq!(i, next[s], "sender {s} out of order");
        next[s] += 1;
    }
}

#[tokio::test]
async fn selective_receive_leaves_the_rest_in_order() {
    let node = Node::local("sel@localhost");
    let mut me = node.process();
    for m in [term!(a), term!({b, 1}), term!(c), term!({b, 2})] {
        me.send(me.pid(), m);
    }
    let b = me.recv_match(|t| t.as_tuple().is_some()).await.unwrap();
    assert_eq!(b, term!({b, 1}));
    assert_eq!(me.recv().await.unwrap(), term!(a));
    let none = me
        .recv_match_timeout(Duration::from_millis(20), |t| t.is_atom("zzz"))
        .await
        .unwrap();
    assert!(none.is_none());
    assert_eq!(me.mailbox_len(), 2);
    assert_eq!(me.recv().await.unwrap(), term!(c));
    assert_eq!(me.recv().await.unwrap(), term!({b, 2}));
    assert_eq!(
        me.recv_timeout(Duration::from_millis(10)).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn registered_names() {
    let node = Node::local("names@localhost");
    let mut me = node.process();
    me.register("me").unwrap();
    assert_eq!(node.whereis("me"), Some(me.pid()));
    let other = node.process();
    assert!(other.register("me").is_err());
    assert!(me.register("again").is_err());
    node.send("me", term!(hi));
    node.send(("me", "names@localhost"), term!(there));
    assert_eq!(me.recv().await.unwrap(), term!(hi));
    assert_eq!(me.recv().await.unwrap(), term!(there));
    let pid = me.pid();
    drop(me);
    assert_eq!(node.whereis("me"), None, "a dead process loses its name");
    assert!(!node.is_alive(pid));
    other.register("me").unwrap();
}

#[tokio::test]
async fn a_crash_kills_linked_processes_unless_they_trap_exits() {
    let node = Node::local("links@localhost");
    let mut watcher = node.process();
    watcher.trap_exit(true);
    // a <-> b, watcher <-> b. a crashes: b dies with the same reason;
    // the watcher, trapping, gets an (Term::atom("EXIT")) message from b.
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let a = node.spawn(|p| async move {
        let _ = rx.await;
        drop(p);
        Err::<(), _>(term!(boom))
    });
    let b = node.spawn(move |mut p| async move {
        p.link(a);
        let _ = p.recv().await;
    });
    watcher.link(b);
    tokio::time::sleep(Duration::from_millis(50)).await;
    tx.send(()).unwrap();
    let m = tokio::time::timeout(T, watcher.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m, exit_msg(b, term!(boom)));
    assert!(!node.is_alive(a) && !node.is_alive(b));
}

#[tokio::test]
async fn normal_exits_do_not_kill_links_and_kill_cannot_be_trapped() {
    let node = Node::local("kill@localhost");
    let mut me = node.process();
    me.trap_exit(true);
    let short = me.spawn_link(|_p| async {});
    assert_eq!(
        tokio::time::timeout(T, me.recv()).await.unwrap().unwrap(),
        exit_msg(short, term!(normal))
    );
    let trapper = me.spawn_link(|mut p| async move {
        p.trap_exit(true);
        while p.recv().await.is_ok() {}
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    me.exit(trapper, term!(kill));
    assert_eq!(
        tokio::time::timeout(T, me.recv()).await.unwrap().unwrap(),
        exit_msg(trapper, term!(killed))
    );
}

#[tokio::test]
async fn an_attached_process_killed_by_a_link_sees_its_reason() {
    let node = Node::local("attached@localhost");
    let mut victim = node.process();
    let killer = node.process();
    victim.link(killer.pid());
    killer.exit_self(term!(shutdown));
    let e = tokio::time::timeout(T, victim.recv())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.reason, term!(shutdown));
    // And stays dead.
    let e = tokio::time::timeout(T, victim.recv_match(|_| true))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(e.reason, term!(shutdown));
}

#[tokio::test]
async fn monitors_report_normal_crash_panic_and_noproc() {
    let node = Node::local("mon@localhost");
    let mut me = node.process();
    let (pid, r) = me.spawn_monitor(|_p| async {});
    let down = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
    assert_eq!(
        down,
        term!({(Term::atom("DOWN")), (Term::Ref(Box::new(r))), process, (pid), normal})
    );
    let (pid, r) = me.spawn_monitor(|_p| async {
        if !Term::NIL.is_nil() {
            return;
        }
        panic!("oh no")
    });
    let down = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
    assert_eq!(
        down,
        term!({(Term::atom("DOWN")), (Term::Ref(Box::new(r))), process, (pid), {panic, <<"oh no">>}})
    );
    // Monitoring a dead process: noproc at once.
    let r = me.monitor(pid);
    let down = me.recv().await.unwrap();
    assert_eq!(
        down,
        term!({(Term::atom("DOWN")), (Term::Ref(Box::new(r))), process, (pid), noproc})
    );
    // By name: the (Term::atom("DOWN")) names it.
    let named = node.process();
    named.register("svc").unwrap();
    let r = me.monitor("svc");
    drop(named);
    let down = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
    assert_eq!(
        down,
        term!({(Term::atom("DOWN")), (Term::Ref(Box::new(r))), process, {svc, (Term::atom("mon@localhost"))}, normal})
    );
    // Demonitor: no (Term::atom("DOWN")).
    let other = node.process();
    let r = me.monitor(other.pid());
    me.demonitor(&r);
    drop(other);
    assert_eq!(
        me.recv_timeout(Duration::from_millis(30)).await.unwrap(),
        None
    );
    // The node survives the panic.
    assert!(node.process_count() >= 1);
}

#[tokio::test]
async fn aliases_deliver_until_deactivated() {
    let node = Node::local("alias@localhost");
    let mut me = node.process();
    let a = me.alias();
    node.send(a, term!(one));
    assert_eq!(me.recv().await.unwrap(), term!(one));
    assert!(me.unalias(&a));
    node.send(a, term!(two));
    assert_eq!(
        me.recv_timeout(Duration::from_millis(20)).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn sending_to_the_dead_is_silent_and_pids_are_unique() {
    let node = Node::local("dead@localhost");
    let p = node.process();
    let pid = p.pid();
    drop(p);
    node.send(pid, term!(lost));
    let pids: std::collections::HashSet<Pid> =
        (0..1000).map(|_| node.spawn(|_p| async {})).collect();
    assert_eq!(pids.len(), 1000);
    assert!(pids
        .iter()
        .all(|p| p.node == Atom::from("dead@localhost") && p.creation == node.creation()));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(node.process_count(), 0);
}
