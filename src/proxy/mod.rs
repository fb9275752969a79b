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

// Each part uses only those before it, so none depends on itself through
// another: `header` (the format and its types), the decoders `v1` and `v2`,
// `decode` (`parse`, which picks one), `read` (which feeds `parse` from a
// stream), and `trust` (which the server drives).
mod decode;
mod header;
mod read;
pub(crate) mod trust;
mod v1;
mod v2;

#[cfg(test)]
mod fixtures;

pub use decode::parse;
pub use header::{ProxyError, ProxyHeader, V1_MAX_LEN, V2_MAX_PAYLOAD};
pub use read::read_header;
