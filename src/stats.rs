//! Counters kept while serving, and the `Stats` snapshot users read.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A snapshot of a server's counters, from [`Server::stats`](crate::Server::stats)
/// or [`ShutdownHandle::stats`](crate::ShutdownHandle::stats).
///
/// All counts are since the server was built. Each counter is read on its
/// own, so a snapshot taken while serving may be off by the connections in
/// flight between two reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Stream connections accepted (including those then rejected by a limit).
    pub accepted: u64,
    /// Connections or datagrams being served by a handler right now.
    pub active: u64,
    /// Accepted connections waiting for a worker right now: in the
    /// [`queue`](crate::ServerBuilder::queue), or past it for at most
    /// [`queue_timeout`](crate::ServerBuilder::queue_timeout).
    pub queued: u64,
    /// Worker threads alive right now (between `workers` and `max_workers`).
    /// Under [`park_idle`](crate::ServerBuilder::park_idle): the event-loop
    /// threads plus the helper threads of
    /// [`offload`](crate::Connection::offload).
    pub workers: u64,
    /// Connections parked right now under
    /// [`park_idle`](crate::ServerBuilder::park_idle): waiting for their
    /// socket or for an [`offload`](crate::Connection::offload) call,
    /// holding no thread. Always 0 in the thread mode.
    pub parked: u64,
    /// Times a `park_idle` event loop was held for more than 100 ms by a
    /// handler doing something other than connection I/O (every other
    /// connection of that thread waited meanwhile). Each is also logged,
    /// at most once a second, naming the client; send such work through
    /// [`Connection::offload`](crate::Connection::offload).
    pub loop_stalls: u64,
    /// Times the last free worker took a connection with the pool at
    /// `max_workers` (and the queue, if any, full): from then until a
    /// worker is free, new clients wait in the listen backlog. Each time
    /// is also logged, at most once a second.
    pub pool_exhausted: u64,
    /// Handler calls that returned `Ok`.
    pub completed: u64,
    /// Handler calls that returned `Err` (idle timeouts,
    /// [`disconnects`](Self::disconnects) and
    /// [`tls_session_failures`](Self::tls_session_failures) apart).
    pub handler_errors: u64,
    /// Connections closed because the client sent nothing for the read
    /// timeout (the handler's read failed with `TimedOut` and it returned
    /// that error).
    pub idle_timeouts: u64,
    /// Handler calls that panicked.
    pub panics: u64,
    /// Times accepting paused because `max_connections` were held; the
    /// clients behind waited in the kernel backlog, none was refused.
    pub max_connections_reached: u64,
    /// Connections closed at once because their source IP already held
    /// `max_per_source` connections.
    pub rejected_per_source: u64,
    /// Failed `accept()` calls (aborted handshakes, descriptor exhaustion...).
    pub accept_errors: u64,
    /// Connections cut at `connection_timeout`.
    pub timed_out: u64,
    /// Connections closed unserved because they did not come from a
    /// trusted proxy (PROXY protocol only).
    pub proxy_refused: u64,
    /// Connections closed unserved because their PROXY header was missing,
    /// malformed, too long or too slow.
    pub proxy_errors: u64,
    /// Datagrams received (including those then dropped).
    pub datagrams_received: u64,
    /// Datagrams dropped because they were larger than `max_datagram`.
    pub dropped_truncated: u64,
    /// Datagrams dropped because their source port was below `min_source_port`.
    pub dropped_low_port: u64,
    /// Datagrams dropped by the loop guard: over its rate from one source
    /// address whose port is outside the ephemeral range.
    pub dropped_loop: u64,
    /// Connections closed unserved by a shutdown: queued ones, and those
    /// still waiting in the listen backlog; and datagrams of a batch not
    /// yet begun (see [`ShutdownReport::dropped`](crate::ShutdownReport)).
    pub dropped_at_shutdown: u64,
    /// Connections that were waiting for their client's next request when
    /// shutdown began, and were given end of file at once.
    pub closed_idle: u64,
    /// Connections whose handler was still running at the end of
    /// `shutdown_timeout` and whose socket was then shut down.
    pub forced_at_shutdown: u64,
    /// TLS handshakes completed (feature `tls`).
    pub tls_handshakes: u64,
    /// Connections closed unserved because their TLS handshake failed:
    /// a plaintext or garbled client, a certificate refused, a client that
    /// closed mid-handshake, or one that took over `tls_handshake_timeout`.
    /// Each is also reported to the `on_error` hook
    /// ([`Failure::TlsHandshake`](crate::Failure::TlsHandshake)). A client
    /// that closes or resets before its first TLS byte (a TCP health
    /// check, a port scan) is neither counted here nor reported.
    pub tls_handshake_failures: u64,
    /// Connections whose TLS session the client broke after the handshake
    /// (feature `tls`): its handler's read failed because the client sent
    /// a fatal alert (as one does that gives up on a TLS 1.2 renegotiation
    /// the server declined, or a scanner that alerts and closes), a record
    /// that does not decrypt or parse, or a message TLS does not allow
    /// there (a second renegotiation request), and the handler returned
    /// that error (or one wrapping it). Each is also reported to the
    /// `on_error` hook ([`Failure::TlsSession`](crate::Failure::TlsSession),
    /// logged at `info`). Counted here, with the TLS failures, and neither
    /// in [`handler_errors`](Self::handler_errors) (nothing the handler
    /// did wrong) nor in [`disconnects`](Self::disconnects) (those are
    /// clients that reset or hung up; a fatal alert says the session
    /// failed). A client's `close_notify`, or a close without one, is the
    /// end of the stream, as on a plain socket: not counted. A handler
    /// that swallows the error and returns `Ok` is counted as completed.
    pub tls_session_failures: u64,
    /// Connections cut because their unsent pushed bytes would have passed
    /// [`max_outbox`](crate::ServerBuilder::max_outbox): clients that read
    /// too slowly (see [`Outbox::send`](crate::Outbox::send)).
    pub slow_consumers: u64,
    /// Connections whose handler ended in an error that says only that the
    /// client went away: it reset the connection, or closed it in the
    /// middle of a request or a reply. Not counted in
    /// [`handler_errors`](Self::handler_errors): nothing the server did
    /// wrong. Still reported to `on_error` (the default hook logs them at
    /// `debug`). A connection the server itself cut (forced at shutdown,
    /// past its `connection_timeout`, a slow consumer) is counted as that
    /// instead, whatever error its handler then returns.
    pub disconnects: u64,
    /// Connections that waited for a worker longer than
    /// [`queue_timeout`](crate::ServerBuilder::queue_timeout) in the thread
    /// mode: sent the busy message, if any, and closed unserved.
    pub queue_timeouts: u64,
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: AtomicU64,
    pub(crate) pool_exhausted: AtomicU64,
    pub(crate) loop_stalls: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) handler_errors: AtomicU64,
    pub(crate) idle_timeouts: AtomicU64,
    pub(crate) panics: AtomicU64,
    pub(crate) max_connections_reached: AtomicU64,
    pub(crate) rejected_per_source: AtomicU64,
    pub(crate) accept_errors: AtomicU64,
    pub(crate) timed_out: AtomicU64,
    pub(crate) proxy_refused: AtomicU64,
    pub(crate) proxy_errors: AtomicU64,
    pub(crate) datagrams_received: AtomicU64,
    pub(crate) dropped_truncated: AtomicU64,
    pub(crate) dropped_low_port: AtomicU64,
    pub(crate) dropped_loop: AtomicU64,
    pub(crate) dropped_at_shutdown: AtomicU64,
    pub(crate) closed_idle: AtomicU64,
    pub(crate) forced_at_shutdown: AtomicU64,
    pub(crate) tls_handshakes: AtomicU64,
    pub(crate) tls_handshake_failures: AtomicU64,
    pub(crate) tls_session_failures: AtomicU64,
    pub(crate) slow_consumers: AtomicU64,
    pub(crate) disconnects: AtomicU64,
    pub(crate) queue_timeouts: AtomicU64,
    /// Bytes pushed to outboxes and never written: their connection ended
    /// (its client gone, or cut) first.
    pub(crate) outbox_dropped: AtomicU64,
    /// `outbox_dropped` when shutdown began, for its report.
    pub(crate) outbox_dropped_at_stop: AtomicU64,
    /// Helper threads of `offload` alive right now.
    pub(crate) helpers: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    add(counter, 1);
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self, queued: u64, active: u64, workers: u64, parked: u64) -> Stats {
        Stats {
            accepted: self.accepted.load(Relaxed),
            active,
            workers,
            queued,
            pool_exhausted: self.pool_exhausted.load(Relaxed),
            parked,
            loop_stalls: self.loop_stalls.load(Relaxed),
            completed: self.completed.load(Relaxed),
            handler_errors: self.handler_errors.load(Relaxed),
            idle_timeouts: self.idle_timeouts.load(Relaxed),
            panics: self.panics.load(Relaxed),
            max_connections_reached: self.max_connections_reached.load(Relaxed),
            rejected_per_source: self.rejected_per_source.load(Relaxed),
            accept_errors: self.accept_errors.load(Relaxed),
            timed_out: self.timed_out.load(Relaxed),
            proxy_refused: self.proxy_refused.load(Relaxed),
            proxy_errors: self.proxy_errors.load(Relaxed),
            datagrams_received: self.datagrams_received.load(Relaxed),
            dropped_truncated: self.dropped_truncated.load(Relaxed),
            dropped_low_port: self.dropped_low_port.load(Relaxed),
            dropped_loop: self.dropped_loop.load(Relaxed),
            dropped_at_shutdown: self.dropped_at_shutdown.load(Relaxed),
            closed_idle: self.closed_idle.load(Relaxed),
            forced_at_shutdown: self.forced_at_shutdown.load(Relaxed),
            tls_handshakes: self.tls_handshakes.load(Relaxed),
            tls_handshake_failures: self.tls_handshake_failures.load(Relaxed),
            tls_session_failures: self.tls_session_failures.load(Relaxed),
            slow_consumers: self.slow_consumers.load(Relaxed),
            disconnects: self.disconnects.load(Relaxed),
            queue_timeouts: self.queue_timeouts.load(Relaxed),
        }
    }
}
