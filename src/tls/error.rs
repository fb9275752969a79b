//! What can be wrong with the files or settings of a TLS acceptor.

use std::io;
use std::path::PathBuf;

/// Why a [`TlsAcceptor`](super::TlsAcceptor) could not be made or
/// reloaded; each names the file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read (missing, not permitted...).
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error from the operating system.
        #[source]
        source: io::Error,
    },

    /// A PEM file is not well formed.
    #[error("{}: not a well-formed PEM file: {reason}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What the parser found wrong.
        reason: String,
    },

    /// A certificate file holds no certificate.
    #[error("{}: no certificate in it (a PEM block `-----BEGIN CERTIFICATE-----`)", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },

    /// A key file holds no private key.
    #[error(
        "{}: no private key in it (a PEM block `-----BEGIN PRIVATE KEY-----`, \
         `RSA PRIVATE KEY` or `EC PRIVATE KEY`)",
        path.display()
    )]
    NoPrivateKey {
        /// The file.
        path: PathBuf,
    },

    /// The private key is of a kind the provider cannot use.
    #[error("{}: unusable private key: {reason}", path.display())]
    BadPrivateKey {
        /// The file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },

    /// The private key is not the one of the certificate.
    #[error(
        "the private key in {} does not match the certificate in {}",
        key.display(),
        cert.display()
    )]
    KeyMismatch {
        /// The certificate chain's file.
        cert: PathBuf,
        /// The key's file.
        key: PathBuf,
    },

    /// The client CA file's certificates cannot check client certificates.
    #[error("{}: cannot check client certificates against it: {reason}", path.display())]
    ClientCa {
        /// The CA file.
        path: PathBuf,
        /// What rustls said.
        reason: String,
    },

    /// Any other refusal of rustls's.
    #[error("TLS configuration refused: {0}")]
    Config(#[source] rustls::Error),
}

impl TlsError {
    /// The operating system's error, for a file that could not be read.
    pub(crate) fn io_error(&self) -> Option<&io::Error> {
        match self {
            TlsError::Read { source, .. } => Some(source),
            _ => None,
        }
    }
}
