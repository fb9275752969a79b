//! Clients that send nothing, trickle, never read, reset, or come many from
//! one address: each costs only its own connection; in both serving modes
//! (`both_modes!`: a thread per connection, and `park_idle`).
//!
//! Thread mode only, as they measure how long a connection holds one of a
//! fixed number of worker threads, and a parked connection holds none:
//! `slowloris_on_a_fixed_pool` and
//! `a_client_that_never_reads_frees_its_worker_at_the_write_timeout` (the
//! write timeout itself is checked in both modes by
//! `a_client_that_never_reads_is_cut_at_the_write_timeout`).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use socket2::{Domain, SockRef, Socket, Type};
use socketserver::handlers::Echo;
use socketserver::{Addr, Connection, Server};

const READ_TIMEOUT: Duration = Duration::from_millis(500);

/// Time from `start` until the server closes `stream` (EOF or reset).
fn time_to_close(mut stream: TcpStream, start: Instant) -> Duration {
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return start.elapsed(),
            Ok(_) => {}
        }
    }
}

fn within(d: Duration, target: Duration, tolerance: f64) -> bool {
    let t = target.as_secs_f64();
    (d.as_secs_f64() - t).abs() <= t * tolerance
}

/// Idle connections on a fixed pool: each holds a worker for exactly
/// `read_timeout`, so a normal client behind twice `workers` of them is
/// served within `read_timeout` + 1 s.
#[test]
fn slowloris_on_a_fixed_pool() {
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .workers(2)
            .max_workers(2)
            .read_timeout(READ_TIMEOUT),
        Echo,
    );
    let addr = server.local_addr();
    let start = Instant::now();
    let idle: Vec<_> = (0..4).map(|_| connect(&addr)).collect();
    let watchers: Vec<_> = idle
        .into_iter()
        .map(|s| std::thread::spawn(move || time_to_close(s, start)))
        .collect();
    let mut normal = connect(&addr);
    normal.write_all(b"hello").unwrap();
    normal.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut normal), b"hello");
    let served = start.elapsed();
    println!("normal client served after {served:?} behind 4 idle ones on 2 workers");
    assert!(served < READ_TIMEOUT + Duration::from_secs(1), "{served:?}");
    let mut closed: Vec<Duration> = watchers.into_iter().map(|w| w.join().unwrap()).collect();
    closed.sort();
    println!("idle connections closed after {closed:?}");
    // Two were served at once, two after the first two timed out.
    for (i, d) in closed.iter().enumerate() {
        let target = READ_TIMEOUT * if i < 2 { 1 } else { 2 };
        assert!(
            within(*d, target, 0.2),
            "idle #{i} closed after {d:?}, want {target:?}"
        );
    }
    // Counted, and worded, as idle timeouts rather than handler errors.
    let stats = server.stats();
    assert_eq!((stats.idle_timeouts, stats.handler_errors), (4, 0));
    server.stop().unwrap();
}

both_modes!(slowloris_on_an_elastic_pool);
/// With an elastic pool the idle connections do not even delay the normal
/// client, and each is closed at `read_timeout`. Parked, the event loops
/// hold them all without a thread each, with the same outcome.
fn slowloris_on_an_elastic_pool(park: bool) {
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(2)
            .max_workers(8)
            .read_timeout(READ_TIMEOUT),
        Echo,
    );
    let addr = server.local_addr();
    let start = Instant::now();
    let idle: Vec<_> = (0..4).map(|_| connect(&addr)).collect();
    let t = Instant::now();
    assert_eq!(tcp_exchange(&addr, Some(b"hi")), b"hi");
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    for s in idle {
        let d = time_to_close(s, start);
        assert!(within(d, READ_TIMEOUT, 0.2), "closed after {d:?}");
    }
    server.stop().unwrap();
}

both_modes!(a_trickling_client_is_cut_at_the_connection_deadline);
/// One byte every 0.8 × `read_timeout` never trips the read timeout; the
/// connection deadline cuts it anyway.
fn a_trickling_client_is_cut_at_the_connection_deadline(park: bool) {
    let deadline = Duration::from_millis(2500);
    let read_timeout = Duration::from_secs(1);
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(1)
            .read_timeout(read_timeout)
            .connection_timeout(deadline),
        Echo,
    );
    let mut client = connect(&server.local_addr());
    // Between bytes the client waits in read(), so it sees the cut at once.
    client
        .set_read_timeout(Some(read_timeout.mul_f64(0.8)))
        .unwrap();
    let start = Instant::now();
    let cut = loop {
        if client.write_all(b".").is_err() {
            break start.elapsed();
        }
        let mut buf = [0u8; 8];
        match client.read(&mut buf) {
            Ok(1) => {}
            _ => break start.elapsed(),
        }
        match client.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => {
                println!("trickle ended by {other:?}");
                break start.elapsed();
            }
        }
        assert!(start.elapsed() < deadline * 3, "never cut");
    };
    println!("trickling client cut after {cut:?}");
    assert!(
        within(cut, deadline, 0.2),
        "cut after {cut:?}, want {deadline:?}"
    );
    wait_until("the deadline to be counted", || {
        server.stats().timed_out == 1
    });
    server.stop().unwrap();
}

both_modes!(a_handler_a_shutdown_gave_up_on_is_no_client_disconnect);
/// A handler in the middle of a request, returning its read's error: the
/// shutdown that gives up on it counts it as forced, not as the client
/// hanging up (`disconnects`) nor as a handler failure, whatever error
/// its read then returns (end of file in the thread mode,
/// `ConnectionAborted` when parked).
fn a_handler_a_shutdown_gave_up_on_is_no_client_disconnect(park: bool) {
    let (tx, started) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(1)
            .shutdown_timeout(Duration::from_millis(300)),
        move |conn: &mut socketserver::Connection| {
            let mut buf = [0u8; 64];
            let mut first = true;
            loop {
                if conn.read(&mut buf)? == 0 {
                    return Ok(());
                }
                if std::mem::take(&mut first) {
                    let _ = tx.lock().unwrap().send(());
                }
            }
        },
    );
    let handle = server.shutdown_handle();
    let mut client = connect(&server.local_addr());
    // Half a request: the connection is busy, not idle.
    client.write_all(b"GET /par").unwrap();
    started.recv_timeout(TIMEOUT).unwrap();
    let report = server.stop().unwrap();
    assert_eq!(report.forced, 1, "{report}");
    let stats = handle.stats();
    assert_eq!(
        (stats.disconnects, stats.handler_errors),
        (0, 0),
        "{stats:?}"
    );
}

/// A client that never reads a large reply holds its worker only until
/// `write_timeout`.
#[test]
fn a_client_that_never_reads_frees_its_worker_at_the_write_timeout() {
    let write_timeout = Duration::from_millis(500);
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .workers(1)
            .max_workers(1)
            .write_timeout(write_timeout),
        big_reply,
    );
    let addr = server.local_addr();
    let mut hog = connect(&addr);
    hog.write_all(b"b").unwrap();
    let start = Instant::now();
    assert_eq!(tcp_exchange(&addr, Some(b"s")), b"ok");
    let freed = start.elapsed();
    println!("worker freed {freed:?} after the hog stopped reading");
    // The socket buffers fill first (a few ms on loopback), then the write
    // waits out its timeout.
    assert!(within(freed, write_timeout, 0.2), "{freed:?}");
    assert_eq!(server.stats().handler_errors, 1);
    drop(hog);
    server.stop().unwrap();
}

both_modes!(resets_right_after_connect_are_counted_errors);
/// A handler that writes a large reply, 256 MiB in 1 MiB writes, to a
/// client that asks with `b`; anything else gets `ok`.
fn big_reply(conn: &mut Connection) -> std::io::Result<()> {
    let mut ask = [0u8; 1];
    conn.read_exact(&mut ask)?;
    match ask[0] {
        b'b' => {
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..256 {
                conn.write_all(&chunk)?;
            }
            Ok(())
        }
        _ => conn.write_all(b"ok"),
    }
}

both_modes!(a_client_that_never_reads_is_cut_at_the_write_timeout);
/// A client that never reads a large reply stalls its handler's write,
/// which fails at `write_timeout`: a counted handler error, and the
/// connection closed.
fn a_client_that_never_reads_is_cut_at_the_write_timeout(park: bool) {
    let write_timeout = Duration::from_millis(500);
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(1)
            .write_timeout(write_timeout),
        big_reply,
    );
    let mut hog = connect(&server.local_addr());
    hog.write_all(b"b").unwrap();
    let start = Instant::now();
    wait_until("the stalled write to fail", || {
        server.stats().handler_errors == 1
    });
    let cut = start.elapsed();
    println!("a client that stopped reading was cut after {cut:?}");
    // The socket buffers fill first (a few ms on loopback), then the write
    // waits out its timeout.
    assert!(within(cut, write_timeout, 0.2), "{cut:?}");
    wait_until("the connection to be closed", || server.stats().active == 0);
    assert_eq!(server.stats().completed, 0);
    drop(hog);
    server.stop().unwrap();
}

/// Clients that reset right after connecting are counted as disconnects,
/// nothing more: not as handler errors, which alerts watch.
fn resets_right_after_connect_are_counted_errors(park: bool) {
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(2),
        Echo,
    );
    let addr = server.local_addr();
    for _ in 0..20 {
        let s = connect(&addr);
        SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        drop(s); // RST instead of FIN
    }
    wait_until("20 resets handled", || {
        let st = server.stats();
        st.disconnects + st.completed == 20
    });
    let stats = server.stats();
    println!("{stats:?}");
    assert_eq!((stats.panics, stats.handler_errors), (0, 0));
    assert!(
        stats.disconnects >= 18,
        "resets seen as disconnects: {}",
        stats.disconnects
    );
    assert_eq!(tcp_exchange(&addr, Some(b"still here")), b"still here");
    server.stop().unwrap();
}

both_modes!(a_client_that_hangs_up_mid_request_is_a_disconnect);
/// A client that closes halfway through its request makes the handler's
/// `read_exact` fail with end of file: a disconnect, not a handler error.
fn a_client_that_hangs_up_mid_request_is_a_disconnect(park: bool) {
    let server = spawn(
        Server::builder().bind("127.0.0.1:0").park_idle(park),
        |conn: &mut socketserver::Connection| {
            let mut request = [0; 10];
            conn.read_exact(&mut request)?;
            conn.write_all(&request)
        },
    );
    let mut s = connect(&server.local_addr());
    s.write_all(b"abc").unwrap();
    drop(s);
    wait_until("the disconnect", || server.stats().disconnects == 1);
    assert_eq!(server.stats().handler_errors, 0);
    server.stop().unwrap();
}

/// A client socket bound to a chosen loopback address before connecting.
fn connect_from(local: &str, addr: &Addr) -> TcpStream {
    let local: SocketAddr = format!("{local}:0").parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&local.into()).unwrap();
    socket.connect_timeout(&inet(addr).into(), TIMEOUT).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
}

both_modes!(max_per_source_closes_the_third_connection_from_one_address);
fn max_per_source_closes_the_third_connection_from_one_address(park: bool) {
    let (gate, started) = Gate::new();
    let peers = Arc::new(Mutex::new(Vec::new()));
    let handler = {
        let (gate, peers) = (gate.clone(), peers.clone());
        move |conn: &mut Connection| {
            peers.lock().unwrap().push(conn.peer_addr());
            gate.arrive_from(conn);
            conn.write_all(b"served")
        }
    };
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(4)
            .max_per_source(2)
            .busy_message("busy\r\n"),
        handler,
    );
    let addr = server.local_addr();
    let mut held: Vec<_> = (0..2).map(|_| connect_from("127.0.0.1", &addr)).collect();
    expect_started(&started, 2);
    let t = Instant::now();
    let mut third = connect_from("127.0.0.1", &addr);
    assert_eq!(read_to_end(&mut third), b"busy\r\n");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    let mut other = connect_from("127.0.0.2", &addr);
    expect_started(&started, 1);
    gate.open();
    for s in held.iter_mut().chain([&mut other]) {
        assert_eq!(read_to_end(s), b"served");
    }
    let stats = server.stats();
    assert_eq!((stats.rejected_per_source, stats.completed), (1, 3));
    let peers = peers.lock().unwrap();
    assert!(
        peers.iter().any(|p| p.ip() == Some([127, 0, 0, 2].into())),
        "{peers:?}"
    );
    drop(peers);
    server.stop().unwrap();
}
