//! The elastic pool: `workers` threads always, growing to `max_workers`
//! when all are busy, threads above `workers` retiring when idle.
//!
//! Thread mode only: under `park_idle` no connection holds a thread, so
//! there is no pool to grow (the `workers` event loops serve them all).

mod common;

use std::time::{Duration, Instant};

use common::*;
use socketserver::Server;

#[test]
fn the_pool_grows_when_busy_and_shrinks_when_idle() {
    let idle_timeout = Duration::from_millis(300);
    let (gate, started) = Gate::new();
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .workers(1)
            .max_workers(4)
            .worker_idle_timeout(idle_timeout)
            .stack_size(256 * 1024),
        gate.handler(b"done"),
    );
    let addr = server.local_addr();
    wait_until("the first worker to start", || server.stats().workers == 1);
    let mut clients: Vec<_> = (0..6).map(|_| connect(&addr)).collect();
    // Four served at once, no more: the ceiling holds.
    expect_started(&started, 4);
    assert!(started.recv_timeout(Duration::from_millis(300)).is_err());
    assert_eq!(server.stats().workers, 4);
    gate.open();
    for c in &mut clients {
        assert_eq!(read_to_end(c), b"done");
    }
    let freed = Instant::now();
    wait_until("the extra threads to retire", || {
        server.stats().workers == 1
    });
    let took = freed.elapsed();
    println!("3 extra threads retired {took:?} after the work ended");
    assert!(
        took >= idle_timeout.mul_f64(0.8) && took < idle_timeout * 3,
        "{took:?}"
    );
    // The one left still serves.
    assert_eq!(tcp_exchange(&addr, None), b"done");
    server.stop().unwrap();
}
