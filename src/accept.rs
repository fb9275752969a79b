//! The accept and receive loops, run by the workers themselves.
//!
//! A free worker calls `accept()` (or `recv_from()`) on the shared socket and
//! serves what it gets inline: no hand-off to another thread, no queue, on
//! the common path. Only when every worker is busy and the pool cannot grow
//! does the run thread accept ahead into the bounded queue (`queue(n)`, off
//! by default); otherwise clients wait in the kernel backlog.
//!
//! Accept errors are classified: those of one connection (aborted, reset,
//! interrupted) are retried at once; running out of descriptors, buffers or
//! memory backs off (5 ms doubling to 1 s) and is logged at most once a
//! second. The loops end only on shutdown.

use std::fs::File;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::connection::{Datagram, DatagramSocket};
use crate::pool::{self, Exit};
use crate::shared::{Accepted, Core, Shared};
use crate::slot::Slot;
use crate::socket::Listener;
use crate::stats::bump;
use crate::{Addr, Handler};

/// The loop of a stream worker: serve queued work first, otherwise accept
/// and serve inline, otherwise wait.
pub(crate) fn stream_worker<H: Handler>(shared: &Arc<Shared<H>>, slot: &Arc<Slot>) -> Exit {
    let core = &*shared.core;
    let max_held = core.settings.max_connections();
    let mut st = core.lock();
    loop {
        if st.stopping {
            return Exit::Stopped;
        }
        if let Some(job) = st.queue.pop_front() {
            st = pool::serve_held(shared, slot, st, job);
            continue;
        }
        // At most `workers` threads wait in accept() at once, so that threads
        // the pool grew beyond that can idle on the condvar and retire.
        let may_accept =
            !st.dispatcher_accepting && st.accepting < core.settings.workers && st.held < max_held;
        if !may_accept {
            match pool::wait_for_work(core, st) {
                Some(guard) => st = guard,
                None => return Exit::Retired,
            }
            continue;
        }
        // Reserve the connection before accepting it, so that concurrent
        // acceptors can never hold more than `max_connections` between them.
        st.held += 1;
        st.accepting += 1;
        drop(st);
        let accepted = accept_one(core);
        st = core.lock();
        st.accepting -= 1;
        let Some(job) = accepted else {
            st.held -= 1;
            continue;
        };
        if st.held == max_held {
            bump(&core.counters.max_connections_reached);
        }
        if !pool::admit(core, &mut st, &job) {
            st.held -= 1;
            drop(st);
            pool::reject(core, job);
            st = core.lock();
            continue;
        }
        st = pool::serve_held(shared, slot, st, job);
    }
}

/// The run thread's part while serving a stream: when every worker is busy
/// and the pool is at `max_workers`, accept ahead into the queue (if
/// `queue(n)` is set). Returns when shutdown begins.
pub(crate) fn fill_queue(core: &Core) {
    let settings = &core.settings;
    let mut st = core.lock();
    if let Listener::Datagram(_) = &core.listener {
        while !st.stopping {
            st = core.control.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        return;
    };
    loop {
        if st.stopping {
            return;
        }
        let may_accept = settings.queue > 0
            && st.accepting == 0
            && st.idle == 0
            && st.threads >= settings.max_workers()
            && st.queue.len() < settings.queue
            && st.held < settings.max_connections();
        if !may_accept {
            st = core.control.wait(st).unwrap_or_else(|e| e.into_inner());
            continue;
        }
        st.dispatcher_accepting = true;
        st.held += 1;
        drop(st);
        let accepted = accept_one(core);
        st = core.lock();
        st.dispatcher_accepting = false;
        match accepted {
            None => st.held -= 1,
            Some(job) if pool::admit(core, &mut st, &job) => {
                if st.held == settings.max_connections() {
                    bump(&core.counters.max_connections_reached);
                }
                st.queue.push_back(job);
            }
            Some(job) => {
                st.held -= 1;
                drop(st);
                pool::reject(core, job);
                st = core.lock();
            }
        }
        // Workers that found the run thread accepting went idle; they may
        // now take the queued job or accept themselves.
        if st.idle > 0 {
            core.work.notify_all();
        }
    }
}

/// The loop of a datagram worker: receive on the shared socket and serve
/// each datagram inline.
pub(crate) fn datagram_worker<H: Handler>(shared: &Arc<Shared<H>>, _slot: &Arc<Slot>) -> Exit {
    let core = &*shared.core;
    let Listener::Datagram(socket) = &core.listener else {
        return Exit::Stopped;
    };
    // One byte more than the largest datagram served: a datagram that
    // fills it was larger than `max_datagram`, and is dropped, not cut.
    let mut buf = vec![0u8; core.settings.max_datagram + 1];
    let mut st = core.lock();
    loop {
        if st.stopping {
            return Exit::Stopped;
        }
        if st.accepting >= core.settings.workers {
            match pool::wait_for_work(core, st) {
                Some(guard) => st = guard,
                None => return Exit::Retired,
            }
            continue;
        }
        st.accepting += 1;
        drop(st);
        let received = receive_one(core, socket, &mut buf);
        st = core.lock();
        st.accepting -= 1;
        let Some((len, peer)) = received else {
            continue;
        };
        st.active += 1;
        pool::ensure_acceptor(shared, &mut st);
        drop(st);
        let datagram = Datagram::new(socket.clone(), peer, buf, len);
        buf = pool::serve_datagram(shared, datagram);
        st = core.lock();
        st.active -= 1;
        if st.stopping && st.active == 0 {
            core.control.notify_all();
        }
    }
}

/// Accepts one connection, retrying and backing off on errors as the
/// module doc says. `None` once shutdown has begun.
fn accept_one(core: &Core) -> Option<Accepted> {
    let mut backoff = Backoff::default();
    loop {
        match core.listener.accept() {
            Ok((stream, peer)) => {
                bump(&core.counters.accepted);
                return Some(Accepted { stream, peer });
            }
            Err(_) if core.stopping() => return None,
            // The listener's inherited read timeout expired: nothing came.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                bump(&core.counters.accept_errors);
                match classify(&e) {
                    ErrorClass::Retry => continue,
                    ErrorClass::Descriptors => {
                        if let Some(job) = shed_with_spare(core) {
                            return Some(job);
                        }
                    }
                    ErrorClass::Resource => {}
                }
                log_accept_error(core, &e);
                if core.sleep_unless_stopped(backoff.next()) {
                    return None;
                }
            }
        }
    }
}

/// Receives one datagram fit to serve: too large ones and those from a
/// source port below `min_source_port` are counted and dropped here.
/// `None` once shutdown has begun.
fn receive_one(core: &Core, socket: &DatagramSocket, buf: &mut [u8]) -> Option<(usize, Addr)> {
    let max = core.settings.max_datagram;
    let counters = &core.counters;
    let mut backoff = Backoff::default();
    loop {
        match socket.recv_from(buf) {
            // Shutdown wakes receivers with an empty datagram.
            _ if core.stopping() => return None,
            Ok((len, peer)) => {
                bump(&counters.datagrams_received);
                if len > max {
                    bump(&counters.dropped_truncated);
                } else if peer
                    .port()
                    .is_some_and(|p| p < core.settings.min_source_port)
                {
                    bump(&counters.dropped_low_port);
                } else {
                    return Some((len, peer));
                }
            }
            // ICMP errors (port unreachable after an earlier reply) surface
            // here as ECONNREFUSED and the like: they concern one peer, and
            // are retried at once like a connection's errors.
            Err(e) if classify(&e) == ErrorClass::Retry => {}
            Err(e) => {
                log_accept_error(core, &e);
                if core.sleep_unless_stopped(backoff.next()) {
                    return None;
                }
            }
        }
    }
}

/// What to do after a failed `accept()`.
#[derive(Debug, PartialEq, Eq)]
enum ErrorClass {
    /// The error belongs to one pending connection: try the next at once.
    Retry,
    /// The process or system is out of descriptors: shed a client, back off.
    Descriptors,
    /// Out of memory or buffers, or not understood: back off.
    Resource,
}

fn classify(e: &io::Error) -> ErrorClass {
    match e.raw_os_error() {
        // accept(2) on Linux: errors of the pending connection or the
        // network should be treated like EAGAIN and retried.
        Some(
            libc::ECONNABORTED
            | libc::ECONNRESET
            | libc::EINTR
            | libc::EAGAIN
            | libc::EPROTO
            | libc::EPERM
            | libc::ENETDOWN
            | libc::ENOPROTOOPT
            | libc::EHOSTDOWN
            | libc::ENONET
            | libc::EHOSTUNREACH
            | libc::EOPNOTSUPP
            | libc::ENETUNREACH
            | libc::ETIMEDOUT
            | libc::ECONNREFUSED,
        ) => ErrorClass::Retry,
        Some(libc::EMFILE | libc::ENFILE) => ErrorClass::Descriptors,
        _ => ErrorClass::Resource,
    }
}

/// Out of descriptors, clients would wait in the backlog until they give
/// up. Give up the spare descriptor to take one: if descriptors turn out to
/// be available again it is served, else it is closed at once, so it learns
/// now. Another thread already doing this means this one just backs off.
fn shed_with_spare(core: &Core) -> Option<Accepted> {
    let mut spare = core.spare.try_lock().ok()?;
    spare.take();
    let accepted = core.listener.accept();
    *spare = open_spare();
    match accepted {
        Ok((stream, peer)) => {
            bump(&core.counters.accepted);
            if spare.is_some() {
                return Some(Accepted { stream, peer });
            }
            drop(stream);
            *spare = open_spare();
            None
        }
        Err(_) => None,
    }
}

/// Opens the descriptor kept in reserve for `shed_with_spare`.
pub(crate) fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

/// Logs an accept or receive error, at most once a second, with the number
/// of errors left unlogged since.
fn log_accept_error(core: &Core, e: &io::Error) {
    let mut log = core.accept_log.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    match log.0 {
        Some(at) if now.duration_since(at) < Duration::from_secs(1) => log.1 += 1,
        _ => {
            let skipped = std::mem::take(&mut log.1);
            log.0 = Some(now);
            drop(log);
            let msg = format!("accept on {} failed: {e}; backing off", core.local_addr);
            match skipped {
                0 => crate::log_or_eprint(log::Level::Warn, &msg),
                n => crate::log_or_eprint(
                    log::Level::Warn,
                    &format!("{msg} ({n} more errors not logged)"),
                ),
            }
        }
    }
}

/// Back-off delays: 5 ms, doubling, capped at 1 s.
#[derive(Debug, Default)]
struct Backoff {
    next: Option<Duration>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    fn next(&mut self) -> Duration {
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

    #[test]
    fn errors_are_classified() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(classify(&e(libc::ECONNABORTED)), ErrorClass::Retry);
        assert_eq!(classify(&e(libc::EINTR)), ErrorClass::Retry);
        assert_eq!(classify(&e(libc::EMFILE)), ErrorClass::Descriptors);
        assert_eq!(classify(&e(libc::ENFILE)), ErrorClass::Descriptors);
        assert_eq!(classify(&e(libc::ENOBUFS)), ErrorClass::Resource);
        assert_eq!(classify(&e(libc::ENOMEM)), ErrorClass::Resource);
    }
}
