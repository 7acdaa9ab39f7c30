//! A process's mailbox: an unbounded queue and a wake-up.
//!
//! Lighter than a channel: an idle process's mailbox allocates nothing,
//! which keeps idle processes cheap (tens of thousands per node).

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use super::Signal;

#[derive(Default)]
pub(crate) struct Mailbox {
    queue: Mutex<VecDeque<Signal>>,
    ready: Notify,
}

impl Mailbox {
    fn queue(&self) -> std::sync::MutexGuard<'_, VecDeque<Signal>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a signal and wakes the receiver (see
    /// [`push_quietly`](Self::push_quietly) for why only when the queue
    /// was empty).
    pub(crate) fn push(&self, s: Signal) {
        if self.push_quietly(s) {
            // A permit is kept when nobody waits, so no wake-up is lost.
            self.ready.notify_one();
        }
    }

    /// Appends a signal without waking the receiver; true if the queue was
    /// empty, when the caller must [`wake`](Self::wake) it later. (A
    /// receiver only waits after finding the queue empty, so one wake per
    /// empty-to-not-empty change is enough.)
    pub(crate) fn push_quietly(&self, s: Signal) -> bool {
        let mut q = self.queue();
        let was_empty = q.is_empty();
        q.push_back(s);
        was_empty
    }

    /// Wakes the receiver (see [`push_quietly`](Self::push_quietly)).
    pub(crate) fn wake(&self) {
        self.ready.notify_one();
    }

    /// The next signal, waiting for one.
    pub(crate) async fn pop(&self) -> Signal {
        loop {
            if let Some(s) = self.queue().pop_front() {
                return s;
            }
            self.ready.notified().await;
        }
    }

    /// The next signal, if one is there.
    pub(crate) fn try_pop(&self) -> Option<Signal> {
        self.queue().pop_front()
    }

    /// How many signals wait.
    pub(crate) fn len(&self) -> usize {
        self.queue().len()
    }
}

thread_local! {
    /// The mailboxes to wake when the current [`WakeBatch`] ends, if one is
    /// open on this thread.
    static DEFERRED: std::cell::RefCell<Option<Vec<std::sync::Arc<super::ProcEntry>>>> =
        const { std::cell::RefCell::new(None) };
}

/// While it lives, messages delivered on this thread wake their receivers
/// once, when it ends, rather than at each message: a peer task delivering
/// a run of frames to a process that keeps up would otherwise wake it (on
/// another thread) for every one. Opened around work that does not wait
/// (the batch belongs to the thread; it is not `Send`, so it cannot be
/// held across an `.await` in a task).
pub(crate) struct WakeBatch {
    /// Whether this one opened the batch (an inner one does nothing).
    opened: bool,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl WakeBatch {
    pub(crate) fn open() -> WakeBatch {
        let opened = DEFERRED.with(|d| {
            let mut d = d.borrow_mut();
            if d.is_some() {
                false
            } else {
                *d = Some(Vec::new());
                true
            }
        });
        WakeBatch {
            opened,
            _not_send: std::marker::PhantomData,
        }
    }

    /// Delivers `s` to `entry`: quietly if a batch is open (its wake then
    /// comes when the batch ends), else at once.
    pub(crate) fn deliver(entry: &std::sync::Arc<super::ProcEntry>, s: Signal) {
        DEFERRED.with(|d| match d.borrow_mut().as_mut() {
            Some(pending) => {
                if entry.mailbox.push_quietly(s)
                    && !pending
                        .last()
                        .is_some_and(|p| std::sync::Arc::ptr_eq(p, entry))
                {
                    pending.push(std::sync::Arc::clone(entry));
                }
            }
            None => entry.mailbox.push(s),
        });
    }
}

impl Drop for WakeBatch {
    fn drop(&mut self) {
        if !self.opened {
            return;
        }
        let pending = DEFERRED.with(|d| d.borrow_mut().take()).unwrap_or_default();
        for entry in pending {
            entry.mailbox.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WakeBatch;
    use crate::{Node, Term};
    use std::time::Duration;

    /// Messages delivered in a batch wake a waiting receiver once the batch
    /// ends, and none is lost; outside a batch they wake it at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_wakes_its_receivers_when_it_ends() {
        let node = Node::local("batch@localhost");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let pid = node.spawn(move |mut p| async move {
            while let Ok(m) = p.recv().await {
                if tx.send(m).is_err() {
                    break;
                }
            }
        });
        // Give the receiver time to wait on an empty mailbox.
        tokio::time::sleep(Duration::from_millis(50)).await;
        {
            let _batch = WakeBatch::open();
            for i in 0..100 {
                node.send(pid, Term::from(i));
            }
            // Blocking: the batch is this thread's.
            std::thread::sleep(Duration::from_millis(100));
            assert!(rx.try_recv().is_err(), "woken before the batch ended");
        }
        for i in 0..100 {
            let m = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
            assert_eq!(m.ok().flatten(), Some(Term::from(i)));
        }
        node.send(pid, Term::from(100));
        let m = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(m.ok().flatten(), Some(Term::from(100)));
    }
}
