//! What the unit tests of the decoders share: headers to decode and the
//! results to expect. A module of its own, depending on `header` only, so
//! that each decoder's tests can use it without a cycle between modules.

use std::net::{Ipv6Addr, SocketAddr};

use super::header::{ProxyError, ProxyHeader, V2_SIGNATURE};
use crate::Transport;

/// `parse` or one of the decoders it picks from.
pub(super) type Parser = fn(&[u8]) -> Result<(ProxyHeader, usize), ProxyError>;

/// A socket address written as text.
pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// The header of a relayed connection.
pub(super) fn proxied(source: &str, destination: &str, transport: Transport) -> ProxyHeader {
    ProxyHeader::Proxied {
        source: addr(source),
        destination: addr(destination),
        transport,
    }
}

/// A version 2 header: signature, version/command, family/transport,
/// the payload's length, the payload.
pub(super) fn v2(version_command: u8, family_transport: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    out.push(version_command);
    out.push(family_transport);
    out.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The 12-byte address block of 192.0.2.7:51234 -> 198.51.100.1:443.
pub(super) const INET_BLOCK: [u8; 12] = [192, 0, 2, 7, 198, 51, 100, 1, 0xc8, 0x22, 0x01, 0xbb];

/// The 36-byte address block of [2001:db8::7]:51234 -> [2001:db8::1]:443.
pub(super) fn inet6_block() -> Vec<u8> {
    let mut block = Vec::new();
    block.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
    block.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    block.extend_from_slice(&51234u16.to_be_bytes());
    block.extend_from_slice(&443u16.to_be_bytes());
    block
}

/// What `parse` makes of the whole of `bytes`, which must be one header.
pub(super) fn parsed_with(parse: Parser, bytes: &[u8]) -> ProxyHeader {
    let (header, consumed) = parse(bytes).unwrap();
    assert_eq!(consumed, bytes.len());
    header
}

/// Why `parse` finds `bytes` malformed; panics if it does not.
pub(super) fn malformed_with(parse: Parser, bytes: &[u8]) -> &'static str {
    match parse(bytes) {
        Err(ProxyError::Malformed(why)) => why,
        other => panic!(
            "{:?}: expected Malformed, got {other:?}",
            bytes.escape_ascii().to_string()
        ),
    }
}
