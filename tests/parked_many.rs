//! Ten thousand idle connections plus fifty active ones on two event
//! loops: every client served, on a handful of threads. The idle clients
//! live in a child process (a process may hold at most 20,000 descriptors
//! on the machines this runs on), so this file holds this one test alone:
//! its thread count is the server's.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{connect, KillOnDrop, TIMEOUT};
use socketserver::handlers::Echo;
use socketserver::Server;

const IDLE: usize = 10_000;
const ACTIVE: usize = 50;
const WORKERS: usize = 2;
const CHILD: &str = "SOCKETSERVER_TEST_IDLE_CLIENTS";

/// This process's soft limit on open descriptors.
fn nofile() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let soft = line.split_whitespace().nth(3).unwrap();
    soft.parse().unwrap_or(u64::MAX)
}

fn threads_of_this_process() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Run in the child: hold `IDLE` connections open until stdin closes.
fn hold_idle_clients(addr: SocketAddr) {
    let mut held = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        let s = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect");
        held.push(s);
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
}

#[test]
fn ten_thousand_idle_and_fifty_active_on_two_loops() {
    if let Ok(addr) = std::env::var(CHILD) {
        return hold_idle_clients(addr.parse().unwrap());
    }
    if nofile() < (IDLE + 2 * ACTIVE + 100) as u64 {
        eprintln!("skipped: the open-files limit is below {IDLE} (ulimit -n)");
        return;
    }
    // The idle clients never send a byte: new connections, which shutdown
    // closes at the end of their grace, half the shutdown timeout. Closing
    // 10,000 takes the loops a while on a busy machine: 1 s of margin
    // after the grace, so that none is counted forced.
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .park_idle(true)
        .workers(WORKERS)
        .shutdown_timeout(Duration::from_secs(2))
        .build(Echo)
        .unwrap();
    let addr = server.local_addr();
    let server = server.spawn().unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "ten_thousand_idle_and_fifty_active_on_two_loops",
            "--nocapture",
        ])
        .env(CHILD, addr.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut line = String::new();
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    while !line.starts_with("ready") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the client process ended"
        );
    }
    // Connected is not yet accepted: wait for the server to take them all.
    let deadline = Instant::now() + TIMEOUT * 4;
    while server.stats().active < IDLE as u64 {
        assert!(Instant::now() < deadline, "{:?}", server.stats());
        std::thread::yield_now();
    }
    let started = Instant::now();
    let mut newcomer = connect(&addr);
    newcomer.write_all(b"hello").unwrap();
    let mut buf = [0; 5];
    newcomer.read_exact(&mut buf).unwrap();
    let first_reply = started.elapsed();
    assert!(
        first_reply < Duration::from_millis(100),
        "took {first_reply:?}"
    );

    let active: Vec<_> = (0..ACTIVE).map(|_| connect(&addr)).collect();
    let threads: Vec<_> = active
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                for i in 0..100u32 {
                    c.write_all(&i.to_be_bytes()).unwrap();
                    let mut back = [0; 4];
                    c.read_exact(&mut back).unwrap();
                    assert_eq!(back, i.to_be_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = server.stats();
    assert!(stats.active > IDLE as u64, "{stats:?}");
    assert!(stats.parked >= IDLE as u64, "{stats:?}");
    assert_eq!(stats.workers, WORKERS as u64, "{stats:?}");
    // This test's own thread, the harness's main thread and the server's
    // run thread, besides its event loops.
    let threads = threads_of_this_process();
    assert!(threads <= WORKERS + 4, "{threads} threads");

    drop(newcomer);
    // The newcomer and the active clients have closed: once the server has
    // seen them end, only the idle ones are left for shutdown to close.
    common::wait_until("only the idle connections left", || {
        server.stats().active == IDLE as u64
    });
    let started = Instant::now();
    let report = server.stop().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop took {:?}",
        started.elapsed()
    );
    assert_eq!(report.closed_idle, IDLE, "{report}");
    assert!(report.is_clean(), "{report}");
    drop(child);
}
