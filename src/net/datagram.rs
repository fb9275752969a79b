//! `DatagramSocket`: the bound UDP or Unix datagram socket all workers share.

use std::io;
use std::net::UdpSocket;
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
    /// Receives one datagram into `buf`.
    pub(crate) fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, Addr)> {
        match self {
            DatagramSocket::Udp(s) => s.recv_from(buf).map(|(n, a)| (n, Addr::Inet(a))),
            DatagramSocket::Unix(s) => s.recv_from(buf).map(|(n, a)| (n, Addr::from_unix(&a))),
        }
    }

    /// Sends one datagram to `to`; an unnamed Unix peer cannot be answered.
    pub(crate) fn send_to(&self, buf: &[u8], to: &Addr) -> io::Result<usize> {
        match (self, to) {
            (DatagramSocket::Udp(s), Addr::Inet(a)) => s.send_to(buf, a),
            (DatagramSocket::Unix(s), Addr::Unix(Some(path))) => s.send_to(buf, path),
            _ => Err(io::Error::new(
                io::ErrorKind::NotConnected,
                format!("cannot reply to {to}: it has no address to send to"),
            )),
        }
    }
}
