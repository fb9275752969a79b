//! What the rebuilt core guarantees at shutdown: UDP servers sharing a
//! port stop alone, idle connections get end of file at once, busy ones
//! are drained, and clients left in the listen backlog are counted.
//!
//! The settings, the pool and the counters are in `core_rebuild_limits.rs`.
//!
//! The stream servers' tests run in both serving modes (`both_modes!`: a
//! thread per connection, and `park_idle`). `a_udp_server_sharing_its_port_stops_alone`
//! and `a_stopped_udp_server_leaves_the_port_group_while_a_handle_is_kept`
//! serve datagrams only (`park_idle` is for streams).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use socketserver::handlers::Echo;
use socketserver::{Addr, Connection, Server, ServerThread, Transport};

/// Connections waiting in the listen backlog of the TCP socket listening
/// on 127.0.0.1:`port`: the `rx_queue` of its line in `/proc/net/tcp`.
fn backlog_len(port: u16) -> usize {
    let local = format!("0100007F:{port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .find(|f| f[1] == local && f[3] == "0A")
        .map(|f| usize::from_str_radix(f[4].split_once(':').unwrap().1, 16).unwrap())
        .expect("the listening socket in /proc/net/tcp")
}

/// Bytes waiting unread in each UDP socket bound to 127.0.0.1:`port`: the
/// `rx_queue` of its line in `/proc/net/udp`.
fn udp_unread(port: u16) -> Vec<usize> {
    let local = format!("0100007F:{port:04X}");
    let table = std::fs::read_to_string("/proc/net/udp").unwrap();
    table
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f[1] == local)
        .map(|f| usize::from_str_radix(f[4].split_once(':').unwrap().1, 16).unwrap())
        .collect()
}

/// A client that has done one round trip: its handler is serving it, and
/// waits in `read` for the next request.
fn served_client(addr: &Addr) -> TcpStream {
    let mut client = connect(addr);
    round_trip(&mut client, b"ping");
    client
}

/// Reads once and expects end of file within `within`, or also a reset
/// if `reset_ok`. Returns how long the read waited.
fn expect_closed(client: &mut TcpStream, within: Duration, reset_ok: bool) -> Duration {
    client.set_read_timeout(Some(within)).unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 16];
    match client.read(&mut buf) {
        Ok(0) => {}
        Err(e) if reset_ok && e.kind() == ErrorKind::ConnectionReset => {}
        other => panic!("expected the connection closed, got {other:?}"),
    }
    t.elapsed()
}

/// Two datagram echo servers on one 127.0.0.1 port (`SO_REUSEPORT`), with
/// 4 workers each, and for each a client that the kernel steers to it.
struct PortPair {
    a: ServerThread,
    b: ServerThread,
    addr: Addr,
    to_a: UdpSocket,
    to_b: UdpSocket,
}

/// Starts a [`PortPair`]; A's threads are named `{a_name}-N`, B's `{b_name}-N`.
fn udp_pair(a_name: &str, b_name: &str) -> PortPair {
    let udp = |name: &str, bind: &str| {
        spawn(
            Server::builder()
                .bind(bind)
                .transport(Transport::Datagram)
                .reuse_port(true)
                .workers(4)
                .thread_name(name),
            Echo,
        )
    };
    let a = udp(a_name, "127.0.0.1:0");
    let port = inet(&a.local_addr()).port();
    let b = udp(b_name, &format!("127.0.0.1:{port}"));
    let addr = a.local_addr();
    assert_eq!(inet(&b.local_addr()), inet(&addr));
    // 4 workers and the run thread each.
    wait_until("the threads to start", || {
        threads_named(&format!("{a_name}-")) >= 5 && threads_named(&format!("{b_name}-")) >= 5
    });
    // The kernel picks a socket of the group by the sender's address and
    // port: find a client that A serves and one that B serves.
    let (mut to_a, mut to_b) = (None, None);
    for _ in 0..200 {
        if to_a.is_some() && to_b.is_some() {
            break;
        }
        let client = udp_client(&addr, TIMEOUT);
        client.set_write_timeout(Some(TIMEOUT)).unwrap();
        let before = a.stats().datagrams_received;
        assert_eq!(exchange(&client, &addr, b"probe"), b"probe");
        match a.stats().datagrams_received > before {
            true => to_a = to_a.or(Some(client)),
            false => to_b = to_b.or(Some(client)),
        }
    }
    PortPair {
        a,
        b,
        addr,
        to_a: to_a.expect("a client that A serves"),
        to_b: to_b.expect("a client that B serves"),
    }
}

/// Sends one datagram from `client` and returns the reply.
fn exchange(client: &UdpSocket, addr: &Addr, msg: &[u8]) -> Vec<u8> {
    client.send_to(msg, inet(addr)).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = client.recv_from(&mut buf).expect("a reply datagram");
    assert_eq!(from, inet(addr));
    buf[..n].to_vec()
}

#[test]
fn a_udp_server_sharing_its_port_stops_alone() {
    let PortPair {
        a,
        b,
        addr,
        to_a,
        to_b,
    } = udp_pair("udp-a", "udp-b");
    let b_threads = threads_named("udp-b-");
    let b_received = b.stats().datagrams_received;

    let (report, took) = stop_timed(a);
    let stopped = Instant::now();
    wait_until("A's threads to end", || threads_named("udp-a-") == 0);
    let gone = stopped.elapsed();
    println!("A stopped in {took:?}; its threads were gone {gone:?} later");
    assert!(took < Duration::from_millis(100), "stop took {took:?}");
    assert!(
        gone < Duration::from_millis(100),
        "threads left {gone:?} late"
    );
    assert!(report.is_clean(), "{report}");
    assert_eq!(threads_named("udp-b-"), b_threads, "B's threads untouched");

    // B now answers every datagram, those that A used to take included.
    for i in 0..10u8 {
        for client in [&to_a, &to_b] {
            assert_eq!(exchange(client, &addr, &[i; 8]), [i; 8]);
        }
    }
    assert_eq!(b.stats().datagrams_received, b_received + 20);
    b.stop().unwrap();
}

/// A program may keep a `ShutdownHandle` after the server stopped, to
/// read its counters; the stopped server must still leave the port group.
#[test]
fn a_stopped_udp_server_leaves_the_port_group_while_a_handle_is_kept() {
    let PortPair {
        a,
        b,
        addr,
        to_a,
        to_b,
    } = udp_pair("udp-c", "udp-d");
    let kept = a.shutdown_handle();
    assert!(a.stop().unwrap().is_clean());
    wait_until("A's threads to end", || threads_named("udp-c-") == 0);
    to_a.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    for i in 0..10u8 {
        to_a.send_to(&[i], inet(&addr)).unwrap();
        if let Err(e) = to_a.recv_from(&mut [0u8; 8]) {
            panic!(
                "datagram {i} got no reply ({e}); bytes unread in the port's sockets: {:?}",
                udp_unread(inet(&addr).port())
            );
        }
    }
    assert_eq!(exchange(&to_b, &addr, b"b"), b"b");
    drop(kept);
    b.stop().unwrap();
}

both_modes!(fifty_idle_connections_do_not_hold_the_shutdown);
fn fifty_idle_connections_do_not_hold_the_shutdown(park: bool) {
    let server = spawn(Server::builder().bind("127.0.0.1:0").park_idle(park), Echo);
    let addr = server.local_addr();
    let mut clients: Vec<_> = (0..50).map(|_| served_client(&addr)).collect();
    wait_until("50 handlers serving", || server.stats().active == 50);

    let handle = server.shutdown_handle();
    let (report, took) = stop_timed(server);
    println!("stop with 50 idle connections took {took:?}: {report}");
    assert!(took < Duration::from_millis(200), "stop took {took:?}");
    assert_eq!(report.closed_idle, 50, "{report}");
    assert_eq!((report.forced, report.dropped, report.drained), (0, 0, 0));
    let stats = handle.stats();
    assert_eq!((stats.closed_idle, stats.forced_at_shutdown), (50, 0));
    assert_eq!((stats.completed, stats.handler_errors), (50, 0));
    let slowest = clients
        .iter_mut()
        .map(|c| expect_closed(c, Duration::from_secs(1), false))
        .max()
        .unwrap();
    println!("the slowest client read end of file after {slowest:?}");
}

both_modes!(a_busy_handler_is_drained_while_idle_ones_are_closed);
fn a_busy_handler_is_drained_while_idle_ones_are_closed(park: bool) {
    let (gate, started) = Gate::new();
    // Echoes, except that a request with '!' makes it busy (at the gate,
    // not reading) before its last reply.
    let handler = {
        let gate = gate.clone();
        move |conn: &mut Connection| {
            let mut buf = [0u8; 64];
            loop {
                let n = conn.read(&mut buf)?;
                if n == 0 {
                    return Ok(());
                }
                if buf[..n].contains(&b'!') {
                    gate.arrive_from(conn);
                    return conn.write_all(b"finished");
                }
                conn.write_all(&buf[..n])?;
            }
        }
    };
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(2)
            .shutdown_timeout(Duration::from_secs(5)),
        handler,
    );
    let addr = server.local_addr();
    let mut idle: Vec<_> = (0..3).map(|_| served_client(&addr)).collect();
    let mut busy = connect(&addr);
    busy.write_all(b"!").unwrap();
    expect_started(&started, 1);
    wait_until("4 handlers serving", || server.stats().active == 4);

    let handle = server.shutdown_handle();
    handle.shutdown();
    // The idle ones learn at once, while the busy one still runs.
    for c in &mut idle {
        expect_closed(c, Duration::from_secs(1), false);
    }
    wait_until("the idle handlers to finish", || handle.stats().active == 1);
    assert_eq!(handle.stats().completed, 3, "the busy handler still runs");
    gate.open();
    assert_eq!(read_to_end(&mut busy), b"finished");
    let report = server.join().unwrap();
    assert_eq!(
        (
            report.drained,
            report.closed_idle,
            report.forced,
            report.dropped
        ),
        (1, 3, 0, 0),
        "{report}"
    );
}

both_modes!(clients_waiting_in_the_backlog_at_shutdown_are_closed_and_counted);
fn clients_waiting_in_the_backlog_at_shutdown_are_closed_and_counted(park: bool) {
    let (gate, started) = Gate::new();
    let builder = Server::builder()
        .bind("127.0.0.1:0")
        .park_idle(park)
        .workers(1)
        .max_workers(1)
        .shutdown_timeout(Duration::from_millis(300));
    // An event loop would accept every client while its handler waits at
    // the gate: held to one connection, it leaves the others in the backlog.
    let builder = if park {
        builder.max_connections(1)
    } else {
        builder
    };
    let server = spawn(builder, gate.handler(b"served"));
    let addr = server.local_addr();
    let port = inet(&addr).port();
    let mut first = connect(&addr);
    expect_started(&started, 1);
    let mut waiting: Vec<_> = (0..5).map(|_| connect(&addr)).collect();
    // The thread mode accepts them to wait for the worker (queue_timeout).
    match park {
        true => wait_until("5 clients in the backlog", || backlog_len(port) == 5),
        false => wait_until("5 clients waiting", || server.stats().queued == 5),
    }

    let handle = server.shutdown_handle();
    handle.shutdown();
    // Closed as shutdown begins, while the running handler still drains.
    let slowest = waiting
        .iter_mut()
        .map(|c| expect_closed(c, Duration::from_secs(1), true))
        .max()
        .unwrap();
    println!("the backlog's clients were closed within {slowest:?}");
    assert_eq!(handle.stats().dropped_at_shutdown, 5);
    gate.open();
    assert_eq!(read_to_end(&mut first), b"served");
    let report = server.join().unwrap();
    assert_eq!(
        (report.dropped, report.drained, report.forced),
        (5, 1, 0),
        "{report}"
    );
}
