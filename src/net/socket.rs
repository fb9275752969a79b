//! Socket setup: family and type, options, bind, listen; and checking a
//! socket opened elsewhere.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::net::datagram::DatagramSocket;
use crate::net::listener::Listener;
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
/// What is already at the path, and the file's removal at stop, are for
/// `lifecycle::socket_file::bind` to handle, which calls this.
pub(crate) fn open_unix(path: &Path, opts: &SocketOptions) -> Result<Listener, Error> {
    let at = Addr::Unix(Some(path.to_path_buf()));
    let bind_error = |source: io::Error| Error::Bind {
        addr: at.clone(),
        source,
    };
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
