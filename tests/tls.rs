//! TLS with this crate's own clients (rustls): the handler reads and
//! writes plaintext; what the handshake settled; client certificates;
//! reloads; the handshake deadline; plaintext and garbage; the PROXY
//! header before the handshake; Unix sockets; the setting's errors. Each
//! stream test in both serving modes. The same with outside clients
//! (openssl, Python, socat, HAProxy) is in `tls_clients.rs`.
#![cfg(feature = "tls")]

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use socketserver::handlers::Echo;
use socketserver::tls::{TlsAcceptor, TlsError};
use socketserver::{Connection, Error, Failure, Server, ServerBuilder, Transport};

use common::tls::{client_config, connect, exchange, served_certificate_names, Pki};
use common::{spawn, wait_until, TIMEOUT};

fn builder(park: bool, acceptor: TlsAcceptor) -> ServerBuilder {
    Server::builder()
        .bind("127.0.0.1:0")
        .park_idle(park)
        .workers(2)
        .tls(acceptor)
}

both_modes!(an_echo_server_speaks_tls);
/// The handler is plain `Echo`; the client speaks TLS and gets its bytes
/// back, then `close_notify` (a clean end of file, not a cut).
fn an_echo_server_speaks_tls(park: bool) {
    let pki = Pki::new();
    let acceptor = TlsAcceptor::from_pem_files(&pki.cert, &pki.key).unwrap();
    let server = spawn(builder(park, acceptor), Echo);
    let config = client_config(&pki.ca, &[], None);
    let mut client = connect(&server.local_addr(), "localhost", &config).unwrap();
    assert_eq!(
        exchange(&mut client, b"hello over tls", 14),
        b"hello over tls"
    );
    client.conn.send_close_notify();
    client.flush().unwrap();
    let mut rest = Vec::new();
    // rustls's reader says Ok(0) only for a clean close_notify.
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
    let stats = server.stop().unwrap();
    let _ = stats;
}
