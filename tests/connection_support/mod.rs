//! Shared helpers for the connection tests: an erldist node listening and
//! registered with a private EPMD, and a minimal `net_kernel` that answers
//! `net_adm:ping/1`.
#![allow(dead_code)]

use std::time::Duration;

use erldist::connection::driver::{
    serve, Connection, ConnectionEvent, ConnectionHandle, DownReason, LocalNodeConfig,
};
use erldist::connection::framing::{decode_pass_through, encode_pass_through};
use erldist::epmd::{EpmdClient, Registration};
use erldist::handshake::{Cookie, NodeName};
use erldist::{Atom, Pid, Term};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// An erldist node: a listener registered with EPMD, serving handshakes.
pub struct RustNode {
    pub config: LocalNodeConfig,
    pub port: u16,
    pub incoming: mpsc::Receiver<Connection>,
    _registration: Registration,
    _stop: oneshot::Sender<()>,
}

impl RustNode {
    /// Starts `<unique prefix>@host` with `cookie`, registered with the EPMD
    /// on `epmd_port`, hidden or visible, with a tick time.
    pub async fn start(
        prefix: &str,
        host: &str,
        epmd_port: u16,
        cookie: &str,
        hidden: bool,
        ticktime: Duration,
    ) -> RustNode {
        let alive = erldist::testing::unique_name(prefix);
        let name = NodeName::parse(&format!("{alive}@{host}")).unwrap();
        let listener = TcpListener::bind("0.0.0.0:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let epmd = EpmdClient::with_address("127.0.0.1", epmd_port);
        let registration = epmd.register(&alive, port).await.unwrap();
        let mut config =
            LocalNodeConfig::new(name, registration.creation(), Cookie::new(cookie).unwrap())
                .hidden(hidden);
        config.epmd = epmd;
        config.net_ticktime = ticktime;
        config.setup_timeout = Duration::from_secs(5);
        let (up_tx, incoming) = mpsc::channel(16);
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, config.clone(), up_tx, async move {
            let _ = stopped.await;
        }));
        RustNode {
            config,
            port,
            incoming,
            _registration: registration,
            _stop: stop,
        }
    }

    pub fn name(&self) -> String {
        match &self.config.name {
            erldist::handshake::LocalName::Static(n) => n.to_string(),
            erldist::handshake::LocalName::Dynamic { host } => host.clone(),
        }
    }

    /// A pid of this node, for sending.
    pub fn pid(&self, id: u32) -> Pid {
        Pid {
            node: Atom::new(&self.name()),
            id,
            serial: 0,
            creation: self.config.creation,
        }
    }
}

/// What the minimal net_kernel saw: control and message of every frame.
pub type Seen = mpsc::UnboundedReceiver<(Term, Option<Term>)>;

/// Runs a connection: answers `is_auth` calls (what `net_adm:ping/1`
/// sends) with `yes` through SEND, and forwards every decoded frame.
/// Returns the handle, what was seen, and the down reason when it ends.
pub fn run_net_kernel(conn: Connection) -> (ConnectionHandle, Seen, oneshot::Receiver<DownReason>) {
    let (handle, mut events) = conn.into_parts();
    let (seen_tx, seen) = mpsc::unbounded_channel();
    let (down_tx, down) = oneshot::channel();
    let h = handle.clone();
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            match ev {
                ConnectionEvent::Frame(f) => {
                    let Ok((control, msg)) = decode_pass_through(f) else {
                        continue;
                    };
                    if let Some(reply) = is_auth_reply(&control, msg.as_ref()) {
                        let _ = h.send_frame(reply).await;
                    }
                    let _ = seen_tx.send((control, msg));
                }
                ConnectionEvent::Down(r) => {
                    let _ = down_tx.send(r);
                    break;
                }
            }
        }
    });
    (handle, seen, down)
}

/// `{6, From, '', net_kernel}` + `{'$gen_call', {From, Tag}, {is_auth, _}}`
/// → `{2, '', From}` + `{Tag, yes}`.
fn is_auth_reply(control: &Term, msg: Option<&Term>) -> Option<bytes::Bytes> {
    let c = control.as_tuple()?;
    if c.len() != 4 || c[0].as_i64() != Some(6) || !c[3].is_atom("net_kernel") {
        return None;
    }
    let m = msg?.as_tuple()?;
    if m.len() != 3 || !m[0].is_atom("$gen_call") {
        return None;
    }
    let from = m[1].as_tuple()?;
    let req = m[2].as_tuple()?;
    if from.len() != 2 || req.first().map(|r| r.is_atom("is_auth")) != Some(true) {
        return None;
    }
    let send = Term::tuple(vec![Term::Int(2), Term::atom(""), from[0].clone()]);
    let reply = Term::tuple(vec![from[1].clone(), Term::atom("yes")]);
    encode_pass_through(&send, Some(&reply)).ok()
}

/// `REG_SEND {6, From, '', To}` + msg.
pub fn reg_send(from: &Pid, to: &str, msg: &Term) -> bytes::Bytes {
    let control = Term::tuple(vec![
        Term::Int(6),
        Term::Pid(*from),
        Term::atom(""),
        Term::atom(to),
    ]);
    encode_pass_through(&control, Some(msg)).unwrap()
}

/// Blocking eval on a real node from async code.
pub fn eval(
    node: &std::sync::Arc<std::sync::Mutex<erldist::testing::ErlNode>>,
    expr: &str,
) -> impl std::future::Future<Output = String> {
    let node = node.clone();
    let expr = expr.to_owned();
    async move {
        tokio::task::spawn_blocking(move || node.lock().unwrap().eval(&expr))
            .await
            .unwrap()
            .unwrap_or_else(|e| format!("EVAL ERROR: {e}"))
    }
}
