//! What a shutdown reports, in both engines.

use std::fmt;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use crate::stats::Counters;

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
    /// queue (at once, or, when another server takes the socket's clients
    /// over, those `shutdown_timeout` left unserved), and those still
    /// waiting in the listen backlog; and datagrams
    /// a worker had taken off the socket in one batch with others but not
    /// yet begun to serve.
    pub dropped: usize,
    /// Connections that were waiting for their client's next request when
    /// shutdown began (or came to wait so during it), and were given end
    /// of file at once rather than waited for.
    pub closed_idle: usize,
    /// Bytes pushed to connections ([`Outbox`](crate::Outbox)) that were
    /// never written: their connection was forced, or its client went
    /// away, after shutdown began.
    pub unsent_bytes: u64,
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
        )?;
        match self.unsent_bytes {
            0 => Ok(()),
            n => write!(f, ", {n} pushed bytes unsent"),
        }
    }
}

/// How long threads get to leave after their sockets were shut down; a
/// handler that ignores the errors is left behind rather than waited for.
pub(crate) const EXIT_GRACE: Duration = Duration::from_millis(100);

/// What a shutdown did: of the `in_flight` handlers running when it
/// began, `forced` were cut and the idle ones closed (counted); the rest
/// drained. Both serving modes report through this.
pub(crate) fn report(counters: &Counters, in_flight: usize, forced: usize) -> ShutdownReport {
    let closed_idle = counters.closed_idle.load(Relaxed) as usize;
    ShutdownReport {
        drained: in_flight.saturating_sub(forced + closed_idle),
        forced,
        dropped: counters.dropped_at_shutdown.load(Relaxed) as usize,
        closed_idle,
        unsent_bytes: counters
            .outbox_dropped
            .load(Relaxed)
            .saturating_sub(counters.outbox_dropped_at_stop.load(Relaxed)),
    }
}
