//! `ProxyProtocol`: which proxies a listener trusts to tell it the client's
//! address with a PROXY protocol header, and how long it waits for one.

use std::net::IpAddr;
use std::time::Duration;

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
    /// Clients of a Unix-domain socket listener are trusted.
    unix: bool,
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
            unix: false,
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

    /// Also trusts every client of a Unix-domain socket listener (a proxy
    /// on this machine, HAProxy's `unix@` with `send-proxy-v2`, say):
    /// whoever may connect to the socket's file, which its permissions
    /// decide. Such a client has no IP address to trust; without this, a
    /// Unix-domain server with the PROXY protocol does not build.
    pub fn trust_unix(mut self) -> Self {
        self.unix = true;
        self
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

    /// Whether clients of a Unix-domain socket may send a header.
    pub(crate) fn trusts_unix(&self) -> bool {
        self.unix
    }

    /// How long a connection has to send its header.
    pub(crate) fn timeout(&self) -> Duration {
        self.header_timeout
    }

    pub(crate) fn has_zero_timeout(&self) -> bool {
        self.header_timeout.is_zero()
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

#[cfg(test)]
mod tests {
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
}
