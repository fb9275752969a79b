//! One connection's steps, on the worker that accepted it: socket options,
//! the PROXY header, the deadline, the handler, and what to report. Every
//! step runs with panics caught, so that a panic, the handler's or the
//! library's own, costs this one connection and never the worker.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;
use std::time::Instant;

use crate::admission::{self, Admitted};
use crate::batch::{Inbox, Outbox, SLOTS};
use crate::connection::{Connection, Datagram};
use crate::core::{Accepted, Core, Shared};
use crate::net::datagram::DatagramSocket;
use crate::net::stream::Stream;
use crate::proxy::{ProxyError, ProxyHeader};
use crate::report::{drop_payload, log_or_eprint, panic_message, with_skipped, Failure};
use crate::slot::Slot;
use crate::stats::{add, bump};
use crate::{Addr, Handler, ProxyProtocol};

/// Serves one accepted connection to the end. Whatever it counts against
/// `max_per_source` late (under the PROXY protocol) is recorded in
/// `admitted`, for the caller to give back.
pub(crate) fn serve_stream<H: Handler>(
    shared: &Shared<H>,
    slot: &Arc<Slot>,
    job: Accepted,
    admitted: &mut Admitted,
) {
    let core = &*shared.core;
    let peer = job.peer.clone();
    let served = catch_unwind(AssertUnwindSafe(|| {
        serve_steps(shared, slot, job.stream, job.peer, admitted)
    }));
    let (_, closed_idle) = slot.remove();
    if closed_idle {
        bump(&core.counters.closed_idle);
    }
    if let Err(payload) = served {
        internal_error(core, &peer, payload);
    }
}

/// Reports a panic of the library's own while serving `peer`: only a
/// defect lands here, the handler's own panics are caught closer to it.
pub(crate) fn internal_error(core: &Core, peer: &Addr, payload: Box<dyn std::any::Any + Send>) {
    bump(&core.counters.panics);
    if let Some(skipped) = core.logs.internal.admit() {
        let msg = format!(
            "internal error while serving {peer}: {}; the connection was closed",
            panic_message(&*payload)
        );
        log_or_eprint(log::Level::Error, &with_skipped(msg, skipped));
    }
    drop_payload(payload);
}

fn serve_steps<H: Handler>(
    shared: &Shared<H>,
    slot: &Arc<Slot>,
    stream: Stream,
    peer: Addr,
    admitted: &mut Admitted,
) {
    let core = &*shared.core;
    let settings = &core.settings;
    // Failures here mean the peer is already gone; the handler will see it.
    if !core.inherits_options {
        if settings.nodelay {
            let _ = stream.set_nodelay(true);
        }
        let _ = stream.set_write_timeout(settings.write_timeout);
    }
    let (peer, proxy) = match &settings.proxy_protocol {
        None => {
            if !core.inherits_options {
                let _ = stream.set_read_timeout(settings.read_timeout);
            }
            (peer, None)
        }
        Some(pp) => match proxied_client(core, pp, &stream, &peer, admitted, || {
            pp.read(&stream, settings.read_timeout)
        }) {
            Some(client) => (client, Some(peer)),
            None => return,
        },
    };
    let deadline = settings
        .connection_timeout
        .map_or(0, |t| core.now_ms().saturating_add(millis(t)));
    slot.install(stream, deadline);
    // A connection that starts as shutdown begins may have been missed by
    // its scan of the slots; SeqCst on both sides (CONCURRENCY.md).
    if core.stopping() {
        slot.close_if_idle();
    }
    if deadline != 0 && core.watchdog_idle.load(SeqCst) {
        let _st = core.lock();
        core.timer.notify_all();
    }
    let timeouts = (settings.read_timeout, settings.write_timeout);
    let mut conn = Connection::stream(Arc::clone(slot), peer, core.local_addr.clone(), timeouts);
    conn.set_proxy(proxy);
    handle_stream(shared, &mut conn);
}

/// Runs a stream connection's handler: after the TLS handshake when the
/// server speaks TLS, and with TLS's `close_notify` after a handler that
/// returned `Ok`.
pub(crate) fn handle_stream<H: Handler>(shared: &Shared<H>, conn: &mut Connection) {
    #[cfg(feature = "tls")]
    if let Some(acceptor) = &shared.core.settings.tls {
        if !tls_handshake(&shared.core, acceptor, conn) {
            return;
        }
    }
    if call_handler(shared, conn) {
        // Only a handler that finished says so to a TLS client: after an
        // error or a panic the client must see a cut, not a whole reply.
        conn.finish();
        bump(&shared.core.counters.completed);
    }
}

/// The TLS handshake; `false` if it failed (counted and reported) and the
/// connection must be closed unserved.
#[cfg(feature = "tls")]
fn tls_handshake(core: &Core, acceptor: &crate::tls::TlsAcceptor, conn: &mut Connection) -> bool {
    match conn.start_tls(acceptor, core.settings.tls_handshake_timeout) {
        Ok(()) => {
            bump(&core.counters.tls_handshakes);
            true
        }
        // Shutdown closing a connection in its handshake (at once if it
        // waits for the client's next message, or cut at the end of the
        // grace period) is no failure of the client's: that socket reads
        // end of file, or, parked, fails as aborted.
        Err(error)
            if core.stopping()
                && matches!(
                    error.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionAborted
                ) =>
        {
            false
        }
        // A health check or a port scan: connected, and closed or reset
        // before a TLS byte. Counting it would bury real failures.
        Err(error) if crate::tls::sent_nothing(&error) => {
            if log::log_enabled!(log::Level::Debug) {
                let peer = conn.peer_addr();
                log_or_eprint(log::Level::Debug, &format!("{peer}: {error}"));
            }
            false
        }
        Err(error) => {
            bump(&core.counters.tls_handshake_failures);
            let peer = conn.peer_addr();
            report(
                core,
                &Failure::TlsHandshake {
                    peer: &peer,
                    error: &error,
                },
            );
            false
        }
    }
}

/// A duration in whole milliseconds, saturating.
fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Checks that a connection comes from a trusted proxy and reads its PROXY
/// header with `read_header`: the client it speaks for, counted against
/// `max_per_source` in `admitted`. `None` when the connection must be
/// closed unserved (it is counted, and closed when the caller drops it).
pub(crate) fn proxied_client(
    core: &Core,
    pp: &ProxyProtocol,
    stream: &Stream,
    proxy: &Addr,
    admitted: &mut Admitted,
    read_header: impl FnOnce() -> Result<ProxyHeader, ProxyError>,
) -> Option<Addr> {
    let counters = &core.counters;
    if !proxy.ip().is_some_and(|ip| pp.trusts(ip)) {
        bump(&counters.proxy_refused);
        log::debug!("refused {proxy}: not a trusted proxy");
        return None;
    }
    let header = match read_header() {
        Ok(header) => header,
        Err(e) => {
            bump(&counters.proxy_errors);
            log::debug!("closed {proxy}: bad PROXY header: {e}");
            return None;
        }
    };
    let client = header.source().map_or_else(|| proxy.clone(), Addr::Inet);
    let counted = core
        .lock()
        .books
        .count_source(&core.settings, admitted, &client);
    match counted {
        Ok(()) => Some(client),
        Err(_) => {
            admission::refuse(&core.settings, counters, stream);
            None
        }
    }
}

/// Serves the datagrams of one batch (`ready`, as `receive_batch` listed
/// them), one after the other, then sends their replies together. Returns
/// the replies' outbox for the next batch.
///
/// Shutdown beginning in the middle of a batch ends it: the datagrams not
/// yet started are dropped unserved and counted so. A reply that could not
/// be sent turns its datagram's outcome into a handler error, reported as
/// the handler's own would have been.
pub(crate) fn serve_batch<H: Handler>(
    shared: &Shared<H>,
    socket: &DatagramSocket,
    inbox: &mut Inbox,
    ready: &[(usize, usize, Addr)],
    mut out: Outbox,
) -> Outbox {
    let core = &*shared.core;
    let counters = &core.counters;
    let started = Instant::now();
    let mut arena = std::mem::take(&mut inbox.arena);
    // Which datagrams' handlers returned `Ok`, by their place in `ready`.
    let mut ok = [false; SLOTS];
    let mut served = 0;
    for (k, (start, len, peer)) in ready.iter().enumerate().take(SLOTS) {
        // The first was taken before shutdown began (`receive_batch`
        // looked); the rest are not started once it has.
        if k > 0 && core.stopping() {
            add(&counters.dropped_at_shutdown, (ready.len() - k) as u64);
            break;
        }
        out.begin(k);
        let datagram = Datagram::new(peer.clone(), arena, *start, *len, out);
        let mut conn = Connection::from_datagram(datagram, core.local_addr.clone());
        ok[k] = call_handler(shared, &mut conn);
        served += 1;
        match conn.into_datagram() {
            Some(d) => (arena, out) = d.into_parts(),
            // Never: the connection was made of a datagram. The next
            // receive makes a new arena.
            None => return Outbox::new(socket.clone()),
        }
    }
    inbox.arena = arena;
    out.finish();
    inbox.adapt(served, started.elapsed());
    let mut completed = ok.iter().filter(|&&o| o).count() as u64;
    for (k, error) in out.failures() {
        let Some(flag) = ok.get_mut(k).filter(|o| **o) else {
            continue;
        };
        // Counted once per datagram, however many of its replies failed.
        *flag = false;
        completed -= 1;
        bump(&counters.handler_errors);
        let failure = Failure::Error {
            peer: &ready[k].2,
            error: &error,
        };
        report(core, &failure);
    }
    add(&counters.completed, completed);
    out
}

/// Calls the handler with panics caught: a panic costs this one connection,
/// never the worker. Counts and reports the failures; a handler that
/// returns `Ok` is left for the caller to count: returns whether it did.
fn call_handler<H: Handler>(shared: &Shared<H>, conn: &mut Connection) -> bool {
    let core = &shared.core;
    let counters = &core.counters;
    match catch_unwind(AssertUnwindSafe(|| shared.handler.handle(conn))) {
        Ok(Ok(())) => return true,
        Ok(Err(error)) => {
            let peer = conn.peer_addr();
            match conn.idle_timeout() {
                Some(after) if error.kind() == std::io::ErrorKind::TimedOut => {
                    bump(&counters.idle_timeouts);
                    report(core, &Failure::IdleTimeout { peer: &peer, after });
                }
                _ => {
                    bump(&counters.handler_errors);
                    let failure = Failure::Error {
                        peer: &peer,
                        error: &error,
                    };
                    report(core, &failure);
                }
            }
        }
        Err(payload) => {
            bump(&counters.panics);
            let peer = conn.peer_addr();
            let message = panic_message(&*payload);
            report(
                core,
                &Failure::Panic {
                    peer: &peer,
                    message,
                },
            );
            drop_payload(payload);
        }
    }
    false
}

/// Calls the user's hook; a hook that panics must not take the worker down.
fn report(core: &Core, failure: &Failure<'_>) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| (core.on_error)(failure))) {
        drop_payload(payload);
    }
}
