//! Helpers for the tests that run the examples (`examples/*.rs`) as child
//! processes against real nodes (included by them with `#[path]`; no tests
//! of its own).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use erldist::testing::{mix_compile, ErlNode, RealEpmd};

pub const COOKIE: &str = "secret_token";
pub const T: Duration = Duration::from_secs(15);

/// The compiled example `name`: `cargo test` builds the examples into
/// `target/<profile>/examples/`, beside `deps/` where this test runs.
pub fn example_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>");
    let bin = profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(format!("{name}.rs"));
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if !bin.exists() || modified(&bin) < modified(&source) {
        // `cargo test --test examples_x` alone does not build the
        // examples (a plain `cargo test` does): build this one.
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args(["build", "--quiet", "--example", name])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("run cargo build");
        assert!(status.success(), "cargo build --example {name}");
    }
    assert!(bin.exists(), "{} not built", bin.display());
    bin
}

/// The lesson's chat project, compiled once per test binary.
pub fn chat_ebins() -> &'static [PathBuf] {
    static EBINS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    EBINS.get_or_init(|| {
        let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat");
        mix_compile(&fixture, env!("CARGO_TARGET_TMPDIR").as_ref())
            .expect("mix compile the chat fixture")
    })
}

/// An Elixir node running the chat application (`iex --sname ... -S mix`).
pub fn chat_node(prefix: &str, epmd: &RealEpmd) -> ErlNode {
    ErlNode::start_elixir(prefix, epmd.port(), COOKIE, chat_ebins(), &["chat"])
        .expect("start an Elixir chat node")
}

pub fn eval(node: &mut ErlNode, expr: &str) -> String {
    node.eval(expr)
        .unwrap_or_else(|e| panic!("eval {expr}: {e}"))
}

/// Runs example `name` to its end (at most `T`) with `ERL_EPMD_PORT` set;
/// returns its exit status, stdout and stderr.
pub fn run_example(name: &str, args: &[&str], epmd: &RealEpmd) -> (ExitStatus, String, String) {
    let mut child = Running::start(name, args, epmd);
    let deadline = Instant::now() + T;
    let status = loop {
        if let Some(s) = child.child.try_wait().expect("try_wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "{name} did not finish in {T:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    // The readers end with the pipes.
    let out: Vec<String> = child.stdout.iter().collect();
    let err: Vec<String> = child.stderr.iter().collect();
    (status, lines(&out), lines(&err))
}

fn lines(v: &[String]) -> String {
    v.iter().map(|l| format!("{l}\n")).collect()
}

/// An example running as a child process; killed on drop.
pub struct Running {
    pub child: Child,
    pub stdout: Receiver<String>,
    pub stderr: Receiver<String>,
    /// Lines of stdout read so far and not yet consumed.
    seen: Vec<String>,
}

impl Running {
    pub fn start(name: &str, args: &[&str], epmd: &RealEpmd) -> Running {
        let mut child = Command::new(example_bin(name))
            .args(args)
            .env("ERL_EPMD_PORT", epmd.port().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("run example {name}: {e}"));
        let stdout = reader(child.stdout.take().unwrap());
        let stderr = reader(child.stderr.take().unwrap());
        Running {
            child,
            stdout,
            stderr,
            seen: Vec::new(),
        }
    }

    /// Waits until the example prints the line `line` on stdout; lines
    /// before it are consumed. Returns whether it came within `T`.
    pub fn wait_stdout(&mut self, line: &str) -> bool {
        let deadline = Instant::now() + T;
        loop {
            if let Some(i) = self.seen.iter().position(|l| l == line) {
                self.seen.drain(..=i);
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => return false,
            }
        }
    }

    /// Waits until the example prints a line containing `text` on
    /// stderr (its status lines). Returns whether it came within `T`.
    pub fn wait_stderr(&mut self, text: &str) -> bool {
        let deadline = Instant::now() + T;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) if l.contains(text) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    /// The stdout lines not consumed yet (without waiting).
    pub fn take_stdout(&mut self) -> Vec<String> {
        while let Ok(l) = self.stdout.try_recv() {
            self.seen.push(l);
        }
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn reader(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}
