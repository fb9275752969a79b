//! The connection deadline: one thread that cuts connections which have
//! outlived `connection_timeout`, however they trickle their bytes.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::shared::Core;
use crate::stats::bump;

/// Runs until shutdown. Sleeps until the earliest deadline of a running
/// connection (or until one starts, when none is running), then shuts
/// down the sockets of connections past their deadline.
pub(crate) fn run(core: &Core) {
    let mut st = core.lock();
    loop {
        if st.stopping {
            return;
        }
        // Set before scanning: a connection that starts after its slot was
        // scanned sees the flag and wakes us (both sides use SeqCst).
        core.watchdog_idle.store(true, Ordering::SeqCst);
        let now = core.now_ms();
        let mut next = u64::MAX;
        for slot in core.slots.lock().unwrap_or_else(|e| e.into_inner()).iter() {
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
            core.watchdog_idle.store(false, Ordering::SeqCst);
            let wait = Duration::from_millis(next - now);
            core.timer
                .wait_timeout(st, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0
        };
    }
}
