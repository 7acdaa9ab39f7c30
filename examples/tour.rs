//! The tour: what erldist can do today, played step by step.
//!
//! `cargo run --example tour`
//!
//! It starts everything it needs itself: a private EPMD (erldist's own,
//! embedded, so no Erlang is needed for that part) and, when Erlang is
//! installed, a real `erl` node that finds us through it. It exits non-zero
//! if a step that should work fails, and cleans up what it started.
//!
//! The lesson's scenarios that need the `Node` type (spawning on a BEAM
//! node, the group leader, the chat) join the tour as that layer lands.

use std::process::ExitCode;

use erldist::epmd::{EpmdClient, EpmdServer, EpmdServerConfig};
use erldist::testing::{find_executable, ErlNode};
use erldist::{term, Term};

fn step(title: &str) {
    println!("\n== {title}");
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => {
            println!("\nThe tour is over: every step worked.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("\nA step failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    step("Erlang terms in Rust");
    let msg = term!({hi, <<"Hi, my name is Kate">>, [1, 2, 3], #{from => alex}});
    println!("a term, as ~w prints it:    {msg}");
    println!("the same, as ~p prints it:  {msg:#}");
    let bytes = msg.encode()?;
    println!(
        "term_to_binary gives {} bytes: {}",
        bytes.len(),
        hex(&bytes)
    );
    let back = Term::decode(&bytes)?;
    assert!(back.exact_eq(&msg));
    println!("and binary_to_term gives it back: {back}");

    step("EPMD, the port mapper (erldist's own server, on a private port)");
    let epmd = EpmdServer::start(EpmdServerConfig::with_port(0)).await?;
    let port = epmd.port();
    println!("erldist's EPMD listens on port {port}");
    let client = EpmdClient::with_address("127.0.0.1", port);
    let registration = client.register("alex", 45678).await?;
    println!(
        "registered alex at port 45678; EPMD handed out creation {}",
        registration.creation()
    );
    let info = client.port_please("alex").await?;
    println!(
        "looked alex up: port {}, protocol versions {}..{}",
        info.port, info.lowest_version, info.highest_version
    );

    if find_executable("erl").is_some() {
        step("A real Erlang node registers with erldist's EPMD");
        let mut kate =
            tokio::task::spawn_blocking(move || ErlNode::start("kate", port, "secret_token"))
                .await??;
        println!("started {} (a real erl node)", kate.name());
        let names = client.names().await?;
        for entry in &names.entries {
            println!("  epmd -names: name {} at port {}", entry.name, entry.port);
        }
        step("Erlang and Rust agree on the bytes");
        let (_kate, answer) = tokio::task::spawn_blocking(move || {
            let r = kate.eval(
                "term_to_binary({hi, <<\"Hi, my name is Kate\">>, [1,2,3], #{from => alex}}, [{minor_version, 2}]).",
            );
            (kate, r)
        })
        .await?;
        // erl answers in ~w text, which erldist parses.
        let erl_bytes = answer?.parse::<Term>()?;
        println!("erl's term_to_binary: {erl_bytes}");
        if erl_bytes.as_binary().map(|b| &b[..]) != Some(&bytes[..]) {
            return Err("erl and erldist encode the term differently".into());
        }
        println!("erldist's bytes are identical");
    } else {
        step("A real Erlang node (skipped)");
        println!("erl is not installed; install it to see a real node join:");
        println!("  apt-get install -y erlang-nox erlang-dev erlang-src elixir");
    }

    registration.unregister();
    epmd.shutdown().await;
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}
