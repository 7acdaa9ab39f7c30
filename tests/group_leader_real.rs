//! A Rust group leader serving real `erl` processes: `put_chars` in its
//! forms, `io:format/2` formatted exactly as the BEAM does (`~p`, `~ts`,
//! unicode), Elixir's `IO.puts`, `get_line`/`get_chars` from a configured
//! input, options, and errors for requests it does not serve.

#[path = "spawn_common.rs"]
mod common;

use common::*;
use erldist::node::{GroupLeaderConfig, GroupLeaderOpt, IoOutput, SpawnOpts};
use erldist::testing::{require_erl, ErlNode, RealEpmd};
use erldist::{term, Node, Pid, Term};
use tokio::sync::mpsc::UnboundedReceiver;

async fn next(out: &mut UnboundedReceiver<IoOutput>) -> String {
    tokio::time::timeout(T, out.recv())
        .await
        .expect("output in time")
        .expect("output")
        .text
}

/// What `io_lib:format(F, A)` gives on the Erlang node, as UTF-8 text.
fn erl_format(e: &mut ErlNode, f: &str, a: &str) -> String {
    let bin = erl_term(
        e,
        &format!("unicode:characters_to_binary(io_lib:format({f}, {a}))"),
    );
    String::from_utf8(bin.as_binary().unwrap().to_vec()).unwrap()
}

/// Runs `body` (Erlang expressions using `GL` and `Me`) in a process on
/// `e` whose group leader is `gl`; its last value is sent to `me`.
fn run_with_gl(e: &mut ErlNode, gl: Pid, me: Pid, body: &str) {
    eval(
        e,
        &format!(
            "begin GL = {}, Me = {}, spawn(fun() -> group_leader(GL, self()), Me ! {{done, begin {body} end}} end), ok end.",
            erl_expr(gl),
            erl_expr(me)
        ),
    );
}

fn charlist(s: &str) -> Term {
    Term::List(s.chars().map(|c| Term::from(c as u32)).collect())
}

async fn done(p: &mut erldist::Process) -> Term {
    let m = p
        .recv_match_timeout(
            T,
            |m| matches!(m.as_tuple(), Some([t, _]) if t.is_atom("done")),
        )
        .await
        .unwrap()
        .expect("done in time");
    m.as_tuple().unwrap()[1].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_in_every_form_and_unicode() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl_with(&epmd, &["-pa", "/usr/lib/elixir/lib/elixir/ebin"]);
    let (tx, mut out) = tokio::sync::mpsc::unbounded_channel();
    let gl = node.start_group_leader(GroupLeaderConfig::channel(tx));
    let p = node.process();
    let opts = || SpawnOpts::new().group_leader(GroupLeaderOpt::Pid(gl));
    // io:put_chars of unicode text (arrives as a UTF-8 binary).
    p.spawn_remote(
        e.name(),
        "io",
        "put_chars",
        vec![Term::binary("héllo 你好 🌍\n".as_bytes().to_vec())],
        opts(),
    )
    .await
    .unwrap();
    // Binaries are UTF-8 under unicode.
    assert_eq!(next(&mut out).await, "héllo 你好 🌍\n");
    // Elixir's IO.puts.
    p.spawn_remote(
        e.name(),
        "Elixir.IO",
        "puts",
        vec![Term::binary("Grüße, Kate".as_bytes().to_vec())],
        opts(),
    )
    .await
    .unwrap();
    assert_eq!(next(&mut out).await, "Grüße, Kate\n");
    // io:format with ~p, ~ts, ~w and unicode: exactly the BEAM's text.
    let cases = [
        (
            r#""~p ~ts~n""#,
            r#"[{a,"h\x{e9}llo",<<"bin"/utf8>>,[1,2,3]}, "\x{4f60}\x{597d}"]"#,
        ),
        (
            r#""~w|~10.3f|~-6s|~b~n""#,
            r#"[{x,1.5}, 3.14159, "ab", 255]"#,
        ),
        (
            r#""~tp~n""#,
            r#"[#{key => lists:seq(1, 40), name => <<"Gr\x{fc}\x{df}e"/utf8>>, t => {deep, [nested, "strings here", 'Atom X']}}]"#,
        ),
    ];
    for (f, a) in cases {
        let want = erl_format(&mut e, f, a);
        let args: Term = erl_term(&mut e, a);
        let fmt: Term = erl_term(&mut e, f);
        p.spawn_remote(e.name(), "io", "format", vec![fmt, args], opts())
            .await
            .unwrap();
        assert_eq!(next(&mut out).await, want, "io:format({f}, {a})");
    }
    // A batch of requests, and io:nl / io:write from a process with our GL.
    let me = node.process();
    let mut me = me;
    run_with_gl(
        &mut e,
        gl,
        me.pid(),
        r#"io:write({ok, "\x{e9}"}), io:nl(), io:request(GL, {requests, [{put_chars, unicode, "a"}, {put_chars, latin1, <<233>>}]})"#,
    );
    assert_eq!(done(&mut me).await, term!(ok));
    let mut text = String::new();
    while text.len() < "{ok,[233]}\naé".len() {
        text.push_str(&next(&mut out).await);
    }
    assert_eq!(text, "{ok,[233]}\naé");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_options_and_errors() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node = rust_node(&epmd).await;
    let mut e = erl(&epmd);
    let (tx, mut out) = tokio::sync::mpsc::unbounded_channel();
    let gl = node.start_group_leader(
        GroupLeaderConfig::channel(tx).input_text("typed line\nsecond ünïcode\nabcdef"),
    );
    let mut me = node.process();
    run_with_gl(&mut e, gl, me.pid(), r#"io:get_line("> ")"#);
    assert_eq!(done(&mut me).await, charlist("typed line\n"));
    assert_eq!(next(&mut out).await, "> ", "the prompt is printed");
    run_with_gl(&mut e, gl, me.pid(), r#"io:get_line('')"#);
    assert_eq!(done(&mut me).await, charlist("second ünïcode\n"));
    // get_chars, then binary mode, then the end of input.
    run_with_gl(
        &mut e,
        gl,
        me.pid(),
        r#"A = io:get_chars("", 3), ok = io:setopts([binary]), B = io:get_line(""), Opts = io:getopts(), ok = io:setopts([list]), {A, B, proplists:get_value(binary, Opts), io:get_line("")}"#,
    );
    assert_eq!(
        done(&mut me).await,
        Term::Tuple(vec![
            charlist("abc"),
            term!(<<"def">>),
            term!(true),
            term!(eof)
        ])
    );
    // Requests it does not serve.
    run_with_gl(
        &mut e,
        gl,
        me.pid(),
        r#"{io:request(GL, {frobnicate, 1}), io:columns(), catch io:format("~p", [])}"#,
    );
    let got = done(&mut me).await;
    let t = got.as_tuple().unwrap();
    assert_eq!(t[0], term!({error, request}));
    assert_eq!(t[1], term!({error, enotsup}));
    assert!(
        matches!(t[2].as_tuple(), Some([x, _]) if x.is_atom("EXIT")),
        "a bad format raises in the caller: {got}"
    );
    // Elixir's IO.gets on a group leader in binary mode.
    let gl = node.start_group_leader(
        GroupLeaderConfig::stdout()
            .binary(true)
            .input_text("Kate\n"),
    );
    let mut me = node.process();
    me.set_group_leader(gl);
    let mut e2 = erl_with(&epmd, &["-pa", "/usr/lib/elixir/lib/elixir/ebin"]);
    run_with_gl(&mut e2, gl, me.pid(), r#"'Elixir.IO':gets(<<>>)"#);
    assert_eq!(done(&mut me).await, term!(<<"Kate\n">>));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_group_leader_and_inheritance() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let node: Node = rust_node(&epmd).await;
    let e = erl(&epmd);
    // Without a group leader of its own a process has the node's default
    // one, registered as `user`.
    let p = node.process();
    let default = p.group_leader();
    assert_eq!(node.whereis("user"), Some(default));
    assert_eq!(node.default_group_leader(), default);
    // A remote spawn inherits the caller's group leader.
    let (tx, mut out) = tokio::sync::mpsc::unbounded_channel();
    p.set_group_leader(node.start_group_leader(GroupLeaderConfig::channel(tx)));
    p.spawn_remote(
        e.name(),
        "io",
        "format",
        vec![term!("~s~n"), term!([["x"]])],
        SpawnOpts::new(),
    )
    .await
    .unwrap();
    assert_eq!(next(&mut out).await, "x\n");
    node.shutdown().await;
}
