//! Socket setup, the crate's only use of socket2: family and type, options,
//! bind, listen; and the `shutdown(2)` that wakes blocked threads.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::{Addr, Error, Transport};

/// The options that shape the listening socket itself.
#[derive(Clone, Debug)]
pub(crate) struct SocketOptions {
    pub(crate) transport: Transport,
    pub(crate) only_v6: Option<bool>,
    pub(crate) backlog: u32,
    pub(crate) reuse_address: bool,
    pub(crate) reuse_port: bool,
}

/// A bound socket, listening (stream) or ready to receive (datagram).
#[derive(Debug)]
pub(crate) enum Listener {
    Stream(TcpListener),
    Datagram(Arc<UdpSocket>),
}

impl Listener {
    /// The bound address, with port 0 resolved to the real port.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        match self {
            Listener::Stream(l) => l.local_addr(),
            Listener::Datagram(s) => s.local_addr(),
        }
    }

    /// Wakes every thread blocked in `accept()` (stream) or the `receivers`
    /// threads blocked in `recv_from()` (datagram), at once.
    ///
    /// Closing the descriptor would not wake them on Linux. For a stream
    /// listener, `shutdown(2)` does: the listener resets itself and every
    /// blocked and later `accept` fails with `EINVAL`. For a datagram socket
    /// `shutdown(2)` wakes receivers too, but they then return an empty read
    /// with no source address, which std's `recv_from` does not expect; so
    /// instead each receiver is sent one empty datagram over loopback, and
    /// the socket stays usable for replies of handlers still running.
    pub(crate) fn wake_all(&self, receivers: usize) {
        match self {
            Listener::Stream(l) => {
                let _ = SockRef::from(l).shutdown(Shutdown::Both);
            }
            Listener::Datagram(s) => {
                let Ok(mut to) = s.local_addr() else { return };
                if to.ip().is_unspecified() {
                    to.set_ip(match to {
                        SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                        SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
                    });
                }
                let from = match to {
                    SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                    SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
                };
                if let Ok(waker) = UdpSocket::bind(from) {
                    for _ in 0..receivers {
                        let _ = waker.send_to(&[], to);
                    }
                }
            }
        }
    }
}

/// Accepts one connection.
///
/// Through socket2 rather than `TcpListener::accept`: std asserts that the
/// peer address is complete, and a connection reset or a listener shut
/// down while `accept` runs can leave it empty, which would panic the
/// worker. Such a connection is closed and reported as `ConnectionAborted`,
/// an error the accept loop retries at once.
pub(crate) fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let (socket, peer) = SockRef::from(listener).accept()?;
    match peer.as_socket() {
        Some(peer) => Ok((socket.into(), peer)),
        None => Err(io::ErrorKind::ConnectionAborted.into()),
    }
}

/// Creates, configures, binds and (for streams) listens on the first of
/// `addrs` that works, as `TcpListener::bind` does; the error of the last
/// one tried is returned if none does.
pub(crate) fn open(addrs: &[SocketAddr], opts: &SocketOptions) -> Result<Listener, Error> {
    let mut last = None;
    for addr in addrs {
        match open_one(*addr, opts) {
            Ok(l) => return Ok(l),
            Err(e @ Error::InvalidSetting { .. }) => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(Error::NoAddress))
}

fn open_one(addr: SocketAddr, opts: &SocketOptions) -> Result<Listener, Error> {
    let at = Addr::Inet(addr);
    let (ty, proto) = match opts.transport {
        Transport::Stream => (Type::STREAM, Protocol::TCP),
        Transport::Datagram => (Type::DGRAM, Protocol::UDP),
    };
    let socket = Socket::new(Domain::for_address(addr), ty, Some(proto)).map_err(|source| {
        Error::Socket {
            addr: at.clone(),
            source,
        }
    })?;
    let set = |option: &'static str, r: io::Result<()>| {
        r.map_err(|source| Error::SetOption {
            option,
            addr: at.clone(),
            source,
        })
    };
    if addr.is_ipv6() {
        // Always explicit, so dual stack never depends on the OS default
        // (net.ipv6.bindv6only on Linux, on by default on some BSDs).
        set(
            "IPV6_V6ONLY",
            socket.set_only_v6(opts.only_v6.unwrap_or(false)),
        )?;
    } else if opts.only_v6 == Some(true) {
        return Err(Error::InvalidSetting {
            setting: "only_v6",
            reason: format!("{addr} is an IPv4 address; only_v6 applies to IPv6 sockets"),
        });
    }
    #[cfg(unix)]
    set("SO_REUSEADDR", socket.set_reuse_address(opts.reuse_address))?;
    #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
    if opts.reuse_port {
        set("SO_REUSEPORT", socket.set_reuse_port(true))?;
    }
    socket.bind(&addr.into()).map_err(|source| Error::Bind {
        addr: at.clone(),
        source,
    })?;
    match opts.transport {
        Transport::Stream => {
            let backlog = i32::try_from(opts.backlog).unwrap_or(i32::MAX);
            socket.listen(backlog).map_err(|source| Error::Listen {
                addr: at.clone(),
                backlog: opts.backlog,
                source,
            })?;
            Ok(Listener::Stream(socket.into()))
        }
        Transport::Datagram => Ok(Listener::Datagram(Arc::new(socket.into()))),
    }
}
