//! Serving over IPv4 and IPv6, stream and datagram, with user handlers,
//! closures and the pool's bounds; streams in both serving modes
//! (`both_modes!`: a thread per connection, and `park_idle`).
//!
//! Thread mode only:
//! * `exactly_workers_handlers_run_at_once` and `the_queue_bound_holds`:
//!   the pool's bounds (`max_workers` threads, `queue`), which do not apply
//!   to parked connections: an event loop serves any number of them.
//! * `ipv4_datagram`, `ipv6_datagram`, `a_datagram_reads_once_then_end_of_file`,
//!   `each_write_is_one_datagram`, `an_oversized_datagram_is_dropped_and_counted`:
//!   datagrams only (`park_idle` is for streams).

mod common;

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use socketserver::{Addr, Connection, Handler, Server, Transport};

/// A user's own handler type: replies with what it sees (see `whoami`).
struct WhoAmI;

impl Handler for WhoAmI {
    fn handle(&self, conn: &mut Connection) -> io::Result<()> {
        whoami(conn)
    }
}

fn serve_whoami(bind: &str, transport: Transport, park: bool) {
    let server = spawn(
        Server::builder()
            .bind(bind)
            .transport(transport)
            .park_idle(park)
            .workers(2),
        WhoAmI,
    );
    let addr = server.local_addr();
    assert_ne!(addr.port(), Some(0), "port 0 resolved");
    let reply = match transport {
        Transport::Stream => tcp_exchange(&addr, None),
        Transport::Datagram => udp_exchange(&addr, b"?"),
    };
    let reply = String::from_utf8(reply).unwrap();
    let words: Vec<&str> = reply.split(' ').collect();
    assert_eq!(words[0], transport.name());
    let peer: std::net::SocketAddr = words[1].parse().unwrap();
    assert!(peer.ip().is_loopback(), "{reply}");
    assert_eq!(words[2], addr.to_string());
    let report = server.stop().unwrap();
    assert!(report.is_clean());
}

both_modes!(ipv4_stream);
fn ipv4_stream(park: bool) {
    serve_whoami("127.0.0.1:0", Transport::Stream, park);
}

both_modes!(ipv6_stream);
fn ipv6_stream(park: bool) {
    serve_whoami("[::1]:0", Transport::Stream, park);
}

#[test]
fn ipv4_datagram() {
    serve_whoami("127.0.0.1:0", Transport::Datagram, false);
}

#[test]
fn ipv6_datagram() {
    serve_whoami("[::1]:0", Transport::Datagram, false);
}

both_modes!(localhost_name_resolves_and_binds);
fn localhost_name_resolves_and_binds(park: bool) {
    let server = spawn(
        Server::builder()
            .bind("localhost:0")
            .park_idle(park)
            .workers(1),
        WhoAmI,
    );
    assert!(server.local_addr().ip().unwrap().is_loopback());
    assert!(!tcp_exchange(&server.local_addr(), None).is_empty());
    server.stop().unwrap();
}

both_modes!(dual_stack_takes_ipv4_clients_as_mapped_addresses);
fn dual_stack_takes_ipv4_clients_as_mapped_addresses(park: bool) {
    for transport in [Transport::Stream, Transport::Datagram] {
        let server = spawn(
            Server::builder()
                .bind("[::]:0")
                .only_v6(false)
                .transport(transport)
                .park_idle(park && transport == Transport::Stream)
                .workers(1),
            WhoAmI,
        );
        let port = server.local_addr().port().unwrap();
        let v4 = Addr::from(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        let reply = match transport {
            Transport::Stream => tcp_exchange(&v4, None),
            Transport::Datagram => udp_exchange(&v4, b"?"),
        };
        let reply = String::from_utf8(reply).unwrap();
        assert!(reply.contains("[::ffff:127.0.0.1]:"), "{reply}");
        if transport == Transport::Stream {
            // The local address is the one the client reached, not the wildcard.
            assert!(
                reply.ends_with(&format!(" [::ffff:127.0.0.1]:{port}")),
                "{reply}"
            );
        }
        server.stop().unwrap();
    }
}

both_modes!(only_v6_refuses_ipv4_clients);
fn only_v6_refuses_ipv4_clients(park: bool) {
    let server = spawn(
        Server::builder()
            .bind("[::]:0")
            .only_v6(true)
            .park_idle(park)
            .workers(1),
        WhoAmI,
    );
    let port = server.local_addr().port().unwrap();
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let err = std::net::TcpStream::connect_timeout(&v4, TIMEOUT).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    let v6 = Addr::from(std::net::SocketAddr::from((
        std::net::Ipv6Addr::LOCALHOST,
        port,
    )));
    assert!(!tcp_exchange(&v6, None).is_empty());
    server.stop().unwrap();
}

both_modes!(closures_are_handlers_on_both_transports);
fn closures_are_handlers_on_both_transports(park: bool) {
    for transport in [Transport::Stream, Transport::Datagram] {
        let server = spawn(
            Server::builder()
                .bind("127.0.0.1:0")
                .transport(transport)
                .park_idle(park && transport == Transport::Stream)
                .workers(1),
            |conn: &mut Connection| conn.write_all(b"from a closure"),
        );
        let reply = match transport {
            Transport::Stream => tcp_exchange(&server.local_addr(), None),
            Transport::Datagram => udp_exchange(&server.local_addr(), b""),
        };
        assert_eq!(reply, b"from a closure");
        server.stop().unwrap();
    }
}

#[test]
fn a_datagram_reads_once_then_end_of_file() {
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .transport(Transport::Datagram)
            .workers(1),
        |conn: &mut Connection| {
            let mut all = Vec::new();
            conn.read_to_end(&mut all)?;
            let mut again = [0u8; 8];
            let n = conn.read(&mut again)?;
            conn.write_all(format!("{} then {n}", all.len()).as_bytes())
        },
    );
    assert_eq!(
        udp_exchange(&server.local_addr(), &[7u8; 300]),
        b"300 then 0"
    );
    server.stop().unwrap();
}

#[test]
fn writes_make_one_datagram_and_a_flush_ends_it() {
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .transport(Transport::Datagram)
            .workers(1),
        |conn: &mut Connection| {
            conn.write_all(b"one")?;
            conn.write_all(b"two")?;
            conn.flush()?;
            conn.write_all(b"three")
        },
    );
    let addr = server.local_addr();
    let socket = udp_client(&addr, TIMEOUT);
    socket.send_to(b"x", inet(&addr)).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"onetwo");
    let (n, _) = socket.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"three");
    server.stop().unwrap();
}

#[test]
fn exactly_workers_handlers_run_at_once() {
    const WORKERS: usize = 3;
    let (gate, started) = Gate::new();
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let handler = {
        let (gate, running, most) = (gate.clone(), running.clone(), most.clone());
        move |conn: &mut Connection| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            gate.arrive();
            running.fetch_sub(1, Ordering::SeqCst);
            conn.write_all(b"done")
        }
    };
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .workers(WORKERS)
            .max_workers(WORKERS),
        handler,
    );
    let addr = server.local_addr();
    let clients: Vec<_> = (0..WORKERS * 2).map(|_| connect(&addr)).collect();
    expect_started(&started, WORKERS);
    // The other clients wait in the backlog: no further handler starts.
    assert!(started.recv_timeout(Duration::from_millis(300)).is_err());
    assert_eq!(running.load(Ordering::SeqCst), WORKERS);
    gate.open();
    for mut c in clients {
        assert_eq!(read_to_end(&mut c), b"done");
    }
    assert_eq!(most.load(Ordering::SeqCst), WORKERS);
    assert_eq!(server.stats().completed, (WORKERS * 2) as u64);
    server.stop().unwrap();
}

#[test]
fn the_queue_bound_holds() {
    const QUEUE: usize = 2;
    let (gate, started) = Gate::new();
    let handler = gate.handler(b"done");
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .workers(1)
            .max_workers(1)
            .queue(QUEUE),
        handler,
    );
    let addr = server.local_addr();
    let clients: Vec<_> = (0..6).map(|_| connect(&addr)).collect();
    expect_started(&started, 1);
    // Two in the queue; past it, the other three are held for the first
    // worker free (up to `queue_timeout`), not left unseen in the kernel.
    wait_until("all five to wait", || server.stats().queued == 5);
    assert!(started.recv_timeout(Duration::from_millis(300)).is_err());
    let stats = server.stats();
    assert_eq!((stats.accepted, stats.active, stats.queued), (6, 1, 5));
    gate.open();
    for mut c in clients {
        assert_eq!(read_to_end(&mut c), b"done");
    }
    assert_eq!(server.stats().completed, 6);
    server.stop().unwrap();
}

both_modes!(a_panicking_handler_costs_one_connection);
fn a_panicking_handler_costs_one_connection(park: bool) {
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let hook = {
        let failures = failures.clone();
        move |f: &socketserver::Failure<'_>| failures.lock().unwrap().push(f.to_string())
    };
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(1)
            .on_error(hook),
        |conn: &mut Connection| {
            let mut first = [0u8; 1];
            conn.read_exact(&mut first)?;
            if first[0] == b'p' {
                panic!("asked to panic");
            }
            conn.write_all(b"fine")
        },
    );
    let addr = server.local_addr();
    assert_eq!(tcp_exchange(&addr, Some(b"p")), b"");
    assert_eq!(tcp_exchange(&addr, Some(b"x")), b"fine");
    let stats = server.stats();
    assert_eq!((stats.panics, stats.completed), (1, 1));
    let failures = failures.lock().unwrap();
    assert_eq!(failures.len(), 1);
    assert!(
        failures[0].contains("asked to panic") && failures[0].contains("127.0.0.1"),
        "{failures:?}"
    );
    drop(failures);
    server.stop().unwrap();
}

#[test]
fn an_oversized_datagram_is_dropped_and_counted() {
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .transport(Transport::Datagram)
            .max_datagram(512)
            .workers(1),
        socketserver::handlers::Echo,
    );
    let addr = server.local_addr();
    let socket = udp_client(&addr, Duration::from_millis(300));
    socket.send_to(&[1u8; 513], inet(&addr)).unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        socket.recv_from(&mut buf).is_err(),
        "no reply to a cut datagram"
    );
    assert_eq!(udp_exchange(&addr, &[2u8; 512]), vec![2u8; 512]);
    let stats = server.stats();
    assert_eq!((stats.datagrams_received, stats.dropped_truncated), (2, 1));
    server.stop().unwrap();
}

both_modes!(accepted_connections_carry_the_configured_timeouts);
fn accepted_connections_carry_the_configured_timeouts(park: bool) {
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(1)
            .read_timeout(Duration::from_millis(1500))
            .write_timeout(Duration::from_millis(2500)),
        |conn: &mut Connection| {
            let (r, w) = (conn.read_timeout()?, conn.write_timeout()?);
            conn.write_all(format!("{:?} {:?}", r, w).as_bytes())
        },
    );
    for _ in 0..2 {
        let reply = tcp_exchange(&server.local_addr(), None);
        assert_eq!(String::from_utf8(reply).unwrap(), "Some(1.5s) Some(2.5s)");
    }
    server.stop().unwrap();
}
