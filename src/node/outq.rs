//! The queue from a node's processes to one peer's task: what they send
//! to that node, in order.
//!
//! Like tokio's unbounded channel, but cheaper for many small items from
//! one side and runs taken at once on the other: a send is a push under a
//! lock, and wakes the task only when the queue was empty (the task always
//! empties it before it waits), and once more, to another worker, when a
//! run of sends has filled it to [`LONG_RUN`] without the task taking it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// Items queued without the receiving task taking them, after which a
/// sender lets an idle worker run that task ([`super::sched`]): the task
/// may be waiting behind the sender on the sender's worker.
const LONG_RUN: usize = 64;

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Notify,
}

struct State<T> {
    items: VecDeque<T>,
    /// The receiver closed, or the sender is gone.
    closed: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Every update is a single push or pop: poisoning leaves no broken
        // state behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
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

/// A new queue.
pub(crate) fn queue<T>() -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            closed: false,
        }),
        ready: Notify::new(),
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

impl<T> Sender<T> {
    /// Queues `item`; gives it back if the receiver is closed.
    pub(crate) fn send(&self, item: T) -> Result<(), T> {
        let mut st = self.shared.lock();
        if st.closed {
            return Err(item);
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

    /// Refuses further sends; what is queued can still be taken.
    pub(crate) fn close(&mut self) {
        self.shared.lock().closed = true;
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

    #[tokio::test]
    async fn items_come_in_order_and_the_end_after_them() {
        let (tx, mut rx) = queue();
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
        let (tx, rx) = queue();
        drop(rx);
        assert_eq!(tx.send(1), Err(1));
    }

    #[tokio::test]
    async fn a_closed_queue_gives_sends_back_and_keeps_what_it_has() {
        let (tx, mut rx) = queue();
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
        let (tx, mut rx) = queue();
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
