//! TLS for workloads H and I (feature `tls`): the one certificate every
//! server presents, and the rustls client the load speaks with.
//!
//! The driver makes one self-signed ECDSA P-256 certificate (rcgen) at
//! start and writes it and its key as PEM files to a directory of its own
//! under the system's temp dir. Each TLS server process is told the two
//! paths in its environment ([`CERT_VAR`], [`KEY_VAR`]) and loads them
//! itself, so every server signs with the same key, and all of them and
//! the clients use rustls's `ring` provider: what differs between the rows
//! is the serving, not the cryptography.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use socketserver::tls::rustls::{self, pki_types::ServerName, ClientConfig, ClientConnection};

/// The environment variable that names the certificate's PEM file.
pub const CERT_VAR: &str = "PEERS_TLS_CERT";
/// The environment variable that names the private key's PEM file.
pub const KEY_VAR: &str = "PEERS_TLS_KEY";

/// The name the certificate is for, and the clients ask for (SNI).
const SERVER_NAME: &str = "localhost";

/// What the tables of H and I say about the setup.
pub const SETUP: &str = "TLS as rustls's defaults negotiate it (1.3), the `ring` provider on \
    every side; one self-signed ECDSA P-256 certificate made at start, presented by every \
    server; the clients keep no sessions, so every connection is a full handshake";

/// The bench's certificate: its PEM files, and a client that trusts it.
pub struct Certificate {
    dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    client: Arc<ClientConfig>,
}

static CERTIFICATE: OnceLock<Certificate> = OnceLock::new();

/// Makes the certificate and writes its files (once; later calls return
/// the same one). The load functions find it with [`certificate`].
pub fn make_certificate() -> io::Result<&'static Certificate> {
    if let Some(made) = CERTIFICATE.get() {
        return Ok(made);
    }
    let fail = |e: rcgen::Error| io::Error::other(format!("making the certificate: {e}"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(fail)?;
    let cert = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])
        .and_then(|params| params.self_signed(&key))
        .map_err(fail)?;
    let dir = std::env::temp_dir().join(format!("peers-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem())?;
    std::fs::write(&key_path, key.serialize_pem())?;

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(cert.der().clone())
        .map_err(|e| io::Error::other(format!("trusting the certificate: {e}")))?;
    // ring, as the crate\'s acceptor (see its `provider`, deprecated for PQ).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    // No tickets or session ids kept: each connection a full handshake.
    client.resumption = rustls::client::Resumption::disabled();
    Ok(CERTIFICATE.get_or_init(|| Certificate {
        dir,
        cert: cert_path,
        key: key_path,
        client: Arc::new(client),
    }))
}

/// The certificate [`make_certificate`] made, if it has.
pub fn certificate() -> Option<&'static Certificate> {
    CERTIFICATE.get()
}

/// Removes the certificate's files (the driver's last step).
pub fn remove_files() {
    if let Some(made) = CERTIFICATE.get() {
        let _ = std::fs::remove_dir_all(&made.dir);
    }
}

/// In a server process: the certificate and key files the driver named.
pub fn server_files() -> io::Result<(PathBuf, PathBuf)> {
    let var = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .ok_or_else(|| io::Error::other(format!("{name} is not set")))
    };
    Ok((var(CERT_VAR)?, var(KEY_VAR)?))
}

/// A TLS client connection over TCP.
pub type Client = rustls::StreamOwned<ClientConnection, TcpStream>;

/// Connects to `addr` (with the load's timeouts, which bound every read
/// and write of the handshake too) and completes a full handshake.
pub fn connect(addr: SocketAddr) -> io::Result<Client> {
    let config = certificate()
        .map(|c| Arc::clone(&c.client))
        .ok_or_else(|| io::Error::other("no certificate made"))?;
    let tcp = crate::load::connect(addr)?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(SERVER_NAME).expect("a valid DNS name");
    let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut client = rustls::StreamOwned::new(conn, tcp);
    while client.conn.is_handshaking() {
        client.conn.complete_io(&mut client.sock)?;
    }
    Ok(client)
}

/// Sends `message` and reads as many bytes back.
pub fn exchange(client: &mut Client, message: &[u8], reply: &mut [u8]) -> io::Result<()> {
    client.write_all(message)?;
    client.read_exact(reply)?;
    if reply != message {
        return Err(io::Error::other("the echo differs from the message"));
    }
    Ok(())
}

/// Sends `close_notify` and waits for the server to close in turn (its
/// `close_notify`, or the end of the stream without one), so that the
/// server closes first and the TIME_WAIT is on its side, as in A.
pub fn close(mut client: Client) -> io::Result<()> {
    client.conn.send_close_notify();
    client.flush()?;
    let mut rest = [0u8; 64];
    loop {
        match client.read(&mut rest) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                return Err(io::Error::other(format!(
                    "{n} bytes after the echo, not the close"
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
