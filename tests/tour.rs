//! `cargo run --example tour` plays the whole lesson: run the built example
//! and check that every scenario shows and it exits 0.

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/tour-<hash> → target/<profile>/examples/<name>
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    dir.join("examples").join(name)
}

fn run_tour(path: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new(example("tour"));
    if let Some(p) = path {
        cmd.env("PATH", p);
    }
    let out = cmd.output().expect("run the tour");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn the_tour_plays_the_lesson_with_real_elixir() {
    if !erldist::testing::require_elixir() {
        return;
    }
    let (ok, text) = run_tour(None);
    assert!(ok, "the tour failed:\n{text}");
    for line in [
        "kate: a real Elixir node running the lesson's chat app",
        "alex: net_adm:ping(kate@localhost) -> pong",
        "mallory: refused, as it should be",
        "alex's group leader prints: Hi, my name is Kate",
        "alex: receives 'sup?'",
        "kate prints: hi",
        "alex prints: how are you?",
        "moebi prints: hi",
        "kate: gets ok, and prints chicken?",
        "-> 42 (computed in Rust)",
        "The tour is over: every step worked.",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn without_elixir_the_tour_plays_what_rust_nodes_can_and_exits_0() {
    let empty = std::env::temp_dir().join("erldist-no-elixir-path");
    std::fs::create_dir_all(&empty).expect("dir");
    let (ok, text) = run_tour(empty.to_str());
    assert!(ok, "the tour failed:\n{text}");
    for line in [
        "elixir is not installed",
        "apt-get install -y erlang-nox erlang-dev erlang-src elixir",
        "alex's group leader prints: Hi, my name is Kate",
        "alex prints: chicken?",
        "-> 42",
        "The tour is over: every step worked.",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}
