//! What a PROXY protocol header is on the wire and once decoded: the
//! format's constants and limits, the decoded header, and the errors.
//! Everything else in this module builds on these, so they depend on
//! nothing in it.

use std::io;
use std::net::SocketAddr;

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
pub(super) const V1_PREFIX: &[u8] = b"PROXY ";
/// The shortest valid version 1 header, `PROXY UNKNOWN\r\n`.
pub(super) const V1_MIN_LEN: usize = 15;
/// What a version 2 header starts with.
pub(super) const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// Signature, version and command, family and transport, length.
pub(super) const V2_FIXED_LEN: usize = 16;

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

    /// Only from [`parse`](crate::proxy::parse): the bytes so far are a
    /// valid start of a header, and at least `needed` more bytes belong to
    /// it. Asking for `needed` more never reads past the header's end.
    #[error("incomplete PROXY protocol header: {needed} more bytes needed at least")]
    Incomplete {
        /// How many more bytes the header has at least.
        needed: usize,
    },

    /// Only from [`read_header`](crate::proxy::read_header): reading failed,
    /// e.g. the read timeout passed (`WouldBlock` or `TimedOut`) or the peer
    /// closed the connection before the header was complete
    /// (`UnexpectedEof`).
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

/// Whether `bytes` agrees with `prefix` as far as both go.
pub(super) fn agrees(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.iter().zip(prefix).all(|(a, b)| a == b)
}
