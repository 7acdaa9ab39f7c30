//! The tour: the lesson on OTP distribution (`shared/seed/SCENARIOS.md`),
//! played end to end with Rust nodes in the cast.
//!
//! ```text
//! cargo run --example tour
//! ```
//!
//! It starts everything it needs: an EPMD (erldist's own, embedded, on a
//! private port so nothing else on the machine is disturbed) and, when
//! Elixir is installed, a real BEAM node `kate@localhost` running the
//! lesson's chat application (`tests/fixtures/chat`). The Rust nodes are
//! `alex@localhost` and `moebi@localhost`. Each step says what is sent and
//! what comes back. Without Elixir, it says how to install it and plays the
//! parts it can with Rust nodes only.
//!
//! It exits non-zero if a step that should work fails, and cleans up every
//! process it started, on Ctrl-C too.

use std::process::ExitCode;
use std::time::Duration;

use erldist::epmd::{EpmdServer, EpmdServerConfig};
use erldist::node::gen_server::elixir_module;
use erldist::node::task::TaskSupervisor;
use erldist::node::{Exception, GroupLeaderConfig, GroupLeaderOpt, IoOutput, SpawnOpts};
use erldist::testing::{elixir_args, find_executable, mix_compile, ErlNode};
use erldist::{term, Atom, Node, Term};
use tokio::sync::mpsc;

const COOKIE: &str = "secret_token";
const T: Duration = Duration::from_secs(10);

type Fallible<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn step(title: &str) {
    println!("\n== {title}");
}

fn says(who: &str, what: impl std::fmt::Display) {
    println!("  {who}: {what}");
}

#[tokio::main]
async fn main() -> ExitCode {
    let tour = tokio::spawn(run());
    let outcome = tokio::select! {
        r = tour => r.map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() }).and_then(|r| r),
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\ninterrupted: stopping the nodes the tour started");
            return ExitCode::from(130);
        }
    };
    match outcome {
        Ok(()) => {
            println!("\nThe tour is over: every step worked.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nA step failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Stops the kate node when the tour ends, however it ends, and removes
/// the copy of the chat app it ran from.
struct Kate(Option<ErlNode>);

impl Drop for Kate {
    fn drop(&mut self) {
        if let Some(mut k) = self.0.take() {
            k.kill();
            let _ = std::fs::remove_dir_all(work_dir());
        }
    }
}

fn work_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("erldist-tour-{}", std::process::id()))
}

async fn run() -> Fallible {
    step("An EPMD, the port mapper every node registers with");
    let epmd = EpmdServer::start(EpmdServerConfig::with_port(0)).await?;
    let port = epmd.port();
    says("tour", format!("erldist's embedded EPMD listens on port {port} (ERL_EPMD_PORT={port} for the nodes here)"));

    step("S1. Named nodes and cookies");
    let alex = start("alex@localhost", COOKIE, port).await?;
    says(
        "alex",
        format!(
            "a Rust node, cookie {COOKIE:?}, creation {}",
            alex.creation()
        ),
    );
    let elixir = find_executable("elixir").is_some() && find_executable("mix").is_some();
    let mut kate = Kate(None);
    let kate_name = "kate@localhost";
    if elixir {
        let node = start_kate(port).await?;
        says("kate", "a real Elixir node running the lesson's chat app");
        kate.0 = Some(node);
    } else {
        println!(
            "  (elixir is not installed: kate is played by a Rust node. To meet the real one:"
        );
        println!("   apt-get install -y erlang-nox erlang-dev erlang-src elixir)");
    }
    let mut rust_kate = if elixir {
        None
    } else {
        Some(rust_kate(port).await?)
    };
    if !alex.ping(kate_name).await {
        return Err("alex cannot reach kate".into());
    }
    says("alex", "net_adm:ping(kate@localhost) -> pong");
    let mallory = start("mallory@localhost", "wrong_cookie", port).await?;
    match mallory.connect(kate_name).await {
        Err(e) => says("mallory", format!("refused, as it should be: {e}")),
        Ok(()) => return Err("a node with the wrong cookie got in".into()),
    }
    mallory.shutdown().await;

    step("S2. Node.spawn_link and the group leader");
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<IoOutput>();
    let gl = alex.start_group_leader(GroupLeaderConfig::channel(out_tx));
    let mut me = alex.process();
    me.set_group_leader(gl);
    me.trap_exit(true);
    let kate_say_name = elixir_module("Kate");
    says(
        "alex",
        "spawn_link(kate@localhost, Kate, say_name, []) with alex as group leader",
    );
    let spawned = me
        .spawn_remote(
            kate_name,
            kate_say_name,
            "say_name",
            vec![],
            SpawnOpts::new()
                .link()
                .group_leader(GroupLeaderOpt::Pid(gl)),
        )
        .await?;
    says(
        "alex",
        format!("the new process is {}", Term::Pid(spawned.pid)),
    );
    let printed = tokio::time::timeout(T, out_rx.recv())
        .await?
        .ok_or("no output")?;
    says("alex's group leader prints", printed.text.trim_end());
    if printed.text.trim_end() != "Hi, my name is Kate" {
        return Err(format!("unexpected output {:?}", printed.text).into());
    }
    let exit = tokio::time::timeout(T, me.recv()).await??;
    says("alex", format!("the link reports its end: {exit}"));

    step("S3. Replying to a message");
    let replier = me
        .spawn_remote(kate_name, kate_say_name, "reply", vec![], SpawnOpts::new())
        .await?;
    says(
        "alex",
        format!(
            "sends {{hi, {}}} to {}",
            Term::Pid(me.pid()),
            Term::Pid(replier.pid)
        ),
    );
    me.send(replier.pid, term!({hi, (me.pid())}));
    let answer = tokio::time::timeout(T, me.recv_match(|m| m.is_atom("sup?"))).await??;
    says("alex", format!("receives {answer}"));

    step("S4. Distributed tasks: the chat");
    let chat = elixir_module("Chat");
    let chat_sup = elixir_module("Chat.TaskSupervisor");
    let (alex_heard_tx, mut alex_heard) = mpsc::unbounded_channel::<String>();
    TaskSupervisor::new()
        .function(chat, "receive_message", 1, move |_task, args| {
            let tx = alex_heard_tx.clone();
            async move {
                let text = text_of(args.first());
                let _ = tx.send(text);
                Ok(Term::atom("ok"))
            }
        })
        .start(&alex, chat_sup)?;
    says("alex", "joins the chat: Chat.TaskSupervisor, in Rust");
    says(
        "alex",
        "Chat.send_message(:kate@localhost, \"hi\") — Task.Supervisor.async + Task.await",
    );
    let task = me
        .task_async(
            (chat_sup, Atom::from(kate_name)),
            chat,
            "receive_message",
            vec![Term::from("hi")],
        )
        .await?;
    let result = me.task_await(task, Some(T)).await?;
    says("alex", format!("the task returns {result}"));
    if let Some(k) = kate.0.as_mut() {
        let seen = tokio::task::block_in_place(|| k.wait_output("hi", T));
        says("kate prints", if seen { "hi" } else { "(nothing!)" });
        if !seen {
            return Err("kate did not print hi".into());
        }
        says(
            "kate",
            "Chat.send_message(:alex@localhost, \"how are you?\")",
        );
        let r = tokio::task::block_in_place(|| {
            k.eval("'Elixir.Chat':send_message('alex@localhost', <<\"how are you?\">>).")
        })?;
        says("kate", format!("gets {r}"));
    } else if let Some((kate_node, kate_heard)) = rust_kate.as_mut() {
        let heard = tokio::time::timeout(T, kate_heard.recv())
            .await?
            .ok_or("kate heard nothing")?;
        says("kate prints", &heard);
        says(
            "kate",
            "Chat.send_message(:alex@localhost, \"how are you?\")",
        );
        let mut p = kate_node.process();
        let t = p
            .task_async(
                (chat_sup, alex.name()),
                chat,
                "receive_message",
                vec![Term::from("how are you?")],
            )
            .await?;
        p.task_await(t, Some(T)).await?;
    }
    let heard = tokio::time::timeout(T, alex_heard.recv())
        .await?
        .ok_or("alex heard nothing")?;
    says("alex prints", &heard);

    step("S5. Moebi, the dog that answers \"chicken?\"");
    let moebi = start("moebi@localhost", COOKIE, port).await?;
    start_moebi(&moebi)?;
    says(
        "moebi",
        "a Rust node with the chat's Task.Supervisor; answers everyone with \"chicken?\"",
    );
    if let Some(k) = kate.0.as_mut() {
        says("kate", "Chat.send_message(:moebi@localhost, \"hi\")");
        let r = tokio::task::block_in_place(|| {
            k.eval("'Elixir.Chat':send_message('moebi@localhost', <<\"hi\">>).")
        })?;
        let seen = tokio::task::block_in_place(|| k.wait_output("chicken?", T));
        says(
            "kate",
            format!(
                "gets {r}, and prints {}",
                if seen { "chicken?" } else { "(nothing!)" }
            ),
        );
        if !seen {
            return Err("moebi's chicken? did not reach kate".into());
        }
    } else {
        says("alex", "Chat.send_message(:moebi@localhost, \"hi\")");
        let t = me
            .task_async(
                (chat_sup, moebi.name()),
                chat,
                "receive_message_for_moebi",
                vec![Term::from("hi"), Term::Atom(alex.name())],
            )
            .await?;
        me.task_await(t, Some(T)).await?;
        let heard = tokio::time::timeout(T, alex_heard.recv())
            .await?
            .ok_or("alex heard nothing")?;
        says("alex prints", &heard);
    }

    step("S7. Remote calls");
    register_add(&alex);
    if let Some((k, _)) = &rust_kate {
        register_add(k);
        let r = alex
            .rpc(
                kate_name,
                elixir_module("Rusty"),
                "add",
                vec![Term::from(1), Term::from(2)],
                T,
            )
            .await?;
        says(
            "alex",
            format!(":erpc.call(:kate@localhost, Rusty, :add, [1, 2]) -> {r}"),
        );
        let r = k
            .rpc(
                alex.name(),
                elixir_module("Rusty"),
                "add",
                vec![Term::from(40), Term::from(2)],
                T,
            )
            .await?;
        says(
            "kate",
            format!(":erpc.call(:alex@localhost, Rusty, :add, [40, 2]) -> {r}"),
        );
    } else {
        let upcased = alex
            .rpc(
                kate_name,
                elixir_module("String"),
                "upcase",
                vec![Term::from("hi, kate")],
                T,
            )
            .await?;
        says(
            "alex",
            format!("String.upcase(\"hi, kate\") on kate returns {upcased:#}"),
        );
    }
    if let Some(k) = kate.0.as_mut() {
        let r = tokio::task::block_in_place(|| {
            k.eval("erpc:call('alex@localhost', 'Elixir.Rusty', add, [40, 2]).")
        })?;
        says(
            "kate",
            format!(":erpc.call(:alex@localhost, Rusty, :add, [40, 2]) -> {r} (computed in Rust)"),
        );
        if r != "42" {
            return Err(format!("Rust's add returned {r}").into());
        }
    }

    step("Goodbye");
    moebi.shutdown().await;
    if let Some((n, _)) = rust_kate {
        n.shutdown().await;
    }
    alex.shutdown().await;
    drop(kate);
    epmd.shutdown().await;
    says("tour", "every node stopped, the EPMD too");
    Ok(())
}

/// `Rusty.add/2`, a Rust function BEAM nodes can call.
fn register_add(node: &Node) {
    node.register_fn(elixir_module("Rusty"), "add", |args| async move {
        let a = args.first().and_then(Term::as_i64);
        let b = args.get(1).and_then(Term::as_i64);
        match (a, b) {
            (Some(a), Some(b)) => Ok(Term::from(a + b)),
            _ => Err(Exception::error(Term::atom("badarg"))),
        }
    });
}

async fn start(name: &str, cookie: &str, port: u16) -> Fallible<Node> {
    Ok(Node::builder(name)
        .cookie(cookie)
        .epmd("localhost", port)
        .start()
        .await?)
}

fn text_of(t: Option<&Term>) -> String {
    t.map(Term::to_text).unwrap_or_default()
}

/// kate, the real Elixir node: the chat fixture compiled, its app started.
async fn start_kate(port: u16) -> Fallible<ErlNode> {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat");
    let work = work_dir();
    std::fs::create_dir_all(&work)?;
    let node = tokio::task::spawn_blocking(move || -> Fallible<ErlNode> {
        let paths = mix_compile(&fixture, &work)?;
        let args = elixir_args(&paths, &["chat"])?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Ok(ErlNode::start_exact("kate@localhost", port, COOKIE, &args)?)
    })
    .await??;
    Ok(node)
}

/// Without Elixir, a Rust kate with the chat's Task.Supervisor and the
/// lesson's Kate functions.
async fn rust_kate(port: u16) -> Fallible<(Node, mpsc::UnboundedReceiver<String>)> {
    let node = start("kate@localhost", COOKIE, port).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let chat = elixir_module("Chat");
    TaskSupervisor::new()
        .function(chat, "receive_message", 1, move |_t, args| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(text_of(args.first()));
                Ok(Term::atom("ok"))
            }
        })
        .start(&node, elixir_module("Chat.TaskSupervisor"))?;
    let kate = elixir_module("Kate");
    node.register_process_fn(kate, "say_name", |mut p, _args| async move {
        p.put_chars("Hi, my name is Kate\n")
            .await
            .map_err(|e| Exception::error(Term::from(e.to_string())))?;
        Ok(Term::atom("ok"))
    });
    node.register_process_fn(kate, "reply", |mut p, _args| async move {
        let m = p.recv().await.map_err(|e| Exception::exit(e.reason))?;
        if let Ok((_, from)) = <(Term, erldist::Pid)>::try_from(m) {
            p.send(from, Term::atom("sup?"));
        }
        Ok(Term::atom("ok"))
    });
    Ok((node, rx))
}

/// moebi's chat member: prints, then answers "chicken?" through the
/// sender's chat.
fn start_moebi(moebi: &Node) -> Fallible {
    let chat = elixir_module("Chat");
    TaskSupervisor::new()
        .function(chat, "receive_message", 1, |_t, args| async move {
            says("moebi prints", text_of(args.first()));
            Ok(Term::atom("ok"))
        })
        .function(
            chat,
            "receive_message_for_moebi",
            2,
            move |mut task, args| async move {
                says("moebi prints", text_of(args.first()));
                let Some(Term::Atom(from)) = args.get(1).cloned() else {
                    return Err(Term::atom("badarg"));
                };
                says("moebi", format!("Chat.send_message({from}, \"chicken?\")"));
                let t = task
                    .task_async(
                        (elixir_module("Chat.TaskSupervisor"), from),
                        chat,
                        "receive_message",
                        vec![Term::from("chicken?")],
                    )
                    .await
                    .map_err(|e| e.reason())?;
                task.task_await(t, Some(T)).await.map_err(|e| e.reason())
            },
        )
        .start(moebi, elixir_module("Chat.TaskSupervisor"))?;
    Ok(())
}
