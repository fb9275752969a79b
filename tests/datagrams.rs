//! UDP hazards: oversized datagrams, empty ones, privileged source ports,
//! and peers that are gone by the time the reply leaves.
//!
//! Datagrams only, so the thread mode only: `park_idle` is for streams.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::*;
use socketserver::handlers::Echo;
use socketserver::{Server, Transport};

fn udp_echo(max_datagram: usize) -> socketserver::ServerThread {
    spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .transport(Transport::Datagram)
            .max_datagram(max_datagram)
            .workers(2),
        Echo,
    )
}

#[test]
fn the_largest_datagram_over_a_small_limit_is_dropped_and_counted() {
    let server = udp_echo(512);
    let addr = server.local_addr();
    let client = udp_client(&addr, Duration::from_millis(300));
    client.send_to(&vec![9u8; 65_507], inet(&addr)).unwrap();
    let mut buf = vec![0u8; 65_536];
    assert!(client.recv_from(&mut buf).is_err(), "no reply");
    wait_until("the drop to be counted", || {
        server.stats().dropped_truncated == 1
    });
    assert_eq!(server.stats().completed, 0);
    server.stop().unwrap();
}

#[test]
fn a_zero_length_datagram_gets_a_reply() {
    let server = udp_echo(512);
    assert_eq!(udp_exchange(&server.local_addr(), b""), b"");
    wait_until("the reply to be counted", || server.stats().completed == 1);
    server.stop().unwrap();
}

#[test]
fn a_datagram_from_a_privileged_port_gets_none() {
    let server = udp_echo(512);
    let addr = server.local_addr();
    // Port 7 is echo's: answering it is how two services bounce forever.
    let from_echo = UdpSocket::bind("127.0.0.1:7").expect("bind port 7 (tests run as root)");
    from_echo
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    from_echo.send_to(b"loop?", inet(&addr)).unwrap();
    let mut buf = [0u8; 64];
    assert!(from_echo.recv_from(&mut buf).is_err(), "no reply to port 7");
    wait_until("the drop to be counted", || {
        server.stats().dropped_low_port == 1
    });
    assert_eq!(udp_exchange(&addr, b"fine"), b"fine");
    server.stop().unwrap();
}

#[test]
fn a_vanished_peer_does_not_end_the_receive_loop() {
    let server = udp_echo(512);
    let addr = server.local_addr();
    for _ in 0..20 {
        // Gone before the reply: it draws an ICMP port unreachable.
        let gone = UdpSocket::bind("127.0.0.1:0").unwrap();
        gone.send_to(b"bye", inet(&addr)).unwrap();
    }
    wait_until("20 datagrams served", || server.stats().completed == 20);
    assert_eq!(udp_exchange(&addr, b"still serving"), b"still serving");
    server.stop().unwrap();
}

/// Over UDP a handler's writes make one reply datagram, as Python's
/// `DatagramRequestHandler` sends its `wfile`: `writeln!` with arguments
/// (several writes) is one datagram; `flush` ends one and begins the next.
#[test]
fn a_handlers_writes_make_one_datagram_until_it_flushes() {
    use std::io::{Read, Write};
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .transport(Transport::Datagram),
        |conn: &mut socketserver::Connection| {
            let mut request = String::new();
            conn.read_to_string(&mut request)?;
            writeln!(conn, "you said: {} ({} bytes)", request, request.len())?;
            if request == "two" {
                conn.flush()?;
                conn.write_all(b"second")?;
            }
            Ok(())
        },
    );
    let client = udp_client(&server.local_addr(), TIMEOUT);
    let to = inet(&server.local_addr());
    let mut buf = [0; 256];
    client.send_to(b"hello", to).unwrap();
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"you said: hello (5 bytes)\n");
    client.send_to(b"two", to).unwrap();
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"you said: two (3 bytes)\n");
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"second");
    // Nothing else came: each exchange made exactly the datagrams above.
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(client.recv(&mut buf).is_err());
    assert_eq!(server.stats().handler_errors, 0);
    server.stop().unwrap();
}

/// A reply longer than one datagram can carry is the handler's error at
/// its write, not a datagram cut short.
#[test]
fn a_reply_past_the_largest_datagram_is_an_error() {
    use std::io::Write;
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .transport(Transport::Datagram),
        |conn: &mut socketserver::Connection| {
            conn.write_all(&[b'x'; 40_000])?;
            match conn.write_all(&[b'y'; 40_000]) {
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => conn.write_all(b"!"),
                other => other,
            }
        },
    );
    let client = udp_client(&server.local_addr(), TIMEOUT);
    client.send_to(b"go", inet(&server.local_addr())).unwrap();
    let mut buf = vec![0; 65_536];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(n, 40_001);
    assert_eq!(buf[40_000], b'!');
    server.stop().unwrap();
}
