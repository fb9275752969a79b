//! `Listener`: the bound socket a server serves, stream or datagram.

use std::io;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;

use socket2::SockRef;

use crate::net::datagram::DatagramSocket;
use crate::net::stream::Stream;
use crate::Addr;

/// A bound socket, listening (stream) or ready to receive (datagram).
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
    Datagram(DatagramSocket),
}

impl Listener {
    /// The bound address, with port 0 resolved to the real port.
    pub(crate) fn local_addr(&self) -> io::Result<Addr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(Addr::Inet),
            Listener::Unix(l) => l.local_addr().map(|a| Addr::from_unix(&a)),
            Listener::Datagram(DatagramSocket::Udp(s)) => s.local_addr().map(Addr::Inet),
            Listener::Datagram(DatagramSocket::Unix(s)) => {
                s.local_addr().map(|a| Addr::from_unix(&a))
            }
        }
    }

    /// The socket itself, for option calls.
    pub(crate) fn sock_ref(&self) -> SockRef<'_> {
        match self {
            Listener::Tcp(l) => SockRef::from(l),
            Listener::Unix(l) => SockRef::from(l),
            Listener::Datagram(DatagramSocket::Udp(s)) => SockRef::from(&**s),
            Listener::Datagram(DatagramSocket::Unix(s)) => SockRef::from(&**s),
        }
    }

    /// Accepts one connection (stream listeners only).
    ///
    /// TCP goes through socket2 rather than `TcpListener::accept`: std
    /// asserts that the peer address is complete, and a connection reset or
    /// a listener shut down while `accept` runs can leave it empty, which
    /// would panic the worker. Such a connection is closed and reported as
    /// `ConnectionAborted`, an error the accept loop retries at once.
    pub(crate) fn accept(&self) -> io::Result<(Stream, Addr)> {
        match self {
            Listener::Tcp(l) => {
                let (socket, peer) = SockRef::from(l).accept()?;
                match peer.as_socket() {
                    Some(peer) => Ok((Stream::Tcp(socket.into()), Addr::Inet(peer))),
                    None => Err(io::ErrorKind::ConnectionAborted.into()),
                }
            }
            Listener::Unix(l) => {
                let (stream, peer) = l.accept()?;
                Ok((Stream::Unix(stream), Addr::from_unix(&peer)))
            }
            Listener::Datagram(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    /// Accepts one connection already in non-blocking mode (for the event
    /// loops): TCP in the one `accept4(SOCK_NONBLOCK)` call.
    pub(crate) fn accept_nonblocking(&self) -> io::Result<(Stream, Addr)> {
        match self {
            Listener::Tcp(l) => {
                let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
                let (socket, peer) = SockRef::from(l).accept4(flags)?;
                match peer.as_socket() {
                    Some(peer) => Ok((Stream::Tcp(socket.into()), Addr::Inet(peer))),
                    None => Err(io::ErrorKind::ConnectionAborted.into()),
                }
            }
            _ => {
                let (stream, peer) = self.accept()?;
                stream.set_nonblocking(true)?;
                Ok((stream, peer))
            }
        }
    }
}
