//! Every shipped handler over TCP and UDP, IPv4 and IPv6.

mod common;

use common::*;
use socketserver::handlers::{Daytime, Echo, Greeting};
use socketserver::{Server, Transport};

/// Parses the seed's format, `YYYY-MM-DD HH:MM:SS.ffffff`, as local time.
fn seed_time(reply: &[u8]) -> chrono::NaiveDateTime {
    let text = std::str::from_utf8(reply).unwrap();
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.6f")
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

#[test]
fn daytime_sends_the_local_time_in_the_seed_format() {
    over_both(Daytime::new(), b"", |reply| {
        assert_eq!(reply.len(), 26, "{}", String::from_utf8_lossy(reply));
        let sent = seed_time(reply);
        let now = chrono::Local::now().naive_local();
        assert!((now - sent).num_seconds().abs() < 5, "{sent} vs {now}");
    });
}

#[test]
fn daytime_takes_a_format() {
    let day = Daytime::with_format("%Y-%m-%d\r\n").unwrap();
    let today = chrono::Local::now().format("%Y-%m-%d\r\n").to_string();
    over_both(day, b"", |reply| {
        assert_eq!(String::from_utf8_lossy(reply), today);
    });
}

#[test]
fn greeting_says_connected_by_default() {
    over_both(Greeting::default(), b"", |reply| {
        assert_eq!(reply, b"connected")
    });
    over_both(Greeting::new("hi\n"), b"", |reply| {
        assert_eq!(reply, b"hi\n")
    });
}

#[test]
fn echo_sends_back_what_it_gets() {
    let request: Vec<u8> = (0..=255u8).cycle().take(4000).collect();
    over_both(Echo, &request, |reply| assert_eq!(reply, &request[..]));
}

#[test]
fn echo_answers_an_empty_datagram_with_an_empty_one() {
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .transport(Transport::Datagram)
            .workers(1),
        Echo,
    );
    assert_eq!(udp_exchange(&server.local_addr(), b""), b"");
    server.stop().unwrap();
}
