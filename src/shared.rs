//! The state every thread of one server shares.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::failure::ErrorHook;
use crate::settings::Settings;
use crate::slot::Slot;
use crate::socket::Listener;
use crate::stats::Counters;
use crate::stream::Stream;
use crate::{Addr, Handler, Stats};

/// An accepted stream waiting in the queue for a worker.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub(crate) stream: Stream,
    pub(crate) peer: Addr,
}

/// Who is doing what; guarded by [`Core::pool`].
#[derive(Debug, Default)]
pub(crate) struct PoolState {
    /// Accepted connections not yet started (bounded by `queue`).
    pub(crate) queue: VecDeque<Accepted>,
    /// Worker threads alive.
    pub(crate) threads: usize,
    /// Workers waiting on `Core::work` for something to do.
    pub(crate) idle: usize,
    /// Workers inside `accept()` / `recv_from()`.
    pub(crate) accepting: usize,
    /// The run thread is inside `accept()`, filling the queue.
    pub(crate) dispatcher_accepting: bool,
    /// Connections held: reserved by an `accept()` under way, queued, or served.
    pub(crate) held: usize,
    /// Handlers running.
    pub(crate) active: usize,
    /// Held connections per canonical source IP (only with `max_per_source`).
    pub(crate) per_source: HashMap<IpAddr, usize>,
    /// Shutdown has begun: take no new work.
    pub(crate) stopping: bool,
    /// Handlers running when shutdown began: what the drain waits for.
    pub(crate) active_at_stop: usize,
    /// Serial number for the next worker thread's name.
    pub(crate) next_thread: usize,
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
    /// The listener was passed in (`adopt`): others may hold it too, so
    /// shutdown must leave it listening.
    pub(crate) passed: bool,
    pub(crate) counters: Counters,
    pub(crate) on_error: ErrorHook,
    pub(crate) stop: AtomicBool,
    /// The deadline watchdog sleeps with no deadline to wait for: a
    /// connection that starts must wake it.
    pub(crate) watchdog_idle: AtomicBool,
    pub(crate) pool: Mutex<PoolState>,
    /// Idle workers wait here for queued work or a chance to accept.
    pub(crate) work: Condvar,
    /// The run thread waits here: for a chance to fill the queue, and during
    /// shutdown for handlers to finish and threads to exit.
    pub(crate) control: Condvar,
    /// Back-off sleeps and the watchdog wait here; shutdown wakes them.
    pub(crate) timer: Condvar,
    /// Every worker's slot, for the watchdog and forced shutdown.
    pub(crate) slots: Mutex<Vec<Arc<Slot>>>,
    /// A descriptor kept in reserve, given up to accept-and-close a client
    /// when descriptors run out.
    pub(crate) spare: Mutex<Option<File>>,
    /// When accept errors were last logged, and how many went unlogged since.
    pub(crate) accept_log: Mutex<(Option<Instant>, u64)>,
    /// Origin of the slots' millisecond deadlines.
    pub(crate) epoch: Instant,
    /// The Unix socket file this server created, removed when it stops.
    pub(crate) unix_path: Mutex<Option<PathBuf>>,
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
    pub(crate) fn lock(&self) -> MutexGuard<'_, PoolState> {
        // Only counters and queues change under this lock and no user code
        // runs under it, so a poisoned lock still holds consistent state.
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    pub(crate) fn stats(&self) -> Stats {
        let st = self.lock();
        self.counters
            .snapshot(st.queue.len() as u64, st.active as u64, st.threads as u64)
    }

    /// Milliseconds since the epoch, the unit of slot deadlines (never 0).
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// Sleeps for `d` unless shutdown begins first; returns whether it did.
    pub(crate) fn sleep_unless_stopped(&self, d: Duration) -> bool {
        self.wait_until(&self.timer, Instant::now() + d, |st| st.stopping)
            .stopping
    }

    /// Waits on `cv` until `done` holds or `deadline` passes; returns the
    /// lock, for the caller to see which.
    pub(crate) fn wait_until(
        &self,
        cv: &Condvar,
        deadline: Instant,
        done: impl Fn(&PoolState) -> bool,
    ) -> MutexGuard<'_, PoolState> {
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

    /// Removes the Unix socket file this server created, once.
    pub(crate) fn remove_socket_file(&self) {
        let path = self
            .unix_path
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(path) = path {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Begins shutdown: flags it, wakes every waiting and blocked thread.
    pub(crate) fn begin_shutdown(&self) {
        if self.stop.swap(true, Ordering::AcqRel) {
            return;
        }
        let receivers = {
            let mut st = self.lock();
            st.stopping = true;
            st.active_at_stop = st.active;
            st.accepting
        };
        self.work.notify_all();
        self.control.notify_all();
        self.timer.notify_all();
        self.listener.wake_all(receivers, self.passed);
    }
}
