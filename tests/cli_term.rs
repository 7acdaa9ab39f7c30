//! `erldist term decode` and `erldist term encode`, run as a user runs them.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn erldist(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_erldist"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run erldist");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    child.wait_with_output().expect("wait")
}

fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).expect("UTF-8")
}

#[test]
fn decode_prints_a_binary_term_as_w() {
    let out = erldist(
        &["term", "decode"],
        &[131, 104, 2, 119, 2, b'o', b'k', 97, 42],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "{ok,42}\n");
}

#[test]
fn decode_hex_answers_each_line_and_fails_softly() {
    let input = "83680277026f6b612a\nzz\n83\n836b0003616263\n";
    let out = erldist(&["term", "decode", "--hex"], input.as_bytes());
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed line makes the exit status 1"
    );
    let lines: Vec<&str> = text(&out.stdout).lines().collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0], "{ok,42}");
    assert!(lines[1].starts_with("error: "), "{}", lines[1]);
    assert!(
        lines[2].starts_with("error: ") && lines[2].contains("byte 1"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "[97,98,99]");
    // All lines good: exit 0.
    let out = erldist(&["term", "decode", "--hex"], b"836a\n");
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "[]\n");
}

#[test]
fn encode_writes_the_external_format() {
    let out = erldist(
        &["term", "encode"],
        b"{ok, [1, 2], #{name => <<\"kate\">>}}.\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let expected = erldist::term!({ok, [1, 2], #{name => <<"kate">>}})
        .encode()
        .unwrap();
    assert_eq!(out.stdout, expected);
}

#[test]
fn encode_hex_round_trips_through_decode_hex() {
    let input = "{ok,42}\n\"hello\"\n16#ff\n<<\"ü\"/utf8>>\n{broken\n$a\n";
    let out = erldist(&["term", "encode", "--hex"], input.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<&str> = text(&out.stdout).lines().collect();
    assert_eq!(lines.len(), 6);
    assert!(
        lines[4].starts_with("error: ") && lines[4].contains("1:"),
        "{}",
        lines[4]
    );
    let good: String = lines
        .iter()
        .filter(|l| !l.starts_with("error"))
        .map(|l| format!("{l}\n"))
        .collect();
    let back = erldist(&["term", "decode", "--hex"], good.as_bytes());
    assert!(back.status.success());
    assert_eq!(
        text(&back.stdout),
        "{ok,42}\n[104,101,108,108,111]\n255\n<<195,188>>\n97\n"
    );
}

#[test]
fn decode_of_garbage_fails_with_a_reason() {
    let out = erldist(&["term", "decode"], &[131, 108, 0, 0, 0, 9]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("error") && err.contains("byte"), "{err}");
}
