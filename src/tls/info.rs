//! `TlsInfo`: what a connection's TLS handshake settled.

use std::fmt;

use rustls::pki_types::CertificateDer;
use rustls::{CipherSuite, ProtocolVersion, ServerConnection};

/// What the TLS handshake of a connection settled, from
/// [`Connection::tls`](crate::Connection::tls).
pub struct TlsInfo<'a> {
    facts: &'a Facts,
}

/// What a handshake settled, kept once it is done: none of it changes
/// afterwards, and the session itself may be shared with the connection's
/// outbox behind a lock.
#[derive(Debug)]
pub(crate) struct Facts {
    server_name: Option<String>,
    alpn_protocol: Option<Vec<u8>>,
    protocol_version: Option<ProtocolVersion>,
    cipher_suite: Option<CipherSuite>,
    peer_certificates: Option<Vec<CertificateDer<'static>>>,
}

impl Facts {
    pub(crate) fn of(conn: &ServerConnection) -> Self {
        Facts {
            server_name: conn.server_name().map(String::from),
            alpn_protocol: conn.alpn_protocol().map(<[u8]>::to_vec),
            protocol_version: conn.protocol_version(),
            cipher_suite: conn.negotiated_cipher_suite().map(|s| s.suite()),
            peer_certificates: conn.peer_certificates().map(<[_]>::to_vec),
        }
    }
}

impl<'a> TlsInfo<'a> {
    pub(crate) fn new(facts: &'a Facts) -> Self {
        TlsInfo { facts }
    }

    /// The server name the client asked for (SNI), if it sent one.
    pub fn server_name(&self) -> Option<&'a str> {
        self.facts.server_name.as_deref()
    }

    /// The application protocol agreed by ALPN (`b"h2"`, say), if the
    /// acceptor offers any ([`TlsAcceptor::with_alpn`](super::TlsAcceptor::with_alpn)).
    pub fn alpn_protocol(&self) -> Option<&'a [u8]> {
        self.facts.alpn_protocol.as_deref()
    }

    /// The protocol version: `TLSv1_3` or `TLSv1_2`.
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.facts.protocol_version
    }

    /// The cipher suite agreed.
    pub fn cipher_suite(&self) -> Option<CipherSuite> {
        self.facts.cipher_suite
    }

    /// The client's certificate chain (DER, its own certificate first),
    /// checked against the client CA, when the acceptor asks for one
    /// ([`TlsAcceptor::with_client_ca`](super::TlsAcceptor::with_client_ca)).
    pub fn peer_certificates(&self) -> Option<&'a [CertificateDer<'static>]> {
        self.facts.peer_certificates.as_deref()
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
