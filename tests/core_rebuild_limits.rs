//! What the rebuilt core guarantees of its settings, its pool and its
//! counters: bad settings are errors in `build()`, extreme ones saturate,
//! the default pool serves hundreds of persistent clients, a panic payload
//! that panics again costs nothing, and each counter counts what it says.
//!
//! Shutdown is in `core_rebuild.rs`.
//!
//! Tests that serve run in both serving modes (`both_modes!`: a thread per
//! connection, and `park_idle`), except these, thread mode only, about the
//! pool of worker threads, which parked connections do not use (under
//! `park_idle`, `workers` event loops serve them all, and `Stats::workers`
//! counts those loops and the offload helpers):
//! * `max_workers_alone_caps_the_workers_and_serves`: the pool's size;
//! * `the_default_pool_serves_two_hundred_persistent_clients_at_once`: the
//!   pool growing to a thread per client;
//! * `an_exhausted_pool_makes_clients_wait_and_is_counted`: `max_workers`
//!   threads busy, and `pool_exhausted`.
//!
//! `duration_max_settings_saturate_instead_of_panicking` runs its part about
//! `worker_idle_timeout` (threads above `workers`) in the thread mode only.
//! `settings_that_used_to_panic_later_are_refused_by_build` checks
//! `build()`'s settings, served by neither mode.

mod common;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use socketserver::handlers::Echo;
use socketserver::{Connection, Error, Failure, Server};

/// The setting `build()` refused, or `None` if it built.
fn refused(builder: socketserver::ServerBuilder) -> Option<&'static str> {
    match builder.bind("127.0.0.1:0").build(Echo) {
        Ok(_) => None,
        Err(Error::InvalidSetting { setting, .. }) => Some(setting),
        Err(e) => panic!("not an InvalidSetting: {e:?}"),
    }
}

#[test]
fn settings_that_used_to_panic_later_are_refused_by_build() {
    let b = Server::builder;
    assert_eq!(refused(b().thread_name("a\0b")), Some("thread_name"));
    assert_eq!(refused(b().stack_size(usize::MAX)), Some("stack_size"));
    assert_eq!(refused(b().workers(4).max_workers(2)), Some("max_workers"));
    assert_eq!(refused(b().workers(2).max_workers(2)), None);
}

#[test]
fn max_workers_alone_caps_the_workers_and_serves() {
    let server = spawn(Server::builder().bind("127.0.0.1:0").max_workers(1), Echo);
    let addr = server.local_addr();
    wait_until("the worker to start", || server.stats().workers == 1);
    for _ in 0..3 {
        assert_eq!(tcp_exchange(&addr, Some(b"one")), b"one");
    }
    assert_eq!(server.stats().workers, 1);
    assert_eq!(server.stats().completed, 3);
    server.stop().unwrap();
}

both_modes!(duration_max_settings_saturate_instead_of_panicking);
fn duration_max_settings_saturate_instead_of_panicking(park: bool) {
    // No limit on the drain: with nothing busy, stop is still prompt.
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(2)
            .shutdown_timeout(Duration::MAX),
        Echo,
    );
    let mut idle = connect(&server.local_addr());
    round_trip(&mut idle, b"x");
    wait_until("the handler serving", || server.stats().active == 1);
    let (report, took) = stop_timed(server);
    println!("stop with shutdown_timeout(Duration::MAX) took {took:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert_eq!((report.closed_idle, report.forced), (1, 0), "{report}");

    // A connection deadline of Duration::MAX never comes.
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(2)
            .connection_timeout(Duration::MAX),
        Echo,
    );
    let mut client = connect(&server.local_addr());
    round_trip(&mut client, b"early");
    std::thread::sleep(Duration::from_millis(200));
    round_trip(&mut client, b"200 ms later");
    assert_eq!(server.stats().timed_out, 0);
    drop(client);
    wait_until("the connection to end", || server.stats().completed == 1);
    assert_eq!(server.stats().timed_out, 0);
    server.stop().unwrap();

    // Threads above `workers` wait without limit for work, and still stop.
    // (Parked connections hold no thread: the pool does not grow.)
    if park {
        return;
    }
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .workers(1)
            .max_workers(4)
            .worker_idle_timeout(Duration::MAX),
        Echo,
    );
    let addr = server.local_addr();
    let mut held: Vec<_> = (0..3).map(|_| connect(&addr)).collect();
    for c in &mut held {
        round_trip(c, b"grow");
    }
    assert!(server.stats().workers >= 3, "{:?}", server.stats());
    drop(held);
    wait_until("the handlers to finish", || server.stats().active == 0);
    assert_eq!(tcp_exchange(&addr, Some(b"again")), b"again");
    let (report, took) = stop_timed(server);
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert!(report.is_clean(), "{report}");
}

/// A panic payload whose `Drop` panics too. It is dropped after the panic
/// was caught, not while unwinding (which would abort the process).
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic!("the panic payload's Drop panicked");
    }
}

both_modes!(a_panic_payload_that_panics_when_dropped_costs_one_connection);
fn a_panic_payload_that_panics_when_dropped_costs_one_connection(park: bool) {
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(1)
            .max_workers(1)
            .max_per_source(1),
        |conn: &mut Connection| {
            let mut buf = [0u8; 16];
            let n = conn.read(&mut buf)?;
            if buf[..n].starts_with(b"bomb") {
                std::panic::panic_any(Bomb);
            }
            conn.write_all(&buf[..n])
        },
    );
    let addr = server.local_addr();
    assert_eq!(tcp_exchange(&addr, Some(b"bomb")), b"");
    // The same source, on the one worker: its count and the worker are back.
    assert_eq!(tcp_exchange(&addr, Some(b"next")), b"next");
    wait_until("the second handler to finish", || {
        server.stats().active == 0
    });
    let stats = server.stats();
    assert_eq!((stats.panics, stats.completed), (1, 1), "{stats:?}");
    assert_eq!((stats.active, stats.workers), (0, 1), "{stats:?}");
    assert_eq!(stats.rejected_per_source, 0);
    let (report, took) = stop_timed(server);
    println!("stop after the panicking payload took {took:?}");
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert!(report.is_clean(), "{report}");
}

#[test]
fn the_default_pool_serves_two_hundred_persistent_clients_at_once() {
    let server = spawn(Server::builder().bind("127.0.0.1:0"), Echo);
    let addr = server.local_addr();
    let t = Instant::now();
    let mut clients: Vec<_> = (0..200).map(|_| connect(&addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        round_trip(c, format!("client {i}").as_bytes());
    }
    let took = t.elapsed();
    println!("200 persistent clients connected and served in {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    let stats = server.stats();
    assert_eq!(stats.active, 200, "{stats:?}");
    assert!(stats.workers >= 200, "{stats:?}");
    assert_eq!(stats.pool_exhausted, 0, "{stats:?}");
    let (report, _) = stop_timed(server);
    assert_eq!(report.closed_idle, 200, "{report}");
    drop(clients);
}

#[test]
fn an_exhausted_pool_makes_clients_wait_and_is_counted() {
    let server = spawn(Server::builder().bind("127.0.0.1:0").max_workers(2), Echo);
    let addr = server.local_addr();
    let mut first = connect(&addr);
    round_trip(&mut first, b"1");
    let mut second = connect(&addr);
    round_trip(&mut second, b"2");
    wait_until("the pool to be exhausted", || {
        server.stats().pool_exhausted >= 1
    });
    let mut third = connect(&addr);
    third.write_all(b"3").unwrap();
    expect_no_reply(&mut third, Duration::from_millis(300));
    assert_eq!(server.stats().workers, 2);
    drop(first);
    let mut back = [0u8; 1];
    third.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"3", "served once a worker was free");
    server.stop().unwrap();
}

both_modes!(max_connections_reached_counts_held_connections_only);
fn max_connections_reached_counts_held_connections_only(park: bool) {
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(4)
            .max_connections(4),
        Echo,
    );
    let addr = server.local_addr();
    // Four workers accepting at once hold four places, but no connection.
    for i in 0..5u8 {
        assert_eq!(tcp_exchange(&addr, Some(&[i])), [i]);
        wait_until("the connection to be closed", || server.stats().active == 0);
    }
    assert_eq!(server.stats().max_connections_reached, 0);

    // Four held at once do reach it, and a fifth waits.
    let mut held: Vec<_> = (0..4).map(|_| connect(&addr)).collect();
    for c in &mut held {
        round_trip(c, b"held");
    }
    assert_eq!(server.stats().max_connections_reached, 1);
    let mut fifth = connect(&addr);
    fifth.write_all(b"5").unwrap();
    expect_no_reply(&mut fifth, Duration::from_millis(300));
    drop(held.pop());
    let mut back = [0u8; 1];
    fifth.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"5");
    server.stop().unwrap();
}

both_modes!(a_silent_client_is_an_idle_timeout_not_a_handler_error);
fn a_silent_client_is_an_idle_timeout_not_a_handler_error(park: bool) {
    let failures = Arc::new(Mutex::new(Vec::new()));
    let hook = {
        let failures = Arc::clone(&failures);
        move |f: &Failure<'_>| {
            let after = match f {
                Failure::IdleTimeout { after, .. } => Some(*after),
                _ => None,
            };
            failures
                .lock()
                .unwrap()
                .push((after, f.peer().clone(), f.to_string()));
        }
    };
    let read_timeout = Duration::from_millis(300);
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(2)
            .read_timeout(read_timeout)
            .on_error(hook),
        Echo,
    );
    let mut client = connect(&server.local_addr());
    let t = Instant::now();
    assert_eq!(read_to_end(&mut client), b"", "closed after the timeout");
    let took = t.elapsed();
    println!("a silent client was closed after {took:?}");
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    wait_until("the idle timeout counted", || {
        server.stats().idle_timeouts == 1
    });
    let stats = server.stats();
    assert_eq!((stats.handler_errors, stats.completed), (0, 0), "{stats:?}");
    let failures = failures.lock().unwrap();
    assert_eq!(failures.len(), 1, "{failures:?}");
    let (after, peer, text) = &failures[0];
    assert_eq!(*after, Some(read_timeout), "{text}");
    assert_eq!(inet(peer), client.local_addr().unwrap());
    assert!(text.contains("read timeout"), "{text}");
    assert!(text.contains("300ms"), "{text}");
    drop(failures);
    server.stop().unwrap();
}
