//! The `serde` feature against the real OTP and Elixir: a Rust struct
//! encoded by erldist is pattern-matched by `binary_to_term/1` as a map,
//! an Elixir struct, a tagged tuple; and what Elixir encodes reads back into
//! the Rust types.
#![cfg(feature = "serde")]

use std::process::Command;

use erldist::testing::{require_erl, require_programs};
use erldist::{from_bytes, to_bytes, to_term_struct, Term};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct User {
    name: String,
    age: u32,
    email: Option<String>,
    tags: Vec<String>,
    role: Role,
    big: u128,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Role {
    Admin,
    Member(u32),
    Custom { level: u8 },
}

fn kate() -> User {
    User {
        name: "kate".into(),
        age: 33,
        email: None,
        tags: vec!["a".into(), "b".into()],
        role: Role::Member(7),
        big: u128::MAX,
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        // No erl_crash.dump in the crate when a match fails.
        .env("ERL_CRASH_DUMP_SECONDS", "0")
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn erlang_pattern_matches_a_rust_struct_as_a_map() {
    if !require_erl() {
        return;
    }
    let hex = hex::encode_upper(to_bytes(&kate()).unwrap());
    let code = format!(
        "B = binary:decode_hex(<<\"{hex}\">>), \
         #{{name := Name, age := 33, email := nil, tags := [<<\"a\">>, <<\"b\">>], \
            role := {{member, 7}}, big := Big}} = binary_to_term(B), \
         Big = 340282366920938463463374607431768211455, \
         io:format(\"~s~n\", [Name]), halt()."
    );
    assert_eq!(run("erl", &["-noshell", "-eval", &code]), "kate");
}

#[test]
fn erlang_terms_read_into_rust_types() {
    if !require_erl() {
        return;
    }
    // A charlist name, undefined for None, an atom-keyed map, a struct variant.
    let code = "io:format(\"~s~n\", [binary:encode_hex(term_to_binary(\
        #{name => \"kate\", age => 33, email => undefined, tags => [<<\"a\">>, <<\"b\">>], \
          role => {custom, #{level => 3}}, big => 340282366920938463463374607431768211455}))]), halt().";
    let hex = run("erl", &["-noshell", "-eval", code]);
    let u: User = from_bytes(&hex::decode(hex).unwrap()).unwrap();
    assert_eq!(
        u,
        User {
            role: Role::Custom { level: 3 },
            ..kate()
        }
    );
}

#[test]
fn elixir_matches_a_rust_struct_and_an_elixir_struct() {
    if !require_programs(&["elixir"]) {
        return;
    }
    let plain = hex::encode_upper(to_bytes(&kate()).unwrap());
    let user = to_term_struct(&kate(), "MyApp.User").unwrap();
    let strukt = hex::encode_upper(user.encode().unwrap());
    let admin = hex::encode_upper(to_bytes(&Role::Admin).unwrap());
    let code = format!(
        r#"
defmodule MyApp.User do
  defstruct [:name, :age, :email, :tags, :role, :big]
end
defmodule Check do
  def run do
%{{name: name, email: nil, role: {{:member, 7}}}} = :erlang.binary_to_term(Base.decode16!("{plain}"))
%MyApp.User{{name: ^name, age: 33, tags: ["a", "b"]}} = :erlang.binary_to_term(Base.decode16!("{strukt}"))
:admin = :erlang.binary_to_term(Base.decode16!("{admin}"))
IO.puts(name)
back = %MyApp.User{{name: "ann", age: 1, email: "a@b", tags: [], role: :admin, big: 0}}
IO.puts(Base.encode16(:erlang.term_to_binary(back)))
  end
end
Check.run()
"#
    );
    let out = run("elixir", &["-e", &code]);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("kate"));
    let back: User = from_bytes(&hex::decode(lines.next().unwrap()).unwrap()).unwrap();
    assert_eq!(
        back,
        User {
            name: "ann".into(),
            age: 1,
            email: Some("a@b".into()),
            tags: vec![],
            role: Role::Admin,
            big: 0,
        }
    );
    // The struct key is there on the way in; a Term sees it.
    let raw: Term = from_bytes(&hex::decode(strukt).unwrap()).unwrap();
    assert_eq!(
        erldist::serde::struct_module(&raw),
        Some("Elixir.MyApp.User")
    );
}
