//! The queue between the scheduler's firing thread and its dispatcher: what the thread
//! popped from the window, waiting to be committed. It never grows past its bound (the
//! firing thread waits for room), and it never decides anything about a timer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use minoots_store::FireRequest;
use tokio::sync::Notify;

/// Timers popped by the firing thread, waiting for the dispatcher to commit them.
///
/// A plain queue rather than a channel of batches: the firing thread appends whatever it
/// popped (often a single timer) and the dispatcher takes everything queued into one
/// transaction, so a slow fsync makes transactions larger instead of stalling firing.
/// It holds at most `max_queued` timers; beyond that the firing thread waits for room
/// (a disk that cannot keep up slows firing rather than growing memory).
pub(crate) struct Outbox {
    pub(crate) queue: Mutex<Vec<FireRequest>>,
    pub(crate) room: Condvar,
    pub(crate) ready: Notify,
    pub(crate) closed: AtomicBool,
    pub(crate) max_queued: usize,
}

impl Outbox {
    /// Appends fires; waits while the queue is full. False once the outbox is closed.
    pub(crate) fn push(&self, fires: Vec<FireRequest>) -> bool {
        let mut q = self.queue.lock().expect("outbox poisoned");
        while q.len() >= self.max_queued && !self.closed.load(Ordering::Acquire) {
            q = self.room.wait(q).expect("outbox poisoned");
        }
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        q.extend(fires);
        drop(q);
        self.ready.notify_one();
        true
    }

    /// Takes up to `max` queued fires, oldest first.
    pub(crate) fn take(&self, max: usize) -> Vec<FireRequest> {
        let mut q = self.queue.lock().expect("outbox poisoned");
        let batch = if q.len() <= max {
            std::mem::take(&mut *q)
        } else {
            q.drain(..max).collect()
        };
        drop(q);
        self.room.notify_all();
        batch
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let _guard = self.queue.lock();
        self.room.notify_all();
        self.ready.notify_one();
    }
}
