//! Phoenix.PubSub between Rust and real Elixir nodes running the
//! `tests/fixtures/pubsub` stand-in for phoenix_pubsub 2.1's PG2 adapter
//! (Phoenix itself cannot be installed here; the fixture sends the same
//! messages): Elixir broadcasts reach Rust subscribers, Rust broadcasts
//! reach Elixir subscribers, with pools of one and two.

#[path = "examples_common.rs"]
mod examples;

mod erl_eval;
use erl_eval::{erl_term, eval};

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use erldist::node::pg::Pg;
use erldist::node::pubsub::{self, PubSub, PubSubError};
use erldist::testing::{mix_compile, require_elixir, unique_name, ErlNode, RealEpmd};
use erldist::{term, Node, Term};

const COOKIE: &str = "pubsub_cookie";
const T: Duration = Duration::from_secs(10);
const PUBSUB: &str = "'Elixir.MyApp.PubSub'";

fn fixture_ebins() -> &'static [PathBuf] {
    static EBINS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    EBINS.get_or_init(|| {
        let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pubsub");
        mix_compile(&fixture, env!("CARGO_TARGET_TMPDIR").as_ref())
            .expect("mix compile the pubsub fixture")
    })
}

/// An Elixir node with the fixture's `phoenix_pubsub` application running
/// and `MyApp.PubSub` started with `pool_size`.
fn elixir_node(epmd: &RealEpmd, pool_size: usize) -> ErlNode {
    let mut e = tokio::task::block_in_place(|| {
        ErlNode::start_elixir(
            "elixir",
            epmd.port(),
            COOKIE,
            fixture_ebins(),
            &["phoenix_pubsub"],
        )
    })
    .expect("start an Elixir node");
    assert_eq!(
        eval(
            &mut e,
            &format!("'Elixir.PubSubFixture':start({PUBSUB}, {pool_size}).")
        ),
        "ok"
    );
    e
}

async fn rust_node(epmd: &RealEpmd) -> Node {
    Node::builder(&format!("{}@localhost", unique_name("rust")))
        .cookie(COOKIE)
        .epmd("localhost", epmd.port())
        .embedded_epmd(false)
        .start()
        .await
        .expect("start the Rust node")
}

/// Waits until the Elixir node's `:pg` scope lists a Rust member in
/// `group`: from then on its broadcasts reach the Rust node.
fn wait_rust_worker_seen(e: &mut ErlNode, node: &Node, group: &str) {
    let expr = format!(
        "length([P || P <- pg:get_members('Elixir.Phoenix.PubSub', '{group}'), \
         node(P) =:= '{}']).",
        node.name()
    );
    let deadline = std::time::Instant::now() + T;
    while eval(e, &expr) != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the Elixir node never saw the Rust worker in {group}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The messages the fixture's subscriber `reg` got, in order.
fn elixir_messages(e: &mut ErlNode, reg: &str) -> Vec<Term> {
    match erl_term(e, &format!("'Elixir.PubSubFixture':messages({reg})")) {
        Term::List(l) => l,
        other => panic!("not a list: {other}"),
    }
}

/// Waits until the subscriber `reg` has received `want`, in order.
fn elixir_wait_messages(e: &mut ErlNode, reg: &str, want: &[Term]) -> Vec<Term> {
    let deadline = std::time::Instant::now() + T;
    loop {
        let got = elixir_messages(e, reg);
        if got == want || std::time::Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn recv(p: &mut erldist::Process) -> Term {
    p.recv_timeout(T)
        .await
        .expect("alive")
        .expect("a message in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_between_elixir_and_rust() {
    if !require_elixir() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let mut e = elixir_node(&epmd, 1);
    let node = rust_node(&epmd).await;
    let ps = PubSub::start(&node, "MyApp.PubSub").await.unwrap();
    assert_eq!(
        ps.groups(),
        &[erldist::Atom::from("Elixir.MyApp.PubSub.Adapter")]
    );
    assert!(node.whereis("Elixir.MyApp.PubSub.Adapter").is_some());
    assert!(node.whereis("Elixir.Phoenix.PubSub").is_some());
    assert!(node.ping(e.name()).await);
    wait_rust_worker_seen(&mut e, &node, "Elixir.MyApp.PubSub.Adapter");

    let mut room = ps.subscriber("room:1").unwrap();
    let mut other = ps.subscriber("room:2").unwrap();
    let esub = erl_term(
        &mut e,
        &format!("'Elixir.PubSubFixture':subscriber({PUBSUB}, <<\"room:1\">>, sub1)"),
    );
    assert!(esub.as_pid().is_some());

    // Elixir → Rust (and Elixir's own subscriber).
    eval(
        &mut e,
        &format!("'Elixir.Phoenix.PubSub':broadcast({PUBSUB}, <<\"room:1\">>, {{hello, <<\"from elixir\">>}})."),
    );
    assert_eq!(recv(&mut room).await, term!({hello, <<"from elixir">>}));
    // Rust → Elixir (and the Rust subscriber).
    ps.broadcast("room:1", term!({hello, <<"from rust">>}));
    assert_eq!(recv(&mut room).await, term!({hello, <<"from rust">>}));
    let both = [
        term!({hello, <<"from elixir">>}),
        term!({hello, <<"from rust">>}),
    ];
    assert_eq!(elixir_wait_messages(&mut e, "sub1", &both), both);

    // broadcast_from skips the sender on this node only.
    ps.broadcast_from(room.pid(), "room:1", term!(not_to_self));
    let three = [both[0].clone(), both[1].clone(), term!(not_to_self)];
    assert_eq!(elixir_wait_messages(&mut e, "sub1", &three), three);

    // direct_broadcast, both ways.
    eval(
        &mut e,
        &format!(
            "'Elixir.Phoenix.PubSub':direct_broadcast('{}', {PUBSUB}, <<\"room:1\">>, direct).",
            node.name()
        ),
    );
    assert_eq!(recv(&mut room).await, term!(direct));
    ps.direct_broadcast(erldist::Atom::from(e.name()), "room:1", term!(direct_back));
    let four = [
        three[0].clone(),
        three[1].clone(),
        three[2].clone(),
        term!(direct_back),
    ];
    assert_eq!(elixir_wait_messages(&mut e, "sub1", &four), four);

    // Nothing on room:1 reached the room:2 subscriber, nor the sender.
    assert_eq!(other.try_recv(), None);
    assert_eq!(room.try_recv(), None);

    // Unsubscribed: a later broadcast reaches a new subscriber, not it
    // (both would be served by the same dispatch).
    ps.unsubscribe(room.pid(), "room:1");
    let mut late = ps.subscriber("room:1").unwrap();
    eval(
        &mut e,
        &format!("'Elixir.Phoenix.PubSub':broadcast({PUBSUB}, <<\"room:1\">>, after_unsubscribe)."),
    );
    assert_eq!(recv(&mut late).await, term!(after_unsubscribe));
    assert_eq!(room.try_recv(), None);

    // A dropped subscriber's subscription ends with it.
    let late_pid = late.pid();
    assert_eq!(ps.subscribers("room:1"), vec![late_pid]);
    drop(late);
    assert!(ps.subscribers("room:1").is_empty());

    // Rust broadcasts from other topics reach room:2 only.
    ps.broadcast("room:2", term!({n, 2}));
    assert_eq!(recv(&mut other).await, term!({n, 2}));
    node.shutdown().await;
}

/// With `pool_size: 2`, Elixir broadcasters pick either group; the Rust
/// PubSub started with the same pool size gets them all. Two PubSubs share
/// the one `Phoenix.PubSub` scope; a second start of the same one fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_of_two_and_a_shared_scope() {
    if !require_elixir() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let mut e = elixir_node(&epmd, 2);
    let node = rust_node(&epmd).await;
    let pg = Pg::start(&node, pubsub::scope()).unwrap();
    let ps = PubSub::with_scope(&pg, "MyApp.PubSub", 2).await.unwrap();
    let _other = PubSub::with_scope(&pg, "Other.PubSub", 1).await.unwrap();
    assert!(matches!(
        PubSub::with_scope(&pg, "MyApp.PubSub", 1).await,
        Err(PubSubError::Register { .. })
    ));
    assert!(matches!(
        PubSub::with_scope(&pg, "Zero.PubSub", 0).await,
        Err(PubSubError::PoolSize)
    ));
    assert!(node.ping(e.name()).await);
    wait_rust_worker_seen(&mut e, &node, "Elixir.MyApp.PubSub.Adapter");
    wait_rust_worker_seen(&mut e, &node, "Elixir.MyApp.PubSub.Adapter_2");

    let mut sub = ps.subscriber("t").unwrap();
    // Twenty broadcasters: phash2 of their pids spreads them over both
    // groups.
    eval(
        &mut e,
        &format!(
            "[begin P = self(), spawn(fun() -> 'Elixir.Phoenix.PubSub':broadcast({PUBSUB}, <<\"t\">>, N), \
             P ! done end), receive done -> ok end end || N <- lists:seq(1, 20)]."
        ),
    );
    let mut got = Vec::new();
    for _ in 0..20 {
        got.push(recv(&mut sub).await.as_i64().expect("an integer"));
    }
    got.sort();
    assert_eq!(got, (1..=20).collect::<Vec<i64>>());
    node.shutdown().await;
}

/// `examples/pubsub.rs`: subscribes, broadcasts `{rust_says, Text}` to
/// the Elixir subscribers, and prints what Elixir broadcasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_talks_with_an_elixir_pubsub() {
    if !require_elixir() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let mut e = elixir_node(&epmd, 1);
    eval(
        &mut e,
        &format!("'Elixir.PubSubFixture':subscriber({PUBSUB}, <<\"room:lobby\">>, sub1)."),
    );
    let me = format!("{}@localhost", unique_name("alex"));
    let args = [
        e.name(),
        "--sname",
        &me,
        "--cookie",
        COOKIE,
        "--say",
        "hello",
        "--count",
        "1",
    ];
    let mut run = tokio::task::block_in_place(|| examples::Running::start("pubsub", &args, &epmd));
    assert!(tokio::task::block_in_place(
        || run.wait_stderr("subscribed to room:lobby on MyApp.PubSub")
    ));
    let sent = tokio::task::block_in_place(|| run.wait_stdout("sent {:rust_says, \"hello\"}"));
    assert!(sent, "{:?}", run.take_stdout());
    let said = [term!({rust_says, <<"hello">>})];
    assert_eq!(elixir_wait_messages(&mut e, "sub1", &said), said);

    let expr = format!(
        "length([P || P <- pg:get_members('Elixir.Phoenix.PubSub', 'Elixir.MyApp.PubSub.Adapter'), \
         node(P) =:= '{me}'])."
    );
    let deadline = std::time::Instant::now() + T;
    while eval(&mut e, &expr) != "1" {
        assert!(
            std::time::Instant::now() < deadline,
            "the example's worker never showed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eval(
        &mut e,
        &format!("'Elixir.Phoenix.PubSub':broadcast({PUBSUB}, <<\"room:lobby\">>, {{new_msg, <<\"hi\">>}})."),
    );
    assert!(tokio::task::block_in_place(
        || run.wait_stdout("received: {:new_msg, \"hi\"}")
    ));
    let status = tokio::task::block_in_place(|| {
        let deadline = std::time::Instant::now() + T;
        loop {
            if let Some(s) = run.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the example did not exit"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    assert!(status.success(), "{status}");
}
