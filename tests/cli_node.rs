//! `erldist ping|call|spawn|send` against a real `erl` node that each test
//! starts with a private EPMD (found through `ERL_EPMD_PORT`).

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use erldist::testing::{require_erl, unique_name, ErlNode, RealEpmd};
use erldist::Term;

const BIN: &str = env!("CARGO_BIN_EXE_erldist");
const COOKIE: &str = "cli_node_cookie";

/// A private EPMD with an `erl` node registered on it.
struct Setup {
    epmd: RealEpmd,
    erl: ErlNode,
}

fn setup() -> Setup {
    let epmd = RealEpmd::start().expect("start epmd");
    let erl = ErlNode::start("cli", epmd.port(), COOKIE).expect("start erl");
    Setup { epmd, erl }
}

impl Setup {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("ERL_EPMD_PORT", self.epmd.port().to_string())
            .stdin(Stdio::null());
        c
    }

    /// Runs `erldist COMMAND <erl node> REST... --cookie COOKIE`.
    fn run(&self, command: &str, rest: &[&str]) -> Output {
        let mut args = vec![command, self.erl.name()];
        args.extend_from_slice(rest);
        args.extend_from_slice(&["--cookie", COOKIE, "--timeout", "10"]);
        self.command(&args).output().expect("run erldist")
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("an exit code, not a signal")
}

#[test]
fn ping_pong_and_pang() {
    if !require_erl() {
        return;
    }
    let s = setup();
    let o = s.run("ping", &[]);
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "pong\n"),
        "{}",
        stderr(&o)
    );

    // A wrong cookie: pang, and why.
    let o = s
        .command(&["ping", s.erl.name(), "--cookie", "wrong", "--timeout", "5"])
        .output()
        .unwrap();
    assert_eq!((code(&o), stdout(&o).as_str()), (1, "pang\n"));
    assert!(stderr(&o).contains("cookie"), "{}", stderr(&o));

    // A node that is not there: pang, quickly.
    let started = Instant::now();
    let missing = format!("{}@localhost", unique_name("missing"));
    let o = s
        .command(&["ping", &missing, "--cookie", COOKIE, "--timeout", "5"])
        .output()
        .unwrap();
    assert_eq!((code(&o), stdout(&o).as_str()), (1, "pang\n"));
    assert!(stderr(&o).contains("not registered"), "{}", stderr(&o));
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn ping_a_name_without_host_means_this_host() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let alive = unique_name("short");
    // `erl -sname alive` takes this host's short name, as the CLI does.
    let erl = ErlNode::start_exact(&alive, epmd.port(), COOKIE, &[]).unwrap();
    let s = Setup { epmd, erl };
    let o = s
        .command(&["ping", &alive, "--cookie", COOKIE])
        .output()
        .unwrap();
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "pong\n"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn call_prints_the_result() {
    if !require_erl() {
        return;
    }
    let s = setup();
    let o = s.run("call", &["lists", "seq", "[1, 5]"]);
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "[1,2,3,4,5]\n"),
        "{}",
        stderr(&o)
    );
    // No ARGS: no arguments.
    let o = s.run("call", &["erlang", "node"]);
    assert_eq!(stdout(&o), format!("{}\n", s.erl.name()));
    // The CLI node is hidden: not in the peer's nodes().
    let o = s.run("call", &["erlang", "nodes"]);
    assert_eq!((code(&o), stdout(&o).as_str()), (0, "[]\n"));
}

#[test]
fn call_raising_exits_1_with_the_reason() {
    if !require_erl() {
        return;
    }
    let s = setup();
    let o = s.run("call", &["erlang", "error", "[oops]"]);
    assert_eq!(code(&o), 1);
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("oops"), "{}", stderr(&o));
    let o = s.run("call", &["nomod", "nofun", "[]"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("undef"), "{}", stderr(&o));
}

#[test]
fn call_prints_a_megabyte_result_completely() {
    if !require_erl() {
        return;
    }
    let s = setup();
    let o = s.run("call", &["binary", "copy", r#"[<<"ab">>, 600000]"#]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let printed: Term = stdout(&o).trim().parse().expect("the output parses");
    match printed {
        Term::Binary(b) => {
            assert_eq!(b.len(), 1_200_000);
            assert!(b.chunks(2).all(|c| c == b"ab"));
        }
        other => panic!("not a binary: {}", other.to_string().len()),
    }
}

#[test]
fn spawn_prints_the_output_and_exits_with_the_process() {
    if !require_erl() {
        return;
    }
    let s = setup();
    let o = s.run("spawn", &["io", "format", r#"["hi~n"]"#]);
    assert_eq!(
        (code(&o), stdout(&o).as_str()),
        (0, "hi\n"),
        "{}",
        stderr(&o)
    );
    let o = s.run("spawn", &["erlang", "exit", "[boom]"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("boom"), "{}", stderr(&o));
}

#[test]
fn spawn_streams_the_output_as_it_is_written() {
    if !require_erl() {
        return;
    }
    let mut s = setup();
    // A module whose function prints, sleeps, prints.
    let loaded = s
        .erl
        .eval(
            r#"{ok, Ts, _} = erl_scan:string("io:format(\"one~n\"), timer:sleep(1500), io:format(\"two~n\")."),
               {ok, Es} = erl_parse:parse_exprs(Ts),
               {ok, clitest, Bin} = compile:forms([{attribute, 1, module, clitest},
                   {attribute, 1, export, [{slow, 0}]},
                   {function, 1, slow, 0, [{clause, 1, [], [], Es}]}]),
               {module, clitest} = code:load_binary(clitest, "clitest.erl", Bin),
               ok."#,
        )
        .unwrap();
    assert_eq!(loaded, "ok");
    let mut child = s
        .command(&["spawn", s.erl.name(), "clitest", "slow", "--cookie", COOKIE])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "one");
    // The first line came while the process still runs.
    assert!(child.try_wait().unwrap().is_none());
    assert_eq!(lines.next().unwrap().unwrap(), "two");
    assert!(lines.next().is_none());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn send_to_a_registered_name() {
    if !require_erl() {
        return;
    }
    let mut s = setup();
    s.erl
        .eval(
            "register(store, spawn(fun() -> (fun L(Acc) -> receive {get, P} -> P ! {stored, lists:reverse(Acc)}, L(Acc); M -> L([M | Acc]) end end)([]) end)).",
        )
        .unwrap();
    let o = s.run("send", &["store", r#"{hello, <<"world">>, [1, 2]}"#]);
    assert_eq!((code(&o), stdout(&o).as_str()), (0, ""), "{}", stderr(&o));
    let o = s.run("send", &["store", "second"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let stored = s
        .erl
        .eval("store ! {get, self()}, receive {stored, A} -> A after 5000 -> timeout end.")
        .unwrap();
    assert_eq!(stored, r#"[{hello,<<119,111,114,108,100>>,[1,2]},second]"#);

    // A wrong cookie is reported, exit 1.
    let o = s
        .command(&["send", s.erl.name(), "store", "x", "--cookie", "wrong"])
        .output()
        .unwrap();
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("cookie"), "{}", stderr(&o));
}

#[test]
fn help_and_bad_usage() {
    for command in ["ping", "call", "spawn", "send", "names", "epmd"] {
        let o = Command::new(BIN)
            .args([command, "--help"])
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{command} --help");
        assert!(stdout(&o).contains("Usage: erldist"), "{}", stdout(&o));
    }
    for command in ["ping", "call", "spawn", "send"] {
        let o = Command::new(BIN)
            .args([command, "--help"])
            .output()
            .unwrap();
        assert!(stdout(&o).contains("Example:"), "{command}: {}", stdout(&o));
    }
    // Bad ARGS text, not a list, a bad TERM, a missing argument: exit 2,
    // before any connection.
    for args in [
        &["call", "nobody@localhost", "lists", "seq", "[1, 5"][..],
        &["call", "nobody@localhost", "lists", "seq", "{1, 5}"],
        &["spawn", "nobody@localhost", "io", "format", "[\"hi"],
        &["send", "nobody@localhost", "store", "{x"],
        &["call", "nobody@localhost", "lists"],
        &["ping"],
        &["ping", "x@localhost", "--timeout", "soon"],
    ] {
        let o = Command::new(BIN)
            .args(args)
            .args(["--cookie", COOKIE])
            .env("ERL_EPMD_PORT", "1")
            .output()
            .unwrap();
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).is_empty());
    }
}

#[test]
fn a_long_named_target_gets_a_long_named_cli_node() {
    if !require_erl() {
        return;
    }
    let epmd = RealEpmd::start().unwrap();
    let erl = ErlNode::start_long("long", epmd.port(), COOKIE, &[]).unwrap();
    let s = Setup { epmd, erl };
    let o = s.run("call", &["erlang", "node"]);
    assert_eq!(
        (code(&o), stdout(&o)),
        (0, format!("'{}'\n", s.erl.name())),
        "{}",
        stderr(&o)
    );
    // The CLI's own name is long too, and hidden.
    let o = s.run("call", &["erlang", "nodes", "[hidden]"]);
    let out = stdout(&o);
    assert!(out.starts_with("['erldist_") && out.contains('.'), "{out}");
}
