//! A TLS handshake whose server flight is larger than the socket can
//! hold, to a client that never reads it: the server's writes of that
//! flight are bounded by `tls_handshake_timeout`, not by the (much longer)
//! `write_timeout`, in both modes.
#![cfg(feature = "tls")]

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use socketserver::handlers::Echo;
use socketserver::tls::{rustls, TlsAcceptor};
use socketserver::Server;

use common::tls::{client_config, Pki};
use common::{spawn, wait_until, TIMEOUT};

/// The socket buffers on both sides, in bytes (the kernel doubles them).
const BUFFER: usize = 4096;

/// A listener whose accepted sockets keep a small send buffer: set on the
/// listener, it is inherited, and fixed, so that the kernel does not grow
/// it (on loopback it would grow to megabytes).
fn small_buffered_listener() -> TcpListener {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_send_buffer_size(BUFFER).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(16).unwrap();
    socket.into()
}

/// The server's certificate followed by `copies` of its CA's: a chain
/// that rustls sends whole, some 100 KB with 200 copies. The server does
/// not check its own chain, and the client here never reads it.
fn long_chain(pki: &Pki, copies: usize) -> TlsAcceptor {
    let mut chain = std::fs::read_to_string(&pki.cert).unwrap();
    let ca = std::fs::read_to_string(&pki.ca).unwrap();
    chain.push_str(&ca.repeat(copies));
    let path = pki.dir.join("long-chain.pem");
    std::fs::write(&path, chain).unwrap();
    TlsAcceptor::from_pem_files(&path, &pki.key).unwrap()
}

/// A client's first flight (its ClientHello), as rustls writes it.
fn client_hello(pki: &Pki) -> Vec<u8> {
    let config = Arc::new(client_config(&pki.ca, &[], None));
    let name = "localhost".try_into().unwrap();
    let mut client = rustls::ClientConnection::new(config, name).unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    hello
}

both_modes!(a_flight_the_client_never_reads_ends_at_the_handshake_deadline);
/// The handshake's limit is 300 ms, the write timeout 60 s: the server
/// gives up on the flight within a few times the limit, and counts a
/// failed handshake.
fn a_flight_the_client_never_reads_ends_at_the_handshake_deadline(park: bool) {
    let pki = Pki::new();
    let limit = Duration::from_millis(300);
    let server = spawn(
        Server::builder()
            .adopt(small_buffered_listener())
            .park_idle(park)
            .workers(2)
            .write_timeout(Some(Duration::from_secs(60)))
            .tls(long_chain(&pki, 200))
            .tls_handshake_timeout(limit),
        Echo,
    );
    let addr = common::inet(&server.local_addr());
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(BUFFER).unwrap();
    socket.connect_timeout(&addr.into(), TIMEOUT).unwrap();
    let mut stalled: TcpStream = socket.into();
    stalled.set_write_timeout(Some(TIMEOUT)).unwrap();
    let start = Instant::now();
    stalled.write_all(&client_hello(&pki)).unwrap();

    wait_until("the stalled handshake fails", || {
        server.stats().tls_handshake_failures >= 1
    });
    let after = start.elapsed();
    assert!(
        after >= limit - Duration::from_millis(20) && after < limit * 5,
        "gave up after {after:?}, the limit being {limit:?}"
    );
    assert_eq!(server.stats().tls_handshake_failures, 1);
    drop(stalled);
    server.stop().unwrap();
}
