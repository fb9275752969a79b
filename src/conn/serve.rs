//! One connection's steps, as either engine serves it: socket options, the
//! PROXY header, the TLS handshake, the handler, and what to report. Every
//! step runs with panics caught, so that a panic, the handler's or the
//! library's own, costs this one connection and never the thread (or the
//! event loop) serving it.
//!
//! The engine makes the connection's [`Link`] reachable to shutdown before
//! these steps begin, so a client that has sent nothing yet, not even its
//! PROXY header, is seen and closed as idle like any other.

use std::io::{self, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use crate::admission::{self, Admitted};
use crate::conn::connection::Connection;
use crate::conn::io::SocketIo;
use crate::conn::link::Link;
use crate::conn::outbox_core::PushSetup;
use crate::core::Core;
use crate::deadline::deadline_after;
use crate::proxy::{read_header, ProxyError};
use crate::report::{
    client_gone, drop_payload, log_or_eprint, panic_message, with_skipped, Failure,
};
use crate::stats::bump;
use crate::{Addr, Handler, ProxyProtocol};

/// Serves one accepted stream connection to the end, over `io` (blocking
/// or parked, as the engine made it). Whatever it counts against
/// `max_per_source` late (under the PROXY protocol) is recorded in
/// `admitted`, for the caller to give back.
pub(crate) fn serve_stream<H: Handler>(
    core: &Core,
    handler: &H,
    link: &Link,
    io: SocketIo,
    push: &Arc<PushSetup>,
    peer: Addr,
    admitted: &mut Admitted,
) {
    let served = catch_unwind(AssertUnwindSafe(|| {
        steps(core, handler, io, push, peer.clone(), admitted)
    }));
    if link.state.closed_idle() {
        bump(&core.counters.closed_idle);
    }
    if let Err(payload) = served {
        if crate::conn::parked::abandoning() {
            std::panic::resume_unwind(payload);
        }
        internal_error(core, &peer, payload);
    }
}

fn steps<H: Handler>(
    core: &Core,
    handler: &H,
    mut io: SocketIo,
    push: &Arc<PushSetup>,
    peer: Addr,
    admitted: &mut Admitted,
) {
    let settings = &core.settings;
    if !core.inherits_options() {
        io.configure(settings.nodelay);
    }
    if let Some(idle) = settings.tcp_keepalive {
        io.keepalive(idle);
    }
    let (peer, proxy) = match &settings.proxy_protocol {
        None => (peer, None),
        Some(pp) => match proxied_client(core, pp, &mut io, &peer, admitted) {
            Some(client) => (client, Some(peer)),
            None => return,
        },
    };
    let mut conn = Connection::over(io, peer, core.local_addr.clone());
    conn.set_proxy(proxy);
    conn.set_push(push);
    handle_stream(core, handler, &mut conn);
    conn.end_outbox();
}

/// Reports a panic of the library's own while serving `peer`: only a
/// defect lands here, the handler's own panics are caught closer to it.
/// Nothing unwinds out of it, not even a panicking log or payload: a
/// parked connection's coroutine must not unwind into its event loop.
pub(crate) fn internal_error(core: &Core, peer: &Addr, payload: Box<dyn std::any::Any + Send>) {
    let reported = catch_unwind(AssertUnwindSafe(|| {
        bump(&core.counters.panics);
        if let Some(skipped) = core.logs.internal.admit() {
            let msg = format!(
                "internal error while serving {peer}: {}; the connection was closed",
                panic_message(&*payload)
            );
            log_or_eprint(log::Level::Error, &with_skipped(msg, skipped));
        }
        drop_payload(payload);
    }));
    if let Err(payload) = reported {
        drop_payload(payload);
    }
}

/// Runs a stream connection's handler: after the TLS handshake when the
/// server speaks TLS, and with TLS's `close_notify` after a handler that
/// returned `Ok`.
fn handle_stream<H: Handler>(core: &Core, handler: &H, conn: &mut Connection) {
    #[cfg(feature = "tls")]
    if let Some(acceptor) = &core.settings.tls {
        if !tls_handshake(core, acceptor, conn) {
            return;
        }
    }
    if call_handler(core, handler, conn) {
        // Only a handler that finished says so to a TLS client: after an
        // error or a panic the client must see a cut, not a whole reply.
        conn.finish();
        bump(&core.counters.completed);
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

/// Checks that a connection comes from a trusted proxy and reads its PROXY
/// header within the header timeout: the client it speaks for, counted
/// against `max_per_source` in `admitted`. `None` when the connection must
/// be closed unserved (it is counted, and closed when the caller drops
/// it); a connection that shutdown closed as idle while it waited for its
/// header is counted as that, not as a bad header.
fn proxied_client(
    core: &Core,
    pp: &ProxyProtocol,
    io: &mut SocketIo,
    proxy: &Addr,
    admitted: &mut Admitted,
) -> Option<Addr> {
    let counters = &core.counters;
    let trusted = match proxy.ip() {
        Some(ip) => pp.trusts(ip),
        None => pp.trusts_unix(),
    };
    if !trusted {
        bump(&counters.proxy_refused);
        log::debug!("refused {proxy}: not a trusted proxy");
        return None;
    }
    let deadline = deadline_after(Instant::now(), pp.timeout());
    let read = read_header(&mut HeaderReader { io, deadline });
    let header = match read.and_then(|h| io.end_deadline().map(|()| h).map_err(ProxyError::Io)) {
        Ok(header) => header,
        Err(_) if io.link().is_some_and(|l| l.state.closed_idle()) => return None,
        Err(e) => {
            bump(&counters.proxy_errors);
            log::debug!("closed {proxy}: bad PROXY header: {e}");
            return None;
        }
    };
    // The header is the proxy's, not a request: the connection waits for
    // its client's first one.
    io.set_awaiting(true);
    let client = header.source().map_or_else(|| proxy.clone(), Addr::Inet);
    let counted = core.books().count_source(&core.settings, admitted, &client);
    match (counted, io.link()) {
        (Ok(()), _) => Some(client),
        (Err(_), Some(link)) => {
            admission::refuse(&core.settings, counters, &link.stream);
            None
        }
        (Err(_), None) => None,
    }
}

/// Reads a PROXY header through the connection's own I/O (so that its
/// state says it waits for input) within one deadline, however slowly the
/// bytes come.
struct HeaderReader<'a> {
    io: &'a mut SocketIo,
    deadline: Instant,
}

impl Read for HeaderReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.io.read_until(buf, self.deadline) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no complete PROXY header in time",
            )),
            result => result,
        }
    }
}

/// Calls the handler with panics caught: a panic costs this one connection,
/// never the worker. Counts and reports the failures; a handler that
/// returns `Ok` is left for the caller to count: returns whether it did.
pub(crate) fn call_handler<H: Handler>(core: &Core, handler: &H, conn: &mut Connection) -> bool {
    let counters = &core.counters;
    match catch_unwind(AssertUnwindSafe(|| handler.handle(conn))) {
        Ok(Ok(())) => return true,
        Ok(Err(error)) => {
            let peer = conn.peer_addr();
            match conn.idle_timeout() {
                Some(after) if error.kind() == std::io::ErrorKind::TimedOut => {
                    bump(&counters.idle_timeouts);
                    report(core, &Failure::IdleTimeout { peer: &peer, after });
                }
                // The client broke the TLS session under the handler's
                // read (a fatal alert, a bad record): a TLS failure of the
                // client's, as a failed handshake is, not the handler's.
                _ if conn.tls_broken(&error) => {
                    bump(&counters.tls_session_failures);
                    report(
                        core,
                        &Failure::TlsSession {
                            peer: &peer,
                            error: &error,
                        },
                    );
                }
                // The server cut it, and counted why where it did (forced,
                // timed out, a slow consumer): the error that followed is
                // no client's disconnect and no handler's failure.
                _ if conn.cut_by_server() => {}
                // The client hung up or reset: nothing the server did
                // wrong, so no alert should see it as one.
                _ if client_gone(error.kind()) => {
                    bump(&counters.disconnects);
                    let failure = Failure::Error {
                        peer: &peer,
                        error: &error,
                    };
                    report(core, &failure);
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
        Err(payload) if crate::conn::parked::abandoning() => std::panic::resume_unwind(payload),
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
pub(crate) fn report(core: &Core, failure: &Failure<'_>) {
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| (core.on_error)(failure))) {
        drop_payload(payload);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::net::stream::Stream;

    /// `Duration::MAX` is the natural way to ask for no limit; reading the
    /// header must not panic on it, and must leave the socket's own read
    /// timeout and the bytes after the header as they were.
    #[test]
    fn the_longest_header_timeout_still_reads_the_header() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .write_all(b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\nHELLO")
            .unwrap();
        let link = Link::new(Stream::Tcp(listener.accept().unwrap().0));
        let mut io = SocketIo::blocking(Arc::clone(&link), (None, None));
        let deadline = deadline_after(Instant::now(), Duration::MAX);
        let header = read_header(&mut HeaderReader {
            io: &mut io,
            deadline,
        })
        .unwrap();
        io.end_deadline().unwrap();
        assert_eq!(header.source(), Some("192.0.2.7:51234".parse().unwrap()));
        assert_eq!(link.stream.read_timeout().unwrap(), None);
        let mut rest = [0; 5];
        io.read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"HELLO");
    }
}
