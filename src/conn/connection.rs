//! `Connection`: what a handler reads from and writes to, for both transports.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};

pub(crate) use crate::conn::io::Datagram;
use crate::conn::io::SocketIo;
use crate::conn::outbox::Outbox;
use crate::conn::outbox_core::{OutboxCore, PushSetup};
#[cfg(feature = "tls")]
use crate::conn::tls_side::TlsSide;
#[cfg(feature = "tls")]
use crate::tls::TlsInfo;
use crate::{Addr, Transport};

/// One client's connection (stream) or one datagram exchange (datagram).
///
/// It is `Read + Write` for both transports:
///
/// * **Stream** (TCP, or a Unix stream socket): the accepted socket. Reads and writes go to the peer;
///   the read and write timeouts set on the builder are already applied. With
///   `ServerBuilder::tls` set (feature `tls`), the handshake is done before the handler
///   runs, and reads and writes are plaintext, encrypted underneath.
/// * **Datagram** (UDP, or a Unix datagram socket): one received datagram. Reading yields its bytes once,
///   then end of file. The handler's writes make one reply datagram to the sender, as
///   Python's `DatagramRequestHandler` collects its `wfile` (so `writeln!` with three
///   arguments is one datagram, not five): sent when the handler returns, together with the
///   replies to the other datagrams its worker took off the socket at once (one `sendmmsg`),
///   or at once on `flush`, which ends that datagram (the next write begins another). A
///   reply that cannot be sent is reported to `on_error` and counted as a handler error, as
///   the handler's own error would have been.
///
/// So a handler written once serves TCP and UDP alike. The server owns the
/// connection and closes it after the handler returns.
pub struct Connection {
    io: SocketIo,
    peer: Addr,
    /// The listening address; when it is a wildcard (`0.0.0.0`, `[::]`) the
    /// address the client reached is asked of the socket, on demand.
    local: Addr,
    /// The proxy that passed the connection on (PROXY protocol).
    proxy: Option<Addr>,
    /// The TLS session over `io`, once its handshake is done: the handler
    /// then reads and writes plaintext through it.
    #[cfg(feature = "tls")]
    tls: Option<Box<TlsSide>>,
    /// What an outbox needs, from the engine.
    push: Option<Arc<PushSetup>>,
    /// The connection's outbox, once [`outbox`](Self::outbox) made it.
    outbox: OnceLock<Arc<OutboxCore>>,
}

impl Connection {
    pub(crate) fn from_datagram(datagram: Datagram, local: Addr) -> Self {
        let peer = datagram.peer.clone();
        Connection::over(SocketIo::datagram(datagram), peer, local)
    }

    pub(crate) fn over(io: SocketIo, peer: Addr, local: Addr) -> Self {
        Connection {
            io,
            peer,
            local,
            proxy: None,
            #[cfg(feature = "tls")]
            tls: None,
            push: None,
            outbox: OnceLock::new(),
        }
    }

    /// Lets the handler have an [`Outbox`].
    pub(crate) fn set_push(&mut self, setup: &Arc<PushSetup>) {
        self.push = Some(Arc::clone(setup));
    }

    /// A handle that writes to this connection from anywhere (push): any
    /// thread may [`send`](Outbox::send) through it while this handler
    /// goes on reading, and it stays usable after the handler returns
    /// (sends then fail with [`SendError::Closed`](crate::SendError)).
    ///
    /// Messages go out whole and in order, never inside one `write` of the
    /// handler: while the connection has an outbox, each `write` of the
    /// handler writes all of its buffer (unless the socket fails or its
    /// write timeout passes). A send does not wait for this handler, and
    /// under [`park_idle`](crate::ServerBuilder::park_idle) does not wake
    /// it. Unsent bytes are bounded by
    /// [`max_outbox`](crate::ServerBuilder::max_outbox). When the handler
    /// returns, what is still queued is written (within the write
    /// timeout) before the connection closes.
    ///
    /// Over TLS, each message is encrypted through the connection's own
    /// session. For a datagram exchange, each message is one datagram to
    /// its peer, for as long as the server runs. See [`Outbox`] for an
    /// example.
    pub fn outbox(&self) -> Outbox {
        Outbox::new(Arc::clone(self.outbox.get_or_init(|| self.new_outbox())))
    }

    fn new_outbox(&self) -> Arc<OutboxCore> {
        let setup = self.push.as_ref().expect("every connection can push");
        let outbox = match (self.io.link_arc(), self.io.datagram_socket()) {
            (Some(link), _) => OutboxCore::stream(setup, &link, self.peer.clone()),
            (None, Some(socket)) => OutboxCore::datagram(setup, socket.clone(), self.peer.clone()),
            (None, None) => OutboxCore::closed(setup, self.peer.clone()),
        };
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            outbox.set_tls(tls.share(&outbox));
        }
        outbox
    }

    /// The connection ends: what its outbox still holds is written (within
    /// the write timeout), and later sends fail.
    pub(crate) fn end_outbox(&mut self) {
        let Some(outbox) = self.outbox.get().cloned() else {
            return;
        };
        if !outbox.is_stream() {
            // A datagram peer can be sent to for as long as the server runs.
            return;
        }
        // All of it, or until the socket fails or its write timeout passes.
        let all = outbox.enqueue(Vec::new());
        let _ = outbox.write_until(&mut self.io, all);
        outbox.end();
    }

    /// Gives the datagram back to the worker, with what it lent.
    pub(crate) fn into_datagram(self) -> Option<Datagram> {
        self.io.into_datagram()
    }

    /// The client's address, as accepted (stream) or as the datagram's source.
    pub fn peer_addr(&self) -> Addr {
        self.peer.clone()
    }

    pub(crate) fn set_proxy(&mut self, proxy: Option<Addr>) {
        self.proxy = proxy;
    }

    /// The read timeout that expired, if the last failed read was one.
    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        self.io.idle_timeout()
    }

    /// The proxy's own address, when the connection came through a proxy
    /// speaking the PROXY protocol (see
    /// [`ServerBuilder::proxy_protocol`](crate::ServerBuilder::proxy_protocol));
    /// [`peer_addr`](Self::peer_addr) is then the client the proxy named.
    pub fn proxy_addr(&self) -> Option<Addr> {
        self.proxy.clone()
    }

    /// The server's address that this connection or datagram arrived on.
    ///
    /// For a stream on a wildcard address (`0.0.0.0`, `[::]`) this is the
    /// address the client actually reached; for a datagram it is the bound
    /// address.
    pub fn local_addr(&self) -> Addr {
        let wildcard = self.local.ip().is_some_and(|ip| ip.is_unspecified());
        match self.io.local_inet() {
            Some(Ok(addr)) if wildcard => Addr::Inet(addr),
            _ => self.local.clone(),
        }
    }

    /// Whether this is a stream connection or a datagram exchange.
    pub fn transport(&self) -> Transport {
        self.io.transport()
    }

    /// The received datagram's bytes (datagram transport), or `None` for a stream.
    ///
    /// This does not consume it: `read` still yields the same bytes.
    pub fn datagram(&self) -> Option<&[u8]> {
        self.io.datagram_bytes()
    }

    /// Sends the received datagram back to its sender as one datagram (even
    /// an empty one, which `write_all` would skip). No effect on a stream.
    pub(crate) fn echo_datagram(&mut self) -> io::Result<()> {
        self.io.echo_datagram()
    }

    /// Whether the client sent bytes the handler has not read (a stream).
    pub(crate) fn has_unread(&self) -> bool {
        self.io.has_unread()
    }

    /// Sends `bytes` as exactly one reply datagram (even an empty one,
    /// which a write would not make). No effect on a stream.
    pub(crate) fn reply_datagram(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.io.reply_datagram(bytes)
    }

    /// Sets the timeout of each read; `None` blocks without limit.
    ///
    /// Starts as the builder's `read_timeout`. A read that times out fails
    /// with [`io::ErrorKind::TimedOut`] ("the client sent nothing for ...").
    /// The connection stays usable: nothing was read, so the read may be
    /// retried, and waits up to the timeout again (a handler that sends a
    /// keep-alive after each silence reads on after it). A write that timed
    /// out is different: the next write fails at once. No effect on a
    /// datagram exchange, whose read never blocks.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_read_timeout(timeout)
    }

    /// Sets the timeout of each write; `None` blocks without limit.
    ///
    /// Starts as the builder's `write_timeout`. No effect on a datagram
    /// exchange, whose socket is shared by all workers.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.io.set_write_timeout(timeout)
    }

    /// The current read timeout (`None` for a datagram exchange).
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        self.io.read_timeout()
    }

    /// The current write timeout (`None` for a datagram exchange).
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        self.io.write_timeout()
    }

    /// Shuts down the reading, writing or both halves of a stream; for
    /// example `Shutdown::Write` tells the client that the reply is complete
    /// while still reading. No effect on a datagram exchange.
    ///
    /// Over TLS, shutting down the writing half sends TLS's `close_notify`
    /// first, so the client knows the reply was not cut short. On a
    /// connection with an [`outbox`](Self::outbox), it first writes every
    /// message already pushed, whole (within the write timeout; what cannot
    /// be written is counted as dropped), and later sends return
    /// [`SendError::Closed`](crate::SendError::Closed).
    pub fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let (Some(tls), Shutdown::Write | Shutdown::Both) = (&mut self.tls, how) {
            tls.close_notify(&mut self.io, self.outbox.get(), true)?;
        }
        if let (Some(outbox), Shutdown::Write | Shutdown::Both) = (self.outbox.get(), how) {
            if outbox.is_stream() {
                // Pushed messages go out whole before the end of the stream.
                let written = outbox.finish(&mut self.io);
                let shut = self.io.shutdown(how);
                return written.and(shut);
            }
        }
        self.io.shutdown(how)
    }

    /// What the TLS handshake settled, on a server with
    /// [`tls`](crate::ServerBuilder::tls) set; `None` otherwise.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(&self) -> Option<TlsInfo<'_>> {
        self.tls.as_deref().map(TlsSide::info)
    }

    /// Runs the TLS handshake on this connection within `limit`; the
    /// handler then reads and writes plaintext.
    #[cfg(feature = "tls")]
    pub(crate) fn start_tls(
        &mut self,
        acceptor: &crate::tls::TlsAcceptor,
        limit: Duration,
    ) -> io::Result<()> {
        self.tls = Some(Box::new(TlsSide::handshake(acceptor, &mut self.io, limit)?));
        Ok(())
    }

    /// Whether the server ended this connection (a shutdown that gave up
    /// on it, its `connection_timeout`, a slow consumer's cut, its
    /// outbox's `close`): what the handler's I/O failed with then is
    /// neither the client's doing nor the handler's.
    pub(crate) fn cut_by_server(&self) -> bool {
        self.io.link().is_some_and(|l| l.state.reading_ended())
    }

    /// Whether `error`, as the handler returned it, is the TLS session's
    /// failure on the client's records (a fatal alert, a bad record), not
    /// the handler's own.
    pub(crate) fn tls_broken(&self, error: &io::Error) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.broken(error);
        }
        let _ = error;
        false
    }

    /// The handler finished its work: over TLS, tells the client so with
    /// `close_notify` (once, and only if the socket takes it at once).
    pub(crate) fn finish(&mut self) {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            let _ = tls.close_notify(&mut self.io, self.outbox.get(), false);
        }
    }

    /// Runs `f`, a blocking call that is not this connection's I/O (a
    /// database query, a file read, a `sleep`), and returns what it
    /// returns; a panic in `f` goes on in the caller.
    ///
    /// Under [`park_idle`](crate::ServerBuilder::park_idle), `f` runs on a
    /// helper thread (at most `max_workers` of them, started on demand)
    /// while this connection parks, so the other connections of its
    /// thread go on being served. In the thread mode, and outside a
    /// handler's own call, it simply calls `f`.
    ///
    /// ```
    /// # use std::io::Write;
    /// # use socketserver::Connection;
    /// fn handle(conn: &mut Connection) -> std::io::Result<()> {
    ///     let quote = conn.offload(|| std::fs::read_to_string("/etc/hostname"))?;
    ///     conn.write_all(quote.as_bytes())
    /// }
    /// # let _ = handle;
    /// ```
    pub fn offload<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let Some(parking) = self.io.parking() else {
            return f();
        };
        let mut f = Some(f);
        let mut out = None;
        parking.offload(&mut || {
            if let Some(f) = f.take() {
                out = Some(catch_unwind(AssertUnwindSafe(f)));
            }
        });
        match out {
            Some(Ok(value)) => value,
            Some(Err(payload)) => resume_unwind(payload),
            // The loop dropped the job unrun: it only does so while dying.
            None => panic!("an offloaded call was dropped before it ran"),
        }
    }
}

impl Read for Connection {
    /// Over TLS, decrypted bytes; a client that closes without TLS's
    /// `close_notify` reads as end of file, as with most TLS stacks (a
    /// protocol that must tell a cut reply from a whole one frames its
    /// messages).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            return tls.read(&mut self.io, self.outbox.get(), buf);
        }
        self.io.read(buf)
    }
}

impl Write for Connection {
    /// Stream: writes to the peer (over TLS, encrypted, and sent before
    /// `write` returns). Datagram: adds `buf` to the reply datagram, sent
    /// when the handler returns (or at `flush`) with the replies of the
    /// worker's batch; a reply past 65,507 bytes, more than one datagram
    /// can carry, is an `InvalidInput` error.
    ///
    /// The write timeout bounds how long the peer may take no data. The
    /// socket's own timeout (`SO_SNDTIMEO`) returns a partial count when it
    /// expires after some bytes went out, and `write_all` would then wait
    /// the whole timeout again; so a write that waited out the timeout
    /// marks the connection stalled and the next one fails at once with
    /// `TimedOut`.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            return tls.write(&mut self.io, self.outbox.get(), buf);
        }
        match self.outbox.get() {
            Some(outbox) if outbox.is_stream() => outbox.write_in_turn(&mut self.io, buf),
            _ => self.io.write(buf),
        }
    }

    /// Stream: nothing to do (writes are not buffered; over TLS, sends
    /// what a write that timed out left). Datagram: the reply written so
    /// far is complete and is sent at once, as one datagram, rather than
    /// with the rest of the worker's batch when this handler returns; the
    /// next write begins another datagram.
    fn flush(&mut self) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            return tls.flush(&mut self.io, self.outbox.get());
        }
        self.io.flush()
    }
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("transport", &self.transport())
            .field("peer", &self.peer)
            .field("local", &self.local)
            .finish()
    }
}
