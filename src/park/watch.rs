//! The watch on loops held by a handler, kept by the run thread while the
//! server serves: a handler that keeps its loop's thread (a lock held
//! across connection I/O, a sleep, a long computation) holds up every
//! connection of that loop, and may never give it back. The loop itself
//! can only tell once the handler returns to it, so the run thread looks
//! every [`EVERY`] and reports a turn held past [`STALL`] while it is
//! held: counted in `Stats::loop_stalls` then, once, and logged (at most
//! once a second) with the client's address.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::core::Core;
use crate::park::event_loop::STALL;
use crate::park::Loops;
use crate::report::{log_or_eprint, with_skipped};
use crate::stats::bump;
use crate::sys::rusage::thread_blocked;

/// How often the run thread looks.
pub(crate) const EVERY: Duration = Duration::from_millis(50);

impl Loops {
    /// Microseconds since the epoch, the unit of the loops' turn times.
    pub(crate) fn since_epoch_us(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    /// Reports each loop whose handler has held it past [`STALL`]. A loop
    /// the scheduler merely left waiting (its thread runnable, on a busy
    /// machine) is no stall, unless that lasts ten times as long.
    pub(crate) fn watch(&self, core: &Core) {
        let now = self.since_epoch_us(Instant::now());
        for l in self.lock().iter() {
            let g = &l.gauges;
            let Some((turn, since)) = g.held() else {
                continue;
            };
            let held = Duration::from_micros(now.saturating_sub(since));
            if held < STALL || g.reported.load(Relaxed) == turn {
                continue;
            }
            if held < STALL * 10 && !thread_blocked(g.tid.load(Relaxed)) {
                continue;
            }
            g.reported.store(turn, Relaxed);
            bump(&core.counters.loop_stalls);
            if let Some(skipped) = core.logs.stalls.admit() {
                let peer = g
                    .peer(g.held_by.load(Relaxed))
                    .map_or_else(|| "a client".to_string(), |p| p.to_string());
                let msg = format!(
                    "the handler serving {peer} has held its event loop for {held:?} and \
                     holds it still; every other connection of that thread waits (send \
                     blocking calls through Connection::offload; a lock held across \
                     connection I/O can hold the loop for good)"
                );
                log_or_eprint(log::Level::Warn, &with_skipped(msg, skipped));
            }
        }
    }
}
