//! Taking one piece of work off the server's socket: accept one connection
//! or receive one datagram, with errors classified, back-off, and a spare
//! descriptor for when descriptors run out. A leaf: it knows the core, and
//! nothing of workers or the pool.
//!
//! Errors of one connection or peer (aborted, reset, interrupted) are
//! retried at once; running out of descriptors, buffers or memory backs off
//! (5 ms doubling to 1 s) and is logged at most once a second. The calls
//! end only with work or with shutdown.

use std::fs::File;
use std::io;
use std::time::Duration;

use crate::batch::Inbox;
use crate::core::Core;
use crate::net::datagram::DatagramSocket;
use crate::net::stream::Stream;
use crate::report::{log_or_eprint, with_skipped};
use crate::stats::{add, bump};
use crate::sys::errors::{classify, ErrorClass};
use crate::Addr;

/// Accepts one connection, retrying and backing off on errors as the
/// module doc says. `None` once shutdown has begun.
pub(crate) fn accept_one(core: &Core) -> Option<(Stream, Addr)> {
    let mut backoff = Backoff::default();
    loop {
        match core.listener.accept() {
            Ok(accepted) => {
                bump(&core.counters.accepted);
                return Some(accepted);
            }
            Err(_) if core.stopping() => return None,
            // The listener's inherited or passed-socket read timeout
            // expired: nothing came; look at the shutdown flag and go on.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                bump(&core.counters.accept_errors);
                match classify(&e) {
                    ErrorClass::Retry => continue,
                    ErrorClass::Descriptors => {
                        if let Some(accepted) = shed_with_spare(core) {
                            return Some(accepted);
                        }
                    }
                    ErrorClass::Resource => {}
                }
                log_error(core, "accept", &e);
                if core.sleep_unless_stopped(backoff.next()) {
                    return None;
                }
            }
        }
    }
}

/// Receives a batch of datagrams (see `batch`) with at least one fit to
/// serve, and lists those in `ready` as (start in the arena, length,
/// source); too large ones, those from a source port below
/// `min_source_port` and those the loop guard holds back are counted and
/// dropped here. `false` once shutdown has begun.
pub(crate) fn receive_batch(
    core: &Core,
    socket: &DatagramSocket,
    inbox: &mut Inbox,
    ready: &mut Vec<(usize, usize, Addr)>,
) -> bool {
    let max = core.settings.max_datagram;
    let counters = &core.counters;
    let mut backoff = Backoff::default();
    loop {
        ready.clear();
        let received = inbox.receive(socket, || core.stopping());
        // Shutdown wakes receivers by shutting the socket's reading side
        // (an empty read, or an error with no address); a passed socket's
        // receive timeout expires every 100 ms. Either way, look first.
        if core.stopping() {
            return false;
        }
        let error = match received {
            Ok(n) => {
                add(&counters.datagrams_received, n as u64);
                let mut unreadable = None;
                for i in 0..n {
                    let (start, len, peer) = inbox.datagram(i);
                    let Some(peer) = peer else {
                        unreadable = Some(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "a datagram came with no source address",
                        ));
                        continue;
                    };
                    if len > max {
                        bump(&counters.dropped_truncated);
                    } else if peer
                        .port()
                        .is_some_and(|p| p < core.settings.min_source_port)
                    {
                        bump(&counters.dropped_low_port);
                    } else if !loop_guard_admits(core, &peer) {
                        bump(&counters.dropped_loop);
                    } else {
                        ready.push((start, len, peer));
                    }
                }
                if !ready.is_empty() {
                    return true;
                }
                match (n, unreadable) {
                    (_, Some(e)) => e,
                    // The reading side was shut down, not by us.
                    (0, None) => io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the socket's reading side is shut down",
                    ),
                    (_, None) => continue,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if classify(&e) == ErrorClass::Retry => continue,
            Err(e) => e,
        };
        log_error(core, "receive", &error);
        if core.sleep_unless_stopped(backoff.next()) {
            return false;
        }
    }
}

/// Whether the loop guard, if any, lets a datagram from `peer` be served.
fn loop_guard_admits(core: &Core, peer: &Addr) -> bool {
    match (&core.loop_guard, peer.inet()) {
        (Some(guard), Some(source)) => guard.admit(source),
        _ => true,
    }
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
