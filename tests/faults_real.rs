//! Faults with real nodes (issue #9): a peer killed mid-stream, a peer
//! frozen past the tick time, a peer restarted under the same name, EPMD
//! restarted under running nodes, a connection cut in the middle of a
//! fragmented message, and a slow consumer. Each test asserts what a user
//! of a [`Node`] sees, with what a BEAM node does as the bar.

mod erl_eval;
use erl_eval::{erl_term, eval};

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use erldist::connection::control::{ControlMessage, DistMessage};
use erldist::connection::dist_header::DistEncoder;
use erldist::connection::driver::{self, LocalNodeConfig};
use erldist::epmd::EpmdClient;
use erldist::flags::DistFlags;
use erldist::handshake::{Cookie, NodeName};
use erldist::testing::{raw_names, require_erl, unique_name, wait_until, ErlNode, RealEpmd};
use erldist::{term, Atom, Node, NodeEvent, Pid, Term};

const COOKIE: &str = "faults_cookie";
const T: Duration = Duration::from_secs(15);

async fn rust_node_with(epmd_port: u16, ticktime: Duration) -> Node {
    Node::builder(&format!("{}@localhost", unique_name("rust")))
        .cookie(COOKIE)
        .epmd("localhost", epmd_port)
        .embedded_epmd(false)
        .net_ticktime(ticktime)
        .start()
        .await
        .expect("start the Rust node")
}

async fn rust_node(epmd: &RealEpmd) -> Node {
    rust_node_with(epmd.port(), Duration::from_secs(60)).await
}

fn erl_with(epmd_port: u16, args: &[&str]) -> ErlNode {
    tokio::task::block_in_place(|| ErlNode::start_with("erl", epmd_port, COOKIE, args))
        .expect("start erl")
}

fn erl_pid(node: &mut ErlNode, expr: &str) -> Pid {
    erl_term(node, expr).try_into().expect("a pid")
}

fn atom(s: &str) -> Term {
    Term::atom(s)
}

fn down(r: erldist::Reference, pid: Pid, reason: &str) -> Term {
    term!({(atom("DOWN")), (Term::Ref(Box::new(r))), process, (pid), (atom(reason))})
}

fn exit_msg(pid: Pid, reason: &str) -> Term {
    term!({(atom("EXIT")), (pid), (atom(reason))})
}

/// Registers `counter` on `slow`, which counts `{n, N, _}` in order
/// (exiting on any other) and answers `{done, From}` with `{count, N}`, and
/// `echo` on `healthy`, which answers `{From, M}` with `{echo, M}`.
fn start_counter_and_echo(slow: &mut ErlNode, healthy: &mut ErlNode) {
    eval(
        slow,
        "register(counter, spawn(fun() -> C = fun Loop(N) -> receive {n, N, _} -> Loop(N + 1); {done, F} -> F ! {count, N - 1}; Other -> exit({out_of_order, N, Other}) end end, C(1) end)).",
    );
    eval(
        healthy,
        "register(echo, spawn(fun L() -> receive {From, M} -> From ! {echo, M}, L() end end)).",
    );
}

/// Waits for the `nodedown` of `peer` on `events`; its reason.
async fn node_down(events: &mut tokio::sync::broadcast::Receiver<NodeEvent>, peer: &str) -> String {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Down(n, reason)) if n.as_str() == peer => return reason,
                Ok(_) => {}
                Err(e) => panic!("monitor_nodes: {e}"),
            }
        }
    };
    tokio::time::timeout(T, wait)
        .await
        .unwrap_or_else(|_| panic!("no nodedown for {peer}"))
}

/// 1. A peer killed with SIGKILL while it streams: everything it sent
/// before the kill arrives once and in order, then the link and the
/// monitor fire with `noconnection` (after the last message, never
/// before), `nodedown` is reported, and a Rust process streaming the other
/// way is not stuck: its monitor fires too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_fires_links_and_monitors_once_and_loses_no_order() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl_with(epmd.port(), &[]);
    let e_name = e.name().to_owned();
    let me = node.name();
    let mut events = node.monitor_nodes();

    let mut sink = node.process();
    sink.register("sink").unwrap();
    sink.trap_exit(true);
    // An Erlang process that streams {seq, N} to us as fast as it can,
    // once told to go.
    let streamer = erl_pid(
        &mut e,
        &format!(
            "spawn(fun() -> receive go -> ok end, \
             L = fun Loop(N) -> {{sink, '{me}'}} ! {{seq, N}}, Loop(N + 1) end, L(1) end)."
        ),
    );
    sink.link(streamer);
    let mref = sink.monitor(streamer);
    // A Rust process linked to the streamer that does not trap exits: it
    // dies with it, of noconnection, as an Erlang process would.
    let linked = node.spawn(move |mut p| async move {
        p.link(streamer);
        let _ = p.recv().await;
    });
    let mut watcher = node.process();
    let vref = watcher.monitor(linked);

    // The other direction: a Rust process streams to an Erlang sink and
    // watches it with a monitor.
    let erl_sink = erl_pid(&mut e, "spawn(fun L() -> receive _ -> L() end end).");
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    node.spawn(move |mut p| async move {
        let r = p.monitor(erl_sink);
        let mut n = 0u64;
        let down = loop {
            if let Some(m) = p.try_recv() {
                break m;
            }
            n += 1;
            p.send(erl_sink, term!({seq, (n as i64)}));
            if n % 64 == 0 {
                // Fast, but not faster than the peer can take it.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        let _ = done_tx.send((r, n, down));
    });

    // Links and monitors are set up before `go` (one connection, in order).
    sink.send(streamer, term!(go));
    let mut next = 1i64;
    let mut killed = false;
    let mut exit = None;
    let mut down_msg = None;
    while exit.is_none() || down_msg.is_none() {
        let m = tokio::time::timeout(T, sink.recv())
            .await
            .unwrap_or_else(|_| panic!("stuck after {next} messages"))
            .unwrap();
        if let Ok((tag, n)) = <(Atom, i64)>::try_from(m.clone()) {
            assert_eq!(tag.as_str(), "seq");
            assert!(
                exit.is_none() && down_msg.is_none(),
                "{{seq, {n}}} after the link or monitor fired"
            );
            assert_eq!(n, next, "a gap or a duplicate");
            next += 1;
            if n == 20_000 && !killed {
                // kill -9, mid-stream.
                tokio::task::block_in_place(|| e.kill());
                killed = true;
            }
        } else if m.as_tuple().is_some_and(|t| t[0].is_atom("EXIT")) {
            assert_eq!(m, exit_msg(streamer, "noconnection"));
            assert!(exit.replace(m).is_none(), "two EXITs");
        } else {
            assert_eq!(m, down(mref, streamer, "noconnection"));
            assert!(down_msg.replace(m).is_none(), "two DOWNs");
        }
    }
    assert!(killed, "the stream ended before the kill");
    eprintln!("received {} messages before the kill took", next - 1);
    // Nothing more: no late or repeated message.
    let late = sink.recv_timeout(Duration::from_millis(500)).await.unwrap();
    assert_eq!(late, None);
    node_down(&mut events, &e_name).await;
    assert!(node.nodes().is_empty());
    let d = tokio::time::timeout(T, watcher.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d, down(vref, linked, "noconnection"));

    // The Rust streamer was not blocked: its monitor fired.
    let (r, sent, down_seen) = tokio::time::timeout(T, done_rx)
        .await
        .expect("the Rust streamer is stuck")
        .unwrap();
    assert_eq!(down_seen, down(r, erl_sink, "noconnection"));
    assert!(sent > 0);
    node.shutdown().await;
}

/// 2. A peer frozen with SIGSTOP past the tick time: it is declared down
/// within about the tick time, links and monitors fire with
/// `noconnection`; after SIGCONT the two nodes connect again.
///
/// BEAM (observed with two `erl` nodes at `net_ticktime` 4, one frozen):
/// the other logs "Node ... not responding, Removing (timedout)
/// connection" and reports `{nodedown, N, [{nodedown_reason,
/// net_tick_timeout}]}` after 5 s, the monitor fires with `noconnection`;
/// right after SIGCONT, `net_adm:ping/1` answers `pong`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_past_the_tick_time_is_nodedown_and_heals_after_sigcont() {
    if !require_erl() {
        return;
    }
    let tick = Duration::from_secs(4);
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node_with(epmd.port(), tick).await;
    let mut e = erl_with(epmd.port(), &["-kernel", "net_ticktime", "4"]);
    let e_name = e.name().to_owned();
    let mut events = node.monitor_nodes();
    let target = erl_pid(&mut e, "spawn(fun() -> receive stop -> ok end end).");
    let mut watcher = node.process();
    watcher.trap_exit(true);
    watcher.link(target);
    let mref = watcher.monitor(target);
    // Up and idle for more than a tick time: ticks keep it up.
    tokio::time::sleep(tick + Duration::from_secs(1)).await;
    assert!(node.nodes().contains(&Atom::from(e_name.as_str())));
    assert_eq!(watcher.try_recv(), None);

    let frozen = e.freeze().expect("freeze the node");
    let started = Instant::now();
    let reason = node_down(&mut events, &e_name).await;
    let took = started.elapsed();
    assert!(reason.contains("tick"), "down for another reason: {reason}");
    // OTP declares a peer down after between 3/4 and 5/4 of the tick time;
    // a loaded machine adds a few seconds at most.
    assert!(
        took >= Duration::from_secs(2) && took <= Duration::from_secs(10),
        "declared down after {took:?}"
    );
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(
            tokio::time::timeout(T, watcher.recv())
                .await
                .expect("link and monitor fire")
                .unwrap(),
        );
    }
    assert!(got.contains(&exit_msg(target, "noconnection")), "{got:?}");
    assert!(got.contains(&down(mref, target, "noconnection")), "{got:?}");
    assert!(node.nodes().is_empty());

    drop(frozen);
    // Heals: the resumed node drops its dead connection and a new one
    // comes up (a ping can race the peer's own cleanup: retry a while).
    let deadline = Instant::now() + Duration::from_secs(30);
    while !node.ping(&e_name).await {
        assert!(Instant::now() < deadline, "no pong after SIGCONT");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let me = node.name();
    assert_eq!(eval(&mut e, &format!("net_adm:ping('{me}').")), "pong");
    // The link broke on the BEAM side too: the target died of it.
    let r = watcher.monitor(target);
    let d = tokio::time::timeout(T, watcher.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d, down(r, target, "noproc"));
    // Links and monitors work again.
    let worker = erl_pid(&mut e, "spawn(fun() -> receive stop -> ok end end).");
    watcher.link(worker);
    let r = watcher.monitor(worker);
    watcher.send(worker, term!(stop));
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(
            tokio::time::timeout(T, watcher.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    // (BEAM sends the link's exit before the monitor's DOWN.)
    assert!(got.contains(&exit_msg(worker, "normal")), "{got:?}");
    assert!(got.contains(&down(r, worker, "normal")), "{got:?}");
    node.shutdown().await;
}

/// 3. A peer restarted under the same name is a new incarnation: a new
/// creation; a PID of the old one is dead even where the new node has a
/// process with the same numbers.
///
/// BEAM (observed: node `b` holding `<X.9.0>` of `a`, `a` killed and
/// restarted, `<X.9.0>` again the new `a`'s process of the same role):
/// `erlang:monitor(process, Old)` gives `{'DOWN', R, process, Old,
/// noproc}`, `link(Old)` with trap_exit gives `{'EXIT', Old, noproc}`, and
/// `Old ! hello` is dropped: the new `<X.9.0>` never gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_is_a_new_incarnation_and_old_pids_are_dead() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl_with(epmd.port(), &[]);
    let e_name = e.name().to_owned();
    let mut events = node.monitor_nodes();
    // The node's shell-like evaluator process: the restarted node has one
    // too, made the same way.
    let old = erl_pid(&mut e, "self().");
    assert!(node.ping(&e_name).await);
    tokio::task::block_in_place(|| e.kill());
    node_down(&mut events, &e_name).await;

    let mut again =
        tokio::task::block_in_place(|| ErlNode::start_exact(&e_name, epmd.port(), COOKIE, &[]))
            .expect("restart erl");
    let new = erl_pid(&mut again, "self().");
    assert_ne!(new.creation, old.creation, "a new creation");
    eprintln!("old {old:?}, new {new:?}");

    let mut me = node.process();
    me.trap_exit(true);
    // A message to the old pid is dropped, not given to the new process
    // that may have the same numbers.
    me.send(old, term!(for_the_old_one));
    // A monitor of the old pid fires at once with noproc; on one
    // connection, so the message above was handled first.
    let r = me.monitor(old);
    let d = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
    assert_eq!(d, down(r, old, "noproc"));
    assert_eq!(
        erl_term(&mut again, "element(2, process_info(self(), messages))."),
        Term::List(vec![]),
        "the new incarnation got a message sent to the old one"
    );
    // A link to it breaks at once with noproc.
    me.link(old);
    let m = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
    assert_eq!(m, exit_msg(old, "noproc"));
    // The new pids work: messages, and a monitor that fires with the
    // real reason.
    me.send(new, term!({hello, (me.pid())}));
    assert_eq!(
        eval(
            &mut again,
            "receive {hello, _} -> got after 5000 -> timeout end."
        ),
        "got"
    );
    let worker = erl_pid(
        &mut again,
        "spawn(fun() -> receive go -> exit(bye) end end).",
    );
    let r = me.monitor(worker);
    me.send(worker, term!(go));
    let d = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
    assert_eq!(d, down(r, worker, "bye"));
    node.shutdown().await;
}

/// 3b. The other way round: an erldist node restarted under the same
/// name, seen from a BEAM node holding a PID of its old incarnation. The
/// bar is the BEAM's own behaviour above: `noproc` for a monitor and a
/// link, and the message dropped, not given to the new process with the
/// same numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_erldist_node_drops_what_is_sent_to_its_old_pids() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let name = format!("{}@localhost", unique_name("rust"));
    let start = || async {
        let deadline = Instant::now() + T;
        loop {
            // The old registration may take EPMD a moment to release.
            match Node::builder(&name)
                .cookie(COOKIE)
                .epmd("localhost", epmd.port())
                .embedded_epmd(false)
                .start()
                .await
            {
                Ok(n) => return n,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("restart: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("restart the Rust node: {e}"),
            }
        }
    };
    let first = start().await;
    let old_proc = first.process();
    let old = old_proc.pid();
    let mut e = erl_with(epmd.port(), &[]);
    assert_eq!(eval(&mut e, &format!("net_adm:ping('{name}').")), "pong");
    drop(old_proc);
    first.shutdown().await;
    let gone = format!("lists:member('{name}', nodes()).");
    let deadline = Instant::now() + T;
    while eval(&mut e, &gone) != "false" {
        assert!(
            Instant::now() < deadline,
            "the BEAM node never saw nodedown"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let second = start().await;
    assert_ne!(second.creation(), first.creation(), "a new creation");
    let mut new_proc = second.process();
    let new = new_proc.pid();
    eprintln!("old {old:?}, new {new:?}");
    let got = eval(
        &mut e,
        &format!(
            "begin process_flag(trap_exit, true), Old = {old}, Old ! leak, \
             R = erlang:monitor(process, Old), \
             D = receive {{'DOWN', R, process, Old, W}} -> W after 5000 -> timeout end, \
             link(Old), \
             E = receive {{'EXIT', Old, W2}} -> W2 after 5000 -> timeout end, \
             {{D, E}} end.",
            old = erldist::testing::erl_literal(&Term::Pid(old))
        ),
    );
    assert_eq!(got, "{noproc,noproc}");
    // The monitor's answer came after the message on the same connection:
    // had it been delivered, it would be there.
    assert_eq!(
        new_proc.try_recv(),
        None,
        "the new process got the old one's message"
    );
    // The new pid works.
    eval(
        &mut e,
        &format!(
            "{} ! hello.",
            erldist::testing::erl_literal(&Term::Pid(new))
        ),
    );
    let m = tokio::time::timeout(T, new_proc.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m, atom("hello"));
    second.shutdown().await;
}

/// A real `epmd -port N` on a given port, killed on drop.
struct EpmdOnPort(Child);

impl EpmdOnPort {
    /// Starts it on `port` (just freed by the previous one) and waits
    /// until it answers.
    fn start(port: u16) -> EpmdOnPort {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut child = Command::new("epmd")
                .arg("-port")
                .arg(port.to_string())
                .env_remove("ERL_EPMD_RELAXED_COMMAND_CHECK")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("run epmd");
            let up = wait_until(Duration::from_secs(3), || {
                !matches!(child.try_wait(), Ok(None))
                    || raw_names(port, Duration::from_millis(500)).is_ok()
            });
            if up && matches!(child.try_wait(), Ok(None)) {
                return EpmdOnPort(child);
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                Instant::now() < deadline,
                "epmd would not restart on {port}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn names(port: u16) -> String {
        let reply = raw_names(port, Duration::from_secs(2)).unwrap_or_default();
        String::from_utf8_lossy(reply.get(4..).unwrap_or_default()).into_owned()
    }
}

impl Drop for EpmdOnPort {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// 4. EPMD restarted while nodes run: connections up keep working, and
/// the nodes register again with the new EPMD, so new peers find them.
///
/// BEAM (`erl_epmd.erl`, and observed here with the real node): when its
/// EPMD connection closes, the node tries to register again every 2 s,
/// keeps its creation (it ignores the one the new EPMD hands out) and
/// keeps its connections; once the new EPMD runs it is listed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epmd_restarted_under_running_nodes_they_stay_connected_and_register_again() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let port = epmd.port();
    let node = rust_node(&epmd).await;
    let mut e = erl_with(port, &[]);
    let rust_alive = node.name().as_str().split('@').next().unwrap().to_owned();
    let e_alive = e.alive_name().to_owned();
    let creation = node.creation();
    eval(
        &mut e,
        "register(echo, spawn(fun L() -> receive {From, M} -> From ! {echo, M}, L() end end)).",
    );
    let mut me = node.process();
    let echo = (Atom::from("echo"), Atom::from(e.name()));
    me.send(echo, term!({(me.pid()), one}));
    let m = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
    assert_eq!(m, term!({echo, one}));

    drop(epmd);
    assert!(raw_names(port, Duration::from_millis(500)).is_err());
    // Connections up do not need EPMD.
    me.send(echo, term!({(me.pid()), two}));
    let m = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
    assert_eq!(m, term!({echo, two}));

    let _epmd2 = tokio::task::block_in_place(|| EpmdOnPort::start(port));
    // Both nodes register again (BEAM within its 2 s retry).
    let both = tokio::task::block_in_place(|| {
        wait_until(Duration::from_secs(20), || {
            let names = EpmdOnPort::names(port);
            names.contains(&format!("name {rust_alive} "))
                && names.contains(&format!("name {e_alive} "))
        })
    });
    assert!(
        both,
        "not both registered again: {}",
        EpmdOnPort::names(port)
    );
    assert_eq!(node.creation(), creation, "the creation is kept");
    // The old connection still works, and a new node finds us by name.
    me.send(echo, term!({(me.pid()), three}));
    let m = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
    assert_eq!(m, term!({echo, three}));
    let mut newcomer = erl_with(port, &[]);
    let me_name = node.name();
    assert_eq!(
        eval(&mut newcomer, &format!("net_adm:ping('{me_name}').")),
        "pong"
    );
    assert!(node.ping(newcomer.name()).await);
    node.shutdown().await;
}

/// A bare distribution peer made of erldist's own parts (handshake,
/// `DistEncoder`), named `name` with `creation`: it connects to `target`
/// and sends raw frames.
struct RawPeer {
    handle: driver::ConnectionHandle,
    /// What the target sends; kept so the connection stays readable.
    _events: tokio::sync::mpsc::Receiver<driver::ConnectionEvent>,
    encoder: DistEncoder,
    pid: Pid,
}

impl RawPeer {
    async fn connect(epmd_port: u16, name: &str, creation: u32, target: &str) -> RawPeer {
        let node_name = NodeName::parse(name).unwrap();
        let mut config = LocalNodeConfig::new(node_name, creation, Cookie::new(COOKIE).unwrap());
        config.flags |= DistFlags::FRAGMENTS;
        config.epmd = EpmdClient::with_address("127.0.0.1", epmd_port);
        let conn = driver::connect(&config, &NodeName::parse(target).unwrap())
            .await
            .expect("raw peer connects");
        let flags = conn.outcome().flags;
        assert!(flags.contains(DistFlags::FRAGMENTS), "fragments agreed");
        let (handle, events) = conn.into_parts();
        RawPeer {
            handle,
            _events: events,
            encoder: DistEncoder::new(flags),
            pid: Pid {
                node: Atom::from(name),
                id: 1,
                serial: 0,
                creation,
            },
        }
    }

    /// The frames of `msg` sent to the process registered as `to`.
    fn reg_send(&mut self, to: &str, msg: Term) -> Vec<bytes::Bytes> {
        let control = ControlMessage::RegSend {
            from: self.pid,
            to_name: Atom::from(to),
        };
        let m = DistMessage::with_payload(control, msg).unwrap();
        self.encoder.encode(&m).unwrap()
    }
}

/// 3c. A peer restarted while its old connection still looks up (a
/// frozen node killed and restarted, whose old socket no one has seen
/// close): the new incarnation's handshake replaces the old connection.
/// The same two raw connections are made to a real node and to ours,
/// and both must react the same way: the new connection is accepted, the
/// old one is closed, and a link and a monitor to the old incarnation
/// fire with `noconnection`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_restarted_while_its_old_connection_looks_up_replaces_it() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl_with(epmd.port(), &[]);

    // The real node.
    let name = format!("{}@localhost", unique_name("raw"));
    let old = RawPeer::connect(epmd.port(), &name, 7, e.name()).await;
    eval(
        &mut e,
        &format!(
            "register(watch, spawn(fun() -> process_flag(trap_exit, true), P = {p}, link(P), \
             erlang:monitor(process, P), receive A -> receive B -> receive {{get, F}} -> F ! [A, B] end end end end)).",
            p = erldist::testing::erl_literal(&Term::Pid(old.pid))
        ),
    );
    let new = RawPeer::connect(epmd.port(), &name, 8, e.name()).await;
    let beam = erl_term(
        &mut e,
        "begin watch ! {get, self()}, receive L -> L after 10000 -> timeout end end",
    );
    let Term::List(beam) = beam else {
        panic!("not two messages: {beam}")
    };
    assert!(
        beam.contains(&exit_msg(old.pid, "noconnection")),
        "{beam:?}"
    );
    assert!(
        beam.iter().any(|m| m
            .as_tuple()
            .is_some_and(|t| t[0].is_atom("DOWN") && t[4].is_atom("noconnection"))),
        "{beam:?}"
    );
    tokio::time::timeout(T, old.handle.closed())
        .await
        .expect("the real node closes the old connection");
    drop((old, new));

    // Ours.
    let name = format!("{}@localhost", unique_name("raw"));
    let me_name = node.name();
    let old = RawPeer::connect(epmd.port(), &name, 7, me_name.as_str()).await;
    let mut me = node.process();
    me.trap_exit(true);
    me.link(old.pid);
    let r = me.monitor(old.pid);
    let mut new = RawPeer::connect(epmd.port(), &name, 8, me_name.as_str()).await;
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(tokio::time::timeout(T, me.recv()).await.unwrap().unwrap());
    }
    assert!(got.contains(&exit_msg(old.pid, "noconnection")), "{got:?}");
    assert!(got.contains(&down(r, old.pid, "noconnection")), "{got:?}");
    tokio::time::timeout(T, old.handle.closed())
        .await
        .expect("we close the old connection");
    // The new connection works.
    me.register("sink").unwrap();
    let frames = new.reg_send("sink", atom("from_the_new_one"));
    new.handle.send_frames(frames).await.unwrap();
    let m = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
    assert_eq!(m, atom("from_the_new_one"));
    assert!(node.nodes().contains(&Atom::from(name.as_str())));
    node.shutdown().await;
}

/// 5. The connection closes in the middle of a fragmented message: no
/// part of it is delivered, the peer is reported down, its pending
/// fragments go with the connection (a new connection from it reuses the
/// sequence id cleanly), and other connections are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_fragmented_message_delivers_nothing_partial() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl_with(epmd.port(), &[]);
    let me = node.name();
    let mut events = node.monitor_nodes();
    let mut sink = node.process();
    sink.register("sink").unwrap();
    // A real node, connected all along.
    assert!(node.ping(e.name()).await);
    eval(
        &mut e,
        "register(echo, spawn(fun L() -> receive {From, M} -> From ! {echo, M}, L() end end)).",
    );

    // A 1 MiB message: 17 fragments of 64 KiB. Send the first 8, then a
    // small whole message (fragments of one message may be interleaved
    // with others), then close.
    let big = |byte: u8| Term::binary(vec![byte; 1 << 20]);
    let raw_name = format!("{}@localhost", unique_name("raw"));
    let mut raw = RawPeer::connect(epmd.port(), &raw_name, 7, me.as_str()).await;
    let frames = raw.reg_send("sink", big(1));
    assert!(frames.len() > 10, "fragmented: {} frames", frames.len());
    raw.handle.send_frames(frames[..8].to_vec()).await.unwrap();
    let marker = raw.reg_send("sink", atom("marker"));
    raw.handle.send_frames(marker).await.unwrap();
    // The marker arrived, so the 8 fragments before it did too.
    let got = tokio::time::timeout(T, sink.recv()).await.unwrap().unwrap();
    assert_eq!(got, atom("marker"));
    raw.handle.close();
    node_down(&mut events, &raw_name).await;
    let got = sink.recv_timeout(Duration::from_secs(1)).await.unwrap();
    assert!(got.is_none(), "a partial message was delivered");
    assert!(
        node.nodes().contains(&Atom::from(e.name())),
        "the real node's connection went down too"
    );

    // The same peer connects again; its new encoder starts the sequence
    // ids over. The message arrives whole, the old fragments are gone.
    let mut raw = RawPeer::connect(epmd.port(), &raw_name, 8, me.as_str()).await;
    let frames = raw.reg_send("sink", big(2));
    raw.handle.send_frames(frames).await.unwrap();
    let got = tokio::time::timeout(T, sink.recv()).await.unwrap().unwrap();
    assert!(got.exact_eq(&big(2)), "the second message arrives intact");
    raw.handle.close();

    // The real node is served all along: a 1 MiB message both ways (in
    // fragments from it).
    sink.send(
        (Atom::from("echo"), Atom::from(e.name())),
        Term::Tuple(vec![Term::Pid(sink.pid()), big(3)]),
    );
    let got = tokio::time::timeout(T, sink.recv()).await.unwrap().unwrap();
    assert!(got.exact_eq(&Term::Tuple(vec![atom("echo"), big(3)])));
    node.shutdown().await;
}

/// 5b. The same with a real sender: a node streaming multi-megabyte
/// (fragmented) messages is killed while one is in flight. Every message
/// delivered is whole and in order; the cut one is not delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_sender_killed_mid_fragmented_message_delivers_only_whole_ones() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl_with(epmd.port(), &[]);
    let e_name = e.name().to_owned();
    let me = node.name();
    let mut events = node.monitor_nodes();
    let mut sink = node.process();
    sink.register("sink").unwrap();
    const SIZE: usize = 4 << 20;
    eval(
        &mut e,
        &format!(
            "spawn(fun() -> L = fun Loop(N) -> {{sink, '{me}'}} ! {{big, N, binary:copy(<<(N rem 256)>>, {SIZE})}}, Loop(N + 1) end, L(1) end)."
        ),
    );
    let mut next = 1i64;
    loop {
        let m = match tokio::time::timeout(Duration::from_secs(3), sink.recv()).await {
            Ok(m) => m.unwrap(),
            Err(_) => break,
        };
        let t = m.as_tuple().expect("a tuple");
        assert_eq!(t.len(), 3);
        assert_eq!(t[1], Term::from(next), "order");
        let bin = t[2].as_binary().expect("a binary");
        assert_eq!(bin.len(), SIZE, "message {next} is partial");
        let byte = (next % 256) as u8;
        assert!(bin.iter().all(|b| *b == byte), "message {next} is corrupt");
        if next == 5 {
            // A 4 MiB message is 64 fragments: the kill lands inside one
            // (or between two, which is fine too).
            tokio::task::block_in_place(|| e.kill());
        }
        next += 1;
    }
    assert!(next > 5, "only {} messages before the kill", next - 1);
    node_down(&mut events, &e_name).await;
    node.shutdown().await;
}

/// 6. A slow consumer: a Rust process that does not read sees its mailbox
/// grow (observable with `mailbox_len`) without blocking the sender; a
/// Rust sender sending to a frozen peer is never blocked, and messages to
/// and from a healthy peer flow meanwhile. Once the peer resumes, it gets
/// everything, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_grows_its_mailbox_and_a_frozen_peer_blocks_nobody() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut slow = erl_with(epmd.port(), &[]);
    let mut healthy = erl_with(epmd.port(), &[]);
    let me = node.name();

    // A Rust process that does not read: the Erlang sender finishes at
    // once, the mailbox holds everything.
    let lazy = node.process();
    lazy.register("lazy").unwrap();
    let sent = eval(
        &mut healthy,
        &format!("begin [{{lazy, '{me}'}} ! {{n, I}} || I <- lists:seq(1, 20000)], done end."),
    );
    assert_eq!(sent, "done");
    let grown = tokio::task::block_in_place(|| wait_until(T, || lazy.mailbox_len() == 20_000));
    assert!(grown, "mailbox_len is {}", lazy.mailbox_len());

    // A counter on the slow node, and an echo on the healthy one.
    start_counter_and_echo(&mut slow, &mut healthy);
    let mut me_p = node.process();
    let counter = (Atom::from("counter"), Atom::from(slow.name()));
    let echo = (Atom::from("echo"), Atom::from(healthy.name()));
    assert!(node.ping(slow.name()).await);
    let frozen = slow.freeze().expect("freeze the node");

    // 64 MiB to the frozen node: far more than the socket buffers hold.
    // Sending never blocks.
    let chunk = Term::binary(vec![0u8; 64 * 1024]);
    let started = Instant::now();
    for i in 1..=1024i64 {
        me_p.send(
            counter,
            Term::Tuple(vec![atom("n"), Term::from(i), chunk.clone()]),
        );
    }
    me_p.send(counter, term!({done, (me_p.pid())}));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "sending to a frozen peer took {:?}",
        started.elapsed()
    );
    // Meanwhile the healthy peer answers, both ways.
    for i in 0..20i64 {
        me_p.send(echo, term!({(me_p.pid()), (i)}));
        let m = tokio::time::timeout(T, me_p.recv())
            .await
            .expect("the healthy peer is blocked by the frozen one")
            .unwrap();
        assert_eq!(m, term!({echo, (i)}));
    }
    let p = eval(&mut healthy, &format!("net_adm:ping('{me}')."));
    assert_eq!(p, "pong");

    // Resumed, the slow node gets all of it, in order.
    drop(frozen);
    let m = tokio::time::timeout(Duration::from_secs(60), me_p.recv())
        .await
        .expect("the frozen peer's messages never arrived")
        .unwrap();
    assert_eq!(m, term!({count, 1024}));
    // The lazy mailbox is still all there, in order.
    let mut lazy = lazy;
    for i in 1..=20_000i64 {
        assert_eq!(lazy.try_recv(), Some(term!({n, (i)})));
    }
    assert_eq!(lazy.mailbox_len(), 0);
    node.shutdown().await;
}

/// 6b. A frozen peer with a backlog (its socket full, our writes stuck)
/// can still be disconnected at once: nodedown now, monitors fire with
/// `noconnection`, not after the tick time.
///
/// BEAM (observed: `b` sending 16 KiB binaries every 1 ms to a frozen
/// `a` for 3 s): `erlang:disconnect_node(a)` returns `true` at once,
/// `nodedown` and `{'DOWN', _, _, _, noconnection}` follow within the
/// millisecond. (BEAM also suspends the sending process meanwhile, busy
/// dist port; erldist's `send` never waits, the backlog is kept in
/// memory, and a `send_paced` waiting on the busy connection stops
/// waiting when it goes down.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_backlogged_peer_can_be_disconnected_at_once() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut slow = erl_with(epmd.port(), &[]);
    let slow_name = slow.name().to_owned();
    let mut events = node.monitor_nodes();
    let target = erl_pid(&mut slow, "spawn(fun() -> receive stop -> ok end end).");
    let mut me = node.process();
    let r = me.monitor(target);
    assert!(node.ping(&slow_name).await);
    let _frozen = slow.freeze().expect("freeze the node");
    let chunk = Term::binary(vec![0u8; 16 * 1024]);
    // 32 MiB, one at a time, so that they reach the connection one by one
    // and fill its queue (1024 writes), not in one batch.
    for _ in 0..2048 {
        me.send(target, chunk.clone());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // A paced sender waits on the busy connection.
    let pacer = node.process();
    let paced = tokio::spawn(async move { pacer.send_paced(target, term!(late)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !paced.is_finished(),
        "send_paced did not wait on a busy connection"
    );
    let started = Instant::now();
    tokio::time::timeout(T, node.disconnect(&slow_name))
        .await
        .expect("disconnect hangs");
    node_down(&mut events, &slow_name).await;
    tokio::time::timeout(T, paced)
        .await
        .expect("send_paced still waits on a connection that is gone")
        .unwrap();
    let d = tokio::time::timeout(T, me.recv()).await.unwrap().unwrap();
    assert_eq!(d, down(r, target, "noconnection"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "disconnected after {:?}",
        started.elapsed()
    );
    assert!(!node.nodes().contains(&Atom::from(slow_name.as_str())));
    node.shutdown().await;
}

/// 6c. Back-pressure, as BEAM's busy distribution port: a Rust process
/// streaming to a frozen peer with `send_paced` waits once what is queued
/// for that peer passes the busy limit, so its queue stays bounded, while
/// `send_nosuspend` refuses to queue more and another peer is served as
/// usual. Once the peer reads again, the stream goes on and arrives
/// whole, in order.
///
/// BEAM (observed, OTP's default limit of 1 MiB: a process on `b`
/// sending 64 KiB binaries to a frozen `a`): the sender is `suspended`
/// after 78 of them (about 5 MiB, most of it in the sockets),
/// `erlang:send_nosuspend/2` returns `false` meanwhile, and the sender
/// goes on when `a` is thawed. erldist, with a limit of 256 KiB here,
/// waits after about 100 (2 MiB of them in its writer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paced_sender_waits_on_a_busy_connection_and_goes_on_when_it_drains() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = Node::builder(&format!("{}@localhost", unique_name("rust")))
        .cookie(COOKIE)
        .epmd("localhost", epmd.port())
        .embedded_epmd(false)
        .dist_buf_busy_limit(256 * 1024)
        .start()
        .await
        .expect("start the Rust node");
    let mut slow = erl_with(epmd.port(), &[]);
    let mut healthy = erl_with(epmd.port(), &[]);
    start_counter_and_echo(&mut slow, &mut healthy);
    let counter = (Atom::from("counter"), Atom::from(slow.name()));
    let nobody = (Atom::from("nobody"), Atom::from(slow.name()));
    let echo = (Atom::from("echo"), Atom::from(healthy.name()));
    assert!(node.ping(slow.name()).await);
    let mut other = node.process();
    assert!(other.send_nosuspend(nobody, term!(not_busy)));
    let frozen = slow.freeze().expect("freeze the node");

    // 64 MiB in 64 KiB messages, paced.
    const N: usize = 1024;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut streamer = node.process();
    let streamer_pid = streamer.pid();
    let progress = sent.clone();
    let stream = tokio::spawn(async move {
        let chunk = Term::binary(vec![0u8; 64 * 1024]);
        for i in 1..=N {
            streamer
                .send_paced(counter, term!({n, (i as i64), (chunk.clone())}))
                .await;
            progress.store(i, std::sync::atomic::Ordering::SeqCst);
        }
        streamer.send(counter, term!({done, (streamer_pid)}));
        streamer.recv().await
    });

    // It stops: the sender waits.
    let mut last = usize::MAX;
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = sent.load(std::sync::atomic::Ordering::SeqCst);
        if now == last {
            break;
        }
        assert!(started.elapsed() < T, "the paced sender never waits");
        last = now;
    }
    // Sockets and the writer hold a few MiB; the queue no more than the
    // limit and one message.
    assert!(
        last < N / 4,
        "{last} of {N} 64 KiB messages sent to a frozen peer"
    );
    assert!(!stream.is_finished());
    // Busy: nothing more is queued without waiting, from a process or
    // from the node.
    assert!(!other.send_nosuspend(nobody, term!(busy)));
    assert!(!node.send_nosuspend(nobody, term!(busy)));
    let waiting_node = node.clone();
    let node_paced =
        tokio::spawn(async move { waiting_node.send_paced(nobody, term!(paced)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!node_paced.is_finished(), "Node::send_paced did not wait");
    // Another peer is served meanwhile, both ways.
    for i in 0..5i64 {
        assert!(other.send_nosuspend(echo, term!({(other.pid()), (i)})));
        let m = tokio::time::timeout(T, other.recv())
            .await
            .expect("the healthy peer is blocked by the busy one")
            .unwrap();
        assert_eq!(m, term!({echo, (i)}));
    }

    // Thawed, the stream goes on and arrives whole, in order.
    drop(frozen);
    let count = tokio::time::timeout(Duration::from_secs(60), stream)
        .await
        .expect("the paced sender never went on")
        .unwrap()
        .unwrap();
    assert_eq!(count, term!({count, (N as i64)}));
    tokio::time::timeout(T, node_paced)
        .await
        .expect("Node::send_paced never went on")
        .unwrap();
    assert!(other.send_nosuspend(nobody, term!(not_busy)));
    node.shutdown().await;
}
