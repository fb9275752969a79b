//! The socket under a [`Connection`](crate::Connection): a stream served by
//! a thread (blocking), a parked stream, or one received datagram; with the
//! read and write timeouts worded as what they mean, and the connection's
//! state ([`ConnState`](crate::conn::state::ConnState)) kept as it reads
//! and writes. TLS, when set, runs on top of this.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn::link::Link;
use crate::conn::parked::{ParkedStream, Parking};
use crate::net::batch::Replies;
use crate::net::datagram::DatagramSocket;
use crate::net::stream::Stream;
use crate::{Addr, Transport};

/// One connection's socket, as its handler reads and writes it.
pub(crate) struct SocketIo {
    kind: Kind,
    /// The stream's read timeout, mirrored here to word its expiry.
    read_timeout: Option<Duration>,
    /// A read failed because the client sent nothing for the read timeout.
    read_timed_out: bool,
    /// The stream's write timeout, mirrored here to bound stalls (below).
    write_timeout: Option<Duration>,
    /// A write already waited out the write timeout without the peer taking
    /// all of it: the next write fails at once.
    stalled: bool,
}

// A datagram carries the worker's batch buffers by value: boxing it would
// cost an allocation per datagram served, on the hot path of a UDP server.
#[allow(clippy::large_enum_variant)]
enum Kind {
    /// A blocking stream, served by a thread of its own (the thread mode).
    Blocking(Arc<Link>),
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
    /// The worker's replies of this batch, lent likewise: the handler's
    /// writes make one reply datagram, sent with the batch's others.
    out: Replies,
}

impl Datagram {
    pub(crate) fn new(peer: Addr, buf: Vec<u8>, start: usize, len: usize, out: Replies) -> Self {
        Datagram {
            peer,
            buf,
            start,
            len,
            pos: 0,
            out,
        }
    }

    /// Gives back what was lent, the receive buffer and the replies, once
    /// the reply the handler wrote is complete; and the error, if it could
    /// not be sent.
    pub(crate) fn into_parts(mut self) -> (Vec<u8>, Replies, Option<io::Error>) {
        let closed = self.out.close(&self.peer).err();
        (self.buf, self.out, closed)
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..self.start + self.len]
    }
}

impl SocketIo {
    pub(crate) fn blocking(
        link: Arc<Link>,
        timeouts: (Option<Duration>, Option<Duration>),
    ) -> Self {
        SocketIo {
            kind: Kind::Blocking(link),
            read_timeout: timeouts.0,
            read_timed_out: false,
            write_timeout: timeouts.1,
            stalled: false,
        }
    }

    pub(crate) fn parked(stream: ParkedStream) -> Self {
        SocketIo {
            read_timeout: stream.read_timeout(),
            write_timeout: stream.write_timeout(),
            kind: Kind::Parked(stream),
            read_timed_out: false,
            stalled: false,
        }
    }

    pub(crate) fn datagram(datagram: Datagram) -> Self {
        SocketIo {
            kind: Kind::Datagram(datagram),
            read_timeout: None,
            read_timed_out: false,
            write_timeout: None,
            stalled: false,
        }
    }

    pub(crate) fn into_datagram(self) -> Option<Datagram> {
        match self.kind {
            Kind::Datagram(d) => Some(d),
            Kind::Blocking(_) | Kind::Parked(_) => None,
        }
    }

    /// The read timeout that expired, if the last failed read was one.
    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        self.read_timeout.filter(|_| self.read_timed_out)
    }

    /// The stream's own local address (the one a client reached on a
    /// wildcard listener); `None` for a datagram.
    pub(crate) fn local_inet(&self) -> Option<io::Result<SocketAddr>> {
        match &self.kind {
            Kind::Blocking(link) => Some(link.stream.local_inet()),
            Kind::Parked(p) => Some(p.stream().local_inet()),
            Kind::Datagram(_) => None,
        }
    }

    pub(crate) fn transport(&self) -> Transport {
        match self.kind {
            Kind::Blocking(_) | Kind::Parked(_) => Transport::Stream,
            Kind::Datagram(_) => Transport::Datagram,
        }
    }

    /// How a parked connection waits; `None` in the thread mode.
    pub(crate) fn parking(&self) -> Option<&'static dyn Parking> {
        match &self.kind {
            Kind::Parked(p) => Some(p.parking()),
            Kind::Blocking(_) | Kind::Datagram(_) => None,
        }
    }

    /// The stream connection, shared with whoever may close it.
    pub(crate) fn link(&self) -> Option<&Link> {
        match &self.kind {
            Kind::Blocking(link) => Some(link),
            Kind::Parked(p) => Some(p.link()),
            Kind::Datagram(_) => None,
        }
    }

    /// Whether the client sent bytes nobody has read (a stream's socket).
    pub(crate) fn has_unread(&self) -> bool {
        self.stream().is_some_and(Stream::has_unread)
    }

    /// The stream connection itself, for an outbox to reach it.
    pub(crate) fn link_arc(&self) -> Option<Arc<Link>> {
        match &self.kind {
            Kind::Blocking(link) => Some(Arc::clone(link)),
            Kind::Parked(p) => Some(p.link_arc()),
            Kind::Datagram(_) => None,
        }
    }

    /// The server's datagram socket, for an outbox to send on.
    pub(crate) fn datagram_socket(&self) -> Option<&DatagramSocket> {
        match &self.kind {
            Kind::Datagram(d) => Some(d.out.socket()),
            Kind::Blocking(_) | Kind::Parked(_) => None,
        }
    }

    fn stream(&self) -> Option<&Stream> {
        self.link().map(|link| &link.stream)
    }

    /// Socket options that accepted sockets do not inherit here: Nagle's
    /// algorithm off (`nodelay`) and, for a blocking socket, the read and
    /// write timeouts (a parked one keeps its own).
    pub(crate) fn configure(&self, nodelay: bool) {
        // Failures mean the peer is already gone; the handler will see it.
        if let Some(stream) = self.stream() {
            if nodelay {
                let _ = stream.set_nodelay(true);
            }
        }
        if let Kind::Blocking(link) = &self.kind {
            let _ = link.stream.set_write_timeout(self.write_timeout);
            let _ = link.stream.set_read_timeout(self.read_timeout);
        }
    }

    /// TCP keepalive (`tcp_keepalive`), set on each connection rather than
    /// on the listener, so that a listener shared with another process
    /// (an upgrade, systemd) is left as it is.
    pub(crate) fn keepalive(&self, idle: Duration) {
        // A failure means the peer is already gone; the handler will see it.
        if let Some(stream) = self.stream() {
            let _ = stream.set_keepalive(idle);
        }
    }

    /// Reads with one deadline for however many reads it takes (a PROXY
    /// header): `WouldBlock` once it has passed. A blocking socket's own
    /// read timeout is set to what is left for each read; call
    /// [`end_deadline`](Self::end_deadline) after the last.
    pub(crate) fn read_until(&mut self, buf: &mut [u8], deadline: Instant) -> io::Result<usize> {
        match &mut self.kind {
            Kind::Blocking(link) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                link.stream.set_read_timeout(Some(left))?;
                read_blocking(link, buf)
            }
            Kind::Parked(p) => p.read_within(buf, Some(deadline)),
            Kind::Datagram(_) => self.read(buf),
        }
    }

    /// After [`read_until`](Self::read_until): the socket's read timeout is
    /// the connection's own again.
    pub(crate) fn end_deadline(&mut self) -> io::Result<()> {
        match &self.kind {
            Kind::Blocking(link) => link.stream.set_read_timeout(self.read_timeout),
            Kind::Parked(_) | Kind::Datagram(_) => Ok(()),
        }
    }

    pub(crate) fn datagram_bytes(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Datagram(d) => Some(d.bytes()),
            Kind::Blocking(_) | Kind::Parked(_) => None,
        }
    }

    /// Sends the received datagram back to its sender as one datagram (even
    /// an empty one). No effect on a stream.
    pub(crate) fn echo_datagram(&mut self) -> io::Result<()> {
        match &mut self.kind {
            Kind::Datagram(d) => {
                d.out.close(&d.peer)?;
                let bytes = &d.buf[d.start..d.start + d.len];
                d.out.reply(bytes, &d.peer)
            }
            Kind::Blocking(_) | Kind::Parked(_) => Ok(()),
        }
    }

    /// Sends `bytes` as exactly one reply datagram, even an empty one, after
    /// what was written before. No effect on a stream.
    pub(crate) fn reply_datagram(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.kind {
            Kind::Datagram(d) => {
                d.out.close(&d.peer)?;
                d.out.reply(bytes, &d.peer)
            }
            Kind::Blocking(_) | Kind::Parked(_) => Ok(()),
        }
    }

    /// Counts the connection as waiting for its client's next request, for
    /// shutdown to close at once (what came before, a PROXY header or a TLS
    /// handshake, was no request), or as in the middle of one.
    pub(crate) fn set_awaiting(&mut self, awaiting: bool) {
        if let Some(link) = self.link() {
            link.state.set_awaiting(awaiting);
        }
    }

    #[cfg(feature = "tls")]
    /// Writes what the socket takes now, never waiting and whatever the
    /// timeouts: for a last word (TLS's `close_notify`) to a client that
    /// may have stopped reading. A stalled connection takes nothing.
    pub(crate) fn write_now(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.stalled {
            return Err(io::ErrorKind::TimedOut.into());
        }
        match self.stream() {
            Some(stream) => stream.send_now(buf),
            None => Ok(0),
        }
    }

    pub(crate) fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match &mut self.kind {
            Kind::Blocking(link) => link.stream.set_read_timeout(timeout)?,
            Kind::Parked(p) => p.set_read_timeout(timeout),
            Kind::Datagram(_) => return Ok(()),
        }
        self.read_timeout = timeout;
        Ok(())
    }

    pub(crate) fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match &mut self.kind {
            Kind::Blocking(link) => link.stream.set_write_timeout(timeout)?,
            Kind::Parked(p) => p.set_write_timeout(timeout),
            Kind::Datagram(_) => return Ok(()),
        }
        self.write_timeout = timeout;
        self.stalled = false;
        Ok(())
    }

    pub(crate) fn read_timeout(&self) -> io::Result<Option<Duration>> {
        match &self.kind {
            Kind::Blocking(link) => link.stream.read_timeout(),
            Kind::Parked(p) => Ok(p.read_timeout()),
            Kind::Datagram(_) => Ok(None),
        }
    }

    pub(crate) fn write_timeout(&self) -> io::Result<Option<Duration>> {
        match &self.kind {
            Kind::Blocking(link) => link.stream.write_timeout(),
            Kind::Parked(p) => Ok(p.write_timeout()),
            Kind::Datagram(_) => Ok(None),
        }
    }

    pub(crate) fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        match self.stream() {
            Some(stream) => stream.shutdown(how),
            None => Ok(()),
        }
    }
}

/// A blocking read, keeping the connection's state: once shutdown has
/// begun, a read on an idle connection closes its reading side first, so
/// that bytes already received are still read, then end of file, instead
/// of blocking.
fn read_blocking(link: &Link, buf: &mut [u8]) -> io::Result<usize> {
    if link.state.reading_ended() {
        return Ok(0);
    }
    if link.state.begin_read() {
        link.close_reading();
    }
    let result = (&link.stream).read(buf);
    link.state.end_read(*result.as_ref().unwrap_or(&0));
    result
}

/// A blocking write; the connection then waits for input again.
fn write_blocking(link: &Link, buf: &[u8]) -> io::Result<usize> {
    let result = (&link.stream).write(buf);
    link.state.replied();
    result
}

impl Read for SocketIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = match &mut self.kind {
            Kind::Blocking(link) => read_blocking(link, buf),
            Kind::Parked(p) => p.read_within(buf, None),
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

impl Write for SocketIo {
    /// See `Connection`'s `write`: the write timeout bounds how long the
    /// peer may take no data, and a write that waited it out marks the
    /// connection stalled so that the next fails at once.
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
            Kind::Blocking(link) => {
                if self.stalled {
                    return Err(stalled());
                }
                let Some(timeout) = self.write_timeout else {
                    return write_blocking(link, buf);
                };
                let start = Instant::now();
                let n = match write_blocking(link, buf) {
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
            Kind::Datagram(d) => d.out.append(buf).map(|()| buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.kind {
            Kind::Datagram(d) => {
                d.out.close(&d.peer)?;
                d.out.send_held()
            }
            Kind::Blocking(_) | Kind::Parked(_) => Ok(()),
        }
    }
}

#[cfg(feature = "tls")]
impl crate::tls::PlainIo for SocketIo {
    fn timeouts(&self) -> (Option<Duration>, Option<Duration>) {
        (self.read_timeout, self.write_timeout)
    }
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        SocketIo::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        SocketIo::set_write_timeout(self, timeout)
    }
    fn set_awaiting(&mut self, awaiting: bool) {
        SocketIo::set_awaiting(self, awaiting)
    }
    fn set_opening(&mut self) {
        if let Some(link) = self.link() {
            link.state.opening();
        }
    }
    fn write_now(&mut self, buf: &[u8]) -> io::Result<usize> {
        SocketIo::write_now(self, buf)
    }
}
