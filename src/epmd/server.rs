//! An EPMD server on tokio: the I/O around the sans-IO [`Registry`].
//!
//! One task per connection. Each connection gets one request, read under a
//! deadline and a size limit; the [`Registry`] decides the reply and what
//! happens next. A successful `ALIVE2` keeps the connection open, and the
//! name is released the moment that connection closes (or sends anything
//! more, as the real EPMD treats that too as the end of the registration).
//!
//! Hardening: a connection cap (a semaphore); when it is reached, the
//! oldest connection that has not registered a node is dropped to make
//! room, so idle or slow peers cannot lock well-behaved clients out;
//! requests larger than the real EPMD takes are refused as soon as their
//! length field arrives; replies are written under a timeout.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{timeout, timeout_at, Instant};

use super::protocol::{NameEntry, Request};
use super::registry::{ConnId, Peer, Registry};

/// Settings of an [`EpmdServer`].
#[derive(Clone, Debug)]
pub struct EpmdServerConfig {
    /// Addresses to listen on. Empty means all IPv4 interfaces
    /// (`0.0.0.0`). As with the real EPMD's `-address`, a loopback address
    /// is added when it is missing, because Erlang nodes always register
    /// through `127.0.0.1`.
    pub addresses: Vec<IpAddr>,
    /// The port; 0 picks a free one (see [`EpmdServer::port`]).
    pub port: u16,
    /// `-relaxed_command_check`: allow `KILL` while nodes are registered,
    /// and serve `STOP`.
    pub relaxed_command_check: bool,
    /// Most connections open at once, registered nodes included.
    pub max_connections: usize,
    /// How long a client may take to send its whole request (the real
    /// EPMD's packet timeout is 60 s of inactivity; a deadline for the
    /// whole request also defeats peers that trickle bytes).
    pub request_timeout: Duration,
    /// How long a reply may take to write.
    pub write_timeout: Duration,
}

impl Default for EpmdServerConfig {
    fn default() -> Self {
        EpmdServerConfig {
            addresses: Vec::new(),
            port: super::default_port(),
            relaxed_command_check: false,
            max_connections: 4096,
            request_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
        }
    }
}

impl EpmdServerConfig {
    /// The default settings, on `port`.
    pub fn with_port(port: u16) -> Self {
        EpmdServerConfig {
            port,
            ..Self::default()
        }
    }
}

/// Why an [`EpmdServer`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A listening socket could not be bound.
    #[error("cannot listen for EPMD on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause; `AddrInUse` when something (an EPMD?) holds the port.
        #[source]
        source: io::Error,
    },
}

impl ServerError {
    /// Whether the port was taken.
    pub fn is_addr_in_use(&self) -> bool {
        match self {
            ServerError::Bind { source, .. } => source.kind() == io::ErrorKind::AddrInUse,
        }
    }
}

/// A connection's entry in the table of open connections.
struct ConnEntry {
    /// Fired to make the connection's task close it.
    close: Option<oneshot::Sender<()>>,
    /// Holds a registration (never evicted to make room).
    registered: bool,
}

struct Shared {
    config: EpmdServerConfig,
    registry: Mutex<Registry>,
    conns: Mutex<BTreeMap<ConnId, ConnEntry>>,
    next_id: AtomicU64,
    limit: Arc<Semaphore>,
    shutdown: watch::Sender<bool>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding the lock leaves consistent data (all
    // updates are single calls); keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn close_conn(&self, id: ConnId) {
        if let Some(tx) = lock(&self.conns).get_mut(&id).and_then(|e| e.close.take()) {
            let _ = tx.send(());
        }
    }

    /// Closes the oldest connection that holds no registration; returns
    /// whether there was one.
    fn evict_oldest_idle(&self) -> bool {
        let mut conns = lock(&self.conns);
        let victim = conns
            .iter_mut()
            .find(|(_, e)| !e.registered && e.close.is_some());
        match victim.and_then(|(id, e)| Some((*id, e.close.take()?))) {
            Some((id, tx)) => {
                tracing::debug!(
                    conn = id.0,
                    "connection limit reached: dropping oldest idle connection"
                );
                let _ = tx.send(());
                true
            }
            None => false,
        }
    }
}

/// A running EPMD server.
///
/// Dropping it (or calling [`shutdown`](EpmdServer::shutdown)) stops it:
/// every connection is closed, so every node registered with it loses its
/// registration. Erlang nodes notice, and retry registering every 2 s
/// (they keep working meanwhile, but cannot be found by name until some
/// EPMD runs on the port again).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use erldist::epmd::{EpmdClient, EpmdServer, EpmdServerConfig};
/// let server = EpmdServer::start(EpmdServerConfig::with_port(0)).await?;
/// let client = EpmdClient::new().port(server.port());
/// let reg = client.register("demo", 4370).await?;
/// assert_eq!(client.port_please("demo").await?.port, 4370);
/// drop(reg); // unregisters
/// server.shutdown().await;
/// # Ok(()) }
/// ```
pub struct EpmdServer {
    shared: Arc<Shared>,
    local_addrs: Vec<SocketAddr>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EpmdServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpmdServer")
            .field("local_addrs", &self.local_addrs)
            .finish_non_exhaustive()
    }
}

impl EpmdServer {
    /// Binds the listening sockets and starts serving on the current tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// [`ServerError::Bind`] when an address cannot be bound (e.g. an EPMD
    /// already runs on the port).
    pub async fn start(config: EpmdServerConfig) -> Result<EpmdServer, ServerError> {
        let mut addresses = if config.addresses.is_empty() {
            vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]
        } else {
            config.addresses.clone()
        };
        let covers_loopback = addresses
            .iter()
            .any(|a| a.is_unspecified() || a.is_loopback());
        if !covers_loopback {
            addresses.insert(0, IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        let mut listeners = Vec::new();
        let mut port = config.port;
        for ip in addresses {
            let addr = SocketAddr::new(ip, port);
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| ServerError::Bind { addr, source })?;
            port = bound.port();
            listeners.push((listener, bound));
        }
        let local_addrs: Vec<SocketAddr> = listeners.iter().map(|(_, a)| *a).collect();
        let (shutdown, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            registry: Mutex::new(Registry::new(port, config.relaxed_command_check)),
            conns: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            limit: Arc::new(Semaphore::new(config.max_connections.max(1))),
            shutdown,
            config,
        });
        let mut listener_tasks = JoinSet::new();
        for (listener, addr) in listeners {
            tracing::info!(%addr, "EPMD listening");
            listener_tasks.spawn(accept_loop(listener, Arc::clone(&shared)));
        }
        let task = tokio::spawn(async move { while listener_tasks.join_next().await.is_some() {} });
        Ok(EpmdServer {
            shared,
            local_addrs,
            task: Some(task),
        })
    }

    /// The port the server listens on (the one picked when configured
    /// with port 0).
    pub fn port(&self) -> u16 {
        self.local_addrs.first().map_or(0, |a| a.port())
    }

    /// The addresses the server listens on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The registered names, as a `NAMES` request would list them.
    pub fn names(&self) -> Vec<NameEntry> {
        lock(&self.shared.registry).names().entries
    }

    /// How many client connections are open (registered nodes included).
    pub fn connections(&self) -> usize {
        lock(&self.shared.conns).len()
    }

    /// Whether the server has stopped (after [`shutdown`](Self::shutdown)
    /// or an accepted `KILL` request).
    pub fn is_stopped(&self) -> bool {
        *self.shared.shutdown.borrow()
    }

    /// Waits until the server stops (e.g. a client sent an accepted
    /// `KILL`), without stopping it.
    pub async fn stopped(&mut self) {
        if let Some(task) = self.task.as_mut() {
            let _ = task.await;
            self.task = None;
        }
    }

    /// Stops the server and waits until every connection is closed.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.send_replace(true);
        self.stopped().await;
    }
}

impl Drop for EpmdServer {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            () = stopping(&mut shutdown) => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Some(permit) = admit(&shared).await else {
                        tracing::warn!(%peer, "connection limit reached: refusing connection");
                        continue;
                    };
                    let id = ConnId(shared.next_id.fetch_add(1, Ordering::Relaxed));
                    let (tx, rx) = oneshot::channel();
                    lock(&shared.conns).insert(id, ConnEntry { close: Some(tx), registered: false });
                    conns.spawn(connection(stream, peer, id, rx, permit, Arc::clone(&shared)));
                }
                Err(e) => {
                    // Typically out of file descriptors; back off briefly
                    // rather than spin.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    conns.shutdown().await;
}

/// Resolves once the server is told to stop.
async fn stopping(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.is_ok();
}

/// Takes a connection slot, evicting the oldest unregistered connection
/// when all are taken.
async fn admit(shared: &Shared) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = Arc::clone(&shared.limit).try_acquire_owned() {
        return Some(p);
    }
    if !shared.evict_oldest_idle() {
        return None;
    }
    timeout(
        Duration::from_millis(500),
        Arc::clone(&shared.limit).acquire_owned(),
    )
    .await
    .ok()?
    .ok()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The rule of `conn_local_peer_check`: a loopback peer, or one connecting
/// from the address it connected to.
fn is_local_peer(peer: SocketAddr, local: Option<SocketAddr>) -> bool {
    let peer_ip = peer.ip().to_canonical();
    peer_ip.is_loopback() || local.is_some_and(|l| l.ip().to_canonical() == peer_ip)
}

#[cfg(unix)]
fn fd_of(stream: &TcpStream, _id: ConnId) -> i32 {
    use std::os::fd::AsRawFd;
    stream.as_raw_fd()
}

#[cfg(not(unix))]
fn fd_of(_stream: &TcpStream, id: ConnId) -> i32 {
    i32::try_from(id.0).unwrap_or(i32::MAX)
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    id: ConnId,
    close: oneshot::Receiver<()>,
    permit: OwnedSemaphorePermit,
    shared: Arc<Shared>,
) {
    let _permit = permit;
    serve(stream, peer, id, close, &shared).await;
    lock(&shared.conns).remove(&id);
    lock(&shared.registry).connection_closed(id);
}

async fn serve(
    mut stream: TcpStream,
    peer: SocketAddr,
    id: ConnId,
    mut close: oneshot::Receiver<()>,
    shared: &Shared,
) {
    let local = is_local_peer(peer, stream.local_addr().ok());
    let fd = fd_of(&stream, id);
    let deadline = Instant::now() + shared.config.request_timeout;
    let mut buf = BytesMut::with_capacity(64);
    let request = loop {
        match Request::decode(&mut buf) {
            Ok(Some(request)) => break request,
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(%peer, "bad request: {e}");
                return;
            }
        }
        tokio::select! {
            read = timeout_at(deadline, stream.read_buf(&mut buf)) => match read {
                Ok(Ok(0)) => {
                    if !buf.is_empty() {
                        tracing::debug!(%peer, got = buf.len(), "partial request, then close");
                    }
                    return;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "read error: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "no complete request in time: closing");
                    return;
                }
            },
            _ = &mut close => return,
        }
    };
    if !buf.is_empty() {
        // epmd_srv.c: "got %d bytes in packet, expected %d": close, no reply.
        tracing::debug!(%peer, extra = buf.len(), "bytes after the request: closing");
        return;
    }
    tracing::debug!(%peer, tag = %request.tag(), "request");
    let action = lock(&shared.registry).handle(
        Peer {
            conn: id,
            fd,
            local,
        },
        request,
        now_secs(),
    );
    if let Some(other) = action.close {
        shared.close_conn(other);
    }
    if !action.reply.is_empty() {
        match timeout(shared.config.write_timeout, stream.write_all(&action.reply)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(%peer, "write error: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "reply not taken in time: closing");
                return;
            }
        }
    }
    if action.shutdown {
        tracing::info!(%peer, "KILL accepted: stopping");
        let _ = stream.shutdown().await;
        shared.shutdown.send_replace(true);
        return;
    }
    if !action.keep_open {
        return;
    }
    if lock(&shared.registry).is_registered(id) {
        if let Some(e) = lock(&shared.conns).get_mut(&id) {
            e.registered = true;
        }
    }
    // The registration lives until the peer closes, sends anything (the
    // real EPMD unregisters on "more than expected" too), STOP closes it,
    // or the server stops.
    let mut scratch = [0u8; 64];
    tokio::select! {
        read = stream.read(&mut scratch) => {
            if let Ok(n @ 1..) = read {
                tracing::debug!(%peer, n, "data on a registration connection: closing it");
            }
        }
        _ = &mut close => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_peer_rule() {
        let local: SocketAddr = "10.0.0.5:4369".parse().unwrap();
        assert!(is_local_peer("127.0.0.1:1".parse().unwrap(), Some(local)));
        assert!(is_local_peer("127.9.9.9:1".parse().unwrap(), Some(local)));
        assert!(is_local_peer("[::1]:1".parse().unwrap(), Some(local)));
        assert!(is_local_peer("[::ffff:127.0.0.1]:1".parse().unwrap(), None));
        assert!(is_local_peer("10.0.0.5:1".parse().unwrap(), Some(local)));
        assert!(!is_local_peer("10.0.0.6:1".parse().unwrap(), Some(local)));
        assert!(!is_local_peer("10.0.0.6:1".parse().unwrap(), None));
    }
}
