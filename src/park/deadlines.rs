//! A loop's deadlines: read and write timeouts and `connection_timeout`,
//! in one timer heap with one live entry per connection.

use std::cmp::Reverse;
use std::time::Instant;

use crate::conn::parked::Wake;
use crate::park::event_loop::{EventLoop, Wait};
use crate::stats::bump;
use crate::Handler;

impl<H: Handler> EventLoop<H> {
    /// Makes sure the timer heap holds an entry for the task's earliest
    /// deadline. One live entry per task: a later deadline keeps the
    /// earlier entry, which re-arms when it fires early, so a busy
    /// connection does not fill the heap with one entry per read.
    pub(super) fn arm(&mut self, key: usize) {
        let Some(task) = self.tasks.get_mut(key).and_then(Option::as_mut) else {
            return;
        };
        let due = match (task.io_deadline, task.conn_deadline) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => return,
            },
        };
        if task.timer_at.is_none_or(|t| due < t) {
            task.timer_at = Some(due);
            self.timers.push(Reverse((due, key, task.generation)));
        }
    }

    pub(super) fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, key, generation))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let counters = &self.shared.core.counters;
            let Some(task) = self.tasks.get_mut(key).and_then(Option::as_mut) else {
                continue;
            };
            if task.generation != generation || task.timer_at != Some(at) {
                continue;
            }
            task.timer_at = None;
            let mut wake = None;
            if task.conn_deadline.is_some_and(|d| d <= now) {
                // As the thread mode's watchdog does: the handler's I/O
                // fails from now on, however it trickles its bytes.
                task.conn_deadline = None;
                task.link.cut();
                // A handler that yields rather than parks (a client that
                // never makes it wait) is told when it is resumed.
                task.cut = true;
                bump(&counters.timed_out);
                wake = Some(Wake::Ready);
            }
            if task.io_deadline.is_some_and(|d| d <= now) {
                wake = Some(Wake::TimedOut);
            }
            let parked_on_io = matches!(task.wait, Wait::Read | Wait::Write);
            match wake {
                Some(w) if parked_on_io => self.wake(key, w),
                _ => self.arm(key),
            }
        }
    }

    /// Drops the timer entries of connections that have ended (or moved
    /// on to a later entry) once they outnumber the live ones, so that a
    /// high connection rate with long timeouts does not grow the heap.
    pub(super) fn compact_timers(&mut self) {
        if self.timers.len() <= 2 * self.live + 1024 {
            return;
        }
        let tasks = &self.tasks;
        self.timers.retain(|Reverse((at, key, generation))| {
            tasks
                .get(*key)
                .and_then(Option::as_ref)
                .is_some_and(|t| t.generation == *generation && t.timer_at == Some(*at))
        });
    }
}
