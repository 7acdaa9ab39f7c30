//! Task.Supervisor on one node: the Rust client (`task_async`,
//! `task_await`) against the Rust `TaskSupervisor`, speaking the Elixir
//! 1.14 protocol to each other.

use std::time::Duration;

use erldist::node::gen_server::elixir_module;
use erldist::node::task::{TaskError, TaskSupervisor};
use erldist::{term, Atom, Node, Term};

fn sup(node: &Node) {
    TaskSupervisor::new()
        .function(elixir_module("Math"), "add", 2, |_p, args| async move {
            match args.as_slice() {
                [Term::Int(a), Term::Int(b)] => Ok(Term::from(a + b)),
                _ => Err(term!(badarith)),
            }
        })
        .function(elixir_module("Math"), "slow", 0, |_p, _| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(term!(done))
        })
        .start(node, elixir_module("Math.TaskSupervisor"))
        .unwrap();
}

#[tokio::test]
async fn async_and_await() {
    let node = Node::local("tasks@localhost");
    sup(&node);
    let s = elixir_module("Math.TaskSupervisor");
    let mut me = node.process();
    let t = me
        .task_async(s, elixir_module("Math"), "add", vec![term!(2), term!(3)])
        .await
        .unwrap();
    assert_eq!(me.task_await(t, None).await.unwrap(), term!(5));
    // Unknown function: undef, seen without the link.
    let t = me
        .task_async_nolink(s, elixir_module("Math"), "sub", vec![term!(2)])
        .await
        .unwrap();
    let err = me.task_await(t, Some(Duration::from_secs(5))).await;
    assert_eq!(
        err,
        Err(TaskError::Exit(Term::Tuple(vec![
            term!(undef),
            Term::List(vec![Term::Tuple(vec![
                Term::Atom(elixir_module("Math")),
                term!(sub),
                Term::List(vec![term!(2)]),
                Term::NIL
            ])])
        ])))
    );
    // A crash through the link kills the owner (unless it traps exits).
    let mut trapper = node.process();
    trapper.trap_exit(true);
    let t = trapper
        .task_async(s, elixir_module("Math"), "add", vec![term!(a), term!(1)])
        .await
        .unwrap();
    let pid = t.pid;
    assert_eq!(
        trapper.task_await(t, Some(Duration::from_secs(5))).await,
        Err(TaskError::Exit(term!(badarith)))
    );
    let exit = trapper.recv().await.unwrap();
    assert_eq!(
        exit,
        Term::Tuple(vec![Term::atom("EXIT"), Term::Pid(pid), term!(badarith)])
    );
    // Timeout: the task goes on; its late result is dropped.
    let t = me
        .task_async(s, elixir_module("Math"), "slow", vec![])
        .await
        .unwrap();
    assert_eq!(
        me.task_await(t, Some(Duration::from_millis(50))).await,
        Err(TaskError::Timeout)
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(me.mailbox_len(), 0);
    // No such supervisor: noproc at once.
    let r = me
        .task_async(Atom::from("nobody"), elixir_module("Math"), "add", vec![])
        .await;
    assert_eq!(r.unwrap_err().reason(), term!(noproc));
    // The supervisor lists its live children and terminates them.
    let t = me
        .task_async_nolink(s, elixir_module("Math"), "slow", vec![])
        .await
        .unwrap();
    let children = me.call(s, term!(which_children)).await.unwrap();
    assert!(
        children.to_string().contains(&Term::Pid(t.pid).to_string()),
        "{children}"
    );
    assert_eq!(
        me.call(
            s,
            Term::Tuple(vec![term!(terminate_child), Term::Pid(t.pid)])
        )
        .await
        .unwrap(),
        term!(ok)
    );
    assert_eq!(
        me.task_await(t, Some(Duration::from_secs(5))).await,
        Err(TaskError::Exit(term!(shutdown)))
    );
}

/// A task whose owner never sends the function gives up after 5 s, as
/// Elixir's does; one whose owner dies exits `{shutdown, Reason}`.
#[tokio::test]
async fn task_waits_for_its_owner() {
    let node = Node::local("tasks2@localhost");
    sup(&node);
    let s = elixir_module("Math.TaskSupervisor");
    let mut owner = node.process();
    let mut watcher = node.process();
    let me = owner.pid();
    let req = Term::Tuple(vec![
        term!(start_task),
        Term::List(vec![
            Term::Tuple(vec![Term::Atom(node.name()), Term::Pid(me), Term::Pid(me)]),
            term!(monitor),
        ]),
        term!(temporary),
        term!(nil),
    ]);
    let answer = owner.call(s, req).await.unwrap();
    let Some([_, Term::Pid(task)]) = answer.as_tuple() else {
        panic!("{answer}")
    };
    let r = watcher.monitor(*task);
    drop(owner);
    let down = watcher.recv().await.unwrap();
    assert_eq!(
        down,
        Term::Tuple(vec![
            Term::atom("DOWN"),
            Term::Ref(Box::new(r)),
            term!(process),
            Term::Pid(*task),
            Term::Tuple(vec![term!(shutdown), term!(normal)]),
        ])
    );
}
