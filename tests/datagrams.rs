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
