//! The lesson's chat application (S4) and moebi (S5) against real Elixir
//! nodes running the unmodified `tests/fixtures/chat` Mix project.
//!
//! Each test starts a private EPMD, Elixir nodes (`erl` with Elixir's and
//! the compiled fixture's ebin directories on the path and the `chat`
//! application started, as `iex --sname NAME -S mix` runs it) and a Rust
//! node; the fixture is compiled once per test binary.

mod erl_eval;
use erl_eval::eval;

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use erldist::node::gen_server::elixir_module;
use erldist::node::task::{TaskError, TaskSupervisor};
use erldist::testing::{mix_compile, require_elixir, unique_name, ErlNode, RealEpmd};
use erldist::{Atom, Node, Term};
use tokio::sync::mpsc;

const COOKIE: &str = "chat_cookie";
const T: Duration = Duration::from_secs(10);

fn chat_ebins() -> &'static [PathBuf] {
    static EBINS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    EBINS.get_or_init(|| {
        let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat");
        mix_compile(&fixture, env!("CARGO_TARGET_TMPDIR").as_ref())
            .expect("mix compile the chat fixture")
    })
}

fn chat_node(prefix: &str, epmd: &RealEpmd) -> ErlNode {
    tokio::task::block_in_place(|| {
        ErlNode::start_elixir(prefix, epmd.port(), COOKIE, chat_ebins(), &["chat"])
    })
    .expect("start an Elixir chat node")
}

fn wait_output(node: &mut ErlNode, line: &str) -> bool {
    tokio::task::block_in_place(|| node.wait_output(line, T))
}

async fn rust_node(name: &str, epmd: &RealEpmd) -> Node {
    Node::builder(name)
        .cookie(COOKIE)
        .epmd("localhost", epmd.port())
        .embedded_epmd(false)
        .start()
        .await
        .expect("start the Rust node")
}

fn text(t: &Term) -> String {
    t.to_text()
}

fn chat() -> Atom {
    elixir_module("Chat")
}

fn chat_sup() -> Atom {
    elixir_module("Chat.TaskSupervisor")
}

/// S4, Rust → Elixir: `Task.Supervisor.async({Chat.TaskSupervisor, kate},
/// Chat, :receive_message, ["hi"])` and `Task.await`; kate prints "hi".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_runs_receive_message_on_kate() {
    if !require_elixir() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let mut kate = chat_node("kate", &epmd);
    let node = rust_node(&format!("{}@localhost", unique_name("rust")), &epmd).await;
    let kate_name = Atom::from(kate.name());
    let mut me = node.process();
    let task = me
        .task_async(
            (chat_sup(), kate_name),
            chat(),
            "receive_message",
            vec![Term::from("hi")],
        )
        .await
        .expect("start the task on kate");
    assert_eq!(task.pid.node, kate_name);
    let result = me
        .task_await(task, Some(T))
        .await
        .expect("the task's result");
    assert_eq!(result, Term::atom("ok"));
    assert!(wait_output(&mut kate, "hi"), "kate printed hi");
    node.shutdown().await;
}

/// A Rust chat member: `Chat.TaskSupervisor` running `Chat.receive_message/1`
/// as Rust code, which reports each message on `seen`.
fn start_rust_chat(node: &Node, seen: mpsc::UnboundedSender<String>) {
    TaskSupervisor::new()
        .function(chat(), "receive_message", 1, move |_task, args| {
            let seen = seen.clone();
            async move {
                let msg = args.first().map(text).unwrap_or_default();
                println!("{msg}");
                let _ = seen.send(msg);
                Ok(Term::atom("ok"))
            }
        })
        .start(node, chat_sup())
        .expect("register Chat.TaskSupervisor");
}

/// S4, Elixir → Rust: an unmodified chat node's
/// `Chat.send_message(:"rust@localhost", "hi")` returns `:ok` and runs Rust.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elixir_sends_a_message_to_a_rust_chat_member() {
    if !require_elixir() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&format!("{}@localhost", unique_name("rust")), &epmd).await;
    let (tx, mut seen) = mpsc::unbounded_channel();
    start_rust_chat(&node, tx);
    let mut alex = chat_node("alex", &epmd);
    let me = node.name();
    let t0 = Instant::now();
    assert_eq!(
        eval(
            &mut alex,
            &format!("'Elixir.Chat':send_message('{me}', <<\"hi\">>).")
        ),
        "ok"
    );
    assert_eq!(seen.recv().await.as_deref(), Some("hi"));
    // Twice more, in order; and quickly (no 5 s wait anywhere).
    for m in ["one", "two"] {
        assert_eq!(
            eval(
                &mut alex,
                &format!("'Elixir.Chat':send_message('{me}', <<\"{m}\">>).")
            ),
            "ok"
        );
        assert_eq!(seen.recv().await.as_deref(), Some(m));
    }
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // A function the Rust node does not have: the task exits with undef,
    // as a missing function does in Elixir (async_nolink + yield here, so
    // the eval process survives).
    let got = eval(
        &mut alex,
        &format!(
            "'Elixir.Task':yield('Elixir.Task.Supervisor':async_nolink({{'Elixir.Chat.TaskSupervisor', '{me}'}}, 'Elixir.Chat', nope, [1]), 5000)."
        ),
    );
    assert_eq!(got, "{exit,{undef,[{'Elixir.Chat',nope,[1],[]}]}}");
    // Task.Supervisor.children/1 answers (the tasks are gone).
    assert_eq!(
        eval(
            &mut alex,
            &format!(
                "'Elixir.Task.Supervisor':children({{'Elixir.Chat.TaskSupervisor', '{me}'}})."
            )
        ),
        "[]"
    );
    // And Task.Supervisor.start_child/4 runs the function without a reply.
    assert_eq!(
        eval(
            &mut alex,
            &format!("element(1, 'Elixir.Task.Supervisor':start_child({{'Elixir.Chat.TaskSupervisor', '{me}'}}, 'Elixir.Chat', receive_message, [<<\"fire\">>]))."),
        ),
        "ok"
    );
    assert_eq!(seen.recv().await.as_deref(), Some("fire"));
    node.shutdown().await;
}

/// S5: a Rust moebi. `Chat.send_message(:moebi@localhost, "hi")` on an
/// unmodified Elixir alex runs `Chat.receive_message_for_moebi("hi", alex)`
/// on the Rust moebi, which prints the message and answers "chicken?"
/// through alex's chat (a task on alex's `Chat.TaskSupervisor`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_moebi_answers_chicken() {
    if !require_elixir() {
        return;
    }
    // moebi@localhost exists once per EPMD: this test's own.
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node("moebi@localhost", &epmd).await;
    let (tx, mut seen) = mpsc::unbounded_channel();
    TaskSupervisor::new()
        .function(
            chat(),
            "receive_message_for_moebi",
            2,
            move |mut task, args| {
                let seen = tx.clone();
                async move {
                    let [message, Term::Atom(from)] = args.as_slice() else {
                        return Err(Term::atom("badarg"));
                    };
                    let message = text(message);
                    println!("{message}");
                    let _ = seen.send((message, *from));
                    // Chat.send_message(from, "chicken?")
                    let t = task
                        .task_async(
                            (chat_sup(), *from),
                            chat(),
                            "receive_message",
                            vec![Term::from("chicken?")],
                        )
                        .await
                        .map_err(|e| e.reason())?;
                    task.task_await(t, Some(Duration::from_secs(5)))
                        .await
                        .map_err(|e| e.reason())
                }
            },
        )
        .start(&node, chat_sup())
        .unwrap();
    let mut alex = chat_node("alex", &epmd);
    let mut kate = chat_node("kate", &epmd);
    assert_eq!(
        eval(
            &mut alex,
            "'Elixir.Chat':send_message('moebi@localhost', <<\"hi\">>)."
        ),
        "ok"
    );
    let (msg, from) = seen.recv().await.unwrap();
    assert_eq!(msg, "hi");
    assert_eq!(from, Atom::from(alex.name()));
    assert!(wait_output(&mut alex, "chicken?"), "alex sees chicken?");
    // kate hears nothing; from kate it works the same.
    assert_eq!(
        eval(
            &mut kate,
            "'Elixir.Chat':send_message('moebi@localhost', <<\"woof\">>)."
        ),
        "ok"
    );
    let (msg, from) = seen.recv().await.unwrap();
    assert_eq!((msg.as_str(), from), ("woof", Atom::from(kate.name())));
    assert!(wait_output(&mut kate, "chicken?"), "kate sees chicken?");
    assert!(!alex.take_output().iter().any(|l| l == "chicken?"));
    node.shutdown().await;
}

/// A Rust task that crashes: the Elixir owner's `Task.await` exits with
/// the reason (seen here through `async_nolink` + `Task.yield`); and Rust
/// awaiting a task on kate that raises gets the exit reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_tasks_both_ways() {
    if !require_elixir() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&format!("{}@localhost", unique_name("rust")), &epmd).await;
    TaskSupervisor::new()
        .function(chat(), "receive_message", 1, |_task, _args| async move {
            Err(Term::atom("rust_crash"))
        })
        .start(&node, chat_sup())
        .unwrap();
    let mut kate = chat_node("kate", &epmd);
    let me = node.name();
    let got = eval(
        &mut kate,
        &format!(
            "'Elixir.Task':yield('Elixir.Task.Supervisor':async_nolink({{'Elixir.Chat.TaskSupervisor', '{me}'}}, 'Elixir.Chat', receive_message, [<<\"x\">>]), 5000)."
        ),
    );
    assert_eq!(got, "{exit,rust_crash}");
    // Linked (Chat.send_message uses async): the owner dies with the reason.
    let got = eval(
        &mut kate,
        &format!(
            "begin process_flag(trap_exit, true), P = spawn_link(fun() -> 'Elixir.Chat':send_message('{me}', <<\"x\">>) end), receive {{'EXIT', P, R}} -> R after 5000 -> timeout end end."
        ),
    );
    assert_eq!(got, "rust_crash");
    // Rust → kate: a task that raises (wrong arity: undef), without link.
    let mut p = node.process();
    let kate_name = Atom::from(kate.name());
    let t = p
        .task_async_nolink((chat_sup(), kate_name), chat(), "receive_message", vec![])
        .await
        .unwrap();
    match p.task_await(t, Some(T)).await {
        Err(TaskError::Exit(reason)) => {
            let s = reason.to_string();
            assert!(s.contains("undef"), "{s}");
        }
        other => panic!("expected an exit, got {other:?}"),
    }
    // With the link, the owner is killed by the crash, as in Elixir.
    let mut q = node.process();
    let t = q
        .task_async((chat_sup(), kate_name), chat(), "receive_message", vec![])
        .await
        .unwrap();
    assert!(matches!(
        q.task_await(t, Some(T)).await,
        Err(TaskError::OwnerExited(_))
    ));
    // An unknown supervisor: noproc at once.
    let t0 = Instant::now();
    let r = p
        .task_async(
            (Atom::from("no_sup"), kate_name),
            chat(),
            "receive_message",
            vec![],
        )
        .await;
    assert_eq!(r.unwrap_err().reason(), Term::atom("noproc"));
    assert!(t0.elapsed() < Duration::from_secs(2));
    node.shutdown().await;
}
