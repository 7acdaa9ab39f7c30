//! Letting an idle worker take a task that a busy one has woken.
//!
//! When a task on a worker of tokio's multi-thread runtime wakes another
//! task, tokio puts the woken one in that worker's LIFO slot, which other
//! workers do not steal: it runs when the waking task next waits (see
//! tokio's `Builder::disable_lifo_slot`). That suits a request and its
//! reply, which then run back to back on one warm core. It does not suit
//! a process that sends a long run of messages to another node without
//! waiting: the first send wakes the peer's task, which then sits in the
//! slot, writing nothing, until the whole run is queued. BEAM's schedulers
//! would have the port writing while the process sends.
//!
//! [`share_woken`] moves such a task to where it can be stolen: it
//! schedules an empty task, which takes the LIFO slot and pushes the one
//! there to the worker's run queue, waking an idle worker to take it. The
//! send queue calls it once a run is clearly long (`outq`), so a request
//! and its reply keep the fast path.

/// Makes the task in the current worker's LIFO slot, if any, stealable
/// by an idle worker (see the module docs). Does nothing off a
/// multi-thread runtime's worker.
pub(crate) fn share_woken() {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
        // Dropping the handle detaches the task; it ends at its first poll.
        drop(handle.spawn(async {}));
    }
}
