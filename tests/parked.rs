//! What only the `park_idle` mode has: `offload`, loop stalls, the stack
//! overflow report, the memory-map check, and I/O from outside the loop.
//! The behaviour both modes share is tested once for both, in the other
//! test files.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{connect, spawn, KillOnDrop, TIMEOUT};
use socketserver::{Connection, Error, Server, Transport};

/// A parked server on one event loop, so that its connections share it.
fn one_loop() -> socketserver::ServerBuilder {
    Server::builder()
        .bind("127.0.0.1:0")
        .park_idle(true)
        .workers(1)
}

const NAP: Duration = Duration::from_millis(200);

/// A line server: "offload" sleeps 200 ms through `offload`, "block"
/// sleeps 200 ms on the loop itself; then each line is echoed.
fn lines(conn: &mut Connection) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        match line.trim() {
            "offload" => reader.get_ref().offload(|| thread::sleep(NAP)),
            "block" => thread::sleep(NAP),
            "panic-offload" => reader.get_ref().offload(|| panic!("offloaded call failed")),
            _ => {}
        }
        reader.get_mut().write_all(line.as_bytes())?;
    }
}

fn round_trip(client: &mut TcpStream, line: &str) -> Duration {
    let start = Instant::now();
    client.write_all(line.as_bytes()).unwrap();
    let mut buf = vec![0; line.len()];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(buf, line.as_bytes());
    start.elapsed()
}

/// The slowest of 20 round trips of `other` while `slow` waits for its
/// reply to `request`.
fn others_worst_while(request: &str) -> (Duration, socketserver::Stats) {
    let server = spawn(one_loop(), lines);
    let addr = server.local_addr();
    let mut other = connect(&addr);
    round_trip(&mut other, "warm\n");
    let mut slow = connect(&addr);
    let started = Instant::now();
    slow.write_all(request.as_bytes()).unwrap();
    let mut worst = Duration::ZERO;
    while started.elapsed() < NAP - Duration::from_millis(50) {
        worst = worst.max(round_trip(&mut other, "ping\n"));
    }
    let mut reply = vec![0; request.len()];
    slow.read_exact(&mut reply).unwrap();
    assert_eq!(reply, request.as_bytes());
    assert!(started.elapsed() >= NAP, "the slow request waited its nap");
    let stats = server.stats();
    server.stop().unwrap();
    (worst, stats)
}

#[test]
fn an_offloaded_sleep_does_not_hold_up_the_other_connections() {
    let (worst, stats) = others_worst_while("offload\n");
    assert!(
        worst < Duration::from_millis(10),
        "a round trip took {worst:?}"
    );
    assert_eq!(stats.loop_stalls, 0);
}

#[test]
fn a_sleep_on_the_loop_is_counted_as_a_stall() {
    let (worst, stats) = others_worst_while("block\n");
    assert!(
        worst >= Duration::from_millis(100),
        "the other client waited {worst:?}"
    );
    assert_eq!(stats.loop_stalls, 1);
}

/// A connection whose socket never makes its handler wait (a client that
/// sends without pause, faster than the handler reads) does not hold its
/// loop: the other connections on it are served meanwhile, and its
/// `connection_timeout` still cuts it, as in the thread mode.
#[test]
fn a_connection_that_never_waits_does_not_hold_its_loop() {
    let server = spawn(
        one_loop().connection_timeout(Duration::from_secs(1)),
        |conn: &mut Connection| -> std::io::Result<()> {
            let mut first = [0; 1];
            conn.read_exact(&mut first)?;
            if &first == b"f" {
                // 16-byte reads: far slower than the client's writes, so there
                // is always more to read.
                let mut buf = [0; 16];
                while conn.read(&mut buf)? > 0 {}
                return Ok(());
            }
            conn.write_all(&first)
        },
    );
    let addr = server.local_addr();
    let mut flood = connect(&addr);
    flood.write_all(b"f").unwrap();
    let (flooding, flooded) = std::sync::mpsc::channel();
    let flooder = thread::spawn(move || {
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0usize;
        let began = Instant::now();
        loop {
            if let Err(e) = flood.write_all(&chunk) {
                return (began.elapsed(), e);
            }
            sent += chunk.len();
            if sent == 16 * chunk.len() {
                let _ = flooding.send(());
            }
        }
    });
    flooded.recv_timeout(TIMEOUT).unwrap();
    let mut other = connect(&addr);
    let took = round_trip(&mut other, "o");
    assert!(
        took < Duration::from_millis(500),
        "the other client waited {took:?}"
    );
    let (after, why) = flooder.join().unwrap();
    assert!(after < Duration::from_secs(4), "cut after {after:?}: {why}");
    server.stop().unwrap();
}

#[test]
fn a_panic_in_an_offloaded_call_costs_that_connection_only() {
    let server = spawn(one_loop(), lines);
    let addr = server.local_addr();
    let mut victim = connect(&addr);
    victim.write_all(b"panic-offload\n").unwrap();
    let mut rest = Vec::new();
    assert_eq!(
        victim.read_to_end(&mut rest).unwrap(),
        0,
        "closed unanswered"
    );
    let mut other = connect(&addr);
    round_trip(&mut other, "still here\n");
    drop(other);
    let report = server.stop().unwrap();
    assert!(report.is_clean(), "{report}");
}

#[test]
fn offload_in_the_thread_mode_just_calls() {
    let server = spawn(Server::builder().bind("127.0.0.1:0"), lines);
    let mut client = connect(&server.local_addr());
    assert!(round_trip(&mut client, "offload\n") >= NAP);
    drop(client);
    server.stop().unwrap();
}

/// A handler may do its connection's I/O from a thread of its own, as in
/// the thread mode, and it works, that thread blocking in it. But the
/// handler waits for the thread, and holds its loop meanwhile: the other
/// connections of that loop wait too (what `offload` is for).
#[test]
fn io_from_another_thread_works_but_holds_the_loop() {
    let handler = |conn: &mut Connection| {
        thread::scope(|s| {
            s.spawn(|| {
                let mut buf = [0; 5];
                conn.read_exact(&mut buf)?;
                conn.write_all(&buf)
            })
            .join()
            .unwrap()
        })
    };
    let server = spawn(one_loop(), handler);
    let addr = server.local_addr();
    let mut first = connect(&addr);
    common::wait_until("the first handler", || server.stats().active == 1);
    let mut second = connect(&addr);
    second.write_all(b"two..").unwrap();
    let mut buf = [0; 5];
    second
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(second.read_exact(&mut buf).is_err(), "the loop was free");
    second.set_read_timeout(Some(TIMEOUT)).unwrap();
    first.write_all(b"one..").unwrap();
    first.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"one..");
    second.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"two..");
    drop((first, second));
    server.stop().unwrap();
}

#[test]
fn park_idle_on_a_datagram_server_is_a_setting_error() {
    let built = Server::builder()
        .bind("127.0.0.1:0")
        .transport(Transport::Datagram)
        .park_idle(true)
        .build(socketserver::handlers::Echo);
    common::invalid_setting(&built.unwrap_err(), "park_idle");
}

#[test]
fn more_connections_than_memory_maps_allow_is_explained_at_build() {
    let built = Server::builder()
        .bind("127.0.0.1:0")
        .park_idle(true)
        .max_connections(10_000_000)
        .build(socketserver::handlers::Echo);
    let err = built.unwrap_err();
    let reason = common::invalid_setting(&err, "max_connections");
    assert!(reason.contains("vm.max_map_count"), "{reason}");
    for bad in [0, 1 << 40] {
        let built = Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(true)
            .parked_stack_size(bad)
            .build(socketserver::handlers::Echo);
        assert!(matches!(built, Err(Error::InvalidSetting { .. })));
    }
}

const OVERFLOW_CHILD: &str = "SOCKETSERVER_TEST_OVERFLOW_CHILD";

/// Run in a child process: a parked handler recursing without end.
#[test]
fn overflow_child() {
    if std::env::var_os(OVERFLOW_CHILD).is_none() {
        return;
    }
    fn deep(n: u64, pad: &mut [u8; 512]) -> u64 {
        pad[n as usize % 512] = n as u8;
        // Never true: the stack ends first.
        if n == u64::MAX {
            return 0;
        }
        let mut next = [0u8; 512];
        next[0] = pad[0];
        std::hint::black_box(&mut next);
        deep(n + 1, &mut next) + u64::from(next[1])
    }
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(true)
            .parked_stack_size(128 * 1024),
        |conn: &mut Connection| {
            let mut pad = [0u8; 512];
            let n = deep(0, &mut pad);
            conn.write_all(&n.to_be_bytes())
        },
    );
    let mut client = connect(&server.local_addr());
    let mut buf = [0; 8];
    let _ = client.read(&mut buf);
    unreachable!("the process should have ended");
}

#[test]
fn a_stack_overflow_in_a_parked_handler_is_reported_in_words() {
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "overflow_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(OVERFLOW_CHILD, "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let mut stderr = String::new();
    let deadline = Instant::now() + TIMEOUT * 4;
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.0.wait().unwrap();
    assert!(Instant::now() < deadline, "the child took too long");
    assert!(!status.success(), "the child should have aborted");
    assert!(
        stderr.contains("stack overflow in a parked handler; raise"),
        "stderr: {stderr}"
    );
}

/// A handler that holds its loop's thread past the shutdown deadline (a
/// sleep, not offloaded) kept its loop from cutting, or even counting,
/// its connection: the report calls it forced, not drained, as the
/// thread mode does, and the shutdown is not clean.
#[test]
fn a_handler_holding_its_loop_at_the_deadline_is_reported_forced() {
    let server = spawn(
        one_loop().shutdown_timeout(Duration::from_millis(200)),
        |conn: &mut Connection| {
            let mut go = [0; 1];
            conn.read_exact(&mut go)?;
            thread::sleep(Duration::from_secs(2));
            conn.write_all(b"late")
        },
    );
    let mut client = connect(&server.local_addr());
    client.write_all(b"g").unwrap();
    common::wait_until("the handler asleep", || server.stats().active == 1);
    let report = server.stop().unwrap();
    assert_eq!((report.forced, report.drained), (1, 0), "{report}");
    assert!(!report.is_clean(), "{report}");
}

/// `connection_timeout` holds across a read timeout followed by an
/// offloaded call (the read's timer had fired, and nothing re-armed the
/// deadline): the connection is cut at its deadline, and a reply written
/// after it never reaches the client, as in the thread mode.
#[test]
fn the_connection_deadline_holds_through_an_offloaded_call() {
    let server = spawn(
        one_loop()
            .read_timeout(Duration::from_millis(100))
            .connection_timeout(Duration::from_millis(400)),
        |conn: &mut Connection| {
            let mut buf = [0; 1];
            // Nothing comes: the read times out.
            let _ = conn.read(&mut buf);
            conn.offload(|| thread::sleep(Duration::from_millis(800)));
            conn.write_all(b"too late")
        },
    );
    let mut client = connect(&server.local_addr());
    let started = Instant::now();
    let mut got = Vec::new();
    let _ = client.read_to_end(&mut got);
    assert_eq!(got, b"", "a reply after the deadline reached the client");
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    common::wait_until("the deadline counted", || server.stats().timed_out == 1);
    server.stop().unwrap();
}

/// A handler that does I/O while it unwinds (a drop guard that reads)
/// does not park: had it parked mid-unwind, the next handler resumed on
/// its thread would find `std::thread::panicking()` true. Its read waits
/// in place, within its read timeout, holding the loop meanwhile.
#[test]
fn a_handler_unwinding_does_not_park_its_panic_onto_the_next() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{mpsc, Mutex};
    struct ReadOnDrop<'a>(&'a mut Connection);
    impl Drop for ReadOnDrop<'_> {
        fn drop(&mut self) {
            let mut one = [0; 1];
            let _ = self.0.read(&mut one);
        }
    }
    let (about_to_panic, panicking) = mpsc::channel();
    let (saw, seen) = mpsc::channel();
    let (about_to_panic, saw) = (Mutex::new(about_to_panic), Mutex::new(saw));
    let first = AtomicBool::new(true);
    let server = spawn(
        one_loop().read_timeout(Duration::from_millis(300)),
        move |conn: &mut Connection| {
            if first.swap(false, Ordering::SeqCst) {
                let _guard = ReadOnDrop(conn);
                about_to_panic.lock().unwrap().send(()).unwrap();
                panic!("the first handler panics, and reads as it unwinds");
            }
            saw.lock().unwrap().send(thread::panicking()).unwrap();
            Ok(())
        },
    );
    let _first = connect(&server.local_addr());
    panicking.recv_timeout(TIMEOUT).unwrap();
    let _second = connect(&server.local_addr());
    assert_eq!(seen.recv_timeout(TIMEOUT), Ok(false));
    server.stop().unwrap();
}

/// A handler that keeps its loop's thread (a sleep here; a lock held
/// across connection I/O does the same, and may never let go) is reported
/// while it keeps it: `loop_stalls` counts it then, once, not only when
/// the handler returns.
#[test]
fn a_loop_held_by_a_handler_is_reported_while_held() {
    use std::sync::{mpsc, Mutex};
    let (done, returned) = mpsc::channel();
    let done = Mutex::new(done);
    let server = spawn(one_loop(), move |conn: &mut Connection| {
        let mut go = [0; 1];
        conn.read_exact(&mut go)?;
        thread::sleep(Duration::from_millis(1500));
        done.lock().unwrap().send(()).unwrap();
        conn.write_all(b"ok")
    });
    let mut client = connect(&server.local_addr());
    client.write_all(b"g").unwrap();
    common::wait_until("the stall reported", || server.stats().loop_stalls == 1);
    assert!(
        returned.try_recv().is_err(),
        "reported only once the handler had returned"
    );
    let mut ok = [0; 2];
    client.read_exact(&mut ok).unwrap();
    assert_eq!(server.stats().loop_stalls, 1, "counted twice");
    server.stop().unwrap();
}
