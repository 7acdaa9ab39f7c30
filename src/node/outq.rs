//! The queue from a node's processes to one peer's task: what they send
//! to that node, in order.
//!
//! Like tokio's unbounded channel, but cheaper for many small items from
//! one side and runs taken at once on the other: a send is a push under a
//! lock, and wakes the task only when the queue was empty (the task always
//! empties it before it waits), and once more, to another worker, when a
//! run of sends has filled it to [`LONG_RUN`] without the task taking it.
//!
//! It also keeps the distribution buffer's size, as BEAM's does for
//! `dist_buf_busy_limit`: each item weighs about its encoded bytes
//! ([`Weighed`]), counted when it is queued and released by the task when
//! it hands the item to the connection's writer (or drops it). At or
//! above the limit the queue is
//! *busy*: a sender may wait until it is not ([`Sender::not_busy`]), as a
//! BEAM process sending on a busy connection is suspended.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Items queued without the receiving task taking them, after which a
/// sender lets an idle worker run that task ([`super::sched`]): the task
/// may be waiting behind the sender on the sender's worker.
const LONG_RUN: usize = 64;

/// What a queued item weighs: about the bytes it will take on the wire.
pub(crate) trait Weighed {
    /// The item's weight; the same every time it is asked.
    fn weight(&self) -> usize;
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Notify,
    /// Woken when the queue stops being busy, or closes.
    drained: Notify,
    /// The weight at which the queue is busy.
    busy_limit: usize,
    /// Whether it is: `pending` at or above the limit, and not closed.
    /// Written under the lock, when it changes; read without it, so that a
    /// sender that only asks costs no lock.
    busy: AtomicBool,
}

struct State<T> {
    items: VecDeque<T>,
    /// The receiver closed, or the sender is gone.
    closed: bool,
    /// The weight of what was queued and not yet released by the receiver.
    pending: usize,
    /// Whether a sender waits for the queue to stop being busy.
    waited_on: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every update is a single push or pop: poisoning leaves no broken
        // state behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets [`Shared::busy`] (under the lock); writes only on a change, so
    /// that a stream of sends to a busy queue does not keep writing it.
    fn set_busy(&self, busy: bool) {
        if self.busy.load(Ordering::Relaxed) != busy {
            self.busy.store(busy, Ordering::Relaxed);
        }
    }
}

/// The sending end (one per peer, kept in the node's peer table).
pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving end, the peer's task.
pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
    /// Items taken from the queue all at once (one lock for a run of
    /// them), not yet handed out.
    taken: VecDeque<T>,
}

/// A new queue, busy from `busy_limit` on (at least 1: an empty queue is
/// never busy).
pub(crate) fn queue<T>(busy_limit: usize) -> (Sender<T>, Receiver<T>) {
    let busy_limit = busy_limit.max(1);
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            closed: false,
            pending: 0,
            waited_on: false,
        }),
        ready: Notify::new(),
        drained: Notify::new(),
        busy_limit,
        busy: AtomicBool::new(false),
    });
    (
        Sender {
            shared: Arc::clone(&shared),
        },
        Receiver {
            shared,
            taken: VecDeque::new(),
        },
    )
}

impl<T: Weighed> Sender<T> {
    /// Queues `item`; gives it back if the receiver is closed.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        let weight = item.weight();
        let mut st = self.shared.lock();
        if st.closed {
            return Err(item);
        }
        st.pending = st.pending.saturating_add(weight);
        if st.pending >= self.shared.busy_limit {
            self.shared.set_busy(true);
        }
        let was_empty = st.items.is_empty();
        st.items.push_back(item);
        let long_run = st.items.len() == LONG_RUN;
        drop(st);
        if was_empty {
            self.shared.ready.notify_one();
        } else if long_run {
            super::sched::share_woken();
        }
        Ok(())
    }
}

impl<T> Sender<T> {
    /// Whether what is queued weighs the busy limit or more (without
    /// taking the queue's lock: it may be a send behind).
    pub(crate) fn is_busy(&self) -> bool {
        self.shared.busy.load(Ordering::Relaxed)
    }

    /// Waits until the queue is not busy (or closed): a handle that can
    /// wait without holding the sender (and the peer table it is in).
    pub(crate) fn not_busy(&self) -> NotBusy<T> {
        NotBusy {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// See [`Sender::not_busy`].
pub(crate) struct NotBusy<T> {
    shared: Arc<Shared<T>>,
}

impl<T> NotBusy<T> {
    /// Returns once the queue is below its busy limit, or closed.
    pub(crate) async fn wait(self) {
        loop {
            // Registered before the check: a release in between wakes it.
            let drained = self.shared.drained.notified();
            {
                let mut st = self.shared.lock();
                if st.closed || st.pending < self.shared.busy_limit {
                    return;
                }
                st.waited_on = true;
            }
            drained.await;
        }
    }
}

impl<T> Drop for Sender<T> {
    /// The receiver sees the end once it has taken what is queued.
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
    }
}

impl<T> Receiver<T> {
    /// The next item, waiting for one; `None` once closed and empty.
    /// Cancel-safe: nothing is taken unless it is returned.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        loop {
            if let Some(item) = self.try_recv() {
                return Some(item);
            }
            {
                let st = self.shared.lock();
                if !st.items.is_empty() {
                    // Sent since we looked.
                    continue;
                }
                if st.closed {
                    // Nothing more can come: sends fail now.
                    return None;
                }
            }
            self.shared.ready.notified().await;
        }
    }

    /// The next item if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        if self.taken.is_empty() {
            // Everything queued at once; the queue keeps our empty buffer.
            std::mem::swap(&mut self.taken, &mut self.shared.lock().items);
        }
        self.taken.pop_front()
    }

    /// Releases `weight` of what was queued: handed to the writer, or
    /// dropped.
    /// Wakes the senders waiting for the queue once it is below its busy
    /// limit.
    pub(crate) fn release(&mut self, weight: usize) {
        if weight == 0 {
            return;
        }
        let mut st = self.shared.lock();
        st.pending = st.pending.saturating_sub(weight);
        if st.pending < self.shared.busy_limit {
            self.shared.set_busy(false);
        }
        if st.waited_on && st.pending < self.shared.busy_limit {
            st.waited_on = false;
            drop(st);
            self.shared.drained.notify_waiters();
        }
    }

    /// Refuses further sends; what is queued can still be taken. Senders
    /// waiting for the queue stop waiting.
    pub(crate) fn close(&mut self) {
        let mut st = self.shared.lock();
        st.closed = true;
        self.shared.set_busy(false);
        drop(st);
        self.shared.drained.notify_waiters();
    }
}

impl<T> Drop for Receiver<T> {
    /// Sends fail from now on, so that the sender knows to start anew.
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    impl Weighed for i32 {
        fn weight(&self) -> usize {
            usize::try_from(*self).unwrap_or(0)
        }
    }

    impl Weighed for &str {
        fn weight(&self) -> usize {
            self.len()
        }
    }

    /// The queue is busy from its limit on and stops being busy when the
    /// receiver releases enough; a sender waiting meanwhile is woken then,
    /// not before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn busy_from_the_limit_until_released_below_it() {
        let (tx, mut rx) = queue(100);
        tx.send(60).unwrap();
        assert!(!tx.is_busy());
        tx.send(40).unwrap();
        assert!(tx.is_busy());
        let waiter = tokio::spawn(tx.not_busy().wait());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "woken while busy");
        // Taken by the receiver is not written out: still busy.
        assert_eq!(rx.try_recv(), Some(60));
        rx.release(0);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "woken while busy");
        rx.release(60);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("not woken once below the limit")
            .unwrap();
        assert!(!tx.is_busy());
        // Not busy: waiting returns at once.
        tokio::time::timeout(Duration::from_secs(5), tx.not_busy().wait())
            .await
            .unwrap();
    }

    /// With a limit of 0, the queue is busy once anything is queued, and
    /// not while it is empty (waiting then would never end).
    #[tokio::test]
    async fn an_empty_queue_is_never_busy() {
        let (tx, mut rx) = queue(0);
        assert!(!tx.is_busy());
        tokio::time::timeout(Duration::from_secs(5), tx.not_busy().wait())
            .await
            .expect("waits on an empty queue");
        tx.send(1).unwrap();
        assert!(tx.is_busy());
        assert_eq!(rx.try_recv(), Some(1));
        rx.release(1);
        assert!(!tx.is_busy());
    }

    /// A sender waiting on a busy queue stops waiting when the receiver
    /// goes; a closed queue is never busy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_closed_queue_ends_the_wait() {
        let (tx, rx) = queue(10);
        tx.send(10).unwrap();
        assert!(tx.is_busy());
        let waiter = tokio::spawn(tx.not_busy().wait());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("still waiting on a closed queue")
            .unwrap();
        assert!(!tx.is_busy());
    }

    #[tokio::test]
    async fn items_come_in_order_and_the_end_after_them() {
        let (tx, mut rx) = queue(usize::MAX);
        for i in 0..10 {
            tx.send(i).unwrap();
        }
        assert_eq!(rx.recv().await, Some(0));
        for i in 1..10 {
            assert_eq!(rx.try_recv(), Some(i));
        }
        assert_eq!(rx.try_recv(), None);
        tx.send(10).unwrap();
        drop(tx);
        assert_eq!(rx.try_recv(), Some(10));
        assert_eq!(rx.recv().await, None);
    }

    #[test]
    fn a_dropped_receiver_gives_sends_back() {
        let (tx, rx) = queue(usize::MAX);
        drop(rx);
        assert_eq!(tx.send(1), Err(1));
    }

    #[tokio::test]
    async fn a_closed_queue_gives_sends_back_and_keeps_what_it_has() {
        let (tx, mut rx) = queue(usize::MAX);
        tx.send(1).unwrap();
        rx.close();
        assert_eq!(tx.send(2), Err(2));
        assert_eq!(rx.try_recv(), Some(1));
        assert_eq!(rx.recv().await, None);
    }

    /// A receiver waiting on an empty queue is woken by the next send, and
    /// by the sender going away.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_receiver_is_woken() {
        let (tx, mut rx) = queue(usize::MAX);
        let task = tokio::spawn(async move {
            let first = rx.recv().await;
            let end = rx.recv().await;
            (first, end)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.send("hello").unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(tx);
        let got = tokio::time::timeout(Duration::from_secs(5), task).await;
        assert_eq!(got.unwrap().unwrap(), (Some("hello"), None));
    }
}
