//! A worker's seat: the stream it is serving, reachable from other threads.
//!
//! Shutdown and the connection deadline must be able to cut a connection
//! whose handler is blocked in `read` or `write`. They do it with
//! `shutdown(2)` on the socket, which needs only a shared reference, so the
//! stream lives here behind a read-write lock: the handler and the cutter
//! both take the read side; only installing and removing take the write side.
//! Each worker owns one slot for its whole life, so serving a connection
//! allocates nothing.

use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::stream::Stream;

/// One worker's current stream, if any, and its deadline.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    stream: RwLock<Option<Stream>>,
    /// Deadline in milliseconds since the server's epoch; 0 means none.
    deadline_ms: AtomicU64,
}

impl Slot {
    pub(crate) fn install(&self, stream: Stream, deadline_ms: u64) {
        *self.write() = Some(stream);
        self.deadline_ms.store(deadline_ms, Ordering::Release);
    }

    /// Takes the stream out; dropping it closes the connection.
    pub(crate) fn remove(&self) -> Option<Stream> {
        self.deadline_ms.store(0, Ordering::Release);
        self.write().take()
    }

    pub(crate) fn deadline_ms(&self) -> u64 {
        self.deadline_ms.load(Ordering::Acquire)
    }

    /// Shuts the stream down both ways so a blocked read or write returns.
    /// Returns whether there was a stream to cut.
    pub(crate) fn cut(&self) -> bool {
        let guard = self.read();
        match guard.as_ref() {
            Some(stream) => {
                self.deadline_ms.store(0, Ordering::Release);
                // ENOTCONN when the peer is already gone: nothing left to cut.
                let _ = stream.shutdown(Shutdown::Both);
                true
            }
            None => false,
        }
    }

    /// Runs `f` on the stream; `NotConnected` if there is none.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&Stream) -> io::Result<T>) -> io::Result<T> {
        match self.read().as_ref() {
            Some(stream) => f(stream),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Option<Stream>> {
        // A panic never happens while the lock is held (only socket calls
        // run under it), so poisoning carries no meaning here.
        self.stream.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Option<Stream>> {
        self.stream.write().unwrap_or_else(|e| e.into_inner())
    }
}
