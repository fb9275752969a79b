//! `Stream`: an accepted connection, TCP or Unix-domain.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// An accepted stream socket of either family.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// Forwards a call to whichever socket this is.
macro_rules! both {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            Stream::Tcp($s) => $e,
            Stream::Unix($s) => $e,
        }
    };
}

impl Stream {
    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        both!(self, s => s.set_read_timeout(t))
    }

    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        both!(self, s => s.set_write_timeout(t))
    }

    pub(crate) fn read_timeout(&self) -> io::Result<Option<Duration>> {
        both!(self, s => s.read_timeout())
    }

    pub(crate) fn write_timeout(&self) -> io::Result<Option<Duration>> {
        both!(self, s => s.write_timeout())
    }

    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        both!(self, s => s.shutdown(how))
    }

    pub(crate) fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        both!(self, s => s.set_nonblocking(on))
    }

    /// The local IP address of a TCP stream.
    pub(crate) fn local_inet(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            Stream::Tcp(s) => s.local_addr(),
            Stream::Unix(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    /// Sends what fits in the socket's buffer now, never waiting (a push
    /// from another thread, a last word to a client that may have stopped
    /// reading).
    pub(crate) fn send_now(&self, buf: &[u8]) -> io::Result<usize> {
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        both!(self, s => socket2::SockRef::from(s).send_with_flags(buf, flags))
    }

    /// Whether bytes have come that nobody has read yet (a peek that never
    /// waits).
    pub(crate) fn has_unread(&self) -> bool {
        let mut one = [std::mem::MaybeUninit::<u8>::uninit()];
        let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
        both!(self, s => socket2::SockRef::from(s).recv_with_flags(&mut one, flags))
            .is_ok_and(|n| n > 0)
    }

    /// TCP keepalive: probes after `idle` of silence, three of them,
    /// `idle / 3` apart (at least 1 s); nothing to do on a Unix socket.
    pub(crate) fn set_keepalive(&self, idle: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => {
                let probes = socket2::TcpKeepalive::new()
                    .with_time(idle)
                    .with_interval((idle / 3).max(Duration::from_secs(1)))
                    .with_retries(3);
                socket2::SockRef::from(s).set_tcp_keepalive(&probes)
            }
            Stream::Unix(_) => Ok(()),
        }
    }

    /// `TCP_NODELAY`; nothing to do on a Unix socket.
    pub(crate) fn set_nodelay(&self, on: bool) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_nodelay(on),
            Stream::Unix(_) => Ok(()),
        }
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        both!(self, s => s.as_raw_fd())
    }
}

impl Read for &Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        both!(*self, s => (&*s).read(buf))
    }
}

impl Write for &Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        both!(*self, s => (&*s).write(buf))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
