//! At which level the default `on_error` hook logs each kind of failure,
//! seen through a logger installed by this test binary:
//!
//! * a handler error that says only that the client hung up (a reset, a
//!   closed pipe) is logged at `debug`, not as a warning;
//! * so a second server probing a live Unix socket path (it connects and
//!   closes) leaves no warning on the first;
//! * other handler errors are warnings, at most one a second, the next one
//!   counting those left out.
//!
//! Each in both serving modes (`both_modes!`).

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use socketserver::{Connection, Error, Server, ServerBuilder};

use common::logs::{assert_no_warnings, capture, records_with};
use common::{inet, one_at_a_time, spawn, wait_until, TIMEOUT};

fn builder(park: bool) -> ServerBuilder {
    Server::builder().park_idle(park).workers(2)
}

/// Writes until the client is gone, and returns the error that says so.
fn write_until_gone(conn: &mut Connection) -> io::Result<()> {
    let chunk = [b'x'; 4096];
    loop {
        conn.write_all(&chunk)?;
    }
}

both_modes!(a_client_that_resets_is_logged_at_debug);
fn a_client_that_resets_is_logged_at_debug(park: bool) {
    let _alone = one_at_a_time();
    capture();
    let server = spawn(builder(park).bind("127.0.0.1:0"), write_until_gone);
    let addr = inet(&server.local_addr());
    let mut client = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut some = [0; 1024];
    client.read_exact(&mut some).unwrap();
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client); // a reset, while the server writes
    wait_until("the disconnect is counted", || {
        server.stats().disconnects == 1
    });
    assert_eq!(server.stats().handler_errors, 0);
    server.stop().unwrap();
    let logged = records_with("handler error");
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].0, log::Level::Debug, "{logged:?}");
}

both_modes!(probing_a_live_unix_path_leaves_no_warning_on_its_server);
fn probing_a_live_unix_path_leaves_no_warning_on_its_server(park: bool) {
    let _alone = one_at_a_time();
    capture();
    let dir = std::env::temp_dir().join(format!(
        "socketserver-log-levels-{}-{park}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("live.sock");
    let first = spawn(builder(park).bind_unix(&path), write_until_gone);
    let err = builder(park)
        .bind_unix(&path)
        .build(write_until_gone)
        .unwrap_err();
    assert!(matches!(&err, Error::Bind { .. }), "{err:?}");
    // The probe was a connection the first server served: wait for its end.
    wait_until("the probe's connection is over", || {
        let stats = first.stats();
        stats.disconnects + stats.handler_errors + stats.completed == 1
    });
    // And the first server serves on.
    let mut client = UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut some = [0; 16];
    client.read_exact(&mut some).unwrap();
    client.shutdown(Shutdown::Both).unwrap();
    first.stop().unwrap();
    assert_no_warnings();
    let _ = std::fs::remove_dir_all(&dir);
}

both_modes!(one_startup_line_in_either_mode);
/// Each engine says once, at `info`, that it serves, in the same words
/// and naming a Unix socket alike; and once that it stopped.
fn one_startup_line_in_either_mode(park: bool) {
    let _alone = one_at_a_time();
    capture();
    let dir = std::env::temp_dir().join(format!(
        "socketserver-log-startup-{}-{park}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let server = spawn(
        builder(park).bind_unix(dir.join("s.sock")),
        write_until_gone,
    );
    let addr = server.local_addr();
    let serving = format!("serving {addr} (unix stream) ");
    wait_until("the startup line", || !records_with(&serving).is_empty());
    server.stop().unwrap();
    let lines = records_with(&serving);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0].0, log::Level::Info);
    let how = match park {
        true => "on 2 event loops (park_idle)",
        false => "with 2 workers",
    };
    assert!(lines[0].1.ends_with(how), "{lines:?}");
    let stopped = records_with(&format!("stopped serving {addr}: "));
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `N` in a line ending `(N more like it not logged)`.
fn left_out(line: &str) -> Option<u64> {
    let head = line.strip_suffix(" more like it not logged)")?;
    head[head.rfind('(')? + 1..].parse().ok()
}

both_modes!(other_handler_errors_are_warnings_at_most_one_a_second);
fn other_handler_errors_are_warnings_at_most_one_a_second(park: bool) {
    const CLIENTS: u64 = 500;
    let _alone = one_at_a_time();
    capture();
    let server = spawn(builder(park).bind("127.0.0.1:0"), |_: &mut Connection| {
        Err(io::Error::new(io::ErrorKind::InvalidData, "a bad request"))
    });
    let addr = inet(&server.local_addr());
    let one_client = || {
        let mut c = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        // The server closes without a word.
        assert_eq!(c.read(&mut [0; 8]).unwrap_or(0), 0);
    };
    let start = Instant::now();
    for _ in 0..CLIENTS {
        one_client();
    }
    // Go on, one client at a time, until the rate limit lets a second
    // line out, with the count of the ones it held back.
    let mut clients = CLIENTS;
    while !records_with("handler error")
        .iter()
        .any(|(_, l)| left_out(l).is_some())
    {
        assert!(start.elapsed() < Duration::from_secs(10), "no second line");
        one_client();
        clients += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = start.elapsed();
    wait_until("every error is counted", || {
        server.stats().handler_errors == clients
    });
    server.stop().unwrap();
    let logged = records_with("handler error");
    assert!(
        logged.iter().all(|(level, _)| *level == log::Level::Warn),
        "{logged:?}"
    );
    assert!(logged[0].1.contains("a bad request"), "{logged:?}");
    let allowed = elapsed.as_secs() as usize + 2;
    assert!(
        (2..=allowed).contains(&logged.len()),
        "{} lines for {clients} errors in {elapsed:?}: {logged:?}",
        logged.len()
    );
    let accounted: u64 = logged
        .iter()
        .map(|(_, l)| 1 + left_out(l).unwrap_or(0))
        .sum();
    assert!(
        accounted <= clients && accounted + 2 * CLIENTS / 10 >= CLIENTS,
        "the lines account for {accounted} of {clients} errors: {logged:?}"
    );
}

#[cfg(feature = "tls")]
both_modes!(failed_tls_handshakes_are_logged_at_info_at_most_one_a_second);
/// Scanners and plaintext clients knock on every TLS port: each failed
/// handshake is counted, but logged at `info`, at most one line a second.
#[cfg(feature = "tls")]
fn failed_tls_handshakes_are_logged_at_info_at_most_one_a_second(park: bool) {
    let _alone = one_at_a_time();
    capture();
    let pki = common::tls::Pki::new();
    let acceptor = pki.acceptor();
    let server = spawn(
        builder(park).bind("127.0.0.1:0").tls(acceptor),
        socketserver::handlers::Echo,
    );
    let addr = inet(&server.local_addr());
    for _ in 0..5 {
        let mut c = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        c.set_read_timeout(Some(TIMEOUT)).unwrap();
        c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let _ = c.read_to_end(&mut Vec::new());
    }
    wait_until("five failures", || {
        server.stats().tls_handshake_failures == 5
    });
    server.stop().unwrap();
    let logged = records_with("TLS handshake with");
    assert!(
        !logged.is_empty() && logged.len() <= 2,
        "{} lines: {logged:?}",
        logged.len()
    );
    assert!(
        logged.iter().all(|(level, _)| *level == log::Level::Info),
        "{logged:?}"
    );
    // Nor does anything else, rustls included, warn of what a client sent.
    assert_no_warnings();
}
