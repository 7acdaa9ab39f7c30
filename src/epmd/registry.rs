//! The EPMD server's state, sans-IO: the name table, the creation counters
//! and the rules for every request, as `epmd_srv.c` applies them.
//!
//! The I/O layer ([`EpmdServer`](super::EpmdServer)) decodes a request,
//! calls [`Registry::handle`] with who asked and the current time, writes
//! the [`Action`]'s reply and carries out the rest of the action (keep the
//! connection, close another one, shut down). When a connection closes it
//! calls [`Registry::connection_closed`], which releases the name the
//! connection held.

use std::collections::VecDeque;

use bytes::BytesMut;

use super::protocol::{
    Alive2Request, Alive2Response, DumpEntry, DumpResponse, KillResponse, NameEntry, NamesResponse,
    NodeInfo, Port2Response, Request, StopResponse, MAX_NAME_BYTES, MAX_NAME_CHARS,
};

/// How many released names the registry remembers (for their creation
/// numbers), as `MAX_UNREG_COUNT` in `epmd_int.h`: when more than this many
/// are remembered, a new name takes over the oldest slot.
pub const MAX_REMEMBERED_NAMES: usize = 1000;

/// Identifies one client connection, chosen by the I/O layer (unique for
/// the server's lifetime).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Who sent a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// The connection.
    pub conn: ConnId,
    /// What `DUMP` reports as the connection's file descriptor (the real
    /// socket's fd where there is one).
    pub fd: i32,
    /// Whether the peer is local: a loopback address or the address the
    /// connection came in on. `ALIVE2`, `DUMP`, `KILL` and `STOP` from other
    /// peers are ignored, as the real EPMD does.
    pub local: bool,
}

/// What the I/O layer must do after a request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Action {
    /// Bytes to send back (possibly none).
    pub reply: BytesMut,
    /// Keep the connection open after replying (`ALIVE2`: the registration
    /// lives as long as the connection). Otherwise close it.
    pub keep_open: bool,
    /// Another connection to close (`STOP`).
    pub close: Option<ConnId>,
    /// Shut the server down after replying (`KILL`).
    pub shutdown: bool,
}

/// Why a registration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// Another connection holds the name.
    #[error("name {name:?} is already registered")]
    NameTaken {
        /// The name.
        name: String,
    },
    /// The name is longer than 255 characters / 1020 bytes.
    #[error("name {name:?} is too long")]
    NameTooLong {
        /// The name.
        name: String,
    },
    /// The extra field is longer than 1020 bytes.
    #[error("extra data for {name:?} is too long ({len} bytes)")]
    ExtraTooLong {
        /// The name.
        name: String,
        /// The extra field's length.
        len: usize,
    },
}

#[derive(Clone, Debug)]
struct Active {
    conn: ConnId,
    fd: i32,
    counter: u32,
    info: NodeInfo,
}

#[derive(Clone, Debug)]
struct Remembered {
    name: String,
    port: u16,
    fd: i32,
    counter: u32,
}

/// The name table of an EPMD server.
#[derive(Debug)]
pub struct Registry {
    epmd_port: u16,
    relaxed: bool,
    /// Registered nodes, oldest first (replies list them newest first).
    active: Vec<Active>,
    /// Released names, oldest first.
    remembered: VecDeque<Remembered>,
}

/// Advances a creation counter as `bump_creation` in `epmd_srv.c`: skip
/// 0..=3, which older protocol versions reserve.
fn bump(counter: u32) -> u32 {
    counter.wrapping_add(1).max(4)
}

impl Registry {
    /// An empty table for an EPMD listening on `epmd_port` (reported in
    /// `NAMES` and `DUMP` replies). `relaxed` is `-relaxed_command_check`:
    /// `KILL` is then allowed with nodes registered, and `STOP` is served.
    pub fn new(epmd_port: u16, relaxed: bool) -> Self {
        Registry {
            epmd_port,
            relaxed,
            active: Vec::new(),
            remembered: VecDeque::new(),
        }
    }

    /// Whether `-relaxed_command_check` rules apply.
    pub fn relaxed(&self) -> bool {
        self.relaxed
    }

    /// Serves one request from `peer` at time `now_secs` (seconds since the
    /// Unix epoch; it seeds the creation numbers of new names).
    pub fn handle(&mut self, peer: Peer, request: Request, now_secs: u64) -> Action {
        let mut action = Action::default();
        let local_only = matches!(
            request,
            Request::Alive2(_) | Request::Dump | Request::Kill | Request::Stop { .. }
        );
        if local_only && !peer.local {
            tracing::debug!(tag = %request.tag(), "request from non-local peer ignored");
            return action;
        }
        match request {
            Request::Alive2(req) => {
                let extended = req.wants_extended_reply();
                let creation = match self.register(peer, req, now_secs) {
                    Ok(creation) => Some(creation),
                    Err(e) => {
                        tracing::info!("registration refused: {e}");
                        None
                    }
                };
                let result = u8::from(creation.is_none());
                let creation = creation.unwrap_or(99);
                let reply = if extended {
                    Alive2Response::Extended { result, creation }
                } else {
                    Alive2Response::Legacy {
                        result,
                        creation: u16::try_from(creation).unwrap_or(99),
                    }
                };
                reply.encode(&mut action.reply);
                // epmd_srv.c keeps the connection after any ALIVE2 reply,
                // failed or not.
                action.keep_open = true;
            }
            Request::PortPlease2 { name } => {
                let reply = match self.lookup(&name) {
                    Some(info) => Port2Response::Found(info.clone()),
                    None => Port2Response::NotFound { result: 1 },
                };
                reply.encode(&mut action.reply);
            }
            Request::Names => self.names().encode(&mut action.reply),
            Request::Dump => self.dump().encode(&mut action.reply),
            Request::Kill => {
                if !self.relaxed && !self.active.is_empty() {
                    KillResponse::No.encode(&mut action.reply);
                } else {
                    KillResponse::Ok.encode(&mut action.reply);
                    action.shutdown = true;
                }
            }
            Request::Stop { name } => {
                if !self.relaxed {
                    tracing::debug!("STOP refused: no relaxed command check");
                    return action;
                }
                match self.unregister_name(&name) {
                    Some(conn) => {
                        action.close = Some(conn);
                        StopResponse::Stopped.encode(&mut action.reply);
                    }
                    None => StopResponse::NoExist.encode(&mut action.reply),
                }
            }
        }
        action
    }

    /// Registers a node for `peer` and returns the creation to report.
    pub fn register(
        &mut self,
        peer: Peer,
        req: Alive2Request,
        now_secs: u64,
    ) -> Result<u32, RegisterError> {
        if req.name.len() > MAX_NAME_BYTES || req.name.chars().count() > MAX_NAME_CHARS {
            return Err(RegisterError::NameTooLong { name: req.name });
        }
        if req.extra.len() > MAX_NAME_BYTES {
            return Err(RegisterError::ExtraTooLong {
                len: req.extra.len(),
                name: req.name,
            });
        }
        if self.active.iter().any(|a| a.info.name == req.name) {
            return Err(RegisterError::NameTaken { name: req.name });
        }
        let counter = if let Some(i) = self.remembered.iter().position(|r| r.name == req.name) {
            // A name seen before: next creation.
            self.remembered
                .remove(i)
                .map_or_else(|| bump(now_secs as u32), |r| bump(r.counter))
        } else if self.remembered.len() > MAX_REMEMBERED_NAMES {
            // Table of remembered names full: take over the oldest slot,
            // counter and all, as epmd_srv.c does.
            self.remembered
                .pop_front()
                .map_or_else(|| bump(now_secs as u32), |r| r.counter)
        } else {
            // Truncation to 32 bits is what the C code does with time_t.
            bump(now_secs as u32)
        };
        let creation = creation_for(counter, req.highest_version);
        tracing::info!(name = %req.name, port = req.port, creation, "node registered");
        self.active.push(Active {
            conn: peer.conn,
            fd: peer.fd,
            counter,
            info: NodeInfo {
                port: req.port,
                node_type: req.node_type,
                transport: req.transport,
                highest_version: req.highest_version,
                lowest_version: req.lowest_version,
                name: req.name,
                extra: req.extra,
            },
        });
        Ok(creation)
    }

    /// The connection `conn` closed: release the name it held, if any, and
    /// return it.
    pub fn connection_closed(&mut self, conn: ConnId) -> Option<String> {
        let i = self.active.iter().position(|a| a.conn == conn)?;
        Some(self.release(i))
    }

    /// Drops the registration of `name` and returns the connection that
    /// held it.
    pub fn unregister_name(&mut self, name: &str) -> Option<ConnId> {
        let i = self.active.iter().position(|a| a.info.name == name)?;
        let conn = self.active.get(i).map(|a| a.conn);
        self.release(i);
        conn
    }

    fn release(&mut self, i: usize) -> String {
        let a = self.active.remove(i);
        tracing::info!(name = %a.info.name, port = a.info.port, "node unregistered");
        let name = a.info.name.clone();
        self.remembered.push_back(Remembered {
            name: a.info.name,
            port: a.info.port,
            fd: a.fd,
            counter: a.counter,
        });
        name
    }

    /// What `PORT_PLEASE2` answers for `name`.
    pub fn lookup(&self, name: &str) -> Option<&NodeInfo> {
        self.active
            .iter()
            .find(|a| a.info.name == name)
            .map(|a| &a.info)
    }

    /// Whether `conn` holds a registration.
    pub fn is_registered(&self, conn: ConnId) -> bool {
        self.active.iter().any(|a| a.conn == conn)
    }

    /// How many nodes are registered.
    pub fn len(&self) -> usize {
        self.active.len()
    }

    /// Whether no node is registered.
    pub fn is_empty(&self) -> bool {
        self.active.is_empty()
    }

    /// The `NAMES` reply: registered nodes, newest first.
    pub fn names(&self) -> NamesResponse {
        NamesResponse {
            epmd_port: u32::from(self.epmd_port),
            entries: self
                .active
                .iter()
                .rev()
                .map(|a| NameEntry {
                    name: a.info.name.clone(),
                    port: a.info.port,
                })
                .collect(),
        }
    }

    /// The `DUMP` reply: registered nodes newest first, then remembered
    /// names oldest first.
    pub fn dump(&self) -> DumpResponse {
        DumpResponse {
            epmd_port: u32::from(self.epmd_port),
            active: self
                .active
                .iter()
                .rev()
                .map(|a| DumpEntry {
                    name: a.info.name.clone(),
                    port: a.info.port,
                    fd: a.fd,
                })
                .collect(),
            unused: self
                .remembered
                .iter()
                .map(|r| DumpEntry {
                    name: r.name.clone(),
                    port: r.port,
                    fd: r.fd,
                })
                .collect(),
        }
    }
}

/// The creation reported for a counter: the counter itself for version 6
/// nodes, 1..=3 for older ones (`get_creation` in `epmd_srv.c`).
fn creation_for(counter: u32, highest_version: u16) -> u32 {
    if highest_version >= 6 {
        counter
    } else {
        counter % 3 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u64) -> Peer {
        Peer {
            conn: ConnId(n),
            fd: n as i32 + 4,
            local: true,
        }
    }

    fn alive(name: &str, port: u16) -> Request {
        Request::Alive2(Alive2Request::new(name, port))
    }

    const NOW: u64 = 1_795_703_344;

    #[test]
    fn register_lookup_release() {
        let mut reg = Registry::new(4369, false);
        let a = reg.handle(peer(1), alive("a", 1000), NOW);
        assert!(a.keep_open);
        assert_eq!(
            Alive2Response::decode_exact(&a.reply).unwrap(),
            Alive2Response::Extended {
                result: 0,
                creation: NOW as u32 + 1
            }
        );
        let found = reg.handle(peer(2), Request::PortPlease2 { name: "a".into() }, NOW);
        assert!(!found.keep_open);
        match Port2Response::decode_exact(&found.reply).unwrap() {
            Port2Response::Found(info) => {
                assert_eq!(
                    (info.port, info.highest_version, info.lowest_version),
                    (1000, 6, 5)
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(reg.connection_closed(ConnId(1)), Some("a".into()));
        assert_eq!(reg.connection_closed(ConnId(1)), None);
        let gone = reg.handle(peer(3), Request::PortPlease2 { name: "a".into() }, NOW);
        assert_eq!(&gone.reply[..], b"w\x01");
    }

    #[test]
    fn taken_name_is_refused_with_creation_99_and_connection_kept() {
        let mut reg = Registry::new(4369, false);
        reg.handle(peer(1), alive("a", 1000), NOW);
        let again = reg.handle(peer(2), alive("a", 1001), NOW);
        assert_eq!(&again.reply[..], b"v\x01\x00\x00\x00\x63");
        assert!(again.keep_open);
        assert!(!reg.is_registered(ConnId(2)));
        // The loser closing does not release the winner's name.
        assert_eq!(reg.connection_closed(ConnId(2)), None);
        assert_eq!(reg.len(), 1);
    }

    #[test]
    fn reregistration_bumps_creation_and_legacy_nodes_get_1_to_3() {
        let mut reg = Registry::new(4369, false);
        let c1 = reg
            .register(peer(1), Alive2Request::new("a", 1), NOW)
            .unwrap();
        reg.connection_closed(ConnId(1));
        let c2 = reg
            .register(peer(2), Alive2Request::new("a", 1), NOW + 50)
            .unwrap();
        assert_eq!(c2, c1 + 1);
        let mut old = Alive2Request::new("b", 2);
        old.highest_version = 5;
        let r = reg.handle(peer(3), Request::Alive2(old), NOW);
        let resp = Alive2Response::decode_exact(&r.reply).unwrap();
        assert!(matches!(
            resp,
            Alive2Response::Legacy {
                result: 0,
                creation: 1..=3
            }
        ));
        // Counters skip 0..=3.
        assert_eq!(bump(u32::MAX), 4);
    }

    #[test]
    fn names_and_dump_list_newest_first() {
        let mut reg = Registry::new(4369, false);
        reg.handle(peer(1), alive("a", 1), NOW);
        reg.handle(peer(2), alive("b", 2), NOW);
        let names = reg.handle(peer(3), Request::Names, NOW);
        assert_eq!(
            &names.reply[..],
            b"\x00\x00\x11\x11name b at port 2\nname a at port 1\n"
        );
        reg.connection_closed(ConnId(1));
        let dump = reg.handle(peer(4), Request::Dump, NOW);
        assert_eq!(
            &dump.reply[..],
            &b"\x00\x00\x11\x11active name     <b> at port 2, fd = 6\n\0\
old/unused name <a>, port = 1, fd = 5 \n\0"[..]
        );
    }

    #[test]
    fn remote_peers_may_only_look_up_and_list() {
        let mut reg = Registry::new(4369, true);
        let remote = Peer {
            local: false,
            ..peer(1)
        };
        for req in [
            alive("a", 1),
            Request::Dump,
            Request::Kill,
            Request::Stop { name: "a".into() },
        ] {
            assert_eq!(reg.handle(remote, req, NOW), Action::default());
        }
        assert!(reg.is_empty());
        assert!(!reg.handle(remote, Request::Names, NOW).reply.is_empty());
    }

    #[test]
    fn kill_rules() {
        let mut strict = Registry::new(4369, false);
        let empty = strict.handle(peer(1), Request::Kill, NOW);
        assert_eq!((&empty.reply[..], empty.shutdown), (&b"OK"[..], true));
        strict.handle(peer(2), alive("a", 1), NOW);
        let busy = strict.handle(peer(3), Request::Kill, NOW);
        assert_eq!((&busy.reply[..], busy.shutdown), (&b"NO"[..], false));
        let mut relaxed = Registry::new(4369, true);
        relaxed.handle(peer(2), alive("a", 1), NOW);
        let ok = relaxed.handle(peer(3), Request::Kill, NOW);
        assert_eq!((&ok.reply[..], ok.shutdown), (&b"OK"[..], true));
    }

    #[test]
    fn stop_rules() {
        let mut strict = Registry::new(4369, false);
        strict.handle(peer(1), alive("a", 1), NOW);
        let refused = strict.handle(peer(2), Request::Stop { name: "a".into() }, NOW);
        assert_eq!(refused, Action::default());
        assert_eq!(strict.len(), 1);

        let mut relaxed = Registry::new(4369, true);
        relaxed.handle(peer(1), alive("a", 1), NOW);
        let stopped = relaxed.handle(peer(2), Request::Stop { name: "a".into() }, NOW);
        assert_eq!(&stopped.reply[..], b"STOPPED");
        assert_eq!(stopped.close, Some(ConnId(1)));
        assert!(relaxed.is_empty());
        let none = relaxed.handle(peer(3), Request::Stop { name: "a".into() }, NOW);
        assert_eq!(&none.reply[..], b"NOEXISTSTOPPED");
        assert_eq!(none.close, None);
    }

    #[test]
    fn overlong_names_and_extra_are_refused() {
        let mut reg = Registry::new(4369, false);
        let long = "é".repeat(256);
        assert!(matches!(
            reg.register(peer(1), Alive2Request::new(long, 1), NOW),
            Err(RegisterError::NameTooLong { .. })
        ));
        let mut req = Alive2Request::new("a", 1);
        req.extra = vec![0; MAX_NAME_BYTES + 1];
        assert!(matches!(
            reg.register(peer(1), req, NOW),
            Err(RegisterError::ExtraTooLong { .. })
        ));
        assert!(reg
            .register(peer(1), Alive2Request::new("é".repeat(255), 1), NOW)
            .is_ok());
    }

    #[test]
    fn remembered_names_are_bounded() {
        let mut reg = Registry::new(4369, false);
        for i in 0..(MAX_REMEMBERED_NAMES as u64 + 50) {
            reg.register(peer(i), Alive2Request::new(format!("n{i}"), 1), NOW)
                .unwrap();
            reg.connection_closed(ConnId(i));
        }
        assert!(reg.remembered.len() <= MAX_REMEMBERED_NAMES + 1);
    }
}
