//! The thread engine (the default mode): a pool of worker threads, each
//! serving one connection at a time with blocking I/O.
//!
//! * `worker.rs`: a worker thread's life: take queued work, or accept and
//!   serve inline, or wait; and the guard that gives back what it counted.
//! * `pool.rs`: the pool's policy, pure and unit-tested: when to accept,
//!   wait, grow or retire.
//! * `accept.rs`: taking one connection (or one batch of datagrams) off the
//!   listener, blocking, with back-off.
//! * `run_thread.rs`: the caller of `run()` while serving: accepting ahead
//!   into the queue, or watching a datagram server's receiving.
//! * `datagrams.rs`: a datagram worker's loop and its batches.
//! * `serving.rs`: the connection each worker serves, where shutdown and
//!   the watchdog reach it.
//! * `watchdog.rs`: the connection deadline.
//! * `drain.rs`: the end of a shutdown.
//!
//! A connection's own steps (options, PROXY header, TLS, the handler) are
//! in `conn/`, shared with the parked engine. See `CONCURRENCY.md` for the
//! locks and who wakes whom.

mod accept;
mod datagrams;
mod drain;
mod pool;
mod run_thread;
mod serving;
mod waiting;
mod watchdog;
mod worker;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::admission::Admitted;
use crate::conn::flusher::Flusher;
use crate::conn::outbox_core::PushSetup;
use crate::core::{Core, Engine, Gauges, Shared};
use crate::deadline::deadline_after;
use crate::lifecycle::report::ShutdownReport;
use crate::lifecycle::Command;
use crate::net::stream::Stream;
use crate::{Addr, Error, Handler, Transport};

use pool::Pool;
use serving::Serving;

/// An accepted stream: waiting in the queue, or being served.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) stream: Stream,
    pub(crate) peer: Addr,
    pub(crate) admitted: Admitted,
    /// When it was accepted: how long it has waited for a worker.
    pub(crate) since: Instant,
}

/// Everything guarded by [`Workers::state`].
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) pool: Pool,
    /// Accepted connections not yet started (bounded by `queue`).
    pub(crate) queue: VecDeque<Accepted>,
    /// Accepted past the queue, unadmitted, once the pool is exhausted
    /// (bounded by `backlog`; see `waiting.rs`).
    pub(crate) lobby: VecDeque<waiting::Waiting>,
    /// Handlers running when shutdown began: what the drain waits for.
    pub(crate) active_at_stop: usize,
    /// Accepted clients (queued, or held past the queue) that a worker
    /// took after shutdown began, to be drained with those in flight
    /// (`Pool::serving_accepted`).
    pub(crate) taken_while_stopping: usize,
}

impl State {
    /// Whether the queue could take another connection.
    pub(crate) fn queue_room(&self, core: &Core) -> bool {
        self.queue.len() < core.settings.queue
    }
}

/// The thread engine of one server: its pool's state, the condition
/// variables its threads wait on, and what each worker serves.
pub(crate) struct Workers {
    pub(crate) core: Arc<Core>,
    state: Mutex<State>,
    /// Idle workers wait here for queued work or a chance to accept.
    pub(crate) work: Condvar,
    /// The run thread waits here: for a chance to fill the queue, and during
    /// shutdown for handlers to finish and threads to exit.
    pub(crate) control: Condvar,
    /// Back-off sleeps and the watchdog wait here; shutdown wakes them.
    pub(crate) timer: Condvar,
    /// What every worker serves, for the watchdog and shutdown.
    pub(crate) serving: Mutex<Vec<Arc<Serving>>>,
    /// The deadline watchdog sleeps with no deadline to wait for: a
    /// connection that starts must wake it.
    pub(crate) watchdog_idle: AtomicBool,
    /// Origin of the millisecond deadlines.
    epoch: Instant,
    /// What each connection needs for an outbox.
    pub(crate) push: Arc<PushSetup>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers").finish_non_exhaustive()
    }
}

impl Workers {
    fn new(core: Arc<Core>) -> Self {
        let mut pool = Pool::new(core.settings.limits());
        if core.settings.transport == Transport::Datagram {
            pool.receive_alone();
        }
        let push = Arc::new(PushSetup {
            max: core.settings.max_outbox,
            counters: Arc::clone(&core.counters),
            flusher: Flusher::new(&core.settings.thread_name),
        });
        Workers {
            push,
            core,
            state: Mutex::new(State {
                pool,
                queue: VecDeque::new(),
                lobby: VecDeque::new(),
                active_at_stop: 0,
                taken_while_stopping: 0,
            }),
            work: Condvar::new(),
            control: Condvar::new(),
            timer: Condvar::new(),
            serving: Mutex::default(),
            watchdog_idle: AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // Only counts and queues change under this lock, no user code and
        // no library code that can panic runs under it, so a poisoned lock
        // still holds consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Milliseconds since the epoch, the unit of deadlines (never 0).
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// Sleeps for `d` unless shutdown begins first; returns whether it did.
    pub(crate) fn sleep_unless_stopped(&self, d: Duration) -> bool {
        let deadline = deadline_after(Instant::now(), d);
        drop(self.wait_until(&self.timer, deadline, |st| st.pool.stopping));
        self.core.stopping()
    }

    /// Waits on `cv` until `done` holds or `deadline` passes; returns the
    /// lock, for the caller to see which.
    pub(crate) fn wait_until(
        &self,
        cv: &Condvar,
        deadline: Instant,
        done: impl Fn(&State) -> bool,
    ) -> MutexGuard<'_, State> {
        let mut st = self.lock();
        while !done(&st) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        st
    }

    fn serving_now(&self) -> Vec<Arc<Serving>> {
        self.serving
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Engine for Workers {
    fn command(&self, command: Command) {
        match command {
            Command::Stop => {
                {
                    let mut st = self.lock();
                    if st.pool.stopping {
                        return;
                    }
                    st.pool.stop();
                    st.pool.serving_accepted =
                        self.core.held_elsewhere() || self.core.settings.reuse_port;
                    st.active_at_stop = st.pool.active;
                }
                self.work.notify_all();
                self.control.notify_all();
                self.timer.notify_all();
                for serving in self.serving_now() {
                    serving.close_if_idle();
                }
            }
        }
    }

    fn gauges(&self) -> Gauges {
        let st = self.lock();
        Gauges {
            queued: (st.queue.len() + st.lobby.len()) as u64,
            active: st.pool.active as u64,
            threads: st.pool.threads() as u64,
            parked: 0,
        }
    }
}

/// Serves with a pool of worker threads until shutdown, then drains and
/// reports.
pub(crate) fn run<H: Handler>(shared: &Arc<Shared<H>>) -> Result<ShutdownReport, Error> {
    let core = &*shared.core;
    let settings = &core.settings;
    if core.held_elsewhere() {
        // A passed socket may come from a process that served it parked
        // (an upgrade from `park_idle`): its mode belongs to the socket.
        let _ = core.listener.sock_ref().set_nonblocking(false);
    }
    let workers = Arc::new(Workers::new(Arc::clone(&shared.core)));
    core.start_engine(Arc::clone(&workers) as Arc<dyn Engine>);
    let ids = workers.lock().pool.start();
    let mut started = Ok(());
    for id in ids {
        if started.is_err() {
            // Counted but never started: take them off again.
            workers.lock().pool.not_started();
            continue;
        }
        started = worker::spawn(shared, &workers, id);
        if started.is_err() {
            workers.lock().pool.not_started();
        }
    }
    // The watchdog keeps both deadlines: `connection_timeout`'s and
    // `queue_timeout`'s (stream only).
    let watched = settings.connection_timeout.is_some() || settings.transport == Transport::Stream;
    let watchdog = match (&started, watched) {
        (Ok(()), true) => {
            let w = Arc::clone(&workers);
            let name = format!("{}-deadline", settings.thread_name);
            let spawned = std::thread::Builder::new()
                .name(name.clone())
                .spawn(move || watchdog::run(&w));
            Some(spawned.map_err(|source| Error::Spawn { name, source }))
        }
        _ => None,
    };
    if let Err(e) = started.and(watchdog.transpose().map(drop)) {
        core.command(Command::Stop);
        drain::drain(&workers);
        workers.push.flusher.stop();
        return Err(e);
    }
    core.log_serving(&format!("with {} workers", settings.workers()));
    run_thread::run(shared, &workers);
    let report = drain::drain(&workers);
    workers.push.flusher.stop();
    Ok(report)
}

/// Records a new connection's deadline where the watchdog reads it, and
/// wakes the watchdog if it sleeps with none to wait for. SeqCst on both
/// sides (CONCURRENCY.md).
pub(crate) fn watch_deadline(workers: &Workers, deadline_ms: u64) {
    if deadline_ms != 0 && workers.watchdog_idle.load(SeqCst) {
        let _st = workers.lock();
        workers.timer.notify_all();
    }
}
