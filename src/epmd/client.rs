//! An EPMD client on tokio: register, look up, list, as OTP's `erl_epmd`
//! and the `epmd` command line do.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::protocol::{
    Alive2Request, Alive2Response, DumpResponse, KillResponse, NamesResponse, NodeInfo,
    Port2Response, ProtocolError, Request, StopResponse, MAX_NAME_BYTES, MAX_NAME_CHARS,
};

/// Most bytes the client accepts in a `NAMES`/`DUMP` reply, so a hostile
/// peer cannot grow our memory without bound (the real EPMD would need
/// tens of thousands of nodes to get near this).
pub const MAX_LIST_REPLY: usize = 16 * 1024 * 1024;

/// Default time limit for one EPMD operation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What can go wrong talking to EPMD.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EpmdError {
    /// Nothing accepts connections there: no EPMD runs at that address.
    #[error("no EPMD at {addr}: {source}")]
    Unreachable {
        /// `host:port`.
        addr: String,
        /// The last connection error.
        #[source]
        source: io::Error,
    },
    /// The host name does not resolve.
    #[error("cannot resolve EPMD host {addr}: {source}")]
    Resolve {
        /// `host:port`.
        addr: String,
        /// The resolver's error.
        #[source]
        source: io::Error,
    },
    /// No complete answer within the time limit.
    #[error("EPMD at {addr} did not answer within {timeout:?}")]
    Timeout {
        /// `host:port`.
        addr: String,
        /// The limit.
        timeout: Duration,
    },
    /// EPMD refused the registration. The protocol gives no reason; the
    /// usual one is that another node holds the name (OTP reports
    /// `duplicate_name`).
    #[error("EPMD at {addr} refused to register {name:?}: name taken")]
    NameTaken {
        /// `host:port`.
        addr: String,
        /// The name.
        name: String,
    },
    /// No node by that name is registered.
    #[error("no node named {name:?} is registered with EPMD at {addr}")]
    NoSuchNode {
        /// `host:port`.
        addr: String,
        /// The name.
        name: String,
    },
    /// EPMD closed the connection without answering (it ignores
    /// registrations and admin requests from non-local peers that way).
    #[error("EPMD at {addr} closed the connection without answering {request}")]
    Closed {
        /// `host:port`.
        addr: String,
        /// The request sent.
        request: &'static str,
    },
    /// The reply broke the protocol.
    #[error("bad reply from EPMD at {addr}: {source}")]
    Protocol {
        /// `host:port`.
        addr: String,
        /// What was wrong.
        #[source]
        source: ProtocolError,
    },
    /// A socket error after connecting.
    #[error("I/O error talking to EPMD at {addr}: {source}")]
    Io {
        /// `host:port`.
        addr: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The node name cannot be registered or looked up.
    #[error("invalid node name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
}

/// A client for one EPMD (host and port).
///
/// ```no_run
/// # async fn demo() -> Result<(), erldist::epmd::EpmdError> {
/// use erldist::epmd::EpmdClient;
/// // localhost, port $ERL_EPMD_PORT or 4369
/// let epmd = EpmdClient::new();
/// for entry in epmd.names().await?.entries {
///     println!("{} at port {}", entry.name, entry.port);
/// }
/// let info = epmd.port_please("foo").await?;
/// println!("foo listens on {}", info.port);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct EpmdClient {
    host: String,
    port: u16,
    timeout: Duration,
}

impl Default for EpmdClient {
    fn default() -> Self {
        Self::new()
    }
}

impl EpmdClient {
    /// A client for the local EPMD: host `127.0.0.1` (where OTP registers),
    /// port `$ERL_EPMD_PORT` or 4369, timeout [`DEFAULT_TIMEOUT`].
    pub fn new() -> Self {
        EpmdClient {
            host: "127.0.0.1".into(),
            port: super::default_port(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A client for the EPMD at `host` (name or address) and `port`.
    pub fn with_address(host: impl Into<String>, port: u16) -> Self {
        EpmdClient {
            host: host.into(),
            port,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Sets the host.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into();
        self
    }

    /// Sets the port.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Sets the time limit of each operation (connect, send, full reply).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The EPMD port this client uses.
    pub fn epmd_port(&self) -> u16 {
        self.port
    }

    /// The EPMD host this client uses.
    pub fn epmd_host(&self) -> &str {
        &self.host
    }

    /// `host:port`, for messages.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// Registers `name` (the part before `@`; a `name@host` is cut at `@`)
    /// with distribution port `node_port`, as OTP 25 does (`ALIVE2_REQ`,
    /// versions 6..5, extended reply). The registration lasts as long as
    /// the returned [`Registration`].
    ///
    /// # Errors
    ///
    /// [`EpmdError::NameTaken`] if EPMD refuses the name,
    /// [`EpmdError::Unreachable`] if no EPMD runs there,
    /// [`EpmdError::Timeout`], and the rest of [`EpmdError`].
    pub async fn register(&self, name: &str, node_port: u16) -> Result<Registration, EpmdError> {
        let name = alive_part(name)?;
        self.register_with(Alive2Request::new(name, node_port))
            .await
    }

    /// Registers with a request of your own (node type, versions, extra
    /// data). A highest version below 6 gets the old reply with a 16-bit
    /// creation; both forms are accepted.
    pub async fn register_with(&self, request: Alive2Request) -> Result<Registration, EpmdError> {
        check_name(&request.name)?;
        let name = request.name.clone();
        let node_port = request.port;
        let addr = self.addr();
        let (stream, reply) = self
            .with_timeout(async {
                let mut stream = self.send(&Request::Alive2(request)).await?;
                let reply =
                    read_reply(&mut stream, &addr, "ALIVE2_REQ", Alive2Response::decode).await?;
                Ok((stream, reply))
            })
            .await?;
        if reply.result() != 0 {
            return Err(EpmdError::NameTaken { addr, name });
        }
        Ok(Registration {
            stream,
            name,
            node_port,
            creation: reply.creation(),
            epmd: addr,
        })
    }

    /// Looks up a node (`PORT_PLEASE2_REQ`): its port, versions, type and
    /// extra data.
    ///
    /// # Errors
    ///
    /// [`EpmdError::NoSuchNode`] if it is not registered, and the rest of
    /// [`EpmdError`].
    pub async fn port_please(&self, name: &str) -> Result<NodeInfo, EpmdError> {
        let name = alive_part(name)?;
        check_name(name)?;
        let addr = self.addr();
        let reply = self
            .with_timeout(async {
                let mut stream = self
                    .send(&Request::PortPlease2 { name: name.into() })
                    .await?;
                read_reply(
                    &mut stream,
                    &addr,
                    "PORT_PLEASE2_REQ",
                    Port2Response::decode,
                )
                .await
            })
            .await?;
        match reply {
            Port2Response::Found(info) => Ok(info),
            Port2Response::NotFound { .. } => Err(EpmdError::NoSuchNode {
                addr,
                name: name.into(),
            }),
        }
    }

    /// Lists the registered names (`NAMES_REQ`), as `epmd -names` does.
    pub async fn names(&self) -> Result<NamesResponse, EpmdError> {
        let addr = self.addr();
        let bytes = self.read_all(&Request::Names).await?;
        if bytes.is_empty() {
            return Err(EpmdError::Closed {
                addr,
                request: "NAMES_REQ",
            });
        }
        NamesResponse::decode_exact(&bytes).map_err(|source| EpmdError::Protocol { addr, source })
    }

    /// The debug dump (`DUMP_REQ`, local peers only): EPMD's port and the
    /// text `epmd -dump` prints.
    pub async fn dump(&self) -> Result<(u32, String), EpmdError> {
        let addr = self.addr();
        let bytes = self.read_all(&Request::Dump).await?;
        if bytes.is_empty() {
            return Err(EpmdError::Closed {
                addr,
                request: "DUMP_REQ",
            });
        }
        DumpResponse::decode_text(&bytes).map_err(|source| EpmdError::Protocol { addr, source })
    }

    /// Asks EPMD to exit (`KILL_REQ`, local peers only). [`KillResponse::No`]
    /// means nodes are registered and EPMD is not in relaxed mode.
    pub async fn kill(&self) -> Result<KillResponse, EpmdError> {
        let addr = self.addr();
        let bytes = self.read_all(&Request::Kill).await?;
        if bytes.is_empty() {
            return Err(EpmdError::Closed {
                addr,
                request: "KILL_REQ",
            });
        }
        KillResponse::decode_exact(&bytes).map_err(|source| EpmdError::Protocol { addr, source })
    }

    /// Drops the registration of `name` (`STOP_REQ`; EPMD serves it only
    /// in relaxed mode and otherwise closes without a word, reported as
    /// [`EpmdError::Closed`]).
    pub async fn stop(&self, name: &str) -> Result<StopResponse, EpmdError> {
        check_name(name)?;
        let addr = self.addr();
        let bytes = self.read_all(&Request::Stop { name: name.into() }).await?;
        if bytes.is_empty() {
            return Err(EpmdError::Closed {
                addr,
                request: "STOP_REQ",
            });
        }
        StopResponse::decode_exact(&bytes).map_err(|source| EpmdError::Protocol { addr, source })
    }

    /// Whether an EPMD answers at this address (a `NAMES` request that
    /// gets a well-formed reply).
    pub async fn is_running(&self) -> bool {
        self.names().await.is_ok()
    }

    async fn with_timeout<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, EpmdError>>,
    ) -> Result<T, EpmdError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(EpmdError::Timeout {
                    addr: self.addr(),
                    timeout: self.timeout,
                })
            })
    }

    /// Connects, trying each address the host resolves to.
    async fn connect(&self) -> Result<TcpStream, EpmdError> {
        let addr = self.addr();
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|source| EpmdError::Resolve {
                addr: addr.clone(),
                source,
            })?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "host has no addresses");
        for a in addrs {
            match TcpStream::connect(a).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = e,
            }
        }
        Err(EpmdError::Unreachable { addr, source: last })
    }

    async fn send(&self, request: &Request) -> Result<TcpStream, EpmdError> {
        let mut stream = self.connect().await?;
        stream
            .write_all(&request.to_bytes())
            .await
            .map_err(|source| EpmdError::Io {
                addr: self.addr(),
                source,
            })?;
        Ok(stream)
    }

    /// Sends `request` and reads until EPMD closes (bounded).
    async fn read_all(&self, request: &Request) -> Result<Vec<u8>, EpmdError> {
        self.with_timeout(async {
            let stream = self.send(request).await?;
            let mut out = Vec::new();
            let mut limited = stream.take(MAX_LIST_REPLY as u64 + 1);
            limited
                .read_to_end(&mut out)
                .await
                .map_err(|source| EpmdError::Io {
                    addr: self.addr(),
                    source,
                })?;
            if out.len() > MAX_LIST_REPLY {
                return Err(EpmdError::Protocol {
                    addr: self.addr(),
                    source: ProtocolError::UnexpectedReply {
                        detail: format!("reply longer than {MAX_LIST_REPLY} bytes"),
                    },
                });
            }
            Ok(out)
        })
        .await
    }
}

/// Reads until `decode` yields a message.
async fn read_reply<T>(
    stream: &mut TcpStream,
    addr: &str,
    request: &'static str,
    decode: impl Fn(&mut BytesMut) -> Result<Option<T>, ProtocolError>,
) -> Result<T, EpmdError> {
    let mut buf = BytesMut::with_capacity(64);
    loop {
        match decode(&mut buf) {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(source) => {
                return Err(EpmdError::Protocol {
                    addr: addr.into(),
                    source,
                })
            }
        }
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|source| EpmdError::Io {
                addr: addr.into(),
                source,
            })?;
        if n == 0 {
            return Err(if buf.is_empty() {
                EpmdError::Closed {
                    addr: addr.into(),
                    request,
                }
            } else {
                EpmdError::Protocol {
                    addr: addr.into(),
                    source: ProtocolError::Truncated { what: request },
                }
            });
        }
    }
}

/// The alive part of a node name (`foo` of `foo@host`).
fn alive_part(name: &str) -> Result<&str, EpmdError> {
    let alive = name.split_once('@').map_or(name, |(a, _)| a);
    check_name(alive)?;
    Ok(alive)
}

fn check_name(name: &str) -> Result<(), EpmdError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.contains('\0') {
        "contains NUL"
    } else if name.len() > MAX_NAME_BYTES || name.chars().count() > MAX_NAME_CHARS {
        "longer than 255 characters"
    } else {
        return Ok(());
    };
    Err(EpmdError::InvalidName {
        name: name.into(),
        reason,
    })
}

/// A live registration with EPMD: the node stays registered for as long as
/// this value (its TCP connection) lives. Drop it, or call
/// [`unregister`](Registration::unregister), to release the name.
#[derive(Debug)]
pub struct Registration {
    stream: TcpStream,
    name: String,
    node_port: u16,
    creation: u32,
    epmd: String,
}

impl Registration {
    /// The creation number EPMD handed out: use it in the handshake and in
    /// every pid, port and reference the node creates.
    pub fn creation(&self) -> u32 {
        self.creation
    }

    /// The registered name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The registered distribution port.
    pub fn node_port(&self) -> u16 {
        self.node_port
    }

    /// The EPMD holding the registration (`host:port`).
    pub fn epmd_addr(&self) -> &str {
        &self.epmd
    }

    /// Resolves when EPMD closes the connection (it stopped or dropped the
    /// registration): the node is then no longer registered. OTP nodes
    /// re-register after 2 s and keep their first creation.
    pub async fn closed(&mut self) {
        let mut scratch = [0u8; 64];
        loop {
            match self.stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    /// Releases the name (closes the connection).
    pub fn unregister(self) {
        drop(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_at_the_at_sign_and_checked() {
        assert_eq!(alive_part("foo@bar").unwrap(), "foo");
        assert_eq!(alive_part("foo").unwrap(), "foo");
        assert!(alive_part("@bar").is_err());
        assert!(alive_part("a\0b").is_err());
        assert!(alive_part(&"x".repeat(256)).is_err());
    }

    #[test]
    fn addr_formats_ipv6() {
        assert_eq!(EpmdClient::with_address("::1", 5).addr(), "[::1]:5");
        assert_eq!(EpmdClient::with_address("h", 5).addr(), "h:5");
    }
}
