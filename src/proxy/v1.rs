//! Version 1: the text line, `PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::header::{agrees, ProxyError, ProxyHeader, V1_MAX_LEN, V1_MIN_LEN, V1_PREFIX};
use crate::Transport;

/// Version 1: finds the CRLF within the first [`V1_MAX_LEN`] bytes, then
/// decodes the line before it.
pub(super) fn parse_v1(bytes: &[u8]) -> Result<(ProxyHeader, usize), ProxyError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::fixtures::{self, proxied};

    fn parsed(bytes: &[u8]) -> ProxyHeader {
        fixtures::parsed_with(parse_v1, bytes)
    }

    fn malformed(bytes: &[u8]) -> &'static str {
        fixtures::malformed_with(parse_v1, bytes)
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
        assert!(matches!(
            parse_v1(longer.as_bytes()),
            Err(ProxyError::TooLong)
        ));
        // Known too long without waiting for the rest.
        assert!(matches!(
            parse_v1(&longer.as_bytes()[..V1_MAX_LEN]),
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
            parse_v1(line),
            Err(ProxyError::Incomplete { needed: 1 })
        ));
        let endless = [&line[..], &[b'0'; 100]].concat();
        assert!(matches!(parse_v1(&endless), Err(ProxyError::TooLong)));
    }
}
