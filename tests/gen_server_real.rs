//! gen_server against real `erl` (OTP 25) and Elixir nodes: Rust calling
//! OTP servers (replies, servers dying mid-call, timeouts, unknown names,
//! node down), and Erlang/Elixir calling a Rust server.

mod erl_eval;
use erl_eval::eval;

use std::time::{Duration, Instant};

use erldist::node::gen_server::{self, CallError, CallReply, Caller, Flow, GenServer};
use erldist::testing::{require_elixir, require_erl, unique_name, ErlNode, RealEpmd};
use erldist::{term, Atom, Node, Process, Term};

const COOKIE: &str = "gen_cookie";

async fn rust_node(epmd: &RealEpmd) -> Node {
    Node::builder(&format!("{}@localhost", unique_name("rust")))
        .cookie(COOKIE)
        .epmd("localhost", epmd.port())
        .embedded_epmd(false)
        .start()
        .await
        .expect("start the Rust node")
}

fn erl(epmd: &RealEpmd) -> ErlNode {
    tokio::task::block_in_place(|| ErlNode::start("erl", epmd.port(), COOKIE)).expect("start erl")
}

/// An Erlang expression for `t` (pids included): binary_to_term of its bytes.
fn erl_expr(t: impl Into<Term>) -> String {
    erldist::testing::erl_literal(&t.into())
}

fn parse(text: &str) -> Term {
    text.parse().unwrap_or_else(|e| panic!("parse {text}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_calls_otp_servers() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl(&epmd);
    let en = Atom::from(e.name());
    let mut me = node.process();
    // A real gen_server, by {Name, Node}.
    let apps = me
        .call(
            (Atom::from("application_controller"), en),
            term!(which_applications),
        )
        .await
        .expect("which_applications");
    assert!(apps.to_string().contains("kernel"), "{apps}");
    // A gen_server by pid, with cast: an Elixir-free counter made of
    // gen_server's own protocol handler, gen:reply/2.
    eval(
        &mut e,
        "begin register(counter, spawn(fun() -> Loop = fun Loop(N) -> receive {'$gen_call', From, get} -> gen:reply(From, N), Loop(N); {'$gen_cast', {add, K}} -> Loop(N + K); {'$gen_call', From, {slow, T}} -> timer:sleep(T), gen:reply(From, late), Loop(N); {'$gen_call', _, die} -> exit(boom) end end, Loop(0) end)) end.",
    );
    me.cast((Atom::from("counter"), en), term!({add, 5}));
    assert_eq!(
        me.call((Atom::from("counter"), en), term!(get))
            .await
            .unwrap(),
        term!(5)
    );
    // Timeout; the late reply (sent by gen:reply to the alias) is dropped.
    let r = me
        .call_timeout(
            (Atom::from("counter"), en),
            term!({slow, 300}),
            Some(Duration::from_millis(100)),
        )
        .await;
    assert_eq!(r, Err(CallError::Timeout));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(me.mailbox_len(), 0, "late reply dropped");
    // The server dies mid-call: its exit reason.
    assert_eq!(
        me.call((Atom::from("counter"), en), term!(die)).await,
        Err(CallError::Exit(term!(boom)))
    );
    // Unknown name: noproc at once (the peer answers the monitor).
    let t0 = Instant::now();
    assert_eq!(
        me.call((Atom::from("counter"), en), term!(get)).await,
        Err(CallError::NoProc)
    );
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    // A node that does not exist: nodedown, not a timeout.
    let r = me.call(("x", "nobody_here@localhost"), term!(get)).await;
    assert_eq!(
        r,
        Err(CallError::NodeDown(Atom::from("nobody_here@localhost")))
    );
    // The node dies mid-call.
    eval(
        &mut e,
        "register(sleeper, spawn(fun() -> receive _ -> timer:sleep(infinity) end end)).",
    );
    let killer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        tokio::task::block_in_place(|| e.kill());
    });
    let r = me
        .call_timeout((Atom::from("sleeper"), en), term!(get), None)
        .await;
    assert_eq!(r, Err(CallError::NodeDown(en)));
    assert_eq!(r.unwrap_err().reason(), term!({nodedown, (en)}));
    killer.await.unwrap();
    node.shutdown().await;
}

struct Kv(Term);

impl GenServer for Kv {
    async fn handle_call(&mut self, req: Term, _from: Caller, _p: &mut Process) -> CallReply {
        if req.is_atom("get") {
            CallReply::Reply(self.0.clone())
        } else if req.is_atom("crash") {
            CallReply::Stop(term!(boom))
        } else if req.is_atom("slow") {
            tokio::time::sleep(Duration::from_millis(500)).await;
            CallReply::Reply(term!(late))
        } else {
            CallReply::Reply(term!({error, unknown}))
        }
    }

    async fn handle_cast(&mut self, req: Term, _p: &mut Process) -> Flow {
        self.0 = req;
        Flow::Continue
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erlang_calls_a_rust_server() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let kv = gen_server::start(&node, Some("kv"), Kv(term!(none))).unwrap();
    let mut e = erl(&epmd);
    let me = node.name();
    assert_eq!(
        eval(&mut e, &format!("gen_server:call({{kv, '{me}'}}, get).")),
        "none"
    );
    eval(
        &mut e,
        &format!("gen_server:cast({{kv, '{me}'}}, {{some, <<\"v\">>}})."),
    );
    assert_eq!(
        parse(&eval(
            &mut e,
            &format!("gen_server:call({{kv, '{me}'}}, get).")
        )),
        term!({some, <<"v">>})
    );
    // By pid.
    assert_eq!(
        eval(&mut e, &format!("gen_server:call({}, get).", erl_expr(kv))),
        "{some,<<118>>}"
    );
    // The Erlang caller times out; its process is not polluted later.
    let got = eval(
        &mut e,
        &format!("begin R = (catch gen_server:call({{kv, '{me}'}}, slow, 100)), timer:sleep(700), {{element(1, element(2, R)), process_info(self(), message_queue_len)}} end."),
    );
    assert_eq!(got, "{timeout,{message_queue_len,0}}");
    // Unknown name on the Rust node: noproc at once.
    let got = eval(
        &mut e,
        &format!("begin {{T, R}} = timer:tc(fun() -> catch gen_server:call({{nobody, '{me}'}}, get) end), {{T < 1000000, element(1, element(2, R))}} end."),
    );
    assert_eq!(got, "{true,noproc}");
    // The Rust server stops mid-call: the caller exits with its reason.
    let got = eval(
        &mut e,
        &format!("element(1, element(2, catch gen_server:call({{kv, '{me}'}}, crash)))."),
    );
    assert_eq!(got, "boom");
    node.shutdown().await;
}

/// Elixir's `GenServer.call/2` and `cast/2` against the Rust server, and
/// Rust calling an Elixir `Agent`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elixir_genserver_both_ways() {
    if !require_elixir() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    gen_server::start(&node, Some("kv"), Kv(term!(none))).unwrap();
    let mut ex = tokio::task::block_in_place(|| {
        ErlNode::start_elixir("ex", epmd.port(), COOKIE, &[], &["elixir"])
    })
    .expect("start an Elixir node");
    let me = node.name();
    eval(
        &mut ex,
        &format!("'Elixir.GenServer':cast({{kv, '{me}'}}, hello)."),
    );
    assert_eq!(
        eval(
            &mut ex,
            &format!("'Elixir.GenServer':call({{kv, '{me}'}}, get).")
        ),
        "hello"
    );
    // Rust → an Elixir Agent (a GenServer) registered on the Elixir node.
    eval(
        &mut ex,
        "element(1, 'Elixir.Agent':start(fun() -> 41 end, [{name, counter}])).",
    );
    let mut p = node.process();
    let en = Atom::from(ex.name());
    // Agent.get(counter, fn n -> n + 1 end) is the call {get, Fun}; a fun
    // cannot be made in Rust, but Agent.cast/update and get with an
    // MFA-style tuple can: {get, {erlang, '+', [1]}} → 41 + 1.
    let got = p
        .call(
            (Atom::from("counter"), en),
            term!({get, {erlang, (Term::atom("+")), [1]}}),
        )
        .await
        .unwrap();
    assert_eq!(got, term!(42));
    node.shutdown().await;
}
