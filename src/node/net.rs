//! The node on the network: EPMD registration, connections to other nodes,
//! and the control messages that make remote processes look local.
//!
//! Each peer node has one task that owns everything about it: the messages
//! waiting for the connection to come up, the connection itself (made on
//! demand, like the BEAM does on first send, or accepted) and its socket,
//! the encoder and decoder of its frames (atom cache, fragments), and the
//! handling of what the peer sends. Messages to a peer go through that
//! task's queue in order, so per-pair ordering holds. The task reads,
//! decodes and delivers what arrives, and encodes and writes what is
//! sent, itself: between a process and the socket there is this one task.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, Notify, Semaphore};
use tracing::{debug, info, warn, Instrument};

use super::outq;
use super::sendq::{Outgoing, SendQueue};
use super::{Dest, ExitKind, FastMap, Node, Watched};
use crate::connection::control::{ControlMessage, DistMessage, ProcRef};
use crate::connection::dist_header::{DistDecoder, DistEncoder, Incoming, Prepared};
use crate::connection::driver::{
    self, cut_frame_run, Command, Connection, DownReason, Link, LocalNodeConfig, RunSettings,
    Ticks, Turns, WriteQueue,
};
use crate::connection::reader::Reader;
use crate::epmd::{EpmdClient, EpmdServer, Registration};
use crate::flags::DistFlags;
use crate::handshake::NodeName;
use crate::term::{Atom, Pid, Term};

/// A node coming up or going down, as `net_kernel:monitor_nodes/1`
/// reports it.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeEvent {
    /// A connection to the node came up.
    Up(Atom),
    /// The connection to the node went down, and why.
    Down(Atom, String),
}

/// What a peer's task receives.
pub(crate) enum Out {
    /// A message to send.
    Msg(Outgoing),
    /// A connection the listener accepted from this peer.
    Adopt(Connection),
    /// Close the connection.
    Disconnect,
    /// Tell when the connection is up, or why it could not be made.
    Waiter(oneshot::Sender<Result<(), String>>),
}

impl outq::Weighed for Out {
    fn weight(&self) -> usize {
        match self {
            Out::Msg(m) => m.weight(),
            _ => 0,
        }
    }
}

struct PeerCtl {
    id: u64,
    tx: outq::Sender<Out>,
    up: bool,
    visible: bool,
    /// The flags in effect on the connection, once up.
    flags: crate::flags::DistFlags,
}

/// The network side of a node.
pub(crate) struct Net {
    pub(crate) config: LocalNodeConfig,
    /// Read by every send, written when a peer comes, goes up or goes.
    peers: RwLock<FastMap<Atom, PeerCtl>>,
    next_peer: AtomicU64,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    pub(crate) registration: Mutex<Option<HeldRegistration>>,
    pub(crate) embedded_epmd: Mutex<Option<EpmdServer>>,
    pub(crate) shutdown: tokio::sync::Notify,
    pub(crate) unlink_ids: AtomicU64,
    /// The weight at which a peer's queue is busy
    /// ([`NodeBuilder::dist_buf_busy_limit`](super::NodeBuilder::dist_buf_busy_limit)).
    pub(crate) busy_limit: usize,
}

impl Net {
    pub(crate) fn new(config: LocalNodeConfig, busy_limit: usize) -> Net {
        Net {
            config,
            peers: RwLock::new(FastMap::default()),
            next_peer: AtomicU64::new(1),
            events: broadcast::channel(256).0,
            registration: Mutex::new(None),
            embedded_epmd: Mutex::new(None),
            shutdown: tokio::sync::Notify::new(),
            unlink_ids: AtomicU64::new(1),
            busy_limit,
        }
    }

    fn peers(&self) -> std::sync::RwLockWriteGuard<'_, FastMap<Atom, PeerCtl>> {
        self.peers.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The peer table for reading: senders do not wait for each other.
    fn peers_read(&self) -> std::sync::RwLockReadGuard<'_, FastMap<Atom, PeerCtl>> {
        self.peers.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The nodes with a connection up; `visible` picks visible or hidden.
    pub(crate) fn nodes(&self, visible: bool) -> Vec<Atom> {
        self.peers_read()
            .iter()
            .filter(|(_, p)| p.up && p.visible == visible)
            .map(|(n, _)| *n)
            .collect()
    }

    pub(crate) fn has_peer(&self, node: Atom) -> bool {
        self.peers_read().contains_key(&node)
    }

    pub(crate) fn is_up(&self, node: Atom) -> bool {
        self.peers_read().get(&node).is_some_and(|p| p.up)
    }

    /// Whether what is queued for `peer` weighs its busy limit or more.
    pub(crate) fn is_busy(&self, peer: Atom) -> bool {
        self.peers_read().get(&peer).is_some_and(|p| p.tx.is_busy())
    }

    /// Returns once the queue for `peer` is not busy (at once if there is
    /// none, or once its task ends).
    pub(crate) async fn not_busy(&self, peer: Atom) {
        // The queue is shared (and waited on) only when it is busy.
        let wait = self
            .peers_read()
            .get(&peer)
            .filter(|p| p.tx.is_busy())
            .map(|p| p.tx.not_busy());
        if let Some(w) = wait {
            w.wait().await;
        }
    }

    /// Queues the message `control` and `payload` make for `peer`, as
    /// [`route`](Self::route) does. A plain message to a peer that is up
    /// with the atom cache is encoded here, by the sending process, as
    /// BEAM's processes encode theirs: senders encode in parallel, the
    /// peer's task only adds headers, and a borrowed payload is not copied.
    pub(crate) fn send(
        &self,
        node: &Node,
        peer: Atom,
        control: ControlMessage,
        mut payload: Option<Cow<'_, Term>>,
    ) {
        // Encoded before the peer table is read, not while its lock is
        // held: a large message takes a while. Thrown away in the rare case
        // that the peer is not up with the atom cache.
        let prepared = Prepared::of(&control, payload.as_deref());
        let long = prepared.as_ref().is_some_and(Prepared::is_long);
        let peers = self.peers_read();
        let ctl = peers.get(&peer);
        let usable = ctl.is_some_and(|p| p.up && p.flags.contains(DistFlags::DIST_HDR_ATOM_CACHE));
        let out = match prepared.filter(|_| usable) {
            Some(p) => Outgoing::Prepared(p),
            None => match DistMessage::new(control, payload.take().map(Cow::into_owned)) {
                Ok(m) => Outgoing::unencoded(m),
                Err(e) => {
                    warn!(error = %e, "internal error: bad control message");
                    return;
                }
            },
        };
        let out = match ctl {
            Some(p) => match p.tx.send(Out::Msg(out)) {
                Ok(()) => {
                    drop(peers);
                    // A large term given by value is freed after the
                    // connection has had its turn to write the message.
                    if let (true, Some(Cow::Owned(t))) = (long, payload) {
                        drop_later(t);
                    }
                    return;
                }
                // The task is ending: start another.
                Err(o) => o,
            },
            None => Out::Msg(out),
        };
        drop(peers);
        self.route(node, peer, out);
    }

    /// Queues `out` for `node`, starting its task (and a connection) if
    /// there is none.
    pub(crate) fn route(&self, node: &Node, peer: Atom, out: Out) {
        let mut peers = self.peers();
        if let Some(p) = peers.get(&peer) {
            match p.tx.send(out) {
                Ok(()) => return,
                // The task is ending: start another.
                Err(o) => {
                    peers.remove(&peer);
                    drop(peers);
                    return self.route(node, peer, o);
                }
            }
        }
        if matches!(out, Out::Disconnect) {
            return;
        }
        let out = match out {
            Out::Waiter(w) if NodeName::from_peer(peer.as_str()).is_err() => {
                let _ = w.send(Err("not a node name".into()));
                return;
            }
            other => other,
        };
        let Ok(name) = NodeName::from_peer(peer.as_str()) else {
            // Not a node name: nothing can be connected, drop as Erlang does.
            drop(peers);
            fail_queued(node, [out]);
            return;
        };
        let (tx, rx) = outq::queue(self.busy_limit);
        let id = self.next_peer.fetch_add(1, Ordering::Relaxed);
        let _ = tx.send(out);
        peers.insert(
            peer,
            PeerCtl {
                id,
                tx,
                up: false,
                visible: false,
                flags: crate::flags::DistFlags::EMPTY,
            },
        );
        drop(peers);
        tokio::spawn(peer_task(node.clone(), peer, name, id, rx));
    }

    fn set_up(&self, peer: Atom, id: u64, visible: bool, flags: crate::flags::DistFlags) {
        if let Some(p) = self.peers().get_mut(&peer) {
            if p.id == id {
                p.up = true;
                p.visible = visible;
                p.flags = flags;
            }
        }
    }

    /// The flags in effect on the connection to `peer`, if it is up.
    pub(crate) fn peer_flags(&self, peer: Atom) -> Option<crate::flags::DistFlags> {
        self.peers_read()
            .get(&peer)
            .filter(|p| p.up)
            .map(|p| p.flags)
    }

    /// Removes the peer's entry if it is still task `id`'s.
    fn remove(&self, peer: Atom, id: u64) {
        let mut peers = self.peers();
        if peers.get(&peer).is_some_and(|p| p.id == id) {
            peers.remove(&peer);
        }
    }

    pub(crate) fn disconnect(&self, peer: Atom) {
        if let Some(p) = self.peers_read().get(&peer) {
            let _ = p.tx.send(Out::Disconnect);
        }
    }

    pub(crate) fn disconnect_all(&self) {
        for p in self.peers_read().values() {
            let _ = p.tx.send(Out::Disconnect);
        }
    }
}

/// Frees a large term in a task of its own, not in the sending process:
/// the connection's task, woken by the message, usually runs before it on the
/// sending thread and writes the message first, where freeing a list of
/// many small terms (thousands of allocations) would have held it back,
/// as BEAM frees a sent term at its sender's next garbage collection, not
/// in `!`. (On the blocking pool instead, the frees raced the receiving
/// side's allocations for the allocator's locks and made a round trip
/// between two erldist nodes slower.) Freed here when there is no
/// runtime.
fn drop_later(t: Term) {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            h.spawn(async move { drop(t) });
        }
        Err(_) => drop(t),
    }
}

/// How long to wait before registering again with an EPMD that closed
/// the registration (OTP's `erl_epmd` `RECONNECT_TIME`).
const REREGISTER_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// The node's registration with EPMD, kept up as OTP's `erl_epmd` keeps
/// it: when EPMD closes the connection (it stopped, or was restarted),
/// the node registers again every 2 s until an EPMD takes it, keeping its
/// creation (pids already handed out carry it). Connections already up do
/// not depend on it.
pub(crate) struct HeldRegistration {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl HeldRegistration {
    /// Holds `registration`, registering again through `client` when it is
    /// lost. Dropping the value releases the name.
    pub(crate) fn keep(registration: Registration, client: EpmdClient) -> HeldRegistration {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(keep_registered(registration, client, stopped));
        HeldRegistration { stop, task }
    }

    /// Releases the name, and returns once it is released.
    pub(crate) async fn unregister(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn keep_registered(
    registration: Registration,
    client: EpmdClient,
    mut stop: oneshot::Receiver<()>,
) {
    let name = registration.name().to_owned();
    let port = registration.node_port();
    let creation = registration.creation();
    let mut held = Some(registration);
    loop {
        match held.as_mut() {
            Some(r) => tokio::select! {
                _ = &mut stop => return,
                () = r.closed() => {
                    warn!(
                        name = %name,
                        epmd = r.epmd_addr(),
                        "EPMD dropped the registration; registering again every {REREGISTER_INTERVAL:?}"
                    );
                    held = None;
                }
            },
            None => tokio::select! {
                _ = &mut stop => return,
                r = async {
                    tokio::time::sleep(REREGISTER_INTERVAL).await;
                    client.register(&name, port).await
                } => match r {
                    Ok(r) => {
                        // As OTP, keep the creation the node runs with.
                        info!(name = %name, epmd = r.epmd_addr(), creation, ignored = r.creation(), "registered with EPMD again");
                        held = Some(r);
                    }
                    Err(e) => debug!(name = %name, error = %e, "cannot register with EPMD yet"),
                },
            },
        }
    }
}

/// Messages that could not be sent: links and monitors they set up break
/// at once with `noconnection`, as in Erlang; plain messages are dropped.
fn fail_queued(node: &Node, outs: impl IntoIterator<Item = Out>) {
    for out in outs {
        let m = match out {
            Out::Msg(Outgoing::Msg(m)) => m.msg,
            Out::Waiter(w) => {
                let _ = w.send(Err("connection failed".into()));
                continue;
            }
            _ => continue,
        };
        match m.control() {
            ControlMessage::Link { from, to } => {
                node.exit_signal(*to, *from, Term::atom("noconnection"), ExitKind::Link);
            }
            ControlMessage::MonitorP {
                from, reference, ..
            } => {
                node.remote_down(*from, reference, Term::atom("noconnection"));
            }
            _ => {}
        }
    }
}

/// Whether a failed connect means another connection to the peer wins
/// (a simultaneous connect), which the listener will hand over.
fn lost_race(e: &driver::ConnectError) -> bool {
    use crate::handshake::HandshakeError;
    use driver::ConnectError as E;
    match e {
        E::Superseded { .. } | E::AlreadyPending { .. } | E::AlreadyConnected { .. } => true,
        E::Handshake { source, .. } => matches!(source, HandshakeError::SimultaneousLost { .. }),
        _ => false,
    }
}

async fn peer_task(node: Node, peer: Atom, name: NodeName, id: u64, mut rx: outq::Receiver<Out>) {
    let Some(net) = node.net() else { return };
    let mut queue: VecDeque<Outgoing> = VecDeque::new();
    // A connection the listener accepted may be waiting already.
    let mut waiters = Vec::new();
    let mut adopted = None;
    let mut closed = false;
    while let Some(o) = rx.try_recv() {
        match o {
            Out::Msg(m) => queue.push_back(m),
            Out::Adopt(c) => adopted = Some(c),
            Out::Disconnect => closed = true,
            Out::Waiter(w) => waiters.push(w),
        }
    }
    let first = if closed {
        Err("disconnected".to_owned())
    } else if let Some(c) = adopted {
        Ok(c)
    } else {
        connect_or_adopt(&net, peer, &name, &mut queue, &mut waiters, &mut rx).await
    };
    let mut conn = match first {
        Ok(c) => {
            // Up (with its flags) before anyone waiting is told so.
            net.set_up(peer, id, c.outcome().visible, c.outcome().flags);
            for w in waiters.drain(..) {
                let _ = w.send(Ok(()));
            }
            Some(c)
        }
        Err(reason) => {
            for w in waiters.drain(..) {
                let _ = w.send(Err(reason.clone()));
            }
            None
        }
    };
    let connected = conn.is_some();
    while let Some(c) = conn.take() {
        conn = run_connection(&node, &net, peer, id, c, &mut queue, &mut rx).await;
    }
    // What waited for a connection that never came fails (links and
    // monitors with noconnection).
    if !connected {
        fail_queued(&node, queue.drain(..).map(Out::Msg));
    }
    // Once the entry is gone, nothing new reaches this task; what arrived
    // meanwhile (a message, a new connection from the restarted peer) goes
    // to a new task, as a send to a disconnected node connects anew.
    net.remove(peer, id);
    rx.close();
    while let Some(o) = rx.try_recv() {
        match o {
            Out::Disconnect => {}
            o => net.route(&node, peer, o),
        }
    }
}

/// Connects to the peer, queueing what is sent meanwhile; takes an
/// accepted connection instead if one arrives first (or wins a
/// simultaneous connect).
async fn connect_or_adopt(
    net: &Net,
    peer: Atom,
    name: &NodeName,
    queue: &mut VecDeque<Outgoing>,
    waiters: &mut Vec<oneshot::Sender<Result<(), String>>>,
    rx: &mut outq::Receiver<Out>,
) -> Result<Connection, String> {
    let connect = driver::connect(&net.config, name);
    tokio::pin!(connect);
    let mut connecting = true;
    let mut lost = String::new();
    let wait_for_winner = tokio::time::sleep(net.config.setup_timeout * 2);
    tokio::pin!(wait_for_winner);
    loop {
        tokio::select! {
            r = &mut connect, if connecting => match r {
                Ok(c) => return Ok(c),
                Err(e) if lost_race(&e) => {
                    debug!(peer = %peer, error = %e, "lost a simultaneous connect; waiting for the peer's");
                    lost = e.to_string();
                    connecting = false;
                }
                Err(e) => {
                    debug!(peer = %peer, error = %e, "connect failed");
                    return Err(e.to_string());
                }
            },
            o = rx.recv() => match o {
                Some(Out::Msg(m)) => queue.push_back(m),
                Some(Out::Adopt(c)) => return Ok(c),
                Some(Out::Waiter(w)) => waiters.push(w),
                Some(Out::Disconnect) | None => return Err("disconnected".into()),
            },
            _ = &mut wait_for_winner, if !connecting => return Err(lost),
        }
    }
}

/// How many encoded bytes the peer task takes from its send queue at a
/// time (more when one fragment is larger). The queue hands out a large
/// message a slice at a time (`sendq`), so that others' small ones can
/// come between.
const FLUSH_BYTES: usize = 256 * 1024;

/// The largest message this node sends in one frame (when the peer takes
/// fragments). BEAM cuts at 64 KiB; a real node receives a 1 MiB binary
/// about twice as fast in one frame as in 17 (the messaging bench's
/// `send_1mb`).
const MAX_ONE_FRAME: usize = 2 * 1024 * 1024;

/// The fragments that longer messages are cut into. Small messages of
/// other processes come between the fragments of larger ones, so they
/// wait behind one fragment (and what the sockets hold), not the whole
/// message: the messaging bench's `small_behind_large`. A real node (OTP
/// 25) takes 16 and 64 MiB binaries faster in fragments of this size than
/// of 2 MiB, and far slower in fragments of 512 KiB (docs/benchmarks-log.md,
/// *Scale*).
/// The same size as the writer's limit while a fragment waits, so that it
/// holds one fragment at a time.
const MAX_FRAGMENT: usize = driver::FRAGMENT_HIGH_WATER;

/// The one-frame limit and the fragment size for a node that accepts
/// frames of up to `max_frame` bytes: [`MAX_ONE_FRAME`] and
/// [`MAX_FRAGMENT`], or half that limit if smaller (so that nodes
/// configured alike accept each other's frames), and at least 1 KiB.
fn fragment_sizes(max_frame: usize) -> (usize, usize) {
    let limit = (max_frame / 2).max(1024);
    (MAX_ONE_FRAME.min(limit), MAX_FRAGMENT.min(limit))
}

/// How many messages the peer task takes from its queue in a row.
const TAKE_BATCH: usize = 1024;

/// How a connection run by [`PeerLink::run`] ended.
enum End {
    /// The connection went down.
    Down(DownReason),
    /// `disconnect_node`, or the node stopping.
    Disconnected,
    /// The peer came back (restarted, say): its new connection replaces
    /// ours.
    Replaced(Connection),
}

/// Runs one connection until it goes down; returns a newer connection
/// from the same peer if one replaced it.
async fn run_connection(
    node: &Node,
    net: &Net,
    peer: Atom,
    id: u64,
    conn: Connection,
    queue: &mut VecDeque<Outgoing>,
    rx: &mut outq::Receiver<Out>,
) -> Option<Connection> {
    let outcome = conn.outcome().clone();
    let flags = outcome.flags;
    net.set_up(peer, id, outcome.visible, flags);
    info!(peer = %peer, visible = outcome.visible, "node up");
    let _ = net.events.send(NodeEvent::Up(peer));
    let mut sendq = SendQueue::default();
    for m in queue.drain(..) {
        sendq.push(m);
    }
    let end = match conn.into_link() {
        Ok((_handle, link)) => {
            let span = link.span.clone();
            let (one_frame, fragments) = fragment_sizes(link.settings.max_frame);
            let mut peer_state = PeerLink {
                node,
                peer,
                encoder: DistEncoder::new(flags)
                    .fragment_size(fragments)
                    .one_frame_up_to(one_frame),
                decoder: DistDecoder::new(flags).with_limits(net.config.decoder_limits),
                sendq,
            };
            let end = peer_state.run(link, rx).instrument(span).await;
            // Messages still in its send queue are lost with the
            // connection: they no longer count.
            rx.release(peer_state.sendq.weight_left());
            end
        }
        Err(conn) => {
            // The node's connections are handed over before they run
            // (`LocalNodeConfig::inline`); this one was not.
            warn!(peer = %peer, "connection already running elsewhere; closing it");
            conn.handle().close();
            rx.release(sendq.weight_left());
            End::Down(DownReason::LocalShutdown)
        }
    };
    let (reason, replacement) = match end {
        End::Down(r) => (r.to_string(), None),
        End::Disconnected => ("disconnected".to_owned(), None),
        End::Replaced(c) => ("replaced by a new connection".to_owned(), Some(c)),
    };
    info!(peer = %peer, %reason, "node down");
    if let Some(p) = net.peers().get_mut(&peer) {
        if p.id == id {
            p.up = false;
        }
    }
    node.node_down(peer);
    let _ = net.events.send(NodeEvent::Down(peer, reason));
    replacement
}

/// A peer task's state while its connection is up.
struct PeerLink<'a> {
    node: &'a Node,
    peer: Atom,
    encoder: DistEncoder,
    decoder: DistDecoder,
    sendq: SendQueue,
}

impl PeerLink<'_> {
    /// Runs the connection in this task until it ends. What the peer sends
    /// is decoded and delivered as it is read, and what processes send is
    /// encoded and written from here: no other task stands between a
    /// process and the socket.
    async fn run(&mut self, link: Box<Link>, rx: &mut outq::Receiver<Out>) -> End {
        let Link {
            mut stream,
            mut rbuf,
            mut cmds,
            shutdown,
            budget,
            settings,
            mut finish,
            ..
        } = *link;
        let end = self
            .serve(
                &mut stream,
                &mut rbuf,
                &mut cmds,
                &shutdown,
                &budget,
                settings,
                rx,
            )
            .await;
        drop(stream);
        finish.reason = Some(match &end {
            End::Down(r) => r.clone(),
            End::Disconnected | End::Replaced(_) => DownReason::LocalShutdown,
        });
        end
    }

    #[allow(clippy::too_many_arguments)]
    async fn serve(
        &mut self,
        stream: &mut TcpStream,
        rbuf: &mut BytesMut,
        cmds: &mut mpsc::Receiver<Command>,
        shutdown: &Notify,
        budget: &Semaphore,
        settings: RunSettings,
        rx: &mut outq::Receiver<Out>,
    ) -> End {
        let mut reader = Reader::new();
        let (mut rd, mut wr) = stream.split();
        let mut out = WriteQueue::default();
        let mut ticks = Ticks::new(&settings);
        let mut cmds_open = true;
        let mut turns = Turns::default();
        loop {
            turns.take().await;
            if let Err(r) = self.deliver(rbuf, settings.max_frame) {
                return End::Down(r);
            }
            let filled = self.fill(&mut out);
            rx.release(self.sendq.take_released());
            if let Err(r) = filled {
                return End::Down(r);
            }
            tokio::select! {
                _ = shutdown.notified() => return End::Down(DownReason::LocalShutdown),
                r = out.write_to(&mut wr), if !out.is_empty() => match r {
                    Ok(n) => {
                        turns.moved(n);
                        reader.wrote();
                        ticks.wrote()
                    }
                    Err(r) => return End::Down(r),
                },
                r = reader.read(&mut rd, rbuf) => match r {
                    Ok(n) => {
                        turns.moved(n);
                        ticks.read()
                    }
                    Err(r) => return End::Down(r),
                },
                o = rx.recv() => {
                    let mut next = o;
                    // Take whatever else is queued too (up to a bound, so
                    // that writing gets its turn), to write it together.
                    for taken in 1.. {
                        match next {
                            Some(Out::Msg(m)) => self.sendq.push(m),
                            Some(Out::Waiter(w)) => {
                                let _ = w.send(Ok(()));
                            }
                            Some(Out::Adopt(c)) => return End::Replaced(c),
                            Some(Out::Disconnect) | None => return End::Disconnected,
                        }
                        if taken == TAKE_BATCH {
                            break;
                        }
                        match rx.try_recv() {
                            Some(o) => next = Some(o),
                            None => break,
                        }
                    }
                },
                cmd = cmds.recv(), if cmds_open && !out.is_full() => {
                    if let Err(r) = out.take_commands(cmd, cmds, budget, &mut cmds_open) {
                        return End::Down(r);
                    }
                },
                _ = ticks.tick() => {
                    self.decoder.release_idle();
                    if let Err(r) = ticks.interval(true, &mut out) {
                        return End::Down(r);
                    }
                },
            }
        }
    }

    /// Decodes the frames read so far and delivers what they carry.
    fn deliver(&mut self, rbuf: &mut BytesMut, max_frame: usize) -> Result<(), DownReason> {
        let (node, peer, decoder) = (self.node, self.peer, &mut self.decoder);
        // Each receiver is woken once for this run of frames.
        let _wakes = super::mailbox::WakeBatch::open();
        cut_frame_run(rbuf, max_frame, |run, start, end| {
            match decoder.decode_incoming_in(run, start, end) {
                Ok(Some(Incoming::Send { from, to, payload })) => {
                    node.send_from(Some(from), Dest::Pid(to), payload);
                    Ok(())
                }
                Ok(Some(Incoming::Other(msg))) => {
                    node.dispatch(peer, *msg);
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => {
                    warn!(peer = %peer, error = %e, "protocol error, closing");
                    Err(DownReason::Protocol(e.to_string()))
                }
            }
        })
    }

    /// Encodes queued messages into the writer's queue until it is full.
    fn fill(&mut self, out: &mut WriteQueue) -> Result<(), DownReason> {
        let peer = self.peer;
        while !out.is_full() && !self.sendq.is_empty() {
            let frames = self.sendq.next_chunk(
                &mut self.encoder,
                FLUSH_BYTES,
                &mut |e| warn!(peer = %peer, error = %e, "message not sent: cannot encode it"),
            );
            if frames.is_empty() {
                break;
            }
            for f in frames {
                out.push_out(f)?;
            }
        }
        Ok(())
    }
}

impl Node {
    /// Handles what a peer sent.
    pub(crate) fn dispatch(&self, peer: Atom, msg: DistMessage) {
        let (control, payload) = msg.into_parts();
        let payload = payload.unwrap_or(Term::NIL);
        use ControlMessage as C;
        match control {
            C::Send { to } | C::SendTt { to, .. } => self.send_from(None, Dest::Pid(to), payload),
            C::SendSender { from, to } | C::SendSenderTt { from, to, .. } => {
                self.send_from(Some(from), Dest::Pid(to), payload)
            }
            C::RegSend { from, to_name } | C::RegSendTt { from, to_name, .. } => {
                self.reg_send_in(from, to_name, payload)
            }
            C::AliasSend { from, alias } | C::AliasSendTt { from, alias, .. } => {
                self.send_from(Some(from), Dest::Alias(alias), payload)
            }
            C::Link { from, to } => self.remote_link(from, to),
            C::Unlink { from, to } => self.remote_unlink(from, to),
            C::UnlinkId { id, from, to } => {
                self.remote_unlink(from, to);
                let ack = C::UnlinkIdAck {
                    id,
                    from: to,
                    to: from,
                };
                self.remote(peer, ack, None);
            }
            C::UnlinkIdAck { .. } => {}
            C::Exit { from, to, reason }
            | C::ExitTt {
                from, to, reason, ..
            } => self.exit_signal(from, to, reason, ExitKind::Link),
            C::PayloadExit { from, to } | C::PayloadExitTt { from, to, .. } => {
                self.exit_signal(from, to, payload, ExitKind::Link)
            }
            C::Exit2 { from, to, reason }
            | C::Exit2Tt {
                from, to, reason, ..
            } => self.exit_signal(from, to, reason, ExitKind::Exit2),
            C::PayloadExit2 { from, to } | C::PayloadExit2Tt { from, to, .. } => {
                self.exit_signal(from, to, payload, ExitKind::Exit2)
            }
            C::MonitorP {
                from,
                to,
                reference,
            } => self.remote_monitor(peer, from, to, reference),
            C::DemonitorP { to, reference, .. } => self.remote_demonitor(to, &reference),
            C::MonitorPExit {
                to,
                reference,
                reason,
                ..
            } => self.remote_down(to, &reference, reason),
            C::PayloadMonitorPExit { to, reference, .. } => {
                self.remote_down(to, &reference, payload)
            }
            C::SpawnRequest {
                req_id,
                from,
                group_leader,
                mfa,
                options,
            }
            | C::SpawnRequestTt {
                req_id,
                from,
                group_leader,
                mfa,
                options,
                ..
            } => self.spawn_request_in(peer, req_id, from, group_leader, mfa, options, payload),
            C::SpawnReply {
                req_id,
                to,
                flags,
                result,
            }
            | C::SpawnReplyTt {
                req_id,
                to,
                flags,
                result,
                ..
            } => self.spawn_reply_in(req_id, to, flags, result),
            C::GroupLeader { leader, target } => self.group_leader_in(leader, target),
        }
    }

    /// A REG_SEND from a peer: to a process registered here, or dropped.
    fn reg_send_in(&self, from: Pid, name: Atom, msg: Term) {
        self.send_from(Some(from), Dest::Name(name), msg);
    }

    /// Starts the `net_kernel` process every node runs: it answers
    /// `net_adm:ping/1` (`{is_auth, Node}` calls) with `yes`, so BEAM nodes
    /// see this node as a normal one. Being a real registered process, it
    /// can be monitored, as OTP's callers do.
    pub(crate) fn start_net_kernel(&self) {
        let node = self.clone();
        let pid = self.spawn(move |mut p| async move {
            while let Ok(msg) = p.recv().await {
                if let Some((tag, caller, request)) = gen_call(&msg) {
                    let is_auth = request
                        .as_tuple()
                        .is_some_and(|t| t.first().is_some_and(|a| a.is_atom("is_auth")));
                    let reply = if is_auth { "yes" } else { "ignored" };
                    node.gen_reply(caller, tag, Term::atom(reply));
                }
            }
        });
        let _ = self.register("net_kernel", pid);
    }

    /// Replies to a `'$gen_call'` as `gen:reply/2` does: to the alias in
    /// the tag if there is one, else to the caller.
    pub(crate) fn gen_reply(&self, caller: Pid, tag: Term, reply: Term) {
        let msg = Term::Tuple(vec![tag.clone(), reply]);
        let alias = match &tag {
            Term::ImproperList(l) if l.elems.len() == 1 && l.elems[0].is_atom("alias") => {
                match &l.tail {
                    Term::Ref(r) => Some(**r),
                    _ => None,
                }
            }
            _ => None,
        };
        match alias {
            // A remote alias goes as ALIAS_SEND from the system process.
            Some(r) => self.send_from(None, Dest::Alias(r), msg),
            None => self.send_from(Some(self.system_pid()), Dest::Pid(caller), msg),
        }
    }

    fn remote_link(&self, from: Pid, to: Pid) {
        match self.lookup(to) {
            Some(entry) if entry.state().exited.is_none() => {
                entry.state().rel().links.insert(from);
            }
            _ => {
                // Linking to a dead process: the link breaks with noproc.
                let exit = ControlMessage::PayloadExit { from: to, to: from };
                self.remote(from.node, exit, Some(Cow::Owned(Term::atom("noproc"))));
            }
        }
    }

    fn remote_unlink(&self, from: Pid, to: Pid) {
        if let Some(entry) = self.lookup(to) {
            entry.state().rel().links.remove(&from);
        }
    }

    fn remote_monitor(
        &self,
        peer: Atom,
        from: Pid,
        to: ProcRef,
        reference: crate::term::Reference,
    ) {
        let (pid, by_name) = match to {
            ProcRef::Pid(p) => (Some(p), None),
            ProcRef::Name(n) => (self.whereis(n), Some(n)),
        };
        if let Some(entry) = pid.and_then(|p| self.lookup(p)) {
            let mut st = entry.state();
            if st.exited.is_none() {
                st.rel()
                    .watchers
                    .insert(reference, super::Watcher { pid: from, by_name });
                return;
            }
        }
        let down = ControlMessage::PayloadMonitorPExit {
            from: to,
            to: from,
            reference,
        };
        self.remote(peer, down, Some(Cow::Owned(Term::atom("noproc"))));
    }

    fn remote_demonitor(&self, to: ProcRef, reference: &crate::term::Reference) {
        let pid = match to {
            ProcRef::Pid(p) => Some(p),
            ProcRef::Name(n) => self.whereis(n),
        };
        if let Some(entry) = pid.and_then(|p| self.lookup(p)) {
            entry.state().rel().watchers.remove(reference);
        }
    }

    /// A monitor that `to` holds on a remote process fired.
    pub(crate) fn remote_down(&self, to: Pid, reference: &crate::term::Reference, reason: Term) {
        let Some(entry) = self.lookup(to) else { return };
        let watched = entry.state().rel().watching.remove(reference);
        let Some(watched) = watched else { return };
        entry.deliver(super::down(reference, watched.object(), reason));
    }

    /// The connection to `peer` is gone: links to its processes break
    /// with `noconnection`, monitors of them fire.
    pub(crate) fn node_down(&self, peer: Atom) {
        let entries: Vec<_> = self.read_procs().values().cloned().collect();
        let reason = Term::atom("noconnection");
        for entry in entries {
            let (links, downs) = {
                let mut st = entry.state();
                let Some(rel) = st.rel.as_mut() else {
                    continue;
                };
                let links: Vec<Pid> = rel
                    .links
                    .iter()
                    .filter(|p| p.node == peer)
                    .copied()
                    .collect();
                for l in &links {
                    rel.links.remove(l);
                }
                rel.watchers.retain(|_, w| w.pid.node != peer);
                let downs: Vec<_> = rel
                    .watching
                    .iter()
                    .filter(|(_, w)| w.node() == peer)
                    .map(|(r, _)| *r)
                    .collect();
                let downs: Vec<_> = downs
                    .into_iter()
                    .filter_map(|r| rel.watching.remove(&r).map(|w| (r, w)))
                    .collect();
                (links, downs)
            };
            for (r, w) in downs {
                entry.deliver(super::down(&r, w.object(), reason.clone()));
            }
            for l in links {
                self.exit_signal(l, entry.pid, reason.clone(), ExitKind::Link);
            }
        }
    }
}

/// `{'$gen_call', {From, Tag}, Request}` → `(Tag, From, Request)`.
pub(crate) fn gen_call(msg: &Term) -> Option<(Term, Pid, Term)> {
    let t = msg.as_tuple()?;
    let [label, from_tag, request] = t else {
        return None;
    };
    if !label.is_atom("$gen_call") {
        return None;
    }
    let [from, tag] = from_tag.as_tuple()? else {
        return None;
    };
    Some((tag.clone(), *from.as_pid()?, request.clone()))
}

impl Watched {
    fn node(&self) -> Atom {
        match self {
            Watched::Pid(p) => p.node,
            Watched::Name(_, node) => *node,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epmd::EpmdServerConfig;
    use std::time::Duration;

    async fn epmd_on(port: u16) -> EpmdServer {
        let mut config = EpmdServerConfig::with_port(port);
        config.addresses = vec![std::net::Ipv4Addr::LOCALHOST.into()];
        // The port was just freed: retry a moment if it is not yet.
        for _ in 0..50 {
            if let Ok(s) = EpmdServer::start(config.clone()).await {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no EPMD on port {port}");
    }

    fn listed(server: &EpmdServer, name: &str) -> bool {
        server.names().iter().any(|e| e.name == name)
    }

    #[tokio::test]
    async fn a_held_registration_comes_back_when_epmd_restarts_and_goes_on_unregister() {
        let first = epmd_on(0).await;
        let port = first.port();
        let client = EpmdClient::with_address("127.0.0.1", port);
        let registration = client.register("kept", 4242).await.unwrap();
        let held = HeldRegistration::keep(registration, client);
        assert!(listed(&first, "kept"));
        first.shutdown().await;
        let second = epmd_on(port).await;
        tokio::time::timeout(Duration::from_secs(10), async {
            while !listed(&second, "kept") {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("registered again with the new EPMD");
        held.unregister().await;
        tokio::time::timeout(Duration::from_secs(5), async {
            while listed(&second, "kept") {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("released on unregister");
        second.shutdown().await;
    }
}
