//! Phoenix.PubSub from Rust: Rust processes subscribe to topics of an
//! Elixir application's PubSub (e.g. `MyApp.PubSub`) and receive what
//! Elixir broadcasts there, and Rust broadcasts reach Elixir subscribers,
//! over the default adapter, `Phoenix.PubSub.PG2`, which runs on `:pg`
//! (see [`super::pg`]).
//!
//! # Wire format
//!
//! This follows **phoenix_pubsub 2.1** (2.0 is the same with a pool of
//! one, per the adapter's own backward-compatibility note), on OTP 23+
//! where it uses `:pg` rather than the old `:pg2`. It was checked against
//! phoenix_pubsub's source (`lib/phoenix/pubsub/pg2.ex` and
//! `application.ex` of the 2.1 line) but tested against a stand-in
//! (`tests/fixtures/pubsub`) that reproduces those modules' messages,
//! since Phoenix itself could not be installed on the test machines:
//!
//! - the `phoenix_pubsub` application starts a `:pg` scope named
//!   `Phoenix.PubSub` (the atom `'Elixir.Phoenix.PubSub'`) on every node;
//! - a PubSub named `MyApp.PubSub` has an adapter name
//!   `MyApp.PubSub.Adapter`, and with `pool_size: N` the groups
//!   `MyApp.PubSub.Adapter`, `MyApp.PubSub.Adapter_2`, ...,
//!   `MyApp.PubSub.Adapter_N`; one worker per group is registered under
//!   the group's name and joins that group in the scope;
//! - `Phoenix.PubSub.broadcast(MyApp.PubSub, topic, message)` picks one
//!   group and sends `{:forward_to_local, topic, message, dispatcher}` to
//!   each of its members on *other* nodes, then dispatches locally;
//!   `direct_broadcast(node, ...)` sends the same tuple to
//!   `{group, node}`; the dispatcher is the `Phoenix.PubSub` module unless
//!   the caller gave another;
//! - a worker receiving `forward_to_local` dispatches locally: every
//!   process subscribed to the topic (a binary) receives the bare
//!   `message`.
//!
//! The Rust side plays the worker: [`PubSub::start`] registers one Rust
//! process per group and joins it, so Elixir's broadcasts arrive, and
//! [`PubSub::broadcast`] sends `forward_to_local` to the Elixir workers.
//! Use the same `pool_size` as the Elixir nodes. Custom dispatchers (such
//! as Phoenix Channels' fastlane) cannot run in Rust: Rust subscribers get
//! the bare message whatever the dispatcher.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tracing::debug;

use super::gen_server::elixir_module;
use super::pg::{Pg, PgError};
use super::{Dest, Node, Process, RegisterError};
use crate::term::{Atom, Pid, Term};

/// The `:pg` scope Phoenix.PubSub uses: `'Elixir.Phoenix.PubSub'`.
pub fn scope() -> Atom {
    elixir_module("Phoenix.PubSub")
}

/// The default dispatcher, the `Phoenix.PubSub` module.
pub fn default_dispatcher() -> Atom {
    elixir_module("Phoenix.PubSub")
}

/// Why a PubSub could not be started or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PubSubError {
    /// The `:pg` scope failed.
    #[error(transparent)]
    Pg(#[from] PgError),
    /// A worker's name (the adapter's group name) is taken on this node:
    /// the same PubSub is already started here.
    #[error("cannot register the PubSub worker {name:?}: {source}")]
    Register {
        /// The name.
        name: Atom,
        /// Why.
        source: RegisterError,
    },
    /// `pool_size` must be at least 1.
    #[error("pool_size must be at least 1")]
    PoolSize,
    /// Only processes of this node can subscribe.
    #[error("{0} is not a process of this node")]
    NotLocal(Pid),
}

type Subscriptions = HashMap<Bytes, Vec<Pid>>;

struct Inner {
    name: Atom,
    groups: Vec<Atom>,
    workers: Vec<Pid>,
    pg: Pg,
    subs: Arc<Mutex<Subscriptions>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for w in &self.workers {
            self.pg.node().kill(*w, Term::atom("shutdown"));
        }
    }
}

/// A Phoenix.PubSub on this node, interoperating with the PubSub of the
/// same name on Elixir nodes (PG2 adapter).
///
/// Cloning gives another handle to the same PubSub; when the last one is
/// dropped, its workers exit (and leave their groups).
///
/// ```no_run
/// # async fn f(node: erldist::Node) -> Result<(), Box<dyn std::error::Error>> {
/// use erldist::node::pubsub::PubSub;
/// use erldist::term;
/// let pubsub = PubSub::start(&node, "MyApp.PubSub").await?;
/// let mut sub = pubsub.subscriber("room:lobby")?;
/// // Elixir: Phoenix.PubSub.broadcast(MyApp.PubSub, "room:lobby", {:new_msg, "hi"})
/// let msg = sub.recv().await?;
/// // Elixir subscribers of "room:lobby" get {:from_rust, 1}:
/// pubsub.broadcast("room:lobby", term!({from_rust, 1}));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PubSub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSub")
            .field("name", &self.inner.name)
            .field("groups", &self.inner.groups)
            .finish()
    }
}

fn subs_lock(subs: &Mutex<Subscriptions>) -> MutexGuard<'_, Subscriptions> {
    subs.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends `message` to the live subscribers of `topic` but `from`,
/// forgetting the dead ones (a subscription ends with its process, as a
/// `Registry` entry does).
fn dispatch(node: &Node, subs: &Mutex<Subscriptions>, from: Option<Pid>, topic: &[u8], msg: Term) {
    let targets: Vec<Pid> = {
        let mut subs = subs_lock(subs);
        let Some(pids) = subs.get_mut(topic) else {
            return;
        };
        pids.retain(|p| node.is_alive(*p));
        let targets = pids.iter().copied().filter(|p| Some(*p) != from).collect();
        if pids.is_empty() {
            subs.remove(topic);
        }
        targets
    };
    for pid in targets {
        node.send(pid, msg.clone());
    }
}

impl PubSub {
    /// Starts the PubSub `name` (an Elixir module name such as
    /// `"MyApp.PubSub"`) with a pool of one, in a new `Phoenix.PubSub`
    /// scope on `node`. To run several PubSubs on one node, start the
    /// scope once with [`Pg::start`] and [`scope`] and use
    /// [`with_scope`](PubSub::with_scope).
    ///
    /// # Errors
    /// [`PubSubError::Pg`] if the scope is already running on this node,
    /// [`PubSubError::Register`] if this PubSub is.
    pub async fn start(node: &Node, name: &str) -> Result<PubSub, PubSubError> {
        let pg = Pg::start(node, scope())?;
        PubSub::with_scope(&pg, name, 1).await
    }

    /// Starts the PubSub `name` with `pool_size` workers (Elixir's
    /// `pool_size` option; use the Elixir nodes' value) in the `pg` scope,
    /// which should be the [`scope`] `Phoenix.PubSub`.
    ///
    /// # Errors
    /// [`PubSubError::PoolSize`] for a pool of 0, else as
    /// [`start`](PubSub::start).
    pub async fn with_scope(pg: &Pg, name: &str, pool_size: usize) -> Result<PubSub, PubSubError> {
        if pool_size == 0 {
            return Err(PubSubError::PoolSize);
        }
        let name = elixir_module(name);
        let adapter = format!("{}.Adapter", name.as_str());
        let groups: Vec<Atom> = (1..=pool_size)
            .map(|n| match n {
                1 => Atom::from(adapter.as_str()),
                n => Atom::from(format!("{adapter}_{n}").as_str()),
            })
            .collect();
        let node = pg.node().clone();
        let subs: Arc<Mutex<Subscriptions>> = Arc::default();
        let mut workers = Vec::new();
        let mut failed = None;
        for group in &groups {
            let (p, pid) = node.new_process(false);
            if let Err(source) = node.register(*group, pid) {
                failed = Some(PubSubError::Register {
                    name: *group,
                    source,
                });
                drop(p);
                node.kill(pid, Term::atom("shutdown"));
                break;
            }
            let subs = subs.clone();
            node.start_task(p, move |p| worker(p, subs));
            workers.push(pid);
        }
        // From here on, dropping `inner` stops the workers.
        let inner = Arc::new(Inner {
            name,
            groups: groups.clone(),
            workers: workers.clone(),
            pg: pg.clone(),
            subs,
        });
        if let Some(e) = failed {
            return Err(e);
        }
        for (group, pid) in groups.iter().zip(&workers) {
            pg.join(Term::Atom(*group), *pid).await?;
        }
        Ok(PubSub { inner })
    }

    /// The PubSub's name (`'Elixir.MyApp.PubSub'`).
    pub fn name(&self) -> Atom {
        self.inner.name
    }

    /// The adapter's groups, which are also its workers' registered names:
    /// `'Elixir.MyApp.PubSub.Adapter'`, then `..._2`, ...
    pub fn groups(&self) -> &[Atom] {
        &self.inner.groups
    }

    /// The `:pg` scope it runs on.
    pub fn pg(&self) -> &Pg {
        &self.inner.pg
    }

    fn node(&self) -> &Node {
        self.inner.pg.node()
    }

    /// Subscribes the local process `pid` to `topic`
    /// (`Phoenix.PubSub.subscribe/2` called by that process): it receives
    /// each message broadcast there, as it was sent. Subscribing twice
    /// delivers twice, as in Phoenix; the subscription ends when the
    /// process exits.
    ///
    /// # Errors
    /// [`PubSubError::NotLocal`] if `pid` is not of this node.
    pub fn subscribe(&self, pid: Pid, topic: &str) -> Result<(), PubSubError> {
        if !self.node().is_local(&pid) {
            return Err(PubSubError::NotLocal(pid));
        }
        subs_lock(&self.inner.subs)
            .entry(Bytes::copy_from_slice(topic.as_bytes()))
            .or_default()
            .push(pid);
        Ok(())
    }

    /// Removes all of `pid`'s subscriptions to `topic`
    /// (`Phoenix.PubSub.unsubscribe/2`).
    pub fn unsubscribe(&self, pid: Pid, topic: &str) {
        let mut subs = subs_lock(&self.inner.subs);
        if let Some(pids) = subs.get_mut(topic.as_bytes()) {
            pids.retain(|p| *p != pid);
            if pids.is_empty() {
                subs.remove(topic.as_bytes());
            }
        }
    }

    /// A new process subscribed to `topic`; it lives until dropped.
    ///
    /// # Errors
    /// None in practice (the process is local); as
    /// [`subscribe`](PubSub::subscribe).
    pub fn subscriber(&self, topic: &str) -> Result<Process, PubSubError> {
        let p = self.node().process();
        self.subscribe(p.pid(), topic)?;
        Ok(p)
    }

    /// The local processes subscribed to `topic`, once per subscription.
    pub fn subscribers(&self, topic: &str) -> Vec<Pid> {
        let node = self.node();
        subs_lock(&self.inner.subs)
            .get(topic.as_bytes())
            .map(|pids| pids.iter().copied().filter(|p| node.is_alive(*p)).collect())
            .unwrap_or_default()
    }

    /// Broadcasts `message` to the subscribers of `topic` on every node
    /// (`Phoenix.PubSub.broadcast/3`).
    pub fn broadcast(&self, topic: &str, message: impl Into<Term>) {
        self.broadcast_with(None, topic, message.into(), default_dispatcher());
    }

    /// As [`broadcast`](PubSub::broadcast), except to `from` on this node
    /// (`Phoenix.PubSub.broadcast_from/4`).
    pub fn broadcast_from(&self, from: Pid, topic: &str, message: impl Into<Term>) {
        self.broadcast_with(Some(from), topic, message.into(), default_dispatcher());
    }

    /// As [`broadcast`](PubSub::broadcast) with a dispatcher module other
    /// than `Phoenix.PubSub` for the Elixir nodes (e.g.
    /// `Phoenix.Channel.Server` for channel broadcasts); Rust subscribers
    /// get the bare message.
    pub fn broadcast_with_dispatcher(
        &self,
        topic: &str,
        message: impl Into<Term>,
        dispatcher: impl Into<Atom>,
    ) {
        self.broadcast_with(None, topic, message.into(), dispatcher.into());
    }

    fn broadcast_with(&self, from: Option<Pid>, topic: &str, message: Term, dispatcher: Atom) {
        let node = self.node();
        let group = self.inner.groups.first().copied();
        let forward = forward_to_local(topic, &message, dispatcher);
        if let Some(group) = group {
            for pid in self.inner.pg.get_members(&Term::Atom(group)) {
                if pid.node != node.name() {
                    self.send_forward(Dest::Pid(pid), forward.clone());
                }
            }
        }
        dispatch(node, &self.inner.subs, from, topic.as_bytes(), message);
    }

    /// Broadcasts to the subscribers on this node only
    /// (`Phoenix.PubSub.local_broadcast/3`).
    pub fn local_broadcast(&self, topic: &str, message: impl Into<Term>) {
        dispatch(
            self.node(),
            &self.inner.subs,
            None,
            topic.as_bytes(),
            message.into(),
        );
    }

    /// Broadcasts to the subscribers on `node_name` only
    /// (`Phoenix.PubSub.direct_broadcast/4`): to this node's subscribers
    /// when it names this node.
    pub fn direct_broadcast(
        &self,
        node_name: impl Into<Atom>,
        topic: &str,
        message: impl Into<Term>,
    ) {
        let node_name = node_name.into();
        let message = message.into();
        if node_name == self.node().name() {
            return self.local_broadcast(topic, message);
        }
        if let Some(group) = self.inner.groups.first() {
            let forward = forward_to_local(topic, &message, default_dispatcher());
            self.send_forward(Dest::Remote(*group, node_name), forward);
        }
    }

    fn send_forward(&self, to: Dest, msg: Term) {
        let from = self.inner.workers.first().copied();
        self.node().send_from(from, to, msg);
    }
}

fn forward_to_local(topic: &str, message: &Term, dispatcher: Atom) -> Term {
    Term::Tuple(vec![
        Term::atom("forward_to_local"),
        Term::from(topic),
        message.clone(),
        Term::Atom(dispatcher),
    ])
}

/// A PG2 worker: dispatches `{forward_to_local, Topic, Message,
/// Dispatcher}` to the local subscribers; ignores anything else, as
/// `Phoenix.PubSub.PG2Worker` does.
async fn worker(mut p: Process, subs: Arc<Mutex<Subscriptions>>) {
    let node = p.node().clone();
    while let Ok(msg) = p.recv().await {
        let Term::Tuple(t) = msg else {
            debug!(msg = %msg, "pubsub: unexpected message dropped");
            continue;
        };
        match <[Term; 4]>::try_from(t) {
            Ok([tag, Term::Binary(topic), message, _dispatcher])
                if tag.is_atom("forward_to_local") =>
            {
                dispatch(&node, &subs, None, &topic, message);
            }
            Ok(t) => debug!(msg = %Term::Tuple(t.into()), "pubsub: unexpected message dropped"),
            Err(t) => debug!(msg = %Term::Tuple(t), "pubsub: unexpected message dropped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::term;

    #[tokio::test]
    async fn local_subscribers_get_bare_messages() {
        let node = Node::local("ps@localhost");
        let ps = PubSub::start(&node, "MyApp.PubSub").await.unwrap();
        assert_eq!(ps.name(), Atom::from("Elixir.MyApp.PubSub"));
        let adapter = Atom::from("Elixir.MyApp.PubSub.Adapter");
        assert_eq!(ps.pg().get_local_members(&Term::Atom(adapter)).len(), 1);
        let mut a = ps.subscriber("t").unwrap();
        let mut b = ps.subscriber("t").unwrap();
        ps.broadcast("t", term!(one));
        assert_eq!(a.recv().await.unwrap(), term!(one));
        assert_eq!(b.recv().await.unwrap(), term!(one));
        ps.broadcast_from(a.pid(), "t", term!(two));
        assert_eq!(b.recv().await.unwrap(), term!(two));
        // What a remote worker would send to this node's worker.
        let worker = node.whereis(adapter).unwrap();
        node.send(
            worker,
            term!({forward_to_local, <<"t">>, three, (Term::Atom(default_dispatcher()))}),
        );
        assert_eq!(b.recv().await.unwrap(), term!(three));
        assert_eq!(a.recv().await.unwrap(), term!(three), "not two: skipped");
        ps.unsubscribe(a.pid(), "t");
        assert_eq!(ps.subscribers("t"), vec![b.pid()]);
        assert!(matches!(
            PubSub::with_scope(ps.pg(), "MyApp.PubSub", 1).await,
            Err(PubSubError::Register { .. })
        ));
        drop(ps);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while node.is_alive(worker) {
            assert!(tokio::time::Instant::now() < deadline, "the worker stops");
            tokio::task::yield_now().await;
        }
    }
}
