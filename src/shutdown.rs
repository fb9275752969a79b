//! `ShutdownHandle`, the two-phase drain, and what a shutdown reports.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shared::Core;
use crate::stats::add;
use crate::Stats;

/// Stops a server from any thread, including from inside a handler.
///
/// Cheap to clone and `Send + Sync`. [`shutdown`](Self::shutdown) returns at
/// once; the server's [`run`](crate::Server::run) does the draining and
/// returns the [`ShutdownReport`].
#[derive(Clone)]
pub struct ShutdownHandle {
    pub(crate) core: Arc<Core>,
}

impl ShutdownHandle {
    /// Begins a graceful shutdown and returns without waiting.
    ///
    /// Threads blocked in `accept()` or `recv_from()` wake at once (by
    /// `shutdown(2)` on a listening socket, by an empty datagram over
    /// loopback on a datagram socket; no polling). No new
    /// connection or datagram is taken; connections queued but not started
    /// are closed; running handlers get `shutdown_timeout` to finish, after
    /// which their sockets are shut down. Calling it again does nothing.
    pub fn shutdown(&self) {
        self.core.begin_shutdown();
    }

    /// Whether shutdown has begun.
    pub fn is_shutdown(&self) -> bool {
        self.core.stopping()
    }

    /// A snapshot of the server's counters.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }

    /// Shuts the server down gracefully on the first SIGINT (Ctrl-C) or
    /// SIGTERM (what `kill` and systemd send) from now on.
    ///
    /// The handlers are installed before this returns, so a signal that
    /// arrives right after is not lost; a thread named `NAME-signals` waits
    /// for it. Without this, either signal ends the process at once,
    /// dropping connections in flight. Requires the `signals` feature (on
    /// by default).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = socketserver::Server::builder()
    ///     .bind("127.0.0.1:6789")
    ///     .build(socketserver::handlers::Echo)?;
    /// server.shutdown_handle().shutdown_on_signals()?;
    /// let report = server.run()?; // returns after Ctrl-C, drained
    /// println!("shut down: {report}");
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "signals")]
    pub fn shutdown_on_signals(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let handle = self.clone();
        std::thread::Builder::new()
            .name(format!("{}-signals", self.core.settings.thread_name))
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    log::info!("signal {signal}: shutting down {}", handle.core.local_addr);
                    handle.shutdown();
                }
            })
            .map(drop)
    }
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("local_addr", &self.core.local_addr)
            .field("is_shutdown", &self.is_shutdown())
            .finish()
    }
}

/// What a shutdown did, returned by [`Server::run`](crate::Server::run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Handlers that were running when shutdown began and finished within
    /// `shutdown_timeout`.
    pub drained: usize,
    /// Handlers still running at the end of `shutdown_timeout`: their
    /// sockets were shut down (stream) so blocked reads and writes return;
    /// a datagram handler is left to finish on its own.
    pub forced: usize,
    /// Accepted connections still in the queue, closed without being served.
    pub dropped: usize,
}

impl ShutdownReport {
    /// True when nothing was cut off: no handler forced, no queued
    /// connection dropped.
    pub fn is_clean(&self) -> bool {
        self.forced == 0 && self.dropped == 0
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} drained, {} forced, {} dropped from the queue",
            self.drained, self.forced, self.dropped
        )
    }
}

/// How long threads get to leave after their sockets were shut down; a
/// handler that ignores the errors is left behind rather than waited for.
const EXIT_GRACE: Duration = Duration::from_millis(100);

/// The drain, run by the run thread once shutdown has begun.
///
/// Phase one: close queued connections, wait up to `shutdown_timeout` for
/// running handlers. Phase two: shut down the sockets of those still
/// running, give the threads a moment to leave, report.
pub(crate) fn drain(core: &Core) -> ShutdownReport {
    let mut st = core.lock();
    let queued: Vec<_> = st.queue.drain(..).collect();
    for job in &queued {
        crate::pool::release(core, &mut st, job.peer.canonical_ip());
    }
    let in_flight = st.active_at_stop;
    drop(st);
    let dropped = queued.len();
    drop(queued);
    add(&core.counters.dropped_at_shutdown, dropped as u64);

    let deadline = Instant::now() + core.settings.shutdown_timeout;
    let forced = core
        .wait_until(&core.control, deadline, |st| st.active == 0)
        .active;
    if forced > 0 {
        for slot in core.slots.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            slot.cut();
        }
        add(&core.counters.forced_at_shutdown, forced as u64);
    }

    let leave_by = Instant::now().max(deadline) + EXIT_GRACE;
    drop(core.wait_until(&core.control, leave_by, |st| st.threads == 0));
    ShutdownReport {
        drained: in_flight.saturating_sub(forced),
        forced,
        dropped,
    }
}
