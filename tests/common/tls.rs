//! The test PKI's certificates and keys (`tests/pki/`, made once by its
//! `make.sh`), written as PEM files into a directory of each test's own,
//! and a rustls client with timeouts, for the TLS tests.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use socketserver::tls::rustls::{self, pki_types::ServerName, ClientConfig, ClientConnection};
use socketserver::tls::TlsAcceptor;
use std::process::Command;

use socketserver::{Addr, Server, ServerBuilder, ServerThread};

use super::inet;
use super::outside::Client;

use super::TIMEOUT;

/// A test PKI in a directory of its own: a CA, two server certificates it
/// signed (for `localhost`, 127.0.0.1 and ::1), and a client CA with one
/// client it signed. Each certificate and key is a PEM file. The files are
/// `tests/pki/`'s, the same for every test (no test needs keys of its
/// own, and no certificate library is built for the tests).
pub struct Pki {
    pub dir: PathBuf,
    /// The CA that signed both server certificates.
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A second server certificate and key (for reloads), subject
    /// `second`, from the same CA.
    pub cert2: PathBuf,
    pub key2: PathBuf,
    /// The CA that client certificates must chain to.
    pub client_ca: PathBuf,
    /// A client certificate (subject `client one`) signed by `client_ca`,
    /// and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client certificate from a CA the server does not trust.
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
}

impl Pki {
    /// Writes the PKI into a new directory under the system's temp dir.
    pub fn new() -> Pki {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "socketserver-tls-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        macro_rules! pem {
            ($name:literal) => {{
                let path = dir.join($name);
                std::fs::write(&path, include_str!(concat!("../pki/", $name))).unwrap();
                path
            }};
        }
        Pki {
            ca: pem!("ca.pem"),
            cert: pem!("cert.pem"),
            key: pem!("key.pem"),
            cert2: pem!("cert2.pem"),
            key2: pem!("key2.pem"),
            client_ca: pem!("client-ca.pem"),
            client_cert: pem!("client.pem"),
            client_key: pem!("client-key.pem"),
            stranger_cert: pem!("stranger.pem"),
            stranger_key: pem!("stranger-key.pem"),
            dir,
        }
    }
}

impl Pki {
    /// An acceptor serving the first server certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from_pem_files(&self.cert, &self.key).unwrap()
    }
}

/// A TLS stream server on IPv4 loopback, port 0, two workers, in the
/// given mode.
pub fn builder(park: bool, acceptor: TlsAcceptor) -> ServerBuilder {
    Server::builder()
        .bind("127.0.0.1:0")
        .park_idle(park)
        .workers(2)
        .tls(acceptor)
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client that trusts `ca`, offering `alpn`, and presenting the client
/// certificate `identity` (certificate and key files) if given.
pub fn client_config(ca: &Path, alpn: &[&[u8]], identity: Option<(&Path, &Path)>) -> ClientConfig {
    client_config_of(ca, alpn, identity, rustls::DEFAULT_VERSIONS)
}

/// `client_config` speaking only TLS 1.2.
pub fn client_config_tls12(ca: &Path) -> ClientConfig {
    client_config_of(ca, &[], None, &[&rustls::version::TLS12])
}

fn client_config_of(
    ca: &Path,
    alpn: &[&[u8]],
    identity: Option<(&Path, &Path)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    // ring, as the crate\'s acceptor (see its `provider`, deprecated for PQ).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let key = PrivateKeyDer::from_pem_file(key).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    // Every connection a full handshake, so each sees the certificate
    // served now (a resumed session keeps the one it began with).
    config.resumption = rustls::client::Resumption::disabled();
    config
}

/// A TLS client connection over TCP, with the shared timeouts.
pub type TlsClient = rustls::StreamOwned<ClientConnection, TcpStream>;

/// Connects to `addr` and completes the handshake as `name` (SNI).
pub fn connect(addr: &Addr, name: &str, config: &ClientConfig) -> std::io::Result<TlsClient> {
    let tcp = super::connect(addr);
    connect_over(tcp, name, config)
}

/// Completes a handshake as `name` over an open TCP stream (after a PROXY
/// header, say).
pub fn connect_over(
    tcp: TcpStream,
    name: &str,
    config: &ClientConfig,
) -> std::io::Result<TlsClient> {
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_write_timeout(Some(TIMEOUT))?;
    let name = ServerName::try_from(name.to_string()).unwrap();
    let conn = ClientConnection::new(Arc::new(config.clone()), name)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut client = rustls::StreamOwned::new(conn, tcp);
    while client.conn.is_handshaking() {
        client.conn.complete_io(&mut client.sock)?;
    }
    Ok(client)
}

/// Sends `request` and reads `n` bytes of reply.
pub fn exchange(client: &mut TlsClient, request: &[u8], n: usize) -> Vec<u8> {
    client.write_all(request).unwrap();
    client.flush().unwrap();
    let mut reply = vec![0; n];
    client.read_exact(&mut reply).unwrap();
    reply
}

/// The subject common name's bytes appear in the server's certificate.
pub fn served_certificate_names(client: &TlsClient, name: &str) -> bool {
    let certs = client.conn.peer_certificates().unwrap();
    certs[0]
        .as_ref()
        .windows(name.len())
        .any(|w| w == name.as_bytes())
}

// ---------------------------------------------------------------------
// openssl s_client

/// `openssl s_client` to `server`, trusting the test CA, asking for
/// `localhost` (SNI) and checking the certificate is for it; any failed
/// verification ends the handshake. Not `-quiet`: the session summary is
/// printed (`Verify return code`, the protocol, ALPN).
pub fn s_client(openssl: &Path, server: &ServerThread, pki: &Pki) -> Command {
    let mut command = s_client_without_name(openssl, server, pki);
    command.args(["-servername", "localhost", "-verify_hostname", "localhost"]);
    command
}

/// `openssl s_client` trusting the test CA, stopping at any failed
/// verification, with no name given yet.
pub fn s_client_without_name(openssl: &Path, server: &ServerThread, pki: &Pki) -> Command {
    let mut command = Command::new(openssl);
    command
        .arg("s_client")
        .arg("-connect")
        .arg(inet(&server.local_addr()).to_string())
        .arg("-CAfile")
        .arg(&pki.ca)
        .arg("-verify_return_error");
    command
}

/// `openssl s_client -tls1_2` echoes a line through `server`, then asks
/// to renegotiate (its `R` command): asserts that the server declined
/// with a `no_renegotiation` warning (s_client then gives up).
pub fn renegotiation_declined(openssl: &Path, server: &ServerThread, pki: &Pki) {
    let mut client = Client::start(s_client(openssl, server, pki).args(["-tls1_2", "-msg"]));
    client.send(b"before\n");
    client.expect_line("before");
    client.send(b"R\n");
    let out = client.wait();
    assert!(out.stderr.contains("RENEGOTIATING"), "{out}");
    let declined = "<<< TLS 1.2, Alert [length 0002], warning no_renegotiation";
    assert!(out.stdout.contains(declined), "{out}");
}
