//! Taking one piece of work off the server's socket, blocking: accept one
//! connection or receive one batch of datagrams, retrying and backing off
//! on errors (see the crate's `accept` for how they are told apart). The
//! calls end only with work or with shutdown.

use std::io;

use crate::accept::{after_error, log_error, AfterError, Backoff};
use crate::core::Core;
use crate::net::batch::Incoming;
use crate::net::datagram::DatagramSocket;
use crate::net::stream::Stream;
use crate::net::wake::SHARED_SOCKET_TICK;
use crate::stats::{add, bump};
use crate::sys::errors::{classify, ErrorClass};
use crate::sys::poll;
use crate::thread::Workers;
use crate::Addr;

/// Accepts one connection, retrying and backing off on errors as the
/// module doc says. `None` once shutdown has begun.
pub(crate) fn accept_one(workers: &Workers) -> Option<(Stream, Addr)> {
    let core = &*workers.core;
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
            // Or another process serving the same socket made it
            // non-blocking (an upgrade to `park_idle` starting): wait for
            // a connection as the timeout would, rather than spin.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let listener = core.listener.sock_ref();
                if listener.nonblocking().unwrap_or(false) {
                    let _ = poll::wait(&*listener, false, Some(SHARED_SOCKET_TICK));
                }
                continue;
            }
            Err(e) => match after_error(core, &e) {
                AfterError::Retry => continue,
                AfterError::BackOff(Some(accepted)) => return Some(accepted),
                AfterError::BackOff(None) => {
                    if workers.sleep_unless_stopped(backoff.next()) {
                        return None;
                    }
                }
            },
        }
    }
}

/// Whether a datagram received as shutdown began is its wake-up rather
/// than a client's: an empty read with no sender (a Unix client that did
/// not bind a path reads the same, and an empty datagram from one at that
/// moment is taken for it).
fn wake_up((_, len, peer): (usize, usize, Option<Addr>)) -> bool {
    len == 0 && peer.is_none_or(|p| matches!(p, Addr::Unix(None)))
}

/// Receives a batch of datagrams (see `batch`) with at least one fit to
/// serve, and lists those in `ready` as (start in the arena, length,
/// source); too large ones, those from a source port below
/// `min_source_port` and those the loop guard holds back are counted and
/// dropped here. `false` once shutdown has begun.
pub(crate) fn receive_batch(
    workers: &Workers,
    socket: &DatagramSocket,
    incoming: &mut Incoming,
    ready: &mut Vec<(usize, usize, Addr)>,
) -> bool {
    let core = &*workers.core;
    let max = core.settings.max_datagram;
    let counters = &core.counters;
    let mut backoff = Backoff::default();
    loop {
        ready.clear();
        let received = incoming.receive(socket, || core.stopping());
        // Shutdown wakes receivers by shutting the socket's reading side
        // (an empty read, or an error with no address); a passed socket's
        // receive timeout expires every 100 ms. Either way, look first:
        // but datagrams received are requests that reached the server, and
        // are served (a socket handed to a new process keeps the rest).
        if core.stopping() && !received.as_ref().is_ok_and(|n| *n > 0) {
            return false;
        }
        let error = match received {
            Ok(n) if core.stopping() && (0..n).all(|i| wake_up(incoming.datagram(i))) => {
                return false;
            }
            Ok(n) => {
                add(&counters.datagrams_received, n as u64);
                let mut unreadable = None;
                for i in 0..n {
                    let (start, len, peer) = incoming.datagram(i);
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
        if workers.sleep_unless_stopped(backoff.next()) {
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
