//! How an outbox stops taking messages: `close` (after what is queued),
//! the handler shutting down its writing half, the cut of a slow
//! consumer, and the end of the connection (its queue dropped, counted).
//!
//! A push may be in the middle of its write when its connection ends: it
//! finds `Inner::ended` when it looks at the queue again, and drops the
//! rest of its message rather than queue it on a dead connection.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::conn::outbox_core::OutboxCore;
use crate::stats::{add, bump};

impl OutboxCore {
    /// A slow consumer: the connection is cut, its queue dropped.
    pub(super) fn cut_slow_consumer(&self) {
        let mut inner = self.lock();
        if inner.closed {
            return;
        }
        inner.closed = true;
        inner.ended = true;
        self.closed.store(true, Relaxed);
        inner.queue.clear();
        inner.bytes = 0;
        drop(inner);
        bump(&self.counters.slow_consumers);
        if let Some(link) = self.link() {
            link.state.drop_queued();
            link.cut();
            crate::report::log_or_eprint(
                log::Level::Debug,
                &format!("cut {}: a slow consumer, its outbox full", self.peer),
            );
        }
    }

    /// The socket failed: nothing more will be written.
    pub(super) fn end_queue(&self) {
        let mut inner = self.lock();
        inner.closed = true;
        inner.ended = true;
        self.closed.store(true, Relaxed);
        let dropped = std::mem::take(&mut inner.bytes);
        inner.queue.clear();
        // Counted before the lock is let go: whoever locks this outbox
        // next (the connection's own end, or a shutdown's `end_all`) then
        // sees the count, so a shutdown's report made after it does too.
        // Counted after, a thread preempted between the two could leave
        // the report short of bytes it already took.
        add(&self.counters.outbox_dropped, dropped as u64);
        self.give_up_turn(inner);
        if let Some(link) = self.link() {
            link.state.drop_queued();
        }
    }

    /// Takes no more messages; those taken are still written.
    pub(super) fn refuse_more(&self) {
        self.lock().closed = true;
        self.closed.store(true, Relaxed);
    }

    /// Ends the connection once what is queued has been written. With
    /// bytes still queued, the handler's reading ends at once: its end
    /// writes them within the write timeout, so a client that has stopped
    /// reading cannot hold the connection (and, in the thread mode, its
    /// thread) for as long as it does not read.
    pub(crate) fn close(self: &Arc<Self>) {
        let mut inner = self.lock();
        if inner.closed {
            return;
        }
        inner.closed = true;
        self.closed.store(true, Relaxed);
        inner.close_when_empty = true;
        let now = !inner.writing && inner.queue.is_empty();
        drop(inner);
        if let Some(link) = self.link() {
            match now {
                true => link.cut(),
                false => link.end_reading(),
            }
        }
    }
}
