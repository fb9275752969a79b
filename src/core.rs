//! What every thread of one server shares: settings, socket, counters,
//! the state lock and its condition variables, and the start of shutdown.
//!
//! See `CONCURRENCY.md` beside this file for the lock, who waits on which
//! condition variable, and each atomic's ordering.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::admission::{Admitted, Books};
use crate::deadline::deadline_after;
use crate::loop_guard::LoopGuard;
use crate::net::listener::Listener;
use crate::net::stream::Stream;
use crate::pool::Pool;
use crate::report::{ErrorHook, RateLimit};
use crate::settings::Settings;
use crate::slot::Slot;
use crate::stats::{add, Counters, LoopGauges};
use crate::sys::wake;
use crate::unix_path::SocketFile;
use crate::{Addr, Handler, Stats, Transport};

/// An accepted stream: waiting in the queue, or being served.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) stream: Stream,
    pub(crate) peer: Addr,
    pub(crate) admitted: Admitted,
}

/// Everything guarded by [`Core::state`].
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) pool: Pool,
    pub(crate) books: Books,
    /// Accepted connections not yet started (bounded by `queue`).
    pub(crate) queue: VecDeque<Accepted>,
    /// Handlers running when shutdown began: what the drain waits for.
    pub(crate) active_at_stop: usize,
}

impl State {
    /// Whether the queue could take another connection.
    pub(crate) fn queue_room(&self, settings: &Settings) -> bool {
        self.queue.len() < settings.queue
    }
}

/// Rate limits for the lines the server itself logs.
#[derive(Debug)]
pub(crate) struct Logs {
    pub(crate) accept_errors: RateLimit,
    pub(crate) exhausted: RateLimit,
    pub(crate) spawn_errors: RateLimit,
    pub(crate) internal: RateLimit,
    pub(crate) stalls: RateLimit,
}

impl Default for Logs {
    fn default() -> Self {
        Logs {
            accept_errors: RateLimit::per_second(),
            exhausted: RateLimit::per_second(),
            spawn_errors: RateLimit::per_second(),
            internal: RateLimit::per_second(),
            stalls: RateLimit::per_second(),
        }
    }
}

/// A bound socket and what is known of it, as `build()` made it.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) listener: Listener,
    pub(crate) local_addr: Addr,
    /// Passed in by `adopt`.
    pub(crate) passed: bool,
    /// Accepted connections inherit the listener's options.
    pub(crate) inherits_options: bool,
    /// The Unix socket file `bind_unix` created.
    pub(crate) socket_file: Option<SocketFile>,
}

/// One `park_idle` event loop, as the rest of the server sees it.
#[derive(Debug)]
pub(crate) struct LoopHandle {
    pub(crate) gauges: Arc<LoopGauges>,
    /// Wakes the loop from its poll (shutdown).
    pub(crate) waker: Arc<mio::Waker>,
}

/// What every thread of a server shares, whatever its handler type.
pub(crate) struct Core {
    pub(crate) settings: Settings,
    pub(crate) listener: Listener,
    pub(crate) local_addr: Addr,
    /// Accepted connections inherit `TCP_NODELAY` and the read and write
    /// timeouts from the listener, where they were set once (TCP on Linux),
    /// sparing three system calls per connection.
    pub(crate) inherits_options: bool,
    /// The socket was passed in (`adopt`): others may hold it too, so
    /// shutdown must leave it working.
    pub(crate) passed: bool,
    pub(crate) counters: Counters,
    pub(crate) on_error: ErrorHook,
    pub(crate) logs: Logs,
    /// Datagram servers: no endless exchange with another service.
    pub(crate) loop_guard: Option<LoopGuard>,
    /// Set once, when shutdown begins.
    stop: AtomicBool,
    /// The deadline watchdog sleeps with no deadline to wait for: a
    /// connection that starts must wake it.
    pub(crate) watchdog_idle: AtomicBool,
    pub(crate) state: Mutex<State>,
    /// Idle workers wait here for queued work or a chance to accept.
    pub(crate) work: Condvar,
    /// The run thread waits here: for a chance to fill the queue, and during
    /// shutdown for handlers to finish and threads to exit.
    pub(crate) control: Condvar,
    /// Back-off sleeps and the watchdog wait here; shutdown wakes them.
    pub(crate) timer: Condvar,
    /// Every worker's slot, for the watchdog and shutdown.
    pub(crate) slots: Mutex<Vec<Arc<Slot>>>,
    /// Every `park_idle` event loop, for `stats()` and shutdown.
    pub(crate) loops: Mutex<Vec<LoopHandle>>,
    /// A descriptor kept in reserve, given up to accept-and-close a client
    /// when descriptors run out.
    pub(crate) spare: Mutex<Option<File>>,
    /// Origin of the slots' millisecond deadlines.
    pub(crate) epoch: Instant,
    /// The Unix socket file this server created, removed when it stops.
    pub(crate) socket_file: Mutex<Option<SocketFile>>,
    /// The signal listener of `shutdown_on_signals`, closed when the
    /// server stops so that it leaves no thread or handler behind.
    #[cfg(feature = "signals")]
    pub(crate) signals: Mutex<Option<signal_hook::iterator::Handle>>,
}

impl Drop for Core {
    fn drop(&mut self) {
        // A server built but never run still leaves no file behind.
        self.remove_socket_file();
    }
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("local_addr", &self.local_addr)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A server's core together with its handler: what worker threads hold.
pub(crate) struct Shared<H> {
    pub(crate) core: Arc<Core>,
    pub(crate) handler: H,
}

impl<H: Handler> Shared<H> {
    pub(crate) fn new(core: Arc<Core>, handler: H) -> Arc<Self> {
        Arc::new(Shared { core, handler })
    }
}

impl Core {
    /// Assembles the shared state of a server around its bound socket.
    pub(crate) fn new(
        settings: Settings,
        bound: Bound,
        on_error: ErrorHook,
        spare: Option<File>,
    ) -> Self {
        let Bound {
            listener,
            local_addr,
            passed,
            inherits_options,
            socket_file,
        } = bound;
        let loop_guard = match (settings.transport, settings.loop_guard) {
            (Transport::Datagram, Some(rate)) => {
                Some(LoopGuard::new(rate, crate::sys::ports::ephemeral_range()))
            }
            _ => None,
        };
        let mut pool = Pool::new(settings.limits());
        if settings.transport == Transport::Datagram {
            pool.receive_alone();
        }
        Core {
            state: Mutex::new(State {
                pool,
                books: Books::default(),
                queue: VecDeque::new(),
                active_at_stop: 0,
            }),
            settings,
            listener,
            local_addr,
            inherits_options,
            passed,
            counters: Counters::default(),
            on_error,
            logs: Logs::default(),
            loop_guard,
            stop: AtomicBool::new(false),
            watchdog_idle: AtomicBool::new(false),
            work: Condvar::new(),
            control: Condvar::new(),
            timer: Condvar::new(),
            slots: Mutex::default(),
            loops: Mutex::default(),
            spare: Mutex::new(spare),
            epoch: Instant::now(),
            socket_file: Mutex::new(socket_file),
            #[cfg(feature = "signals")]
            signals: Mutex::new(None),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // Only counts and queues change under this lock, no user code and
        // no library code that can panic runs under it, so a poisoned lock
        // still holds consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether shutdown has begun. SeqCst: paired with the slots' flags
    /// (see CONCURRENCY.md).
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(SeqCst)
    }

    pub(crate) fn stats(&self) -> Stats {
        let st = self.lock();
        let (queued, active, threads) = (st.queue.len(), st.pool.active, st.pool.threads());
        drop(st);
        let (live, parked, loops) = self.loop_gauges();
        let helpers = self.counters.helpers.load(Relaxed);
        self.counters.snapshot(
            queued as u64,
            active as u64 + live,
            (threads + loops) as u64 + helpers,
            parked,
        )
    }

    /// Connections served and parked by the event loops, and how many
    /// loops run.
    fn loop_gauges(&self) -> (u64, u64, usize) {
        let loops = self.loops.lock().unwrap_or_else(|e| e.into_inner());
        let (mut live, mut parked) = (0, 0);
        for l in loops.iter() {
            live += l.gauges.live.load(Relaxed);
            parked += l.gauges.parked.load(Relaxed);
        }
        (live, parked, loops.len())
    }

    /// Milliseconds since the epoch, the unit of slot deadlines (never 0).
    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// Sleeps for `d` unless shutdown begins first; returns whether it did.
    pub(crate) fn sleep_unless_stopped(&self, d: Duration) -> bool {
        let deadline = deadline_after(Instant::now(), d);
        drop(self.wait_until(&self.timer, deadline, |st| st.pool.stopping));
        self.stopping()
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

    /// Removes the Unix socket file this server created, once, and only if
    /// it is still the one this server bound.
    pub(crate) fn remove_socket_file(&self) {
        let file = self
            .socket_file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(file) = file {
            file.remove();
        }
    }

    /// Begins shutdown: flags it, wakes every waiting and blocked thread,
    /// closes the connections in the listen backlog (counted as dropped),
    /// and gives idle connections end of file.
    pub(crate) fn begin_shutdown(&self) {
        if self.stop.swap(true, SeqCst) {
            return;
        }
        let live = self.loop_gauges().0 as usize;
        {
            let mut st = self.lock();
            st.pool.stop();
            st.active_at_stop = st.pool.active + live;
        }
        for l in self.loops.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            // A loop that cannot be woken finds the flag at its next turn.
            let _ = l.waker.wake();
        }
        self.work.notify_all();
        self.control.notify_all();
        self.timer.notify_all();
        let backlog = self.close_backlog();
        add(&self.counters.dropped_at_shutdown, backlog as u64);
        wake::wake_all(&self.listener, self.passed);
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for slot in slots {
            slot.close_if_idle();
        }
    }

    /// Accepts and closes every connection waiting in the listen backlog,
    /// so that each is counted rather than reset unseen when the listener
    /// is shut down. A passed listener keeps its backlog for whoever
    /// serves it next.
    fn close_backlog(&self) -> usize {
        if self.passed || matches!(self.listener, Listener::Datagram(_)) {
            return 0;
        }
        if self.listener.sock_ref().set_nonblocking(true).is_err() {
            return 0;
        }
        let mut closed = 0;
        // Bounded: the backlog holds at most `backlog` connections, and
        // clients arriving meanwhile are few.
        while closed < self.settings.backlog as usize * 2 {
            match self.listener.accept() {
                Ok(_) => closed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => {}
                Err(_) => break,
            }
        }
        closed
    }
}
