//! `TlsAcceptor`: the certificate and settings new TLS connections are
//! accepted with, swappable while the server runs.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{RootCertStore, ServerConfig};

use super::{pem, TlsError};
use crate::Error;

/// What a TLS server accepts connections with: its certificate chain and
/// private key, and optionally the CA that client certificates must chain
/// to. Give it to [`ServerBuilder::tls`](crate::ServerBuilder::tls).
///
/// Clones share one configuration: keep a clone to
/// [`reload`](Self::reload_from_pem_files) the certificate while the
/// server runs (on SIGHUP, say). A reload applies to handshakes that start
/// after it; connections already open keep the certificate they were
/// accepted with. The `with_*` methods, by contrast, make a new acceptor
/// and leave the one they were called on (and its clones) as it was.
///
/// The protocol versions are rustls's safe defaults (TLS 1.2 and 1.3),
/// with the `ring` provider's cipher suites.
#[derive(Clone)]
pub struct TlsAcceptor {
    shared: Arc<Shared>,
}

struct Shared {
    config: RwLock<Arc<ServerConfig>>,
}

impl TlsAcceptor {
    /// Accepts with the certificate chain in `cert_chain` (PEM, the
    /// server's certificate first, then any intermediates) and the private
    /// key in `private_key` (PEM: PKCS#8, PKCS#1 or SEC1).
    ///
    /// Errors ([`Error::Tls`]) name the file and what is wrong with it: it
    /// cannot be read, holds no certificate or no key, or the key is not
    /// the certificate's.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        private_key: impl AsRef<Path>,
    ) -> Result<TlsAcceptor, Error> {
        let config = config_from_files(cert_chain.as_ref(), private_key.as_ref())?;
        Ok(TlsAcceptor::new(Arc::new(config)))
    }

    /// Accepts with a rustls configuration of your own (its certificate
    /// resolver, client verifier, ALPN protocols and every other setting).
    pub fn new(config: Arc<ServerConfig>) -> TlsAcceptor {
        TlsAcceptor {
            shared: Arc::new(Shared {
                config: RwLock::new(config),
            }),
        }
    }

    /// Requires every client to present a certificate that chains to one
    /// of the CA certificates in `ca_file` (PEM); a client without one, or
    /// with another, fails the handshake. The handler reads the client's
    /// chain from [`TlsInfo::peer_certificates`](super::TlsInfo::peer_certificates).
    /// Default: no client certificates asked for.
    ///
    /// Returns a new acceptor with the same certificate, ALPN protocols,
    /// session storage, tickets, key log and limits; the protocol versions
    /// and provider are this crate's defaults (rustls cannot carry them
    /// over): with a configuration of your own, put the client verifier in
    /// it instead.
    pub fn with_client_ca(self, ca_file: impl AsRef<Path>) -> Result<TlsAcceptor, Error> {
        let verifier = client_verifier(ca_file.as_ref())?;
        let current = self.config();
        let mut config = assemble(Some(verifier), Arc::clone(&current.cert_resolver))?;
        config.alpn_protocols = current.alpn_protocols.clone();
        config.ignore_client_order = current.ignore_client_order;
        config.max_fragment_size = current.max_fragment_size;
        config.session_storage = Arc::clone(&current.session_storage);
        config.ticketer = Arc::clone(&current.ticketer);
        config.key_log = Arc::clone(&current.key_log);
        config.send_tls13_tickets = current.send_tls13_tickets;
        config.max_early_data_size = current.max_early_data_size;
        config.send_half_rtt_data = current.send_half_rtt_data;
        Ok(TlsAcceptor::new(Arc::new(config)))
    }

    /// Offers these application protocols in ALPN, in order of preference
    /// (`b"h2"`, `b"http/1.1"`...); a client that offers none of them fails
    /// the handshake. Default: none (ALPN not used). Returns a new acceptor
    /// with every other setting the same.
    pub fn with_alpn<P: Into<Vec<u8>>>(
        self,
        protocols: impl IntoIterator<Item = P>,
    ) -> TlsAcceptor {
        let mut config = (*self.config()).clone();
        config.alpn_protocols = protocols.into_iter().map(Into::into).collect();
        TlsAcceptor::new(Arc::new(config))
    }

    /// Reads the certificate chain and key again (after a renewal, say)
    /// and accepts new handshakes with them; open connections go on. Only
    /// the certificate and key change: every other setting (client
    /// certificates, ALPN, versions, a configuration of your own) stays.
    ///
    /// On error nothing changes: the server goes on with what it had.
    pub fn reload_from_pem_files(
        &self,
        cert_chain: impl AsRef<Path>,
        private_key: impl AsRef<Path>,
    ) -> Result<(), Error> {
        let (cert, key) = (cert_chain.as_ref(), private_key.as_ref());
        let certified = certified_key(cert, key)?;
        let mut config = (*self.config()).clone();
        config.cert_resolver = Arc::new(SingleCertAndKey::from(certified));
        self.reload(Arc::new(config));
        Ok(())
    }

    /// Accepts new connections with `config` from now on; open
    /// connections go on with the one they were accepted with.
    pub fn reload(&self, config: Arc<ServerConfig>) {
        *self
            .shared
            .config
            .write()
            .unwrap_or_else(|e| e.into_inner()) = config;
    }

    /// The configuration new connections are accepted with.
    pub fn config(&self) -> Arc<ServerConfig> {
        let config = self.shared.config.read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&config)
    }
}

impl fmt::Debug for TlsAcceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = self.config();
        f.debug_struct("TlsAcceptor")
            .field("alpn_protocols", &config.alpn_protocols)
            .finish_non_exhaustive()
    }
}

/// The `ring` provider, made once.
///
/// rustls 0.23.48 deprecates it for having no post-quantum key exchange.
/// It stays on purpose: `ring` builds with a C compiler alone (aws-lc-rs
/// wants cmake, or Go on some targets), and what it offers meets Mozilla's
/// "intermediate" configuration. A server that wants X25519MLKEM768 builds
/// its own `ServerConfig` on aws-lc-rs and hands it to `TlsAcceptor::new`.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    #[allow(deprecated)]
    let make = || Arc::new(rustls::crypto::ring::default_provider());
    Arc::clone(PROVIDER.get_or_init(make))
}

fn config_from_files(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let certified = certified_key(cert, key)?;
    assemble(None, Arc::new(SingleCertAndKey::from(certified)))
}

/// The chain and key from their files, the key checked to be the
/// certificate's.
fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = pem::certificates(cert)?;
    let private_key = pem::private_key(key)?;
    CertifiedKey::from_der(chain, private_key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
            TlsError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            }
        }
        e => TlsError::BadPrivateKey {
            path: key.to_path_buf(),
            reason: e.to_string(),
        },
    })
}

/// A configuration of this crate's defaults around a certificate resolver
/// and, optionally, a client certificate verifier.
fn assemble(
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    resolver: Arc<dyn ResolvesServerCert>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    Ok(builder.with_cert_resolver(resolver))
}

fn client_verifier(ca_file: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let refused = |reason: String| TlsError::ClientCa {
        path: ca_file.to_path_buf(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in pem::certificates(ca_file)? {
        roots.add(cert).map_err(|e| refused(e.to_string()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| refused(e.to_string()))
}
