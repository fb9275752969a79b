//! A worker thread's life: its loop (take queued work, or accept and serve
//! inline, or wait), acting on the pool's decisions, and a drop guard that
//! gives back every count the thread raised and replaces it if it died.
//! Also the run thread's part: accepting ahead into the queue when every
//! worker is busy.

use std::sync::{Arc, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::accept;
use crate::admission::{self, Admitted};
use crate::batch::{self, Inbox, Outbox};
use crate::core::{Accepted, Core, Shared, State};
use crate::net::listener::Listener;
use crate::net::stream::Stream;
use crate::pool::{Grow, Step};
use crate::report::{log_or_eprint, with_skipped};
use crate::serve;
use crate::slot::Slot;
use crate::stats::bump;
use crate::{Addr, Error, Handler, Transport};

/// The counts a worker has raised and not yet given back; what its guard
/// restores if the thread ends in the middle of something.
#[derive(Debug, Default)]
struct Seat {
    /// In `pool.accepting`, and (stream) holding a place in `books`.
    accepting: bool,
    /// A held connection's books.
    held: Option<Admitted>,
    /// In `pool.active`.
    active: bool,
    /// Took itself off the thread count (retired).
    retired: bool,
}

/// Starts the worker thread with serial number `id`, already counted in
/// the pool.
pub(crate) fn spawn<H: Handler>(shared: &Arc<Shared<H>>, id: usize) -> Result<(), Error> {
    let core = &shared.core;
    let name = format!("{}-{id}", core.settings.thread_name);
    let mut builder = thread::Builder::new().name(name.clone());
    if let Some(size) = core.settings.stack_size {
        builder = builder.stack_size(size);
    }
    let slot = Arc::new(Slot::default());
    core.slots
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Arc::clone(&slot));
    let worker = Arc::clone(shared);
    let worker_slot = Arc::clone(&slot);
    let spawned = builder.spawn(move || {
        let mut guard = Guard {
            shared: &worker,
            slot: &worker_slot,
            seat: Seat::default(),
        };
        worker.core.lock().pool.started();
        match worker.core.settings.transport {
            Transport::Stream => stream_loop(&worker, &worker_slot, &mut guard.seat),
            Transport::Datagram => datagram_loop(&worker, &mut guard.seat),
        }
    });
    spawned.map(drop).map_err(|source| {
        forget_slot(core, &slot);
        Error::Spawn { name, source }
    })
}

/// A stream worker: serve queued work first, otherwise accept and serve
/// inline, otherwise wait.
fn stream_loop<H: Handler>(shared: &Arc<Shared<H>>, slot: &Arc<Slot>, seat: &mut Seat) {
    let core = &*shared.core;
    let settings = &core.settings;
    let mut st = core.lock();
    loop {
        let step = st.pool.next_step(st.queue.len(), st.books.room(settings));
        let job = match step {
            Step::Stop => return,
            Step::Wait => match wait_for_work(core, st, seat) {
                Some(guard) => {
                    st = guard;
                    continue;
                }
                None => return,
            },
            Step::TakeQueued => match st.queue.pop_front() {
                Some(job) => job,
                None => continue,
            },
            Step::Accept => {
                st.pool.accepting += 1;
                st.books.reserve();
                seat.accepting = true;
                drop(st);
                let accepted = accept::accept_one(core);
                st = core.lock();
                st.pool.accepting -= 1;
                st.books.unreserve();
                seat.accepting = false;
                let Some((stream, peer)) = accepted else {
                    continue;
                };
                let admitted;
                (st, admitted) = admit(core, st, stream, peer);
                match admitted {
                    Some(job) => job,
                    None => continue,
                }
            }
        };
        seat.held = Some(job.admitted);
        become_busy(shared, st, seat);
        let mut admitted = job.admitted;
        serve::serve_stream(shared, slot, job, &mut admitted);
        seat.held = Some(admitted);
        st = finish(core, seat);
    }
}

/// A datagram worker: while it is the one worker receiving (see `batch`),
/// receive a batch on the shared socket and serve it inline; otherwise
/// stand by. The pool's books are kept per batch.
///
/// A batch expected to take long is served while another worker takes
/// over the receiving, as a stream worker's connection is (`become_busy`).
/// A short one is served keeping the receiving, so that no thread is woken
/// for it: the run thread hands the receiving over if it takes long after
/// all (`supervise_datagrams`).
fn datagram_loop<H: Handler>(shared: &Arc<Shared<H>>, seat: &mut Seat) {
    let core = &*shared.core;
    let Listener::Datagram(socket) = &core.listener else {
        return;
    };
    let mut inbox = Inbox::new(socket, core.settings.max_datagram);
    let mut outbox = Outbox::new(socket.clone());
    let mut ready = Vec::with_capacity(batch::SLOTS);
    let mut st = core.lock();
    loop {
        match st.pool.next_step(0, true) {
            Step::Stop => return,
            Step::Wait | Step::TakeQueued => match wait_for_work(core, st, seat) {
                Some(guard) => {
                    st = guard;
                    continue;
                }
                None => return,
            },
            Step::Accept => {}
        }
        st.pool.accepting += 1;
        seat.accepting = true;
        drop(st);
        let received = accept::receive_batch(core, socket, &mut inbox, &mut ready);
        st = core.lock();
        st.pool.accepting -= 1;
        seat.accepting = false;
        if !received {
            continue;
        }
        st.pool.batches += 1;
        let batch = st.pool.batches;
        if inbox.expect_long(ready.len()) {
            become_busy(shared, st, seat);
        } else {
            st.pool.active += 1;
            seat.active = true;
            st.pool.receiver_busy_since = Some((Instant::now(), batch));
            let wake = std::mem::take(&mut st.pool.supervisor_asleep);
            drop(st);
            if wake {
                core.control.notify_all();
            }
        }
        outbox = serve::serve_batch(shared, socket, &mut inbox, &ready, outbox);
        st = finish(core, seat);
        if st.pool.receiver_busy_since.is_some_and(|(_, b)| b == batch) {
            st.pool.receiver_busy_since = None;
        }
    }
}

/// Admits a connection just accepted, or refuses it by `max_per_source`:
/// the busy message is written and the socket closed with the lock
/// released. Returns the lock again.
fn admit<'a>(
    core: &'a Core,
    mut st: MutexGuard<'a, State>,
    stream: Stream,
    peer: Addr,
) -> (MutexGuard<'a, State>, Option<Accepted>) {
    match st.books.admit(&core.settings, &core.counters, &peer) {
        Ok(admitted) => {
            let job = Accepted {
                stream,
                peer,
                admitted,
            };
            (st, Some(job))
        }
        Err(_) => {
            drop(st);
            admission::refuse(&core.settings, &core.counters, &stream);
            drop(stream);
            (core.lock(), None)
        }
    }
}

/// Counts this worker busy and, as the pool decides, makes sure someone
/// takes the next connection. Releases the lock before acting.
fn become_busy<H: Handler>(
    shared: &Arc<Shared<H>>,
    mut st: MutexGuard<'_, State>,
    seat: &mut Seat,
) {
    let core = &*shared.core;
    st.pool.active += 1;
    seat.active = true;
    let queue_room = st.queue_room(&core.settings);
    let room = st.books.room(&core.settings) || core.settings.transport == Transport::Datagram;
    let grow = match st.pool.on_busy(queue_room, room) {
        // Datagrams wait in the socket's receive buffer, bounded by the
        // kernel, whenever every worker is busy: that is how UDP works,
        // not a pool that is too small.
        Grow::Exhausted if core.settings.transport == Transport::Datagram => Grow::Nothing,
        grow => grow,
    };
    drop(st);
    act(shared, grow);
}

/// Carries out a pool decision, with no lock held.
fn act<H: Handler>(shared: &Arc<Shared<H>>, grow: Grow) {
    let core = &*shared.core;
    match grow {
        Grow::Nothing => {}
        Grow::WakeIdle => core.work.notify_one(),
        Grow::WakeRunThread => core.control.notify_all(),
        Grow::Exhausted => exhausted(core),
        Grow::Spawn(id) => {
            if let Err(e) = spawn(shared, id) {
                if let Some(skipped) = core.logs.spawn_errors.admit() {
                    let cause = e.io_error().map_or(String::new(), |s| format!(": {s}"));
                    let msg = format!("cannot grow the worker pool: {e}{cause}");
                    log_or_eprint(log::Level::Warn, &with_skipped(msg, skipped));
                }
                let next = {
                    let mut st = core.lock();
                    let queue_room = st.queue_room(&core.settings);
                    st.pool.spawn_failed(queue_room)
                };
                act(shared, next);
            }
        }
    }
}

/// Every worker is busy at `max_workers`: count it and say so, naming the
/// setting to raise.
fn exhausted(core: &Core) {
    bump(&core.counters.pool_exhausted);
    if let Some(skipped) = core.logs.exhausted.admit() {
        let s = &core.settings;
        let msg = format!(
            "all {} worker threads of {} are serving connections; new clients wait in the \
             listen backlog until one finishes (raise max_workers, now {}, or use queue)",
            s.max_workers(),
            core.local_addr,
            s.max_workers()
        );
        log_or_eprint(log::Level::Warn, &with_skipped(msg, skipped));
    }
}

/// Takes a served connection off the books; returns the lock.
fn finish<'a>(core: &'a Core, seat: &mut Seat) -> MutexGuard<'a, State> {
    let mut st = core.lock();
    st.pool.active -= 1;
    seat.active = false;
    if let Some(admitted) = seat.held.take() {
        st.books.release(admitted);
    }
    if st.pool.stopping && st.pool.active == 0 {
        core.control.notify_all();
    }
    st
}

/// Waits for something to do. A thread above `workers` retires after
/// `worker_idle_timeout` without work: `None` then.
fn wait_for_work<'a>(
    core: &'a Core,
    mut st: MutexGuard<'a, State>,
    seat: &mut Seat,
) -> Option<MutexGuard<'a, State>> {
    let timed = st.pool.begin_wait();
    let timed_out = if timed {
        let (guard, result) = core
            .work
            .wait_timeout(st, core.settings.worker_idle_timeout)
            .unwrap_or_else(|e| e.into_inner());
        st = guard;
        result.timed_out()
    } else {
        st = core.work.wait(st).unwrap_or_else(|e| e.into_inner());
        false
    };
    let queued = st.queue.len();
    if st.pool.end_wait(timed_out, queued) {
        seat.retired = true;
        core.control.notify_all();
        return None;
    }
    Some(st)
}

/// The run thread's part while serving: for a stream, fill the queue
/// (`fill_queue`); for datagrams, watch the receiving
/// (`supervise_datagrams`). Returns when shutdown begins.
pub(crate) fn run_thread<H: Handler>(shared: &Arc<Shared<H>>) {
    match shared.core.listener {
        Listener::Datagram(_) => supervise_datagrams(shared),
        _ => fill_queue(&shared.core),
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
fn supervise_datagrams<H: Handler>(shared: &Arc<Shared<H>>) {
    let core = &*shared.core;
    let mut st = core.lock();
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
                act(shared, grow);
                st = core.lock();
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
            st = core.control.wait(st).unwrap_or_else(|e| e.into_inner());
            st.pool.supervisor_asleep = false;
            quiet = 0;
        } else {
            st = core
                .control
                .wait_timeout(st, TICK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The run thread's part while serving a stream: when every worker is busy
/// and the pool is at `max_workers`, accept ahead into the queue (if
/// `queue(n)` is set). Returns when shutdown begins.
fn fill_queue(core: &Core) {
    let settings = &core.settings;
    let stream = !matches!(core.listener, Listener::Datagram(_));
    let mut st = core.lock();
    loop {
        if st.pool.stopping {
            return;
        }
        let room = st.books.room(settings);
        if !stream || !st.pool.run_thread_may_accept(st.queue.len(), room) {
            st = core.control.wait(st).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        st.pool.run_accepting = true;
        st.books.reserve();
        drop(st);
        let accepted = accept::accept_one(core);
        st = core.lock();
        st.pool.run_accepting = false;
        st.books.unreserve();
        if let Some((stream, peer)) = accepted {
            let admitted;
            (st, admitted) = admit(core, st, stream, peer);
            st.queue.extend(admitted);
        }
        // Workers that found the run thread accepting went idle; one may
        // now take the queued job or accept itself.
        if st.pool.claim_idle() {
            core.work.notify_one();
        }
    }
}

/// Forgets a worker's slot.
fn forget_slot(core: &Core, slot: &Arc<Slot>) {
    let mut slots = core.slots.lock().unwrap_or_else(|e| e.into_inner());
    slots.retain(|x| !Arc::ptr_eq(x, slot));
}

/// Keeps the books right however a worker thread ends, even by a panic in
/// the library itself: gives back what its seat holds, takes it off the
/// thread count, forgets its slot, starts a replacement if it died, and
/// tells the run thread.
struct Guard<'a, H: Handler> {
    shared: &'a Arc<Shared<H>>,
    slot: &'a Arc<Slot>,
    seat: Seat,
}

impl<H: Handler> Drop for Guard<'_, H> {
    fn drop(&mut self) {
        let core = &*self.shared.core;
        let died = thread::panicking();
        // Closes a connection the thread may have died holding.
        drop(self.slot.remove());
        forget_slot(core, self.slot);
        let replacement = {
            let mut st = core.lock();
            let seat = std::mem::take(&mut self.seat);
            if seat.accepting {
                st.pool.accepting -= 1;
                if core.settings.transport == Transport::Stream {
                    st.books.unreserve();
                }
            }
            if seat.active {
                st.pool.active -= 1;
            }
            if let Some(admitted) = seat.held {
                st.books.release(admitted);
            }
            match seat.retired {
                true => None,
                false => st.pool.exited(died),
            }
        };
        if let Some(id) = replacement {
            if spawn(self.shared, id).is_err() {
                core.lock().pool.not_started();
            }
        }
        core.control.notify_all();
    }
}
