//! [`parse`]: decoding a header of either version from a buffer, without
//! any I/O; the first byte tells which.

use super::header::{ProxyError, ProxyHeader};
use super::v1::parse_v1;
use super::v2::parse_v2;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::fixtures::{v2, INET_BLOCK};

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
}
