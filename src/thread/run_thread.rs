//! The run thread's part while serving (the caller of `run()`): for a
//! stream, fill the queue; for datagrams, watch the receiving.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::Shared;
use crate::net::listener::Listener;
use crate::thread::accept::accept_one;
use crate::thread::pool::Grow;
use crate::thread::waiting::Waiting;
use crate::thread::worker::{act, admit};
use crate::thread::Workers;
use crate::Handler;

/// The run thread's part while serving: for a stream, fill the queue
/// (`fill_queue`); for datagrams, watch the receiving
/// (`supervise_datagrams`). Returns when shutdown begins.
pub(crate) fn run<H: Handler>(shared: &Arc<Shared<H>>, workers: &Arc<Workers>) {
    match shared.core.listener {
        Listener::Datagram(_) => supervise_datagrams(shared, workers),
        _ => fill_queue(workers),
    }
}

/// How often the run thread of a datagram server looks at the receiving
/// while datagrams come.
const TICK: Duration = Duration::from_millis(1);
/// A batch served keeping the receiving that is still running after this
/// long was not the short one expected: another worker takes over.
const TAKE_OVER: Duration = Duration::from_micros(200);
/// Looks without a batch after which the run thread sleeps until the next.
const QUIET_TICKS: u32 = 100;

/// The run thread's part while serving datagrams. One worker receives at
/// a time and serves short batches itself, keeping the receiving; when
/// such a batch runs past [`TAKE_OVER`] (its handler blocked, say), the
/// datagrams behind it would wait in the socket's buffer, so the receiving
/// is handed to another worker, an idle one or a new one up to
/// `max_workers`, as the pool grows for a busy stream server. So is it
/// when no worker receives and none is busy (one died). Looks every
/// [`TICK`] while datagrams come, and sleeps once the server has been quiet
/// for [`QUIET_TICKS`] looks, until the next short batch wakes it.
fn supervise_datagrams<H: Handler>(shared: &Arc<Shared<H>>, workers: &Arc<Workers>) {
    let mut st = workers.lock();
    let mut seen = st.pool.batches;
    let mut quiet = 0;
    loop {
        if st.pool.stopping {
            return;
        }
        let stuck = st
            .pool
            .receiver_busy_since
            .is_some_and(|(since, _)| since.elapsed() >= TAKE_OVER);
        if st.pool.nobody_receiving() && (stuck || st.pool.active == 0) {
            st.pool.receiver_busy_since = None;
            let grow = match st.pool.on_busy(false, true) {
                // As in `become_busy`: the socket's buffer holds the rest.
                Grow::Exhausted => Grow::Nothing,
                grow => grow,
            };
            if grow != Grow::Nothing {
                drop(st);
                act(shared, workers, grow);
                st = workers.lock();
                continue;
            }
        }
        if st.pool.batches == seen {
            quiet += 1;
        } else {
            (seen, quiet) = (st.pool.batches, 0);
        }
        if quiet >= QUIET_TICKS && st.pool.receiver_busy_since.is_none() {
            st.pool.supervisor_asleep = true;
            st = workers.control.wait(st).unwrap_or_else(|e| e.into_inner());
            st.pool.supervisor_asleep = false;
            quiet = 0;
        } else {
            st = workers
                .control
                .wait_timeout(st, TICK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The run thread's part while serving a stream: when every worker is busy
/// and the pool is at `max_workers`, accept ahead into the queue (if
/// `queue(n)` is set), and past it hold connections for the first worker
/// free, each for at most `queue_timeout` (`waiting.rs`). Returns when
/// shutdown begins.
fn fill_queue(workers: &Workers) {
    let core = &*workers.core;
    let settings = &core.settings;
    let mut st = workers.lock();
    loop {
        if st.pool.stopping {
            return;
        }
        let room = core.books().room(settings);
        let into_queue = st
            .pool
            .run_thread_may_accept(st.queue.len(), st.lobby.len(), room);
        if !into_queue && !st.pool.run_thread_may_hold(st.lobby.len(), room) {
            st = workers.control.wait(st).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        st.pool.run_accepting = true;
        if into_queue {
            core.books().reserve();
        }
        drop(st);
        let accepted = accept_one(workers);
        let since = Instant::now();
        st = workers.lock();
        st.pool.run_accepting = false;
        match (accepted, into_queue) {
            (Some((stream, peer)), true) => {
                core.books().unreserve();
                let admitted;
                (st, admitted) = admit(workers, st, stream, peer, since);
                st.queue.extend(admitted);
            }
            (Some((stream, peer)), false) => {
                st.lobby.push_back(Waiting {
                    stream,
                    peer,
                    since,
                });
            }
            (None, true) => core.books().unreserve(),
            (None, false) => {}
        }
        // The watchdog keeps `queue_timeout`: it may sleep with nothing
        // to wait for.
        workers.timer.notify_all();
        // Workers that found the run thread accepting went idle; one may
        // now take the queued job or accept itself.
        if st.pool.claim_idle() {
            workers.work.notify_one();
        }
    }
}
