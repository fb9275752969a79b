//! Unix-domain sockets, stream and datagram: serving, stale and live socket
//! files, removal on shutdown, prompt shutdown; and servers sharing a path:
//! a graceful restart, a live server with a full backlog, servers starting
//! together. Stream servers in both serving modes (`both_modes!`: a thread
//! per connection, and `park_idle`); `a_unix_datagram_server_answers_named_clients`
//! serves datagrams only (`park_idle` is for streams).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use socket2::{Domain, SockAddr, Socket, Type};
use socketserver::handlers::Echo;
use socketserver::{Addr, Connection, Error, Server, Transport};

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

/// The lock file that serialises servers on `path`.
fn lock_path(path: &Path) -> PathBuf {
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    lock.into()
}

/// A stream client with read and write timeouts.
fn unix_client(path: &Path) -> UnixStream {
    let client = UnixStream::connect(path).expect("connect");
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    client.set_write_timeout(Some(TIMEOUT)).unwrap();
    client
}

/// Connects and reads until the server closes.
fn unix_reply(path: &Path) -> Vec<u8> {
    let mut reply = Vec::new();
    unix_client(path).read_to_end(&mut reply).unwrap();
    reply
}

both_modes!(a_unix_stream_server_serves_and_removes_its_file);
fn a_unix_stream_server_serves_and_removes_its_file(park: bool) {
    let path = socket_path("stream.sock");
    let server = spawn(
        Server::builder()
            .bind_unix(&path)
            .park_idle(park)
            .workers(2),
        whoami,
    );
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

    let handle = server.shutdown_handle();
    let t = Instant::now();
    server.stop().unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    assert!(!path.exists());
    // The shutdown's wake-up (an empty read with no sender) is no datagram.
    let stats = handle.stats();
    assert_eq!(
        (stats.datagrams_received, stats.handler_errors),
        (2, 1),
        "{stats:?}"
    );
}

both_modes!(a_stale_socket_file_is_replaced);
fn a_stale_socket_file_is_replaced(park: bool) {
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
                .park_idle(park && transport == Transport::Stream)
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

both_modes!(a_live_socket_file_is_an_error);
fn a_live_socket_file_is_an_error(park: bool) {
    for transport in [Transport::Stream, Transport::Datagram] {
        let path = socket_path("live.sock");
        let park = park && transport == Transport::Stream;
        let first = spawn(
            Server::builder()
                .bind_unix(&path)
                .transport(transport)
                .park_idle(park)
                .workers(1),
            Echo,
        );
        let err = Server::builder()
            .bind_unix(&path)
            .transport(transport)
            .park_idle(park)
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

both_modes!(a_file_that_is_not_a_socket_is_left_alone);
fn a_file_that_is_not_a_socket_is_left_alone(park: bool) {
    let path = socket_path("precious.txt");
    std::fs::write(&path, "keep me").unwrap();
    let err = Server::builder()
        .bind_unix(&path)
        .park_idle(park)
        .build(Echo)
        .unwrap_err();
    assert!(matches!(&err, Error::Bind { .. }), "{err:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    assert!(!lock_path(&path).exists(), "no lock file beside it");
}

both_modes!(a_draining_server_leaves_the_file_of_the_server_that_took_its_path);
/// A graceful restart: the new server binds the path while the old one
/// drains (its listener already refuses), and the old one, finishing,
/// leaves the new one's socket file in place.
fn a_draining_server_leaves_the_file_of_the_server_that_took_its_path(park: bool) {
    let path = socket_path("restart.sock");
    let (gate, started) = Gate::new();
    let old = spawn(
        Server::builder()
            .bind_unix(&path)
            .park_idle(park)
            .workers(1),
        gate.handler(b"old"),
    );
    let mut held = unix_client(&path);
    expect_started(&started, 1);
    old.shutdown_handle().shutdown();

    let new = spawn(
        Server::builder()
            .bind_unix(&path)
            .park_idle(park)
            .workers(1),
        |conn: &mut Connection| conn.write_all(b"new"),
    );
    assert_eq!(unix_reply(&path), b"new");

    gate.open();
    let mut reply = Vec::new();
    held.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"old", "the old server drained its connection");
    assert!(old.join().unwrap().is_clean());

    assert!(path.exists(), "the old server removed the new one's file");
    assert_eq!(unix_reply(&path), b"new");
    new.stop().unwrap();
    assert!(!path.exists());
    assert!(!lock_path(&path).exists(), "the lock file goes with it");
}

both_modes!(a_live_server_with_a_full_backlog_is_in_use_at_once);
/// A live server whose backlog is full is in use, found at once: the
/// check does not wait in `connect` for room in that backlog.
fn a_live_server_with_a_full_backlog_is_in_use_at_once(park: bool) {
    let path = socket_path("full.sock");
    let (gate, started) = Gate::new();
    let builder = Server::builder()
        .bind_unix(&path)
        .park_idle(park)
        .workers(1)
        .backlog(1);
    // An event loop would accept every client while its handler waits at
    // the gate: held to one connection, it leaves the others in the backlog.
    let builder = if park {
        builder.max_connections(1)
    } else {
        builder
    };
    let server = spawn(builder, gate.handler(b"x"));
    let busy = unix_client(&path);
    expect_started(&started, 1);
    // The one worker (or parked, the one connection allowed) is held at the
    // gate; clients now wait in the backlog until it is full.
    let mut waiting = Vec::new();
    loop {
        let client = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        client.set_read_timeout(Some(TIMEOUT)).unwrap();
        client.set_write_timeout(Some(TIMEOUT)).unwrap();
        client.set_nonblocking(true).unwrap();
        match client.connect(&SockAddr::unix(&path).unwrap()) {
            Ok(()) => waiting.push(client),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("connecting to fill the backlog: {e}"),
        }
        assert!(waiting.len() < 64, "the backlog never filled");
    }

    let (tx, rx) = mpsc::channel();
    let second = {
        let path = path.clone();
        thread::spawn(move || {
            let t = Instant::now();
            let built = Server::builder()
                .bind_unix(&path)
                .park_idle(park)
                .build(Echo)
                .map(drop);
            let _ = tx.send((built, t.elapsed()));
        })
    };
    let result = rx.recv_timeout(Duration::from_millis(500));
    // Lets a check that does wait for room finish, whatever happened.
    gate.open();
    let (built, took) = result.expect("build() still waiting after 500 ms");
    let err = built.unwrap_err();
    assert!(matches!(&err, Error::Bind { .. }), "{err:?}");
    assert_eq!(
        std::io::Error::from(err).kind(),
        std::io::ErrorKind::AddrInUse
    );
    assert!(took < Duration::from_millis(500), "{took:?}");
    second.join().unwrap();

    drop((busy, waiting));
    server.stop().unwrap();
    assert!(!path.exists());
}

both_modes!(a_crashed_servers_socket_and_lock_files_are_reused_then_removed);
/// A stale socket file next to the lock file of the server that crashed
/// is replaced; both go when the new server stops.
fn a_crashed_servers_socket_and_lock_files_are_reused_then_removed(park: bool) {
    let path = socket_path("crashed.sock");
    drop(UnixListener::bind(&path).unwrap());
    std::fs::File::create(lock_path(&path)).unwrap();
    let server = spawn(
        Server::builder()
            .bind_unix(&path)
            .park_idle(park)
            .workers(1),
        Echo,
    );
    assert!(lock_path(&path).exists(), "kept while the socket file is");
    let mut c = unix_client(&path);
    c.write_all(b"y").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    c.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"y");
    server.stop().unwrap();
    assert!(!path.exists());
    assert!(!lock_path(&path).exists());
}

both_modes!(servers_starting_together_on_a_stale_path_let_exactly_one_bind);
/// Servers starting together on a stale path: exactly one binds it, the
/// others find it in use, and the file left is the winner's.
fn servers_starting_together_on_a_stale_path_let_exactly_one_bind(park: bool) {
    const SERVERS: usize = 4;
    for _ in 0..10 {
        let path = socket_path("race.sock");
        drop(UnixListener::bind(&path).unwrap());
        let barrier = Arc::new(Barrier::new(SERVERS));
        let starting: Vec<_> = (0..SERVERS)
            .map(|i| {
                let (path, barrier) = (path.clone(), Arc::clone(&barrier));
                thread::spawn(move || {
                    let builder = Server::builder()
                        .bind_unix(&path)
                        .park_idle(park)
                        .workers(1);
                    barrier.wait();
                    // Probes of the losers reach the winner as empty
                    // connections: a failed write there is no matter.
                    let built = builder.build(move |conn: &mut Connection| {
                        let _ = conn.write_all(i.to_string().as_bytes());
                        Ok(())
                    });
                    (i, built.map(|server| server.spawn().unwrap()))
                })
            })
            .collect();
        let mut winners = Vec::new();
        for started in starting {
            match started.join().unwrap() {
                (i, Ok(server)) => winners.push((i, server)),
                (_, Err(err)) => assert_eq!(
                    std::io::Error::from(err).kind(),
                    std::io::ErrorKind::AddrInUse
                ),
            }
        }
        assert_eq!(winners.len(), 1, "servers bound: {}", winners.len());
        let (i, winner) = winners.pop().unwrap();
        assert_eq!(unix_reply(&path), i.to_string().as_bytes());
        winner.stop().unwrap();
        assert!(!path.exists());
    }
}

both_modes!(a_proxy_at_a_unix_socket_is_trusted_only_when_asked);
/// A proxy on this machine may reach a server at its Unix socket (HAProxy's
/// `unix@` with `send-proxy-v2`): its clients have no IP address, so the
/// server does not build until told to trust them (`trust_unix`), and then
/// takes the client's address from the header.
fn a_proxy_at_a_unix_socket_is_trusted_only_when_asked(park: bool) {
    use socketserver::ProxyProtocol;
    let path = socket_path("proxied.sock");
    let loopback_only = Server::builder()
        .bind_unix(&path)
        .park_idle(park)
        .proxy_protocol(ProxyProtocol::new().trust_loopback())
        .build(Echo);
    let Err(err) = loopback_only else {
        panic!("a proxied Unix server that trusts no one was built");
    };
    assert!(
        invalid_setting(&err, "proxy_protocol").contains("trust_unix"),
        "{err}"
    );
    assert!(!path.exists(), "its socket file was left behind");

    let server = spawn(
        Server::builder()
            .bind_unix(&path)
            .park_idle(park)
            .proxy_protocol(ProxyProtocol::new().trust_unix()),
        |conn: &mut Connection| conn.write_all(conn.peer_addr().to_string().as_bytes()),
    );
    let mut client = unix_client(&path);
    client
        .write_all(b"PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\n")
        .unwrap();
    let mut reply = String::new();
    client.read_to_string(&mut reply).unwrap();
    assert_eq!(reply, "192.0.2.7:51234");
    assert_eq!(server.stats().proxy_refused, 0);
    server.stop().unwrap();
}
