//! Soak: 200,000 short connections and 50,000 datagrams against the time
//! handler; afterwards descriptors and threads are back to their baseline
//! and resident memory within 10 % of it. The TCP server in both serving
//! modes (`both_modes!`: a thread per connection, and `park_idle`).

mod common;

use std::io::Read;
use std::net::{TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use socketserver::handlers::Daytime;
use socketserver::{Server, Transport};

const CONNECTIONS: u64 = 200_000;
const DATAGRAMS: u64 = 50_000;
const CLIENTS: u64 = 4;

fn tcp_load(addr: std::net::SocketAddr, n: u64, failures: &AtomicU64) {
    let mut buf = [0u8; 64];
    for _ in 0..n {
        let ok = (|| {
            let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
            s.set_read_timeout(Some(TIMEOUT))?;
            let mut got = 0;
            loop {
                match s.read(&mut buf[got..])? {
                    0 => return Ok::<_, std::io::Error>(got == 26),
                    k => got += k,
                }
            }
        })();
        if !matches!(ok, Ok(true)) {
            failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn udp_load(addr: std::net::SocketAddr, n: u64, failures: &AtomicU64) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 64];
    for _ in 0..n {
        socket.send_to(b"\n", addr).unwrap();
        if !matches!(socket.recv_from(&mut buf), Ok((26, _))) {
            failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn run_load(tcp: std::net::SocketAddr, udp: std::net::SocketAddr, conns: u64, grams: u64) -> u64 {
    let failures = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let failures = failures.clone();
            std::thread::spawn(move || {
                tcp_load(tcp, conns / CLIENTS, &failures);
                if i < 2 {
                    udp_load(udp, grams / 2, &failures);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    failures.load(Ordering::Relaxed)
}

both_modes!(soak_leaves_descriptors_threads_and_memory_at_baseline);
fn soak_leaves_descriptors_threads_and_memory_at_baseline(park: bool) {
    // It measures this process's descriptors, threads and memory.
    let _alone = one_at_a_time();
    let tcp = spawn(
        // A fixed pool, so that the thread count is the same at rest.
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(2)
            .max_workers(2),
        Daytime::new(),
    );
    let udp = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .transport(Transport::Datagram)
            .workers(2)
            .max_workers(2),
        Daytime::new(),
    );
    let (tcp_addr, udp_addr) = (inet(&tcp.local_addr()), inet(&udp.local_addr()));
    // Warm up, so that allocator arenas and thread stacks are in place.
    assert_eq!(run_load(tcp_addr, udp_addr, 4_000, 1_000), 0);
    // Each server counts an exchange once its reply is sent, so a client
    // can have its reply before the counter moves: wait for both counts.
    let settled = |tcp_done: u64, udp_done: u64| {
        let (tcp, udp) = (&tcp, &udp);
        move || tcp.stats().completed == tcp_done && udp.stats().completed == udp_done
    };
    wait_until("the warm-up to finish", settled(4_000, 1_000));
    let (fds, threads, rss) = (fd_count(), thread_count(), rss_kib());

    let start = Instant::now();
    let failures = run_load(tcp_addr, udp_addr, CONNECTIONS, DATAGRAMS);
    let took = start.elapsed();
    wait_until(
        "the last exchanges to be counted",
        settled(4_000 + CONNECTIONS, 1_000 + DATAGRAMS),
    );
    let (fds2, threads2, rss2) = (fd_count(), thread_count(), rss_kib());
    let (t, u) = (tcp.stats(), udp.stats());
    println!(
        "{CONNECTIONS} connections and {DATAGRAMS} datagrams in {took:.1?}; \
         fds {fds} -> {fds2}, threads {threads} -> {threads2}, rss {rss} -> {rss2} KiB; \
         failures {failures}"
    );
    assert_eq!(failures, 0);
    assert_eq!(t.completed, 4_000 + CONNECTIONS);
    assert_eq!(u.completed, 1_000 + DATAGRAMS);
    assert_eq!(fds2, fds);
    assert_eq!(threads2, threads);
    assert!(rss2 as f64 <= rss as f64 * 1.10, "rss {rss} -> {rss2} KiB");
    tcp.stop().unwrap();
    udp.stop().unwrap();
}
