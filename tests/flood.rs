//! A connection flood against blocked workers: the process holds at most
//! `max_connections`, memory stays flat, and every client is served once
//! the workers free up. In both serving modes (`both_modes!`): with a
//! thread per connection the limit is `workers` busy plus `queue` waiting;
//! parked, `max_connections` handlers all running (the `queue` is not
//! used), each waiting at the gate through `offload`.

mod common;

use std::time::Duration;

use common::*;
use socketserver::Server;

const WORKERS: usize = 2;
const QUEUE: usize = 4;
const BACKLOG: u32 = 8;
const EXTRA: usize = 20;

both_modes!(a_flood_is_held_to_max_connections_and_then_served);
fn a_flood_is_held_to_max_connections_and_then_served(park: bool) {
    // It measures this process's memory.
    let _alone = one_at_a_time();
    let (gate, started) = Gate::new();
    let handler = gate.handler(b"done");
    let max_connections = WORKERS + QUEUE;
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(WORKERS)
            .max_workers(WORKERS)
            .queue(QUEUE)
            .backlog(BACKLOG)
            .max_connections(max_connections),
        handler,
    );
    let addr = server.local_addr();
    let rss_before = rss_kib();
    let clients = QUEUE + BACKLOG as usize + EXTRA;
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let addr = inet(&addr);
            std::thread::spawn(move || {
                // Connections beyond the backlog are retried by the kernel
                // (SYN and SYN-ACK retransmits at 1 s, 3 s, 7 s).
                let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
                s.set_read_timeout(Some(Duration::from_secs(8)))?;
                let mut reply = Vec::new();
                std::io::Read::read_to_end(&mut s, &mut reply)?;
                Ok::<_, std::io::Error>(reply)
            })
        })
        .collect();
    expect_started(&started, WORKERS);
    // Threads: `WORKERS` busy and the queue full. Parked: as many handlers
    // running, the first `WORKERS` at the gate on the `max_workers` helper
    // threads and the others waiting for one.
    wait_until("max_connections to be held", || {
        let st = server.stats();
        st.active + st.queued == max_connections as u64
    });
    // Watch for a while: the process never holds more than the limit.
    let mut most = 0;
    for _ in 0..100 {
        let st = server.stats();
        let held = st.active + st.queued;
        most = most.max(held);
        assert!(held <= max_connections as u64, "{st:?}");
        assert!(st.accepted <= max_connections as u64, "{st:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let grew = rss_kib().saturating_sub(rss_before);
    println!(
        "held at most {most} connections; resident memory grew {grew} KiB with {clients} clients"
    );
    assert_eq!(most, max_connections as u64);
    // The bound stated in docs/reliability.md: 8 MiB, for the server and the test's
    // own client threads together.
    assert!(grew < 8 * 1024, "grew {grew} KiB");
    assert!(server.stats().max_connections_reached >= 1);

    gate.open();
    let mut served = 0;
    for t in threads {
        match t.join().unwrap() {
            Ok(reply) => {
                assert_eq!(reply, b"done");
                served += 1;
            }
            // With the accept queue full, Linux answers further SYNs with
            // SYN cookies and then drops the completed handshake: the
            // client believes it is connected, the server never saw it.
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
        }
    }
    // A client that gave up may still be accepted as it closes (its SYN
    // cookie validated by its last segments): served, but after its thread
    // has ended.
    wait_until("the last connections accepted to end", || {
        let st = server.stats();
        st.active == 0 && st.queued == 0
    });
    let stats = server.stats();
    println!("{served} of {clients} clients served; the kernel dropped the rest; {stats:?}");
    // Every connection the server accepted was served, without error.
    assert_eq!(stats.completed, stats.accepted);
    assert_eq!(stats.handler_errors, 0);
    assert!(
        served >= (max_connections + BACKLOG as usize) as u64,
        "{served}"
    );
    server.stop().unwrap();
}
