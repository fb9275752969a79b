//! Shutdown: prompt from idle, graceful for running handlers, forced after
//! `shutdown_timeout`, safe from inside a handler; for streams in both
//! serving modes (`both_modes!`: a thread per connection, and `park_idle`).
//!
//! Thread mode only: `queued_connections_are_closed_at_once_not_drained`,
//! as the `queue` of accepted connections waiting for a worker does not
//! apply to parked connections (an event loop serves each one it accepts).

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use socketserver::{Connection, Server, Transport};

both_modes!(idle_shutdown_is_prompt_on_each_transport);
fn idle_shutdown_is_prompt_on_each_transport(park: bool) {
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        for transport in [Transport::Stream, Transport::Datagram] {
            let server = spawn(
                Server::builder()
                    .bind(bind)
                    .transport(transport)
                    .park_idle(park && transport == Transport::Stream)
                    .workers(4),
                socketserver::handlers::Echo,
            );
            // Let the workers reach accept()/recv_from(): serve one exchange.
            match transport {
                Transport::Stream => {
                    assert_eq!(tcp_exchange(&server.local_addr(), Some(b"x")), b"x")
                }
                Transport::Datagram => assert_eq!(udp_exchange(&server.local_addr(), b"x"), b"x"),
            }
            let t = Instant::now();
            let report = server.stop().unwrap();
            let took = t.elapsed();
            assert!(
                took < Duration::from_millis(100),
                "{bind} {transport}: {took:?}"
            );
            // The exchange's handler may still be finishing: drained, not cut.
            assert!(report.is_clean(), "{report:?}");
        }
    }
}

both_modes!(graceful_drain_delivers_the_in_flight_reply);
fn graceful_drain_delivers_the_in_flight_reply(park: bool) {
    let (gate, started) = Gate::new();
    let handler = gate.handler(b"finished after shutdown began");
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(2)
            .shutdown_timeout(Duration::from_secs(5)),
        handler,
    );
    let mut client = connect(&server.local_addr());
    expect_started(&started, 1);
    let handle = server.shutdown_handle();
    handle.shutdown();
    assert!(handle.is_shutdown());
    // No new client is taken once shutdown has begun. (Not checked by
    // connecting: the port is free again and another test may hold it.)
    gate.open();
    assert_eq!(read_to_end(&mut client), b"finished after shutdown began");
    let report = server.join().unwrap();
    assert_eq!((report.drained, report.forced, report.dropped), (1, 0, 0));
}

both_modes!(a_stuck_handler_is_forced_after_the_timeout);
fn a_stuck_handler_is_forced_after_the_timeout(park: bool) {
    let (gate, started) = Gate::new();
    let handler = {
        let gate = gate.clone();
        move |conn: &mut Connection| {
            gate.arrive_from(conn); // stuck until the test ends, ignoring its socket
            Ok(())
        }
    };
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(1)
            .shutdown_timeout(Duration::from_secs(1)),
        handler,
    );
    let mut client = connect(&server.local_addr());
    expect_started(&started, 1);
    let t = Instant::now();
    let report = server.stop().unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_millis(1200),
        "{took:?}"
    );
    assert_eq!((report.drained, report.forced), (0, 1));
    // The client sees its connection closed, not a hang.
    let mut buf = [0u8; 8];
    assert_eq!(client.read(&mut buf).unwrap(), 0);
    gate.open();
}

both_modes!(shutdown_from_inside_a_handler_does_not_deadlock);
fn shutdown_from_inside_a_handler_does_not_deadlock(park: bool) {
    let handle = std::sync::Arc::new(std::sync::OnceLock::<socketserver::ShutdownHandle>::new());
    let handler = {
        let handle = handle.clone();
        move |conn: &mut Connection| {
            handle.get().expect("set before serving").shutdown();
            conn.write_all(b"bye")
        }
    };
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .park_idle(park)
        .workers(2)
        .build(handler)
        .unwrap();
    handle.set(server.shutdown_handle()).unwrap();
    let server = server.spawn().unwrap();
    assert_eq!(tcp_exchange(&server.local_addr(), None), b"bye");
    let t = Instant::now();
    let report = server.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(1));
    assert_eq!(report.forced, 0);
}

/// One worker, and a queue of three.
fn one_worker_three_queued() -> socketserver::ServerBuilder {
    Server::builder()
        .bind("127.0.0.1:0")
        .workers(1)
        .max_workers(1)
        .queue(3)
        .shutdown_timeout(Duration::from_secs(5))
}

/// When another server may take the socket's clients over (here
/// `reuse_port`, a rolling restart; also an upgrade in place, or a socket
/// passed in), the clients this one has already accepted are not turned
/// away: the queued ones are served as the running ones drain.
#[test]
fn with_reuse_port_queued_connections_are_served_not_dropped() {
    let (gate, started) = Gate::new();
    let at_gate = gate.clone();
    let handler = move |conn: &mut socketserver::Connection| -> std::io::Result<()> {
        let mut request = [0; 1];
        conn.read_exact(&mut request)?;
        at_gate.arrive();
        conn.write_all(b"served")
    };
    let server = spawn(one_worker_three_queued().reuse_port(true), handler);
    let addr = server.local_addr();
    let mut clients: Vec<_> = (0..4).map(|_| connect(&addr)).collect();
    for c in &mut clients {
        c.write_all(b"x").unwrap();
    }
    expect_started(&started, 1);
    wait_until("3 queued", || server.stats().queued == 3);
    let handle = server.shutdown_handle();
    handle.shutdown();
    gate.open();
    for c in &mut clients {
        assert_eq!(read_to_end(c), b"served");
    }
    let report = server.join().unwrap();
    assert_eq!((report.drained, report.forced, report.dropped), (4, 0, 0));
}

#[test]
fn queued_connections_are_closed_at_once_not_drained() {
    let (gate, started) = Gate::new();
    let handler = gate.handler(b"served");
    let server = spawn(one_worker_three_queued(), handler);
    let addr = server.local_addr();
    let mut first = connect(&addr);
    expect_started(&started, 1);
    let mut queued: Vec<_> = (0..3).map(|_| connect(&addr)).collect();
    wait_until("3 queued", || server.stats().queued == 3);
    let handle = server.shutdown_handle();
    handle.shutdown();
    // Queued clients learn at once, while the running handler still drains.
    for c in &mut queued {
        let t = Instant::now();
        assert_eq!(read_to_end(c), b"");
        assert!(t.elapsed() < Duration::from_secs(1));
    }
    gate.open();
    assert_eq!(read_to_end(&mut first), b"served");
    let report = server.join().unwrap();
    assert_eq!((report.drained, report.forced, report.dropped), (1, 0, 3));
    assert_eq!(handle.stats().dropped_at_shutdown, 3);
}

both_modes!(idle_connections_are_counted_once_and_those_behind_a_proxy_too);
/// At shutdown a connection waiting for its client's next request is
/// closed at once and counted once, however often its handler reads after
/// the end of file; one whose only bytes so far were a PROXY header is
/// closed as idle too, once the grace of new connections is over.
fn idle_connections_are_counted_once_and_those_behind_a_proxy_too(park: bool) {
    use socketserver::ProxyProtocol;
    let handler = |conn: &mut socketserver::Connection| {
        let mut buf = [0u8; 16];
        let mut ends = 0;
        while ends < 5 {
            match conn.read(&mut buf)? {
                0 => ends += 1,
                n => conn.write_all(&buf[..n])?,
            }
        }
        Ok(())
    };
    for proxied in [false, true] {
        let mut builder = Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .shutdown_timeout(Duration::from_secs(3));
        if proxied {
            builder = builder.proxy_protocol(ProxyProtocol::new().trust_loopback());
        }
        let server = spawn(builder, handler);
        let addr = server.local_addr();
        let clients: Vec<_> = (0..2)
            .map(|_| {
                let mut c = connect(&addr);
                if proxied {
                    c.write_all(b"PROXY TCP4 192.0.2.1 192.0.2.2 4000 80\r\n")
                        .unwrap();
                    // Nothing to echo yet: the header alone makes no reply.
                } else {
                    c.write_all(b"x").unwrap();
                    let mut back = [0u8; 1];
                    c.read_exact(&mut back).unwrap();
                }
                c
            })
            .collect();
        // Each connection is being served (its header read) before the stop.
        wait_until("both connections served", || server.stats().active == 2);
        if park {
            wait_until("both parked", || server.stats().parked == 2);
        }
        let started = Instant::now();
        let report = server.stop().unwrap();
        // Behind a proxy, a connection that has had its header and no
        // request is a new one: its client's first request may be on the
        // wire, so it has the grace of new connections (half the 3 s
        // shutdown_timeout) before it is closed as idle.
        let took = started.elapsed();
        match proxied {
            false => assert!(took < Duration::from_secs(1), "{report}"),
            true => assert!(
                took >= Duration::from_millis(1400) && took < Duration::from_secs(3),
                "{took:?}: {report}"
            ),
        }
        assert_eq!(report.closed_idle, 2, "proxied {proxied}: {report}");
        assert!(report.is_clean(), "proxied {proxied}: {report}");
        drop(clients);
    }
}

both_modes!(a_reuse_port_server_hands_its_accept_queue_to_the_next_at_shutdown);
/// A rolling restart: two servers share a port (`reuse_port`); the first,
/// full, has clients waiting in its accept queue when it stops. It shuts
/// its listener before anything else, so the kernel
/// (`net.ipv4.tcp_migrate_req=1`, Linux 5.14+) hands them to the second,
/// which serves every one: none is closed or reset.
fn a_reuse_port_server_hands_its_accept_queue_to_the_next_at_shutdown(park: bool) {
    if !tcp_migrate_req() {
        return;
    }
    let named = |name: &'static [u8]| {
        move |conn: &mut Connection| {
            conn.write_all(name)?;
            let mut rest = Vec::new();
            conn.read_to_end(&mut rest).map(drop)
        }
    };
    let a = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .reuse_port(true)
            .park_idle(park)
            .workers(1)
            .max_connections(1),
        named(b"A"),
    );
    let addr = a.local_addr();
    let b = spawn(
        Server::builder()
            .bind(addr.to_string())
            .reuse_port(true)
            .park_idle(park)
            .workers(1),
        named(b"B"),
    );
    let reply = |s: &mut std::net::TcpStream, within: Duration| {
        s.set_read_timeout(Some(within)).unwrap();
        let mut one = [0; 1];
        s.read_exact(&mut one).ok().map(|()| one[0])
    };
    // A client that A serves, and holds: A is full from then on.
    let holder = loop {
        let mut s = connect(&addr);
        if reply(&mut s, TIMEOUT) == Some(b'A') {
            break s;
        }
    };
    let mut clients: Vec<_> = (0..40).map(|_| connect(&addr)).collect();
    let mut waiting = Vec::new();
    for (i, c) in clients.iter_mut().enumerate() {
        match reply(c, Duration::from_millis(100)) {
            Some(b'B') => {}
            None => waiting.push(i),
            Some(other) => panic!("reply {other} while A is full"),
        }
    }
    assert!(!waiting.is_empty(), "no client hashed to A's queue");
    let report = a.shutdown_handle();
    report.shutdown();
    drop(holder);
    for i in &waiting {
        assert_eq!(reply(&mut clients[*i], TIMEOUT), Some(b'B'), "client {i}");
    }
    println!("{} clients waiting at A were served by B", waiting.len());
    let a_report = a.join().unwrap();
    assert_eq!(a_report.dropped, 0, "{a_report}");
    drop(clients);
    b.stop().unwrap();
}

both_modes!(a_request_sent_just_after_connecting_is_served_across_a_shutdown);
/// A client connects, and shutdown begins before its request arrives (it
/// was on the wire): a new connection gets a grace, so the request is
/// served rather than the connection closed as idle.
fn a_request_sent_just_after_connecting_is_served_across_a_shutdown(park: bool) {
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .shutdown_timeout(Duration::from_secs(4)),
        socketserver::handlers::Echo,
    );
    let mut client = connect(&server.local_addr());
    wait_until("the connection served", || server.stats().active == 1);
    let handle = server.shutdown_handle();
    let stopping = std::thread::spawn(move || server.stop().unwrap());
    wait_until("shutdown to begin", || handle.is_shutdown());
    std::thread::sleep(Duration::from_millis(200)); // the request on the wire
    client.write_all(b"late request").unwrap();
    let mut reply = [0; 12];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"late request");
    // Answered, it waits for its next request: idle, closed.
    assert_eq!(read_to_end(&mut client), b"");
    let report = stopping.join().unwrap();
    assert_eq!((report.closed_idle, report.forced), (1, 0), "{report}");
}

both_modes!(a_shutdown_under_load_loses_no_request_that_reached_a_handler);
/// A shutdown under load from client threads that connect, send a
/// numbered request, read its echo and close without pause: every request
/// a handler read is answered. (A client the server never took is refused
/// or reset by the kernel; that is not a request lost.)
fn a_shutdown_under_load_loses_no_request_that_reached_a_handler(park: bool) {
    use std::collections::BTreeSet;
    use std::io::{BufRead, BufReader};
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::{Arc, Mutex};

    let read = Arc::new(Mutex::new(BTreeSet::new()));
    let handler = {
        let read = Arc::clone(&read);
        move |conn: &mut Connection| {
            let mut line = String::new();
            BufReader::new(&mut *conn).read_line(&mut line)?;
            if let Ok(id) = line.trim().parse::<u64>() {
                read.lock().unwrap().insert(id);
            }
            conn.write_all(line.as_bytes())
        }
    };
    let server = spawn(
        Server::builder().bind("127.0.0.1:0").park_idle(park),
        handler,
    );
    let addr = inet(&server.local_addr());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..6u64)
        .map(|t| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut answered = BTreeSet::new();
                for n in 0.. {
                    if stop.load(SeqCst) {
                        break;
                    }
                    let id = t << 32 | n;
                    let Ok(mut c) = std::net::TcpStream::connect_timeout(&addr, TIMEOUT) else {
                        continue;
                    };
                    c.set_read_timeout(Some(TIMEOUT)).unwrap();
                    let msg = format!("{id}\n");
                    let mut back = vec![0; msg.len()];
                    let ok = c
                        .write_all(msg.as_bytes())
                        .and_then(|()| c.read_exact(&mut back));
                    if ok.is_ok() && back == msg.as_bytes() {
                        answered.insert(id);
                    }
                }
                answered
            })
        })
        .collect();
    wait_until("requests served", || read.lock().unwrap().len() >= 200);
    let report = server.stop().unwrap();
    stop.store(true, SeqCst);
    let answered: BTreeSet<u64> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    let read = read.lock().unwrap();
    let lost: Vec<_> = read.difference(&answered).collect();
    println!("{} read, {} answered, {report}", read.len(), answered.len());
    assert!(
        lost.is_empty(),
        "read and never answered: {lost:?}; {report}"
    );
    assert_eq!(report.forced, 0, "{report}");
}
