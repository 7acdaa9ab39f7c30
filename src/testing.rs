//! Helpers for tests against the real Erlang tools, for erldist's own tests
//! and yours.
//!
//! Each helper starts a real program on private resources (a free port, a
//! unique node name) and kills it when dropped, so tests can run in
//! parallel and clean up even when they panic:
//!
//! - [`RealEpmd`]: the real `epmd -port N` on a free port;
//! - [`ErlNode`]: a real `erl -sname` node registered with the EPMD on a
//!   given port, which can evaluate Erlang expressions for you, and be
//!   frozen for a while ([`ErlNode::freeze`]);
//! - [`require_erl`]: whether to run such tests at all.
//!
//! Binaries are found through `PATH`.
//!
//! These helpers block (they use threads, not tokio). From a tokio test
//! that also runs an erldist server, use a multi-threaded runtime
//! (`#[tokio::test(flavor = "multi_thread")]`) so the server keeps running
//! while a helper waits.
//!
//! ```no_run
//! use erldist::testing::{require_erl, ErlNode, RealEpmd};
//! if !require_erl() {
//!     return;
//! }
//! let epmd = RealEpmd::start().unwrap();
//! let mut node = ErlNode::start("demo", epmd.port(), "secret").unwrap();
//! assert_eq!(node.eval("1 + 2.").unwrap(), "3");
//! ```

use std::env;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long [`ErlNode::start`] waits for a node to come up.
pub const NODE_START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`ErlNode::eval`] waits for a result.
pub const EVAL_TIMEOUT: Duration = Duration::from_secs(20);

/// Finds `program` in `PATH`.
pub fn find_executable(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

/// Whether interop tests must run: `ERLDIST_REQUIRE_INTEROP=1` or
/// `CI=true`.
pub fn interop_required() -> bool {
    env::var("ERLDIST_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
        || env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Whether the real `erl` and `epmd` are available.
///
/// Returns `true` when both are in `PATH`. When one is missing: if
/// interop tests are required ([`interop_required`]: CI), **panics** with a
/// clear message, so the test fails instead of silently skipping;
/// otherwise prints a skip notice and returns `false`, and the test should
/// return early.
pub fn require_erl() -> bool {
    require_programs(&["erl", "epmd"])
}

/// As [`require_erl`], for any set of programs (e.g. `["elixir"]`).
///
/// # Panics
/// When a program is missing and interop tests are required: failing the
/// test is the point.
#[allow(clippy::panic)]
pub fn require_programs(programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| find_executable(p).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if interop_required() {
        panic!(
            "interop test needs {missing:?} in PATH, and ERLDIST_REQUIRE_INTEROP=1 or CI=true \
             forbids skipping: install Erlang/OTP (e.g. `apt-get install erlang`)"
        );
    }
    eprintln!(
        "SKIPPED: {missing:?} not found in PATH (set ERLDIST_REQUIRE_INTEROP=1 to fail instead)"
    );
    false
}

/// An Erlang expression whose value is `t`, pids, ports, references and
/// funs included: `binary_to_term(<<...>>)` of its external format. For
/// passing Rust values into [`ErlNode::eval`].
///
/// ```
/// let e = erldist::testing::erl_literal(&erldist::term!({ok, 1}));
/// assert_eq!(e, "binary_to_term(<<131,104,2,119,2,111,107,97,1>>)");
/// ```
pub fn erl_literal(t: &crate::Term) -> String {
    let bytes = t.encode().unwrap_or_default();
    let list: Vec<String> = bytes.iter().map(u8::to_string).collect();
    format!("binary_to_term(<<{}>>)", list.join(","))
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A node name unique across processes and calls: `prefix` plus the
/// process id, a counter and the time.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() % 1_000_000);
    format!("{prefix}_{}_{n}_{t}", std::process::id())
}

/// A TCP port free right now on all interfaces (the OS picks it). Another
/// process may take it before you bind it: retry on collision.
pub fn free_port() -> io::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    Ok(l.local_addr()?.port())
}

/// Runs `start` on a port free right now ([`free_port`]) and, if it
/// fails, on another one, five times at most: another process may take a
/// picked port before `start` binds it. Returns the port and what `start`
/// made, or the last failure (as an [`io::Error`] with its text).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use erldist::testing::on_free_port;
/// let (port, listener) = on_free_port(|port| tokio::net::TcpListener::bind(("127.0.0.1", port)))
///     .await
///     .unwrap();
/// assert_eq!(listener.local_addr().unwrap().port(), port);
/// # }
/// ```
pub async fn on_free_port<T, E, F>(mut start: impl FnMut(u16) -> F) -> io::Result<(u16, T)>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut attempt = 0;
    loop {
        let port = free_port()?;
        match start(port).await {
            Ok(t) => return Ok((port, t)),
            Err(e) if attempt == 4 => return Err(io::Error::other(format!("on port {port}: {e}"))),
            Err(_) => attempt += 1,
        }
    }
}

/// Sends a raw EPMD `NAMES` request to `127.0.0.1:port` and returns the
/// whole reply (blocking, with `timeout` per step).
pub fn raw_names(port: u16, timeout: Duration) -> io::Result<Vec<u8>> {
    raw_request(port, &[0, 1, b'n'], timeout)
}

/// Sends `bytes` to `127.0.0.1:port` and reads until the peer closes.
pub fn raw_request(port: u16, bytes: &[u8], timeout: Duration) -> io::Result<Vec<u8>> {
    let addr = (Ipv4Addr::LOCALHOST, port).into();
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(bytes)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// Runs the real `epmd -port <port> <args>` as a client (e.g. `-names`,
/// `-kill`, `-stop name`) and returns its exit success and output
/// (stdout, then stderr).
pub fn epmd_command(port: u16, args: &[&str]) -> io::Result<(bool, String)> {
    let out = Command::new("epmd")
        .arg("-port")
        .arg(port.to_string())
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns
/// whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// The real `epmd`, in the foreground on a private port; killed on drop,
/// and also when the process that started it ends without dropping it (a
/// test or bench killed by a signal): it runs under a shell that ends it
/// when the starting process's end of a pipe closes.
#[derive(Debug)]
pub struct RealEpmd {
    /// The `sh` watching `epmd`: it ends when `epmd` does.
    child: Child,
    /// Our end of the watcher's pipe: `epmd` is ended when it closes.
    stdin: Option<ChildStdin>,
    port: u16,
}

/// How [`RealEpmd`] runs `epmd` (whose arguments follow): under `sh`, which
/// ends `epmd` when its standard input reaches end of file (the starting
/// process holds the other end of that pipe, which closes however that
/// process ends), and which itself ends when `epmd` does, with its status.
const EPMD_WATCH: &str = "exec 3<&0; epmd \"$@\" </dev/null & e=$!; \
(cat <&3 >/dev/null; kill $e 2>/dev/null) & c=$!; \
wait $e; s=$?; kill $c 2>/dev/null; exit $s";

impl RealEpmd {
    /// Starts `epmd -port N` on a free port and waits until it answers.
    pub fn start() -> io::Result<RealEpmd> {
        Self::start_with(&[])
    }

    /// Starts `epmd -relaxed_command_check` (KILL with nodes alive, STOP).
    pub fn start_relaxed() -> io::Result<RealEpmd> {
        Self::start_with(&["-relaxed_command_check"])
    }

    /// Starts `epmd -port N <args>` on a free port, retrying on port
    /// collisions.
    pub fn start_with(args: &[&str]) -> io::Result<RealEpmd> {
        let mut last_err = io::Error::other("epmd did not start");
        for _ in 0..10 {
            let port = free_port()?;
            let mut child = Command::new("sh")
                .args(["-c", EPMD_WATCH, "epmd", "-port", &port.to_string()])
                .args(args)
                .env_remove("ERL_EPMD_RELAXED_COMMAND_CHECK")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let stdin = child.stdin.take();
            let mut epmd = RealEpmd { child, stdin, port };
            let up = wait_until(Duration::from_secs(5), || {
                epmd.exited()
                    || raw_names(port, Duration::from_millis(500))
                        .is_ok_and(|r| r.get(..4) == Some(&u32::from(port).to_be_bytes()[..]))
            });
            // Still ours? (epmd exits at once if the port was taken.)
            thread::sleep(Duration::from_millis(30));
            if up && !epmd.exited() {
                return Ok(epmd);
            }
            last_err = io::Error::other(format!("epmd on port {port} did not start"));
        }
        Err(last_err)
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What `epmd -port N -names` prints.
    pub fn names_text(&self) -> io::Result<String> {
        epmd_command(self.port, &["-names"]).map(|(_, text)| text)
    }
}

impl Drop for RealEpmd {
    fn drop(&mut self) {
        // The watcher ends epmd, then itself; kill it only if it does not.
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.exited() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `erl`, `epmd`, `elixir` and `mix` are available; as
/// [`require_erl`] (skips, or panics when interop tests are required).
pub fn require_elixir() -> bool {
    require_programs(&["erl", "epmd", "elixir", "mix"])
}

/// The `ebin` directories of the installed Elixir's `elixir` and `logger`
/// applications (asked from `elixir` itself), for `erl -pa`.
pub fn elixir_ebins() -> io::Result<Vec<PathBuf>> {
    let out = Command::new("elixir")
        .args([
            "-e",
            "for a <- [:elixir, :logger], do: IO.puts(:code.lib_dir(a, :ebin))",
        ])
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "elixir failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "_build" || name == "deps" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

/// Copies the Mix project at `project` (one without dependencies) into a
/// new directory under `work_dir`, runs `mix compile` there, and returns
/// the `ebin` directories it built (for [`ErlNode::start_elixir`]). The
/// original is left untouched. Takes about a second: do it once per test
/// binary (a `std::sync::OnceLock`).
pub fn mix_compile(
    project: &std::path::Path,
    work_dir: &std::path::Path,
) -> io::Result<Vec<PathBuf>> {
    let dir = work_dir.join(unique_name("mix"));
    copy_dir(project, &dir)?;
    let out = Command::new("mix")
        .arg("compile")
        .current_dir(&dir)
        .env("MIX_ENV", "dev")
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "mix compile failed in {}: {}{}",
            dir.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let lib = dir.join("_build").join("dev").join("lib");
    let mut ebins = Vec::new();
    for entry in std::fs::read_dir(&lib)? {
        let ebin = entry?.path().join("ebin");
        if ebin.is_dir() {
            ebins.push(ebin);
        }
    }
    Ok(ebins)
}

/// The `erl` arguments that run Elixir applications: Elixir's own ebin
/// directories and `code_paths` on the code path (`-pa`), and
/// `application:ensure_all_started/1` of each of `apps`.
pub fn elixir_args(code_paths: &[PathBuf], apps: &[&str]) -> io::Result<Vec<String>> {
    let mut args = vec!["-pa".to_owned()];
    for p in elixir_ebins()?.iter().chain(code_paths) {
        args.push(p.display().to_string());
    }
    for app in apps {
        args.push("-eval".into());
        args.push(format!(
            "{{ok, _}} = application:ensure_all_started('{app}')."
        ));
    }
    Ok(args)
}

/// The Erlang code an [`ErlNode`] runs: print a ready line, then read one
/// expression per line from stdin and hand it to an evaluating process,
/// which prints `ERLDIST_RESULT {ok,V}` or `ERLDIST_RESULT {error,...}`;
/// halt at end of input, even while an evaluation is still running (so the
/// node dies with the process that started it however that one ends: a
/// test or bench killed by a signal, or one whose expression never
/// returns). The evaluating process is the same for every expression, so
/// `self()` and its mailbox carry over from one to the next.
const EVAL_LOOP: &str = r#"io:format("ERLDIST_READY~n"),
Eval = spawn(fun E() ->
    receive
        {erldist_line, Line0} ->
            %% A binary once Elixir has set standard_io to binary mode.
            Line = unicode:characters_to_list(Line0),
            R = try
                    {ok, Ts, _} = erl_scan:string(Line),
                    {ok, Es} = erl_parse:parse_exprs(Ts),
                    {value, V, _} = erl_eval:exprs(Es, []),
                    {ok, V}
                catch C:X -> {error, {C, X}}
                end,
            io:format("ERLDIST_RESULT ~w~n", [R]),
            E()
    end
end),
Loop = fun L() ->
    case io:get_line('') of
        eof -> halt();
        {error, _} -> halt();
        Line0 -> Eval ! {erldist_line, Line0}, L()
    end
end,
Loop()."#;

/// A real `erl -sname <unique>@localhost` node; killed on drop.
///
/// It runs with `ERL_EPMD_PORT` set to the given port and `-start_epmd
/// false` (so it never starts an `epmd` of its own: the EPMD under test is
/// the one it uses).
pub struct ErlNode {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Lines the node printed that are not eval results, not yet taken.
    output: Vec<String>,
    stderr: Arc<Mutex<String>>,
    name: String,
}

impl std::fmt::Debug for ErlNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErlNode").field("name", &self.name).finish()
    }
}

impl ErlNode {
    /// Starts a node named `<unique_name(prefix)>@localhost` with `cookie`,
    /// registering with the EPMD on `epmd_port`, and waits until it is up
    /// (distribution started, so registered).
    pub fn start(prefix: &str, epmd_port: u16, cookie: &str) -> io::Result<ErlNode> {
        Self::start_with(prefix, epmd_port, cookie, &[])
    }

    /// As [`start`](Self::start), with extra `erl` arguments.
    pub fn start_with(
        prefix: &str,
        epmd_port: u16,
        cookie: &str,
        extra_args: &[&str],
    ) -> io::Result<ErlNode> {
        Self::start_named("-sname", "localhost", prefix, epmd_port, cookie, extra_args)
    }

    /// Starts a node running Elixir applications, as `iex --sname NAME -S
    /// mix` would run a project: with Elixir and `code_paths` (e.g. from
    /// [`mix_compile`]) on its code path, and `apps` started. Use
    /// [`start_exact`](Self::start_exact) with [`elixir_args`] for an exact
    /// name. [`eval`](Self::eval) takes Erlang syntax:
    /// `'Elixir.Chat':send_message('kate@localhost', <<"hi">>).`
    ///
    /// ```no_run
    /// use erldist::testing::{mix_compile, require_elixir, ErlNode, RealEpmd};
    /// if !require_elixir() {
    ///     return;
    /// }
    /// let ebins = mix_compile("tests/fixtures/chat".as_ref(), &std::env::temp_dir()).unwrap();
    /// let epmd = RealEpmd::start().unwrap();
    /// let mut kate = ErlNode::start_elixir("kate", epmd.port(), "secret", &ebins, &["chat"]).unwrap();
    /// assert_eq!(kate.eval("'Elixir.Chat':receive_message(<<\"hi\">>).").unwrap(), "ok");
    /// assert!(kate.wait_output("hi", std::time::Duration::from_secs(5)));
    /// ```
    pub fn start_elixir(
        prefix: &str,
        epmd_port: u16,
        cookie: &str,
        code_paths: &[PathBuf],
        apps: &[&str],
    ) -> io::Result<ErlNode> {
        let args = elixir_args(code_paths, apps)?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Self::start_with(prefix, epmd_port, cookie, &args)
    }

    /// As [`start_with`](Self::start_with), but with a long name:
    /// `erl -name <unique>@127.0.0.1`.
    pub fn start_long(
        prefix: &str,
        epmd_port: u16,
        cookie: &str,
        extra_args: &[&str],
    ) -> io::Result<ErlNode> {
        Self::start_named("-name", "127.0.0.1", prefix, epmd_port, cookie, extra_args)
    }

    /// Starts a node with exactly the short name `name` (`alive@localhost`),
    /// e.g. to restart a node under the name it had.
    pub fn start_exact(
        name: &str,
        epmd_port: u16,
        cookie: &str,
        extra_args: &[&str],
    ) -> io::Result<ErlNode> {
        Self::spawn_node("-sname", name.to_owned(), epmd_port, cookie, extra_args)
    }

    fn start_named(
        name_flag: &str,
        host: &str,
        prefix: &str,
        epmd_port: u16,
        cookie: &str,
        extra_args: &[&str],
    ) -> io::Result<ErlNode> {
        let alive = unique_name(prefix);
        Self::spawn_node(
            name_flag,
            format!("{alive}@{host}"),
            epmd_port,
            cookie,
            extra_args,
        )
    }

    fn spawn_node(
        name_flag: &str,
        name: String,
        epmd_port: u16,
        cookie: &str,
        extra_args: &[&str],
    ) -> io::Result<ErlNode> {
        let mut child = Command::new("erl")
            .args([name_flag, &name, "-setcookie", cookie, "-noshell"])
            .args(["-start_epmd", "false"])
            .args(extra_args)
            .args(["-eval", EVAL_LOOP])
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("no stdout"))?;
        let stderr_pipe = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("no stderr"))?;
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut s) = sink.lock() {
                    if s.len() < 64 * 1024 {
                        s.push_str(&line);
                        s.push('\n');
                    }
                }
            }
        });
        let mut node = ErlNode {
            child,
            stdin,
            lines,
            stderr,
            name,
            output: Vec::new(),
        };
        node.expect_line("ERLDIST_READY", NODE_START_TIMEOUT)?;
        Ok(node)
    }

    fn expect_line(&mut self, prefix: &str, timeout: Duration) -> io::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(line) => self.output.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "node {}: no {prefix:?} line in time; stderr: {}",
                            self.name,
                            self.stderr_text()
                        ),
                    ))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other(format!(
                        "node {} exited; stderr: {}",
                        self.name,
                        self.stderr_text()
                    )))
                }
            }
        }
    }

    fn stderr_text(&self) -> String {
        // Give the reader thread a moment to collect the last words.
        thread::sleep(Duration::from_millis(50));
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// The full node name, `name@localhost` (`name@127.0.0.1` for
    /// [`start_long`](Self::start_long)).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The alive part of the name (what EPMD lists).
    pub fn alive_name(&self) -> &str {
        self.name.split('@').next().unwrap_or(&self.name)
    }

    /// The OS process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Evaluates `expr` (with or without its final `.`) on the node and
    /// returns its value as a term, through `term_to_binary`, so that pids
    /// and references keep their node (the `~w` text of
    /// [`eval`](Self::eval) prints them as `<0.85.0>`).
    pub fn eval_term(&mut self, expr: &str) -> io::Result<crate::Term> {
        let expr = expr.trim_end().trim_end_matches('.');
        let text = self.eval(&format!(
            "term_to_binary(({expr}), [{{minor_version, 2}}])."
        ))?;
        let bin: crate::Term = text
            .parse()
            .map_err(|e| io::Error::other(format!("not a term: {e}")))?;
        let bytes = bin
            .as_binary()
            .ok_or_else(|| io::Error::other(format!("not a binary: {bin}")))?;
        crate::Term::decode(bytes).map_err(io::Error::other)
    }

    /// Evaluates Erlang expressions on the node (one line, ending with a
    /// `.`), and returns the value printed with `~w`, or `Err` with the
    /// exception or I/O problem.
    ///
    /// ```no_run
    /// # let mut node: erldist::testing::ErlNode = unimplemented!();
    /// assert_eq!(node.eval("lists:sum([1,2,3]).").unwrap(), "6");
    /// ```
    pub fn eval(&mut self, expr: &str) -> io::Result<String> {
        let expr = expr.replace('\n', " ");
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::other("node stdin closed"))?;
        writeln!(stdin, "{expr}")?;
        stdin.flush()?;
        let line = self.expect_line("ERLDIST_RESULT ", EVAL_TIMEOUT)?;
        let result = line.trim_start_matches("ERLDIST_RESULT ");
        match result
            .strip_prefix("{ok,")
            .and_then(|r| r.strip_suffix('}'))
        {
            Some(value) => Ok(value.to_owned()),
            None => Err(io::Error::other(format!(
                "{expr} failed on {}: {result}",
                self.name
            ))),
        }
    }

    /// Takes the lines the node printed on its standard output so far
    /// (what `io:format/2` or Elixir's `IO.puts/1` wrote there), except
    /// the helper's own; later calls return only newer lines.
    pub fn take_output(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.try_recv() {
            self.output.push(line);
        }
        std::mem::take(&mut self.output)
    }

    /// Waits until the node prints the line `line` on its standard output
    /// (see [`take_output`](Self::take_output)); returns whether it did
    /// within `timeout`. Lines before it are consumed, later ones kept.
    pub fn wait_output(&mut self, line: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.output.iter().position(|l| l == line) {
                self.output.drain(..=i);
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.output.push(l),
                Err(_) => return false,
            }
        }
    }

    /// Kills the node at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Freezes the node's OS process (`SIGSTOP`) until the returned guard
    /// is dropped (`SIGCONT`), even when the test panics meanwhile: a node
    /// that reads, answers and ticks no more, as one stalled by its
    /// machine. What is sent to it waits in the sockets, then in the
    /// sender's queue.
    ///
    /// # Errors
    /// When `kill -STOP` cannot be run or fails.
    pub fn freeze(&self) -> io::Result<Frozen> {
        signal(self.pid(), "STOP")?;
        Ok(Frozen { pid: self.pid() })
    }
}

/// An [`ErlNode`] frozen by [`ErlNode::freeze`]; resumed when dropped.
#[derive(Debug)]
#[must_use = "the node resumes as soon as the guard is dropped"]
pub struct Frozen {
    pid: u32,
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // Nothing to do if it fails: the node was killed meanwhile.
        let _ = signal(self.pid, "CONT");
    }
}

/// Sends `signal` (`STOP`, `CONT`) to the OS process `pid` with `kill`.
fn signal(pid: u32, signal: &str) -> io::Result<()> {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("kill -{signal} {pid}: {status}")))
    }
}

impl Drop for ErlNode {
    fn drop(&mut self) {
        self.stdin = None;
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("a"), unique_name("a"));
        assert!(unique_name("pre").starts_with("pre_"));
    }

    #[test]
    fn free_port_is_nonzero() {
        assert_ne!(free_port().unwrap(), 0);
    }

    /// An epmd whose starter goes away (its end of the watcher's pipe
    /// closes, as when the process is killed) ends, and its port is free.
    #[test]
    fn epmd_ends_when_its_starter_goes_away() {
        if !require_erl() {
            return;
        }
        let mut epmd = RealEpmd::start().unwrap();
        let port = epmd.port();
        assert!(raw_names(port, Duration::from_secs(1)).is_ok());
        epmd.stdin = None;
        assert!(
            wait_until(Duration::from_secs(5), || raw_names(
                port,
                Duration::from_millis(200)
            )
            .is_err()),
            "epmd on port {port} outlived its starter"
        );
        assert!(wait_until(Duration::from_secs(5), || epmd.exited()));
    }

    /// A node whose starter goes away (its stdin closes) halts, even in
    /// the middle of an evaluation that would never return.
    #[test]
    fn a_node_halts_when_its_stdin_closes_during_an_evaluation() {
        if !require_erl() {
            return;
        }
        let epmd = RealEpmd::start().unwrap();
        let mut node = ErlNode::start("erl", epmd.port(), "cookie").unwrap();
        assert_eq!(node.eval("self() =:= self().").unwrap(), "true");
        let stdin = node.stdin.as_mut().unwrap();
        writeln!(stdin, "receive never_sent -> ok end.").unwrap();
        stdin.flush().unwrap();
        thread::sleep(Duration::from_millis(200));
        assert!(node.is_running());
        node.stdin = None;
        assert!(
            wait_until(Duration::from_secs(10), || !node.is_running()),
            "the node outlived its stdin"
        );
    }
}
