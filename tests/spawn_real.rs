//! Remote spawn both ways against real `erl` nodes: the lesson's S2 and S3
//! (Elixir's `Kate` module), spawn errors, remote crashes under a link and
//! under a monitor, and BEAM nodes spawning Rust functions.

#[path = "spawn_common.rs"]
mod common;

use std::time::Duration;

use common::*;
use erldist::node::{Exception, GroupLeaderConfig, SpawnError, SpawnOpts};
use erldist::testing::{require_erl, require_programs, RealEpmd};
use erldist::{term, Atom, Pid, Term};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_spawn_link_kate_say_name_prints_here_and_s3_sup() {
    if !require_erl() || !require_programs(&["elixirc"]) {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let (e, _dir) = erl_with_kate(&epmd);
    let (tx, mut out) = tokio::sync::mpsc::unbounded_channel();
    let gl = node.start_group_leader(GroupLeaderConfig::channel(tx));
    let mut alex = node.process();
    alex.set_group_leader(gl);
    alex.trap_exit(true);
    // S2: Node.spawn_link(:kate@localhost, Kate, :say_name, []).
    let kate = alex
        .spawn_remote(
            e.name(),
            "Elixir.Kate",
            "say_name",
            vec![],
            SpawnOpts::new().link(),
        )
        .await
        .expect("spawn_link Kate.say_name");
    assert_eq!(kate.pid.node, Atom::from(e.name()));
    assert_eq!(kate.monitor, None);
    let said = tokio::time::timeout(T, out.recv()).await.unwrap().unwrap();
    assert_eq!(said.text, "Hi, my name is Kate\n");
    assert_eq!(said.from, kate.pid);
    // Linked: its (normal) exit reaches us.
    let exit = tokio::time::timeout(T, alex.recv()).await.unwrap().unwrap();
    assert_eq!(exit, term!({(atom("EXIT")), (kate.pid), normal}));
    // S3: send {hi, Pid} to a spawned Kate.reply and receive sup?.
    let replier = alex
        .spawn_remote(e.name(), "Elixir.Kate", "reply", vec![], SpawnOpts::new())
        .await
        .unwrap();
    alex.send(replier.pid, term!({hi, (alex.pid())}));
    let sup = alex
        .recv_match_timeout(T, |m| m.is_atom("sup?"))
        .await
        .unwrap();
    assert_eq!(sup, Some(atom("sup?")));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawn_errors() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let e = erl(&epmd);
    let mut p = node.process();
    // An option the remote node does not know: badopt, as OTP answers.
    let mut opts = SpawnOpts::new();
    opts.extra.push(term!({bogus, 1}));
    let err = p
        .spawn_remote(e.name(), "erlang", "node", vec![], opts)
        .await
        .unwrap_err();
    assert_eq!(err, SpawnError::Refused(Atom::from("badopt")));
    // A node that is not there.
    let err = p
        .spawn_remote(
            "nobody@localhost",
            "erlang",
            "node",
            vec![],
            SpawnOpts::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        SpawnError::NoConnection(Atom::from("nobody@localhost"))
    );
    // A function that does not exist: the spawn succeeds, the process
    // exits with undef.
    let s = p
        .spawn_remote(
            e.name(),
            "nomod",
            "nofun",
            vec![term!(1)],
            SpawnOpts::new().monitor(),
        )
        .await
        .unwrap();
    let r = s.monitor.expect("a monitor");
    let down = tokio::time::timeout(T, p.recv()).await.unwrap().unwrap();
    assert_eq!(
        down,
        term!({(atom("DOWN")), (Term::Ref(Box::new(r))), process, (s.pid),
               {undef, [{nomod, nofun, [1], []}]}})
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_crash_under_link_and_monitor() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl(&epmd);
    // Under a monitor: the DOWN carries the error and its stack.
    let mut p = node.process();
    let s = p
        .spawn_remote(
            e.name(),
            "erlang",
            "error",
            vec![term!(oops)],
            SpawnOpts::new().monitor(),
        )
        .await
        .unwrap();
    let down = tokio::time::timeout(T, p.recv()).await.unwrap().unwrap();
    let t = down.as_tuple().unwrap();
    assert!(t[0].is_atom("DOWN"));
    assert_eq!(t[1], Term::Ref(Box::new(s.monitor.unwrap())));
    assert_eq!(t[3], Term::Pid(s.pid));
    assert_eq!(t[4].as_tuple().unwrap()[0], atom("oops"), "{down}");
    // Under a link, not trapping: the Rust process dies with the reason.
    let e_name = Atom::from(e.name());
    let victim = node.spawn(move |p| async move {
        let _ = p
            .spawn_remote(
                e_name,
                "erlang",
                "exit",
                vec![term!(boom)],
                SpawnOpts::new().link(),
            )
            .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut watcher = node.process();
    let r = watcher.monitor(victim);
    let down = tokio::time::timeout(T, watcher.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        down,
        term!({(atom("DOWN")), (Term::Ref(Box::new(r))), process, (victim), boom})
    );
    // The other way: the Rust side exits, the linked remote process dies.
    let linked = node.process();
    let s = linked
        .spawn_remote(
            e.name(),
            "timer",
            "sleep",
            vec![atom("infinity")],
            SpawnOpts::new().link(),
        )
        .await
        .unwrap();
    let remote = s.pid;
    assert_eq!(
        eval(&mut e, &format!("is_process_alive({}).", erl_expr(remote))),
        "true"
    );
    linked.exit_self(atom("bye"));
    let gone = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        eval(&mut e, &format!("is_process_alive({}).", erl_expr(remote))) == "false"
    });
    assert!(gone, "the linked remote process died with us");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beam_spawns_rust_functions() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl_with(&epmd, &["-pa", "/usr/lib/elixir/lib/elixir/ebin"]);
    let me = node.name();
    // Kate.reply's Rust twin: waits for {hi, From}, answers sup?.
    node.register_process_fn("Elixir.Rusty", "reply", |mut p, _args| async move {
        let m = p.recv().await.map_err(|x| Exception::exit(x.reason))?;
        if let Ok((_, from)) = <(Term, Pid)>::try_from(m) {
            p.send(from, atom("sup?"));
        }
        Ok(atom("ok"))
    });
    node.register_fn("Elixir.Rusty", "quit", |args: Vec<Term>| async move {
        Err(Exception::exit(
            args.into_iter().next().unwrap_or(Term::NIL),
        ))
    });
    let got = eval(
        &mut e,
        &format!("begin P = spawn('{me}', 'Elixir.Rusty', reply, []), P ! {{hi, self()}}, receive M -> M after 5000 -> timeout end end."),
    );
    assert_eq!(got, "'sup?'");
    // spawn_link of an unknown function: the link brings undef back.
    let got = eval(
        &mut e,
        &format!("begin process_flag(trap_exit, true), P = spawn_link('{me}', nomod, nofun, [1]), receive {{'EXIT', P, R}} -> R after 5000 -> timeout end end."),
    );
    assert_eq!(parse(&got), term!({undef, [{nomod, nofun, [1], []}]}));
    // spawn_monitor: the DOWN carries the function's exit reason.
    let got = eval(
        &mut e,
        &format!("begin {{P, R}} = spawn_monitor('{me}', 'Elixir.Rusty', quit, [bye]), receive {{'DOWN', R, process, P, Why}} -> Why after 5000 -> timeout end end."),
    );
    assert_eq!(got, "bye");
    // The linked process normal exit does not kill a non-trapping caller;
    // the process is really on the Rust node.
    let got = erl_term(
        &mut e,
        &format!("begin P = spawn_link('{me}', 'Elixir.Rusty', reply, []), P ! {{hi, self()}}, receive M -> {{node(P), M}} after 5000 -> timeout end end."),
    );
    assert_eq!(got, term!({(Term::Atom(me)), (atom("sup?"))}));
    // Elixir's Node.spawn_link/4 and Node.spawn_monitor/4.
    let got = erl_term(
        &mut e,
        &format!("begin P = 'Elixir.Node':spawn_link('{me}', 'Elixir.Rusty', reply, []), P ! {{hi, self()}}, receive 'sup?' = M -> M after 5000 -> timeout end end."),
    );
    assert_eq!(got, atom("sup?"));
    // A closure (Node.spawn(node, fn -> ... end)) cannot run on a Rust
    // node: the process exits with undef at once, the caller never hangs.
    let got = erl_term(
        &mut e,
        &format!("begin {{P, R}} = 'Elixir.Node':spawn_monitor('{me}', fun() -> ok end), receive {{'DOWN', R, process, P, {{Why, _}}}} -> Why after 5000 -> timeout end end."),
    );
    assert_eq!(got, atom("undef"));
    node.shutdown().await;
}
