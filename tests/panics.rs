//! Panicking handlers cost one connection each, never a worker thread (nor,
//! under `park_idle`, an event loop): in both serving modes (`both_modes!`).

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use socketserver::{Connection, Failure, Server};

both_modes!(panics_on_ten_times_workers_connections_leave_the_pool_whole);
fn panics_on_ten_times_workers_connections_leave_the_pool_whole(park: bool) {
    const WORKERS: usize = 3;
    let hooked = Arc::new(AtomicUsize::new(0));
    let hook = {
        let hooked = hooked.clone();
        move |f: &Failure<'_>| {
            assert!(
                matches!(
                    f,
                    Failure::Panic {
                        message: "boom",
                        ..
                    }
                ),
                "{f}"
            );
            hooked.fetch_add(1, Ordering::SeqCst);
        }
    };
    // It sets this process's panic hook.
    let _alone = one_at_a_time();
    // Its server's threads, told apart from those of the other mode's run,
    // which may still be ending.
    let name = if park { "panic-park" } else { "panic-thrd" };
    let prefix = format!("{name}-");
    // Keep the test's output readable: the panics are expected.
    std::panic::set_hook(Box::new(|_| {}));
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(WORKERS)
            // A fixed pool: a client that comes while the last worker
            // still ends its panicked call does not grow it.
            .max_workers(WORKERS)
            .thread_name(name)
            .on_error(hook),
        |conn: &mut Connection| {
            let mut b = [0u8; 1];
            conn.read_exact(&mut b)?;
            match b[0] {
                b'p' => panic!("boom"),
                _ => conn.write_all(b"ok"),
            }
        },
    );
    let addr = server.local_addr();
    assert_eq!(tcp_exchange(&addr, Some(b"x")), b"ok");
    // The workers (or event loops) and the run thread, all started; in the
    // thread mode the deadline watchdog too (queue_timeout).
    let expected = WORKERS + if park { 1 } else { 2 };
    wait_until("the server's threads to start", || {
        threads_named(&prefix) == expected
    });
    let threads = threads_named(&prefix);
    for _ in 0..10 * WORKERS {
        assert_eq!(tcp_exchange(&addr, Some(b"p")), b"");
    }
    assert_eq!(tcp_exchange(&addr, Some(b"x")), b"ok");
    let stats = server.stats();
    assert_eq!(stats.panics, (10 * WORKERS) as u64);
    assert_eq!(stats.completed, 2);
    assert_eq!(hooked.load(Ordering::SeqCst), 10 * WORKERS);
    assert_eq!(
        threads_named(&prefix),
        threads,
        "a worker died or was replaced"
    );
    let _ = std::panic::take_hook();
    server.stop().unwrap();
}
