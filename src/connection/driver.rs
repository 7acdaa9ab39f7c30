//! The tokio driver: runs the handshake on a socket, then one task per
//! connection that owns the socket.
//!
//! - [`connect`]: EPMD lookup, TCP connect, initiator handshake.
//! - [`accept`]: acceptor handshake on an accepted socket; [`serve`] runs
//!   a listener.
//! - [`Connection`]: the events of one connection ([`ConnectionEvent`]:
//!   frames, then one `Down` with its reason) and a [`ConnectionHandle`]
//!   to send frames and close it.
//!
//! Each handshake step must complete within
//! [`LocalNodeConfig::setup_timeout`] (OTP's `net_setuptime`, 7 s). A
//! failed handshake closes its socket and leaves nothing behind.
//!
//! After the handshake the connection task reads 4-byte-length frames
//! (ticks are empty frames), hands payloads over as [`Bytes`] without
//! copying, and writes whatever frames are queued in one vectored write.
//! Every `net_ticktime / tick_intensity` it sends a tick if it wrote
//! nothing during that interval (or, on a hidden connection, read nothing),
//! and declares the peer down after `tick_intensity` intervals without
//! reading anything, as OTP's `dist_util` does.
//!
//! A [`Node`](crate::Node) runs each connection inside its own per-peer
//! task instead of a task of the connection's: its connects and accepts
//! hand the connection over before it runs, and the node reads, cuts
//! frames, ticks and writes with the same pieces (`WriteQueue`,
//! `Ticks`, `cut_frame_run`), so that a message crosses no task between
//! a process and the socket.
//!
//! The [`ConnectionTable`] shared by one node's connects and accepts
//! applies OTP's simultaneous-connect rules.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Notify, Semaphore};
use tokio::time::{timeout, Instant, MissedTickBehavior};
use tracing::{debug, info, info_span, warn, Instrument};

use super::dist_header::DecoderLimits;
use super::framing::{frame_header, whole_frames, OutFrame, DEFAULT_MAX_FRAME, TICK};
use super::reader::Reader;
use crate::epmd::{EpmdClient, EpmdError};
use crate::flags::DistFlags;
use crate::handshake::{
    cookie::random_letters, decode_packet, gen_challenge, AcceptPending, Acceptor, AfterName,
    Arbiter, Challenge, ChallengeAck, ChallengeReply, Complement, CookieError, Cookies, Failure,
    HandshakeConfig, HandshakeError, HandshakeOutcome, Initiator, LocalName, Message, MessageError,
    NameMessage, NodeName, Status, DEFAULT_FLAGS, REQUIRED_FLAGS,
};

/// OTP's default `net_setuptime`: 7 s per handshake step.
pub const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(7);

/// OTP's default `net_ticktime`: 60 s.
pub const DEFAULT_NET_TICKTIME: Duration = Duration::from_secs(60);

/// OTP's default `net_tickintensity`: 4 intervals per tick time.
pub const DEFAULT_TICK_INTENSITY: u32 = 4;

/// How many received frames may wait for the layer above before the
/// connection stops reading (and TCP pushes back on the peer).
pub const DEFAULT_EVENT_CAPACITY: usize = 1024;

/// The default number of incoming handshakes run at once
/// ([`LocalNodeConfig::max_handshakes`]). OTP has no such limit.
pub const DEFAULT_MAX_HANDSHAKES: usize = 256;

/// How many KiB [`ConnectionHandle::send_out_frames`] may have queued
/// and the writer not yet taken (besides the writer's own buffer, which
/// takes up to 2 MiB before it writes).
pub const OUT_FRAMES_BUDGET_KIB: u32 = 512;

/// How many frames [`ConnectionHandle::send_frame`] may queue before it
/// waits.
pub const DEFAULT_SEND_CAPACITY: usize = 1024;

/// How long a host's resolved addresses are used before it is resolved
/// again (sooner if connecting to them fails).
const HOST_CACHE_TTL: Duration = Duration::from_secs(30);

/// The most hosts whose addresses are kept.
const HOST_CACHE_SIZE: usize = 1024;

/// Frames up to this size are copied into one buffer with their headers;
/// larger ones are written from their own memory.
const COALESCE_LIMIT: usize = 16 * 1024;

/// The writer stops taking frames from the queue while this many bytes
/// wait to be written.
const WRITE_HIGH_WATER: usize = 2 * 1024 * 1024;

/// ... or this many, while a fragment of a large message is among them:
/// one fragment as the node cuts them (the node takes its fragment size
/// from here), written before more of the message is taken, so that
/// another process's small message waits behind one fragment, not eight.
/// (Whole messages of up to 2 MiB still go two at a time: a real node
/// takes 1 MiB binaries fastest that way.)
pub(crate) const FRAGMENT_HIGH_WATER: usize = 256 * 1024;

/// The local node's settings for its connections.
#[derive(Clone, Debug)]
pub struct LocalNodeConfig {
    /// Our name (a [`LocalName::Dynamic`] one can only connect).
    pub name: LocalName,
    /// Our creation, from EPMD (0 with a dynamic name).
    pub creation: u32,
    /// The cookies (never logged).
    pub cookies: Cookies,
    /// The flags we offer. [`DEFAULT_FLAGS`] plus
    /// [`DistFlags::PUBLISHED`] unless hidden; see [`hidden`](Self::hidden).
    pub flags: DistFlags,
    /// The flags a peer must offer: [`REQUIRED_FLAGS`].
    pub required_flags: DistFlags,
    /// The limit for each handshake step (and the TCP connect).
    pub setup_timeout: Duration,
    /// The tick time: a peer silent this long is down.
    pub net_ticktime: Duration,
    /// Ticks per tick time (OTP's `net_tickintensity`, 4 to 1000).
    pub tick_intensity: u32,
    /// The largest frame accepted from a peer.
    pub max_frame_size: usize,
    /// How many incoming handshakes [`serve`] runs at once; connections
    /// accepted beyond that are closed at once (default
    /// [`DEFAULT_MAX_HANDSHAKES`]). Each handshake ends within three
    /// [`setup_timeout`](Self::setup_timeout) steps, so a flood of idle
    /// connections holds the slots for a bounded time and bounded memory.
    pub max_handshakes: usize,
    /// What the frames of a connection are held to after framing
    /// (fragments, nesting, new atoms), for the layer that decodes them.
    pub decoder_limits: DecoderLimits,
    /// See [`DEFAULT_EVENT_CAPACITY`].
    pub event_capacity: usize,
    /// See [`DEFAULT_SEND_CAPACITY`].
    pub send_capacity: usize,
    /// The EPMD client used to find peers; its host is replaced by the
    /// peer's host for each lookup. Default: port `$ERL_EPMD_PORT` or 4369.
    pub epmd: EpmdClient,
    /// The connection table shared by this node's connects and accepts
    /// (clones of the config share it).
    pub table: ConnectionTable,
    /// Whether connections are handed over not yet running, for the node
    /// to run each in its per-peer task ([`Connection::into_link`]). The
    /// public API starts them on first use either way.
    pub(crate) inline: bool,
}

impl LocalNodeConfig {
    /// A visible node named `name` (creation `creation`) using `cookies`,
    /// with OTP's defaults.
    pub fn new(name: NodeName, creation: u32, cookies: impl Into<Cookies>) -> LocalNodeConfig {
        LocalNodeConfig {
            name: LocalName::Static(name),
            creation,
            cookies: cookies.into(),
            flags: DEFAULT_FLAGS | DistFlags::PUBLISHED,
            required_flags: REQUIRED_FLAGS,
            setup_timeout: DEFAULT_SETUP_TIMEOUT,
            net_ticktime: DEFAULT_NET_TICKTIME,
            tick_intensity: DEFAULT_TICK_INTENSITY,
            max_frame_size: DEFAULT_MAX_FRAME,
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            decoder_limits: DecoderLimits::default(),
            event_capacity: DEFAULT_EVENT_CAPACITY,
            send_capacity: DEFAULT_SEND_CAPACITY,
            epmd: EpmdClient::new(),
            table: ConnectionTable::new(),
            inline: false,
        }
    }

    /// Makes the node hidden (not in the peers' `nodes()`, like
    /// `erl -hidden` or `erl_call`) or visible.
    pub fn hidden(mut self, hidden: bool) -> LocalNodeConfig {
        if hidden {
            self.flags = DistFlags(self.flags.0 & !DistFlags::PUBLISHED.0);
        } else {
            self.flags |= DistFlags::PUBLISHED;
        }
        self
    }

    fn handshake_config(&self) -> HandshakeConfig {
        HandshakeConfig {
            name: self.name.clone(),
            creation: self.creation,
            flags: self.flags,
            required: self.required_flags,
            cookies: self.cookies.clone(),
        }
    }

    fn tick_interval(&self) -> Duration {
        (self.net_ticktime / self.tick_intensity.clamp(4, 1000)).max(Duration::from_millis(10))
    }
}

/// A connection that could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No node of that name is registered with EPMD on the peer's host.
    #[error("node {peer} is not registered with EPMD at {epmd}")]
    NotRegistered {
        /// The peer.
        peer: String,
        /// The EPMD asked.
        epmd: String,
    },
    /// EPMD could not be asked.
    #[error("cannot look up {peer} in EPMD: {source}")]
    Epmd {
        /// The peer.
        peer: String,
        /// The EPMD client's error.
        #[source]
        source: EpmdError,
    },
    /// The TCP connection failed (refused, unreachable, ...).
    #[error("cannot connect to {peer} at {addr}: {source}")]
    Connect {
        /// The peer.
        peer: String,
        /// The address tried.
        addr: String,
        /// The socket error.
        #[source]
        source: io::Error,
    },
    /// A step took longer than the setup timeout.
    #[error("handshake with {peer} timed out after {after:?} awaiting {step}")]
    Timeout {
        /// The peer (or its address when unknown).
        peer: String,
        /// The step.
        step: &'static str,
        /// The limit.
        after: Duration,
    },
    /// The peer closed the connection during the handshake.
    #[error("{peer} closed the connection during the handshake, awaiting {step}")]
    Closed {
        /// The peer (or its address).
        peer: String,
        /// The step.
        step: &'static str,
    },
    /// The peer closed the connection instead of acknowledging our digest:
    /// it rejected our digest, i.e. it has another cookie for us.
    #[error("{peer} rejected our digest (closed instead of acknowledging): its cookie differs")]
    DigestRejected {
        /// The peer.
        peer: String,
    },
    /// A socket error during the handshake.
    #[error("I/O error with {peer} awaiting {step}: {source}")]
    Io {
        /// The peer (or its address).
        peer: String,
        /// The step.
        step: &'static str,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The handshake failed: refused flags, wrong digest, names, statuses.
    #[error("handshake with {peer} failed: {source}")]
    Handshake {
        /// The peer (or its address).
        peer: String,
        /// What went wrong.
        #[source]
        source: HandshakeError,
    },
    /// The peer's own connection to us replaced this attempt
    /// (simultaneous connect, the peer's name is greater).
    #[error("simultaneous connect: {peer}'s connection to us replaced ours")]
    Superseded {
        /// The peer.
        peer: String,
    },
    /// A connection to the peer is already up.
    #[error("already connected to {peer}")]
    AlreadyConnected {
        /// The peer.
        peer: String,
    },
    /// Another connection attempt to the peer is in progress.
    #[error("a connection to {peer} is already being set up")]
    AlreadyPending {
        /// The peer.
        peer: String,
    },
    /// The random source failed.
    #[error("cannot make a challenge: {0}")]
    Random(#[from] CookieError),
}

impl ConnectError {
    /// Whether the peer's cookie differs from ours, whichever side noticed.
    pub fn is_cookie_mismatch(&self) -> bool {
        matches!(
            self,
            ConnectError::DigestRejected { .. }
                | ConnectError::Handshake {
                    source: HandshakeError::PeerDigestWrong { .. },
                    ..
                }
        )
    }
}

/// Why a connection went down.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DownReason {
    /// The peer closed the socket.
    ClosedByPeer,
    /// Nothing was read for the tick limit (OTP: "not responding").
    TickTimeout {
        /// How long nothing was read.
        silent_for: Duration,
    },
    /// A socket error.
    Io(String),
    /// The peer broke the protocol (framing).
    Protocol(String),
    /// Closed on our side: [`ConnectionHandle::close`], every handle
    /// dropped, or the events receiver dropped.
    LocalShutdown,
    /// A new connection from the same node replaced this one (it was
    /// stale, status `alive`).
    Replaced,
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownReason::ClosedByPeer => f.write_str("connection closed by peer"),
            DownReason::TickTimeout { silent_for } => {
                write!(f, "net tick timeout: nothing received for {silent_for:?}")
            }
            DownReason::Io(e) => write!(f, "I/O error: {e}"),
            DownReason::Protocol(e) => write!(f, "protocol error: {e}"),
            DownReason::LocalShutdown => f.write_str("closed locally"),
            DownReason::Replaced => f.write_str("replaced by a new connection from the same node"),
        }
    }
}

/// What a connection reports to the layer above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// A received frame's payload (ticks are not reported).
    Frame(Bytes),
    /// The connection is down; the last event.
    Down(DownReason),
}

/// Sending on a closed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the connection is closed")]
pub struct Closed;

pub(crate) enum Command {
    Frame(Bytes),
    Frames(Vec<Bytes>),
    /// Frames, and the KiB of [`ConnectionHandle::budget`] they hold.
    OutFrames(Vec<OutFrame>, u32),
}

/// Sends frames on a connection and closes it. Cheap to clone; the
/// connection ends when every handle is dropped (after writing what was
/// queued) or on [`close`](Self::close).
#[derive(Clone, Debug)]
pub struct ConnectionHandle {
    tx: mpsc::Sender<Command>,
    /// KiB that [`send_out_frames`](Self::send_out_frames) may have queued
    /// and the writer not yet taken: a large message is not committed to
    /// the writer all at once, so what is sent after it can still be
    /// placed ahead of its later fragments.
    budget: Arc<Semaphore>,
    shutdown: Arc<Notify>,
    down: watch::Receiver<Option<DownReason>>,
    outcome: Arc<HandshakeOutcome>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Frame(b) => write!(f, "Frame({} bytes)", b.len()),
            Command::Frames(v) => write!(f, "Frames({})", v.len()),
            Command::OutFrames(v, _) => write!(f, "OutFrames({})", v.len()),
        }
    }
}

impl ConnectionHandle {
    /// Queues one frame payload (without its length header), waiting while
    /// the queue is full.
    ///
    /// # Errors
    /// [`Closed`] when the connection is down.
    pub async fn send_frame(&self, payload: Bytes) -> Result<(), Closed> {
        self.tx
            .send(Command::Frame(payload))
            .await
            .map_err(|_| Closed)
    }

    /// Queues several frames at once, to be written together.
    ///
    /// # Errors
    /// [`Closed`] when the connection is down.
    pub async fn send_frames(&self, payloads: Vec<Bytes>) -> Result<(), Closed> {
        self.tx
            .send(Command::Frames(payloads))
            .await
            .map_err(|_| Closed)
    }

    /// Queues frames in pieces (as [`DistEncoder::encode_split`] makes
    /// them), to be written together without joining their pieces.
    ///
    /// [`DistEncoder::encode_split`]: super::dist_header::DistEncoder::encode_split
    ///
    /// # Errors
    /// [`Closed`] when the connection is down.
    /// Waits while more than [`OUT_FRAMES_BUDGET_KIB`] KiB sent this way
    /// are queued and not yet taken by the writer.
    pub async fn send_out_frames(&self, frames: Vec<OutFrame>) -> Result<(), Closed> {
        let bytes: usize = frames.iter().map(OutFrame::len).sum();
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(OUT_FRAMES_BUDGET_KIB);
        let permit = self.budget.acquire_many(kib).await.map_err(|_| Closed)?;
        permit.forget();
        self.tx
            .send(Command::OutFrames(frames, kib))
            .await
            .map_err(|_| Closed)
    }

    /// Queues a frame without waiting; `Ok(false)` if the queue is full.
    ///
    /// # Errors
    /// [`Closed`] when the connection is down.
    pub fn try_send_frame(&self, payload: Bytes) -> Result<bool, Closed> {
        match self.tx.try_send(Command::Frame(payload)) {
            Ok(()) => Ok(true),
            Err(mpsc::error::TrySendError::Full(_)) => Ok(false),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(Closed),
        }
    }

    /// Closes the connection now (frames still queued are dropped).
    pub fn close(&self) {
        self.shutdown.notify_one();
    }

    /// Waits until the connection is down, and tells why.
    pub async fn closed(&self) -> DownReason {
        let mut rx = self.down.clone();
        loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                return r;
            }
            if rx.changed().await.is_err() {
                return rx.borrow().clone().unwrap_or(DownReason::LocalShutdown);
            }
        }
    }

    /// Whether the connection is down.
    pub fn is_closed(&self) -> bool {
        self.down.borrow().is_some() || self.tx.is_closed()
    }

    /// What the handshake settled.
    pub fn outcome(&self) -> &HandshakeOutcome {
        &self.outcome
    }

    /// The peer's name.
    pub fn peer(&self) -> &NodeName {
        &self.outcome.peer_name
    }
}

/// An established connection: its events and a handle.
#[derive(Debug)]
pub struct Connection {
    handle: ConnectionHandle,
    events: mpsc::Receiver<ConnectionEvent>,
    /// The connection while it does not run yet (see
    /// [`LocalNodeConfig`]'s `inline`).
    link: Option<Box<Link>>,
}

impl Connection {
    /// A handle to send frames and close the connection.
    pub fn handle(&self) -> &ConnectionHandle {
        &self.handle
    }

    /// What the handshake settled: names, creations, flags, visibility.
    pub fn outcome(&self) -> &HandshakeOutcome {
        &self.handle.outcome
    }

    /// The peer's name.
    pub fn peer(&self) -> &NodeName {
        self.handle.peer()
    }

    /// The next event: a frame, then at last `Down`; `None` after that.
    pub async fn recv(&mut self) -> Option<ConnectionEvent> {
        self.start();
        self.events.recv().await
    }

    /// Splits into the handle and the events receiver.
    pub fn into_parts(mut self) -> (ConnectionHandle, mpsc::Receiver<ConnectionEvent>) {
        self.start();
        (self.handle, self.events)
    }

    /// Runs the connection in a task of its own, if it does not run yet.
    fn start(&mut self) {
        if let Some(link) = self.link.take() {
            link.spawn();
        }
    }

    /// The connection's socket and state, for the caller to run itself;
    /// `Err` with the connection if it runs already.
    pub(crate) fn into_link(mut self) -> Result<(ConnectionHandle, Box<Link>), Connection> {
        match self.link.take() {
            Some(link) => Ok((self.handle, link)),
            None => Err(self),
        }
    }
}

// ------------------------------------------------------------ the table

#[derive(Debug)]
enum Entry {
    Pending {
        id: u64,
        cancel: Option<oneshot::Sender<()>>,
    },
    Up {
        id: u64,
        handle: ConnectionHandle,
        /// An incoming handshake replacing this connection (`alive`).
        pending_owner: Option<u64>,
    },
}

#[derive(Debug, Default)]
struct TableInner {
    next_id: u64,
    entries: HashMap<NodeName, Entry>,
    handshakes: usize,
    tasks: usize,
    /// Hosts resolved lately, and when (see [`ConnectionTable::resolve`]).
    hosts: HashMap<String, (Vec<IpAddr>, Instant)>,
}

impl TableInner {
    /// Connection `id` to `peer` ended. Its entry goes; but if a handshake
    /// is replacing it (the peer restarted: status `alive`, and we close
    /// the old connection before the ack, as OTP does), the entry becomes
    /// that handshake's pending one, for it to take up when it completes.
    fn connection_ended(&mut self, peer: &NodeName, id: u64) {
        self.tasks = self.tasks.saturating_sub(1);
        let replacing = match self.entries.get(peer) {
            Some(Entry::Up {
                id: i,
                pending_owner,
                ..
            }) if *i == id => *pending_owner,
            _ => return,
        };
        match replacing {
            Some(owner) => {
                self.entries.insert(
                    peer.clone(),
                    Entry::Pending {
                        id: owner,
                        cancel: None,
                    },
                );
            }
            None => {
                self.entries.remove(peer);
            }
        }
    }
}

/// The connections of one local node, by peer name: what is pending and
/// what is up. It arbitrates simultaneous connects as `net_kernel` does
/// and lets tests check that nothing leaks. Clones share the table.
#[derive(Clone, Debug, Default)]
pub struct ConnectionTable {
    inner: Arc<Mutex<TableInner>>,
}

impl ConnectionTable {
    /// An empty table.
    pub fn new() -> ConnectionTable {
        ConnectionTable::default()
    }

    fn lock(&self) -> MutexGuard<'_, TableInner> {
        // A panic while holding the lock leaves consistent data (every
        // update is a single map operation), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The addresses of `host`, from a resolution made within the last
    /// [`HOST_CACHE_TTL`] or a new one (in the blocking pool, as the
    /// system resolver may take long): reconnecting, and looking up EPMD
    /// then connecting to the node, resolve a host once.
    async fn resolve(&self, host: &str) -> io::Result<Vec<IpAddr>> {
        if let Some((ips, at)) = self.lock().hosts.get(host) {
            if at.elapsed() < HOST_CACHE_TTL {
                return Ok(ips.clone());
            }
        }
        let ips: Vec<IpAddr> = tokio::net::lookup_host((host, 0))
            .await?
            .map(|a| a.ip())
            .collect();
        if ips.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "host has no addresses",
            ));
        }
        let mut inner = self.lock();
        if inner.hosts.len() >= HOST_CACHE_SIZE {
            inner
                .hosts
                .retain(|_, (_, at)| at.elapsed() < HOST_CACHE_TTL);
        }
        if inner.hosts.len() < HOST_CACHE_SIZE {
            inner
                .hosts
                .insert(host.to_owned(), (ips.clone(), Instant::now()));
        }
        Ok(ips)
    }

    /// Forgets `host`'s addresses (a connection to them failed: it may
    /// have moved).
    fn forget_host(&self, host: &str) {
        self.lock().hosts.remove(host);
    }

    /// Handshakes in progress.
    pub fn handshakes_in_progress(&self) -> usize {
        self.lock().handshakes
    }

    /// Connection tasks running.
    pub fn running_connections(&self) -> usize {
        self.lock().tasks
    }

    /// Peers with a pending or up connection.
    pub fn peers(&self) -> Vec<NodeName> {
        self.lock().entries.keys().cloned().collect()
    }

    /// The handle of the connection up with `peer`, if any.
    pub fn get(&self, peer: &NodeName) -> Option<ConnectionHandle> {
        match self.lock().entries.get(peer) {
            Some(Entry::Up { handle, .. }) => Some(handle.clone()),
            _ => None,
        }
    }

    fn new_ticket(&self) -> Ticket {
        let mut t = self.lock();
        t.next_id += 1;
        t.handshakes += 1;
        let (cancel_tx, cancel_rx) = oneshot::channel();
        Ticket {
            table: self.clone(),
            id: t.next_id,
            cancel_tx: Mutex::new(Some(cancel_tx)),
            cancel_rx: Mutex::new(Some(cancel_rx)),
            peer: Mutex::new(None),
        }
    }
}

/// One handshake's place in the table; removes it on drop unless promoted.
#[derive(Debug)]
struct Ticket {
    table: ConnectionTable,
    id: u64,
    cancel_tx: Mutex<Option<oneshot::Sender<()>>>,
    cancel_rx: Mutex<Option<oneshot::Receiver<()>>>,
    peer: Mutex<Option<NodeName>>,
}

fn take<T>(m: &Mutex<Option<T>>) -> Option<T> {
    m.lock().unwrap_or_else(|e| e.into_inner()).take()
}

impl Ticket {
    fn set_peer(&self, peer: &NodeName) {
        *self.peer.lock().unwrap_or_else(|e| e.into_inner()) = Some(peer.clone());
    }

    /// Registers an outgoing attempt.
    fn begin_outgoing(&self, peer: &NodeName) -> Result<(), ConnectError> {
        let mut t = self.table.lock();
        match t.entries.get(peer) {
            Some(Entry::Up { .. }) => Err(ConnectError::AlreadyConnected {
                peer: peer.to_string(),
            }),
            Some(Entry::Pending { .. }) => Err(ConnectError::AlreadyPending {
                peer: peer.to_string(),
            }),
            None => {
                t.entries.insert(
                    peer.clone(),
                    Entry::Pending {
                        id: self.id,
                        cancel: take(&self.cancel_tx),
                    },
                );
                drop(t);
                self.set_peer(peer);
                Ok(())
            }
        }
    }

    /// Makes this handshake's entry the up connection. Returns the old
    /// connection's handle if this one replaces it (`alive`), or `None`
    /// if this handshake no longer owns the entry.
    fn promote(
        &self,
        peer: &NodeName,
        handle: &ConnectionHandle,
    ) -> Result<Option<ConnectionHandle>, ()> {
        let mut t = self.table.lock();
        let old = match t.entries.get(peer) {
            Some(Entry::Pending { id, .. }) if *id == self.id => None,
            Some(Entry::Up {
                handle: old,
                pending_owner: Some(owner),
                ..
            }) if *owner == self.id => Some(old.clone()),
            _ => return Err(()),
        };
        t.entries.insert(
            peer.clone(),
            Entry::Up {
                id: self.id,
                handle: handle.clone(),
                pending_owner: None,
            },
        );
        t.tasks += 1;
        drop(t);
        take(&self.peer);
        Ok(old)
    }

    /// The handle of the up connection this handshake replaces.
    fn old_connection(&self, peer: &NodeName) -> Option<ConnectionHandle> {
        match self.table.lock().entries.get(peer) {
            Some(Entry::Up {
                handle,
                pending_owner: Some(owner),
                ..
            }) if *owner == self.id => Some(handle.clone()),
            _ => None,
        }
    }

    fn cancelled(&self) -> Option<oneshot::Receiver<()>> {
        take(&self.cancel_rx)
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut t = self.table.lock();
        t.handshakes = t.handshakes.saturating_sub(1);
        if let Some(peer) = take(&self.peer) {
            match t.entries.get_mut(&peer) {
                Some(Entry::Pending { id, .. }) if *id == self.id => {
                    t.entries.remove(&peer);
                }
                Some(Entry::Up { pending_owner, .. }) if *pending_owner == Some(self.id) => {
                    *pending_owner = None;
                }
                _ => {}
            }
        }
    }
}

impl Arbiter for Ticket {
    fn accept_pending(&self, peer: &NodeName, local_wins: bool) -> AcceptPending {
        let mut t = self.table.lock();
        let answer = match t.entries.get_mut(peer) {
            None => AcceptPending::Ok,
            Some(Entry::Pending { .. }) if local_wins => return AcceptPending::NokPending,
            Some(Entry::Pending { cancel, .. }) => {
                if let Some(c) = cancel.take() {
                    let _ = c.send(());
                }
                AcceptPending::OkPending
            }
            Some(Entry::Up {
                pending_owner: Some(_),
                ..
            }) => return AcceptPending::AlreadyPending,
            Some(Entry::Up { pending_owner, .. }) => {
                *pending_owner = Some(self.id);
                drop(t);
                self.set_peer(peer);
                return AcceptPending::UpPending;
            }
        };
        t.entries.insert(
            peer.clone(),
            Entry::Pending {
                id: self.id,
                cancel: take(&self.cancel_tx),
            },
        );
        drop(t);
        self.set_peer(peer);
        answer
    }

    fn is_pending(&self, peer: &NodeName) -> bool {
        matches!(self.table.lock().entries.get(peer),
            Some(Entry::Pending { id, .. }) if *id == self.id)
    }

    fn assign_name(&self, host: &str) -> Option<(NodeName, u32)> {
        let alive = random_letters(12).ok()?;
        let name = NodeName::from_peer(&format!("{alive}@{host}")).ok()?;
        let creation = getrandom::u32().ok()?.max(1);
        Some((name, creation))
    }
}

// ------------------------------------------------------- handshake I/O

struct HsIo {
    stream: TcpStream,
    buf: BytesMut,
    out: BytesMut,
    peer: String,
    timeout: Duration,
}

impl HsIo {
    fn new(stream: TcpStream, peer: String, timeout: Duration) -> HsIo {
        HsIo {
            stream,
            buf: BytesMut::with_capacity(256),
            out: BytesMut::with_capacity(256),
            peer,
            timeout,
        }
    }

    async fn recv(&mut self, step: &'static str) -> Result<Bytes, ConnectError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(p) = decode_packet(&mut self.buf) {
                debug!(step, len = p.len(), "handshake packet received");
                return Ok(p);
            }
            let read = tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf));
            match read.await {
                Err(_) => {
                    return Err(ConnectError::Timeout {
                        peer: self.peer.clone(),
                        step,
                        after: self.timeout,
                    })
                }
                Ok(Ok(0)) => {
                    return Err(ConnectError::Closed {
                        peer: self.peer.clone(),
                        step,
                    })
                }
                Ok(Ok(_)) => {}
                Ok(Err(source)) => {
                    return Err(ConnectError::Io {
                        peer: self.peer.clone(),
                        step,
                        source,
                    })
                }
            }
        }
    }

    async fn send(&mut self, msgs: &[Message]) -> Result<(), ConnectError> {
        self.out.clear();
        for m in msgs {
            debug!(message = m.name(), "handshake message sent");
            m.encode_packet(&mut self.out)
                .map_err(|e| self.handshake_err(e, "sending"))?;
        }
        let step = msgs.first().map_or("", Message::name);
        match timeout(self.timeout, self.stream.write_all(&self.out)).await {
            Err(_) => Err(ConnectError::Timeout {
                peer: self.peer.clone(),
                step,
                after: self.timeout,
            }),
            Ok(Err(source)) => Err(ConnectError::Io {
                peer: self.peer.clone(),
                step,
                source,
            }),
            Ok(Ok(())) => Ok(()),
        }
    }

    fn handshake_err(&self, source: MessageError, step: &'static str) -> ConnectError {
        ConnectError::Handshake {
            peer: self.peer.clone(),
            source: HandshakeError::Message { step, source },
        }
    }

    /// Sends the failure's last message, if any, then returns its error.
    async fn fail(&mut self, f: Failure) -> ConnectError {
        if let Some(m) = f.send {
            let _ = self.send(&[m]).await;
        }
        ConnectError::Handshake {
            peer: self.peer.clone(),
            source: f.error,
        }
    }

    async fn recv_as<T>(
        &mut self,
        step: &'static str,
        decode: fn(&[u8]) -> Result<T, MessageError>,
    ) -> Result<T, ConnectError> {
        let p = self.recv(step).await?;
        decode(&p).map_err(|e| self.handshake_err(e, step))
    }
}

// ------------------------------------------------------------ connect

/// Connects to `peer`: asks EPMD on the peer's host for its port, connects,
/// and runs the initiator handshake, each step within
/// [`LocalNodeConfig::setup_timeout`].
///
/// # Errors
/// [`ConnectError`]: not registered, connection refused, timeout, closed,
/// cookie mismatch ([`ConnectError::DigestRejected`]: the peer rejected
/// ours; [`HandshakeError::PeerDigestWrong`]: the peer's was wrong), flags,
/// names, simultaneous connect.
pub async fn connect(local: &LocalNodeConfig, peer: &NodeName) -> Result<Connection, ConnectError> {
    let span = info_span!("dist_connect", %peer);
    async {
        let r = connect_inner(local, peer).await;
        match &r {
            Ok(c) => info!(
                visible = c.outcome().visible,
                flags = ?c.outcome().flags,
                "connection up"
            ),
            Err(e) => warn!(error = %e, "connection setup failed"),
        }
        r
    }
    .instrument(span)
    .await
}

/// Resolves the peer's host and asks EPMD there for the peer's port, trying
/// each address in turn (as OTP's `erl_epmd` does); returns the address
/// EPMD answered on, where the node is.
async fn lookup(
    local: &LocalNodeConfig,
    peer: &NodeName,
) -> Result<(IpAddr, crate::epmd::NodeInfo), ConnectError> {
    let epmd_err = |source| ConnectError::Epmd {
        peer: peer.to_string(),
        source,
    };
    let ips = local.table.resolve(peer.host()).await.map_err(|source| {
        epmd_err(EpmdError::Resolve {
            addr: local.epmd.clone().host(peer.host()).addr(),
            source,
        })
    })?;
    let mut unreachable = None;
    for ip in ips {
        let epmd = local.epmd.clone().host(ip.to_string());
        match port_please_again(&epmd, peer.alive()).await {
            Ok(info) => return Ok((ip, info)),
            Err(e @ EpmdError::Unreachable { .. }) => unreachable = Some(e),
            Err(EpmdError::NoSuchNode { addr, .. }) => {
                return Err(ConnectError::NotRegistered {
                    peer: peer.to_string(),
                    epmd: addr,
                })
            }
            Err(source) => return Err(epmd_err(source)),
        }
    }
    local.table.forget_host(peer.host());
    Err(epmd_err(unreachable.unwrap_or_else(|| {
        EpmdError::Unreachable {
            addr: peer.host().to_owned(),
            source: io::Error::new(io::ErrorKind::NotFound, "host has no addresses"),
        }
    })))
}

/// How many times a lookup that EPMD closed unanswered is tried again.
/// EPMD keeps about a thousand connections at once and closes any beyond
/// that as soon as it accepts them (OTP 25's `epmd`, observed: of 1,500
/// connections held open, 481 closed at once), so a burst of connects to
/// one host (a mesh of 100 nodes makes 4,950) can meet such closes. After
/// pauses of about 10, 20, 40 and 80 ms (each up to twice that, at
/// random, so that a burst does not come back at once) the lookup fails
/// as before. OTP's `erl_epmd` does not try again: the connect fails.
const EPMD_LOOKUP_RETRIES: u32 = 4;

/// `PORT_PLEASE2_REQ`, tried again (see [`EPMD_LOOKUP_RETRIES`]) when EPMD
/// closes the connection or it breaks before the answer.
async fn port_please_again(
    epmd: &EpmdClient,
    alive: &str,
) -> Result<crate::epmd::NodeInfo, EpmdError> {
    let mut tried = 0;
    loop {
        match epmd.port_please(alive).await {
            Err(e @ (EpmdError::Closed { .. } | EpmdError::Io { .. }))
                if tried < EPMD_LOOKUP_RETRIES =>
            {
                let base = 10u64 << tried;
                let jitter = getrandom::u32().map_or(0, |r| u64::from(r) % base);
                debug!(error = %e, "EPMD lookup cut short; trying again");
                tokio::time::sleep(Duration::from_millis(base + jitter)).await;
                tried += 1;
            }
            r => return r,
        }
    }
}

async fn connect_inner(
    local: &LocalNodeConfig,
    peer: &NodeName,
) -> Result<Connection, ConnectError> {
    let own_challenge = gen_challenge()?;
    let (send_name, st) = Initiator::start(&local.handshake_config(), peer.clone(), own_challenge)
        .map_err(|source| ConnectError::Handshake {
            peer: peer.to_string(),
            source,
        })?;
    let ticket = local.table.new_ticket();
    ticket.begin_outgoing(peer)?;
    let cancelled = ticket.cancelled();
    let work = async {
        let (ip, info) = lookup(local, peer).await?;
        debug!(port = info.port, "EPMD lookup done");
        let addr = SocketAddr::new(ip, info.port);
        let stream = match timeout(local.setup_timeout, TcpStream::connect(addr)).await {
            Err(_) => {
                return Err(ConnectError::Timeout {
                    peer: peer.to_string(),
                    step: "TCP connect",
                    after: local.setup_timeout,
                })
            }
            Ok(Err(source)) => {
                local.table.forget_host(peer.host());
                return Err(ConnectError::Connect {
                    peer: peer.to_string(),
                    addr: addr.to_string(),
                    source,
                });
            }
            Ok(Ok(s)) => s,
        };
        let _ = stream.set_nodelay(true);
        debug!(%addr, "TCP connected");
        let mut io = HsIo::new(stream, peer.to_string(), local.setup_timeout);
        io.send(&[Message::Name(NameMessage::New(send_name))])
            .await?;
        let status = io.recv_as("status", Status::decode).await?;
        debug!(?status, "status received");
        let step = match st.handle(status, &ticket) {
            Ok(s) => s,
            Err(f) => return Err(io.fail(f).await),
        };
        if !step.send.is_empty() {
            io.send(&step.send).await?;
        }
        let challenge = io.recv_as("challenge", Challenge::decode).await?;
        let step = match step.next.handle(challenge) {
            Ok(s) => s,
            Err(f) => return Err(io.fail(f).await),
        };
        io.send(&step.send).await?;
        let ack = match io.recv("challenge_ack").await {
            Ok(p) => ChallengeAck::decode(&p).map_err(|e| io.handshake_err(e, "challenge_ack"))?,
            Err(ConnectError::Closed { .. }) => {
                return Err(ConnectError::DigestRejected {
                    peer: peer.to_string(),
                })
            }
            Err(e) => return Err(e),
        };
        let outcome = match step.next.handle(ack) {
            Ok(o) => o,
            Err(f) => return Err(io.fail(f).await),
        };
        Ok((io, outcome))
    };
    let (io, outcome) = match cancelled {
        Some(cancelled) => tokio::select! {
            r = work => r?,
            _ = cancelled => return Err(ConnectError::Superseded { peer: peer.to_string() }),
        },
        None => work.await?,
    };
    start_connection(local, io, outcome, &ticket).await
}

// ------------------------------------------------------------- accept

/// Runs the acceptor handshake on an accepted socket, each step within
/// [`LocalNodeConfig::setup_timeout`], and starts the connection.
///
/// # Errors
/// As [`connect`]'s, for the accepting side.
pub async fn accept(
    local: &LocalNodeConfig,
    stream: TcpStream,
) -> Result<Connection, ConnectError> {
    let addr = stream
        .peer_addr()
        .map_or_else(|_| "unknown".to_owned(), |a: SocketAddr| a.to_string());
    let span = info_span!("dist_accept", %addr, peer = tracing::field::Empty);
    async {
        let r = accept_inner(local, stream, addr).await;
        match &r {
            Ok(c) => {
                tracing::Span::current().record("peer", tracing::field::display(c.peer()));
                info!(visible = c.outcome().visible, flags = ?c.outcome().flags, "connection up");
            }
            Err(e) => warn!(error = %e, "incoming connection setup failed"),
        }
        r
    }
    .instrument(span)
    .await
}

async fn accept_inner(
    local: &LocalNodeConfig,
    stream: TcpStream,
    addr: String,
) -> Result<Connection, ConnectError> {
    let challenge = gen_challenge()?;
    let st = Acceptor::start(&local.handshake_config(), challenge).map_err(|source| {
        ConnectError::Handshake {
            peer: addr.clone(),
            source,
        }
    })?;
    let _ = stream.set_nodelay(true);
    let ticket = local.table.new_ticket();
    let mut io = HsIo::new(stream, addr, local.setup_timeout);
    let name = io.recv_as("send_name", NameMessage::decode).await?;
    let step = match st.handle(name, &ticket) {
        Ok(s) => s,
        Err(f) => return Err(io.fail(f).await),
    };
    let cancelled = ticket.cancelled();
    let work = async {
        io.send(&step.send).await?;
        let await_reply = match step.next {
            AfterName::Reply(r) => r,
            AfterName::Complement(c) => {
                let m = io.recv_as("complement", Complement::decode).await?;
                match c.handle(m) {
                    Ok(r) => r,
                    Err(f) => return Err(io.fail(f).await),
                }
            }
            AfterName::AliveReply(w) => {
                let s = io.recv_as("status (alive reply)", Status::decode).await?;
                let step = match w.handle(s) {
                    Ok(s) => s,
                    Err(f) => return Err(io.fail(f).await),
                };
                io.send(&step.send).await?;
                step.next
            }
        };
        io.peer = await_reply.peer().to_string();
        let reply = io
            .recv_as("challenge_reply", ChallengeReply::decode)
            .await?;
        let (ack, outcome) = match await_reply.handle(reply) {
            Ok(r) => r,
            Err(f) => return Err(io.fail(f).await),
        };
        if outcome.replaces_old {
            // OTP kills the stale connection before acknowledging.
            if let Some(old) = ticket.old_connection(&outcome.peer_name) {
                debug!("closing the stale connection this one replaces");
                old.close();
                let _ = timeout(local.setup_timeout, old.closed()).await;
            }
        }
        io.send(&[Message::ChallengeAck(ack)]).await?;
        Ok((io, outcome))
    };
    let (io, outcome) = match cancelled {
        Some(cancelled) => tokio::select! {
            r = work => r?,
            _ = cancelled => return Err(ConnectError::Superseded { peer: io_peer(&step_peer_name(&ticket)) }),
        },
        None => work.await?,
    };
    start_connection(local, io, outcome, &ticket).await
}

fn step_peer_name(ticket: &Ticket) -> Option<NodeName> {
    ticket
        .peer
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

fn io_peer(n: &Option<NodeName>) -> String {
    n.as_ref()
        .map_or_else(|| "unknown".to_owned(), ToString::to_string)
}

/// Accepts connections on `listener` until `shutdown` completes, running
/// each handshake in its own task, and hands the connections that come up
/// to `up`. Failed handshakes are logged and dropped.
pub async fn serve(
    listener: TcpListener,
    local: LocalNodeConfig,
    up: mpsc::Sender<Connection>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut tasks = tokio::task::JoinSet::new();
    let mut refused = 0u64;
    loop {
        // Count only the handshakes still running.
        while tasks.try_join_next().is_some() {}
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            r = listener.accept() => match r {
                Ok((stream, peer)) if tasks.len() >= local.max_handshakes.max(1) => {
                    drop(stream);
                    refused += 1;
                    // One line for the first of a burst, then one in 1,000.
                    if refused % 1000 == 1 {
                        warn!(%peer, refused, limit = local.max_handshakes, "too many handshakes in progress: connection closed");
                    }
                }
                Ok((stream, _)) => {
                    let local = local.clone();
                    let up = up.clone();
                    tasks.spawn(async move {
                        if let Ok(c) = accept(&local, stream).await {
                            let _ = up.send(c).await;
                        }
                    });
                }
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    tasks.shutdown().await;
}

// ----------------------------------------------------- the connection

async fn start_connection(
    local: &LocalNodeConfig,
    io: HsIo,
    outcome: HandshakeOutcome,
    ticket: &Ticket,
) -> Result<Connection, ConnectError> {
    let (tx, rx) = mpsc::channel(local.send_capacity.max(1));
    let (ev_tx, ev_rx) = mpsc::channel(local.event_capacity.max(1));
    let (down_tx, down_rx) = watch::channel(None);
    let shutdown = Arc::new(Notify::new());
    let outcome = Arc::new(outcome);
    let budget = Arc::new(Semaphore::new(OUT_FRAMES_BUDGET_KIB as usize));
    let handle = ConnectionHandle {
        tx,
        budget: Arc::clone(&budget),
        shutdown: Arc::clone(&shutdown),
        down: down_rx,
        outcome: Arc::clone(&outcome),
    };
    let peer = outcome.peer_name.clone();
    let id = ticket.id;
    match ticket.promote(&peer, &handle) {
        Ok(Some(old)) => {
            // Normally closed before the ack; make sure.
            old.close();
        }
        Ok(None) => {}
        Err(()) => {
            return Err(ConnectError::Superseded {
                peer: peer.to_string(),
            })
        }
    }
    let settings = RunSettings {
        tick_interval: local.tick_interval(),
        intensity: local.tick_intensity.clamp(4, 1000),
        max_frame: local.max_frame_size,
        hidden: !outcome.visible,
    };
    let span = info_span!("dist_connection", %peer, role = ?outcome.role);
    let HsIo { stream, buf, .. } = io;
    let link = Link {
        stream,
        rbuf: buf,
        cmds: rx,
        shutdown,
        budget: Arc::clone(&budget),
        settings,
        span,
        events: ev_tx,
        finish: Finish {
            table: local.table.clone(),
            peer,
            id,
            down: down_tx,
            budget,
            reason: None,
        },
    };
    let mut conn = Connection {
        handle,
        events: ev_rx,
        link: Some(Box::new(link)),
    };
    if !local.inline {
        conn.start();
    }
    Ok(conn)
}

/// What a connection's loop runs with.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunSettings {
    tick_interval: Duration,
    intensity: u32,
    /// The largest frame accepted from the peer.
    pub(crate) max_frame: usize,
    hidden: bool,
}

/// A connection after its handshake, not yet running: its socket, what
/// was read past the handshake, and the ends of its handle's channels.
/// [`Connection::start`] runs it in a task of its own; the node instead
/// runs it inside its per-peer task ([`Connection::into_link`]), so that
/// a message crosses no task between a process and the socket.
pub(crate) struct Link {
    pub(crate) stream: TcpStream,
    /// Bytes read and not yet cut into frames.
    pub(crate) rbuf: BytesMut,
    /// Frames sent through the [`ConnectionHandle`].
    pub(crate) cmds: mpsc::Receiver<Command>,
    /// [`ConnectionHandle::close`].
    pub(crate) shutdown: Arc<Notify>,
    pub(crate) budget: Arc<Semaphore>,
    pub(crate) settings: RunSettings,
    /// The connection's tracing span.
    pub(crate) span: tracing::Span,
    events: mpsc::Sender<ConnectionEvent>,
    /// Reports the end however the link goes (dropped unrun included).
    pub(crate) finish: Finish,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("peer", &self.finish.peer)
            .field("id", &self.finish.id)
            .finish_non_exhaustive()
    }
}

/// Reports a connection's end when dropped: the table forgets it, and its
/// handles see it closed, with [`Finish::reason`] (or `LocalShutdown`).
pub(crate) struct Finish {
    table: ConnectionTable,
    peer: NodeName,
    id: u64,
    down: watch::Sender<Option<DownReason>>,
    budget: Arc<Semaphore>,
    /// Why the connection ended, once it has.
    pub(crate) reason: Option<DownReason>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        let reason = self.reason.take().unwrap_or(DownReason::LocalShutdown);
        self.budget.close();
        info!(peer = %self.peer, %reason, "connection down");
        self.table.lock().connection_ended(&self.peer, self.id);
        let _ = self.down.send(Some(reason));
    }
}

impl Link {
    /// Runs the connection in a task of its own, its frames going to the
    /// [`Connection`]'s events.
    fn spawn(self: Box<Self>) {
        let span = self.span.clone();
        tokio::spawn(
            async move {
                let Link {
                    stream,
                    rbuf,
                    cmds,
                    shutdown,
                    budget,
                    settings,
                    events,
                    mut finish,
                    ..
                } = *self;
                let reason = run(stream, rbuf, cmds, &events, &shutdown, &budget, settings).await;
                finish.reason = Some(reason.clone());
                drop(finish);
                let _ = events.send(ConnectionEvent::Down(reason)).await;
            }
            .instrument(span),
        );
    }
}

/// Frames waiting to be written: small ones copied together with their
/// headers, large ones kept in their own buffers.
#[derive(Default)]
pub(crate) struct WriteQueue {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    bytes: usize,
    /// How many of the `bytes` come before the end of the last fragment
    /// queued (0 when no fragment waits).
    to_fragment_end: usize,
}

/// Whether a frame is a fragment of a message (`DIST_FRAG_HEADER` or
/// `DIST_FRAG_CONT`).
fn is_fragment(frame: &OutFrame) -> bool {
    use super::dist_header::{FrameTag, VERSION_MAGIC};
    frame.head.first() == Some(&VERSION_MAGIC)
        && matches!(
            frame.head.get(1).map(|&t| FrameTag(t)),
            Some(FrameTag::DIST_FRAG_HEADER | FrameTag::DIST_FRAG_CONT)
        )
}

impl WriteQueue {
    fn push(&mut self, payload: Bytes) -> Result<(), DownReason> {
        self.push_out(OutFrame::whole(payload))
    }

    /// Queues the length prefix and both pieces; a large piece is kept in
    /// its own buffer, not copied.
    pub(crate) fn push_out(&mut self, frame: OutFrame) -> Result<(), DownReason> {
        let header = frame_header(frame.len())
            .ok_or_else(|| DownReason::Protocol("frame larger than 4 GiB".into()))?;
        self.bytes += 4 + frame.len();
        if is_fragment(&frame) {
            self.to_fragment_end = self.bytes;
        }
        self.tail.put_slice(&header);
        let OutFrame { head, body, more } = frame;
        for piece in [head, body].into_iter().chain(more) {
            if piece.len() <= COALESCE_LIMIT {
                self.tail.put_slice(&piece);
            } else {
                self.seal();
                self.chunks.push_back(piece);
            }
        }
        Ok(())
    }

    fn push_tick(&mut self) {
        self.bytes += 4;
        self.tail.put_slice(&TICK);
    }

    fn seal(&mut self) {
        if !self.tail.is_empty() {
            self.chunks.push_back(self.tail.split().freeze());
        }
    }

    /// Whether nothing waits to be written.
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Whether the writer should take no more for now.
    pub(crate) fn is_full(&self) -> bool {
        self.bytes >= WRITE_HIGH_WATER
            || (self.to_fragment_end > 0 && self.bytes >= FRAGMENT_HIGH_WATER)
    }

    /// One vectored write of up to 64 chunks.
    pub(crate) async fn write_to<W: AsyncWrite + Unpin>(
        &mut self,
        w: &mut W,
    ) -> Result<usize, DownReason> {
        self.seal();
        let n = {
            let slices: Vec<IoSlice<'_>> = self
                .chunks
                .iter()
                .take(64)
                .map(|c| IoSlice::new(c))
                .collect();
            w.write_vectored(&slices)
                .await
                .map_err(|e| DownReason::Io(e.to_string()))?
        };
        if n == 0 {
            return Err(DownReason::Io(
                io::Error::from(io::ErrorKind::WriteZero).to_string(),
            ));
        }
        self.advance(n);
        Ok(n)
    }

    fn advance(&mut self, mut n: usize) {
        self.bytes -= n;
        self.to_fragment_end = self.to_fragment_end.saturating_sub(n);
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if n >= front.len() {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    /// Queues `first` and whatever else the handle's channel holds, until
    /// the queue is full; `cmds_open` turns false when every handle is gone.
    pub(crate) fn take_commands(
        &mut self,
        first: Option<Command>,
        cmds: &mut mpsc::Receiver<Command>,
        budget: &Semaphore,
        cmds_open: &mut bool,
    ) -> Result<(), DownReason> {
        let mut next = first;
        loop {
            match next {
                None => {
                    *cmds_open = false;
                    return Ok(());
                }
                Some(Command::Frame(b)) => self.push(b)?,
                Some(Command::Frames(v)) => {
                    for b in v {
                        self.push(b)?;
                    }
                }
                Some(Command::OutFrames(v, kib)) => {
                    budget.add_permits(kib as usize);
                    for f in v {
                        self.push_out(f)?;
                    }
                }
            }
            if self.is_full() {
                return Ok(());
            }
            // Batch whatever else is queued into the same write.
            match cmds.try_recv() {
                Ok(c) => next = Some(c),
                Err(mpsc::error::TryRecvError::Empty) => return Ok(()),
                Err(mpsc::error::TryRecvError::Disconnected) => next = None,
            }
        }
    }
}

/// How many bytes a connection's task reads and writes before it lets
/// other tasks run ([`Turns`]).
const TURN_BYTES: usize = 1 << 20;

/// Makes a connection's task give other tasks a turn after every
/// [`TURN_BYTES`] it reads or writes.
///
/// While a large message streams in or out, the socket is always ready,
/// so the task never waits, and tokio switches tasks only when one waits
/// or has used its budget of 128 socket operations (128 large reads or
/// writes can be hundreds of megabytes). A process the task woke
/// meanwhile (to take a small message that came between fragments, or
/// the reply to one) goes to the worker's next-task slot, which other
/// workers do not steal from (tokio's `multi_thread/worker.rs`: "except
/// for the task in the lifo_slot, all tasks can be stolen"). Without
/// these turns such a process often
/// waited for the whole large message (`tests/large_sends.rs`).
#[derive(Debug, Default)]
pub(crate) struct Turns {
    moved: usize,
}

impl Turns {
    /// Counts `n` bytes read or written.
    pub(crate) fn moved(&mut self, n: usize) {
        self.moved = self.moved.saturating_add(n);
    }

    /// Yields if the task has moved [`TURN_BYTES`] since it last did.
    pub(crate) async fn take(&mut self) {
        if self.moved >= TURN_BYTES {
            self.moved = 0;
            tokio::task::yield_now().await;
        }
    }
}

/// Cuts the whole frames read so far off `rbuf` in one piece and gives
/// each data frame to `f` as its place in that piece (ticks are dropped):
/// one reference count for the run, not one per frame.
pub(crate) fn cut_frame_run(
    rbuf: &mut BytesMut,
    max_frame: usize,
    mut f: impl FnMut(&Bytes, usize, usize) -> Result<(), DownReason>,
) -> Result<(), DownReason> {
    let (whole, next) =
        whole_frames(rbuf, max_frame).map_err(|e| DownReason::Protocol(e.to_string()))?;
    if whole > 0 {
        let run = rbuf.split_to(whole).freeze();
        let mut at = 0;
        while let Some(head) = run
            .get(at..at + 4)
            .and_then(|h| <[u8; 4]>::try_from(h).ok())
        {
            let len = u32::from_be_bytes(head) as usize;
            at += 4;
            if len > 0 {
                f(&run, at, at + len)?;
            }
            at += len;
        }
    }
    if let Some(need) = next {
        // Room for the rest of the frame begun.
        rbuf.reserve(need.saturating_sub(rbuf.len()));
    }
    Ok(())
}

/// OTP's ticks (`dist_util:con_loop`): a tick goes out in every interval
/// in which nothing was written (on a hidden connection also when nothing
/// was read), and the peer is down after `intensity` intervals in which
/// nothing was read.
pub(crate) struct Ticks {
    ticker: tokio::time::Interval,
    read_any: bool,
    wrote_any: bool,
    silent_intervals: u32,
    last_read: Instant,
    intensity: u32,
    hidden: bool,
}

impl Ticks {
    pub(crate) fn new(s: &RunSettings) -> Ticks {
        let mut ticker =
            tokio::time::interval_at(Instant::now() + s.tick_interval, s.tick_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ticks {
            ticker,
            read_any: false,
            wrote_any: false,
            silent_intervals: 0,
            last_read: Instant::now(),
            intensity: s.intensity,
            hidden: s.hidden,
        }
    }

    /// Waits for the next interval.
    pub(crate) async fn tick(&mut self) {
        self.ticker.tick().await;
    }

    pub(crate) fn read(&mut self) {
        self.read_any = true;
        self.last_read = Instant::now();
    }

    pub(crate) fn wrote(&mut self) {
        self.wrote_any = true;
    }

    /// An interval ended. `reading` is false while the layer above is too
    /// slow to take frames: then we do not read, and that is not the
    /// peer's silence.
    pub(crate) fn interval(
        &mut self,
        reading: bool,
        out: &mut WriteQueue,
    ) -> Result<(), DownReason> {
        if self.read_any || !reading {
            self.silent_intervals = 0;
        } else {
            self.silent_intervals += 1;
            if self.silent_intervals >= self.intensity {
                return Err(DownReason::TickTimeout {
                    silent_for: self.last_read.elapsed(),
                });
            }
        }
        if (!self.wrote_any && out.is_empty()) || (self.hidden && !self.read_any) {
            out.push_tick();
        }
        self.read_any = false;
        self.wrote_any = false;
        Ok(())
    }
}

/// The connection task's loop: reads, writes, ticks, until down.
async fn run(
    mut stream: TcpStream,
    mut rbuf: BytesMut,
    mut cmds: mpsc::Receiver<Command>,
    events: &mpsc::Sender<ConnectionEvent>,
    shutdown: &Notify,
    budget: &Semaphore,
    s: RunSettings,
) -> DownReason {
    match run_inner(
        &mut stream,
        &mut rbuf,
        &mut cmds,
        events,
        shutdown,
        budget,
        s,
    )
    .await
    {
        Ok(()) => DownReason::LocalShutdown,
        Err(reason) => reason,
    }
}

async fn run_inner(
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    cmds: &mut mpsc::Receiver<Command>,
    events: &mpsc::Sender<ConnectionEvent>,
    shutdown: &Notify,
    budget: &Semaphore,
    s: RunSettings,
) -> Result<(), DownReason> {
    let mut reader = Reader::new();
    let (mut rd, mut wr) = stream.split();
    let mut out = WriteQueue::default();
    let mut received: VecDeque<Bytes> = VecDeque::new();
    let mut ticks = Ticks::new(&s);
    let mut cmds_open = true;
    let mut turns = Turns::default();
    if rbuf.capacity() < 8192 {
        rbuf.reserve(8192);
    }
    loop {
        turns.take().await;
        cut_frame_run(rbuf, s.max_frame, |run, start, end| {
            received.push_back(run.slice(start..end));
            Ok(())
        })?;
        if !cmds_open && out.is_empty() {
            return Ok(());
        }
        let reading = received.len() < 64;
        tokio::select! {
            biased;
            _ = shutdown.notified() => return Ok(()),
            permit = events.reserve(), if !received.is_empty() => {
                let Ok(p) = permit else { return Ok(()) };
                if let Some(b) = received.pop_front() {
                    p.send(ConnectionEvent::Frame(b));
                }
                // Hand over the rest while there is room, without a
                // select per frame.
                while !received.is_empty() {
                    let Ok(p) = events.try_reserve() else { break };
                    if let Some(b) = received.pop_front() {
                        p.send(ConnectionEvent::Frame(b));
                    }
                }
            },
            r = out.write_to(&mut wr), if !out.is_empty() => {
                turns.moved(r?);
                reader.wrote();
                ticks.wrote();
            },
            r = reader.read(&mut rd, rbuf), if reading => {
                turns.moved(r?);
                ticks.read();
            },
            cmd = cmds.recv(), if cmds_open && !out.is_full() => {
                out.take_commands(cmd, cmds, budget, &mut cmds_open)?;
            },
            _ = ticks.tick() => ticks.interval(reading, &mut out)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handshake::Role;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A socket stand-in that counts the calls and takes every write
    /// whole, or up to `limit` bytes of it.
    #[derive(Default)]
    struct CountingWriter {
        calls: usize,
        written: Vec<u8>,
        limit: Option<usize>,
    }

    impl AsyncWrite for CountingWriter {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            let mut left = self.limit.unwrap_or(usize::MAX);
            let mut n = 0;
            for b in bufs {
                let b = &b[..b.len().min(left)];
                self.written.extend_from_slice(b);
                n += b.len();
                left -= b.len();
            }
            Poll::Ready(Ok(n))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// What the writer batches: a thousand queued small frames, a large
    /// one in pieces and a tick go out in one vectored write, each with
    /// its length prefix, in order.
    #[tokio::test]
    async fn queued_frames_go_out_together_in_one_write() {
        let mut q = WriteQueue::default();
        let mut want = Vec::new();
        for i in 0..1000u32 {
            let payload = Bytes::from(i.to_be_bytes().repeat(10));
            want.extend_from_slice(&40u32.to_be_bytes());
            want.extend_from_slice(&payload);
            q.push(payload).unwrap();
        }
        let big = OutFrame {
            head: Bytes::from_static(b"head"),
            body: Bytes::from(vec![1u8; 100_000]),
            more: vec![Bytes::from(vec![2u8; 50_000]), Bytes::from_static(b"tail")],
        };
        want.extend_from_slice(&(big.len() as u32).to_be_bytes());
        for piece in big.iter() {
            want.extend_from_slice(piece);
        }
        q.push_out(big).unwrap();
        q.push_tick();
        want.extend_from_slice(&TICK);
        let mut w = CountingWriter::default();
        while !q.is_empty() {
            q.write_to(&mut w).await.unwrap();
        }
        assert_eq!(w.calls, 1);
        assert_eq!(w.written, want);
    }

    /// The writer takes whole frames until 2 MiB wait, but stops at
    /// 256 KiB while a fragment of a large message waits, so that a small
    /// message from another process is not queued behind several.
    #[tokio::test]
    async fn the_write_queue_holds_less_while_a_fragment_waits() {
        use super::super::dist_header::FrameTag;
        let frame = |tag: FrameTag, n: usize| OutFrame {
            head: Bytes::copy_from_slice(&[super::super::dist_header::VERSION_MAGIC, tag.0]),
            body: Bytes::from(vec![0u8; n]),
            more: Vec::new(),
        };
        let mut q = WriteQueue::default();
        q.push_out(frame(FrameTag::DIST_HEADER, 1 << 20)).unwrap();
        assert!(!q.is_full(), "1 MiB of whole frames");
        q.push_out(frame(FrameTag::DIST_HEADER, 1 << 20)).unwrap();
        assert!(q.is_full(), "2 MiB of whole frames");
        let mut w = CountingWriter::default();
        while !q.is_empty() {
            q.write_to(&mut w).await.unwrap();
        }
        q.push_out(frame(FrameTag::DIST_FRAG_HEADER, 200_000))
            .unwrap();
        assert!(!q.is_full());
        q.push_out(frame(FrameTag::DIST_HEADER, 400_000)).unwrap();
        assert!(q.is_full(), "600 KB with a fragment among them");
        // Written past the fragment, not to the end: whole frames count
        // as before.
        let mut w = CountingWriter {
            limit: Some(250_000),
            ..CountingWriter::default()
        };
        q.write_to(&mut w).await.unwrap();
        assert_eq!(w.written.len(), 250_000);
        assert!(!q.is_full());
        q.push_out(frame(FrameTag::DIST_HEADER, 300_000)).unwrap();
        assert!(!q.is_full(), "650 KB of whole frames");
    }

    /// A host is resolved once, then answered from the table until it is
    /// forgotten (a failed connect) or too old.
    #[tokio::test]
    async fn hosts_are_resolved_once_and_forgotten_on_failure() {
        let table = ConnectionTable::new();
        let first = table.resolve("localhost").await.unwrap();
        assert!(!first.is_empty());
        let at = table.lock().hosts.get("localhost").map(|(_, at)| *at);
        assert!(at.is_some());
        assert_eq!(table.resolve("localhost").await.unwrap(), first);
        // Answered from the table: the entry was not renewed.
        assert_eq!(table.lock().hosts.get("localhost").map(|(_, at)| *at), at);
        table.forget_host("localhost");
        assert!(!table.lock().hosts.contains_key("localhost"));
        // Too old: resolved anew.
        table.resolve("localhost").await.unwrap();
        let old = Instant::now() - HOST_CACHE_TTL;
        if let Some((_, at)) = table.lock().hosts.get_mut("localhost") {
            *at = old;
        }
        table.resolve("localhost").await.unwrap();
        let renewed = table.lock().hosts.get("localhost").map(|(_, at)| *at);
        assert!(renewed.is_some_and(|at| at > old));
        assert!(table.resolve("no-such-host.invalid").await.is_err());
        assert!(!table.lock().hosts.contains_key("no-such-host.invalid"));
    }

    fn handle_for(peer: &NodeName) -> ConnectionHandle {
        let outcome = HandshakeOutcome {
            role: Role::Acceptor,
            local_name: NodeName::parse("me@localhost").unwrap(),
            local_creation: 1,
            peer_name: peer.clone(),
            peer_creation: 2,
            peer_flags: DistFlags::EMPTY,
            flags: DistFlags::EMPTY,
            visible: true,
            replaces_old: false,
        };
        ConnectionHandle {
            tx: mpsc::channel(1).0,
            budget: Arc::new(Semaphore::new(1)),
            shutdown: Arc::new(Notify::new()),
            down: watch::channel(None).1,
            outcome: Arc::new(outcome),
        }
    }

    /// The old connection of a restarted peer ends (we close it) before
    /// the handshake replacing it completes: the new one still comes up.
    #[test]
    fn a_replacing_handshake_comes_up_after_the_old_connection_ended() {
        let table = ConnectionTable::new();
        let peer = NodeName::parse("peer@localhost").unwrap();
        let old = table.new_ticket();
        old.begin_outgoing(&peer).unwrap();
        assert!(matches!(old.promote(&peer, &handle_for(&peer)), Ok(None)));
        let new = table.new_ticket();
        assert_eq!(new.accept_pending(&peer, false), AcceptPending::UpPending);
        assert!(new.old_connection(&peer).is_some());
        table.lock().connection_ended(&peer, old.id);
        assert_eq!(table.running_connections(), 0);
        assert!(new.is_pending(&peer));
        assert!(matches!(new.promote(&peer, &handle_for(&peer)), Ok(None)));
        assert_eq!(table.peers(), vec![peer.clone()]);
        assert_eq!(table.running_connections(), 1);
        // And when that one ends, with nothing replacing it, it is gone.
        let new_id = new.id;
        drop(new);
        table.lock().connection_ended(&peer, new_id);
        assert!(table.peers().is_empty());
        // A handshake that fails after the old connection ended leaves
        // nothing behind.
        let a = table.new_ticket();
        a.begin_outgoing(&peer).unwrap();
        a.promote(&peer, &handle_for(&peer)).unwrap();
        let b = table.new_ticket();
        assert_eq!(b.accept_pending(&peer, false), AcceptPending::UpPending);
        table.lock().connection_ended(&peer, a.id);
        drop(b);
        assert!(table.peers().is_empty());
    }

    #[test]
    fn an_ended_connection_leaves_a_newer_entry_alone() {
        let table = ConnectionTable::new();
        let peer = NodeName::parse("peer@localhost").unwrap();
        let t = table.new_ticket();
        t.begin_outgoing(&peer).unwrap();
        t.promote(&peer, &handle_for(&peer)).unwrap();
        table.lock().connection_ended(&peer, t.id + 100);
        assert_eq!(table.peers(), vec![peer]);
    }
}
