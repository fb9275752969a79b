//! Unix-domain sockets, stream and datagram: serving, stale and live socket
//! files, removal on shutdown, prompt shutdown.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use socketserver::handlers::Echo;
use socketserver::{Addr, Error, Server, Transport};

/// A fresh path in a directory of this test's own.
fn socket_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "socketserver-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn a_unix_stream_server_serves_and_removes_its_file() {
    let path = socket_path("stream.sock");
    let server = spawn(Server::builder().bind_unix(&path).workers(2), whoami);
    assert_eq!(server.local_addr(), Addr::Unix(Some(path.clone())));
    assert_eq!(
        server.local_addr().to_string(),
        format!("unix:{}", path.display())
    );
    let mut client = UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, format!("tcp unix:unnamed unix:{}", path.display()));
    let t = Instant::now();
    let report = server.stop().unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    assert!(report.is_clean());
    assert!(!path.exists(), "socket file left behind");
}

#[test]
fn a_unix_datagram_server_answers_named_clients() {
    let path = socket_path("dgram.sock");
    let server = spawn(
        Server::builder()
            .bind_unix(&path)
            .transport(Transport::Datagram)
            .workers(2),
        Echo,
    );
    let client_path = socket_path("client.sock");
    let client = UnixDatagram::bind(&client_path).unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    client.send_to(b"over unix", &path).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = client.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"over unix");
    assert_eq!(from.as_pathname(), Some(path.as_path()));

    // An unnamed client cannot be answered: a counted handler error.
    let unnamed = UnixDatagram::unbound().unwrap();
    unnamed.send_to(b"hello?", &path).unwrap();
    wait_until("the unanswerable datagram to be counted", || {
        server.stats().handler_errors == 1
    });

    let t = Instant::now();
    server.stop().unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    assert!(!path.exists());
}

#[test]
fn a_stale_socket_file_is_replaced() {
    for transport in [Transport::Stream, Transport::Datagram] {
        let path = socket_path("stale.sock");
        match transport {
            Transport::Stream => drop(UnixListener::bind(&path).unwrap()),
            Transport::Datagram => drop(UnixDatagram::bind(&path).unwrap()),
        }
        assert!(path.exists(), "the dead server's file stays");
        let server = spawn(
            Server::builder()
                .bind_unix(&path)
                .transport(transport)
                .workers(1),
            Echo,
        );
        match transport {
            Transport::Stream => {
                let mut c = UnixStream::connect(&path).unwrap();
                c.set_read_timeout(Some(TIMEOUT)).unwrap();
                c.write_all(b"x").unwrap();
                c.shutdown(std::net::Shutdown::Write).unwrap();
                let mut reply = Vec::new();
                c.read_to_end(&mut reply).unwrap();
                assert_eq!(reply, b"x");
            }
            Transport::Datagram => assert!(UnixDatagram::unbound().unwrap().connect(&path).is_ok()),
        }
        server.stop().unwrap();
    }
}

#[test]
fn a_live_socket_file_is_an_error() {
    for transport in [Transport::Stream, Transport::Datagram] {
        let path = socket_path("live.sock");
        let first = spawn(
            Server::builder()
                .bind_unix(&path)
                .transport(transport)
                .workers(1),
            Echo,
        );
        let err = Server::builder()
            .bind_unix(&path)
            .transport(transport)
            .build(Echo)
            .unwrap_err();
        assert!(matches!(&err, Error::Bind { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert_eq!(
            std::io::Error::from(err).kind(),
            std::io::ErrorKind::AddrInUse
        );
        first.stop().unwrap();
    }
}

#[test]
fn a_file_that_is_not_a_socket_is_left_alone() {
    let path = socket_path("precious.txt");
    std::fs::write(&path, "keep me").unwrap();
    let err = Server::builder().bind_unix(&path).build(Echo).unwrap_err();
    assert!(matches!(&err, Error::Bind { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
}
