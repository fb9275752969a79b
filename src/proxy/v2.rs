//! Version 2: the binary block after the 12-byte signature.

use std::net::{IpAddr, SocketAddr};

use super::header::{agrees, ProxyError, ProxyHeader, V2_FIXED_LEN, V2_MAX_PAYLOAD, V2_SIGNATURE};
use crate::Transport;

/// Version 2: checks the fixed part as it arrives, then decodes the
/// addresses and checks the TLVs after them.
pub(super) fn parse_v2(bytes: &[u8]) -> Result<(ProxyHeader, usize), ProxyError> {
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
    use super::*;
    use crate::proxy::fixtures::{self, addr, inet6_block, proxied, v2, INET_BLOCK};

    fn parsed(bytes: &[u8]) -> ProxyHeader {
        fixtures::parsed_with(parse_v2, bytes)
    }

    fn malformed(bytes: &[u8]) -> &'static str {
        fixtures::malformed_with(parse_v2, bytes)
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
        assert!(matches!(
            parse_v2(&bad_signature),
            Err(ProxyError::NotProxy)
        ));
        for version in [0x11, 0x31, 0x01, 0xf1] {
            assert!(matches!(
                parse_v2(&v2(version, 0x11, &INET_BLOCK)),
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
        assert!(matches!(parse_v2(&fixed), Err(ProxyError::TooLong)));
        fixed[14..16].copy_from_slice(&[0xff, 0xff]);
        assert!(matches!(parse_v2(&fixed), Err(ProxyError::TooLong)));
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
}
