//! A Rust group leader serving Rust processes on its own node: output to
//! a channel or a callback, input lines then `eof`, a dead group leader.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use erldist::node::{GroupLeaderConfig, IoError};
use erldist::{term, Node};

#[tokio::test]
async fn put_chars_and_get_line_through_a_rust_group_leader() {
    let node = Node::local("gl@localhost");
    let (tx, mut out) = tokio::sync::mpsc::unbounded_channel();
    let gl = node.start_group_leader(
        GroupLeaderConfig::channel(tx).input_text("first line\nsecond ✓\nno newline"),
    );
    let mut p = node.process();
    p.set_group_leader(gl);
    assert_eq!(p.group_leader(), gl);
    p.put_chars("héllo ✓\n").await.unwrap();
    let o = out.recv().await.unwrap();
    assert_eq!((o.from, o.text.as_str()), (p.pid(), "héllo ✓\n"));
    assert_eq!(
        p.get_line("").await.unwrap().as_deref(),
        Some("first line\n")
    );
    assert_eq!(
        p.get_line("? ").await.unwrap().as_deref(),
        Some("second ✓\n")
    );
    assert_eq!(out.recv().await.unwrap().text, "? ");
    assert_eq!(p.get_line("").await.unwrap().as_deref(), Some("no newline"));
    assert_eq!(p.get_line("").await.unwrap(), None);
    // Requests it does not serve, and bad character data.
    assert_eq!(
        p.io_request(term!({ frobnicate })).await.unwrap(),
        term!({error, request})
    );
    assert_eq!(
        p.io_request(term!({put_chars, unicode, {not_chars}}))
            .await
            .unwrap(),
        term!({error, {put_chars, unicode, {not_chars}}})
    );
    // io_lib:format asked by a local process is formatted here.
    assert_eq!(
        p.io_request(term!({put_chars, unicode, io_lib, format, ["~w ~s~n", [[1], "x"]]}))
            .await
            .unwrap(),
        term!(ok)
    );
    assert_eq!(out.recv().await.unwrap().text, "[1] x\n");
    // A dead group leader: terminated, never a hang.
    node.kill(gl, term!(kill));
    let r = tokio::time::timeout(Duration::from_secs(5), p.put_chars("x")).await;
    assert_eq!(r.unwrap(), Err(IoError::Terminated));
}

#[tokio::test]
async fn callback_sink_and_default_group_leader() {
    let node = Node::local("gl2@localhost");
    let seen = Arc::new(Mutex::new(String::new()));
    let sink = seen.clone();
    let gl = node.start_group_leader(
        GroupLeaderConfig::callback(move |o| sink.lock().unwrap().push_str(&o.text))
            .register("my_gl"),
    );
    assert_eq!(node.whereis("my_gl"), Some(gl));
    let mut p = node.process();
    p.set_group_leader(gl);
    p.put_chars("a").await.unwrap();
    p.put_chars("b\n").await.unwrap();
    assert_eq!(*seen.lock().unwrap(), "ab\n");
    // Every process has a group leader: the node's default one.
    let q = node.process();
    assert_eq!(q.group_leader(), node.default_group_leader());
    assert_eq!(node.whereis("user"), Some(q.group_leader()));
}
