//! TLS with this crate's own clients (rustls): the handler reads and
//! writes plaintext; what the handshake settled; client certificates;
//! reloads while connections stay open; the handshake deadline; plaintext
//! and garbage; the PROXY header before the handshake; Unix sockets; read
//! timeouts and shutdown through TLS; the setting's and the files' errors.
//! Each stream test in both serving modes (`both_modes!`). The same with
//! outside clients (openssl, Python, socat, HAProxy) is in
//! `tls_clients.rs`.
#![cfg(feature = "tls")]

mod common;

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use socketserver::handlers::Echo;
use socketserver::tls::rustls;
use socketserver::tls::{TlsAcceptor, TlsError};
use socketserver::{
    Connection, Error, Failure, Handler, ProxyProtocol, Server, ServerBuilder, ServerThread,
    Transport,
};

use common::tls::{
    builder, client_config, client_config_tls12, connect, connect_over, exchange,
    served_certificate_names, Pki,
};
use common::{spawn, wait_until, TIMEOUT};

/// Reads until the peer is done: end of file, or a reset or TLS alert
/// (which also end the connection). A read that times out fails the test.
fn read_until_closed(stream: &mut impl Read) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                assert!(
                    !matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ),
                    "the server did not close: {e}"
                );
                return got;
            }
        }
    }
}

both_modes!(an_echo_server_speaks_tls);
/// The handler is plain `Echo`; the client speaks TLS, gets its bytes
/// back, and then a clean `close_notify` rather than a cut.
fn an_echo_server_speaks_tls(park: bool) {
    let pki = Pki::new();
    let server = spawn(builder(park, pki.acceptor()), Echo);
    let config = client_config(&pki.ca, &[], None);
    let mut client = connect(&server.local_addr(), "localhost", &config).unwrap();
    assert_eq!(
        exchange(&mut client, b"hello over tls", 14),
        b"hello over tls"
    );
    // Many records each way, split and rejoined.
    let big: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
    assert_eq!(exchange(&mut client, &big, big.len()), big);
    client.conn.send_close_notify();
    client.flush().unwrap();
    // rustls's reader gives Ok(0) only after the server's close_notify.
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let stats = server.stats();
    assert_eq!((stats.tls_handshakes, stats.tls_handshake_failures), (1, 0));
    server.stop().unwrap();
}

both_modes!(the_smallest_stack_holds_a_tls_session);
/// The smallest stack a handler may be given, 128 KiB (`stack_size`, or
/// `parked_stack_size`), holds a handshake and records both ways, in a
/// debug build too (an overflow would end the test's process).
fn the_smallest_stack_holds_a_tls_session(park: bool) {
    let pki = Pki::new();
    let builder = builder(park, pki.acceptor());
    let builder = match park {
        true => builder.parked_stack_size(128 * 1024),
        false => builder.stack_size(128 * 1024),
    };
    let server = spawn(builder, Echo);
    let config = client_config(&pki.ca, &[], None);
    let mut client = connect(&server.local_addr(), "localhost", &config).unwrap();
    let big: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    assert_eq!(exchange(&mut client, &big, big.len()), big);
    server.stop().unwrap();
}

/// A handler that writes what the handshake settled, on one line.
fn describe(conn: &mut Connection) -> io::Result<()> {
    let tls = conn.tls().expect("a TLS connection");
    let line = format!(
        "{:?} {:?} {:?} {}\n",
        tls.server_name(),
        tls.alpn_protocol().map(String::from_utf8_lossy),
        tls.protocol_version(),
        tls.peer_certificates().map_or(0, <[_]>::len),
    );
    conn.write_all(line.as_bytes())
}

both_modes!(the_handler_sees_what_the_handshake_settled);
/// SNI, ALPN, the version, and no client certificate when none is asked;
/// TLS 1.2 for a client that speaks only that.
fn the_handler_sees_what_the_handshake_settled(park: bool) {
    let pki = Pki::new();
    let acceptor = pki.acceptor().with_alpn(["h2", "http/1.1"]);
    let server = spawn(builder(park, acceptor), describe);
    let addr = server.local_addr();
    let config = client_config(&pki.ca, &[b"http/1.1"], None);
    let mut client = connect(&addr, "localhost", &config).unwrap();
    let line = String::from_utf8(read_until_closed(&mut client)).unwrap();
    assert_eq!(
        line,
        "Some(\"localhost\") Some(\"http/1.1\") Some(TLSv1_3) 0\n"
    );
    assert_eq!(client.conn.alpn_protocol(), Some(&b"http/1.1"[..]));

    let mut client = connect(&addr, "127.0.0.1", &client_config_tls12(&pki.ca)).unwrap();
    let line = String::from_utf8(read_until_closed(&mut client)).unwrap();
    // An IP address is not sent as SNI.
    assert_eq!(line, "None None Some(TLSv1_2) 0\n");
    server.stop().unwrap();
}

both_modes!(client_certificates_are_required_and_checked);
/// With a client CA set, a client with a certificate from it is served
/// and its chain reaches the handler; one without a certificate, or with
/// one from another CA, fails the handshake, counted and reported.
fn client_certificates_are_required_and_checked(park: bool) {
    let pki = Pki::new();
    let acceptor = pki.acceptor().with_client_ca(&pki.client_ca).unwrap();
    let failures = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&failures);
    let server = spawn(
        builder(park, acceptor).on_error(move |f: &Failure<'_>| {
            if let Failure::TlsHandshake { error, .. } = f {
                seen.lock().unwrap().push(error.to_string());
            }
        }),
        describe,
    );
    let addr = server.local_addr();

    let with_cert = client_config(&pki.ca, &[], Some((&pki.client_cert, &pki.client_key)));
    let mut client = connect(&addr, "localhost", &with_cert).unwrap();
    let line = String::from_utf8(read_until_closed(&mut client)).unwrap();
    assert!(line.ends_with(" 1\n"), "{line}");

    for identity in [None, Some((&pki.stranger_cert, &pki.stranger_key))] {
        let config = client_config(
            &pki.ca,
            &[],
            identity.map(|(c, k)| (c.as_path(), k.as_path())),
        );
        // TLS 1.3 clients finish their side before the server checks the
        // certificate: the refusal arrives as an alert on the first read.
        if let Ok(mut client) = connect(&addr, "localhost", &config) {
            let mut buf = [0; 64];
            let read = client.read(&mut buf);
            assert!(read.is_err(), "served without a good certificate: {read:?}");
        }
    }
    wait_until("two failed handshakes", || {
        server.stats().tls_handshake_failures == 2
    });
    let failures = failures.lock().unwrap().clone();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures.iter().all(|f| f.contains("TLS handshake failed")),
        "{failures:?}"
    );
    assert_eq!(server.stats().tls_handshakes, 1);
    server.stop().unwrap();
}

both_modes!(a_reload_serves_new_clients_the_new_certificate_while_old_ones_go_on);
/// `reload_from_pem_files` while a client is connected: a new client gets
/// the new certificate; the old one goes on over its session. A reload
/// from a bad file fails and changes nothing.
fn a_reload_serves_new_clients_the_new_certificate_while_old_ones_go_on(park: bool) {
    let pki = Pki::new();
    let acceptor = pki.acceptor();
    let server = spawn(builder(park, acceptor.clone()), Echo);
    let addr = server.local_addr();
    let config = client_config(&pki.ca, &[], None);
    let mut old = connect(&addr, "localhost", &config).unwrap();
    assert!(served_certificate_names(&old, "first"));
    assert_eq!(exchange(&mut old, b"before", 6), b"before");

    acceptor
        .reload_from_pem_files(&pki.cert2, &pki.key2)
        .unwrap();
    let mut new = connect(&addr, "localhost", &config).unwrap();
    assert!(served_certificate_names(&new, "second"));
    assert!(!served_certificate_names(&new, "first"));
    assert_eq!(exchange(&mut new, b"new", 3), b"new");
    assert_eq!(exchange(&mut old, b"after", 5), b"after");

    // A key that is not the certificate's: refused, and nothing changes.
    let err = acceptor
        .reload_from_pem_files(&pki.cert, &pki.key2)
        .unwrap_err();
    assert!(
        matches!(err, Error::Tls(TlsError::KeyMismatch { .. })),
        "{err:?}"
    );
    let mut third = connect(&addr, "localhost", &config).unwrap();
    assert!(served_certificate_names(&third, "second"));
    assert_eq!(exchange(&mut third, b"third", 5), b"third");
    server.stop().unwrap();
}

both_modes!(a_client_that_stops_mid_handshake_is_cut_at_the_deadline);
/// A client that sends half a ClientHello and waits is closed at
/// `tls_handshake_timeout`, while another client is served meanwhile.
fn a_client_that_stops_mid_handshake_is_cut_at_the_deadline(park: bool) {
    let pki = Pki::new();
    let limit = Duration::from_millis(300);
    let server = spawn(
        builder(park, pki.acceptor()).tls_handshake_timeout(limit),
        Echo,
    );
    let addr = server.local_addr();
    let start = Instant::now();
    let mut stalled = common::connect(&addr);
    // A record header announcing a 512-byte handshake message, and 5 bytes.
    stalled
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 1, 0, 1, 0xfc, 3])
        .unwrap();

    let config = client_config(&pki.ca, &[], None);
    let mut other = connect(&addr, "localhost", &config).unwrap();
    assert_eq!(exchange(&mut other, b"meanwhile", 9), b"meanwhile");
    assert!(start.elapsed() < limit, "the other client waited");

    let got = read_until_closed(&mut stalled);
    let after = start.elapsed();
    assert!(got.is_empty(), "{got:?}");
    assert!(
        after >= limit - Duration::from_millis(20) && after < limit * 4,
        "closed after {after:?}, the limit being {limit:?}"
    );
    wait_until("the failure is counted", || {
        server.stats().tls_handshake_failures == 1
    });
    server.stop().unwrap();
}

/// A TLS echo server, and the failures it reports to `on_error`, as text.
fn reporting_echo(park: bool, pki: &Pki) -> (ServerThread, Arc<Mutex<Vec<String>>>) {
    reporting_echo_with(park, pki, |b| b)
}

/// The same, with settings of the test's own.
fn reporting_echo_with(
    park: bool,
    pki: &Pki,
    settings: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> (ServerThread, Arc<Mutex<Vec<String>>>) {
    let reported = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&reported);
    let server = spawn(
        settings(builder(park, pki.acceptor())).on_error(move |f: &Failure<'_>| {
            seen.lock().unwrap().push(f.to_string());
        }),
        Echo,
    );
    (server, reported)
}

both_modes!(a_health_check_is_no_failed_handshake);
/// Clients that connect and close, or reset, without sending a byte (TCP
/// health checks, port scans) are neither counted as failed handshakes
/// nor reported; one that closes halfway through its ClientHello is both.
fn a_health_check_is_no_failed_handshake(park: bool) {
    let pki = Pki::new();
    let (server, reported) = reporting_echo(park, &pki);
    let addr = server.local_addr();
    drop(common::connect(&addr)); // FIN
    let reset = common::connect(&addr);
    socket2::SockRef::from(&reset)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(reset); // RST
    wait_until("both probes are over", || {
        let stats = server.stats();
        stats.accepted == 2 && stats.active == 0 && stats.queued == 0
    });
    let mut half = common::connect(&addr);
    // A record header announcing a 512-byte handshake record, and 5 bytes.
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 1, 0, 1, 0xfc, 3])
        .unwrap();
    drop(half);
    wait_until("the half handshake is counted", || {
        server.stats().tls_handshake_failures == 1
    });
    let config = client_config(&pki.ca, &[], None);
    let mut client = connect(&addr, "localhost", &config).unwrap();
    assert_eq!(exchange(&mut client, b"after", 5), b"after");
    drop(client);
    let handle = server.shutdown_handle();
    server.stop().unwrap();
    let stats = handle.stats();
    assert_eq!((stats.tls_handshakes, stats.tls_handshake_failures), (1, 1));
    let reported = reported.lock().unwrap().clone();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert!(
        reported[0].contains("closed the connection during the TLS handshake"),
        "{reported:?}"
    );
}

both_modes!(plaintext_and_garbage_close_that_connection_and_nothing_else);
/// A plain HTTP request, and random bytes, to the TLS port: each closed,
/// counted and reported (the error says what came); a TLS client right
/// after is served.
fn plaintext_and_garbage_close_that_connection_and_nothing_else(park: bool) {
    let pki = Pki::new();
    let (server, reported) = reporting_echo(park, &pki);
    let addr = server.local_addr();
    for bytes in [
        &b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"[..],
        &[0xde; 300][..],
    ] {
        let mut plain = common::connect(&addr);
        plain.write_all(bytes).unwrap();
        let got = read_until_closed(&mut plain);
        // At most a TLS alert record (content type 21), never an echo.
        assert!(got.is_empty() || got[0] == 21, "{got:?}");
    }
    wait_until("two failures", || {
        server.stats().tls_handshake_failures == 2
    });
    let reported = reported.lock().unwrap().clone();
    assert_eq!(reported.len(), 2, "{reported:?}");
    assert!(
        reported
            .iter()
            .all(|r| r.starts_with("TLS handshake with 127.0.0.1:")),
        "{reported:?}"
    );
    let config = client_config(&pki.ca, &[], None);
    let mut client = connect(&addr, "localhost", &config).unwrap();
    assert_eq!(exchange(&mut client, b"fine", 4), b"fine");
    server.stop().unwrap();
}

both_modes!(the_proxy_header_comes_before_the_handshake);
/// Behind a proxy that speaks the PROXY protocol, the header is read in
/// plaintext first, then the handshake: the handler sees both the client
/// the header names and the TLS session.
fn the_proxy_header_comes_before_the_handshake(park: bool) {
    let pki = Pki::new();
    let server = spawn(
        builder(park, pki.acceptor()).proxy_protocol(ProxyProtocol::new().trust_loopback()),
        |conn: &mut Connection| {
            let line = format!(
                "{} via {} sni {:?}\n",
                conn.peer_addr(),
                conn.proxy_addr().is_some(),
                conn.tls().and_then(|t| t.server_name().map(str::to_owned))
            );
            conn.write_all(line.as_bytes())
        },
    );
    let mut tcp = common::connect(&server.local_addr());
    tcp.write_all(b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 443\r\n")
        .unwrap();
    let config = client_config(&pki.ca, &[], None);
    let mut client = connect_over(tcp, "localhost", &config).unwrap();
    let line = String::from_utf8(read_until_closed(&mut client)).unwrap();
    assert_eq!(line, "192.0.2.7:40000 via true sni Some(\"localhost\")\n");
    server.stop().unwrap();
}

both_modes!(tls_over_a_unix_socket);
/// A Unix stream socket serves TLS the same way.
fn tls_over_a_unix_socket(park: bool) {
    let pki = Pki::new();
    let path = pki.dir.join("tls.sock");
    let server = spawn(
        Server::builder()
            .bind_unix(&path)
            .park_idle(park)
            .workers(1)
            .tls(pki.acceptor()),
        Echo,
    );
    let unix = UnixStream::connect(&path).unwrap();
    unix.set_read_timeout(Some(TIMEOUT)).unwrap();
    unix.set_write_timeout(Some(TIMEOUT)).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let config = Arc::new(client_config(&pki.ca, &[], None));
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut client = rustls::StreamOwned::new(conn, unix);
    client.write_all(b"over unix").unwrap();
    let mut reply = [0; 9];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"over unix");
    server.stop().unwrap();
}

both_modes!(a_silent_tls_client_meets_the_read_timeout_and_shutdown_closes_idle_ones);
/// Timeouts work through TLS: a client that completes the handshake and
/// then sends nothing is closed at the read timeout, reported as an idle
/// timeout. At shutdown a client waiting for its next request is closed at
/// once as idle; one that has had only its handshake is a new one (its
/// first request may be on the wire): closed as idle at the end of the
/// grace of new connections.
fn a_silent_tls_client_meets_the_read_timeout_and_shutdown_closes_idle_ones(park: bool) {
    let pki = Pki::new();
    let config = client_config(&pki.ca, &[], None);
    let server = spawn(
        builder(park, pki.acceptor()).read_timeout(Duration::from_millis(200)),
        Echo,
    );
    let mut quiet = connect(&server.local_addr(), "localhost", &config).unwrap();
    let start = Instant::now();
    read_until_closed(&mut quiet);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    wait_until("an idle timeout", || server.stats().idle_timeouts == 1);
    server.stop().unwrap();

    // A grace of half the shutdown timeout: 500 ms.
    let builder = builder(park, pki.acceptor()).shutdown_timeout(Duration::from_secs(1));
    let server = spawn(builder, Echo);
    let mut idle = connect(&server.local_addr(), "localhost", &config).unwrap();
    assert_eq!(exchange(&mut idle, b"x", 1), b"x");
    let _quiet = connect(&server.local_addr(), "localhost", &config).unwrap();
    wait_until("two handshakes", || server.stats().tls_handshakes == 2);
    let start = Instant::now();
    let report = server.stop().unwrap();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(1),
        "{took:?}"
    );
    assert_eq!((report.closed_idle, report.forced), (2, 0), "{report:?}");
}

both_modes!(a_handshake_cut_by_shutdown_is_no_failed_handshake);
/// A client halfway through its ClientHello when shutdown's grace period
/// ends is cut like any connection still served: counted as forced, not
/// as a failed handshake, and not reported.
fn a_handshake_cut_by_shutdown_is_no_failed_handshake(park: bool) {
    let pki = Pki::new();
    let (server, reported) = reporting_echo_with(park, &pki, |b| {
        b.shutdown_timeout(Duration::from_millis(200))
    });
    let mut half = common::connect(&server.local_addr());
    // A record header announcing a 512-byte handshake record, and 5 bytes.
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 1, 0, 1, 0xfc, 3])
        .unwrap();
    wait_until("the server holds it", || server.stats().active == 1);
    let handle = server.shutdown_handle();
    let report = server.stop().unwrap();
    let stats = handle.stats();
    assert_eq!(report.forced + report.closed_idle, 1, "{report:?}");
    assert_eq!(stats.tls_handshake_failures, 0, "{report:?}");
    let reported = reported.lock().unwrap().clone();
    assert!(reported.is_empty(), "{reported:?} {report:?}");
}

#[test]
fn tls_on_a_datagram_server_is_an_invalid_setting() {
    let pki = Pki::new();
    let err = Server::builder()
        .bind("127.0.0.1:0")
        .transport(Transport::Datagram)
        .tls(pki.acceptor())
        .build(Echo)
        .unwrap_err();
    let reason = common::invalid_setting(&err, "tls");
    assert!(reason.contains("DTLS"), "{reason}");
    let err = Server::builder()
        .bind("127.0.0.1:0")
        .tls_handshake_timeout(Duration::ZERO)
        .build(Echo)
        .unwrap_err();
    common::invalid_setting(&err, "tls_handshake_timeout");
}

#[test]
fn bad_files_are_typed_errors_that_name_the_file() {
    let pki = Pki::new();
    let missing = pki.dir.join("missing.pem");
    let empty = pki.dir.join("empty.pem");
    std::fs::write(&empty, "not a PEM file\n").unwrap();

    let err = TlsAcceptor::from_pem_files(&missing, &pki.key).unwrap_err();
    assert!(
        matches!(&err, Error::Tls(TlsError::Read { path, .. }) if *path == missing),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing.pem"), "{err}");
    assert_eq!(io::Error::from(err).kind(), io::ErrorKind::NotFound);

    let err = TlsAcceptor::from_pem_files(&empty, &pki.key).unwrap_err();
    assert!(
        matches!(&err, Error::Tls(TlsError::NoCertificate { .. })),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("empty.pem: no certificate"),
        "{err}"
    );

    // A certificate where the key should be: no private key in it.
    let err = TlsAcceptor::from_pem_files(&pki.cert, &pki.cert).unwrap_err();
    assert!(
        matches!(&err, Error::Tls(TlsError::NoPrivateKey { .. })),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("cert.pem: no private key"),
        "{err}"
    );

    let err = TlsAcceptor::from_pem_files(&pki.cert, &pki.key2).unwrap_err();
    assert!(
        matches!(&err, Error::Tls(TlsError::KeyMismatch { .. })),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!(
            "the private key in {} does not match the certificate in {}",
            pki.key2.display(),
            pki.cert.display()
        )
    );

    let err = pki.acceptor().with_client_ca(&empty).unwrap_err();
    assert!(
        matches!(&err, Error::Tls(TlsError::NoCertificate { .. })),
        "{err:?}"
    );
}

#[test]
fn tls_counters_are_in_the_prometheus_text() {
    let text = socketserver::Stats::default().to_prometheus("x");
    assert!(text.contains("# TYPE x_tls_handshake_failures_total counter\n"));
    assert!(text.contains("x_tls_handshakes_total 0\n"));
    assert!(text.contains("# TYPE x_tls_session_failures_total counter\n"));
}

both_modes!(only_a_handler_that_finished_sends_close_notify);
/// `Ok`: the client reads a clean end (close_notify). An error after half
/// a reply: the client sees the connection cut, not a whole reply.
fn only_a_handler_that_finished_sends_close_notify(park: bool) {
    let pki = Pki::new();
    let config = client_config(&pki.ca, &[], None);
    let server = spawn(builder(park, pki.acceptor()), |conn: &mut Connection| {
        let mut first = [0; 1];
        conn.read_exact(&mut first)?;
        conn.write_all(b"half a reply")?;
        match &first {
            b"k" => Ok(()),
            _ => Err(io::Error::other("the rest could not be made")),
        }
    });
    for (request, clean) in [(b"k", true), (b"e", false)] {
        let mut client = connect(&server.local_addr(), "localhost", &config).unwrap();
        client.write_all(request).unwrap();
        let mut got = Vec::new();
        let end = client.read_to_end(&mut got);
        assert_eq!(got, b"half a reply");
        match clean {
            true => assert!(end.is_ok(), "{end:?}"),
            false => assert_eq!(
                end.unwrap_err().kind(),
                io::ErrorKind::UnexpectedEof,
                "a cut reply must not look whole"
            ),
        }
    }
    server.stop().unwrap();
}

both_modes!(max_per_source_refuses_before_the_handshake);
/// `max_per_source` counts a TLS client like any other: a second
/// connection from the same address is closed before any handshake work,
/// and is not a failed handshake; the first goes on.
fn max_per_source_refuses_before_the_handshake(park: bool) {
    let pki = Pki::new();
    let server = spawn(builder(park, pki.acceptor()).max_per_source(1), Echo);
    let config = client_config(&pki.ca, &[], None);
    let mut first = connect(&server.local_addr(), "localhost", &config).unwrap();
    assert_eq!(exchange(&mut first, b"one", 3), b"one");
    assert!(connect(&server.local_addr(), "localhost", &config).is_err());
    wait_until("the refusal is counted", || {
        server.stats().rejected_per_source == 1
    });
    assert_eq!(exchange(&mut first, b"still", 5), b"still");
    let stats = server.stats();
    assert_eq!((stats.tls_handshakes, stats.tls_handshake_failures), (1, 0));
    server.stop().unwrap();
}

both_modes!(a_request_that_came_with_the_handshake_is_not_idle_at_shutdown);
/// A client that writes its first request before its handshake is done
/// (rustls sends it right behind Finished) is mid-request when the handler
/// waits for the rest: shutdown lets it finish, as it would over plain TCP,
/// while a quiet connection beside it is closed as idle.
fn a_request_that_came_with_the_handshake_is_not_idle_at_shutdown(park: bool) {
    let pki = Pki::new();
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = Mutex::new(tx);
    let server = spawn(
        builder(park, pki.acceptor()).shutdown_timeout(Duration::from_secs(3)),
        move |conn: &mut Connection| {
            let mut part = [0; 5];
            conn.read_exact(&mut part)?;
            if &part == b"quiet" {
                conn.write_all(&part)?;
                return Echo.handle(conn);
            }
            tx.lock().unwrap().send(()).unwrap();
            conn.read_exact(&mut part)?;
            conn.write_all(b"done")
        },
    );
    let config = Arc::new(client_config(&pki.ca, &[], None));
    let mut quiet = connect(&server.local_addr(), "localhost", &config).unwrap();
    assert_eq!(exchange(&mut quiet, b"quiet", 5), b"quiet");

    let tcp = common::connect(&server.local_addr());
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::clone(&config), name).unwrap();
    let mut client = rustls::StreamOwned::new(conn, tcp);
    // Held by rustls until its side of the handshake is done.
    client.conn.writer().write_all(b"part1").unwrap();
    while client.conn.is_handshaking() || client.conn.wants_write() {
        client.conn.complete_io(&mut client.sock).unwrap();
    }
    rx.recv_timeout(TIMEOUT).expect("the handler read part 1");

    let stopper = std::thread::spawn(move || server.stop().unwrap());
    // The quiet one is closed as idle: shutdown has looked at them all.
    let _ = read_until_closed(&mut quiet);
    client.write_all(b"part2").unwrap();
    let got = read_until_closed(&mut client);
    let report = stopper.join().unwrap();
    assert_eq!(got, b"done", "{report:?}");
    assert_eq!((report.closed_idle, report.forced), (1, 0), "{report:?}");
}

both_modes!(a_write_that_timed_out_can_be_retried);
/// A write that times out over TLS leaves the stream whole: after a new
/// write timeout the handler goes on, and the client reads every byte the
/// handler was told went out, then the rest, then a clean close.
fn a_write_that_timed_out_can_be_retried(park: bool) {
    let pki = Pki::new();
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let tx = Mutex::new(tx);
    let server = spawn(
        builder(park, pki.acceptor()).write_timeout(Duration::from_millis(200)),
        move |conn: &mut Connection| {
            let mut go = [0; 1];
            conn.read_exact(&mut go)?;
            let chunk = vec![b'x'; 16 * 1024];
            let mut sent = 0;
            loop {
                match conn.write(&chunk) {
                    Ok(n) => sent += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::TimedOut => break,
                    Err(e) => return Err(e),
                }
            }
            tx.lock().unwrap().send(sent).unwrap();
            conn.set_write_timeout(Some(TIMEOUT))?;
            conn.write_all(b"END")
        },
    );
    let config = client_config(&pki.ca, &[], None);
    let mut client = connect(&server.local_addr(), "localhost", &config).unwrap();
    client.write_all(b"g").unwrap();
    client.flush().unwrap();
    let sent = rx.recv_timeout(4 * TIMEOUT).expect("a write timed out");
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert!(got.ends_with(b"END"), "the stream was cut or garbled");
    // Every byte the handler was told of, once, and nothing else.
    assert_eq!(got.len() as u64, sent + 3);
    server.stop().unwrap();
}

#[test]
fn with_methods_make_a_new_acceptor_and_keep_the_rest() {
    let pki = Pki::new();
    let base = pki.acceptor();
    let h2 = base.clone().with_alpn(["h2"]);
    let http1 = base.clone().with_alpn(["http/1.1"]);
    assert_eq!(h2.config().alpn_protocols, vec![b"h2".to_vec()]);
    assert_eq!(http1.config().alpn_protocols, vec![b"http/1.1".to_vec()]);
    assert!(base.config().alpn_protocols.is_empty());

    let mut custom = (*h2.config()).clone();
    custom.max_fragment_size = Some(1024);
    custom.send_tls13_tickets = 0;
    custom.ignore_client_order = true;
    let with_ca = TlsAcceptor::new(Arc::new(custom))
        .with_client_ca(&pki.client_ca)
        .unwrap();
    let c = with_ca.config();
    assert_eq!(
        (
            c.max_fragment_size,
            c.send_tls13_tickets,
            c.ignore_client_order
        ),
        (Some(1024), 0, true)
    );
    assert_eq!(c.alpn_protocols, vec![b"h2".to_vec()]);
}

both_modes!(a_reload_keeps_a_configuration_of_your_own);
/// Client certificates required by a rustls configuration of the user's
/// own (`TlsAcceptor::new`) are still required after
/// `reload_from_pem_files`: only the certificate and key change.
fn a_reload_keeps_a_configuration_of_your_own(park: bool) {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let pki = Pki::new();
    // ring, as the crate\'s acceptor (see its `provider`, deprecated for PQ).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&pki.client_ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let chain = CertificateDer::pem_file_iter(&pki.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(&pki.key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = TlsAcceptor::new(Arc::new(config));
    let server = spawn(builder(park, acceptor.clone()), Echo);
    let addr = server.local_addr();
    let no_cert = client_config(&pki.ca, &[], None);
    let with_cert = client_config(&pki.ca, &[], Some((&pki.client_cert, &pki.client_key)));
    let served = |config| match connect(&addr, "localhost", config) {
        Ok(mut c) => {
            let _ = c.write_all(b"hi");
            let mut b = [0; 2];
            c.read_exact(&mut b).is_ok()
        }
        Err(_) => false,
    };
    assert!(!served(&no_cert));
    acceptor
        .reload_from_pem_files(&pki.cert2, &pki.key2)
        .unwrap();
    assert!(
        !served(&no_cert),
        "the reload dropped client authentication"
    );
    let mut client = connect(&addr, "localhost", &with_cert).unwrap();
    assert!(served_certificate_names(&client, "second"));
    assert_eq!(exchange(&mut client, b"ok", 2), b"ok");
    server.stop().unwrap();
}

#[test]
fn a_busy_message_is_refused_with_tls() {
    let pki = Pki::new();
    let err = Server::builder()
        .bind("127.0.0.1:0")
        .max_per_source(1)
        .busy_message("busy\n")
        .tls(pki.acceptor())
        .build(Echo)
        .unwrap_err();
    common::invalid_setting(&err, "busy_message");
}
