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

    /// Appends a signal and wakes the receiver.
    pub(crate) fn push(&self, s: Signal) {
        self.queue().push_back(s);
        // A permit is kept when nobody waits, so no wake-up is lost.
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
