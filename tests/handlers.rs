//! Every shipped handler over TCP and UDP, IPv4 and IPv6; the TCP servers
//! in both serving modes (`both_modes!`). Not run parked, as it serves
//! datagrams only (`park_idle` is for streams):
//! `echo_answers_an_empty_datagram_with_an_empty_one`.

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

both_modes!(daytime_sends_the_local_time_in_the_seed_format);
fn daytime_sends_the_local_time_in_the_seed_format(park: bool) {
    over_both(park, Daytime::new(), b"", |reply| {
        assert_eq!(reply.len(), 26, "{}", String::from_utf8_lossy(reply));
        let sent = seed_time(reply);
        let now = chrono::Local::now().naive_local();
        assert!((now - sent).num_seconds().abs() < 5, "{sent} vs {now}");
    });
}

both_modes!(daytime_takes_a_format);
fn daytime_takes_a_format(park: bool) {
    let day = Daytime::with_format("%Y-%m-%d\r\n").unwrap();
    let today = chrono::Local::now().format("%Y-%m-%d\r\n").to_string();
    over_both(park, day, b"", |reply| {
        assert_eq!(String::from_utf8_lossy(reply), today);
    });
}

both_modes!(greeting_says_connected_by_default);
fn greeting_says_connected_by_default(park: bool) {
    over_both(park, Greeting::default(), b"", |reply| {
        assert_eq!(reply, b"connected")
    });
    over_both(park, Greeting::new("hi\n"), b"", |reply| {
        assert_eq!(reply, b"hi\n")
    });
}

both_modes!(echo_sends_back_what_it_gets);
fn echo_sends_back_what_it_gets(park: bool) {
    let request: Vec<u8> = (0..=255u8).cycle().take(4000).collect();
    over_both(park, Echo, &request, |reply| {
        assert_eq!(reply, &request[..])
    });
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

both_modes!(a_large_greeting_is_no_udp_amplifier);
/// Over UDP a greeting larger than the amplification limit for its
/// request is not sent; over TCP (in each mode) it is sent whole.
fn a_large_greeting_is_no_udp_amplifier(park: bool) {
    let big = vec![b'x'; 1000];
    let udp = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .transport(Transport::Datagram)
            .workers(1),
        Greeting::new(big.clone()),
    );
    let client = udp_client(&udp.local_addr(), std::time::Duration::from_millis(300));
    client.send_to(b"hello", inet(&udp.local_addr())).unwrap();
    let mut buf = [0u8; 2048];
    let got = client.recv_from(&mut buf);
    assert!(got.is_err(), "a 1000-byte reply to 5 bytes: {got:?}");
    // 400 bytes of request allow 1200 of reply.
    client
        .send_to(&[b'r'; 400], inet(&udp.local_addr()))
        .unwrap();
    let (n, _) = client.recv_from(&mut buf).expect("the greeting");
    assert_eq!(&buf[..n], &big[..]);
    udp.stop().unwrap();
    let tcp = spawn(
        Server::builder().bind("127.0.0.1:0").park_idle(park),
        Greeting::new(big.clone()),
    );
    assert_eq!(tcp_exchange(&tcp.local_addr(), None), big);
    tcp.stop().unwrap();
}
