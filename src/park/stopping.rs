//! A loop at shutdown (idle connections closed at once, the rest cut
//! after `shutdown_timeout`), what it reports of itself (stalls and
//! internal errors), and what it gives back when it ends, dying included.

use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;

use crate::conn::parked::{Abandoning, Wake};
use crate::deadline::deadline_after;
use crate::park::event_loop::{EventLoop, Wait, STALL};
use crate::report::{log_or_eprint, with_skipped};
use crate::stats::{add, bump};
use crate::sys::rusage;
use crate::{Addr, Handler};

impl<H: Handler> EventLoop<H> {
    /// Shutdown has begun: stop accepting, close idle connections now
    /// (as the thread mode does, through each connection's `Link`: a
    /// parked read then wakes to end of file), new ones that have received
    /// nothing at the end of their grace, and give the others
    /// `shutdown_timeout`.
    pub(super) fn begin_stop(&mut self, now: Instant) {
        let core = Arc::clone(&self.shared.core);
        let listener_fd = core.listener.sock_ref().as_raw_fd();
        let _ = self.poll.registry().deregister(&mut SourceFd(&listener_fd));
        self.accept_more = false;
        self.accept_paused_until = None;
        // From when shutdown began, not from this loop's next turn: a loop
        // held by a handler must not force its connections after the run
        // thread has reported them forced and returned.
        let since = self.loops.stop_at.get().copied().unwrap_or(now).min(now);
        self.force_at = Some(deadline_after(since, core.settings.shutdown_timeout));
        self.grace_over_at = Some(deadline_after(since, core.new_connection_grace()));
        for task in self.tasks.iter().flatten() {
            task.link.close_if_idle();
        }
    }

    /// `shutdown_timeout` has passed: cut every connection still served;
    /// their I/O fails from now on, so their handlers end.
    pub(super) fn force_all(&mut self) {
        self.forced = true;
        let mut forced = 0;
        let mut parked = Vec::new();
        for (key, task) in self.tasks.iter_mut().enumerate() {
            let Some(task) = task else { continue };
            forced += 1;
            task.cut = true;
            task.link.cut();
            if matches!(task.wait, Wait::Read | Wait::Write) {
                parked.push(key);
            }
        }
        add(&self.shared.core.counters.forced_at_shutdown, forced);
        self.gauges
            .forced
            .store(true, std::sync::atomic::Ordering::Relaxed);
        for key in parked {
            self.wake(key, Wake::Cut);
        }
    }

    /// A handler kept the thread for `held` (wall-clock) before it parked
    /// or ended. It stalled the loop if, during this turn, the thread
    /// blocked (a `sleep`, a lock, blocking I/O) or computed for that long;
    /// not if the scheduler merely left it waiting on a busy machine.
    pub(super) fn maybe_stalled(&mut self, peer: &Addr, held: Duration) {
        let now = rusage::this_thread();
        let before = std::mem::replace(&mut self.turn_usage, now);
        let blocked = now.blocked > before.blocked;
        let computed = now.cpu.saturating_sub(before.cpu) >= STALL;
        if blocked || computed {
            self.stalled(peer, held);
        } else {
            crate::report::log_or_eprint(
                log::Level::Debug,
                &format!("event loop descheduled for {held:?} while serving {peer}"),
            );
        }
    }

    pub(super) fn stalled(&self, peer: &Addr, held: Duration) {
        let core = &self.shared.core;
        bump(&core.counters.loop_stalls);
        if let Some(skipped) = core.logs.stalls.admit() {
            let msg = format!(
                "the handler serving {peer} held its event loop for {held:?} without waiting \
                 on its connection; every other connection of that thread waited too (send \
                 blocking calls through Connection::offload)"
            );
            log_or_eprint(log::Level::Warn, &with_skipped(msg, skipped));
        }
    }

    pub(super) fn log_internal(&self, msg: &str) {
        if let Some(skipped) = self.shared.core.logs.internal.admit() {
            log_or_eprint(log::Level::Error, &with_skipped(msg.to_string(), skipped));
        }
    }
}

/// A loop that ends with connections still on it died (a defect of the
/// library's own: every panic of a handler is caught in its coroutine).
/// Dropping their coroutines unwinds each suspended handler's stack, its
/// locks and sockets let go, and gives back what each held on the books
/// (`task.rs`'s `Held`), so that `max_connections`, `max_per_source` and
/// the gauges stay true and a replacement loop can serve new clients.
impl<H: Handler> Drop for EventLoop<H> {
    fn drop(&mut self) {
        if self.live > 0 {
            // `room_wanted` stays as it is: loops stalled at
            // `max_connections` learn of the places given back here when a
            // connection ends on one of them, or from the replacement loop
            // (which may not start, descriptors being short).
            // Not counted as the handlers' panics.
            let _abandoning = Abandoning::begin();
            self.tasks.clear();
        }
        self.gauges.live.store(0, Relaxed);
        self.gauges.parked.store(0, Relaxed);
        self.loops.remove(&self.gauges);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Mutex;

    /// Set by a test to a server's thread name: the next turn of one of
    /// that server's loops panics, as a defect in the loop would.
    pub(crate) static DIE: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());

    pub(crate) fn doom(thread_name: &'static str) {
        DIE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(thread_name);
    }

    /// Whether the loops of the server named so have taken their defect.
    pub(crate) fn doomed(thread_name: &str) -> bool {
        let doomed = DIE.lock().unwrap_or_else(|e| e.into_inner());
        doomed.contains(&thread_name)
    }

    pub(crate) fn die_if_told(thread_name: &str) {
        let mut doomed = DIE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = doomed.iter().position(|n| *n == thread_name) {
            doomed.swap_remove(i);
            drop(doomed);
            panic!("an injected defect in the event loop");
        }
    }
}
