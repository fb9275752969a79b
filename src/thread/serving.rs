//! What one worker is serving, reachable from other threads.
//!
//! Shutdown and the connection deadline must be able to close a
//! connection whose handler is blocked in `read` or `write`. They do it
//! with `shutdown(2)` on its socket, through the connection's
//! [`Link`], which each worker puts here for as long as it serves it (from
//! before its PROXY header and TLS handshake to its close). Each worker
//! owns one `Serving` for its whole life.
//!
//! Whether a connection is idle is its [`Link`]'s state's to say; see
//! `conn/state.rs` and `CONCURRENCY.md`.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::conn::link::Link;

/// One worker's current connection, if any, and its deadline.
#[derive(Debug, Default)]
pub(crate) struct Serving {
    /// Held only to put a connection in or take it out, or for one
    /// `shutdown(2)`, which never blocks.
    link: Mutex<Option<Arc<Link>>>,
    /// Deadline in milliseconds since the engine's epoch; 0 means none.
    deadline_ms: AtomicU64,
}

impl Serving {
    /// Puts a new connection here. The caller then looks whether shutdown
    /// has begun, and if so closes it if idle itself.
    pub(crate) fn install(&self, link: Arc<Link>, deadline_ms: u64) {
        *self.lock() = Some(link);
        // SeqCst, paired with the watchdog's: see CONCURRENCY.md.
        self.deadline_ms.store(deadline_ms, SeqCst);
    }

    /// Takes the connection out, once it has been served.
    pub(crate) fn remove(&self) -> Option<Arc<Link>> {
        self.deadline_ms.store(0, SeqCst);
        self.lock().take()
    }

    pub(crate) fn deadline_ms(&self) -> u64 {
        self.deadline_ms.load(SeqCst)
    }

    /// Shutdown has begun: see [`Link::close_if_idle`].
    pub(crate) fn close_if_idle(&self) -> bool {
        self.lock()
            .as_ref()
            .is_some_and(|link| link.close_if_idle())
    }

    /// The grace of new connections is over: see [`Link::close_if_new`].
    pub(crate) fn close_if_new(&self) -> bool {
        self.lock().as_ref().is_some_and(|link| link.close_if_new())
    }

    /// Cuts the connection (see [`Link::cut`]). Returns whether there was
    /// one to cut.
    pub(crate) fn cut(&self) -> bool {
        let current = self.lock();
        let Some(link) = current.as_ref() else {
            return false;
        };
        self.deadline_ms.store(0, SeqCst);
        link.cut();
        true
    }

    fn lock(&self) -> MutexGuard<'_, Option<Arc<Link>>> {
        // Only a store, a take or a `shutdown(2)` runs under it: poisoning
        // carries no meaning here.
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }
}
