//! A worker's seat: the stream it is serving, reachable from other threads.
//!
//! Shutdown and the connection deadline must be able to cut a connection
//! whose handler is blocked in `read` or `write`. They do it with
//! `shutdown(2)` on the socket, which needs only a shared reference, so the
//! stream lives here behind a read-write lock: the handler and the cutter
//! both take the read side; only installing and removing take the write side.
//! Each worker owns one slot for its whole life, so serving a connection
//! allocates nothing.
//!
//! The slot also knows whether its connection is *idle*: its handler is
//! waiting in `read` for the client's next request (nothing has been read
//! since the handler last wrote, or since the connection opened). When
//! shutdown begins, idle connections get end of file at once rather than
//! holding the shutdown for its whole timeout. See `CONCURRENCY.md` for
//! the handshake between a reader and the shutdown.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::SeqCst};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::net::stream::Stream;

/// The handler is inside `read`.
const READING: u8 = 1;
/// Nothing read since the last write (or since the connection opened).
const AWAITING: u8 = 2;
/// Shutdown has begun: an idle read returns end of file.
const CLOSING: u8 = 4;
/// This connection was given end of file by the shutdown.
const CLOSED_IDLE: u8 = 8;

/// One worker's current stream, if any, and its deadline.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    stream: RwLock<Option<Stream>>,
    /// Deadline in milliseconds since the server's epoch; 0 means none.
    deadline_ms: AtomicU64,
    /// `READING | AWAITING | CLOSING | CLOSED_IDLE`.
    flags: AtomicU8,
}

impl Slot {
    /// Installs a new connection. The caller then looks whether shutdown
    /// has begun, and if so calls [`close_if_idle`](Self::close_if_idle).
    pub(crate) fn install(&self, stream: Stream, deadline_ms: u64) {
        *self.write_lock() = Some(stream);
        self.flags.store(AWAITING, SeqCst);
        // SeqCst, paired with the watchdog's: see CONCURRENCY.md.
        self.deadline_ms.store(deadline_ms, SeqCst);
    }

    /// Takes the stream out (dropping it closes the connection); returns
    /// whether the shutdown closed it as idle.
    pub(crate) fn remove(&self) -> (Option<Stream>, bool) {
        self.deadline_ms.store(0, SeqCst);
        let closed_idle = self.flags.swap(0, SeqCst) & CLOSED_IDLE != 0;
        (self.write_lock().take(), closed_idle)
    }

    pub(crate) fn deadline_ms(&self) -> u64 {
        self.deadline_ms.load(SeqCst)
    }

    /// Reads from the stream. Once shutdown has begun, a read on an idle
    /// connection shuts the socket's reading side first: bytes already
    /// received are still read, then end of file, instead of blocking.
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let guard = self.read_lock();
        let Some(stream) = guard.as_ref() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let before = self.flags.fetch_or(READING, SeqCst);
        if before & (CLOSING | AWAITING | CLOSED_IDLE) == CLOSING | AWAITING {
            self.flags.fetch_or(CLOSED_IDLE, SeqCst);
            let _ = stream.shutdown(Shutdown::Read);
        }
        let result = { stream }.read(buf);
        let clear = match result {
            Ok(n) if n > 0 => READING | AWAITING,
            _ => READING,
        };
        self.flags.fetch_and(!clear, SeqCst);
        result
    }

    /// Writes to the stream; the connection then waits for input again.
    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let guard = self.read_lock();
        let Some(stream) = guard.as_ref() else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let result = { stream }.write(buf);
        if self.flags.load(SeqCst) & AWAITING == 0 {
            self.flags.fetch_or(AWAITING, SeqCst);
        }
        result
    }

    #[cfg(feature = "tls")]
    /// Counts the connection as waiting for its client's next request,
    /// or (`false`) as in the middle of one.
    pub(crate) fn set_awaiting(&self, awaiting: bool) {
        match awaiting {
            true => self.flags.fetch_or(AWAITING, SeqCst),
            false => self.flags.fetch_and(!AWAITING, SeqCst),
        };
    }

    /// Shutdown has begun: an idle connection blocked in `read` gets end
    /// of file now (`shutdown(SHUT_RD)`); any other gets it at its next
    /// idle read. Returns whether this one was idle now.
    pub(crate) fn close_if_idle(&self) -> bool {
        let guard = self.read_lock();
        let Some(stream) = guard.as_ref() else {
            return false;
        };
        let before = self.flags.fetch_or(CLOSING, SeqCst);
        if before & (READING | AWAITING) != READING | AWAITING {
            return false;
        }
        self.flags.fetch_or(CLOSED_IDLE, SeqCst);
        // Bytes already received are still read first; then end of file.
        let _ = stream.shutdown(Shutdown::Read);
        true
    }

    /// Shuts the stream down both ways so a blocked read or write returns.
    /// Returns whether there was a stream to cut.
    pub(crate) fn cut(&self) -> bool {
        let guard = self.read_lock();
        match guard.as_ref() {
            Some(stream) => {
                self.deadline_ms.store(0, SeqCst);
                // ENOTCONN when the peer is already gone: nothing left to cut.
                let _ = stream.shutdown(Shutdown::Both);
                true
            }
            None => false,
        }
    }

    /// Runs `f` on the stream; `NotConnected` if there is none.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&Stream) -> io::Result<T>) -> io::Result<T> {
        match self.read_lock().as_ref() {
            Some(stream) => f(stream),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn read_lock(&self) -> RwLockReadGuard<'_, Option<Stream>> {
        // A panic never happens while the lock is held (only socket calls
        // run under it), so poisoning carries no meaning here.
        self.stream.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_lock(&self) -> RwLockWriteGuard<'_, Option<Stream>> {
        self.stream.write().unwrap_or_else(|e| e.into_inner())
    }
}
