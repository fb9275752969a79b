//! `TlsInfo`: what a connection's TLS handshake settled.

use std::fmt;

use rustls::pki_types::CertificateDer;
use rustls::{CipherSuite, ProtocolVersion, ServerConnection};

/// What the TLS handshake of a connection settled, from
/// [`Connection::tls`](crate::Connection::tls).
pub struct TlsInfo<'a> {
    conn: &'a ServerConnection,
}

impl<'a> TlsInfo<'a> {
    pub(crate) fn new(conn: &'a ServerConnection) -> Self {
        TlsInfo { conn }
    }

    /// The server name the client asked for (SNI), if it sent one.
    pub fn server_name(&self) -> Option<&'a str> {
        self.conn.server_name()
    }

    /// The application protocol agreed by ALPN (`b"h2"`, say), if the
    /// acceptor offers any ([`TlsAcceptor::with_alpn`](super::TlsAcceptor::with_alpn)).
    pub fn alpn_protocol(&self) -> Option<&'a [u8]> {
        self.conn.alpn_protocol()
    }

    /// The protocol version: `TLSv1_3` or `TLSv1_2`.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// The cipher suite agreed.
    pub fn cipher_suite(&self) -> Option<CipherSuite> {
        self.conn.negotiated_cipher_suite().map(|s| s.suite())
    }

    /// The client's certificate chain (DER, its own certificate first),
    /// checked against the client CA, when the acceptor asks for one
    /// ([`TlsAcceptor::with_client_ca`](super::TlsAcceptor::with_client_ca)).
    pub fn peer_certificates(&self) -> Option<&'a [CertificateDer<'static>]> {
        self.conn.peer_certificates()
    }
}

impl fmt::Debug for TlsInfo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsInfo")
            .field("server_name", &self.server_name())
            .field(
                "alpn_protocol",
                &self.alpn_protocol().map(String::from_utf8_lossy),
            )
            .field("protocol_version", &self.protocol_version())
            .field("cipher_suite", &self.cipher_suite())
            .field(
                "peer_certificates",
                &self.peer_certificates().map(<[_]>::len),
            )
            .finish()
    }
}
