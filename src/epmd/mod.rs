//! EPMD, the Erlang Port Mapper Daemon: a client and an embeddable server.
//!
//! Every Erlang node registers its name and distribution port with the EPMD
//! of its host (port 4369, or `$ERL_EPMD_PORT`), and finds other nodes by
//! asking their host's EPMD. This module has both halves:
//!
//! - [`protocol`]: the messages, sans-IO (encode/decode over bytes);
//! - [`registry`]: the server's name table and request rules, sans-IO;
//! - [`EpmdClient`]: register ([`Registration`]), look up, list names;
//! - [`EpmdServer`]: a drop-in EPMD (also `erldist epmd`);
//! - [`ensure_running`] / [`register_or_embed`]: the building blocks a node
//!   uses to register, starting an embedded EPMD when none runs.
//!
//! # Embedded EPMD
//!
//! A node started by erldist registers with the local EPMD. If none
//! answers on the port, [`register_or_embed`] (with embedding on, the
//! default a node should use) starts an [`EpmdServer`] inside the process
//! and registers with it. Other nodes on the machine, Rust or Erlang, then
//! find that embedded EPMD on the standard port and use it as they would
//! the real one, so a cluster of Rust nodes needs no Erlang installation.
//!
//! The embedded EPMD lives as long as the [`EpmdServer`] value, i.e. as
//! long as the process that started it (keep it alongside the node). When
//! that process exits, every name registered with it goes too, including
//! the names of *other* nodes that registered with it: those nodes keep
//! their open connections to each other, but new connections to them by
//! name fail until they re-register. Erlang nodes retry registering every
//! 2 s and succeed as soon as an EPMD runs on the port again (for example,
//! the embedded one of the next erldist node to start, or a real `epmd`).
//! An erldist [`Node`](crate::Node) does the same (other programs can
//! watch [`Registration::closed`]). Where
//! that matters, run a standalone EPMD instead (`epmd -daemon` or
//! `erldist epmd`).

pub mod protocol;
pub mod registry;

mod client;
mod server;

use std::time::Duration;

pub use client::{EpmdClient, EpmdError, Registration, DEFAULT_TIMEOUT, MAX_LIST_REPLY};
pub use protocol::{
    Alive2Request, KillResponse, NameEntry, NamesResponse, NodeInfo, NodeType, ProtocolError,
    StopResponse, DEFAULT_PORT,
};
pub use server::{EpmdServer, EpmdServerConfig, ServerError};

/// The EPMD port: `$ERL_EPMD_PORT` when set to a port number, else 4369,
/// the same rule `erl` and `epmd` follow.
pub fn default_port() -> u16 {
    std::env::var("ERL_EPMD_PORT")
        .ok()
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or(DEFAULT_PORT)
}

/// How long [`ensure_running`] waits for an existing EPMD to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Makes sure an EPMD serves `port` on this host: returns `Ok(None)` if one
/// already answers there, or starts an embedded [`EpmdServer`] on all
/// interfaces and returns it. Keep the server for as long as the names
/// registered with it should live (see the [module docs](self)).
///
/// If another process starts an EPMD on the port at the same moment, the
/// bind fails and this returns `Ok(None)` once that EPMD answers.
///
/// # Errors
///
/// [`ServerError::Bind`] when the port is held by something that is not
/// an EPMD, or cannot be bound.
pub async fn ensure_running(port: u16) -> Result<Option<EpmdServer>, ServerError> {
    let probe = EpmdClient::new().port(port).timeout(PROBE_TIMEOUT);
    if probe.is_running().await {
        return Ok(None);
    }
    match EpmdServer::start(EpmdServerConfig::with_port(port)).await {
        Ok(server) => {
            tracing::info!(port, "no EPMD found: started the embedded one");
            Ok(Some(server))
        }
        Err(e) if e.is_addr_in_use() && probe.is_running().await => Ok(None),
        Err(e) => Err(e),
    }
}

/// Registers `name` with distribution port `node_port` through `client`;
/// if no EPMD answers and `embed` is true and the client points at this
/// host, starts the embedded EPMD on the client's port (see
/// [`ensure_running`]) and registers with it.
///
/// Returns the registration and the embedded server, if one was started:
/// the node must keep both.
///
/// # Errors
///
/// The client's errors ([`EpmdError::NameTaken`], ...), or
/// [`EpmdError::Unreachable`] when no EPMD runs and none could be started.
pub async fn register_or_embed(
    client: &EpmdClient,
    name: &str,
    node_port: u16,
    embed: bool,
) -> Result<(Registration, Option<EpmdServer>), EpmdError> {
    match client.register(name, node_port).await {
        Err(EpmdError::Unreachable { addr, source }) if embed && is_local_host(client) => {
            tracing::debug!(%addr, "no EPMD ({source}); starting the embedded one");
            let server =
                ensure_running(client.epmd_port())
                    .await
                    .map_err(|e| EpmdError::Unreachable {
                        addr: addr.clone(),
                        source: std::io::Error::other(e),
                    })?;
            let registration = client.register(name, node_port).await?;
            Ok((registration, server))
        }
        other => other.map(|r| (r, None)),
    }
}

fn is_local_host(client: &EpmdClient) -> bool {
    let host = client.epmd_host();
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
