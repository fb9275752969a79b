//! `ShutdownHandle`, the two-phase drain, and what a shutdown reports.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::Core;
use crate::deadline::deadline_after;
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
    /// Threads blocked in `accept()` or `recv_from()` wake at once
    /// (`shutdown(2)` on the server's socket; a passed socket, which others
    /// may share, is left working and its threads notice within 100 ms).
    /// No new connection or datagram is taken. Connections waiting in the
    /// listen backlog or the queue are closed unserved and counted as
    /// dropped. Connections whose handler waits for the client's next
    /// request (blocked in `read` with nothing read since its last write)
    /// get end of file at once, and so do the others when they next wait
    /// so; running handlers get `shutdown_timeout` to finish, after which
    /// their sockets are shut down. Calling it again does nothing.
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
    ///
    /// Calling it again does nothing. When the server stops, the signal
    /// handlers are taken away and the thread ends, so a later Ctrl-C acts
    /// as it would have without this (or on whatever the program set up).
    #[cfg(feature = "signals")]
    #[cfg_attr(docsrs, doc(cfg(feature = "signals")))]
    pub fn shutdown_on_signals(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut registered = self.core.signals.lock().unwrap_or_else(|e| e.into_inner());
        if registered.is_some() || self.core.stopping() {
            return Ok(());
        }
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let handle = self.clone();
        let listener = signals.handle();
        std::thread::Builder::new()
            .name(format!("{}-signals", self.core.settings.thread_name))
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    log::info!("signal {signal}: shutting down {}", handle.core.local_addr);
                    handle.shutdown();
                }
            })?;
        crate::signals::begin()?;
        *registered = Some(listener);
        Ok(())
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
    /// Connections closed without being served: accepted ones still in the
    /// queue, and those still waiting in the listen backlog; and datagrams
    /// a worker had taken off the socket in one batch with others but not
    /// yet begun to serve.
    pub dropped: usize,
    /// Connections that were waiting for their client's next request when
    /// shutdown began (or came to wait so during it), and were given end
    /// of file at once rather than waited for.
    pub closed_idle: usize,
}

impl ShutdownReport {
    /// True when nothing was cut off: no handler forced, no connection
    /// dropped unserved. Idle connections closed are not cut off.
    pub fn is_clean(&self) -> bool {
        self.forced == 0 && self.dropped == 0
    }
}

impl fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} drained, {} idle closed, {} forced, {} dropped unserved",
            self.drained, self.closed_idle, self.forced, self.dropped
        )
    }
}

/// How long threads get to leave after their sockets were shut down; a
/// handler that ignores the errors is left behind rather than waited for.
pub(crate) const EXIT_GRACE: Duration = Duration::from_millis(100);

/// The drain, run by the run thread once shutdown has begun.
///
/// Phase one: close queued connections, wait up to `shutdown_timeout` for
/// running handlers (idle ones were given end of file and leave at once).
/// Phase two: shut down the sockets of those still running, give the
/// threads a moment to leave, report.
pub(crate) fn drain(core: &Core) -> ShutdownReport {
    let mut st = core.lock();
    let queued: Vec<_> = st.queue.drain(..).collect();
    for job in &queued {
        st.books.release(job.admitted);
    }
    let in_flight = st.active_at_stop;
    drop(st);
    add(&core.counters.dropped_at_shutdown, queued.len() as u64);
    drop(queued);

    let deadline = deadline_after(Instant::now(), core.settings.shutdown_timeout);
    let forced = core
        .wait_until(&core.control, deadline, |st| st.pool.active == 0)
        .pool
        .active;
    if forced > 0 {
        let slots = core.slots.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for slot in slots {
            slot.cut();
        }
        add(&core.counters.forced_at_shutdown, forced as u64);
    }

    let leave_by = deadline_after(Instant::now().max(deadline), EXIT_GRACE);
    drop(core.wait_until(&core.control, leave_by, |st| st.pool.threads() == 0));
    report(core, in_flight, forced)
}

/// What a shutdown did: of the `in_flight` handlers running when it
/// began, `forced` were cut and the idle ones closed (counted); the rest
/// drained. Both serving modes report through this.
pub(crate) fn report(core: &Core, in_flight: usize, forced: usize) -> ShutdownReport {
    let closed_idle = core.counters.closed_idle.load(Relaxed) as usize;
    ShutdownReport {
        drained: in_flight.saturating_sub(forced + closed_idle),
        forced,
        dropped: core.counters.dropped_at_shutdown.load(Relaxed) as usize,
        closed_idle,
    }
}
