//! Starting a node on the network, and what a started node offers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::net::{HeldRegistration, Net, NodeEvent, Out};
use super::Node;
use crate::connection::dist_header::DecoderLimits;
use crate::connection::driver::{self, LocalNodeConfig};
use crate::connection::framing::DEFAULT_MAX_FRAME;
use crate::epmd::{self, EpmdClient, EpmdError};
use crate::flags::DistFlags;
use crate::handshake::{Cookie, CookieError, Cookies, NameError, NodeName};
use crate::term::{Atom, Term};

/// The flags a node adds to the connection layer's: what the node's
/// processes implement.
const NODE_FLAGS: DistFlags = DistFlags(
    DistFlags::DIST_MONITOR.0
        | DistFlags::DIST_MONITOR_NAME.0
        | DistFlags::SEND_SENDER.0
        | DistFlags::EXIT_PAYLOAD.0
        | DistFlags::ALIAS.0
        | DistFlags::BIG_SEQTRACE_LABELS.0
        | DistFlags::DIST_HDR_ATOM_CACHE.0
        | DistFlags::FRAGMENTS.0
        | DistFlags::SPAWN.0
        | DistFlags::UNICODE_IO.0,
);

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The node name is not valid.
    #[error("invalid node name: {0}")]
    Name(#[from] NameError),
    /// The cookie could not be had.
    #[error("cookie: {0}")]
    Cookie(#[from] CookieError),
    /// The distribution port could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// EPMD refused the name or could not be reached (nor started).
    #[error("EPMD: {0}")]
    Epmd(#[from] EpmdError),
    /// A connection to another node failed.
    #[error("connecting to {peer}: {reason}")]
    Connect {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
}

/// Options for a node; see [`Node::builder`].
#[derive(Clone, Debug)]
pub struct NodeBuilder {
    name: String,
    cookie: Option<CookieText>,
    hidden: bool,
    listen: IpAddr,
    port: u16,
    epmd_host: String,
    epmd_port: Option<u16>,
    embedded_epmd: bool,
    register: bool,
    net_ticktime: Duration,
    handshake_timeout: Duration,
    max_frame_size: usize,
    max_handshakes: usize,
    limits: DecoderLimits,
    dist_buf_busy_limit: usize,
}

/// BEAM's default distribution buffer busy limit (`+zdbbl 1024`, KiB).
pub const DEFAULT_DIST_BUF_BUSY_LIMIT: usize = 1024 * 1024;

/// The cookie as given to [`NodeBuilder::cookie`], checked when the node
/// starts; its `Debug` hides it, so a logged builder does not show it.
#[derive(Clone)]
struct CookieText(String);

impl std::fmt::Debug for CookieText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Node {
    /// Options for a node named `name`: `alex@localhost` or `alex` (short
    /// names, on this host), `alex@127.0.0.1` or `alex@host.example` (long
    /// names).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), erldist::node::NodeError> {
    /// let node = erldist::Node::builder("alex@localhost").cookie("secret_token").start().await?;
    /// # Ok(()) }
    /// ```
    pub fn builder(name: &str) -> NodeBuilder {
        NodeBuilder {
            name: name.to_owned(),
            cookie: None,
            hidden: false,
            listen: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: 0,
            epmd_host: "localhost".to_owned(),
            epmd_port: None,
            embedded_epmd: true,
            register: true,
            net_ticktime: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(7),
            max_frame_size: DEFAULT_MAX_FRAME,
            max_handshakes: driver::DEFAULT_MAX_HANDSHAKES,
            limits: DecoderLimits::default(),
            dist_buf_busy_limit: DEFAULT_DIST_BUF_BUSY_LIMIT,
        }
    }
}

impl NodeBuilder {
    /// The cookie (default: `$HOME/.erlang.cookie`, created if missing, as
    /// `erl` does).
    pub fn cookie(mut self, cookie: &str) -> NodeBuilder {
        self.cookie = Some(CookieText(cookie.to_owned()));
        self
    }

    /// A hidden node: connections to it are not part of the peers'
    /// `nodes()`, like `erl -hidden`.
    pub fn hidden(mut self, hidden: bool) -> NodeBuilder {
        self.hidden = hidden;
        self
    }

    /// The address to listen on for other nodes (default: all).
    pub fn listen(mut self, addr: IpAddr) -> NodeBuilder {
        self.listen = addr;
        self
    }

    /// The port to listen on (default: any free one, registered in EPMD).
    pub fn port(mut self, port: u16) -> NodeBuilder {
        self.port = port;
        self
    }

    /// The EPMD to register with and ask (default: `localhost` on
    /// `$ERL_EPMD_PORT` or 4369).
    pub fn epmd(mut self, host: &str, port: u16) -> NodeBuilder {
        self.epmd_host = host.to_owned();
        self.epmd_port = Some(port);
        self
    }

    /// Whether to start an EPMD in-process when none answers (default:
    /// yes). Its names go away with this process.
    pub fn embedded_epmd(mut self, on: bool) -> NodeBuilder {
        self.embedded_epmd = on;
        self
    }

    /// Whether to register the name with EPMD (default: yes). A node that
    /// does not register can still connect to others (as `erl_call` does)
    /// but nobody can find it; it needs no EPMD on its own host.
    pub fn register(mut self, on: bool) -> NodeBuilder {
        self.register = on;
        self
    }

    /// The net tick time (default 60 s, as OTP): a peer silent this long
    /// is down.
    pub fn net_ticktime(mut self, t: Duration) -> NodeBuilder {
        self.net_ticktime = t;
        self
    }

    /// The largest frame a peer may send, in bytes (default 128 MiB,
    /// [`DEFAULT_MAX_FRAME`]; OTP has no limit but memory). A peer that
    /// announces a larger one is disconnected. Messages larger than this
    /// can still arrive in fragments, up to
    /// [`max_message_size`](Self::max_message_size).
    ///
    /// It also bounds the frames this node sends to peers that take
    /// fragments: a message goes in one frame up to 2 MiB, and in
    /// fragments of 256 KiB beyond (both at most half this limit, so that
    /// nodes configured alike accept each other's frames). BEAM cuts at
    /// 64 KiB; a real node takes a 1 MiB binary faster in one frame, while
    /// fragments of a huge message let other processes' small messages
    /// through between them.
    pub fn max_frame_size(mut self, bytes: usize) -> NodeBuilder {
        self.max_frame_size = bytes;
        self
    }

    /// The largest message a peer may send in fragments, in bytes
    /// (default 128 MiB); with [`max_buffered_fragments`](Self::max_buffered_fragments)
    /// and [`max_pending_fragments`](Self::max_pending_fragments) it
    /// bounds what a peer can make the node buffer.
    pub fn max_message_size(mut self, bytes: usize) -> NodeBuilder {
        self.limits.reassembly.max_message_size = bytes;
        self
    }

    /// How many fragmented messages one peer may have in flight at once
    /// (default 1024).
    pub fn max_pending_fragments(mut self, n: usize) -> NodeBuilder {
        self.limits.reassembly.max_pending = n;
        self
    }

    /// How many bytes of incomplete fragmented messages one peer may make
    /// the node hold (default 512 MiB), and how much room their buffers
    /// (sized from each message's first fragment) may take at first.
    pub fn max_buffered_fragments(mut self, bytes: usize) -> NodeBuilder {
        self.limits.reassembly.max_buffered = bytes;
        self
    }

    /// The deepest nesting of tuples, lists, maps and funs accepted in a
    /// term from a peer (default 4096). Dropping a term takes stack in
    /// proportion to its depth, and a 2 MiB stack holds about twice the
    /// default in a debug build (see
    /// [`DecodeOptions::max_depth`](crate::term::DecodeOptions::max_depth)):
    /// a peer could make a node with a much higher limit overflow a
    /// stack, and abort.
    pub fn max_nesting_depth(mut self, depth: usize) -> NodeBuilder {
        self.limits.max_depth = depth;
        self
    }

    /// How many atoms not yet known to this process one connection may
    /// create (default 65,536,
    /// [`DEFAULT_MAX_NEW_ATOMS`](crate::connection::dist_header::DEFAULT_MAX_NEW_ATOMS)). Atoms live as
    /// long as the process in one table shared by every connection (at
    /// most [`ATOM_TABLE_LIMIT`](crate::term::ATOM_TABLE_LIMIT)); this
    /// keeps one peer from filling it.
    pub fn max_new_atoms(mut self, n: usize) -> NodeBuilder {
        self.limits.max_new_atoms = n;
        self
    }

    /// How many incoming handshakes run at once (default 256; OTP has no
    /// limit). Connections accepted beyond that are closed at once, with
    /// a logged warning: a flood of connections that never finish their
    /// handshake cannot hold more than this many sockets and tasks.
    pub fn max_handshakes(mut self, n: usize) -> NodeBuilder {
        self.max_handshakes = n;
        self
    }

    /// The distribution buffer busy limit, in bytes (default 1 MiB,
    /// [`DEFAULT_DIST_BUF_BUSY_LIMIT`], as BEAM's `+zdbbl`): once the
    /// messages queued for one peer weigh this much (about their encoded
    /// bytes, not counting the up to 2 MiB handed to the connection's
    /// writer and what its socket holds), the connection is *busy*.
    /// [`Process::send_paced`](crate::Process::send_paced) then waits
    /// until it is not, as BEAM suspends a process sending on a busy
    /// connection, and [`Process::send_nosuspend`](crate::Process::send_nosuspend)
    /// refuses to queue. [`Process::send`](crate::Process::send) queues
    /// whatever the size of the queue. A limit of 0 is taken as 1: an
    /// empty queue is never busy.
    pub fn dist_buf_busy_limit(mut self, bytes: usize) -> NodeBuilder {
        self.dist_buf_busy_limit = bytes;
        self
    }

    /// The limit for each handshake step (default 7 s, as OTP).
    pub fn handshake_timeout(mut self, t: Duration) -> NodeBuilder {
        self.handshake_timeout = t;
        self
    }

    /// Starts the node: listens, registers with EPMD (starting the
    /// embedded one if needed and allowed), and accepts connections.
    ///
    /// # Errors
    /// [`NodeError`] for a bad name, no cookie, no port, or EPMD refusing
    /// the name.
    pub async fn start(self) -> Result<Node, NodeError> {
        let name = NodeName::parse(&self.name)?;
        let cookie = match &self.cookie {
            Some(CookieText(c)) => Cookie::new(c)?,
            None => Cookie::from_default_file()?,
        };
        let addr = SocketAddr::new(self.listen, self.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| NodeError::Listen { addr, source })?;
        let port = listener
            .local_addr()
            .map_err(|source| NodeError::Listen { addr, source })?
            .port();
        let epmd_port = self.epmd_port.unwrap_or_else(epmd::default_port);
        let client = EpmdClient::with_address(self.epmd_host.clone(), epmd_port);
        let (registration, server, creation) = if self.register {
            let (r, server) =
                epmd::register_or_embed(&client, name.alive(), port, self.embedded_epmd).await?;
            let creation = r.creation();
            (Some(r), server, creation)
        } else {
            (None, None, unregistered_creation())
        };
        let mut config =
            LocalNodeConfig::new(name.clone(), creation, Cookies::new(cookie)).hidden(self.hidden);
        config.flags |= NODE_FLAGS;
        config.net_ticktime = self.net_ticktime;
        config.setup_timeout = self.handshake_timeout;
        config.max_frame_size = self.max_frame_size;
        config.max_handshakes = self.max_handshakes;
        config.decoder_limits = self.limits;
        config.inline = true;
        config.epmd = EpmdClient::new().port(epmd_port);
        let net = Arc::new(Net::new(config.clone(), self.dist_buf_busy_limit));
        *net.registration.lock().unwrap_or_else(|e| e.into_inner()) =
            registration.map(|r| HeldRegistration::keep(r, client));
        *net.embedded_epmd.lock().unwrap_or_else(|e| e.into_inner()) = server;
        let node = Node::build(Atom::from(name.as_str()), creation, Some(net.clone()));
        node.start_net_kernel();
        let (up_tx, mut up_rx) = mpsc::channel::<driver::Connection>(16);
        let accept_net = net.clone();
        tokio::spawn(async move {
            driver::serve(listener, config, up_tx, async move {
                accept_net.shutdown.notified().await
            })
            .await;
        });
        let weak = Arc::downgrade(&node.inner);
        tokio::spawn(async move {
            while let Some(conn) = up_rx.recv().await {
                let Some(inner) = weak.upgrade() else { break };
                let node = Node { inner };
                let peer = Atom::from(conn.peer().as_str());
                if let Some(net) = node.net() {
                    net.route(&node, peer, Out::Adopt(conn));
                }
            }
        });
        Ok(node)
    }
}

/// A creation for a node that EPMD does not number: from the clock, never
/// one of the small values OTP reserves.
fn unregistered_creation() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32 ^ d.subsec_nanos())
        .unwrap_or(4);
    t.max(4)
}

impl Node {
    /// The nodes this node is connected to, visible ones (`nodes()`).
    pub fn nodes(&self) -> Vec<Atom> {
        self.net().map(|n| n.nodes(true)).unwrap_or_default()
    }

    /// The hidden nodes this node is connected to (`nodes(hidden)`).
    pub fn hidden_nodes(&self) -> Vec<Atom> {
        self.net().map(|n| n.nodes(false)).unwrap_or_default()
    }

    /// Connects to `peer` now (`net_kernel:connect_node/1`); sending to a
    /// node connects on demand anyway.
    ///
    /// # Errors
    /// [`NodeError::Connect`] with the reason (not registered, refused,
    /// wrong cookie, ...).
    pub async fn connect(&self, peer: &str) -> Result<(), NodeError> {
        let fail = |reason: &str| NodeError::Connect {
            peer: peer.to_owned(),
            reason: reason.to_owned(),
        };
        let net = self
            .net()
            .ok_or_else(|| fail("this node is not on the network"))?;
        let peer_atom = Atom::from(peer);
        if net.is_up(peer_atom) {
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        net.route(self, peer_atom, Out::Waiter(tx));
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(fail(&reason)),
            Err(_) => Err(fail("connection attempt abandoned")),
        }
    }

    /// Closes the connection to `peer` (`erlang:disconnect_node/1`):
    /// links to its processes break with `noconnection`. Returns once the
    /// connection is gone (at most a few seconds), so that a later send
    /// connects anew, as after `disconnect_node/1` returns.
    pub async fn disconnect(&self, peer: &str) {
        let Some(net) = self.net() else { return };
        let name = Atom::from(peer);
        net.disconnect(name);
        let node_name = NodeName::from_peer(peer).ok();
        for _ in 0..300 {
            let table_has = node_name
                .as_ref()
                .is_some_and(|n| net.config.table.get(n).is_some());
            if !net.has_peer(name) && !table_has {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A stream of node up/down events (`net_kernel:monitor_nodes(true)`).
    pub fn monitor_nodes(&self) -> broadcast::Receiver<NodeEvent> {
        match self.net() {
            Some(n) => n.events.subscribe(),
            None => broadcast::channel(1).1,
        }
    }

    /// Whether `peer` answers (`net_adm:ping/1`: `true` for pong).
    pub async fn ping(&self, peer: &str) -> bool {
        let mut me = self.process();
        let tag = Term::Ref(Box::new(self.make_ref()));
        let call = Term::Tuple(vec![
            Term::atom("$gen_call"),
            Term::Tuple(vec![Term::Pid(me.pid()), tag.clone()]),
            Term::Tuple(vec![Term::atom("is_auth"), Term::Atom(self.name())]),
        ]);
        if self.connect(peer).await.is_err() {
            return false;
        }
        me.send((Atom::from("net_kernel"), Atom::from(peer)), call);
        let reply = me
            .recv_match_timeout(Duration::from_secs(10), |m| {
                m.as_tuple()
                    .is_some_and(|t| t.len() == 2 && t[0].exact_eq(&tag))
            })
            .await;
        matches!(reply, Ok(Some(t)) if t.as_tuple().is_some_and(|t| t[1].is_atom("yes")))
    }

    /// Stops the node on the network: closes every connection (the peers'
    /// links to its processes break with `noconnection`), stops accepting,
    /// and unregisters from EPMD.
    pub async fn shutdown(&self) {
        let Some(net) = self.net() else { return };
        net.shutdown.notify_waiters();
        net.shutdown.notify_one();
        net.disconnect_all();
        let registration = net
            .registration
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(r) = registration {
            r.unregister().await;
        }
        let server = net
            .embedded_epmd
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(s) = server {
            s.shutdown().await;
        }
        // Let the peers' tasks write their last frames and close.
        for _ in 0..50 {
            if net.nodes(true).is_empty() && net.nodes(false).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
