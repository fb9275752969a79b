//! TLS (feature `tls`): the same handler behind [rustls], with the
//! handshake done before the handler runs, under its own deadline.
//!
//! ```no_run
//! use socketserver::{handlers::Echo, tls::TlsAcceptor, Server};
//!
//! fn main() -> Result<(), socketserver::Error> {
//!     let acceptor = TlsAcceptor::from_pem_files("cert.pem", "key.pem")?;
//!     Server::builder()
//!         .bind("[::]:7443")
//!         .tls(acceptor.clone())
//!         .build(Echo)?
//!         .run()?;
//!     Ok(())
//! }
//! ```
//!
//! * The handler's [`Connection`](crate::Connection) reads and writes
//!   plaintext; [`Connection::tls`](crate::Connection::tls) tells what the
//!   handshake settled (server name, ALPN protocol, version, the client's
//!   certificates).
//! * The handshake runs on the connection's worker (or, under
//!   [`park_idle`](crate::ServerBuilder::park_idle), parks like any other
//!   I/O), after the PROXY header if one is expected, within
//!   [`tls_handshake_timeout`](crate::ServerBuilder::tls_handshake_timeout).
//!   A client that fails it (plaintext, garbage, a certificate refused, too
//!   slow) costs its own connection: it is counted in
//!   [`Stats::tls_handshake_failures`](crate::Stats::tls_handshake_failures)
//!   and reported to the `on_error` hook as
//!   [`Failure::TlsHandshake`](crate::Failure::TlsHandshake). A client
//!   that closes or resets before sending its first TLS byte (a TCP health
//!   check, a port scan) is neither counted nor reported.
//! * A client that breaks its session after the handshake (a fatal alert,
//!   as from a client that gives up on a TLS 1.2 renegotiation, which the
//!   server declines; a record that does not decrypt) fails the handler's
//!   read with an `InvalidData` error carrying the [`rustls::Error`]. A
//!   handler that returns it (or an error wrapping it) is no handler in
//!   error: the connection is counted in
//!   [`Stats::tls_session_failures`](crate::Stats::tls_session_failures)
//!   and reported as
//!   [`Failure::TlsSession`](crate::Failure::TlsSession), logged at
//!   `info` as failed handshakes are.
//! * [`TlsAcceptor::reload_from_pem_files`] swaps the certificate for new
//!   connections while those already open go on with theirs.
//! * When the handler returns `Ok`, the server sends `close_notify` (if the
//!   socket takes it at once) before closing; after an error or a panic it
//!   does not, so the client sees the reply was cut.
//!
//! Stream servers only (TCP and Unix): DTLS is not supported, and `tls` on
//! a datagram server is an [`Error::InvalidSetting`](crate::Error::InvalidSetting).
//! The cryptography is rustls's `ring` provider.

mod acceptor;
mod bounds;
mod error;
mod info;
mod pem;
mod session;

pub use acceptor::TlsAcceptor;
pub use error::TlsError;
pub(crate) use info::Facts;
pub use info::TlsInfo;
/// The rustls crate this one is built on, for [`TlsAcceptor::new`] and
/// the types [`TlsInfo`] returns.
pub use rustls;
pub(crate) use session::{sent_nothing, PlainIo, Session};
