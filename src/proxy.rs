//! The PROXY protocol, versions 1 and 2: decoding the header a proxy such as
//! HAProxy puts in front of a relayed connection to tell the server who the
//! real client is.
//!
//! A proxy that relays TCP connections hides the client: the server sees the
//! proxy's address as its peer. With the PROXY protocol the proxy starts each
//! connection it opens to the server with one header naming the original
//! source and destination, then relays the client's bytes unchanged. Version 1
//! is a line of text (`PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n`),
//! version 2 a binary block starting with a 12-byte signature. The format is
//! HAProxy's `doc/proxy-protocol.txt`.
//!
//! [`read_header`] reads exactly one header of either version from a blocking
//! stream and nothing after it, so the application's data that follows is
//! left for the application. [`parse`] decodes a header at the start of a
//! buffer without any I/O, for code that has its own buffering.
//!
//! Only accept the header from proxies you trust: anyone who may send it can
//! claim any address. Never try to guess whether a header is present; decide
//! per listener.
//!
//! ```
//! use std::io::{Cursor, Read};
//! use socketserver::proxy::{read_header, ProxyHeader};
//!
//! let mut stream = Cursor::new(&b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\nHELLO"[..]);
//! let header = read_header(&mut stream)?;
//! assert_eq!(header.source(), Some("192.0.2.7:51234".parse()?));
//! assert_eq!(header.destination(), Some("198.51.100.1:443".parse()?));
//!
//! let mut rest = String::new();
//! stream.read_to_string(&mut rest)?;
//! assert_eq!(rest, "HELLO"); // the application's bytes, untouched
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::Transport;

/// The longest version 1 header, CRLF included: `PROXY UNKNOWN` followed by
/// two full IPv6 addresses and two five-digit ports. A line with no CRLF in
/// its first 107 bytes is rejected as [`ProxyError::TooLong`].
pub const V1_MAX_LEN: usize = 107;

/// The largest version 2 length field accepted: the bytes of addresses and
/// TLVs after the 16-byte fixed part. So a version 2 header is at most
/// 4,112 bytes; a larger announced length is rejected as
/// [`ProxyError::TooLong`] before anything more is read.
///
/// The format allows up to 65,535, but what proxies send is far smaller: 12
/// or 36 bytes of addresses, 216 for Unix sockets, plus a few TLVs (ALPN,
/// authority, a unique ID of at most 128 bytes, TLS details).
pub const V2_MAX_PAYLOAD: usize = 4096;

/// What a version 1 header starts with.
const V1_PREFIX: &[u8] = b"PROXY ";
/// The shortest valid version 1 header, `PROXY UNKNOWN\r\n`.
const V1_MIN_LEN: usize = 15;
/// What a version 2 header starts with.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version and command, family and transport, length.
const V2_FIXED_LEN: usize = 16;

/// A decoded PROXY protocol header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyHeader {
    /// A relayed connection (version 1 `TCP4` or `TCP6`, version 2 `PROXY`
    /// over IPv4 or IPv6): the addresses of the client's own connection to
    /// the proxy.
    #[non_exhaustive]
    Proxied {
        /// The real client: where the connection to the proxy came from.
        source: SocketAddr,
        /// Where the client connected to: usually the proxy's own listening
        /// address.
        destination: SocketAddr,
        /// `Stream` for TCP (always, in version 1), `Datagram` for UDP.
        transport: Transport,
    },
    /// Version 2 `LOCAL`: the proxy opened this connection on its own behalf,
    /// typically a health check. The connection's real addresses apply; the
    /// header's address block and family are ignored.
    Local,
    /// Version 1 `UNKNOWN`, or version 2 `PROXY` with an unspecified or
    /// unsupported family or transport (such as a Unix socket): a valid
    /// header with no usable address. The connection's real addresses apply.
    Unknown,
}

impl ProxyHeader {
    /// The real client's address, when the header carries one.
    pub fn source(&self) -> Option<SocketAddr> {
        match self {
            ProxyHeader::Proxied { source, .. } => Some(*source),
            ProxyHeader::Local | ProxyHeader::Unknown => None,
        }
    }

    /// The address the client connected to, when the header carries one.
    pub fn destination(&self) -> Option<SocketAddr> {
        match self {
            ProxyHeader::Proxied { destination, .. } => Some(*destination),
            ProxyHeader::Local | ProxyHeader::Unknown => None,
        }
    }
}

/// Why a PROXY protocol header could not be decoded.
///
/// `io::Error::from(err)` gives `InvalidData` for a bad header and keeps the
/// kind of an I/O error, so `read_header(conn)?` works in a handler.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The bytes start neither with `PROXY ` (version 1) nor with the
    /// version 2 signature: the peer does not speak the PROXY protocol.
    #[error("not a PROXY protocol header")]
    NotProxy,

    /// A version 2 signature followed by a version other than 2.
    #[error("unsupported PROXY protocol version {0}")]
    UnsupportedVersion(u8),

    /// A version 1 line with no CRLF within [`V1_MAX_LEN`] bytes, or a
    /// version 2 length above [`V2_MAX_PAYLOAD`].
    #[error("PROXY protocol header too long")]
    TooLong,

    /// The header breaks the format; the text says how.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),

    /// Only from [`parse`]: the bytes so far are a valid start of a header,
    /// and at least `needed` more bytes belong to it. Asking for `needed`
    /// more never reads past the header's end.
    #[error("incomplete PROXY protocol header: {needed} more bytes needed at least")]
    Incomplete {
        /// How many more bytes the header has at least.
        needed: usize,
    },

    /// Only from [`read_header`]: reading failed, e.g. the read timeout
    /// passed (`WouldBlock` or `TimedOut`) or the peer closed the connection
    /// before the header was complete (`UnexpectedEof`).
    #[error("cannot read the PROXY protocol header")]
    Io(#[from] io::Error),
}

impl From<ProxyError> for io::Error {
    fn from(err: ProxyError) -> Self {
        match err {
            ProxyError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// Reads one PROXY protocol header, version 1 or 2, from `stream`, and not
/// one byte more: what follows is the application's.
///
/// Meant for a blocking socket with a read timeout already set; the timeout
/// bounds each read, so a caller who wants one deadline for the whole header
/// sets it short. The first byte tells the version. A version 1 line is read
/// as its first 15 bytes (the shortest line) then one byte at a time up to
/// its CRLF, at most [`V1_MAX_LEN`] bytes; a version 2 header as its 16-byte
/// fixed part then exactly the announced length, at most [`V2_MAX_PAYLOAD`].
/// Reading stops as soon as the bytes read cannot be a header.
///
/// # Errors
///
/// [`ProxyError::Io`] when reading fails, an end of file before the header is
/// complete included; otherwise what [`parse`] reports, except `Incomplete`.
pub fn read_header<R: Read + ?Sized>(stream: &mut R) -> Result<ProxyHeader, ProxyError> {
    let mut buf = Vec::with_capacity(V1_MAX_LEN);
    loop {
        match parse(&buf) {
            Ok((header, consumed)) => {
                debug_assert_eq!(consumed, buf.len(), "read past the header");
                return Ok(header);
            }
            Err(ProxyError::Incomplete { needed }) if needed == 1 && buf.starts_with(V1_PREFIX) => {
                read_line_on(stream, &mut buf)?;
            }
            Err(ProxyError::Incomplete { needed }) => {
                let start = buf.len();
                buf.resize(start + needed, 0);
                stream.read_exact(&mut buf[start..])?;
            }
            Err(err) => return Err(err),
        }
    }
}

/// Reads more of a version 1 line, one byte at a time, up to the first
/// byte that can change what [`parse`] makes of it: a CR or LF, the byte
/// after a CR, or the last one the line may have. Any other byte leaves the
/// line incomplete, so parsing after each would only cost time.
fn read_line_on<R: Read + ?Sized>(stream: &mut R, buf: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let after_cr = buf.last() == Some(&b'\r');
        let mut byte = [0];
        stream.read_exact(&mut byte)?;
        buf.extend_from_slice(&byte);
        if after_cr || matches!(byte, [b'\r' | b'\n']) || buf.len() >= V1_MAX_LEN {
            return Ok(());
        }
    }
}

/// Decodes the PROXY protocol header, version 1 or 2, at the start of
/// `bytes`, and returns it with its length in bytes: the application's data
/// starts at that offset.
///
/// Never panics, whatever the bytes.
///
/// # Errors
///
/// * [`ProxyError::Incomplete`] when `bytes` is a valid but unfinished start
///   of a header;
/// * [`ProxyError::NotProxy`] when it cannot start one;
/// * [`ProxyError::UnsupportedVersion`], [`ProxyError::TooLong`] or
///   [`ProxyError::Malformed`] when it breaks the format. These are reported
///   as early as the bytes allow, before the header's end if possible.
pub fn parse(bytes: &[u8]) -> Result<(ProxyHeader, usize), ProxyError> {
    match bytes.first() {
        None => Err(ProxyError::Incomplete { needed: 1 }),
        Some(b'P') => parse_v1(bytes),
        Some(b'\r') => parse_v2(bytes),
        Some(_) => Err(ProxyError::NotProxy),
    }
}

/// Whether `bytes` agrees with `prefix` as far as both go.
fn agrees(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.iter().zip(prefix).all(|(a, b)| a == b)
}

/// Version 1: finds the CRLF within the first [`V1_MAX_LEN`] bytes, then
/// decodes the line before it.
fn parse_v1(bytes: &[u8]) -> Result<(ProxyHeader, usize), ProxyError> {
    if !agrees(bytes, V1_PREFIX) {
        return Err(ProxyError::NotProxy);
    }
    let window = bytes.get(..V1_MAX_LEN).unwrap_or(bytes);
    let mut end = None;
    for (i, &b) in window.iter().enumerate() {
        match b {
            b'\r' => match window.get(i + 1) {
                Some(b'\n') => {
                    end = Some(i);
                    break;
                }
                Some(_) => return Err(ProxyError::Malformed("CR not followed by LF")),
                None => {}
            },
            b'\n' => return Err(ProxyError::Malformed("LF without CR")),
            _ => {}
        }
    }
    let Some(end) = end else {
        return Err(if window.len() >= V1_MAX_LEN {
            ProxyError::TooLong
        } else {
            ProxyError::Incomplete {
                needed: V1_MIN_LEN.saturating_sub(bytes.len()).max(1),
            }
        });
    };
    let line = bytes
        .get(V1_PREFIX.len()..end)
        .ok_or(ProxyError::Malformed("line ends inside PROXY"))?;
    Ok((decode_v1(line)?, end + 2))
}

/// Decodes what follows `PROXY ` on a version 1 line, CRLF excluded.
fn decode_v1(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let mut fields = line.split(|&b| b == b' ');
    let v6 = match fields.next() {
        // Whatever follows UNKNOWN is to be ignored.
        Some(b"UNKNOWN") => return Ok(ProxyHeader::Unknown),
        Some(b"TCP4") => false,
        Some(b"TCP6") => true,
        _ => {
            return Err(ProxyError::Malformed(
                "protocol is not TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let mut next = |what| fields.next().ok_or(ProxyError::Malformed(what));
    let source = next("no source address")?;
    let destination = next("no destination address")?;
    let source_port = next("no source port")?;
    let destination_port = next("no destination port")?;
    if fields.next().is_some() {
        return Err(ProxyError::Malformed("more fields than TCP4 or TCP6 has"));
    }
    let source = SocketAddr::new(v1_ip(source, v6)?, v1_port(source_port)?);
    let destination = SocketAddr::new(v1_ip(destination, v6)?, v1_port(destination_port)?);
    Ok(ProxyHeader::Proxied {
        source,
        destination,
        transport: Transport::Stream,
    })
}

/// An IPv4 address in dotted decimal without leading zeros, or an IPv6
/// address, as the family requires.
fn v1_ip(field: &[u8], v6: bool) -> Result<IpAddr, ProxyError> {
    let text =
        std::str::from_utf8(field).map_err(|_| ProxyError::Malformed("address is not ASCII"))?;
    if v6 {
        text.parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| ProxyError::Malformed("not an IPv6 address after TCP6"))
    } else {
        text.parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| ProxyError::Malformed("not an IPv4 address after TCP4"))
    }
}

/// A port: 0 to 65535 in decimal digits, without sign or leading zeros.
fn v1_port(field: &[u8]) -> Result<u16, ProxyError> {
    if field.is_empty() || field.len() > 5 || !field.iter().all(u8::is_ascii_digit) {
        return Err(ProxyError::Malformed("port is not a decimal number"));
    }
    if field.len() > 1 && field.starts_with(b"0") {
        return Err(ProxyError::Malformed("port has a leading zero"));
    }
    let value = field
        .iter()
        .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    u16::try_from(value).map_err(|_| ProxyError::Malformed("port above 65535"))
}

/// Version 2: checks the fixed part as it arrives, then decodes the
/// addresses and checks the TLVs after them.
fn parse_v2(bytes: &[u8]) -> Result<(ProxyHeader, usize), ProxyError> {
    if !agrees(bytes, V2_SIGNATURE) {
        return Err(ProxyError::NotProxy);
    }
    let incomplete = || ProxyError::Incomplete {
        needed: V2_FIXED_LEN.saturating_sub(bytes.len()),
    };
    let &version_command = bytes.get(12).ok_or_else(incomplete)?;
    let version = version_command >> 4;
    if version != 2 {
        return Err(ProxyError::UnsupportedVersion(version));
    }
    let local = match version_command & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::Malformed("command is neither LOCAL nor PROXY")),
    };
    let &family_transport = bytes.get(13).ok_or_else(incomplete)?;
    let family = family_transport >> 4;
    let transport = family_transport & 0x0f;
    // LOCAL ignores the family, as HAProxy does; PROXY must name a known one.
    if !local && family > 3 {
        return Err(ProxyError::Malformed("unknown address family"));
    }
    if !local && transport > 2 {
        return Err(ProxyError::Malformed("unknown transport protocol"));
    }
    let (&high, &low) = bytes.get(14).zip(bytes.get(15)).ok_or_else(incomplete)?;
    let len = usize::from(u16::from_be_bytes([high, low]));
    if len > V2_MAX_PAYLOAD {
        return Err(ProxyError::TooLong);
    }
    let total = V2_FIXED_LEN + len;
    let payload = bytes
        .get(V2_FIXED_LEN..total)
        .ok_or(ProxyError::Incomplete {
            needed: total.saturating_sub(bytes.len()),
        })?;
    if local {
        // The proxy's own connection: the whole block is to be ignored.
        return Ok((ProxyHeader::Local, total));
    }
    Ok((decode_v2(family, transport, payload)?, total))
}

/// Decodes the addresses of a version 2 `PROXY` command and checks that the
/// TLVs after them stay within the header.
fn decode_v2(family: u8, transport: u8, payload: &[u8]) -> Result<ProxyHeader, ProxyError> {
    const INET: u8 = 1;
    const INET6: u8 = 2;
    let (address_len, transport) = match (family, transport) {
        // Unspecified: the receiver is to ignore the address block.
        (0, _) | (_, 0) => return Ok(ProxyHeader::Unknown),
        (INET, t) => (12, t),
        (INET6, t) => (36, t),
        (_, t) => (216, t), // Unix: two 108-byte paths
    };
    let (mut addresses, tlvs) =
        payload
            .split_at_checked(address_len)
            .ok_or(ProxyError::Malformed(
                "length too short for the address family",
            ))?;
    check_tlvs(tlvs)?;
    let transport = if transport == 1 {
        Transport::Stream
    } else {
        Transport::Datagram
    };
    let (source_ip, destination_ip) = match family {
        INET => (
            IpAddr::from(take::<4>(&mut addresses)?),
            IpAddr::from(take::<4>(&mut addresses)?),
        ),
        INET6 => (
            IpAddr::from(take::<16>(&mut addresses)?),
            IpAddr::from(take::<16>(&mut addresses)?),
        ),
        _ => return Ok(ProxyHeader::Unknown), // Unix paths are no client address
    };
    let source_port = u16::from_be_bytes(take::<2>(&mut addresses)?);
    let destination_port = u16::from_be_bytes(take::<2>(&mut addresses)?);
    Ok(ProxyHeader::Proxied {
        source: SocketAddr::new(source_ip, source_port),
        destination: SocketAddr::new(destination_ip, destination_port),
        transport,
    })
}

/// Takes the first `N` bytes off `bytes`.
fn take<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], ProxyError> {
    let (head, rest) = bytes
        .split_first_chunk::<N>()
        .ok_or(ProxyError::Malformed("address block too short"))?;
    *bytes = rest;
    Ok(*head)
}

/// Walks the TLVs (type: 1 byte, length: 2 bytes big-endian, value) and
/// checks that each one ends within the header. Their content is skipped.
fn check_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyError> {
    while !tlvs.is_empty() {
        let (&[_kind, high, low], rest) = tlvs
            .split_first_chunk::<3>()
            .ok_or(ProxyError::Malformed("truncated TLV"))?;
        let len = usize::from(u16::from_be_bytes([high, low]));
        tlvs = rest
            .get(len..)
            .ok_or(ProxyError::Malformed("TLV runs past the header"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn proxied(source: &str, destination: &str, transport: Transport) -> ProxyHeader {
        ProxyHeader::Proxied {
            source: addr(source),
            destination: addr(destination),
            transport,
        }
    }

    /// A version 2 header: signature, version/command, family/transport,
    /// the payload's length, the payload.
    fn v2(version_command: u8, family_transport: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(version_command);
        out.push(family_transport);
        out.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// The 12-byte address block of 192.0.2.7:51234 -> 198.51.100.1:443.
    const INET_BLOCK: [u8; 12] = [192, 0, 2, 7, 198, 51, 100, 1, 0xc8, 0x22, 0x01, 0xbb];

    fn inet6_block() -> Vec<u8> {
        let mut block = Vec::new();
        block.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        block.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        block.extend_from_slice(&51234u16.to_be_bytes());
        block.extend_from_slice(&443u16.to_be_bytes());
        block
    }

    fn parsed(bytes: &[u8]) -> ProxyHeader {
        let (header, consumed) = parse(bytes).unwrap();
        assert_eq!(consumed, bytes.len());
        header
    }

    fn malformed(bytes: &[u8]) -> &'static str {
        match parse(bytes) {
            Err(ProxyError::Malformed(why)) => why,
            other => panic!(
                "{:?}: expected Malformed, got {other:?}",
                bytes.escape_ascii().to_string()
            ),
        }
    }

    #[test]
    fn v1_tcp4() {
        assert_eq!(
            parsed(b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n"),
            proxied("192.0.2.7:51234", "198.51.100.1:443", Transport::Stream)
        );
        assert_eq!(
            parsed(b"PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"),
            proxied("0.0.0.0:0", "255.255.255.255:65535", Transport::Stream)
        );
    }

    #[test]
    fn v1_tcp6() {
        assert_eq!(
            parsed(b"PROXY TCP6 2001:db8::7 2001:DB8:0:0:0:0:0:1 51234 443\r\n"),
            proxied(
                "[2001:db8::7]:51234",
                "[2001:db8::1]:443",
                Transport::Stream
            )
        );
        assert_eq!(
            parsed(b"PROXY TCP6 ::ffff:192.0.2.7 ::1 1 2\r\n"),
            proxied("[::ffff:192.0.2.7]:1", "[::1]:2", Transport::Stream)
        );
    }

    #[test]
    fn v1_unknown_ignores_the_rest_of_its_line() {
        assert_eq!(parsed(b"PROXY UNKNOWN\r\n"), ProxyHeader::Unknown);
        assert_eq!(
            parsed(b"PROXY UNKNOWN 1.2.3.4 whatever\r\n"),
            ProxyHeader::Unknown
        );
    }

    #[test]
    fn v1_longest_line_is_accepted_and_one_more_byte_is_too_long() {
        let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let longest = format!("PROXY UNKNOWN {f} {f} 65535 65535\r\n");
        assert_eq!(longest.len(), V1_MAX_LEN);
        assert_eq!(parsed(longest.as_bytes()), ProxyHeader::Unknown);
        let longer = format!("PROXY UNKNOWN {f} {f} 65535 655350\r\n");
        assert!(matches!(parse(longer.as_bytes()), Err(ProxyError::TooLong)));
        // Known too long without waiting for the rest.
        assert!(matches!(
            parse(&longer.as_bytes()[..V1_MAX_LEN]),
            Err(ProxyError::TooLong)
        ));
    }

    #[test]
    fn v1_bad_ports_and_addresses() {
        for (line, about) in [
            ("PROXY TCP4 1.2.3.4 5.6.7.8 65536 80\r\n", "port"),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n", "port"),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 100000 80\r\n", "port"),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 080 80\r\n", "port"),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 +80 80\r\n", "port"),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 -1 80\r\n", "port"),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 8a 80\r\n", "port"),
            ("PROXY TCP4 1.2.3.4 5.6.7.8 80 \r\n", "port"),
            ("PROXY TCP4 256.0.0.1 5.6.7.8 1 2\r\n", "address"),
            ("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "address"),
            ("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "address"),
            ("PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "address"),
            ("PROXY TCP6 ::1 5.6.7.8 1 2\r\n", "address"),
            ("PROXY TCP6 ::1 [::1] 1 2\r\n", "address"),
            ("PROXY TCP6 \u{e9}::1 ::1 1 2\r\n", "address"),
        ] {
            let why = malformed(line.as_bytes());
            assert!(why.contains(about), "{line:?}: {why}");
        }
    }

    #[test]
    fn v1_bad_lines() {
        for line in [
            &b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"[..],
            b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY UNKNOWNX\r\n",
            b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n",
            b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n",
            b"PROXY \r\n",
        ] {
            malformed(line);
        }
    }

    #[test]
    fn v1_without_crlf_is_incomplete_then_too_long() {
        let line = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2";
        assert!(matches!(
            parse(line),
            Err(ProxyError::Incomplete { needed: 1 })
        ));
        let endless = [&line[..], &[b'0'; 100]].concat();
        assert!(matches!(parse(&endless), Err(ProxyError::TooLong)));
    }

    #[test]
    fn not_proxy() {
        for bytes in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\n",
            b"PROXYTCP4",
            b"\x16\x03\x01\x02\x00",
            b"\r\n\r\n\0\r\nQUIT\r",
            b"\r\n\r\n\n",
            b"\0",
        ] {
            assert!(
                matches!(parse(bytes), Err(ProxyError::NotProxy)),
                "{:?}",
                bytes.escape_ascii().to_string()
            );
        }
        assert!(matches!(
            parse(b""),
            Err(ProxyError::Incomplete { needed: 1 })
        ));
        // A valid start is not refused until a byte disagrees.
        assert!(matches!(
            parse(b"PROXY"),
            Err(ProxyError::Incomplete { needed: 10 })
        ));
    }

    #[test]
    fn v2_proxy_inet_and_inet6() {
        assert_eq!(
            parsed(&v2(0x21, 0x11, &INET_BLOCK)),
            proxied("192.0.2.7:51234", "198.51.100.1:443", Transport::Stream)
        );
        assert_eq!(
            parsed(&v2(0x21, 0x12, &INET_BLOCK)),
            proxied("192.0.2.7:51234", "198.51.100.1:443", Transport::Datagram)
        );
        assert_eq!(
            parsed(&v2(0x21, 0x21, &inet6_block())),
            proxied(
                "[2001:db8::7]:51234",
                "[2001:db8::1]:443",
                Transport::Stream
            )
        );
        assert_eq!(
            parsed(&v2(0x21, 0x22, &inet6_block())),
            proxied(
                "[2001:db8::7]:51234",
                "[2001:db8::1]:443",
                Transport::Datagram
            )
        );
    }

    #[test]
    fn v2_tlvs_are_skipped() {
        let mut payload = INET_BLOCK.to_vec();
        payload.extend_from_slice(&[0x02, 0x00, 0x0b]); // authority
        payload.extend_from_slice(b"example.com");
        payload.extend_from_slice(&[0x04, 0x00, 0x00]); // empty noop
        payload.extend_from_slice(&[0xe0, 0x00, 0x02, 0xaa, 0xbb]); // custom
        assert_eq!(
            parsed(&v2(0x21, 0x11, &payload)),
            proxied("192.0.2.7:51234", "198.51.100.1:443", Transport::Stream)
        );
    }

    #[test]
    fn v2_largest_length_is_accepted() {
        let mut payload = INET_BLOCK.to_vec();
        let pad = V2_MAX_PAYLOAD - payload.len() - 3;
        payload.extend_from_slice(&[0x04]);
        payload.extend_from_slice(&u16::try_from(pad).unwrap().to_be_bytes());
        payload.resize(V2_MAX_PAYLOAD, 0);
        let header = v2(0x21, 0x11, &payload);
        assert_eq!(header.len(), V2_FIXED_LEN + V2_MAX_PAYLOAD);
        assert_eq!(parsed(&header).source(), Some(addr("192.0.2.7:51234")));
    }

    #[test]
    fn v2_local_ignores_its_block() {
        assert_eq!(parsed(&v2(0x20, 0x00, &[])), ProxyHeader::Local);
        assert_eq!(parsed(&v2(0x20, 0x11, &INET_BLOCK)), ProxyHeader::Local);
        assert_eq!(parsed(&v2(0x20, 0x11, &[1, 2, 3])), ProxyHeader::Local);
        assert_eq!(parsed(&v2(0x20, 0xff, &[])), ProxyHeader::Local);
    }

    #[test]
    fn v2_unspecified_and_unix_are_unknown() {
        assert_eq!(parsed(&v2(0x21, 0x00, &[])), ProxyHeader::Unknown);
        assert_eq!(parsed(&v2(0x21, 0x00, &INET_BLOCK)), ProxyHeader::Unknown);
        assert_eq!(parsed(&v2(0x21, 0x10, &INET_BLOCK)), ProxyHeader::Unknown);
        let mut unix = vec![0u8; 216];
        unix[..8].copy_from_slice(b"/run/a.s");
        assert_eq!(parsed(&v2(0x21, 0x31, &unix)), ProxyHeader::Unknown);
        assert_eq!(parsed(&v2(0x21, 0x32, &unix)), ProxyHeader::Unknown);
        malformed(&v2(0x21, 0x31, &unix[..215]));
    }

    #[test]
    fn v2_bad_fixed_part() {
        let mut bad_signature = v2(0x21, 0x11, &INET_BLOCK);
        bad_signature[7] = b'q';
        assert!(matches!(parse(&bad_signature), Err(ProxyError::NotProxy)));
        for version in [0x11, 0x31, 0x01, 0xf1] {
            assert!(matches!(
                parse(&v2(version, 0x11, &INET_BLOCK)),
                Err(ProxyError::UnsupportedVersion(v)) if v == version >> 4
            ));
        }
        assert!(malformed(&v2(0x22, 0x11, &INET_BLOCK)).contains("command"));
        assert!(malformed(&v2(0x2f, 0x11, &INET_BLOCK)).contains("command"));
        assert!(malformed(&v2(0x21, 0x41, &INET_BLOCK)).contains("family"));
        assert!(malformed(&v2(0x21, 0x13, &INET_BLOCK)).contains("transport"));
    }

    #[test]
    fn v2_oversized_length_is_refused_before_its_payload() {
        let mut fixed = v2(0x21, 0x11, &[]);
        let over = u16::try_from(V2_MAX_PAYLOAD + 1).unwrap();
        fixed[14..16].copy_from_slice(&over.to_be_bytes());
        assert!(matches!(parse(&fixed), Err(ProxyError::TooLong)));
        fixed[14..16].copy_from_slice(&[0xff, 0xff]);
        assert!(matches!(parse(&fixed), Err(ProxyError::TooLong)));
    }

    #[test]
    fn v2_bad_address_blocks_and_tlvs() {
        assert!(malformed(&v2(0x21, 0x11, &INET_BLOCK[..8])).contains("too short"));
        assert!(malformed(&v2(0x21, 0x21, &INET_BLOCK)).contains("too short"));
        let mut overrun = INET_BLOCK.to_vec();
        overrun.extend_from_slice(&[0x01, 0x00, 0x03, b'h', b'2']);
        assert!(malformed(&v2(0x21, 0x11, &overrun)).contains("past"));
        for extra in [&[0x01][..], &[0x01, 0x00]] {
            let truncated = [&INET_BLOCK[..], extra].concat();
            assert!(malformed(&v2(0x21, 0x11, &truncated)).contains("truncated"));
        }
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete_and_never_asks_too_much() {
        let mut with_tlv = INET_BLOCK.to_vec();
        with_tlv.extend_from_slice(&[0x05, 0x00, 0x02, 1, 2]);
        for header in [
            b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n".to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            v2(0x21, 0x11, &with_tlv),
            v2(0x20, 0x00, &[]),
        ] {
            for len in 0..header.len() {
                match parse(&header[..len]) {
                    Err(ProxyError::Incomplete { needed }) => {
                        assert!(
                            needed >= 1 && len + needed <= header.len(),
                            "{len} + {needed}"
                        );
                    }
                    other => panic!("prefix of {len} bytes: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn read_header_leaves_what_follows_unread() {
        let mut v2_header = v2(0x21, 0x11, &INET_BLOCK);
        for header in [
            b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n".to_vec(),
            v2_header.clone(),
        ] {
            let mut stream = Cursor::new([&header[..], b"\r\nGET / HTTP/1.0\r\n"].concat());
            assert_eq!(
                read_header(&mut stream).unwrap(),
                proxied("192.0.2.7:51234", "198.51.100.1:443", Transport::Stream)
            );
            assert_eq!(stream.position(), header.len() as u64);
            let mut rest = String::new();
            stream.read_to_string(&mut rest).unwrap();
            assert_eq!(rest, "\r\nGET / HTTP/1.0\r\n");
        }
        v2_header.extend_from_slice(b"PROXY TCP4 1.1.1.1 1.1.1.1 1 1\r\n");
        let mut stream = Cursor::new(v2_header);
        assert_eq!(
            read_header(&mut stream).unwrap().source(),
            Some(addr("192.0.2.7:51234"))
        );
        assert_eq!(
            read_header(&mut stream).unwrap().source(),
            Some(addr("1.1.1.1:1"))
        );
    }

    /// Hands out one byte per read, like a proxy trickling its header.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn read_header_over_a_trickle() {
        let bytes = [&v2(0x21, 0x21, &inet6_block())[..], b"data"].concat();
        let mut stream = Trickle(&bytes);
        let header = read_header(&mut stream).unwrap();
        assert_eq!(header.source(), Some(addr("[2001:db8::7]:51234")));
        assert_eq!(stream.0, b"data");
    }

    #[test]
    fn read_header_errors() {
        let short = Cursor::new(&b"PROXY TCP4 1.2.3.4"[..]);
        let err = read_header(&mut short.clone()).unwrap_err();
        assert!(
            matches!(&err, ProxyError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof),
            "{err:?}"
        );
        let mut lone_cr = Cursor::new(&b"PROXY TCP4 1.2.3.4\rX5.6.7.8 1 2\r\n"[..]);
        assert!(matches!(
            read_header(&mut lone_cr),
            Err(ProxyError::Malformed(_))
        ));
        assert_eq!(lone_cr.position(), 20, "refused on the byte after the CR");
        let mut http = Cursor::new(&b"GET / HTTP/1.1\r\n"[..]);
        assert!(matches!(read_header(&mut http), Err(ProxyError::NotProxy)));
        assert_eq!(http.position(), 1, "refused on its first byte");
        let mut post = Cursor::new(&b"POST /form HTTP/1.1\r\nHost: example.com\r\n\r\n"[..]);
        assert!(matches!(read_header(&mut post), Err(ProxyError::NotProxy)));
        assert_eq!(post.position(), 15, "refused with the first 15 bytes");

        let io_err = io::Error::from(ProxyError::TooLong);
        assert_eq!(io_err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(io_err.to_string(), "PROXY protocol header too long");
        let timeout = io::Error::from(ProxyError::Io(io::ErrorKind::WouldBlock.into()));
        assert_eq!(timeout.kind(), io::ErrorKind::WouldBlock);
    }
}
