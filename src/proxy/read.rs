//! [`read_header`]: reading exactly one header from a blocking stream.

use std::io::{self, Read};

use super::decode::parse;
use super::header::{ProxyError, ProxyHeader, V1_MAX_LEN, V1_PREFIX};

/// Reads one PROXY protocol header, version 1 or 2, from `stream`, and not
/// one byte more: what follows is the application's.
///
/// Meant for a blocking socket with a read timeout already set; the timeout
/// bounds each read, so a caller who wants one deadline for the whole header
/// sets it short. The first byte tells the version. A version 1 line is read
/// as its first 15 bytes (the shortest line) then one byte at a time up to
/// its CRLF, at most [`V1_MAX_LEN`] bytes; a version 2 header as its 16-byte
/// fixed part then exactly the announced length, at most
/// [`V2_MAX_PAYLOAD`](crate::proxy::V2_MAX_PAYLOAD). Reading stops as soon
/// as the bytes read cannot be a header.
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

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::proxy::fixtures::{addr, inet6_block, proxied, v2, INET_BLOCK};
    use crate::Transport;

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
