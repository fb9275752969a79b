//! `DatagramSocket`: the bound UDP or Unix datagram socket all workers share.

use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::Arc;

use crate::Addr;

/// A datagram socket of either family, shared by the workers.
#[derive(Clone, Debug)]
pub(crate) enum DatagramSocket {
    Udp(Arc<UdpSocket>),
    Unix(Arc<UnixDatagram>),
}

impl DatagramSocket {
    /// The socket's descriptor, for batched calls.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            DatagramSocket::Udp(s) => s.as_fd(),
            DatagramSocket::Unix(s) => s.as_fd(),
        }
    }

    /// Sends one datagram to `to`; an unnamed Unix peer cannot be answered.
    pub(crate) fn send_to(&self, buf: &[u8], to: &Addr) -> io::Result<usize> {
        match (self, to) {
            (DatagramSocket::Udp(s), Addr::Inet(a)) => s.send_to(buf, a),
            (DatagramSocket::Unix(s), Addr::Unix(Some(path))) => s.send_to(buf, path),
            _ => Err(unanswerable(to)),
        }
    }

    /// Sends one datagram to `to` if the socket takes it now, never
    /// waiting (`WouldBlock` when its buffer is full).
    pub(crate) fn send_now(&self, buf: &[u8], to: &Addr) -> io::Result<usize> {
        let flags = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;
        let to = match to {
            Addr::Inet(a) => socket2::SockAddr::from(*a),
            Addr::Unix(Some(path)) => socket2::SockAddr::unix(path)?,
            _ => return Err(unanswerable(to)),
        };
        match self {
            DatagramSocket::Udp(s) => {
                socket2::SockRef::from(&**s).send_to_with_flags(buf, &to, flags)
            }
            DatagramSocket::Unix(s) => {
                socket2::SockRef::from(&**s).send_to_with_flags(buf, &to, flags)
            }
        }
    }
}

/// The error for a reply to a peer with no address (an unnamed Unix socket).
pub(crate) fn unanswerable(to: &Addr) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        format!("cannot reply to {to}: it has no address to send to"),
    )
}
