//! The standard services (RFC 862-868) over TCP and UDP on loopback, each
//! checked against what its RFC says, and the limits on UDP replies.
//!
//! The tests that serve TCP run in both serving modes (`both_modes!`: a
//! thread per connection, and `park_idle`), their UDP parts alike in each.
//! The others serve UDP only (`park_idle` is for streams), or nothing
//! (`qotd_from_a_file`).

mod common;

use std::io::{self, Read};
use std::net::UdpSocket;
use std::sync::Arc;

use common::*;
use socketserver::handlers::{Amplification, Chargen, Daytime, Discard, Echo, Qotd, Time};
use socketserver::{Addr, Connection, Handler, Server, ServerThread, Transport};

fn udp_server<H: Handler>(handler: H) -> ServerThread {
    spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .transport(Transport::Datagram)
            .workers(1),
        handler,
    )
}

/// A TCP server; `park`: its connections parked (`park_idle`).
fn tcp_server<H: Handler>(park: bool, handler: H) -> ServerThread {
    spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(2),
        handler,
    )
}

/// Sends `payload` from `client` and asserts that no reply comes: waits
/// until the server has dealt with the datagram (its counters say so),
/// then finds the client's queue empty. A reply would have been queued
/// before the counter moved, since loopback delivers within `send_to`.
fn assert_no_reply(server: &ServerThread, client: &UdpSocket, payload: &[u8]) {
    let before = server.stats();
    client.send_to(payload, inet(&server.local_addr())).unwrap();
    wait_until("the datagram to be handled or dropped", || {
        let now = server.stats();
        now.completed + now.dropped_low_port + now.handler_errors
            > before.completed + before.dropped_low_port + before.handler_errors
    });
    client.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1024];
    match client.recv_from(&mut buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        other => panic!("expected no reply, got {other:?}"),
    }
    client.set_nonblocking(false).unwrap();
}

/// The RFC 868 time value for now.
fn rfc868_now() -> u32 {
    Time::at(chrono::Utc::now().timestamp())
}

both_modes!(time_sends_4_bytes_of_seconds_since_1900);
fn time_sends_4_bytes_of_seconds_since_1900(park: bool) {
    over_both(park, Time, b"", |reply| {
        let sent = u32::from_be_bytes(reply.try_into().expect("exactly 4 bytes"));
        let now = rfc868_now();
        assert!(now.wrapping_sub(sent) <= 2, "{sent} vs {now}");
    });
    // "The data in the received datagram is ignored", whatever it is.
    let server = udp_server(Time);
    assert_eq!(
        udp_exchange(&server.local_addr(), b"what time is it?").len(),
        4
    );
    server.stop().unwrap();
}

both_modes!(daytime_rfc867_sends_xinetds_line);
fn daytime_rfc867_sends_xinetds_line(park: bool) {
    over_both(park, Daytime::rfc867(), b"", assert_daytime_now);
}

#[test]
fn daytime_answers_an_empty_datagram_and_a_newline() {
    let server = udp_server(Daytime::rfc867());
    for request in [&b""[..], b"\n"] {
        let reply = udp_exchange(&server.local_addr(), request);
        assert!(reply.ends_with(b"\r\n") && reply.len() >= 24, "{reply:?}");
    }
    server.stop().unwrap();
}

both_modes!(discard_sends_nothing_over_either_transport);
fn discard_sends_nothing_over_either_transport(park: bool) {
    let request: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let server = tcp_server(park, Discard);
    assert_eq!(tcp_exchange(&server.local_addr(), Some(&request)), b"");
    server.stop().unwrap();

    let server = udp_server(Discard);
    let client = udp_client(&server.local_addr(), TIMEOUT);
    for payload in [&b""[..], b"x", &request[..1000]] {
        assert_no_reply(&server, &client, payload);
    }
    server.stop().unwrap();
}

both_modes!(discard_ends_when_the_client_closes);
fn discard_ends_when_the_client_closes(park: bool) {
    let server = tcp_server(park, Discard);
    let mut client = connect(&server.local_addr());
    io::Write::write_all(&mut client, b"some bytes").unwrap();
    drop(client);
    wait_until("discard to finish", || server.stats().completed == 1);
    assert_eq!(server.stats().handler_errors, 0);
    server.stop().unwrap();
}

both_modes!(chargen_over_tcp_sends_rotating_72_character_lines_until_the_client_leaves);
fn chargen_over_tcp_sends_rotating_72_character_lines_until_the_client_leaves(park: bool) {
    let server = tcp_server(park, Chargen::new());
    let mut client = connect(&server.local_addr());
    // Three rounds of the 95-line ring and a bit.
    let lines = 300;
    let mut stream = vec![0u8; lines * 74];
    client.read_exact(&mut stream).unwrap();
    for (n, line) in stream.chunks(74).enumerate() {
        assert_eq!(&line[72..], b"\r\n", "line {n}");
        assert!(
            line[..72].iter().all(|c| (b' '..=b'~').contains(c)),
            "line {n}"
        );
        assert_eq!(
            line[0],
            b' ' + (n % 95) as u8,
            "line {n} starts one further on"
        );
    }
    assert_eq!(stream, chargen_pattern(0, stream.len()));
    // "It is fairly likely that users of this service will abruptly decide
    // that they have had enough and abort the TCP connection": a normal end.
    drop(client);
    wait_until("chargen to stop", || server.stats().completed == 1);
    assert_eq!(server.stats().handler_errors, 0);
    let report = server.stop().unwrap();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn chargen_over_udp_sends_0_to_512_characters_of_the_pattern() {
    let server = udp_server(Chargen::new());
    let client = udp_client(&server.local_addr(), TIMEOUT);
    // 171 bytes and more unlock the RFC's whole range under the default limit.
    let request = [0u8; 200];
    let mut lens = Vec::new();
    for _ in 0..40 {
        client
            .send_to(&request, inet(&server.local_addr()))
            .unwrap();
        let mut buf = [0u8; 2048];
        let n = client.recv(&mut buf).unwrap();
        assert!(n <= 512, "{n}");
        assert_eq!(&buf[..n], &chargen_pattern(0, n)[..]);
        lens.push(n);
    }
    assert!(lens.iter().any(|&n| n > 128), "{lens:?}");
    assert!(lens.iter().any(|&n| n != lens[0]), "{lens:?}");
    server.stop().unwrap();
}

both_modes!(qotd_sends_the_quotes_in_turn);
fn qotd_sends_the_quotes_in_turn(park: bool) {
    let quotes = ["first quote", "second quote\non two lines"];
    over_both(park, Qotd::new(quotes).unwrap(), b"", |reply| {
        let quote = std::str::from_utf8(reply).unwrap();
        assert!(
            quote == "first quote\r\n" || quote == "second quote\r\non two lines\r\n",
            "{quote:?}"
        );
    });
    let server = tcp_server(park, Qotd::new(quotes).unwrap());
    let first = tcp_exchange(&server.local_addr(), None);
    let second = tcp_exchange(&server.local_addr(), Some(b"ignored"));
    assert_ne!(first, second);
    server.stop().unwrap();
}

#[test]
fn qotd_default_quotes_are_short_ascii() {
    let qotd = Qotd::default();
    let quotes: Vec<String> = qotd.quotes().map(String::from).collect();
    let server = udp_server(qotd);
    for _ in 0..quotes.len() {
        let reply = udp_exchange(&server.local_addr(), b"\n");
        let quote = String::from_utf8(reply).unwrap();
        assert!(quotes.contains(&quote), "{quote:?}");
        assert!(quote.len() <= 512 && quote.ends_with("\r\n"));
        assert!(quote
            .bytes()
            .all(|c| c == b'\r' || c == b'\n' || (b' '..=b'~').contains(&c)));
    }
    server.stop().unwrap();
}

#[test]
fn qotd_from_a_file() {
    let path = std::env::temp_dir().join(format!("qotd-{}.txt", std::process::id()));
    std::fs::write(&path, "One.\n%\nTwo,\n\tindented.\n%\n").unwrap();
    let qotd = Qotd::from_file(&path);
    std::fs::remove_file(&path).unwrap();
    let quotes: Vec<String> = qotd.unwrap().quotes().map(String::from).collect();
    assert_eq!(quotes, ["One.\r\n", "Two,\r\n        indented.\r\n"]);
    let missing = Qotd::from_file(&path).unwrap_err().to_string();
    assert!(missing.contains(&*path.to_string_lossy()), "{missing}");
}

#[test]
fn udp_replies_stay_within_the_amplification_bound() {
    let long_quote = "q".repeat(400);
    let handlers: Vec<(&str, Arc<dyn Handler>)> = vec![
        ("echo", Arc::new(Echo)),
        ("time", Arc::new(Time)),
        ("daytime", Arc::new(Daytime::rfc867())),
        ("chargen", Arc::new(Chargen::new())),
        ("qotd", Arc::new(Qotd::new([long_quote.as_str()]).unwrap())),
    ];
    for (name, handler) in handlers {
        let server = udp_server(move |conn: &mut Connection| handler.handle(conn));
        let client = udp_client(&server.local_addr(), TIMEOUT);
        for size in [0usize, 1, 10, 42, 100, 200] {
            let bound = Amplification::default().max_reply(size);
            assert_eq!(bound, (3 * size).max(128));
            if name == "qotd" && size < 134 {
                // The 402-byte quote does not fit: no reply at all.
                assert_no_reply(&server, &client, &vec![b'x'; size]);
                continue;
            }
            for _ in 0..5 {
                client
                    .send_to(&vec![b'x'; size], inet(&server.local_addr()))
                    .unwrap();
                let mut buf = [0u8; 2048];
                let n = client.recv(&mut buf).unwrap();
                assert!(n <= bound, "{name}: {n} bytes for a {size}-byte request");
            }
        }
        server.stop().unwrap();
    }
}

#[test]
fn amplification_can_be_lifted_or_tightened() {
    let server = udp_server(Chargen::new().amplification(Amplification::unlimited()));
    let lens: Vec<usize> = (0..20)
        .map(|_| udp_exchange(&server.local_addr(), b"").len())
        .collect();
    assert!(lens.iter().any(|&n| n > 128), "{lens:?}");
    server.stop().unwrap();

    let daytime = Daytime::rfc867().amplification(Amplification::limited(1, 0));
    let server = udp_server(daytime);
    let client = udp_client(&server.local_addr(), TIMEOUT);
    assert_no_reply(&server, &client, b"\n");
    assert!(udp_exchange(&server.local_addr(), &[b'x'; 40]).ends_with(b"\r\n"));
    server.stop().unwrap();
}

/// A UDP socket on a free port below 1024, as a service would use: needs
/// root (the tests run as root in CI). `None` when not permitted.
fn low_port_client(addr: &Addr) -> Option<UdpSocket> {
    for port in 700..1000 {
        match UdpSocket::bind(("127.0.0.1", port)) {
            Ok(socket) => {
                socket.set_read_timeout(Some(TIMEOUT)).unwrap();
                return Some(socket);
            }
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                eprintln!("cannot bind a port below 1024 to reach {addr}: {e}; not root?");
                return None;
            }
            Err(_) => continue,
        }
    }
    panic!("no free UDP port in 700..1000");
}

#[test]
fn no_service_answers_a_source_port_below_1024() {
    let handlers: Vec<Arc<dyn Handler>> = vec![
        Arc::new(Echo),
        Arc::new(Time),
        Arc::new(Daytime::rfc867()),
        Arc::new(Chargen::new()),
        Arc::new(Qotd::default()),
    ];
    for handler in handlers {
        let server = udp_server(move |conn: &mut Connection| handler.handle(conn));
        let Some(client) = low_port_client(&server.local_addr()) else {
            return;
        };
        assert_no_reply(&server, &client, b"\n");
        assert_eq!(server.stats().dropped_low_port, 1);
        // The same request from an ordinary port is answered.
        udp_exchange(&server.local_addr(), &[b'x'; 200]);
        server.stop().unwrap();
    }
}
