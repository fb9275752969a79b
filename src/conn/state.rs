//! Where a connection is in its life, as shutdown asks it: the one answer
//! to "is it idle?", for both engines.
//!
//! A connection is *idle* when its handler waits for input with nothing
//! received since its last reply: shutdown then closes it at once, instead
//! of waiting `shutdown_timeout` for a request that may never come. A
//! connection that has received nothing at all yet is *new*: its request
//! may be on the wire, so shutdown gives it a grace (as Go's `http.Server`
//! gives new connections 5 s) before it closes it as idle. Any other
//! connection is in the middle of something and is drained. Bytes already
//! received are never lost to the close: closing a connection's reading
//! side lets what the socket (or TLS) holds be read first.
//!
//! The state is a few bits in one atomic, because in the thread mode the
//! handler's thread and the shutdown (another thread) change it at once:
//! the reader's `begin_read` and the shutdown's `shutdown_begins` are two
//! read-modify-writes of one location, so one of them sees the other
//! (`CONCURRENCY.md`). Under `park_idle` only the loop's thread touches it.

use std::sync::atomic::{AtomicU16, Ordering::SeqCst};

/// The handler is in a read (blocked in it, or parked on it).
const READING: u16 = 1;
/// Nothing received since the last reply, or since the connection opened.
const AWAITING: u16 = 2;
/// Nothing received at all yet (no PROXY header, no TLS hello, no request).
const NEW: u16 = 4;
/// Shutdown has begun: an idle read gives end of file.
const CLOSING: u16 = 8;
/// Shutdown closed this connection as idle (counted once).
const CLOSED_IDLE: u16 = 16;
/// Its outbox holds bytes not yet written.
const QUEUED: u16 = 32;
/// The grace of new connections is over: a new one is idle too.
const LATE: u16 = 64;
/// In the TLS handshake: what the server writes then is no reply.
const OPENING: u16 = 128;
/// The server is done with the client's input (the connection was cut,
/// or its outbox closed): reads give end of file, whatever comes. On TCP,
/// `shutdown(SHUT_RD)` wakes a blocked read but does not stop bytes that
/// arrive later from being read.
const READ_ENDED: u16 = 256;

/// A connection's phase, read off its [`ConnState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// In a read, with nothing received since the connection opened.
    New,
    /// In a read, with nothing received since its last reply.
    Waiting,
    /// In a read, in the middle of a request.
    Reading,
    /// Its handler is not reading: writing, computing, or waiting on
    /// something other than its client.
    Working,
    /// Its outbox holds bytes pushed to it and not yet written: work for a
    /// shutdown to drain, whatever its handler does.
    Pushing,
    /// Shutdown closed it as idle; its reads give end of file.
    ClosedIdle,
}

impl Phase {
    fn of(bits: u16) -> Phase {
        if bits & CLOSED_IDLE != 0 {
            Phase::ClosedIdle
        } else if bits & QUEUED != 0 {
            Phase::Pushing
        } else if bits & READING == 0 {
            Phase::Working
        } else if bits & NEW != 0 {
            Phase::New
        } else if bits & AWAITING != 0 {
            Phase::Waiting
        } else {
            Phase::Reading
        }
    }

    /// Whether shutdown closes a connection in this phase: at once when it
    /// waits for its next request, after the grace of new connections
    /// (`late`) when it has received nothing yet. The one place this is
    /// decided.
    pub(crate) fn is_idle(self, late: bool) -> bool {
        match self {
            Phase::Waiting => true,
            Phase::New => late,
            Phase::Reading | Phase::Working | Phase::Pushing | Phase::ClosedIdle => false,
        }
    }
}

/// One connection's state; see the module documentation.
#[derive(Debug)]
pub(crate) struct ConnState(AtomicU16);

impl Default for ConnState {
    fn default() -> Self {
        ConnState(AtomicU16::new(NEW | AWAITING))
    }
}

impl ConnState {
    /// The phase now.
    #[cfg(test)]
    fn phase(&self) -> Phase {
        Phase::of(self.0.load(SeqCst))
    }

    /// The handler is about to wait in a read. Returns `true` when shutdown
    /// has begun and the connection is idle: the caller then closes it
    /// (the read gives end of file after what was already received), and
    /// it is counted as closed idle.
    pub(crate) fn begin_read(&self) -> bool {
        let before = self.0.fetch_or(READING, SeqCst);
        before & CLOSING != 0 && self.close_idle(before | READING)
    }

    /// The read is over: `received` bytes came.
    pub(crate) fn end_read(&self, received: usize) {
        let clear = match received {
            0 => READING,
            _ => READING | AWAITING | NEW,
        };
        self.0.fetch_and(!clear, SeqCst);
    }

    /// Bytes came without waiting (a read that did not block).
    pub(crate) fn received(&self) {
        self.0.fetch_and(!(AWAITING | NEW), SeqCst);
    }

    /// The handler replied: the connection waits for the next request.
    /// Not in the TLS handshake, whose messages answer no request: a
    /// client between its hello and its last handshake message is in the
    /// middle of something.
    pub(crate) fn replied(&self) {
        let bits = self.0.load(SeqCst);
        if bits & (AWAITING | OPENING) == 0 {
            self.0.fetch_or(AWAITING, SeqCst);
        }
    }

    /// The TLS handshake begins: until [`set_awaiting`](Self::set_awaiting)
    /// ends it, the server's writes are no replies.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn opening(&self) {
        self.0.fetch_or(OPENING, SeqCst);
    }

    /// Counts the connection as having received no request yet (`true`:
    /// what came was the proxy's header or a TLS handshake, so the client
    /// is about to send its first request, and shutdown gives it the grace
    /// of a new connection), or, `false`, as in the middle of one.
    pub(crate) fn set_awaiting(&self, awaiting: bool) {
        self.0.fetch_and(!OPENING, SeqCst);
        match awaiting {
            true => self.0.fetch_or(AWAITING | NEW, SeqCst),
            false => self.0.fetch_and(!(AWAITING | NEW), SeqCst),
        };
    }

    /// Its outbox holds bytes (`true`) or has written them all. Returns
    /// `true` when that leaves the connection idle after shutdown began:
    /// the caller then closes it (counted as closed idle).
    pub(crate) fn set_queued(&self, queued: bool) -> bool {
        if queued {
            self.0.fetch_or(QUEUED, SeqCst);
            return false;
        }
        let before = self.0.fetch_and(!QUEUED, SeqCst);
        before & (QUEUED | CLOSING) == QUEUED | CLOSING && self.close_idle(before & !QUEUED)
    }

    /// Its outbox's bytes will never be written (the connection was cut,
    /// or its client is gone): they hold nothing up any more, and the
    /// connection is not idle for that, but ending.
    pub(crate) fn drop_queued(&self) {
        self.0.fetch_and(!QUEUED, SeqCst);
    }

    /// Shutdown has begun. Returns `true` when the connection is idle now:
    /// the caller then closes it (counted as closed idle). Any other gets
    /// end of file at its next idle read ([`begin_read`](Self::begin_read)).
    pub(crate) fn shutdown_begins(&self) -> bool {
        let before = self.0.fetch_or(CLOSING, SeqCst);
        self.close_idle(before | CLOSING)
    }

    /// The grace of new connections is over. Returns `true` when this one
    /// is new and shutdown has begun: the caller then closes it (counted
    /// as closed idle).
    pub(crate) fn grace_over(&self) -> bool {
        let before = self.0.fetch_or(LATE, SeqCst);
        before & CLOSING != 0 && self.close_idle(before | LATE)
    }

    /// Marks the connection closed as idle if `bits` say it is idle and it
    /// was not marked before; returns whether this call marked it.
    fn close_idle(&self, bits: u16) -> bool {
        if !Phase::of(bits).is_idle(bits & LATE != 0) {
            return false;
        }
        self.0.fetch_or(CLOSED_IDLE, SeqCst) & CLOSED_IDLE == 0
    }

    /// Whether shutdown closed this connection as idle.
    pub(crate) fn closed_idle(&self) -> bool {
        self.0.load(SeqCst) & CLOSED_IDLE != 0
    }

    /// The server is done with the client's input: every read from now on
    /// gives end of file.
    pub(crate) fn end_reading(&self) {
        self.0.fetch_or(READ_ENDED, SeqCst);
    }

    /// Whether [`end_reading`](Self::end_reading) was called.
    pub(crate) fn reading_ended(&self) -> bool {
        self.0.load(SeqCst) & READ_ENDED != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_connection_is_closed_once_its_grace_is_over() {
        let s = ConnState::default();
        assert_eq!(s.phase(), Phase::Working);
        assert!(!s.begin_read());
        assert_eq!(s.phase(), Phase::New);
        // Its request may be on the wire: not at once.
        assert!(!s.shutdown_begins());
        assert!(s.grace_over());
        assert!(!s.grace_over());
        assert!(!s.shutdown_begins());
        assert!(s.closed_idle());
        assert_eq!(s.phase(), Phase::ClosedIdle);
    }

    #[test]
    fn a_new_connection_that_reads_after_the_grace_is_closed_then() {
        let s = ConnState::default();
        assert!(!s.shutdown_begins());
        assert!(!s.grace_over());
        assert!(s.begin_read());
    }

    #[test]
    fn a_new_connection_whose_request_comes_in_the_grace_is_served() {
        let s = ConnState::default();
        assert!(!s.begin_read());
        assert!(!s.shutdown_begins());
        s.end_read(12);
        assert!(!s.grace_over());
        assert!(!s.closed_idle());
    }

    #[test]
    fn a_request_half_read_is_not_idle_until_answered() {
        let s = ConnState::default();
        s.received();
        assert!(!s.begin_read());
        assert_eq!(s.phase(), Phase::Reading);
        assert!(!s.shutdown_begins());
        s.end_read(0);
        s.replied();
        // The next wait for input, after the reply, finds shutdown begun.
        assert!(s.begin_read());
        assert!(s.closed_idle());
    }

    #[test]
    fn a_handler_at_work_is_drained_not_closed() {
        let s = ConnState::default();
        assert!(!s.begin_read());
        s.end_read(5);
        assert_eq!(s.phase(), Phase::Working);
        assert!(!s.shutdown_begins());
        assert!(!s.closed_idle());
    }

    #[test]
    fn bytes_pushed_and_unwritten_hold_a_shutdown_until_written() {
        let s = ConnState::default();
        // A request answered; the handler waits for the next.
        s.received();
        s.replied();
        assert!(!s.begin_read());
        assert!(!s.set_queued(true));
        assert_eq!(s.phase(), Phase::Pushing);
        assert!(!s.shutdown_begins());
        // Written out: the reader waiting for its client is idle now.
        assert!(s.set_queued(false));
        assert!(s.closed_idle());
        // Without shutdown, writing the queue out closes nothing.
        let s = ConnState::default();
        s.set_queued(true);
        assert!(!s.set_queued(false));
    }

    #[test]
    fn a_handshake_or_header_counts_as_no_request() {
        let s = ConnState::default();
        s.received();
        s.set_awaiting(true);
        assert!(!s.begin_read());
        // The first request may be on the wire: the grace of a new one.
        assert_eq!(s.phase(), Phase::New);
        assert!(!s.shutdown_begins());
        assert!(s.grace_over());
    }

    #[test]
    fn a_client_in_the_middle_of_its_handshake_is_not_idle() {
        let s = ConnState::default();
        s.opening();
        s.received();
        // ServerHello and the rest: no reply to a request.
        s.replied();
        assert!(!s.begin_read());
        assert_eq!(s.phase(), Phase::Reading);
        assert!(!s.shutdown_begins());
        s.set_awaiting(true);
        s.replied();
        s.received();
        s.replied();
        assert_eq!(s.phase(), Phase::Waiting, "replies count once it is done");
    }
}
