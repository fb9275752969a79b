//! `Connection`: what a handler reads from and writes to, for both transports.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::batch::Outbox;
use crate::slot::Slot;
use crate::sys::parking::{self as park, ParkedStream};
use crate::{Addr, Transport};

/// One client's connection (stream) or one datagram exchange (datagram).
///
/// It is `Read + Write` for both transports:
///
/// * **Stream** (TCP, or a Unix stream socket): the accepted socket. Reads and writes go to the peer;
///   the read and write timeouts set on the builder are already applied.
/// * **Datagram** (UDP, or a Unix datagram socket): one received datagram. Reading yields its bytes once,
///   then end of file. Each `write` sends one reply datagram to the sender: when the handler
///   returns, together with the replies to the other datagrams its worker took off the socket
///   at once (one `sendmmsg`), or at once on `flush` and for a reply over 4 KiB. A held reply
///   that cannot be sent is reported to `on_error` and counted as a handler error, as the
///   handler's own error would have been.
///
/// So a handler written once serves TCP and UDP alike. The server owns the
/// connection and closes it after the handler returns.
pub struct Connection {
    kind: Kind,
    peer: Addr,
    /// The listening address; when it is a wildcard (`0.0.0.0`, `[::]`) the
    /// address the client reached is asked of the socket, on demand.
    local: Addr,
    /// The stream's read timeout, mirrored here to word its expiry.
    read_timeout: Option<Duration>,
    /// A read failed because the client sent nothing for the read timeout.
    read_timed_out: bool,
    /// The stream's write timeout, mirrored here to bound stalls (below).
    write_timeout: Option<Duration>,
    /// A write already waited out the write timeout without the peer taking
    /// all of it: the next write fails at once.
    stalled: bool,
    /// The proxy that passed the connection on (PROXY protocol).
    proxy: Option<Addr>,
}

enum Kind {
    /// A stream served by a thread of its own (the thread mode).
    Stream(Arc<Slot>),
    /// A stream served under `park_idle`.
    Parked(ParkedStream),
    Datagram(Datagram),
}

/// A received datagram, and where its replies go.
pub(crate) struct Datagram {
    pub(crate) peer: Addr,
    /// The worker's receive buffer, lent for the exchange and given back
    /// after: the datagram is `buf[start..start + len]`.
    buf: Vec<u8>,
    start: usize,
    len: usize,
    pos: usize,
    /// The worker's replies of this batch, lent likewise: each `write` is
    /// one reply datagram, sent with the batch's others.
    out: Outbox,
}

impl Datagram {
    pub(crate) fn new(peer: Addr, buf: Vec<u8>, start: usize, len: usize, out: Outbox) -> Self {
        Datagram {
            peer,
            buf,
            start,
            len,
            pos: 0,
            out,
        }
    }

    /// Gives back what was lent: the receive buffer and the replies.
    pub(crate) fn into_parts(self) -> (Vec<u8>, Outbox) {
        (self.buf, self.out)
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl Connection {
    pub(crate) fn stream(
        slot: Arc<Slot>,
        peer: Addr,
        local: Addr,
        timeouts: (Option<Duration>, Option<Duration>),
    ) -> Self {
        Connection {
            kind: Kind::Stream(slot),
            peer,
            local,
            read_timeout: timeouts.0,
            read_timed_out: false,
            write_timeout: timeouts.1,
            stalled: false,
            proxy: None,
        }
    }

    pub(crate) fn parked(stream: ParkedStream, peer: Addr, local: Addr) -> Self {
        Connection {
            read_timeout: stream.read_timeout(),
            write_timeout: stream.write_timeout(),
            kind: Kind::Parked(stream),
            peer,
            local,
            read_timed_out: false,
            stalled: false,
            proxy: None,
        }
    }

    pub(crate) fn from_datagram(datagram: Datagram, local: Addr) -> Self {
        Connection {
            peer: datagram.peer.clone(),
            kind: Kind::Datagram(datagram),
            local,
            read_timeout: None,
            read_timed_out: false,
            write_timeout: None,
            stalled: false,
            proxy: None,
        }
    }

    /// Gives the datagram back to the worker, with what it lent.
    pub(crate) fn into_datagram(self) -> Option<Datagram> {
        match self.kind {
            Kind::Datagram(d) => Some(d),
            Kind::Stream(_) | Kind::Parked(_) => None,
        }
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
        self.read_timeout.filter(|_| self.read_timed_out)
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
        match &self.kind {
            Kind::Stream(slot) if wildcard => slot
                .with(|s| s.local_inet())
                .map_or_else(|_| self.local.clone(), Addr::Inet),
            Kind::Parked(p) if wildcard => p
                .stream()
                .local_inet()
                .map_or_else(|_| self.local.clone(), Addr::Inet),
            _ => self.local.clone(),
        }
    }

    /// Whether this is a stream connection or a datagram exchange.
    pub fn transport(&self) -> Transport {
        match self.kind {
            Kind::Stream(_) | Kind::Parked(_) => Transport::Stream,
            Kind::Datagram(_) => Transport::Datagram,
        }
    }

    /// The received datagram's bytes (datagram transport), or `None` for a stream.
    ///
    /// This does not consume it: `read` still yields the same bytes.
    pub fn datagram(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Datagram(d) => Some(d.bytes()),
            Kind::Stream(_) | Kind::Parked(_) => None,
        }
    }

    /// Sends the received datagram back to its sender as one datagram (even
    /// an empty one, which `write_all` would skip). No effect on a stream.
    pub(crate) fn echo_datagram(&mut self) -> io::Result<()> {
        match &mut self.kind {
            Kind::Datagram(d) => {
                let bytes = &d.buf[d.start..d.start + d.len];
                d.out.reply(bytes, &d.peer)
            }
            Kind::Stream(_) | Kind::Parked(_) => Ok(()),
        }
    }

    /// Sets the timeout of each read; `None` blocks without limit.
    ///
    /// Starts as the builder's `read_timeout`. A read that times out fails
    /// with [`io::ErrorKind::TimedOut`] ("the client sent nothing for ...").
    /// No effect on a datagram exchange, whose read never blocks.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match &mut self.kind {
            Kind::Stream(slot) => slot.with(|s| s.set_read_timeout(timeout))?,
            Kind::Parked(p) => p.set_read_timeout(timeout),
            Kind::Datagram(_) => return Ok(()),
        }
        self.read_timeout = timeout;
        Ok(())
    }

    /// Sets the timeout of each write; `None` blocks without limit.
    ///
    /// Starts as the builder's `write_timeout`. No effect on a datagram
    /// exchange, whose socket is shared by all workers.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match &mut self.kind {
            Kind::Stream(slot) => slot.with(|s| s.set_write_timeout(timeout))?,
            Kind::Parked(p) => p.set_write_timeout(timeout),
            Kind::Datagram(_) => return Ok(()),
        }
        self.write_timeout = timeout;
        self.stalled = false;
        Ok(())
    }

    /// The current read timeout (`None` for a datagram exchange).
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        match &self.kind {
            Kind::Stream(slot) => slot.with(|s| s.read_timeout()),
            Kind::Parked(p) => Ok(p.read_timeout()),
            Kind::Datagram(_) => Ok(None),
        }
    }

    /// The current write timeout (`None` for a datagram exchange).
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        match &self.kind {
            Kind::Stream(slot) => slot.with(|s| s.write_timeout()),
            Kind::Parked(p) => Ok(p.write_timeout()),
            Kind::Datagram(_) => Ok(None),
        }
    }

    /// Shuts down the reading, writing or both halves of a stream; for
    /// example `Shutdown::Write` tells the client that the reply is complete
    /// while still reading. No effect on a datagram exchange.
    pub fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        match &self.kind {
            Kind::Stream(slot) => slot.with(|s| s.shutdown(how)),
            Kind::Parked(p) => p.stream().shutdown(how),
            Kind::Datagram(_) => Ok(()),
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
        match self.kind {
            Kind::Parked(_) => park::offload(f),
            Kind::Stream(_) | Kind::Datagram(_) => f(),
        }
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = match &mut self.kind {
            Kind::Stream(slot) => slot.read(buf),
            Kind::Parked(p) => p.read(buf),
            Kind::Datagram(d) => {
                let rest = &d.buf[d.start + d.pos..d.start + d.len];
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                d.pos += n;
                return Ok(n);
            }
        };
        match result {
            // A blocking socket's SO_RCVTIMEO expiring reads as
            // EAGAIN (and a parked read's deadline likewise); say what
            // it means.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.read_timed_out = true;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    match self.read_timeout {
                        Some(t) => format!("the client sent nothing for {t:?} (read timeout)"),
                        None => "the client sent nothing for the read timeout".into(),
                    },
                ))
            }
            result => {
                self.read_timed_out = false;
                result
            }
        }
    }
}

impl Write for Connection {
    /// Stream: writes to the peer. Datagram: sends `buf` as one datagram to
    /// the sender (so `write_all` of a large buffer is one datagram, or an
    /// error if it exceeds what the network can carry); up to 4 KiB, it is
    /// held and sent when the handler returns (or at `flush`), with the
    /// replies of the worker's batch.
    ///
    /// The write timeout bounds how long the peer may take no data. The
    /// socket's own timeout (`SO_SNDTIMEO`) returns a partial count when it
    /// expires after some bytes went out, and `write_all` would then wait
    /// the whole timeout again; so a write that waited out the timeout
    /// marks the connection stalled and the next one fails at once with
    /// `TimedOut`.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let stalled = || {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the client took no data for the write timeout",
            )
        };
        match &mut self.kind {
            Kind::Parked(p) => {
                if self.stalled {
                    return Err(stalled());
                }
                match p.write(buf) {
                    // The write timeout passed with nothing taken.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.stalled = true;
                        Err(stalled())
                    }
                    result => result,
                }
            }
            Kind::Stream(slot) => {
                if self.stalled {
                    return Err(stalled());
                }
                let Some(timeout) = self.write_timeout else {
                    return slot.write(buf);
                };
                let start = Instant::now();
                let n = match slot.write(buf) {
                    // A blocking socket's SO_SNDTIMEO expiring with nothing
                    // sent reads as EAGAIN; say what it means.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.stalled = true;
                        return Err(stalled());
                    }
                    result => result?,
                };
                if n < buf.len() && start.elapsed() >= timeout {
                    self.stalled = true;
                }
                Ok(n)
            }
            Kind::Datagram(d) => d.out.reply(buf, &d.peer).map(|()| buf.len()),
        }
    }

    /// Stream: nothing to do (writes are not buffered). Datagram: sends
    /// the replies written so far at once, rather than with the rest of
    /// the worker's batch when this handler returns.
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.kind {
            Kind::Datagram(d) => d.out.send_held(),
            Kind::Stream(_) | Kind::Parked(_) => Ok(()),
        }
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
