//! gen_server calls and casts between Rust processes on one node: replies,
//! casts, deferred replies, servers dying mid-call, timeouts with late
//! replies dropped, unknown names.

use std::time::{Duration, Instant};

use erldist::node::gen_server::{self, CallError, CallReply, Caller, Flow, GenServer};
use erldist::{term, Node, Process, Term};

struct Kv {
    value: Term,
    pending: Option<Caller>,
}

impl GenServer for Kv {
    async fn handle_call(&mut self, req: Term, from: Caller, p: &mut Process) -> CallReply {
        if req.is_atom("get") {
            return CallReply::Reply(self.value.clone());
        }
        if req.is_atom("wait") {
            // Answered by the next cast.
            self.pending = Some(from);
            return CallReply::NoReply;
        }
        if req.is_atom("crash") {
            return CallReply::Stop(term!(boom));
        }
        if req.is_atom("stop") {
            return CallReply::ReplyAndStop(Term::atom("normal"), term!(bye));
        }
        if req.is_atom("slow") {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return CallReply::Reply(term!(late));
        }
        let _ = p;
        CallReply::Reply(term!({error, unknown}))
    }

    async fn handle_cast(&mut self, req: Term, p: &mut Process) -> Flow {
        if let Some(from) = self.pending.take() {
            gen_server::reply(p, &from, req.clone());
        }
        self.value = req;
        Flow::Continue
    }
}

fn kv() -> Kv {
    Kv {
        value: term!(none),
        pending: None,
    }
}

#[tokio::test]
async fn call_cast_and_deferred_reply() {
    let node = Node::local("gs@localhost");
    let pid = gen_server::start(&node, Some("kv"), kv()).unwrap();
    assert_eq!(node.whereis("kv"), Some(pid));
    let mut me = node.process();
    assert_eq!(me.call("kv", term!(get)).await.unwrap(), term!(none));
    me.cast("kv", term!(one));
    assert_eq!(me.call(pid, term!(get)).await.unwrap(), term!(one));
    // A deferred reply, from another process's cast.
    let other = node.process();
    let waiter = tokio::spawn(async move {
        let mut me = me;
        let r = me.call("kv", term!(wait)).await;
        (me, r)
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    other.cast("kv", term!(two));
    let (mut me, r) = waiter.await.unwrap();
    assert_eq!(r.unwrap(), term!(two));
    // Unrelated messages stay in the mailbox, in order.
    let me_pid = me.pid();
    node.send(me_pid, term!(first));
    node.send(me_pid, term!(second));
    assert_eq!(me.call("kv", term!(get)).await.unwrap(), term!(two));
    assert_eq!(me.recv().await.unwrap(), term!(first));
    assert_eq!(me.recv().await.unwrap(), term!(second));
    // The name is taken now.
    assert!(gen_server::start(&node, Some("kv"), kv()).is_err());
}

#[tokio::test]
async fn server_dying_mid_call_timeouts_and_noproc() {
    let node = Node::local("gs2@localhost");
    let mut me = node.process();
    // Dies without answering: the caller gets the exit reason.
    gen_server::start(&node, Some("kv"), kv()).unwrap();
    assert_eq!(
        me.call("kv", term!(crash)).await,
        Err(CallError::Exit(term!(boom)))
    );
    assert_eq!(node.whereis("kv"), None);
    // Answers, then stops normally.
    let pid = gen_server::start(&node, Some("kv"), kv()).unwrap();
    assert_eq!(me.call("kv", term!(stop)).await.unwrap(), term!(bye));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!node.is_alive(pid));
    // An unknown name or a dead pid: noproc at once.
    let t0 = Instant::now();
    assert_eq!(me.call("nobody", term!(get)).await, Err(CallError::NoProc));
    assert_eq!(me.call(pid, term!(get)).await, Err(CallError::NoProc));
    assert!(t0.elapsed() < Duration::from_millis(500));
    assert_eq!(CallError::NoProc.reason(), term!(noproc));
    // A timeout; the late reply never reaches the mailbox.
    gen_server::start(&node, Some("kv"), kv()).unwrap();
    let r = me
        .call_timeout("kv", term!(slow), Some(Duration::from_millis(50)))
        .await;
    assert_eq!(r, Err(CallError::Timeout));
    assert_eq!(CallError::Timeout.reason(), term!(timeout));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(me.mailbox_len(), 0, "late reply dropped");
    // The server is still there.
    assert_eq!(me.call("kv", term!(get)).await.unwrap(), term!(none));
    // Killed while a call waits.
    let pid = node.whereis("kv").unwrap();
    let n2 = node.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        n2.kill(pid, term!(kill));
    });
    assert_eq!(
        me.call_timeout("kv", term!(wait), None).await,
        Err(CallError::Exit(term!(killed)))
    );
    assert_eq!(me.mailbox_len(), 0, "no DOWN left behind");
}

/// A plain process speaking the protocol by hand sees the OTP 24+ shape:
/// `{'$gen_call', {Pid, [alias | Ref]}, Req}`, answered to the alias.
#[tokio::test]
async fn call_wire_shape() {
    let node = Node::local("gs3@localhost");
    let mut server = node.process();
    server.register("raw").unwrap();
    let mut me = node.process();
    let me_pid = me.pid();
    let client = tokio::spawn(async move { me.call("raw", term!(hello)).await });
    let msg = server.recv().await.unwrap();
    let (from, req) = Caller::parse_call(&msg).expect("a $gen_call");
    assert_eq!(from.pid, me_pid);
    assert_eq!(req, term!(hello));
    assert!(from.alias().is_some(), "alias tag: {}", from.tag);
    gen_server::reply(&server, &from, term!(world));
    assert_eq!(client.await.unwrap().unwrap(), term!(world));
    // A cast is {'$gen_cast', Req}.
    let p = node.process();
    p.cast("raw", term!(c));
    assert_eq!(
        server.recv().await.unwrap(),
        Term::Tuple(vec![Term::atom("$gen_cast"), term!(c)])
    );
}
