//! Connections waiting for a worker, and `queue_timeout`: no client waits
//! unseen and for ever when every worker is busy.
//!
//! Once the pool is exhausted (every worker busy at `max_workers`, the
//! queue full or off), the run thread goes on accepting, up to `backlog`
//! connections, and holds them here unadmitted, in the order they came. A
//! worker that frees up takes the oldest (`Step::TakeWaiting`). The
//! deadline watchdog closes those, and queued ones, that have waited
//! `queue_timeout`, after the busy message.

use std::sync::MutexGuard;
use std::time::Instant;

use crate::admission;
use crate::deadline::deadline_after;
use crate::net::stream::Stream;
use crate::report::{log_or_eprint, with_skipped};
use crate::stats::add;
use crate::thread::{State, Workers};
use crate::Addr;

/// A connection accepted past the queue: not yet admitted (it holds no
/// place under `max_connections`), waiting for a worker.
#[derive(Debug)]
pub(crate) struct Waiting {
    pub(crate) stream: Stream,
    pub(crate) peer: Addr,
    /// When it was accepted.
    pub(crate) since: Instant,
}

/// Closes every connection, queued or waiting, that has waited
/// `queue_timeout` for a worker. Returns the lock again and when the next
/// one will have waited that long, if any waits.
pub(crate) fn expire<'a>(
    workers: &'a Workers,
    mut st: MutexGuard<'a, State>,
) -> (MutexGuard<'a, State>, Option<Instant>) {
    let core = &*workers.core;
    let timeout = core.settings.queue_timeout;
    let now = Instant::now();
    let late = |since: Instant| now.saturating_duration_since(since) >= timeout;
    let mut closing = Vec::new();
    while st.lobby.front().is_some_and(|w| late(w.since)) {
        closing.extend(st.lobby.pop_front().map(|w| w.stream));
    }
    let mut released = Vec::new();
    while st.queue.front().is_some_and(|job| late(job.since)) {
        if let Some(job) = st.queue.pop_front() {
            released.push(job.admitted);
            closing.push(job.stream);
        }
    }
    let oldest = [
        st.lobby.front().map(|w| w.since),
        st.queue.front().map(|j| j.since),
    ]
    .into_iter()
    .flatten()
    .min();
    if closing.is_empty() {
        return (st, oldest.map(|since| deadline_after(since, timeout)));
    }
    drop(st);
    {
        let mut books = core.books();
        for admitted in released {
            books.release(admitted);
        }
    }
    add(&core.counters.queue_timeouts, closing.len() as u64);
    for stream in &closing {
        admission::close_busy(&core.settings, stream);
    }
    drop(closing);
    if let Some(skipped) = core.logs.queue_timeouts.admit() {
        let s = &core.settings;
        let msg = format!(
            "closed clients of {} that waited {:?} (queue_timeout) for a worker: all {} \
             worker threads are serving connections (raise max_workers; for many held, \
             mostly idle connections use park_idle)",
            core.local_addr,
            s.queue_timeout,
            s.max_workers()
        );
        log_or_eprint(log::Level::Warn, &with_skipped(msg, skipped));
    }
    let st = workers.lock();
    // Others may have come since: the caller looks again.
    (st, Some(now))
}
