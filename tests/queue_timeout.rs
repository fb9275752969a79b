//! `queue_timeout`: in the thread mode, a client that waits for a worker is
//! seen, served in turn by the first worker free, and told and closed once
//! it has waited too long, never left connected and silent.
//!
//! * `a_client_waiting_too_long_gets_the_busy_message`: past the timeout,
//!   the busy message, the close, `Stats::queue_timeouts`; the server
//!   still serves.
//! * `waiting_clients_are_served_in_the_order_they_came`: held, counted in
//!   `Stats::queued`, served by the first worker free, first come first.
//! * `a_queued_connection_times_out_too`: with `queue(n)`, the same.
//! * `a_late_client_goes_behind_those_waiting_past_the_queue`: with
//!   `queue(n)`, a free place in the queue does not let a newcomer ahead.
//! * `waiting_clients_are_counted_as_dropped_at_shutdown`.
//! * `a_zero_queue_timeout_is_refused`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use socketserver::handlers::Echo;
use socketserver::{Server, ServerBuilder};

/// One worker and no more, so that a second client waits.
fn one_worker(queue_timeout: Duration) -> ServerBuilder {
    Server::builder()
        .bind("127.0.0.1:0")
        .workers(1)
        .max_workers(1)
        .queue_timeout(queue_timeout)
        .busy_message("busy\r\n")
}

/// The one worker busy with a first client, and a second client that
/// has sent its request: (first, second).
fn one_busy_one_waiting(addr: &socketserver::Addr) -> (TcpStream, TcpStream) {
    let mut first = connect(addr);
    round_trip(&mut first, b"1");
    let mut second = connect(addr);
    second.write_all(b"2").unwrap();
    (first, second)
}

#[test]
fn a_client_waiting_too_long_gets_the_busy_message() {
    let timeout = Duration::from_millis(300);
    let server = spawn(one_worker(timeout), Echo);
    let addr = server.local_addr();
    let began = Instant::now();
    let (mut first, mut second) = one_busy_one_waiting(&addr);
    assert_eq!(read_to_end(&mut second), b"busy\r\n");
    let waited = began.elapsed();
    assert!(waited >= timeout, "closed after {waited:?}");
    assert!(waited < Duration::from_secs(3), "closed after {waited:?}");

    let stats = server.stats();
    assert_eq!((stats.queue_timeouts, stats.queued), (1, 0), "{stats:?}");
    round_trip(&mut first, b"still served");
    drop(first);
    assert_eq!(tcp_exchange(&addr, Some(b"3")), b"3");
    server.stop().unwrap();
}

#[test]
fn waiting_clients_are_served_in_the_order_they_came() {
    // No timeout in practice: the largest a Duration holds, which must
    // not overflow a deadline.
    let server = spawn(one_worker(Duration::MAX), Echo);
    let addr = server.local_addr();
    let (first, mut second) = one_busy_one_waiting(&addr);
    wait_until("the second to wait, seen", || server.stats().queued == 1);
    let mut third = connect(&addr);
    third.write_all(b"3").unwrap();
    wait_until("the third to wait, seen", || server.stats().queued == 2);

    drop(first);
    let mut back = [0u8; 1];
    second.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"2");
    expect_no_reply(&mut third, Duration::from_millis(200));
    drop(second);
    third.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"3");
    let stats = server.stats();
    assert_eq!((stats.queue_timeouts, stats.queued), (0, 0), "{stats:?}");
    server.stop().unwrap();
}

/// With `queue(n)`, a client that comes once others wait past the queue
/// goes behind them, not into the queue's free place ahead of them.
#[test]
fn a_late_client_goes_behind_those_waiting_past_the_queue() {
    // Room for two past the queue (`backlog`): with both there, the run
    // thread waits rather than accepts, and decides anew once the queue
    // has a free place.
    let server = spawn(one_worker(Duration::MAX).queue(1).backlog(2), Echo);
    let addr = server.local_addr();
    let (first, mut second) = one_busy_one_waiting(&addr);
    wait_until("the second queued", || server.stats().queued == 1);
    let mut waiting: Vec<TcpStream> = Vec::new();
    for (n, name) in [(2, b"3"), (3, b"4")] {
        let mut client = connect(&addr);
        client.write_all(name).unwrap();
        waiting.push(client);
        wait_until("a client to wait past the queue", || {
            server.stats().queued == n
        });
    }
    // The worker takes the queued one: the queue has a free place.
    drop(first);
    let mut back = [0u8; 1];
    second.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"2");
    // It waits in the listen backlog, past-the-queue places being taken.
    let mut late = connect(&addr);
    late.write_all(b"5").unwrap();
    drop(second);
    for (client, name) in waiting.iter_mut().zip([b"3", b"4"]) {
        expect_no_reply(&mut late, Duration::from_millis(100));
        client.read_exact(&mut back).unwrap();
        assert_eq!(&back, name);
        client.shutdown(std::net::Shutdown::Write).unwrap();
    }
    late.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"5");
    server.stop().unwrap();
}

#[test]
fn a_queued_connection_times_out_too() {
    let server = spawn(one_worker(Duration::from_millis(300)).queue(1), Echo);
    let addr = server.local_addr();
    let (_first, mut second) = one_busy_one_waiting(&addr);
    assert_eq!(read_to_end(&mut second), b"busy\r\n");
    assert_eq!(server.stats().queue_timeouts, 1);
    server.stop().unwrap();
}

#[test]
fn waiting_clients_are_counted_as_dropped_at_shutdown() {
    let server = spawn(one_worker(Duration::from_secs(30)), Echo);
    let addr = server.local_addr();
    let (_first, mut second) = one_busy_one_waiting(&addr);
    wait_until("the second to wait", || server.stats().queued == 1);
    let report = server.stop().unwrap();
    assert_eq!(report.dropped, 1, "{report:?}");
    let mut rest = Vec::new();
    match second.read_to_end(&mut rest) {
        Ok(_) => assert_eq!(rest, b"", "closed, not served"),
        // Closed with the request unread.
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
    }
}

#[test]
fn a_zero_queue_timeout_is_refused() {
    let err = Server::builder()
        .bind("127.0.0.1:0")
        .queue_timeout(Duration::ZERO)
        .build(Echo)
        .unwrap_err();
    invalid_setting(&err, "queue_timeout");
}
