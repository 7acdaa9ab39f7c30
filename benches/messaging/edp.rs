//! The `edp=` figures of `benches/messaging.rs`: the same scenarios run by
//! the `edp_node` crate (edp-rs, the most complete other Rust
//! implementation of a node), against the same real node A.
//!
//! What the bench has to provide for it, and why:
//!
//! - **An EPMD on port 4369.** edp_node looks nodes up and registers only
//!   through `EpmdClient::new("localhost")`, whose port is fixed at 4369
//!   (`Node::start` and `Connection::connect` take no EPMD port, and
//!   `ERL_EPMD_PORT` is not read), while the bench's erl nodes register
//!   with a private `epmd` on a free port. So the bench uses the EPMD on
//!   4369 if one runs, else starts erldist's embedded one there (loopback
//!   only, for the bench's lifetime), and registers A's name in it with
//!   A's real distribution port (the registration is held open by the
//!   bench). edp then finds A there and connects to it directly.
//! - **OTP 25.0-25.2 accept its handshake.** edp_node sends the
//!   pre-OTP-23 `send_name` (`'n'`); OTP 25.0 to 25.2 (this machine has
//!   25.2.3) refuse it, OTP 25.3 accepts it again. The bench loads into
//!   node A (only) a `dist_util` compiled from the installed OTP's own
//!   source with that acceptance added back (see [`dist_util_patch`]).
//! - **A keep-alive.** An edp connection reads with a 10 s timeout and
//!   drops the connection when it expires, while BEAM sends a tick only
//!   after 15 s of silence (`net_ticktime` 60); edp sends no ticks either.
//!   A connection that only sends (the `send_*` scenarios) or sits idle
//!   between scenarios would be dropped, so a task round-trips one small
//!   message through A's echo every 3 s (and reconnects if edp dropped the
//!   connection anyway).
//! - **A mailbox to wait on.** edp processes are callbacks
//!   (`Process::handle_message`); there is no `receive` to await. The
//!   bench's edp "process" is one that forwards each message to a channel
//!   the bench awaits (one more hop than erldist's `Process::recv`).
//!
//! Every edp wait is bounded by a timeout, so a misbehaving edp gives
//! `edp=failed` with the reason instead of hanging the bench.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use edp_node::{ExternalPid, Message, Node, OwnedTerm, Process};
use erldist::epmd::{EpmdClient, EpmdServer, EpmdServerConfig, Registration};
use erldist::testing::unique_name;
use erldist::Term;
use tokio::sync::mpsc;

/// The patch for A's `dist_util` (see [`dist_util_patch`]): the clause
/// added to `recv_name/1`, the line replaced in
/// `handshake_other_started/1`, and the functions appended.
const RECV_NAME_NEW: &str =
    "        {ok, [$N | _] = Data} ->\n            recv_name_new(HSData, Data);\n";
const RECV_NAME_OLD: &str = "        {ok, [$n, _, _, F3, F2, F1, F0 | Name]} ->\n            erldist_bench_recv_name_old(HSData, <<F3, F2, F1, F0>>, Name);\n";
const NO_COMPLEMENT: &str = "    HSData3 = HSData2,\n";
const COMPLEMENT: &str = "    HSData3 = erldist_bench_recv_complement(HSData2),\n";
const APPENDED: &str = r#"
%% Added by erldist's messaging bench (benches/messaging/edp.rs): the
%% pre-OTP-23 send_name ('n') followed by a complement ('c'), which OTP
%% 25.0 to 25.2 refuse and OTP 25.3 accepts again; edp_node sends it.
erldist_bench_recv_name_old(HSData, <<Flags:32>>, Name) ->
    case is_name_ok(Name, Flags) of
        true ->
            check_allowed(HSData, Name),
            put(erldist_bench_complement, true),
            {Flags, list_to_atom(Name), undefined};
        false ->
            ?shutdown(Name)
    end.

erldist_bench_recv_complement(#hs_data{socket = Socket, f_recv = Recv,
                                       other_flags = Flags0} = HSData) ->
    case erase(erldist_bench_complement) of
        true ->
            case Recv(Socket, 0, infinity) of
                {ok, [$c, F7, F6, F5, F4, Cr3, Cr2, Cr1, Cr0]} ->
                    <<FlagsHigh:32, Creation:32>> =
                        <<F7, F6, F5, F4, Cr3, Cr2, Cr1, Cr0>>,
                    HSData#hs_data{other_flags = Flags0 bor (FlagsHigh bsl 32),
                                   other_creation = Creation};
                _ ->
                    ?shutdown(no_complement)
            end;
        _ ->
            HSData
    end.
"#;

/// edp_node 0.16 opens its handshake with the pre-OTP-23 `send_name`
/// (`'n'`, then a complement `'c'` with the high flags and the creation).
/// OTP 25.0 to 25.2 accept only the `'N'` form and close the connection;
/// OTP 25.3 accepts `'n'` again. When `kernel_dir`'s `dist_util.erl` lacks
/// it, this writes that module with the two clauses added (nothing else
/// changes: other handshakes take the same path as before) into `out_dir`
/// and compiles it; the bench loads it into node A only, before A makes
/// any connection. Returns the module's path without `.beam`, or `None`
/// when OTP accepts `'n'` already.
pub fn dist_util_patch(
    kernel_dir: &str,
    out_dir: &std::path::Path,
) -> Result<Option<String>, String> {
    let src_path = format!("{kernel_dir}/src/dist_util.erl");
    let src = std::fs::read_to_string(&src_path).map_err(|e| format!("read {src_path}: {e}"))?;
    if src.contains("{ok, [$n | _] = Data}") {
        return Ok(None);
    }
    if src.matches(RECV_NAME_NEW).count() != 1 || src.matches(NO_COMPLEMENT).count() != 1 {
        return Err(format!(
            "{src_path} is not the OTP 25.0-25.2 dist_util the bench knows how to patch"
        ));
    }
    let patched = src
        .replace(RECV_NAME_NEW, &format!("{RECV_NAME_NEW}{RECV_NAME_OLD}"))
        .replace(NO_COMPLEMENT, COMPLEMENT)
        + APPENDED;
    let dir = out_dir.join("dist_util_for_edp");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = dir.join("dist_util.erl");
    std::fs::write(&file, patched).map_err(|e| format!("{}: {e}", file.display()))?;
    let ok = std::process::Command::new("erlc")
        .arg("-I")
        .arg(format!("{kernel_dir}/include"))
        .arg("-o")
        .arg(&dir)
        .arg(&file)
        .status()
        .map_err(|e| format!("erlc: {e}"))?
        .success();
    if !ok {
        return Err("erlc of the patched dist_util failed".into());
    }
    let beam = dir.join("dist_util");
    Ok(Some(beam.to_str().ok_or("non-utf-8 temp dir")?.to_owned()))
}

/// The only EPMD port edp_node can use.
pub const EPMD_PORT: u16 = 4369;

/// The longest an edp run may take before it counts as failed.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest a single edp step (connect, start, one reply) may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// edp's figures for one scenario.
pub enum Runs {
    /// One figure per run (all runs succeeded).
    Ok(Vec<f64>),
    /// edp cannot run the scenario; the reason.
    NotApplicable(&'static str),
    /// A run failed; the figures of the runs before it and the reason.
    Failed(Vec<f64>, String),
}

impl Runs {
    /// Adds the result of one run; after a failure, later runs are skipped.
    pub fn push(&mut self, r: Result<f64, String>) {
        match (&mut *self, r) {
            (Runs::Ok(v), Ok(x)) => v.push(x),
            (Runs::Ok(v), Err(e)) => *self = Runs::Failed(std::mem::take(v), e),
            _ => {}
        }
    }

    /// Whether later runs should still be made.
    pub fn live(&self) -> bool {
        matches!(self, Runs::Ok(_))
    }
}

/// edp's node in the bench, connected to A.
pub struct Edp {
    pub node: Arc<Node>,
    pub cookie: String,
    /// A's full node name.
    pub a: String,
    /// A's echo process (`bench_peer:echo/0`).
    pub echo: ExternalPid,
    keepalive: tokio::task::JoinHandle<()>,
    _alias: Registration,
    // Dropped last: the alias registration above lives in it.
    epmd: Option<EpmdServer>,
}

/// erldist term -> erltf term (through ETF).
pub fn owned(t: &Term) -> OwnedTerm {
    let bytes = t.encode().expect("erldist encodes");
    erltf::decode(&bytes).expect("erltf decodes erldist's ETF")
}

/// erldist pid -> edp pid.
pub fn edp_pid(p: erldist::Pid) -> ExternalPid {
    match owned(&Term::Pid(p)) {
        OwnedTerm::Pid(p) => p,
        other => panic!("not a pid: {other:?}"),
    }
}

/// An Erlang expression for an edp term: binary_to_term of its bytes.
pub fn erl_expr(t: &OwnedTerm) -> String {
    let bytes = erltf::encode(t).expect("erltf encodes");
    let list: Vec<String> = bytes.iter().map(u8::to_string).collect();
    format!("binary_to_term(<<{}>>)", list.join(","))
}

fn atom(s: &str) -> OwnedTerm {
    OwnedTerm::atom(s)
}

async fn bounded<T, E: std::fmt::Display>(
    what: &str,
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {} s", limit.as_secs())),
    }
}

/// Forwards every message it gets to a channel: the bench's edp mailbox.
struct Forward(mpsc::UnboundedSender<OwnedTerm>);

impl Process for Forward {
    async fn handle_message(&mut self, msg: Message) -> edp_node::Result<()> {
        if let Message::Regular { body, .. } = msg {
            let _ = self.0.send(body);
        }
        Ok(())
    }
}

/// An edp process whose messages the bench receives.
pub struct Mailbox {
    pub pid: ExternalPid,
    rx: mpsc::UnboundedReceiver<OwnedTerm>,
}

impl Mailbox {
    pub async fn new(node: &Node) -> Result<Mailbox, String> {
        let (tx, rx) = mpsc::unbounded_channel();
        let pid = node
            .spawn(Forward(tx))
            .await
            .map_err(|e| format!("edp spawn: {e}"))?;
        Ok(Mailbox { pid, rx })
    }

    /// The next message, within `limit`.
    pub async fn recv(&mut self, limit: Duration) -> Result<OwnedTerm, String> {
        match tokio::time::timeout(limit, self.rx.recv()).await {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err("edp mailbox closed".into()),
            Err(_) => Err(format!("no message within {} s", limit.as_secs())),
        }
    }

    /// Waits for `{Tag, X}` (other messages are dropped) and returns X.
    pub async fn recv_tagged(&mut self, tag: &str, limit: Duration) -> Result<OwnedTerm, String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self
                .recv(left)
                .await
                .map_err(|e| format!("waiting for {{{tag}, _}}: {e}"))?;
            if let OwnedTerm::Tuple(mut v) = m {
                if v.len() == 2 && v[0].is_atom_with_name(tag) {
                    return Ok(v.swap_remove(1));
                }
            }
        }
    }
}

/// A started edp node (`Node::start` registers it with the EPMD on 4369).
pub async fn start_node(prefix: &str, cookie: &str) -> Result<Node, String> {
    let mut node = Node::new(format!("{}@localhost", unique_name(prefix)), cookie);
    bounded("edp Node::start", STEP_TIMEOUT, node.start(0)).await?;
    Ok(node)
}

/// The EPMD on 4369 (erldist's embedded one on loopback if none runs) and
/// A's name registered in it with A's port from the bench's private EPMD.
async fn epmd_for_edp(
    private_epmd: u16,
    a: &str,
) -> Result<(Option<EpmdServer>, Registration), String> {
    let probe = EpmdClient::new().port(EPMD_PORT);
    let server = if probe.is_running().await {
        None
    } else {
        let config = EpmdServerConfig {
            addresses: vec![std::net::Ipv4Addr::LOCALHOST.into()],
            ..EpmdServerConfig::with_port(EPMD_PORT)
        };
        Some(
            EpmdServer::start(config)
                .await
                .map_err(|e| format!("an EPMD on port {EPMD_PORT} for edp: {e}"))?,
        )
    };
    let alive = a.split('@').next().unwrap_or(a);
    let info = EpmdClient::new()
        .port(private_epmd)
        .port_please(alive)
        .await
        .map_err(|e| format!("A's port: {e}"))?;
    let alias = probe
        .register(alive, info.port)
        .await
        .map_err(|e| format!("A's name in the EPMD on {EPMD_PORT}: {e}"))?;
    Ok((server, alias))
}

impl Edp {
    /// Sets edp up (see the module docs) and connects its node to A.
    pub async fn setup(
        private_epmd: u16,
        a: &str,
        echo: erldist::Pid,
        cookie: &str,
    ) -> Result<Edp, String> {
        let (epmd, alias) = epmd_for_edp(private_epmd, a).await?;
        let node = start_node("bench_edp", cookie).await?;
        bounded("edp connect to A", STEP_TIMEOUT, node.connect(a)).await?;
        let node = Arc::new(node);
        let echo = edp_pid(echo);
        let keepalive = tokio::spawn(keepalive(Arc::clone(&node), a.to_owned(), echo.clone()));
        Ok(Edp {
            node,
            cookie: cookie.to_owned(),
            a: a.to_owned(),
            echo,
            keepalive,
            _alias: alias,
            epmd,
        })
    }

    /// Reconnects to A if edp dropped the connection.
    pub async fn ensure_connected(&self) -> Result<(), String> {
        bounded("edp connect to A", STEP_TIMEOUT, self.node.connect(&self.a)).await
    }

    pub async fn shutdown(self) {
        self.keepalive.abort();
        // Dropping the connections closes their sockets.
        self.node.connections().clear();
        if let Some(server) = self.epmd {
            server.shutdown().await;
        }
    }
}

/// Every 3 s, one round trip through A's echo (see the module docs).
async fn keepalive(node: Arc<Node>, a: String, echo: ExternalPid) {
    let Ok(mut me) = Mailbox::new(&node).await else {
        return;
    };
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let msg = OwnedTerm::tuple(vec![OwnedTerm::Pid(me.pid.clone()), atom("keepalive")]);
        if node.send(&echo, msg).await.is_err() {
            let _ = tokio::time::timeout(STEP_TIMEOUT, node.connect(a.as_str())).await;
            continue;
        }
        let _ = me.recv(STEP_TIMEOUT).await;
    }
}

/// Streams `n` messages (cycling through `msgs`) to `sink` with the sink
/// protocol, `me` sending `start` and then `senders` tasks at once (or `me`
/// alone, for one) the messages, and waits for its `done`; bounded by
/// [`RUN_TIMEOUT`].
pub async fn stream(
    node: &Arc<Node>,
    me: &mut Mailbox,
    sink: &ExternalPid,
    n: usize,
    msgs: &[OwnedTerm],
    senders: usize,
) -> Result<Duration, String> {
    let run = async {
        let t0 = Instant::now();
        let start = OwnedTerm::tuple(vec![atom("start"), OwnedTerm::Pid(me.pid.clone())]);
        node.send(sink, start)
            .await
            .map_err(|e| format!("edp send: {e}"))?;
        if senders == 1 {
            for i in 0..n {
                node.send(sink, msgs[i % msgs.len()].clone())
                    .await
                    .map_err(|e| format!("edp send (message {i}): {e}"))?;
            }
        } else {
            let tasks: Vec<_> = (0..senders)
                .map(|_| {
                    let (node, sink, msgs) = (Arc::clone(node), sink.clone(), msgs.to_vec());
                    tokio::spawn(async move {
                        for i in 0..n / senders {
                            node.send(&sink, msgs[i % msgs.len()].clone())
                                .await
                                .map_err(|e| format!("edp send (message {i}): {e}"))?;
                        }
                        Ok::<(), String>(())
                    })
                })
                .collect();
            for t in tasks {
                t.await.map_err(|e| format!("edp sender: {e}"))??;
            }
        }
        me.recv_tagged("done", RUN_TIMEOUT).await?;
        Ok(t0.elapsed())
    };
    match tokio::time::timeout(RUN_TIMEOUT, run).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "stream of {n} messages not done within {} s",
            RUN_TIMEOUT.as_secs()
        )),
    }
}

/// A reusable edp sink (the protocol of `bench_peer:sink/1`), counting in
/// its own `handle_message`.
struct Sink {
    node: Arc<Node>,
    me: Arc<OnceLock<ExternalPid>>,
    n: usize,
    left: usize,
    from: Option<ExternalPid>,
}

impl Process for Sink {
    async fn handle_message(&mut self, msg: Message) -> edp_node::Result<()> {
        let Message::Regular { body, .. } = msg else {
            return Ok(());
        };
        if self.from.is_none() {
            if let OwnedTerm::Tuple(v) = &body {
                if let [t, OwnedTerm::Pid(from)] = v.as_slice() {
                    if t.is_atom_with_name("start") {
                        self.from = Some(from.clone());
                        self.left = self.n;
                    }
                }
            }
        } else {
            self.left -= 1;
        }
        if self.left == 0 {
            if let (Some(from), Some(me)) = (self.from.take(), self.me.get()) {
                let done = OwnedTerm::tuple(vec![atom("done"), OwnedTerm::Pid(me.clone())]);
                self.node.send(&from, done).await?;
            }
        }
        Ok(())
    }
}

/// Spawns an edp sink for runs of `n` messages.
pub async fn sink(node: &Arc<Node>, n: usize) -> Result<ExternalPid, String> {
    let me = Arc::new(OnceLock::new());
    let pid = node
        .spawn(Sink {
            node: Arc::clone(node),
            me: Arc::clone(&me),
            n,
            left: n,
            from: None,
        })
        .await
        .map_err(|e| format!("edp spawn: {e}"))?;
    let _ = me.set(pid.clone());
    Ok(pid)
}

/// One round trip through `echo` (`{Self, ping}` -> `ping`).
pub async fn rtt(node: &Node, me: &mut Mailbox, echo: &ExternalPid) -> Result<Duration, String> {
    let t0 = Instant::now();
    let msg = OwnedTerm::tuple(vec![OwnedTerm::Pid(me.pid.clone()), atom("ping")]);
    node.send(echo, msg)
        .await
        .map_err(|e| format!("edp send: {e}"))?;
    loop {
        let m = me.recv(STEP_TIMEOUT).await?;
        if m.is_atom_with_name("ping") {
            return Ok(t0.elapsed());
        }
    }
}

/// `connect`: a fresh edp node (started, i.e. registered, before the clock
/// starts), then the time to connect to A (EPMD lookup, handshake) and get
/// a first reply (one round trip through A's echo). The node's connection
/// is closed afterwards.
pub async fn connect_once(edp: &Edp) -> Result<Duration, String> {
    let node = start_node("bench_edp_conn", &edp.cookie).await?;
    let mut me = Mailbox::new(&node).await?;
    // Idle for as long as erldist and BEAM are before their clocks start
    // (after their disconnect), so that every side starts as cold.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    let r = async {
        bounded("edp connect to A", STEP_TIMEOUT, node.connect(&edp.a)).await?;
        rtt(&node, &mut me, &edp.echo).await?;
        Ok(t0.elapsed())
    };
    let r = tokio::time::timeout(RUN_TIMEOUT, r)
        .await
        .unwrap_or_else(|_| Err(format!("not done within {} s", RUN_TIMEOUT.as_secs())));
    node.connections().clear();
    r
}

/// In the memory child: RSS growth over spawning `n` idle edp processes
/// (each waiting on its mailbox), per process.
pub async fn memory_child(n: usize, rss: fn() -> u64) -> Result<u64, String> {
    struct Idle;
    impl Process for Idle {
        async fn handle_message(&mut self, _msg: Message) -> edp_node::Result<()> {
            Ok(())
        }
    }
    let node = start_node("bench_edp_mem", "bench_memory").await?;
    for _ in 0..100 {
        node.spawn(Idle).await.map_err(|e| format!("spawn: {e}"))?;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = rss();
    let mut pids = Vec::with_capacity(n);
    for _ in 0..n {
        pids.push(node.spawn(Idle).await.map_err(|e| format!("spawn: {e}"))?);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss();
    let pid_list = (pids.capacity() * std::mem::size_of::<ExternalPid>()) as u64;
    Ok(after.saturating_sub(before).saturating_sub(pid_list) / n as u64)
}
