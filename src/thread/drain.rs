//! The end of a shutdown in the thread mode, run by the run thread once
//! shutdown has begun (the beginning is `Workers::command`).

use std::time::Instant;

use crate::deadline::deadline_after;
use crate::lifecycle::report::{report, ShutdownReport, EXIT_GRACE};
use crate::stats::add;
use crate::thread::{State, Workers};

/// The drain, run by the run thread once shutdown has begun.
///
/// Phase one: close queued connections (and those waiting past the
/// queue), unless another process serves the socket from now on
/// (`Pool::serving_accepted`), in which case the workers serve them too;
/// wait up to `shutdown_timeout` for running handlers (idle ones were
/// given end of file and leave at once; new ones that have sent nothing
/// are given it at the end of their grace).
/// Phase two: shut down the sockets of those still running, close what
/// is still queued, give the threads a moment to leave, report.
pub(crate) fn drain(workers: &Workers) -> ShutdownReport {
    let core = &*workers.core;
    let serving_accepted = workers.lock().pool.serving_accepted;
    if !serving_accepted {
        drop_accepted(workers);
    }

    let start = Instant::now();
    let deadline = deadline_after(start, core.settings.shutdown_timeout);
    let grace_over = deadline_after(start, core.new_connection_grace());
    // Handlers still running once `until` has passed (or none), with
    // none of the accepted clients left to serve.
    let running_at = |until| {
        let done = |st: &State| st.pool.active == 0 && st.queue.is_empty() && st.lobby.is_empty();
        let st = workers.wait_until(&workers.control, until, done);
        st.pool.active
    };
    if running_at(grace_over) > 0 {
        for serving in workers.serving_now() {
            serving.close_if_new();
        }
    }
    let forced = running_at(deadline);
    if forced > 0 {
        for serving in workers.serving_now() {
            serving.cut();
        }
        add(&core.counters.forced_at_shutdown, forced as u64);
    }
    // Those the deadline left unserved.
    drop_accepted(workers);

    let leave_by = deadline_after(Instant::now().max(deadline), EXIT_GRACE);
    drop(workers.wait_until(&workers.control, leave_by, |st| st.pool.threads() == 0));
    // Bytes still queued for a connection cut (or left behind) are lost:
    // counted now, not when its thread gets to it.
    workers.push.flusher.end_all();
    let in_flight = {
        let st = workers.lock();
        st.active_at_stop + st.taken_while_stopping
    };
    report(&core.counters, in_flight, forced)
}

/// Closes the accepted clients not yet served, queued or held past the
/// queue, counted as dropped.
fn drop_accepted(workers: &Workers) {
    let core = &*workers.core;
    let mut st = workers.lock();
    let queued: Vec<_> = st.queue.drain(..).collect();
    let waiting: Vec<_> = st.lobby.drain(..).collect();
    drop(st);
    {
        let mut books = core.books();
        for job in &queued {
            books.release(job.admitted);
        }
    }
    let dropped = queued.len() + waiting.len();
    add(&core.counters.dropped_at_shutdown, dropped as u64);
}
