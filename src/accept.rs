//! What both engines do when taking a connection off the listener fails:
//! errors classified, back-off, and a spare descriptor for when
//! descriptors run out. A leaf: it knows the core, and nothing of the
//! engines.
//!
//! Errors of one connection or peer (aborted, reset, interrupted) are
//! retried at once; running out of descriptors, buffers or memory backs off
//! (5 ms doubling to 1 s) and is logged at most once a second.

use std::fs::File;
use std::io;
use std::time::Duration;

use crate::core::Core;
use crate::net::stream::Stream;
use crate::report::{log_or_eprint, with_skipped};
use crate::stats::bump;
use crate::sys::errors::{classify, ErrorClass};
use crate::Addr;

/// What to do after an `accept` failed.
#[derive(Debug)]
pub(crate) enum AfterError {
    /// An error of one connection or peer: accept again at once.
    Retry,
    /// The server is short of something (counted and logged): back off
    /// before the next accept; `Some` when the spare descriptor took a
    /// client meanwhile, to be served.
    BackOff(Option<(Stream, Addr)>),
}

/// Counts, classifies and logs a failed `accept`, as the module doc says.
/// Both engines accept through this; they differ only in how they wait
/// out a back-off (a worker sleeps, an event loop pauses its accepting).
pub(crate) fn after_error(core: &Core, e: &io::Error) -> AfterError {
    bump(&core.counters.accept_errors);
    let shed = match classify(e) {
        ErrorClass::Retry => return AfterError::Retry,
        ErrorClass::Descriptors => shed_with_spare(core),
        ErrorClass::Resource => None,
    };
    log_error(core, "accept", e);
    AfterError::BackOff(shed)
}

/// Out of descriptors, clients would wait in the backlog until they give
/// up. Give up the spare descriptor to take one: if descriptors turn out to
/// be available again it is served, else it is closed at once, so it learns
/// now. Another thread already doing this means this one just backs off.
/// No lock is held across the `accept`.
pub(crate) fn shed_with_spare(core: &Core) -> Option<(Stream, Addr)> {
    let spare = core.spare.try_lock().ok()?.take()?;
    drop(spare);
    let accepted = core.listener.accept();
    let mut reopened = open_spare();
    let served = match accepted {
        Ok(accepted) => {
            bump(&core.counters.accepted);
            // Without a spare again, serving this one would leave none for
            // the next time: close it at once instead.
            if reopened.is_none() {
                drop(accepted);
                reopened = open_spare();
                None
            } else {
                Some(accepted)
            }
        }
        Err(_) => None,
    };
    *core.spare.lock().unwrap_or_else(|e| e.into_inner()) = reopened;
    served
}

/// Opens the descriptor kept in reserve for `shed_with_spare`.
pub(crate) fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

/// Logs an accept or receive error, at most once a second, with the number
/// of errors left unlogged since.
pub(crate) fn log_error(core: &Core, what: &str, e: &io::Error) {
    if let Some(skipped) = core.logs.accept_errors.admit() {
        let msg = format!("{what} on {} failed: {e}; backing off", core.local_addr);
        log_or_eprint(log::Level::Warn, &with_skipped(msg, skipped));
    }
}

/// Back-off delays: 5 ms, doubling, capped at 1 s.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    pub(crate) fn next(&mut self) -> Duration {
        let d = self.next.unwrap_or(Self::FIRST);
        self.next = Some((d * 2).min(Self::MAX));
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap() {
        let mut b = Backoff::default();
        let seq: Vec<_> = (0..10).map(|_| b.next().as_millis()).collect();
        assert_eq!(seq, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    }
}
