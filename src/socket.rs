//! Socket setup, the crate's only use of socket2: family and type, options,
//! bind, listen; and the `shutdown(2)` that wakes blocked threads.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::connection::DatagramSocket;
use crate::settings::Settings;
use crate::stream::Stream;
use crate::{Addr, Error, PassedSocket, Transport};

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

    /// Wakes every thread blocked in `accept()` (stream) or the `receivers`
    /// threads blocked in `recv_from()` (datagram), at once.
    ///
    /// Closing the descriptor would not wake them on Linux. For a stream
    /// listener, `shutdown(2)` does: every blocked and later `accept` fails.
    /// For a datagram socket `shutdown(2)` wakes receivers too, but they
    /// then return an empty read with no source address, which std's
    /// `recv_from` does not expect; so instead each receiver is sent one
    /// empty datagram, and the socket stays usable for the replies of
    /// handlers still running.
    ///
    /// A stream listener that was passed in (`passed`) is not shut down:
    /// `shutdown(2)` acts on the socket, not on this process's descriptor,
    /// so it would stop the listening of whoever passed it too (systemd,
    /// which keeps it open across restarts) and reset the clients waiting
    /// in its backlog for the next process. Its accepting threads wake on
    /// their own within [`PASSED_ACCEPT_TICK`] instead.
    pub(crate) fn wake_all(&self, receivers: usize, passed: bool) {
        let result = match self {
            Listener::Tcp(_) | Listener::Unix(_) if passed => Ok(()),
            Listener::Tcp(l) => SockRef::from(l).shutdown(Shutdown::Both),
            Listener::Unix(l) => SockRef::from(l).shutdown(Shutdown::Both),
            Listener::Datagram(s) => self
                .local_addr()
                .and_then(|to| wake_receivers(s, &to, receivers)),
        };
        if let Err(e) = result {
            log::debug!("waking the receivers on shutdown: {e}");
        }
    }
}

/// Sets the options every accepted connection needs on a TCP listener,
/// once: Linux copies `TCP_NODELAY`, `SO_RCVTIMEO` and `SO_SNDTIMEO` into
/// each accepted socket. Returns whether that was done; if not, they are
/// set on each connection. (The listener's own `accept` then also times
/// out after the read timeout, which the accept loop simply retries.)
pub(crate) fn set_inherited_options(listener: &Listener, settings: &Settings) -> bool {
    let Listener::Tcp(l) = listener else {
        return false;
    };
    if !cfg!(target_os = "linux") || settings.proxy_protocol.is_some() {
        return false;
    }
    let sock = SockRef::from(l);
    sock.set_tcp_nodelay(settings.nodelay).is_ok()
        && sock.set_read_timeout(settings.read_timeout).is_ok()
        && sock.set_write_timeout(settings.write_timeout).is_ok()
}

/// How long a thread blocked in `accept()` on a passed stream listener
/// waits before it looks whether shutdown has begun.
pub(crate) const PASSED_ACCEPT_TICK: Duration = Duration::from_millis(100);

/// Makes `accept()` on a passed stream listener time out every
/// [`PASSED_ACCEPT_TICK`] (`SO_RCVTIMEO`, which Linux applies to `accept`),
/// since shutdown may not wake it with `shutdown(2)` (see
/// [`Listener::wake_all`]). Accepted sockets would inherit the timeout, so
/// their options are then set on each connection. Nothing to do for a
/// datagram socket.
pub(crate) fn set_accept_tick(listener: &Listener) -> io::Result<()> {
    match listener {
        Listener::Tcp(l) => SockRef::from(l).set_read_timeout(Some(PASSED_ACCEPT_TICK)),
        Listener::Unix(l) => SockRef::from(l).set_read_timeout(Some(PASSED_ACCEPT_TICK)),
        Listener::Datagram(_) => Ok(()),
    }
}

/// Sends `n` empty datagrams to the socket's own address from a fresh socket.
fn wake_receivers(socket: &DatagramSocket, to: &Addr, n: usize) -> io::Result<()> {
    match (socket, to) {
        (DatagramSocket::Udp(_), Addr::Inet(to)) => {
            let mut to = *to;
            let loopback: IpAddr = match to {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            };
            if to.ip().is_unspecified() {
                to.set_ip(loopback);
            }
            let waker = UdpSocket::bind((loopback, 0))?;
            (0..n).try_for_each(|_| waker.send_to(&[], to).map(drop))
        }
        (DatagramSocket::Unix(_), Addr::Unix(Some(path))) => {
            let waker = UnixDatagram::unbound()?;
            (0..n).try_for_each(|_| waker.send_to(&[], path).map(drop))
        }
        _ => Err(io::ErrorKind::Unsupported.into()),
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
    listen(socket, at, opts)
}

/// Listens on a bound socket (stream) and wraps it as its family and
/// transport say.
fn listen(socket: Socket, at: Addr, opts: &SocketOptions) -> Result<Listener, Error> {
    let unix = matches!(at, Addr::Unix(_));
    if opts.transport == Transport::Datagram {
        return Ok(Listener::Datagram(match unix {
            true => DatagramSocket::Unix(Arc::new(socket.into())),
            false => DatagramSocket::Udp(Arc::new(socket.into())),
        }));
    }
    let backlog = i32::try_from(opts.backlog).unwrap_or(i32::MAX);
    socket.listen(backlog).map_err(|source| Error::Listen {
        addr: at,
        backlog: opts.backlog,
        source,
    })?;
    Ok(match unix {
        true => Listener::Unix(socket.into()),
        false => Listener::Tcp(socket.into()),
    })
}

/// Creates, binds and (for streams) listens on a Unix-domain socket at `path`.
///
/// A socket file left by a server that is gone (nothing accepts on it) is
/// replaced; one that a live server answers on is `AddrInUse`; a file that
/// is not a socket is never touched (`AlreadyExists`).
pub(crate) fn open_unix(path: &Path, opts: &SocketOptions) -> Result<Listener, Error> {
    use std::os::unix::fs::FileTypeExt;
    let at = Addr::Unix(Some(path.to_path_buf()));
    let bind_error = |source: io::Error| Error::Bind {
        addr: at.clone(),
        source,
    };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(bind_error(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket",
            )));
        }
        let probe = match opts.transport {
            Transport::Stream => UnixStream::connect(path).map(drop),
            Transport::Datagram => UnixDatagram::unbound().and_then(|s| s.connect(path)),
        };
        match probe {
            Ok(()) => return Err(bind_error(io::ErrorKind::AddrInUse.into())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(bind_error)?;
            }
            Err(e) => return Err(bind_error(e)),
        }
    }
    let ty = match opts.transport {
        Transport::Stream => Type::STREAM,
        Transport::Datagram => Type::DGRAM,
    };
    let socket = Socket::new(Domain::UNIX, ty, None).map_err(|source| Error::Socket {
        addr: at.clone(),
        source,
    })?;
    let addr = socket2::SockAddr::unix(path).map_err(bind_error)?;
    socket.bind(&addr).map_err(bind_error)?;
    listen(socket, at, opts)
}

/// Checks a socket opened elsewhere against the server's transport and
/// wraps it: its family and type must fit, and a stream socket must be
/// listening already.
pub(crate) fn adopt(passed: PassedSocket, transport: Transport) -> Result<Listener, Error> {
    let mismatch = |reason: String| Error::SocketMismatch {
        socket: passed.name().to_string(),
        reason,
    };
    let sock = SockRef::from(&passed.fd);
    let inspect = |what: &str, e: io::Error| mismatch(format!("cannot read its {what}: {e}"));
    let domain = sock.domain().map_err(|e| inspect("family", e))?;
    let ty = sock.r#type().map_err(|e| inspect("type", e))?;
    let unix = domain == Domain::UNIX;
    if !unix && domain != Domain::IPV4 && domain != Domain::IPV6 {
        return Err(mismatch(format!(
            "its family {domain:?} is not IPv4, IPv6 or Unix"
        )));
    }
    let wanted = match transport {
        Transport::Stream => Type::STREAM,
        Transport::Datagram => Type::DGRAM,
    };
    if ty != wanted {
        let kind = |t| {
            if t == Type::STREAM {
                "a stream"
            } else if t == Type::DGRAM {
                "a datagram"
            } else {
                "an unsupported"
            }
        };
        return Err(mismatch(format!(
            "it is {} socket, the server serves {}s",
            kind(ty),
            kind(wanted).trim_start_matches("a ")
        )));
    }
    if transport == Transport::Stream && !sock.is_listener().map_err(|e| inspect("state", e))? {
        return Err(mismatch(
            "it is a stream socket that is not listening".into(),
        ));
    }
    // Served with blocking calls, whatever the passing program preferred.
    sock.set_nonblocking(false)
        .map_err(|e| mismatch(format!("cannot make it blocking: {e}")))?;
    let fd = passed.fd;
    Ok(match (transport, unix) {
        (Transport::Stream, false) => Listener::Tcp(fd.into()),
        (Transport::Stream, true) => Listener::Unix(fd.into()),
        (Transport::Datagram, false) => {
            Listener::Datagram(DatagramSocket::Udp(Arc::new(fd.into())))
        }
        (Transport::Datagram, true) => {
            Listener::Datagram(DatagramSocket::Unix(Arc::new(fd.into())))
        }
    })
}
