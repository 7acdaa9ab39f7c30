//! The Node against real `erl` nodes: ping, messages both ways, registered
//! names, links, exits, monitors, node down and restart, ordering, and the
//! atom cache and fragments with large and atom-heavy messages.

mod erl_eval;
use erl_eval::{erl_term, eval};

use std::time::Duration;

use erldist::testing::{require_erl, unique_name, ErlNode, RealEpmd};
use erldist::{term, Atom, Dest, Node, NodeBuilder, NodeEvent, Pid, Term};

const COOKIE: &str = "secret_token";
const T: Duration = Duration::from_secs(10);

/// A Rust node with a unique name, to be registered with `epmd`.
fn rust_builder(epmd: &RealEpmd) -> NodeBuilder {
    Node::builder(&format!("{}@localhost", unique_name("rust")))
        .cookie(COOKIE)
        .epmd("localhost", epmd.port())
        .embedded_epmd(false)
}

async fn rust_node(epmd: &RealEpmd) -> Node {
    rust_builder(epmd)
        .start()
        .await
        .expect("start the Rust node")
}

fn erl(epmd: &RealEpmd) -> ErlNode {
    tokio::task::block_in_place(|| ErlNode::start("erl", epmd.port(), COOKIE)).expect("start erl")
}

/// A Rust node and an `erl` node on `epmd`, connected (a ping answered).
async fn connected(epmd: &RealEpmd) -> (Node, ErlNode) {
    let node = rust_node(epmd).await;
    let e = erl(epmd);
    assert!(node.ping(e.name()).await);
    (node, e)
}

fn parse(text: &str) -> Term {
    text.parse().unwrap_or_else(|e| panic!("parse {text}: {e}"))
}

/// An Erlang expression for `t` (pids included).
fn erl_expr(t: impl Into<Term>) -> String {
    erldist::testing::erl_literal(&t.into())
}

fn erl_pid(node: &mut ErlNode, expr: &str) -> Pid {
    erl_term(node, expr).try_into().expect("a pid")
}

fn atom(s: &str) -> Term {
    Term::atom(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_both_ways_and_nodes() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl(&epmd);
    let mut events = node.monitor_nodes();
    assert!(node.ping(e.name()).await, "we ping erl: pong");
    assert_eq!(
        events.recv().await.unwrap(),
        NodeEvent::Up(Atom::from(e.name()))
    );
    assert_eq!(node.nodes(), vec![Atom::from(e.name())]);
    let me = node.name();
    assert_eq!(eval(&mut e, &format!("net_adm:ping('{me}').")), "pong");
    assert_eq!(
        erl_term(&mut e, "nodes()."),
        Term::List(vec![Term::Atom(me)])
    );
    assert!(!node.ping("nobody@localhost").await);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_registered_names_both_ways() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl(&epmd);
    let me = node.name();
    // Erlang sends to a name registered by a Rust process; the Rust
    // process replies to the sender's pid.
    let server = node.spawn(|mut p| async move {
        p.register("rust_box").unwrap();
        while let Ok(m) = p.recv().await {
            if let Ok((from, text)) = <(Pid, Term)>::try_from(m) {
                p.send(from, term!({reply, (text)}));
            }
        }
    });
    let got = eval(
        &mut e,
        &format!("begin {{rust_box, '{me}'}} ! {{self(), <<\"hi\">>}}, receive M -> M after 5000 -> timeout end end."),
    );
    assert_eq!(parse(&got), term!({reply, <<"hi">>}));
    // Rust sends to a name registered on the Erlang node and gets a reply.
    eval(
        &mut e,
        "register(echo, spawn(fun L() -> receive {From, M} -> From ! {echo, M}, L() end end)).",
    );
    let mut me_proc = node.process();
    me_proc.send(
        (Atom::from("echo"), Atom::from(e.name())),
        term!({(me_proc.pid()), [1, 2.5, "x", #{a => b}]}),
    );
    let reply = tokio::time::timeout(T, me_proc.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        reply.exact_eq(&term!({echo, [1, 2.5, "x", #{a => b}]})),
        "{reply}"
    );
    // And to a pid.
    let echo = erl_pid(&mut e, "whereis(echo).");
    me_proc.send(echo, term!({(me_proc.pid()), again}));
    assert_eq!(
        tokio::time::timeout(T, me_proc.recv())
            .await
            .unwrap()
            .unwrap(),
        term!({echo, again})
    );
    assert!(node.is_alive(server));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_and_exits_both_ways() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl(&epmd);
    // An Erlang process linked to a trapping Rust process crashes: the Rust
    // side gets {'EXIT', Pid, boom}.
    let mut rust = node.process();
    rust.trap_exit(true);
    rust.register("trapper").unwrap();
    let me = node.name();
    let erl_pid = erl_pid(
        &mut e,
        &format!(
            "spawn(fun() -> {{trapper, '{me}'}} ! {{pid, self()}}, receive {{link, P}} -> link(P), exit(boom) end end)."
        ),
    );
    let m = tokio::time::timeout(T, rust.recv()).await.unwrap().unwrap();
    assert_eq!(m, term!({pid, (erl_pid)}));
    rust.send(erl_pid, term!({link, (rust.pid())}));
    let m = tokio::time::timeout(T, rust.recv()).await.unwrap().unwrap();
    assert_eq!(m, term!({(atom("EXIT")), (erl_pid), boom}));
    // A Rust process linked from a trapping Erlang process dies: the Erlang
    // process gets {'EXIT', RustPid, Reason}.
    eval(
        &mut e,
        "register(watcher, spawn(fun() -> process_flag(trap_exit, true), receive {link, P} -> link(P), receive X -> register(result, spawn(fun() -> receive {get, F} -> F ! X end end)) end end end)).",
    );
    let e_name = Atom::from(e.name());
    let dying = node.spawn(move |p| async move {
        p.send((Atom::from("watcher"), e_name), term!({link, (p.pid())}));
        tokio::time::sleep(Duration::from_millis(300)).await;
        Err::<(), _>(term!(rust_crash))
    });
    let got = erl_term(
        &mut e,
        "begin timer:sleep(1000), result ! {get, self()}, receive R -> R after 5000 -> timeout end end",
    );
    assert_eq!(got, term!({(atom("EXIT")), (dying), rust_crash}));
    // exit/2 from Erlang with kill cannot be trapped.
    let victim = node.spawn(|mut p| async move {
        p.trap_exit(true);
        while p.recv().await.is_ok() {}
    });
    let mut watcher = node.process();
    let r = watcher.monitor(victim);
    eval(&mut e, &format!("exit({}, kill).", erl_expr(victim)));
    let down = tokio::time::timeout(T, watcher.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        down,
        term!({(atom("DOWN")), (Term::Ref(Box::new(r))), process, (victim), killed})
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitors_both_ways_with_each_reason() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl(&epmd);
    let mut me = node.process();
    // Rust monitors an Erlang process that exits normally, then one that
    // crashes, then one already dead (noproc), then by name.
    let p1 = erl_pid(&mut e, "spawn(fun() -> receive go -> ok end end).");
    let r1 = me.monitor(p1);
    me.send(p1, term!(go));
    let d = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
    assert_eq!(
        d,
        term!({(atom("DOWN")), (Term::Ref(Box::new(r1))), process, (p1), normal})
    );
    let p2 = erl_pid(&mut e, "spawn(fun() -> receive go -> exit(crash) end end).");
    let r2 = me.monitor(p2);
    me.send(p2, term!(go));
    let d = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
    assert_eq!(
        d,
        term!({(atom("DOWN")), (Term::Ref(Box::new(r2))), process, (p2), crash})
    );
    let r3 = me.monitor(p2);
    let d = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
    assert_eq!(
        d,
        term!({(atom("DOWN")), (Term::Ref(Box::new(r3))), process, (p2), noproc})
    );
    let r4 = me.monitor((Atom::from("no_such_name"), Atom::from(e.name())));
    let d = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
    assert_eq!(
        d,
        term!({(atom("DOWN")), (Term::Ref(Box::new(r4))), process, {no_such_name, (atom(e.name()))}, noproc})
    );
    // Erlang monitors a Rust process (by pid, then by name).
    let target = node.spawn(|mut p| async move {
        let _ = p.recv().await;
        Err::<(), _>(term!(bye))
    });
    let me_name = node.name();
    let got = eval(
        &mut e,
        &format!(
            "begin R = erlang:monitor(process, {t}), {t} ! go, receive {{'DOWN', R, process, _, Why}} -> Why after 5000 -> timeout end end.",
            t = erl_expr(target)
        ),
    );
    assert_eq!(got, "bye");
    let named = node.process();
    named.register("named_target").unwrap();
    eval(
        &mut e,
        &format!("erlang:monitor(process, {{named_target, '{me_name}'}})."),
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(named);
    let got = eval(
        &mut e,
        "receive {'DOWN', _, process, Obj, Why} -> {Obj, Why} after 5000 -> timeout end.",
    );
    assert_eq!(
        parse(&got),
        term!({{named_target, (Term::Atom(me_name))}, normal})
    );
    let got = eval(&mut e, &format!("begin R = erlang:monitor(process, {}), receive {{'DOWN', R, _, _, W}} -> W after 5000 -> timeout end end.", erl_expr(target)));
    assert_eq!(got, "noproc");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_down_breaks_links_and_monitors_and_restart_is_a_new_incarnation() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl(&epmd);
    let e_name = e.name().to_owned();
    let pid = erl_pid(&mut e, "spawn(fun() -> receive _ -> ok end end).");
    let mut linked = node.process();
    linked.trap_exit(true);
    linked.link(pid);
    let mut mon = node.process();
    let r = mon.monitor(pid);
    let mut events = node.monitor_nodes();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(node.nodes().contains(&Atom::from(e_name.as_str())));
    e.kill();
    let m = tokio::time::timeout(T, linked.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m, term!({(atom("EXIT")), (pid), noconnection}));
    let d = tokio::time::timeout(T, mon.recv()).await.unwrap().unwrap();
    assert_eq!(
        d,
        term!({(atom("DOWN")), (Term::Ref(Box::new(r))), process, (pid), noconnection})
    );
    loop {
        match tokio::time::timeout(T, events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            NodeEvent::Down(n, _) => {
                assert_eq!(n.as_str(), e_name);
                break;
            }
            NodeEvent::Up(_) => {}
        }
    }
    assert!(node.nodes().is_empty());
    // Linking to a pid of an unreachable node: noconnection at once.
    linked.link(pid);
    let m = tokio::time::timeout(T, linked.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m, term!({(atom("EXIT")), (pid), noconnection}));
    // The node restarts under the same name: a new incarnation, whose
    // processes have another creation; the old pid stays dead.
    let mut again =
        tokio::task::block_in_place(|| ErlNode::start_exact(&e_name, epmd.port(), COOKIE, &[]))
            .expect("restart erl");
    assert!(node.ping(&e_name).await, "reconnects after the restart");
    let new_pid = erl_pid(&mut again, "self().");
    assert_ne!(
        new_pid.creation, pid.creation,
        "a restarted node has a new creation"
    );
    let r = mon.monitor(pid);
    let d = tokio::time::timeout(T, mon.recv()).await.unwrap().unwrap();
    assert_eq!(
        d,
        term!({(atom("DOWN")), (Term::Ref(Box::new(r))), process, (pid), noproc})
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_messages_arrive_in_order_both_ways() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl(&epmd);
    let me = node.name();
    let mut sink = node.process();
    sink.register("sink").unwrap();
    // Erlang → Rust.
    eval(
        &mut e,
        &format!("spawn(fun() -> [{{sink, '{me}'}} ! {{n, I}} || I <- lists:seq(1, 100000)] end)."),
    );
    for i in 1..=100_000i64 {
        let m = tokio::time::timeout(T, sink.recv()).await.unwrap().unwrap();
        assert_eq!(m, term!({n, (i)}), "message {i}");
    }
    // Rust → Erlang: the receiver checks the order and answers.
    eval(
        &mut e,
        "register(counter, spawn(fun() -> C = fun Loop(N) -> receive {n, N} -> Loop(N + 1); {done, F} -> F ! {count, N - 1}; Other -> exit({out_of_order, N, Other}) end end, C(1) end)).",
    );
    let counter = (Atom::from("counter"), Atom::from(e.name()));
    for i in 1..=100_000i64 {
        sink.send(counter, term!({n, (i)}));
    }
    sink.send(counter, term!({done, (sink.pid())}));
    let m = tokio::time::timeout(Duration::from_secs(60), sink.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m, term!({count, 100000}));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_and_atom_heavy_messages_cross_intact() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl(&epmd);
    eval(
        &mut e,
        "register(echo, spawn(fun L() -> receive {From, M} -> From ! {echo, M}, L() end end)).",
    );
    let mut me = node.process();
    let echo = (Atom::from("echo"), Atom::from(e.name()));
    // A 1 MiB binary (one frame to the real node, fragments back); a list
    // of 20,000 tuples (about 500 KB, every byte encoded by the sending
    // process); and a term with 300 distinct atoms
    // (more than a header's 255 cache references), sent after them. Each
    // by value, then by reference (`send_ref`: encoded from the borrowed
    // term, not copied).
    let big = Term::binary(vec![7u8; 1 << 20]);
    let tuples = Term::List(
        (0..20_000)
            .map(|i| {
                Term::Tuple(vec![
                    Term::atom(&format!("item_{}", i % 7)),
                    Term::from(i * 1000),
                    Term::binary(&b"abcdefgh"[..]),
                ])
            })
            .collect(),
    );
    let atoms = Term::List((0..300).map(|i| Term::atom(&format!("atom_{i}"))).collect());
    for by_ref in [false, true] {
        let msgs = [big.clone(), tuples.clone(), atoms.clone(), atoms.clone()];
        for (i, msg) in msgs.into_iter().enumerate() {
            let out = Term::Tuple(vec![Term::Pid(me.pid()), msg.clone()]);
            if by_ref {
                me.send_ref(echo, &out);
            } else {
                me.send(echo, out);
            }
            let r = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
            assert!(
                r.exact_eq(&Term::Tuple(vec![atom("echo"), msg])),
                "message {i} came back changed (by reference: {by_ref})"
            );
        }
    }
    // And OTP agrees on the bytes it received.
    let md5 = eval(
        &mut e,
        "erlang:md5(term_to_binary(binary:copy(<<7>>, 1048576))).",
    );
    assert!(md5.starts_with("<<"));
    node.shutdown().await;
}

/// A real node sends binaries of 2 MiB (in its 64 KiB fragments), one at
/// a time, each of one byte value; the receiver keeps every other one
/// and drops the rest at once. The node joins each message into a buffer
/// it may use again once the message is dropped: the binaries kept must
/// come through unchanged by the messages joined after them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binaries_kept_by_their_receiver_are_not_overwritten_by_later_ones() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let (node, mut e) = connected(&epmd).await;
    let mut me = node.process();
    let size = 2 << 20;
    let sender = format!(
        "spawn(fun() -> L = fun F(I) when I > 16 -> ok; \
         F(I) -> {to} ! {{self(), I, binary:copy(<<I>>, {size})}}, \
         receive {{ack, I}} -> F(I + 1) end end, L(1) end).",
        to = erl_expr(me.pid()),
    );
    eval(&mut e, &sender);
    let mut kept = Vec::new();
    for i in 1..=16u8 {
        let m = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
        let Some([Term::Pid(from), n, Term::Binary(b)]) = m.as_tuple() else {
            panic!("message {i}: {m}");
        };
        assert_eq!(n, &Term::from(i64::from(i)));
        assert!(
            b.len() == size && b.iter().all(|&x| x == i),
            "message {i} arrived changed"
        );
        if i % 2 == 1 {
            kept.push((i, b.clone()));
        }
        me.send(
            *from,
            Term::tuple(vec![atom("ack"), Term::from(i64::from(i))]),
        );
    }
    for (i, b) in &kept {
        assert!(
            b.iter().all(|x| x == i),
            "binary {i} was changed after it arrived"
        );
    }
    node.shutdown().await;
}

/// The buffer a connection joined a fragmented message in is kept for
/// later messages while more come, and given back once the connection
/// has gone two ticks without one: a binary that arrived in fragments is
/// then its receiver's alone (`Bytes::is_unique`, so it could become a
/// `BytesMut` without a copy), and the node holds no memory for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffers_kept_for_joining_fragments_are_given_back_when_idle() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    // Ticks every two seconds on both sides.
    let node = rust_builder(&epmd)
        .net_ticktime(Duration::from_secs(8))
        .start()
        .await
        .expect("start the Rust node");
    let mut e = tokio::task::block_in_place(|| {
        ErlNode::start_with(
            "erl",
            epmd.port(),
            COOKIE,
            &["-kernel", "net_ticktime", "8"],
        )
    })
    .expect("start erl");
    assert!(node.ping(e.name()).await);
    let mut me = node.process();
    let size = 1 << 20;
    // One 1 MiB binary, which BEAM sends in 64 KiB fragments.
    eval(
        &mut e,
        &format!("{} ! binary:copy(<<9>>, {size}).", erl_expr(me.pid())),
    );
    let m = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
    let Term::Binary(b) = &m else {
        panic!("not a binary: {m}");
    };
    assert!(b.len() == size && b.iter().all(|&x| x == 9));
    let bytes = b.to_bytes();
    drop(m);
    // The node holds the buffer the fragments were joined in (until its
    // second tick, two seconds from now at the earliest)...
    assert!(
        !bytes.is_unique(),
        "the connection keeps the buffer for the next message"
    );
    // ...and gives it back after two ticks without a fragmented message.
    let t0 = std::time::Instant::now();
    while !bytes.is_unique() {
        assert!(
            t0.elapsed() < T,
            "the buffer is still held {:?} after the message",
            t0.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node.shutdown().await;
}

/// `send_ref` (a message encoded from a borrowed term, by the sending
/// process) reaches a BEAM process by pid, by registered name and from the
/// node itself, with atoms past those a sender-encoded message references,
/// in order with messages sent by value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_sent_by_reference_reach_beam_intact() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let (node, mut e) = connected(&epmd).await;
    let mut me = node.process();
    // Collects 7 messages, then sends them back in one list.
    eval(
        &mut e,
        &format!(
            "register(collector, spawn(fun() -> \
               Ms = [receive M -> M end || _ <- lists:seq(1, 7)], {} ! {{got, Ms}} end)).",
            erl_expr(me.pid())
        ),
    );
    let collector = erl_pid(&mut e, "whereis(collector).");
    let many = Term::List(
        (0..8)
            .map(|i| Term::atom(&format!("ref_atom_{i}")))
            .collect(),
    );
    let msgs = [
        term!({hello, 42}),
        Term::Tuple(vec![atom("many"), many, Term::binary(vec![1u8; 300])]),
        term!({by_value, 1}),
    ];
    me.send_ref(collector, &msgs[0]);
    me.send_ref(collector, &msgs[1]);
    me.send(collector, msgs[2].clone());
    me.send_ref((Atom::from("collector"), Atom::from(e.name())), &msgs[0]);
    me.send_ref((Atom::from("collector"), Atom::from(e.name())), &msgs[1]);
    node.send_ref(collector, &msgs[0]);
    node.send_ref(collector, &msgs[1]);
    let got = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
    let want = Term::Tuple(vec![
        atom("got"),
        Term::List(vec![
            msgs[0].clone(),
            msgs[1].clone(),
            msgs[2].clone(),
            msgs[0].clone(),
            msgs[1].clone(),
            msgs[0].clone(),
            msgs[1].clone(),
        ]),
    ]);
    assert!(got.exact_eq(&want), "got {got}");
    node.shutdown().await;
}

/// A process that sends a long run of messages without waiting does not
/// hold them back until the run ends: BEAM has the first ones while the
/// process is still busy, as it would from a BEAM process. (The peer's
/// task, woken by the first send, would otherwise wait on the sender's
/// worker, where tokio puts a task woken from there.) BEAM is asked from
/// the test's own thread, which is not one of the runtime's workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_run_of_sends_reaches_beam_while_the_sender_is_busy() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let (node, mut e) = connected(&epmd).await;
    // Counts what it receives; tells the count when asked.
    eval(
        &mut e,
        "register(counter, spawn(fun() -> (fun Loop(N) -> receive \
           {count, From} -> From ! {count, N}, Loop(N); \
           _ -> Loop(N + 1) end end)(0) end)).",
    );
    let counter = erl_pid(&mut e, "whereis(counter).");
    let released = Arc::new(AtomicBool::new(false));
    let release = Arc::clone(&released);
    // On a worker, as processes run: sends, then stays busy (without
    // waiting) until released, for at most 10 s.
    let sender_node = node.clone();
    let sender = tokio::spawn(async move {
        let p = sender_node.process();
        for i in 0..1000 {
            p.send(counter, Term::tuple(vec![atom("n"), Term::from(i)]));
        }
        let t0 = std::time::Instant::now();
        while !release.load(Ordering::SeqCst) && t0.elapsed() < T {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let t0 = std::time::Instant::now();
    let mut count = 0;
    while count == 0 && t0.elapsed() < T {
        let answer = eval(
            &mut e,
            "counter ! {count, self()}, receive {count, N} -> N after 5000 -> -1 end.",
        );
        count = answer.trim().parse::<i64>().unwrap();
        if count == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let still_busy = !sender.is_finished();
    released.store(true, Ordering::SeqCst);
    sender.await.unwrap();
    assert!(
        count > 0 && still_busy,
        "BEAM had {count} of the messages while their sender was busy (still busy: {still_busy})"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rust_nodes_with_the_embedded_epmd_and_no_beam() {
    // `a` starts the embedded EPMD on a port picked here.
    let (port, a) = erldist::testing::on_free_port(|port| {
        Node::builder(&format!("{}@localhost", unique_name("a")))
            .cookie(COOKIE)
            .epmd("localhost", port)
            .start()
    })
    .await
    .unwrap();
    let b = Node::builder(&format!("{}@localhost", unique_name("b")))
        .cookie(COOKIE)
        .epmd("localhost", port)
        .start()
        .await
        .unwrap();
    let mut pb = b.process();
    pb.register("inbox").unwrap();
    let mut pa = a.process();
    pa.send((Atom::from("inbox"), b.name()), term!({hello, (pa.pid())}));
    let m = tokio::time::timeout(T, pb.recv()).await.unwrap().unwrap();
    assert_eq!(m, term!({hello, (pa.pid())}));
    pb.send(pa.pid(), term!(back));
    assert_eq!(
        tokio::time::timeout(T, pa.recv()).await.unwrap().unwrap(),
        term!(back)
    );
    // Links across: b's process dies, a's trapping process sees it.
    pa.trap_exit(true);
    pa.link(pb.pid());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let pb_pid = pb.pid();
    pb.exit_self(term!(gone));
    let m = tokio::time::timeout(T, pa.recv()).await.unwrap().unwrap();
    assert_eq!(m, term!({(atom("EXIT")), (pb_pid), gone}));
    assert!(a.ping(b.name().as_str()).await);
    // b goes away: a sees nodedown.
    let mut events = a.monitor_nodes();
    b.shutdown().await;
    match tokio::time::timeout(T, events.recv())
        .await
        .unwrap()
        .unwrap()
    {
        NodeEvent::Down(n, _) => assert_eq!(n, b.name()),
        other => panic!("expected nodedown, got {other:?}"),
    }
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unlink_demonitor_disconnect_and_shutdown() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl(&epmd);
    let me = node.name();
    // Erlang links to a Rust process, then unlinks (UNLINK_ID, acked): the
    // Rust process's later crash does not reach it.
    let mut rust = node.process();
    rust.register("victim").unwrap();
    eval(
        &mut e,
        &format!(
            "register(linker, spawn(fun() -> process_flag(trap_exit, true), {{victim, '{me}'}} ! {{hi, self()}}, receive {{link, P}} -> link(P), unlink(P), {{victim, '{me}'}} ! unlinked end, receive X -> register(linker_result, spawn(fun() -> receive {{get, F}} -> F ! X end end)) after 1500 -> register(linker_result, spawn(fun() -> receive {{get, F}} -> F ! nothing end end)) end end))."
        ),
    );
    let hi = tokio::time::timeout(T, rust.recv()).await.unwrap().unwrap();
    let (_, linker): (Term, Pid) = hi.try_into().unwrap();
    rust.send(linker, term!({link, (rust.pid())}));
    let m = tokio::time::timeout(T, rust.recv()).await.unwrap().unwrap();
    assert_eq!(m, term!(unlinked));
    rust.exit_self(term!(crash));
    let got = eval(&mut e, "begin timer:sleep(2000), linker_result ! {get, self()}, receive R -> R after 5000 -> timeout end end.");
    assert_eq!(
        got, "nothing",
        "the unlinked Erlang process got an exit signal"
    );
    // A Rust monitor removed with demonitor sends no 'DOWN'.
    let mut watcher = node.process();
    let target = erl_pid(&mut e, "spawn(fun() -> receive go -> ok end end).");
    let r = watcher.monitor(target);
    watcher.demonitor(&r);
    watcher.send(target, term!(go));
    assert_eq!(
        watcher
            .recv_timeout(Duration::from_millis(500))
            .await
            .unwrap(),
        None
    );
    // disconnect: links break with noconnection on both sides.
    let linked_erl = erl_pid(&mut e, "spawn(fun() -> receive _ -> ok end end).");
    watcher.trap_exit(true);
    watcher.link(linked_erl);
    tokio::time::sleep(Duration::from_millis(200)).await;
    node.disconnect(e.name()).await;
    let gone = eval(
        &mut e,
        &format!("(fun W(0) -> false; W(N) -> case lists:member('{me}', nodes()) of true -> timer:sleep(50), W(N - 1); false -> true end end)(100)."),
    );
    assert_eq!(
        gone, "true",
        "the Erlang node still sees us after disconnect"
    );
    let m = tokio::time::timeout(T, watcher.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m, term!({(atom("EXIT")), (linked_erl), noconnection}));
    // Shutting the node down: an Erlang process linked to a Rust process
    // gets noconnection, as when a BEAM node stops.
    let keeper = node.process();
    keeper.register("keeper").unwrap();
    let w2 = erl_pid(
        &mut e,
        &format!(
            "spawn(fun() -> process_flag(trap_exit, true), {{keeper, '{me}'}} ! {{hello, self()}}, receive {{link, P}} -> link(P), receive X -> register(w2_result, spawn(fun() -> receive {{get, F}} -> F ! X end end)) end end end)."
        ),
    );
    let mut keeper = keeper;
    let hello = tokio::time::timeout(T, keeper.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hello, term!({hello, (w2)}));
    keeper.send(w2, term!({link, (keeper.pid())}));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let keeper_pid = keeper.pid();
    node.shutdown().await;
    let got = erl_term(&mut e, "begin timer:sleep(500), w2_result ! {get, self()}, receive R -> R after 5000 -> timeout end end");
    assert_eq!(got, term!({(atom("EXIT")), (keeper_pid), noconnection}));
}

/// The Erlang expression that registers `probe`: it takes the first two
/// `{big, _}` / `{small, _}` messages, in the order they arrived, and
/// answers `{report, To}` with `{order, First, Second}`.
const ORDER_PROBE: &str = "register(probe, spawn(fun() -> \
    Take = fun() -> receive {T, _} when T =:= big; T =:= small -> T end end, \
    A = Take(), B = Take(), \
    receive {report, To} -> To ! {order, A, B} end end)), ok.";

/// How long a node is frozen while a large message to it is sent: time
/// for the sending node to fill the sockets and take the small message
/// sent after it.
const FROZEN_FOR: Duration = Duration::from_millis(200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_message_overtakes_another_process_large_one() {
    if !require_erl() {
        return;
    }
    const BIG: usize = 64 << 20;
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl(&epmd);
    assert_eq!(eval(&mut e, ORDER_PROBE), "ok");
    let probe = Dest::Remote(Atom::from("probe"), Atom::from(e.name()));
    node.connect(e.name()).await.unwrap();
    // The 64 MiB message goes out in fragments of 256 KiB; the small one, sent
    // just after by another process, need not wait for all of them.
    let big = node.process();
    let small = node.process();
    // `e` is frozen meanwhile, so that the large message is still going out
    // when the small one is sent, however slow this machine is: the sockets
    // hold a few MB of it, the sending node the rest.
    let frozen = e.freeze().expect("freeze the node");
    big.send(probe.clone(), term!({big, (Term::binary(vec![1u8; BIG]))}));
    small.send(probe.clone(), term!({small, 1}));
    tokio::time::sleep(FROZEN_FOR).await;
    drop(frozen);
    let mut asker = node.process();
    asker.send(probe.clone(), term!({report, (asker.pid())}));
    let order = tokio::time::timeout(Duration::from_secs(60), asker.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(order, term!({order, small, big}), "erldist -> BEAM");

    // The same with a list of 400,000 tuples, each with a 64-byte binary
    // (about 29 MB of ETF, far more than the writer holds at once), which
    // the sending process encodes and the connection cuts into
    // fragments, sent by reference.
    assert_eq!(eval(&mut e, ORDER_PROBE), "ok");
    let bin = Term::binary(vec![3u8; 64]);
    let list = Term::list(
        (0..400_000)
            .map(|i| Term::tuple(vec![Term::from(i), bin.clone()]))
            .collect(),
    );
    // Built, and freed, outside the sends: freeing it between them would
    // hold the small one back by the time that takes.
    let big_msg = Term::tuple(vec![Term::atom("big"), list]);
    let frozen = e.freeze().expect("freeze the node");
    big.send_ref(probe.clone(), &big_msg);
    small.send(probe.clone(), term!({small, 2}));
    tokio::time::sleep(FROZEN_FOR).await;
    drop(frozen);
    asker.send(probe, term!({report, (asker.pid())}));
    let order = tokio::time::timeout(Duration::from_secs(60), asker.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        order,
        term!({order, small, big}),
        "a large term, erldist -> BEAM"
    );
    drop(big_msg);

    // BEAM does the same between two of its nodes.
    let mut e2 = erl(&epmd);
    assert_eq!(eval(&mut e2, ORDER_PROBE), "ok");
    let order = eval(
        &mut e,
        &format!(
            "Probe = {{probe, '{}'}}, true = net_kernel:connect_node('{}'), \
             spawn(fun() -> Probe ! {{big, binary:copy(<<1>>, {BIG})}} end), \
             spawn(fun() -> timer:sleep(1), Probe ! {{small, 1}} end), \
             timer:sleep(5), Probe ! {{report, self()}}, \
             receive {{order, _, _}} = O -> O after 60000 -> timeout end.",
            e2.name(),
            e2.name()
        ),
    );
    assert_eq!(order, "{order,small,big}", "BEAM -> BEAM");
    node.shutdown().await;
}
