//! `ProxyProtocol`: which proxies a listener trusts to tell it the client's
//! address with a PROXY protocol header, and how long it waits for one.

use std::io::{self, Read};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::header::{ProxyError, ProxyHeader};
use super::read::read_header;
use crate::deadline::deadline_after;
use crate::net::stream::Stream;

/// PROXY protocol (v1 text and v2 binary, as HAProxy's `send-proxy` and
/// `send-proxy-v2` send) on a stream listener; give it to
/// [`ServerBuilder::proxy_protocol`](crate::ServerBuilder::proxy_protocol).
///
/// Every connection must come from a trusted proxy, and must start with a
/// header, read within `header_timeout`; otherwise it is closed before any
/// handler runs and counted ([`Stats`](crate::Stats)`::proxy_refused`,
/// `proxy_errors`). The client address in the header becomes
/// `conn.peer_addr()`, so `max_per_source` and logs see the real client;
/// `conn.proxy_addr()` keeps the proxy's. A v2 `LOCAL` header (the proxy's
/// own health check) or an `UNKNOWN` one keeps the proxy's address.
///
/// ```
/// use std::time::Duration;
/// use socketserver::ProxyProtocol;
///
/// let haproxy = ProxyProtocol::new()
///     .trust("10.0.0.7".parse().unwrap())
///     .trust_network("192.168.10.0".parse().unwrap(), 24)
///     .header_timeout(Duration::from_secs(2));
/// assert!(haproxy.trusts("192.168.10.99".parse().unwrap()));
/// assert!(!haproxy.trusts("192.168.11.1".parse().unwrap()));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyProtocol {
    /// Trusted networks: an address and how many leading bits must match.
    trusted: Vec<(IpAddr, u8)>,
    header_timeout: Duration,
}

impl Default for ProxyProtocol {
    fn default() -> Self {
        Self::new()
    }
}

impl ProxyProtocol {
    /// Trusting no one yet; header timeout 5 s.
    pub fn new() -> Self {
        ProxyProtocol {
            trusted: Vec::new(),
            header_timeout: Duration::from_secs(5),
        }
    }

    /// Also trusts the proxy at `ip`.
    pub fn trust(self, ip: IpAddr) -> Self {
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        self.trust_network(ip, bits)
    }

    /// Also trusts every address in `network/prefix_len` (e.g. `10.0.0.0`, 8).
    /// A prefix longer than the address is taken as the whole address.
    pub fn trust_network(mut self, network: IpAddr, prefix_len: u8) -> Self {
        let network = network.to_canonical();
        let max = if network.is_ipv4() { 32 } else { 128 };
        self.trusted.push((network, prefix_len.min(max)));
        self
    }

    /// Also trusts proxies on this machine: `127.0.0.0/8` and `::1`.
    pub fn trust_loopback(self) -> Self {
        self.trust_network([127, 0, 0, 0].into(), 8)
            .trust(std::net::Ipv6Addr::LOCALHOST.into())
    }

    /// How long a connection may take to send its whole header, from the
    /// moment a worker starts on it. Default: 5 s. A timeout of more than a
    /// century, such as `Duration::MAX`, waits a century.
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Whether a connection from `ip` may send a header (IPv4-mapped IPv6
    /// addresses count as IPv4).
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.trusted
            .iter()
            .any(|&(net, bits)| in_network(ip, net, bits))
    }

    /// How long a connection has to send its header.
    pub(crate) fn timeout(&self) -> Duration {
        self.header_timeout
    }

    pub(crate) fn has_zero_timeout(&self) -> bool {
        self.header_timeout.is_zero()
    }

    /// Reads the header off `stream` within the header timeout, leaving
    /// the stream's read timeout at `restore` afterwards.
    pub(crate) fn read(
        &self,
        stream: &Stream,
        restore: Option<Duration>,
    ) -> Result<ProxyHeader, ProxyError> {
        stream.set_read_timeout(Some(self.header_timeout))?;
        let mut reader = Deadline {
            stream,
            deadline: deadline_after(Instant::now(), self.header_timeout),
            timeout: self.header_timeout,
        };
        let header = read_header(&mut reader)?;
        stream.set_read_timeout(restore)?;
        Ok(header)
    }
}

/// Whether the first `bits` bits of `ip` and `net` agree (same family only).
fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (a, b, len) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let shift = len - u32::from(bits);
    shift >= len || (a >> shift) == (b >> shift)
}

/// Reads with one deadline for the whole header, however slowly it comes:
/// the socket's read timeout is lowered as the deadline nears. Data that
/// is already there is read without a system call for the timeout.
struct Deadline<'a> {
    stream: &'a Stream,
    deadline: Instant,
    /// The read timeout currently set on the socket.
    timeout: Duration,
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no complete PROXY header in time",
            ));
        }
        // 0.9 times even `Duration::MAX` fits in a `Duration`: no panic.
        if left < self.timeout.mul_f32(0.9) {
            self.stream.set_read_timeout(Some(left))?;
            self.timeout = left;
        }
        let mut s = self.stream;
        s.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    use super::*;

    #[test]
    fn networks_match_by_prefix() {
        let p = ProxyProtocol::new()
            .trust_network("10.1.0.0".parse().unwrap(), 16)
            .trust("2001:db8::1".parse().unwrap());
        assert!(p.trusts("10.1.200.3".parse().unwrap()));
        assert!(p.trusts("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!p.trusts("10.2.0.1".parse().unwrap()));
        assert!(p.trusts("2001:db8::1".parse().unwrap()));
        assert!(!p.trusts("2001:db8::2".parse().unwrap()));
        assert!(ProxyProtocol::new()
            .trust_network("0.0.0.0".parse().unwrap(), 0)
            .trusts("8.8.8.8".parse().unwrap()));
        assert!(ProxyProtocol::new()
            .trust_loopback()
            .trusts("127.3.2.1".parse().unwrap()));
        assert!(!ProxyProtocol::new().trusts("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn the_deadline_reader_lowers_a_huge_timeout_safely() {
        assert!(Duration::MAX.mul_f32(0.9) < Duration::MAX);
    }

    /// `Duration::MAX` is the natural way to ask for no limit; reading
    /// must not panic on it, since it runs outside the handler's
    /// `catch_unwind` and a panic there would take the worker.
    #[test]
    fn the_longest_header_timeout_still_reads_the_header() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client
            .write_all(b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\nHELLO")
            .unwrap();
        let stream = Stream::Tcp(listener.accept().unwrap().0);
        let header = ProxyProtocol::new()
            .header_timeout(Duration::MAX)
            .read(&stream, None)
            .unwrap();
        assert_eq!(header.source(), Some("192.0.2.7:51234".parse().unwrap()));
        assert_eq!(stream.read_timeout().unwrap(), None);
        let mut rest = [0; 5];
        (&stream).read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b"HELLO");
    }
}
