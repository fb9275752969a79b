//! A worker thread's life: its loop (take queued work, or accept and serve
//! inline, or wait), acting on the pool's decisions, and a drop guard that
//! gives back every count the thread raised and replaces it if it died.

use std::sync::{Arc, MutexGuard};
use std::thread;
use std::time::Instant;

use crate::admission::{self, Admitted};
use crate::conn::io::SocketIo;
use crate::conn::link::Link;
use crate::conn::serve::serve_stream;
use crate::core::Shared;
use crate::net::stream::Stream;
use crate::report::{log_or_eprint, with_skipped};
use crate::stats::bump;
use crate::thread::accept::accept_one;
use crate::thread::pool::{Grow, Step};
use crate::thread::serving::Serving;
use crate::thread::{datagrams, watch_deadline, Accepted, State, Workers};
use crate::{Addr, Error, Handler, Transport};

/// The counts a worker has raised and not yet given back; what its guard
/// restores if the thread ends in the middle of something.
#[derive(Debug, Default)]
pub(super) struct Owed {
    /// In `pool.accepting`, and (stream) holding a place in `books`.
    pub(super) accepting: bool,
    /// A held connection's books.
    pub(super) held: Option<Admitted>,
    /// In `pool.active`.
    pub(super) active: bool,
    /// Took itself off the thread count (retired).
    pub(super) retired: bool,
}

/// Starts the worker thread with serial number `id`, already counted in
/// the pool.
pub(crate) fn spawn<H: Handler>(
    shared: &Arc<Shared<H>>,
    workers: &Arc<Workers>,
    id: usize,
) -> Result<(), Error> {
    let core = &shared.core;
    let name = format!("{}-{id}", core.settings.thread_name);
    let mut builder = thread::Builder::new().name(name.clone());
    if let Some(size) = core.settings.stack_size {
        builder = builder.stack_size(size);
    }
    let serving = Arc::new(Serving::default());
    workers
        .serving
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Arc::clone(&serving));
    let (shared, w) = (Arc::clone(shared), Arc::clone(workers));
    let its_serving = Arc::clone(&serving);
    let spawned = builder.spawn(move || {
        let mut guard = Guard {
            shared: &shared,
            workers: &w,
            serving: &its_serving,
            owed: Owed::default(),
        };
        w.lock().pool.started();
        match shared.core.settings.transport {
            Transport::Stream => stream_loop(&shared, &w, &its_serving, &mut guard.owed),
            Transport::Datagram => datagrams::worker_loop(&shared, &w, &mut guard.owed),
        }
    });
    spawned.map(drop).map_err(|source| {
        forget(workers, &serving);
        Error::Spawn { name, source }
    })
}

/// A stream worker: serve queued work first, otherwise accept and serve
/// inline, otherwise wait.
fn stream_loop<H: Handler>(
    shared: &Arc<Shared<H>>,
    workers: &Arc<Workers>,
    serving: &Serving,
    owed: &mut Owed,
) {
    let core = &*shared.core;
    let settings = &core.settings;
    let mut st = workers.lock();
    loop {
        let room = core.books().room(settings);
        let step = st.pool.next_step(st.queue.len(), st.lobby.len(), room);
        let job = match step {
            Step::Stop => return,
            Step::Wait => match wait_for_work(workers, st, owed) {
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
            Step::TakeWaiting => {
                let Some(w) = st.lobby.pop_front() else {
                    continue;
                };
                let admitted;
                (st, admitted) = admit(workers, st, w.stream, w.peer, w.since);
                match admitted {
                    Some(job) => job,
                    None => continue,
                }
            }
            Step::Accept => {
                st.pool.accepting += 1;
                core.books().reserve();
                owed.accepting = true;
                drop(st);
                let accepted = accept_one(workers);
                st = workers.lock();
                st.pool.accepting -= 1;
                core.books().unreserve();
                owed.accepting = false;
                let Some((stream, peer)) = accepted else {
                    continue;
                };
                let admitted;
                (st, admitted) = admit(workers, st, stream, peer, Instant::now());
                match admitted {
                    Some(job) => job,
                    None => continue,
                }
            }
        };
        if matches!(step, Step::TakeQueued | Step::TakeWaiting) {
            // Drained with those in flight (`Pool::serving_accepted`).
            st.taken_while_stopping += usize::from(st.pool.stopping);
        }
        let admitted = job.admitted;
        owed.held = Some(admitted);
        become_busy(shared, workers, st, owed);
        // Counted in place: should a panic escape (a defect of the
        // library's own), the thread's exit gives back the client a PROXY
        // header named too.
        let held = owed.held.get_or_insert(admitted);
        serve(shared, workers, serving, job, held);
        st = finish(workers, owed);
    }
}

/// Serves one connection, reachable by shutdown and the watchdog from
/// before its first byte to its close.
fn serve<H: Handler>(
    shared: &Shared<H>,
    workers: &Workers,
    serving: &Serving,
    job: Accepted,
    admitted: &mut Admitted,
) {
    let core = &*shared.core;
    let settings = &core.settings;
    let link = Link::new(job.stream);
    let deadline = settings.connection_timeout.map_or(0, |t| {
        let ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
        workers.now_ms().saturating_add(ms)
    });
    serving.install(Arc::clone(&link), deadline);
    // A connection that starts as shutdown begins may have been missed by
    // its scan; SeqCst on both sides (CONCURRENCY.md).
    if core.stopping() {
        link.close_if_idle();
    }
    watch_deadline(workers, deadline);
    let timeouts = (settings.read_timeout, settings.write_timeout);
    let io = SocketIo::blocking(Arc::clone(&link), timeouts);
    serve_stream(
        core,
        &shared.handler,
        &link,
        io,
        &workers.push,
        job.peer,
        admitted,
    );
    drop(serving.remove());
}

/// Admits a connection just accepted, or refuses it by `max_per_source`:
/// the busy message is written and the socket closed with the lock
/// released. Returns the lock again.
pub(super) fn admit<'a>(
    workers: &'a Workers,
    st: MutexGuard<'a, State>,
    stream: Stream,
    peer: Addr,
    since: Instant,
) -> (MutexGuard<'a, State>, Option<Accepted>) {
    let core = &*workers.core;
    let admitted = core.books().admit(&core.settings, &core.counters, &peer);
    match admitted {
        Ok(admitted) => {
            let job = Accepted {
                stream,
                peer,
                admitted,
                since,
            };
            (st, Some(job))
        }
        Err(_) => {
            drop(st);
            admission::refuse(&core.settings, &core.counters, &stream);
            drop(stream);
            (workers.lock(), None)
        }
    }
}

/// Counts this worker busy and, as the pool decides, makes sure someone
/// takes the next connection. Releases the lock before acting.
pub(super) fn become_busy<H: Handler>(
    shared: &Arc<Shared<H>>,
    workers: &Arc<Workers>,
    mut st: MutexGuard<'_, State>,
    owed: &mut Owed,
) {
    let core = &*shared.core;
    st.pool.active += 1;
    owed.active = true;
    let queue_room = st.queue_room(core);
    let room = core.settings.transport == Transport::Datagram || core.books().room(&core.settings);
    let grow = match st.pool.on_busy(queue_room, room) {
        // Datagrams wait in the socket's receive buffer, bounded by the
        // kernel, whenever every worker is busy: that is how UDP works,
        // not a pool that is too small.
        Grow::Exhausted if core.settings.transport == Transport::Datagram => Grow::Nothing,
        grow => grow,
    };
    drop(st);
    act(shared, workers, grow);
}

/// Carries out a pool decision, with no lock held.
pub(super) fn act<H: Handler>(shared: &Arc<Shared<H>>, workers: &Arc<Workers>, grow: Grow) {
    let core = &*shared.core;
    match grow {
        Grow::Nothing => {}
        Grow::WakeIdle => workers.work.notify_one(),
        Grow::WakeRunThread => workers.control.notify_all(),
        Grow::Exhausted => {
            exhausted(core);
            // The run thread holds the next clients (`waiting.rs`).
            workers.control.notify_all();
        }
        Grow::Spawn(id) => {
            if let Err(e) = spawn(shared, workers, id) {
                if let Some(skipped) = core.logs.spawn_errors.admit() {
                    let cause = e.io_error().map_or(String::new(), |s| format!(": {s}"));
                    let msg = format!("cannot grow the worker pool: {e}{cause}");
                    log_or_eprint(log::Level::Warn, &with_skipped(msg, skipped));
                }
                let next = {
                    let mut st = workers.lock();
                    let queue_room = st.queue_room(core);
                    st.pool.spawn_failed(queue_room)
                };
                act(shared, workers, next);
            }
        }
    }
}

/// Every worker is busy at `max_workers`: count it and say so, naming the
/// setting to raise.
fn exhausted(core: &crate::core::Core) {
    bump(&core.counters.pool_exhausted);
    if let Some(skipped) = core.logs.exhausted.admit() {
        let s = &core.settings;
        let msg = format!(
            "all {} worker threads of {} are serving connections; new clients wait up to \
             {:?} (queue_timeout) for one to finish, then get the busy message (raise \
             max_workers; for many held, mostly idle connections use park_idle)",
            s.max_workers(),
            core.local_addr,
            s.queue_timeout
        );
        log_or_eprint(log::Level::Warn, &with_skipped(msg, skipped));
    }
}

/// Takes a served connection off the books; returns the lock.
pub(super) fn finish<'a>(workers: &'a Workers, owed: &mut Owed) -> MutexGuard<'a, State> {
    let mut st = workers.lock();
    st.pool.active -= 1;
    owed.active = false;
    if let Some(admitted) = owed.held.take() {
        workers.core.books().release(admitted);
    }
    if st.pool.stopping && st.pool.active == 0 {
        workers.control.notify_all();
    }
    st
}

/// Waits for something to do. A thread above `workers` retires after
/// `worker_idle_timeout` without work: `None` then.
pub(super) fn wait_for_work<'a>(
    workers: &'a Workers,
    mut st: MutexGuard<'a, State>,
    owed: &mut Owed,
) -> Option<MutexGuard<'a, State>> {
    let timed = st.pool.begin_wait();
    let timed_out = if timed {
        let (guard, result) = workers
            .work
            .wait_timeout(st, workers.core.settings.worker_idle_timeout)
            .unwrap_or_else(|e| e.into_inner());
        st = guard;
        result.timed_out()
    } else {
        st = workers.work.wait(st).unwrap_or_else(|e| e.into_inner());
        false
    };
    let queued = st.queue.len() + st.lobby.len();
    if st.pool.end_wait(timed_out, queued) {
        owed.retired = true;
        workers.control.notify_all();
        return None;
    }
    Some(st)
}

/// Forgets what a worker served.
fn forget(workers: &Workers, serving: &Arc<Serving>) {
    let mut all = workers.serving.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|x| !Arc::ptr_eq(x, serving));
}

/// Keeps the books right however a worker thread ends, even by a panic in
/// the library itself: gives back what it owes, takes it off the thread
/// count, forgets what it served, starts a replacement if it died, and
/// tells the run thread.
struct Guard<'a, H: Handler> {
    shared: &'a Arc<Shared<H>>,
    workers: &'a Arc<Workers>,
    serving: &'a Arc<Serving>,
    owed: Owed,
}

impl<H: Handler> Drop for Guard<'_, H> {
    fn drop(&mut self) {
        let core = &*self.shared.core;
        let workers = &**self.workers;
        let died = thread::panicking();
        // Closes a connection the thread may have died holding.
        drop(self.serving.remove());
        forget(workers, self.serving);
        let replacement = {
            let mut st = workers.lock();
            let owed = std::mem::take(&mut self.owed);
            if owed.accepting {
                st.pool.accepting -= 1;
                if core.settings.transport == Transport::Stream {
                    core.books().unreserve();
                }
            }
            if owed.active {
                st.pool.active -= 1;
            }
            if let Some(admitted) = owed.held {
                core.books().release(admitted);
            }
            match owed.retired {
                true => None,
                false => st.pool.exited(died),
            }
        };
        if let Some(id) = replacement {
            if spawn(self.shared, self.workers, id).is_err() {
                workers.lock().pool.not_started();
            }
        }
        workers.control.notify_all();
    }
}
