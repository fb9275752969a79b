//! The connection deadline: one thread that cuts connections which have
//! outlived `connection_timeout`, however they trickle their bytes.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use crate::core::Core;
use crate::stats::bump;

/// Runs until shutdown. Sleeps until the earliest deadline of a running
/// connection (or until one starts, when none is running), then shuts
/// down the sockets of connections past their deadline.
pub(crate) fn run(core: &Core) {
    let mut st = core.lock();
    loop {
        if st.pool.stopping {
            return;
        }
        // Set before scanning: a connection that starts after its slot was
        // scanned sees the flag and wakes us. The flag and each slot's
        // deadline are stored and loaded SeqCst on both sides, so at least
        // one side sees the other's store (CONCURRENCY.md).
        core.watchdog_idle.store(true, SeqCst);
        let now = core.now_ms();
        let mut next = u64::MAX;
        let slots = core.slots.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for slot in &slots {
            let deadline = slot.deadline_ms();
            if deadline == 0 {
                continue;
            }
            if deadline <= now {
                if slot.cut() {
                    bump(&core.counters.timed_out);
                }
            } else {
                next = next.min(deadline);
            }
        }
        st = if next == u64::MAX {
            core.timer.wait(st).unwrap_or_else(|e| e.into_inner())
        } else {
            core.watchdog_idle.store(false, SeqCst);
            let wait = Duration::from_millis(next - now);
            core.timer
                .wait_timeout(st, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0
        };
    }
}
