//! Datagrams taken off the socket in batches, and their replies sent back
//! together: bursts all answered, in order, with every check and count of
//! the one-at-a-time path kept; replies held until the handler returns
//! unless flushed or large; a reply that cannot be sent reported; a handler
//! that blocks does not hold up the others; shutdown prompt under load.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use socketserver::handlers::Echo;
use socketserver::{Connection, Server, Transport};

fn udp(workers: usize) -> socketserver::ServerBuilder {
    Server::builder()
        .bind("127.0.0.1:0")
        .transport(Transport::Datagram)
        .workers(workers)
}

/// Reads datagrams until `n` came (or the client's timeout passes).
fn receive(client: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while got.len() < n {
        match client.recv(&mut buf) {
            Ok(len) => got.push(buf[..len].to_vec()),
            Err(e) => panic!("{} of {n} replies, then {e}", got.len()),
        }
    }
    got
}

#[test]
fn a_burst_from_many_clients_is_all_answered() {
    const CLIENTS: usize = 8;
    const EACH: usize = 20;
    let server = spawn(udp(2), Echo);
    let addr = server.local_addr();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let c = udp_client(&addr, TIMEOUT);
            c.connect(inet(&addr)).unwrap();
            c
        })
        .collect();
    // Everything sent before anything is read: the server finds a queue.
    for (i, c) in clients.iter().enumerate() {
        for j in 0..EACH {
            c.send(format!("client {i} datagram {j}").as_bytes())
                .unwrap();
        }
    }
    for (i, c) in clients.iter().enumerate() {
        let mut got = receive(c, EACH);
        got.sort();
        let mut want: Vec<_> = (0..EACH)
            .map(|j| format!("client {i} datagram {j}").into_bytes())
            .collect();
        want.sort();
        assert_eq!(got, want, "client {i}");
    }
    let total = (CLIENTS * EACH) as u64;
    wait_until("every exchange to be counted", || {
        server.stats().completed == total
    });
    let stats = server.stats();
    assert_eq!(stats.datagrams_received, total);
    assert_eq!(stats.handler_errors + stats.panics, 0);
    server.stop().unwrap();
}

#[test]
fn a_handler_writing_two_replies_sends_both_in_order_for_each_datagram() {
    const N: usize = 24;
    let server = spawn(udp(2), |conn: &mut Connection| {
        let request = conn.datagram().unwrap_or_default().to_vec();
        // Flushed: the first reply is a datagram of its own.
        conn.write_all(&[b"first ", &request[..]].concat())?;
        conn.flush()?;
        conn.write_all(&[b"second ", &request[..]].concat())
    });
    let addr = server.local_addr();
    let client = udp_client(&addr, TIMEOUT);
    client.connect(inet(&addr)).unwrap();
    for i in 0..N {
        client.send(format!("{i}").as_bytes()).unwrap();
    }
    let got = receive(&client, 2 * N);
    // Per request: its first reply, then its second.
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for reply in got {
        let reply = String::from_utf8(reply).unwrap();
        let (which, request) = reply.split_once(' ').unwrap();
        seen.entry(request.to_string())
            .or_default()
            .push(which.to_string());
    }
    assert_eq!(seen.len(), N);
    for (request, order) in seen {
        assert_eq!(order, ["first", "second"], "request {request}");
    }
    server.stop().unwrap();
}

#[test]
fn oversized_datagrams_in_a_burst_are_dropped_and_counted_the_rest_answered() {
    let server = spawn(udp(1).max_datagram(512), Echo);
    let addr = server.local_addr();
    let client = udp_client(&addr, Duration::from_millis(300));
    client.connect(inet(&addr)).unwrap();
    let burst: [&[u8]; 5] = [
        &[1u8; 10],
        &[2u8; 513],
        &[3u8; 512],
        &[4u8; 4000],
        &[5u8; 0],
    ];
    for d in burst {
        client.send(d).unwrap();
    }
    // Replies to different datagrams may pass each other (the pool may
    // serve them on two threads): compare them sorted.
    let mut got = receive(&client, 3);
    got.sort();
    assert_eq!(got, [vec![], vec![1u8; 10], vec![3u8; 512]]);
    let mut buf = [0u8; 8192];
    assert!(client.recv(&mut buf).is_err(), "no reply to a cut datagram");
    wait_until("the drops to be counted", || {
        server.stats().dropped_truncated == 2
    });
    let stats = server.stats();
    assert_eq!((stats.datagrams_received, stats.completed), (5, 3));
    server.stop().unwrap();
}

#[test]
fn flush_sends_the_replies_before_the_handler_returns() {
    let (gate, started) = Gate::new();
    let handler = {
        let gate = gate.clone();
        move |conn: &mut Connection| {
            conn.write_all(b"early")?;
            conn.flush()?;
            gate.arrive();
            conn.write_all(b"late")
        }
    };
    let server = spawn(udp(1), handler);
    let addr = server.local_addr();
    let client = udp_client(&addr, TIMEOUT);
    client.send_to(b"go", inet(&addr)).unwrap();
    expect_started(&started, 1);
    // The handler is still waiting at the gate.
    assert_eq!(receive(&client, 1), [b"early".to_vec()]);
    gate.open();
    assert_eq!(receive(&client, 1), [b"late".to_vec()]);
    server.stop().unwrap();
}

#[test]
fn a_large_reply_goes_at_once_and_in_order() {
    let server = spawn(udp(1), |conn: &mut Connection| {
        conn.write_all(b"head")?;
        conn.flush()?;
        // Three writes, one datagram: the handler's writes are collected.
        conn.write_all(b"<")?;
        conn.write_all(&[7u8; 20_000])?;
        conn.write_all(b">")?;
        conn.flush()?;
        conn.write_all(b"tail")
    });
    let addr = server.local_addr();
    let client = udp_client(&addr, TIMEOUT);
    client.send_to(b"?", inet(&addr)).unwrap();
    let got = receive(&client, 3);
    assert_eq!(got[0], b"head");
    assert_eq!(got[1], [&b"<"[..], &[7u8; 20_000], b">"].concat());
    assert_eq!(got[2], b"tail");
    server.stop().unwrap();
}

#[test]
fn a_held_reply_that_cannot_be_sent_is_a_reported_handler_error() {
    let dir = std::env::temp_dir().join(format!("socketserver-batches-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("server.sock");
    let failures = Arc::new(Mutex::new(Vec::new()));
    let hook = {
        let failures = failures.clone();
        move |f: &socketserver::Failure<'_>| failures.lock().unwrap().push(f.to_string())
    };
    // The reply is held until the handler returns, and by then the client
    // is gone: its socket file removed.
    let server = spawn(
        Server::builder()
            .bind_unix(&path)
            .transport(Transport::Datagram)
            .workers(1)
            .on_error(hook),
        |conn: &mut Connection| {
            conn.write_all(b"too late")?;
            if let Some(client) = conn.peer_addr().unix_path() {
                if conn.datagram() == Some(b"vanish") {
                    std::fs::remove_file(client)?;
                }
            }
            Ok(())
        },
    );
    let gone_path = dir.join("gone.sock");
    let gone = UnixDatagram::bind(&gone_path).unwrap();
    gone.send_to(b"vanish", &path).unwrap();
    wait_until("the failed reply to be counted", || {
        server.stats().handler_errors == 1
    });
    assert_eq!(server.stats().completed, 0);
    {
        let failures = failures.lock().unwrap();
        assert_eq!(failures.len(), 1);
        assert!(failures[0].contains("gone.sock"), "{failures:?}");
    }
    // The next client is served as ever.
    let stay_path = dir.join("stay.sock");
    let stay = UnixDatagram::bind(&stay_path).unwrap();
    stay.set_read_timeout(Some(TIMEOUT)).unwrap();
    stay.send_to(b"stay", &path).unwrap();
    let mut buf = [0u8; 64];
    let n = stay.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"too late");
    wait_until("the exchange to be counted", || {
        server.stats().completed == 1
    });
    server.stop().unwrap();
    drop((gone, stay));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_handler_that_blocks_does_not_hold_up_the_others() {
    let (gate, started) = Gate::new();
    let handler = {
        let gate = gate.clone();
        move |conn: &mut Connection| {
            let request = conn.datagram().unwrap_or_default().to_vec();
            if request == b"block" {
                gate.arrive();
            }
            conn.write_all(&request)
        }
    };
    let server = spawn(udp(2).max_workers(4), handler);
    let addr = server.local_addr();
    // Quick exchanges first: the receiving worker learns that its handler
    // is fast, so it keeps the receiving when the next datagram comes.
    for i in 0..20u8 {
        assert_eq!(udp_exchange(&addr, &[i]), [i]);
    }
    let blocked = udp_client(&addr, TIMEOUT);
    blocked.send_to(b"block", inet(&addr)).unwrap();
    expect_started(&started, 1);
    let t = Instant::now();
    for i in 0..20u8 {
        assert_eq!(udp_exchange(&addr, &[i]), [i]);
    }
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "served behind a blocked handler in {:?}",
        t.elapsed()
    );
    // Each worker counts itself done once its replies are out: only the
    // blocked one is left.
    wait_until("one handler to be left running", || {
        server.stats().active == 1
    });
    gate.open();
    assert_eq!(receive(&blocked, 1), [b"block".to_vec()]);
    server.stop().unwrap();
}

#[test]
fn shutdown_is_prompt_while_datagrams_pour_in() {
    let server = spawn(udp(4), Echo);
    let addr = inet(&server.local_addr());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let client = UdpSocket::bind("127.0.0.1:0").unwrap();
            client.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 64];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for _ in 0..16 {
                    let _ = client.send_to(&[1u8; 64], addr);
                }
                while client.recv(&mut buf).is_ok() {}
                std::thread::yield_now();
            }
        })
    };
    wait_until("the flood to be served", || server.stats().completed > 1000);
    let (report, took) = stop_timed(server);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.join().unwrap();
    assert!(took < Duration::from_millis(200), "stop took {took:?}");
    assert_eq!(report.forced, 0, "{report:?}");
}
