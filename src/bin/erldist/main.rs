//! The `erldist` command line.
//!
//! - `erldist term decode [--hex]`: external-format bytes on stdin, terms as
//!   text on stdout (`~w` syntax).
//! - `erldist term encode [--hex]`: terms as text on stdin, external format on
//!   stdout.
//! - `erldist epmd [--port N] [--address A]`: runs an EPMD server.
//! - `erldist names [--host H] [--port N]`: lists the names an EPMD holds.
//! - `erldist ping|call|spawn|send NODE ...`: a short-lived hidden node that
//!   talks to NODE (see `node.rs`).

mod node;

use std::io::{self, BufRead, Read, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use erldist::Term;

/// erldist: a Rust node for Erlang and Elixir clusters.
#[derive(Parser)]
#[command(name = "erldist", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Convert terms between the external format and text.
    Term {
        #[command(subcommand)]
        action: TermAction,
    },
    /// Run an EPMD (port mapper) server in the foreground.
    Epmd(EpmdArgs),
    /// List the names registered with an EPMD, like `epmd -names`.
    Names(NamesArgs),
    /// Ping a node: prints pong, or pang with the reason on stderr.
    Ping(node::PingArgs),
    /// Call a function on a node and print the result.
    Call(node::CallArgs),
    /// Spawn a linked process on a node, print its output, wait for its exit.
    Spawn(node::SpawnArgs),
    /// Send a term to a process registered by name on a node.
    Send(node::SendArgs),
}

#[derive(Subcommand)]
enum TermAction {
    /// Read an external-format term on stdin and print it as text.
    Decode {
        /// Read one hex-encoded term per line; print one answer per line.
        #[arg(long)]
        hex: bool,
    },
    /// Read a term as text on stdin and write its external format.
    Encode {
        /// Read one term per line; write one hex line per term.
        #[arg(long)]
        hex: bool,
    },
}

/// Arguments of `erldist epmd`.
#[derive(clap::Args)]
struct EpmdArgs {
    /// The port to listen on (default: $ERL_EPMD_PORT, else 4369).
    #[arg(long)]
    port: Option<u16>,
    /// The address to bind (default: all interfaces, as epmd).
    #[arg(long)]
    address: Option<String>,
}

/// Arguments of `erldist names`.
#[derive(clap::Args)]
struct NamesArgs {
    /// The host whose EPMD to ask.
    #[arg(long, default_value = "localhost")]
    host: String,
    /// The EPMD port (default: $ERL_EPMD_PORT, else 4369).
    #[arg(long)]
    port: Option<u16>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Term { action } => match action {
            TermAction::Decode { hex } => term_decode(hex),
            TermAction::Encode { hex } => term_encode(hex),
        },
        Command::Epmd(args) => epmd(args),
        Command::Names(args) => names(args),
        Command::Ping(args) => node::ping(args),
        Command::Call(args) => node::call(args),
        Command::Spawn(args) => node::spawn(args),
        Command::Send(args) => node::send(args),
    }
}

fn term_decode(hex: bool) -> ExitCode {
    if hex {
        return answer_lines(false, |line| {
            let bytes = hex::decode(line.trim()).map_err(|e| format!("bad hex: {e}"))?;
            let t = Term::decode_bytes(&bytes.into()).map_err(|e| e.to_string())?;
            Ok(t.to_string())
        });
    }
    let mut input = Vec::new();
    if let Err(e) = io::stdin().read_to_end(&mut input) {
        eprintln!("erldist: reading stdin: {e}");
        return ExitCode::FAILURE;
    }
    match Term::decode_bytes(&input.into()) {
        Ok(t) => {
            let mut out = io::stdout().lock();
            if writeln!(out, "{t}").and_then(|_| out.flush()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--hex` mode: answers each line of stdin with `answer`'s text, or
/// `error: <reason>` on its line, in order; the exit status is 1 if any
/// line failed.
fn answer_lines(skip_blank: bool, answer: impl Fn(&str) -> Result<String, String>) -> ExitCode {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut failed = false;
    for line in io::stdin().lock().lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("erldist: reading stdin: {e}");
                return ExitCode::FAILURE;
            }
        };
        if skip_blank && line.trim().is_empty() {
            continue;
        }
        let written = match answer(&line) {
            Ok(text) => writeln!(out, "{text}"),
            Err(e) => {
                failed = true;
                writeln!(out, "error: {e}")
            }
        };
        if written.is_err() {
            return ExitCode::FAILURE;
        }
    }
    if out.flush().is_err() || failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn term_encode(hex: bool) -> ExitCode {
    if hex {
        return answer_lines(true, |line| {
            let t = line.parse::<Term>().map_err(|e| e.to_string())?;
            t.encode().map(hex::encode).map_err(|e| e.to_string())
        });
    }
    let mut input = String::new();
    if let Err(e) = io::stdin().read_to_string(&mut input) {
        eprintln!("erldist: reading stdin: {e}");
        return ExitCode::FAILURE;
    }
    let encoded = input
        .parse::<Term>()
        .map_err(|e| e.to_string())
        .and_then(|t| t.encode().map_err(|e| e.to_string()));
    match encoded {
        Ok(bytes) => {
            let mut out = io::stdout().lock();
            if out.write_all(&bytes).and_then(|_| out.flush()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn epmd(args: EpmdArgs) -> ExitCode {
    use erldist::epmd::{EpmdServer, EpmdServerConfig};
    // As `epmd -address` (default: $ERL_EPMD_ADDRESS, as epmd): a comma-
    // or space-separated list of addresses.
    let address = args
        .address
        .or_else(|| std::env::var("ERL_EPMD_ADDRESS").ok())
        .unwrap_or_default();
    let mut addresses = Vec::new();
    for token in address.split([',', ' ']).filter(|t| !t.is_empty()) {
        match token.trim_matches(|c| c == '[' || c == ']').parse() {
            Ok(ip) => addresses.push(ip),
            Err(_) => {
                eprintln!("erldist epmd: cannot parse IP address {token:?}");
                return ExitCode::FAILURE;
            }
        }
    }
    let config = EpmdServerConfig {
        addresses,
        port: args.port.unwrap_or_else(erldist::epmd::default_port),
        // As epmd: the environment variable being set turns it on.
        relaxed_command_check: std::env::var_os("ERL_EPMD_RELAXED_COMMAND_CHECK").is_some(),
        ..EpmdServerConfig::default()
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("erldist epmd: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut server = match EpmdServer::start(config).await {
            Ok(server) => server,
            Err(e) => {
                eprintln!("erldist epmd: {e}");
                return ExitCode::FAILURE;
            }
        };
        let addrs: Vec<String> = server.local_addrs().iter().map(|a| a.to_string()).collect();
        eprintln!("erldist epmd: listening on {}", addrs.join(", "));
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                eprintln!("erldist epmd: interrupted, stopping");
                server.shutdown().await;
            }
            () = server.stopped() => eprintln!("erldist epmd: killed"),
        }
        ExitCode::SUCCESS
    })
}

fn names(args: NamesArgs) -> ExitCode {
    let port = args.port.unwrap_or_else(erldist::epmd::default_port);
    let client = erldist::epmd::EpmdClient::with_address(args.host, port);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("erldist names: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(client.names()) {
        Ok(names) => {
            // The same output as `epmd -names`.
            print!(
                "epmd: up and running on port {} with data:\n{}",
                names.epmd_port,
                names.text()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("erldist names: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
