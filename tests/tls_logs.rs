//! What the server counts and logs when a client breaks its TLS session
//! after the handshake, under a handler that returns its read's error (as
//! `Echo` does): a TLS failure of the client's, logged at `info` (at most
//! one line a second) and counted in `Stats::tls_session_failures`; never a
//! `handler error` warning, never in `handler_errors`. And the server
//! serves the next client. Cases:
//!
//! * a rustls client sends a fatal alert (it fails to decrypt a record of
//!   the server's that the test corrupted, and says so with
//!   `bad_record_mac`), over TLS 1.3 and 1.2;
//! * a client sends a record that does not decrypt, under a handler that
//!   holds an outbox (the session shared with pushes);
//! * `openssl s_client` asks to renegotiate TLS 1.2; the server declines
//!   (rustls's `no_renegotiation` warning), and s_client gives up with a
//!   fatal alert. Skipped, saying so, when `openssl` is missing, unless
//!   `SOCKETSERVER_TEST_REQUIRE_ALL` is set.
//!
//! Each in both serving modes.
#![cfg(feature = "tls")]

mod common;

use std::io::{Read, Write};

use socketserver::handlers::Echo;
use socketserver::tls::rustls::{self, ClientConfig};
use socketserver::{Connection, Handler, ServerThread, Stats};

use common::logs::{assert_no_warnings, capture, records_with};
use common::tls::{
    builder, client_config, client_config_tls12, connect, exchange, renegotiation_declined, Pki,
    TlsClient,
};
use common::{one_at_a_time, outside_program, spawn, wait_until};

/// Connections whose handler has ended, however.
fn ended(s: &Stats) -> u64 {
    s.completed + s.handler_errors + s.disconnects + s.tls_session_failures + s.panics
}

/// Waits until `n` connections have ended, then checks that they ended
/// as TLS sessions the client broke, each logged as such at `info` (one
/// line a second at most, the first mentioning `why`) and none as a
/// handler error; and that the server still serves a TLS client.
fn expect_tls_failures(server: &ServerThread, config: &ClientConfig, n: u64, why: &str) {
    wait_until(&format!("{n} connections to end"), || {
        ended(&server.stats()) >= n
    });
    let stats = server.stats();
    assert_eq!(stats.handler_errors, 0, "{stats:?}");
    assert_eq!(stats.tls_session_failures, n, "{stats:?}");
    assert_eq!(stats.tls_handshake_failures, 0, "{stats:?}");

    let mut next = connect(&server.local_addr(), "localhost", config).unwrap();
    assert_eq!(exchange(&mut next, b"next\n", 5), b"next\n");
    next.conn.send_close_notify();
    next.flush().unwrap();
    drop(next);
    wait_until("the next client to be served", || {
        server.stats().completed == 1
    });

    let handler_errors = records_with("handler error");
    assert!(handler_errors.is_empty(), "{handler_errors:?}");
    let logged = records_with("TLS session with ");
    assert!(
        (1..=2).contains(&logged.len()),
        "{} lines for {n} failures: {logged:?}",
        logged.len()
    );
    assert!(
        logged.iter().all(|(level, _)| *level == log::Level::Info),
        "{logged:?}"
    );
    let peer = "TLS session with 127.0.0.1:";
    assert!(
        logged[0].1.starts_with(peer) && logged[0].1.contains(why),
        "{logged:?}"
    );
    assert_no_warnings();
}

/// Reads one whole TLS record off the client's socket, as sent.
fn raw_record(client: &mut TlsClient) -> Vec<u8> {
    let mut record = vec![0; 5];
    client.sock.read_exact(&mut record).unwrap();
    let len = u16::from_be_bytes([record[3], record[4]]) as usize;
    record.resize(5 + len, 0);
    client.sock.read_exact(&mut record[5..]).unwrap();
    record
}

/// Reads what the server still sends until it closes (or resets).
fn until_closed(client: &mut TlsClient) {
    let mut rest = Vec::new();
    let _ = client.sock.read_to_end(&mut rest);
}

both_modes!(a_fatal_alert_after_the_handshake_is_a_tls_failure);
/// The client fails to decrypt a record of the server's (the test flips
/// a bit of it on the way) and sends the fatal `bad_record_mac` alert, as
/// rustls does; over TLS 1.3, then 1.2. The server's read fails with
/// rustls's `AlertReceived`.
fn a_fatal_alert_after_the_handshake_is_a_tls_failure(park: bool) {
    let _alone = one_at_a_time();
    capture();
    let pki = Pki::new();
    let server = spawn(builder(park, pki.acceptor()), Echo);
    let configs = [
        client_config(&pki.ca, &[], None),
        client_config_tls12(&pki.ca),
    ];
    for config in &configs {
        let mut client = connect(&server.local_addr(), "localhost", config).unwrap();
        assert_eq!(exchange(&mut client, b"ping\n", 5), b"ping\n");
        client.write_all(b"pong\n").unwrap();
        client.flush().unwrap();
        let mut record = raw_record(&mut client);
        *record.last_mut().unwrap() ^= 1;
        client.conn.read_tls(&mut &record[..]).unwrap();
        let err = client.conn.process_new_packets().unwrap_err();
        assert_eq!(err, rustls::Error::DecryptError);
        // The alert it queued, encrypted.
        while client.conn.wants_write() {
            client.conn.write_tls(&mut client.sock).unwrap();
        }
        until_closed(&mut client);
    }
    let config = client_config(&pki.ca, &[], None);
    expect_tls_failures(&server, &config, 2, "received fatal alert: BadRecordMac");
    server.stop().unwrap();
}

both_modes!(a_record_that_does_not_decrypt_is_a_tls_failure);
/// After the handshake, five clients each send an application data
/// record of garbage, under a handler that holds an outbox: the server's
/// read fails with rustls's `DecryptError`. Five failures counted, one
/// line logged (the others within the second left out).
fn a_record_that_does_not_decrypt_is_a_tls_failure(park: bool) {
    const CLIENTS: u64 = 5;
    let _alone = one_at_a_time();
    capture();
    let pki = Pki::new();
    let server = spawn(builder(park, pki.acceptor()), |conn: &mut Connection| {
        let _outbox = conn.outbox();
        Echo.handle(conn)
    });
    let config = client_config(&pki.ca, &[], None);
    for _ in 0..CLIENTS {
        let mut client = connect(&server.local_addr(), "localhost", &config).unwrap();
        assert_eq!(exchange(&mut client, b"ping\n", 5), b"ping\n");
        let mut garbage = vec![0x17, 0x03, 0x03, 0x00, 0x40];
        garbage.extend([0xa5; 0x40]);
        client.sock.write_all(&garbage).unwrap();
        until_closed(&mut client);
    }
    expect_tls_failures(&server, &config, CLIENTS, "cannot decrypt peer's message");
    server.stop().unwrap();
}

both_modes!(a_declined_renegotiation_is_a_tls_failure);
/// `openssl s_client -tls1_2` echoes a line, then asks to renegotiate
/// (its `R` command): the server declines with a `no_renegotiation`
/// warning, s_client gives up with a fatal alert, and the server's read
/// fails with rustls's `AlertReceived`.
fn a_declined_renegotiation_is_a_tls_failure(park: bool) {
    let Some(openssl) = outside_program("openssl", "openssl") else {
        return;
    };
    let _alone = one_at_a_time();
    capture();
    let pki = Pki::new();
    let server = spawn(builder(park, pki.acceptor()), Echo);
    renegotiation_declined(&openssl, &server, &pki);
    let config = client_config(&pki.ca, &[], None);
    expect_tls_failures(&server, &config, 1, "received fatal alert: ");
    server.stop().unwrap();
}
