//! The deadlines: one thread that cuts connections which have outlived
//! `connection_timeout`, however they trickle their bytes, and closes
//! those that waited `queue_timeout` for a worker (`waiting.rs`).

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use crate::stats::bump;
use crate::thread::{waiting, Workers};

/// Runs until shutdown. Sleeps until the earliest deadline of a running
/// connection or of one waiting for a worker (or until one starts or
/// waits, when there is none), then shuts down the sockets of connections
/// past their deadline and closes those that waited too long.
pub(crate) fn run(workers: &Workers) {
    let core = &workers.core;
    let mut st = workers.lock();
    loop {
        if st.pool.stopping {
            return;
        }
        // Set before scanning: a connection that starts after its worker
        // was scanned sees the flag and wakes us. The flag and each
        // deadline are stored and loaded SeqCst on both sides, so at least
        // one side sees the other's store (CONCURRENCY.md).
        workers.watchdog_idle.store(true, SeqCst);
        let now = workers.now_ms();
        let mut next = u64::MAX;
        for serving in &workers.serving_now() {
            let deadline = serving.deadline_ms();
            if deadline == 0 {
                continue;
            }
            if deadline <= now {
                if serving.cut() {
                    bump(&core.counters.timed_out);
                }
            } else {
                next = next.min(deadline);
            }
        }
        let waited;
        (st, waited) = waiting::expire(workers, st);
        if st.pool.stopping {
            return;
        }
        if let Some(at) = waited {
            let ms = at.saturating_duration_since(Instant::now()).as_millis();
            let at_ms = now.saturating_add(u64::try_from(ms).unwrap_or(u64::MAX));
            next = next.min(at_ms.max(now + 1));
        }
        st = if next == u64::MAX {
            workers.timer.wait(st).unwrap_or_else(|e| e.into_inner())
        } else {
            workers.watchdog_idle.store(false, SeqCst);
            let wait = Duration::from_millis(next - now);
            workers
                .timer
                .wait_timeout(st, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0
        };
    }
}
