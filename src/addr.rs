//! `Addr`: the one address type of the public API.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::option;
use std::path::{Path, PathBuf};

/// A socket address: where a server listens and where a peer connects from.
///
/// IP (`Inet`) or Unix-domain (`Unix`); the enum is `#[non_exhaustive]` so
/// that other kinds can be added without breaking matches.
/// It implements [`ToSocketAddrs`], so `TcpStream::connect(server.local_addr())`
/// works directly.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Addr {
    /// An IPv4 or IPv6 address with a port.
    Inet(SocketAddr),
    /// A Unix-domain socket: its path, or `None` for an unnamed socket (what
    /// most clients connect from). Shown as `unix:PATH` or `unix:unnamed`.
    Unix(Option<PathBuf>),
}

impl Addr {
    /// The IP address, or `None` for an address that has none.
    pub fn ip(&self) -> Option<IpAddr> {
        self.inet().map(|a| a.ip())
    }

    /// The port, or `None` for an address that has none.
    pub fn port(&self) -> Option<u16> {
        self.inet().map(|a| a.port())
    }

    /// The address as a [`SocketAddr`], when it is an IP address.
    pub fn inet(&self) -> Option<SocketAddr> {
        match self {
            Addr::Inet(a) => Some(*a),
            Addr::Unix(_) => None,
        }
    }

    /// The path of a Unix-domain socket address, if it has one.
    pub fn unix_path(&self) -> Option<&Path> {
        match self {
            Addr::Unix(path) => path.as_deref(),
            Addr::Inet(_) => None,
        }
    }

    /// Converts a Unix-domain socket address from std.
    pub(crate) fn from_unix(addr: &std::os::unix::net::SocketAddr) -> Self {
        Addr::Unix(addr.as_pathname().map(Path::to_path_buf))
    }

    /// The IP address with IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`)
    /// turned back into IPv4, so one client counts as one source whether it
    /// reached an IPv4 or a dual-stack IPv6 socket.
    pub fn canonical_ip(&self) -> Option<IpAddr> {
        self.ip().map(|ip| ip.to_canonical())
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Inet(a) => a.fmt(f),
            Addr::Unix(Some(path)) => write!(f, "unix:{}", path.display()),
            Addr::Unix(None) => f.write_str("unix:unnamed"),
        }
    }
}

impl From<SocketAddr> for Addr {
    fn from(a: SocketAddr) -> Self {
        Addr::Inet(a)
    }
}

impl ToSocketAddrs for Addr {
    type Iter = option::IntoIter<SocketAddr>;

    fn to_socket_addrs(&self) -> io::Result<Self::Iter> {
        match self.inet() {
            Some(a) => Ok(Some(a).into_iter()),
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{self} is not an IP socket address"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv4_is_canonical() {
        let a = Addr::from("[::ffff:127.0.0.1]:80".parse::<SocketAddr>().unwrap());
        assert_eq!(a.canonical_ip(), Some("127.0.0.1".parse().unwrap()));
        assert_eq!(a.port(), Some(80));
        assert_eq!(a.to_string(), "[::ffff:127.0.0.1]:80");
    }
}
