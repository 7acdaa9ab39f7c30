//! `:pg` process groups: a Rust scope that takes part in the `:pg` overlay
//! network OTP 23+ nodes run, so that Rust processes join and leave groups
//! that Erlang and Elixir processes see with `:pg.get_members/2`, and Rust
//! sees theirs.
//!
//! # Wire format
//!
//! This is the protocol of `pg.erl` in **OTP 25** (kernel 8.5), read from
//! its source and tested against OTP 25.2; OTP 23 and 24 send the same
//! messages. A scope is a process registered under the scope's name on
//! each node; scopes with the same name on connected nodes find each
//! other and replicate their members:
//!
//! - when a scope starts, and when a node comes up, it sends
//!   `{discover, ScopePid}` to `{Scope, Node}`;
//! - a scope that gets `{discover, Peer}` answers with a `gen_server`
//!   cast, `{'$gen_cast', {sync, ScopePid, [{Group, [Pid]}]}}` listing its
//!   local members; if it did not know `Peer`, it monitors it and sends
//!   `{discover, ScopePid}` back;
//! - a scope that gets `sync` replaces what it knew of that peer's groups
//!   (monitoring the peer if it is new);
//! - joining and leaving locally are broadcast to every known peer scope
//!   as `{join, ScopePid, Group, PidOrPids}` and
//!   `{leave, ScopePid, PidOrPids, [Group]}`; a local member that exits
//!   leaves all its groups (one `leave` with the list of them);
//! - a peer scope that goes `'DOWN'` (its process exited, or its node went
//!   down: `noconnection`) takes all its members with it; `join` and
//!   `leave` from an unknown peer are ignored.
//!
//! A BEAM scope crashes on a message it does not expect (`badarg`), so this
//! scope sends nothing else. Differences from `pg.erl`: BEAM scopes only
//! discover *visible* nodes; the Rust scope also sends `discover` to hidden
//! peers, so it works from a hidden Rust node too (BEAM answers any
//! `discover`). Messages it does not understand are logged and dropped.
//! `pg:monitor/2` and `pg:monitor_scope/1` are not offered.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::debug;

use super::{NodeEvent, Process, RegisterError};
use crate::node::Node;
use crate::term::{Atom, Pid, Reference, Term};

/// Why a `:pg` operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The scope's name is already registered on this node (another scope
    /// or another process has it).
    #[error("cannot register the pg scope {scope:?}: {source}")]
    Register {
        /// The scope.
        scope: Atom,
        /// Why.
        source: RegisterError,
    },
    /// Only processes of this node can join or leave (`{nolocal, Pid}`).
    #[error("{0} is not a process of this node (nolocal)")]
    NotLocal(Pid),
    /// The scope process is gone (its node's runtime is shutting down, or
    /// it was killed).
    #[error("the pg scope {0:?} has stopped")]
    Stopped(Atom),
}

/// A group: any term, compared exactly (`=:=`), as `:pg`'s ETS table does.
#[derive(Clone, Debug)]
struct Group(Term);

impl PartialEq for Group {
    fn eq(&self, other: &Group) -> bool {
        self.0.exact_eq(&other.0)
    }
}

impl Eq for Group {}

impl Hash for Group {
    // Terms equal under `=:=` are equal under `==`, and hash alike.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

/// What `:pg` keeps in its ETS table: for each group, all members and the
/// local ones.
#[derive(Default)]
struct Table {
    groups: HashMap<Group, Members>,
}

#[derive(Default)]
struct Members {
    all: Vec<Pid>,
    local: Vec<Pid>,
}

/// Removes the first occurrence of each of `pids` from `list` (`--`).
fn subtract(list: &mut Vec<Pid>, pids: &[Pid]) {
    for p in pids {
        if let Some(i) = list.iter().position(|x| x == p) {
            list.remove(i);
        }
    }
}

impl Table {
    fn join_local(&mut self, group: &Group, pid: Pid) {
        let m = self.groups.entry(group.clone()).or_default();
        m.all.insert(0, pid);
        m.local.insert(0, pid);
    }

    fn leave_local(&mut self, group: &Group, pid: Pid) {
        if let Some(m) = self.groups.get_mut(group) {
            subtract(&mut m.all, &[pid]);
            subtract(&mut m.local, &[pid]);
            if m.all.is_empty() {
                self.groups.remove(group);
            }
        }
    }

    fn join_remote(&mut self, group: &Group, pids: &[Pid]) {
        let m = self.groups.entry(group.clone()).or_default();
        m.all.splice(0..0, pids.iter().copied());
    }

    fn leave_remote(&mut self, group: &Group, pids: &[Pid]) {
        if let Some(m) = self.groups.get_mut(group) {
            subtract(&mut m.all, pids);
            if m.all.is_empty() && m.local.is_empty() {
                self.groups.remove(group);
            }
        }
    }
}

/// What the handles ask the scope process.
enum Cmd {
    Join {
        group: Group,
        pids: Vec<Pid>,
        done: oneshot::Sender<()>,
    },
    Leave {
        group: Group,
        pids: Vec<Pid>,
        done: oneshot::Sender<bool>,
    },
}

struct Shared {
    scope: Atom,
    pid: Pid,
    node: Node,
    table: Mutex<Table>,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A `:pg` scope on this node (`pg:start_link(Scope)`): a process
/// registered under the scope's name that replicates group membership with
/// the scopes of the same name on the connected nodes.
///
/// Cloning gives another handle to the same scope; the scope process stops
/// when the last handle is dropped (its peers then drop its members).
///
/// ```no_run
/// # async fn f(node: erldist::Node) -> Result<(), erldist::node::pg::PgError> {
/// use erldist::node::pg::Pg;
/// use erldist::Term;
/// // The default scope of `:pg.join/2` is `pg`, started by kernel when
/// // `start_pg` is set; applications usually start their own scope.
/// let pg = Pg::start(&node, "my_scope")?;
/// let me = node.process();
/// pg.join(Term::atom("workers"), me.pid()).await?;
/// // Erlang: pg:get_members(my_scope, workers) lists me.pid(),
/// // and this lists the Erlang members too:
/// let members = pg.get_members(&Term::atom("workers"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Pg {
    shared: Arc<Shared>,
    cmd: mpsc::UnboundedSender<Cmd>,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg")
            .field("scope", &self.shared.scope)
            .field("pid", &self.shared.pid)
            .finish()
    }
}

impl Pg {
    /// Starts the scope `scope` on `node`: registers its process under the
    /// scope's name and discovers the scopes of the connected nodes (and of
    /// every node that connects later). Must be called within a tokio
    /// runtime.
    ///
    /// # Errors
    /// [`PgError::Register`] if the name is taken on this node.
    pub fn start(node: &Node, scope: impl Into<Atom>) -> Result<Pg, PgError> {
        let scope = scope.into();
        let (p, pid) = node.new_process(false);
        node.register(scope, pid)
            .map_err(|source| PgError::Register { scope, source })?;
        let shared = Arc::new(Shared {
            scope,
            pid,
            node: node.clone(),
            table: Mutex::new(Table::default()),
        });
        let (cmd, rx) = mpsc::unbounded_channel();
        // Subscribe before listing the nodes: none is missed.
        let events = node.monitor_nodes();
        let scope_state = Scope {
            shared: shared.clone(),
            local: HashMap::new(),
            remote: HashMap::new(),
        };
        node.start_task(p, move |p| scope_state.run(p, rx, events));
        Ok(Pg { shared, cmd })
    }

    /// The scope's name.
    pub fn scope(&self) -> Atom {
        self.shared.scope
    }

    /// The scope process's PID.
    pub fn pid(&self) -> Pid {
        self.shared.pid
    }

    /// Joins `pid` to `group` (`pg:join/3`). A process may join a group
    /// several times; it then appears as many times among the members, and
    /// must leave as many times. When it exits, it leaves all its groups.
    /// Returns once the scope has recorded the join and told its peers.
    ///
    /// # Errors
    /// [`PgError::NotLocal`] if `pid` is not of this node,
    /// [`PgError::Stopped`] if the scope is gone.
    pub async fn join(&self, group: impl Into<Term>, pid: Pid) -> Result<(), PgError> {
        self.join_many(group, vec![pid]).await
    }

    /// Joins several processes to `group` at once (`pg:join/3` with a
    /// list): peers get one `join` message.
    ///
    /// # Errors
    /// As [`join`](Pg::join).
    pub async fn join_many(&self, group: impl Into<Term>, pids: Vec<Pid>) -> Result<(), PgError> {
        self.check_local(&pids)?;
        let (done, rx) = oneshot::channel();
        self.send(Cmd::Join {
            group: Group(group.into()),
            pids,
            done,
        })?;
        rx.await.map_err(|_| self.stopped())
    }

    /// Makes `pid` leave `group` once (`pg:leave/3`); returns whether it
    /// was a member (`ok`) or not (`not_joined`).
    ///
    /// # Errors
    /// As [`join`](Pg::join).
    pub async fn leave(&self, group: impl Into<Term>, pid: Pid) -> Result<bool, PgError> {
        self.leave_many(group, vec![pid]).await
    }

    /// Makes several processes leave `group`; returns whether any was a
    /// member.
    ///
    /// # Errors
    /// As [`join`](Pg::join).
    pub async fn leave_many(
        &self,
        group: impl Into<Term>,
        pids: Vec<Pid>,
    ) -> Result<bool, PgError> {
        self.check_local(&pids)?;
        let (done, rx) = oneshot::channel();
        self.send(Cmd::Leave {
            group: Group(group.into()),
            pids,
            done,
        })?;
        rx.await.map_err(|_| self.stopped())
    }

    /// The members of `group` on every node of the scope
    /// (`pg:get_members/2`), newest first; empty for an unknown group.
    pub fn get_members(&self, group: &Term) -> Vec<Pid> {
        let key = Group(group.clone());
        self.shared
            .table()
            .groups
            .get(&key)
            .map(|m| m.all.clone())
            .unwrap_or_default()
    }

    /// The members of `group` on this node (`pg:get_local_members/2`).
    pub fn get_local_members(&self, group: &Term) -> Vec<Pid> {
        let key = Group(group.clone());
        self.shared
            .table()
            .groups
            .get(&key)
            .map(|m| m.local.clone())
            .unwrap_or_default()
    }

    /// The groups with members anywhere (`pg:which_groups/1`).
    pub fn which_groups(&self) -> Vec<Term> {
        self.shared
            .table()
            .groups
            .keys()
            .map(|g| g.0.clone())
            .collect()
    }

    /// The groups with members on this node (`pg:which_local_groups/1`).
    pub fn which_local_groups(&self) -> Vec<Term> {
        self.shared
            .table()
            .groups
            .iter()
            .filter(|(_, m)| !m.local.is_empty())
            .map(|(g, _)| g.0.clone())
            .collect()
    }

    /// The node the scope runs on.
    pub fn node(&self) -> &Node {
        &self.shared.node
    }

    fn check_local(&self, pids: &[Pid]) -> Result<(), PgError> {
        match pids.iter().find(|p| !self.shared.node.is_local(p)) {
            Some(p) => Err(PgError::NotLocal(*p)),
            None => Ok(()),
        }
    }

    fn send(&self, cmd: Cmd) -> Result<(), PgError> {
        self.cmd.send(cmd).map_err(|_| self.stopped())
    }

    fn stopped(&self) -> PgError {
        PgError::Stopped(self.shared.scope)
    }
}

/// The scope process's own state (`pg.erl`'s `#state{}`).
struct Scope {
    shared: Arc<Shared>,
    /// Local members: the monitor on each, and the groups it joined (once
    /// per join).
    local: HashMap<Pid, (Reference, Vec<Group>)>,
    /// Peer scopes: the monitor on each, and their groups' members.
    remote: HashMap<Pid, (Reference, HashMap<Group, Vec<Pid>>)>,
}

fn pid_or_pids(t: &Term) -> Option<Vec<Pid>> {
    match t {
        Term::Pid(p) => Some(vec![*p]),
        Term::List(l) => l.iter().map(|x| x.as_pid().copied()).collect(),
        _ => None,
    }
}

/// A single pid as itself, several as a list: as `pg.erl` sends them.
fn pids_term(pids: &[Pid]) -> Term {
    match pids {
        [p] => Term::Pid(*p),
        _ => Term::List(pids.iter().map(|p| Term::Pid(*p)).collect()),
    }
}

impl Scope {
    async fn run(
        mut self,
        mut p: Process,
        mut cmds: mpsc::UnboundedReceiver<Cmd>,
        events: broadcast::Receiver<NodeEvent>,
    ) {
        let mut events = Some(events);
        let node = self.shared.node.clone();
        for peer in node.nodes().into_iter().chain(node.hidden_nodes()) {
            self.discover(&p, peer);
        }
        loop {
            let event = async {
                match events.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => self.command(&p, cmd),
                    None => break,
                },
                msg = p.recv() => match msg {
                    Ok(msg) => self.message(&p, msg),
                    Err(_) => break,
                },
                ev = event => match ev {
                    Ok(NodeEvent::Up(peer)) => self.discover(&p, peer),
                    Ok(NodeEvent::Down(..)) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        // Some node-up events were lost: discover again;
                        // known peers only answer with a sync.
                        for peer in node.nodes().into_iter().chain(node.hidden_nodes()) {
                            self.discover(&p, peer);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => events = None,
                },
            }
        }
        // The process exits when this returns: its name goes with it, and
        // the peers' monitors drop its members.
    }

    fn discover(&self, p: &Process, peer: Atom) {
        if peer == self.shared.node.name() {
            return;
        }
        p.send(
            (self.shared.scope, peer),
            Term::Tuple(vec![Term::atom("discover"), Term::Pid(p.pid())]),
        );
    }

    fn broadcast(&self, p: &Process, msg: &Term) {
        for peer in self.remote.keys() {
            p.send(*peer, msg.clone());
        }
    }

    fn command(&mut self, p: &Process, cmd: Cmd) {
        match cmd {
            Cmd::Join { group, pids, done } => {
                for pid in &pids {
                    match self.local.get_mut(pid) {
                        Some((_, groups)) => groups.push(group.clone()),
                        None => {
                            let r = p.monitor(*pid);
                            self.local.insert(*pid, (r, vec![group.clone()]));
                        }
                    }
                }
                {
                    let mut table = self.shared.table();
                    for pid in pids.iter().rev() {
                        table.join_local(&group, *pid);
                    }
                }
                let msg = Term::Tuple(vec![
                    Term::atom("join"),
                    Term::Pid(p.pid()),
                    group.0.clone(),
                    pids_term(&pids),
                ]);
                self.broadcast(p, &msg);
                let _ = done.send(());
            }
            Cmd::Leave { group, pids, done } => {
                let mut left = Vec::new();
                for pid in &pids {
                    let Some((r, groups)) = self.local.get_mut(pid) else {
                        continue;
                    };
                    let Some(i) = groups.iter().position(|g| *g == group) else {
                        continue;
                    };
                    groups.remove(i);
                    if groups.is_empty() {
                        p.demonitor(r);
                        self.local.remove(pid);
                    }
                    left.push(*pid);
                }
                if !left.is_empty() {
                    {
                        let mut table = self.shared.table();
                        for pid in &left {
                            table.leave_local(&group, *pid);
                        }
                    }
                    let msg = Term::Tuple(vec![
                        Term::atom("leave"),
                        Term::Pid(p.pid()),
                        pids_term(&pids),
                        Term::List(vec![group.0.clone()]),
                    ]);
                    self.broadcast(p, &msg);
                }
                let _ = done.send(!left.is_empty());
            }
        }
    }

    fn message(&mut self, p: &Process, msg: Term) {
        let Some(t) = msg.as_tuple() else {
            debug!(scope = %self.shared.scope, %msg, "pg: unexpected message dropped");
            return;
        };
        match t {
            [tag, Term::Pid(peer)] if tag.is_atom("discover") => self.discovered(p, *peer),
            [tag, Term::Pid(peer), group, pids] if tag.is_atom("join") => {
                if let Some(pids) = pid_or_pids(pids) {
                    self.remote_join(*peer, Group(group.clone()), pids);
                }
            }
            [tag, Term::Pid(peer), pids, Term::List(groups)] if tag.is_atom("leave") => {
                if let Some(pids) = pid_or_pids(pids) {
                    let groups = groups.iter().cloned().map(Group).collect();
                    self.remote_leave(*peer, &pids, groups);
                }
            }
            [tag, cast] if tag.is_atom("$gen_cast") => match cast.as_tuple() {
                Some([sync, Term::Pid(peer), Term::List(groups)]) if sync.is_atom("sync") => {
                    self.sync(p, *peer, groups)
                }
                _ => debug!(scope = %self.shared.scope, %msg, "pg: unexpected cast dropped"),
            },
            [tag, Term::Ref(r), kind, Term::Pid(pid), _]
                if tag.is_atom("DOWN") && kind.is_atom("process") =>
            {
                self.down(p, r, *pid)
            }
            _ => debug!(scope = %self.shared.scope, %msg, "pg: unexpected message dropped"),
        }
    }

    /// `{discover, Peer}`: send our local members; discover it back if
    /// it is new.
    fn discovered(&mut self, p: &Process, peer: Pid) {
        let mut by_group: Vec<(Group, Vec<Pid>)> = Vec::new();
        for (pid, (_, groups)) in &self.local {
            for g in groups {
                match by_group.iter_mut().find(|(x, _)| x == g) {
                    Some((_, pids)) => pids.insert(0, *pid),
                    None => by_group.push((g.clone(), vec![*pid])),
                }
            }
        }
        let groups = by_group
            .into_iter()
            .map(|(g, pids)| {
                Term::Tuple(vec![
                    g.0,
                    Term::List(pids.into_iter().map(Term::Pid).collect()),
                ])
            })
            .collect();
        let sync = Term::Tuple(vec![
            Term::atom("sync"),
            Term::Pid(p.pid()),
            Term::List(groups),
        ]);
        p.send(peer, Term::Tuple(vec![Term::atom("$gen_cast"), sync]));
        if let std::collections::hash_map::Entry::Vacant(slot) = self.remote.entry(peer) {
            let r = p.monitor(peer);
            p.send(
                peer,
                Term::Tuple(vec![Term::atom("discover"), Term::Pid(p.pid())]),
            );
            slot.insert((r, HashMap::new()));
        }
    }

    /// `{sync, Peer, Groups}`: the peer's whole membership replaces what
    /// was known of it.
    fn sync(&mut self, p: &Process, peer: Pid, groups: &[Term]) {
        let mut new: HashMap<Group, Vec<Pid>> = HashMap::new();
        for g in groups {
            let Some([group, pids]) = g.as_tuple() else {
                continue;
            };
            let Some(pids) = pid_or_pids(pids) else {
                continue;
            };
            new.entry(Group(group.clone())).or_default().extend(pids);
        }
        let (r, mut old) = match self.remote.remove(&peer) {
            Some(x) => x,
            None => (p.monitor(peer), HashMap::new()),
        };
        {
            let mut table = self.shared.table();
            for (g, pids) in &new {
                match old.remove(g) {
                    Some(was) if was == *pids => {}
                    Some(was) => {
                        table.leave_remote(g, &was);
                        table.join_remote(g, pids);
                    }
                    None => table.join_remote(g, pids),
                }
            }
            for (g, pids) in old {
                table.leave_remote(&g, &pids);
            }
        }
        self.remote.insert(peer, (r, new));
    }

    fn remote_join(&mut self, peer: Pid, group: Group, pids: Vec<Pid>) {
        // A join from a scope we do not know (yet, or any more) is ignored.
        let Some((_, groups)) = self.remote.get_mut(&peer) else {
            return;
        };
        self.shared.table().join_remote(&group, &pids);
        let members = groups.entry(group).or_default();
        members.splice(0..0, pids);
    }

    fn remote_leave(&mut self, peer: Pid, pids: &[Pid], groups: Vec<Group>) {
        let Some((_, known)) = self.remote.get_mut(&peer) else {
            return;
        };
        let mut table = self.shared.table();
        for g in groups {
            table.leave_remote(&g, pids);
            if let Some(members) = known.get_mut(&g) {
                subtract(members, pids);
                if members.is_empty() {
                    known.remove(&g);
                }
            }
        }
    }

    fn down(&mut self, p: &Process, r: &Reference, pid: Pid) {
        if let Some((mref, groups)) = self.local.get(&pid) {
            if mref == r {
                let groups = groups.clone();
                self.local.remove(&pid);
                {
                    let mut table = self.shared.table();
                    for g in &groups {
                        table.leave_local(g, pid);
                    }
                }
                let msg = Term::Tuple(vec![
                    Term::atom("leave"),
                    Term::Pid(p.pid()),
                    Term::Pid(pid),
                    Term::List(groups.into_iter().map(|g| g.0).collect()),
                ]);
                self.broadcast(p, &msg);
                return;
            }
        }
        if let Some((mref, _)) = self.remote.get(&pid) {
            if mref == r {
                if let Some((_, groups)) = self.remote.remove(&pid) {
                    let mut table = self.shared.table();
                    for (g, pids) in groups {
                        table.leave_remote(&g, &pids);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(id: u32) -> Pid {
        Pid {
            node: Atom::from("a@localhost"),
            id,
            serial: 0,
            creation: 1,
        }
    }

    #[test]
    fn groups_compare_exactly() {
        let mut t = Table::default();
        t.join_remote(&Group(Term::from(1)), &[pid(1)]);
        t.join_remote(&Group(Term::from(1.0)), &[pid(2)]);
        assert_eq!(t.groups.len(), 2, "1 and 1.0 are two groups, as in ETS");
    }

    #[test]
    fn remote_members_are_a_multiset() {
        let g = Group(Term::atom("g"));
        let mut t = Table::default();
        t.join_remote(&g, &[pid(1), pid(1), pid(2)]);
        t.leave_remote(&g, &[pid(1)]);
        assert_eq!(t.groups[&g].all, vec![pid(1), pid(2)]);
        t.leave_remote(&g, &[pid(1), pid(2), pid(3)]);
        assert!(t.groups.is_empty(), "an empty group is removed");
    }

    #[test]
    fn a_group_with_local_members_stays() {
        let g = Group(Term::atom("g"));
        let mut t = Table::default();
        t.join_local(&g, pid(1));
        t.join_remote(&g, &[pid(2)]);
        t.leave_remote(&g, &[pid(2)]);
        assert_eq!(t.groups[&g].all, vec![pid(1)]);
        assert_eq!(t.groups[&g].local, vec![pid(1)]);
        t.leave_local(&g, pid(1));
        assert!(t.groups.is_empty());
    }

    #[test]
    fn pids_go_out_as_pg_sends_them() {
        assert_eq!(pids_term(&[pid(1)]), Term::Pid(pid(1)));
        assert_eq!(
            pids_term(&[pid(1), pid(2)]),
            Term::List(vec![Term::Pid(pid(1)), Term::Pid(pid(2))])
        );
        assert_eq!(pid_or_pids(&Term::Pid(pid(1))), Some(vec![pid(1)]));
        assert_eq!(pid_or_pids(&Term::List(vec![Term::atom("x")])), None);
    }

    #[tokio::test]
    async fn a_scope_works_on_a_node_without_network() {
        let node = Node::local("pg@localhost");
        let pg = Pg::start(&node, "scope").unwrap();
        let p = node.process();
        let g = Term::atom("g");
        pg.join(g.clone(), p.pid()).await.unwrap();
        pg.join(g.clone(), p.pid()).await.unwrap();
        assert_eq!(pg.get_members(&g), vec![p.pid(), p.pid()]);
        assert!(pg.leave(g.clone(), p.pid()).await.unwrap());
        assert_eq!(pg.get_local_members(&g), vec![p.pid()]);
        drop(p);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !pg.which_groups().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "the exit is seen");
            tokio::task::yield_now().await;
        }
        let scope_pid = pg.pid();
        drop(pg);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while node.is_alive(scope_pid) {
            assert!(tokio::time::Instant::now() < deadline, "the scope stops");
            tokio::task::yield_now().await;
        }
        assert_eq!(node.whereis("scope"), None);
    }
}
