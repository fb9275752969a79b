//! TLS against real outside clients, not this crate's own (those are in
//! `tls.rs`):
//!
//! * `openssl s_client`: the certificate verified for `localhost` and for
//!   127.0.0.1 without SNI; what the handler sees of SNI and ALPN; a
//!   client offering no protocol the server has refused; client
//!   certificates required: one from the client CA served and its chain
//!   seen, none or a stranger's refused; a key update each way; a TLS 1.2
//!   renegotiation declined; a reload while a client is connected.
//! * Python's `ssl` module: TLS 1.3 by default and 1.2 when the client
//!   caps it, each closed with `close_notify` both ways; megabytes echoed;
//!   `close_notify` when the handler returns.
//! * `socat`: an echo round trip, and a socat that does not trust the
//!   server's CA, refused within the handshake.
//! * HAProxy in front, sending a PROXY v2 header and then speaking TLS to
//!   the server: the handler sees the real client, the proxy and TLS.
//! * A plaintext HTTP request to the TLS port: closed, counted, and the
//!   next TLS client served.
//!
//! Most handlers are `Echo` behind a recorder of what `Connection::tls`
//! and `Connection::proxy_addr` said. A test whose program is missing
//! says so in one line and passes (see `common::outside_program`);
//! `.ci/run` installs them all and makes a missing one fail. Each test
//! runs in both serving modes.
#![cfg(feature = "tls")]

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;

use socketserver::handlers::Echo;
use socketserver::tls::rustls::ProtocolVersion;
use socketserver::tls::TlsAcceptor;
use socketserver::{Addr, Connection, Handler, ProxyProtocol, ServerThread, Stats};

use common::haproxy::{HaProxy, SendProxy};
use common::outside::Client;
use common::tls::{
    builder, client_config, connect, exchange, renegotiation_declined, s_client,
    s_client_without_name, Pki,
};
use common::{inet, outside_program, round_trip, spawn, wait_until, TIMEOUT};

/// What a handler saw of its connection before echoing.
#[derive(Debug)]
struct Seen {
    peer: Addr,
    proxy: Option<Addr>,
    /// `Connection::tls` was `Some`.
    tls: bool,
    server_name: Option<String>,
    alpn: Option<Vec<u8>>,
    version: Option<ProtocolVersion>,
    /// The client's certificate chain, DER, its own first.
    peer_certificates: Option<Vec<Vec<u8>>>,
}

impl Seen {
    fn of(conn: &Connection) -> Seen {
        let tls = conn.tls();
        Seen {
            peer: conn.peer_addr(),
            proxy: conn.proxy_addr(),
            tls: tls.is_some(),
            server_name: tls.as_ref().and_then(|t| t.server_name().map(String::from)),
            alpn: tls
                .as_ref()
                .and_then(|t| t.alpn_protocol().map(<[u8]>::to_vec)),
            version: tls.as_ref().and_then(|t| t.protocol_version()),
            peer_certificates: tls.as_ref().and_then(|t| {
                t.peer_certificates()
                    .map(|chain| chain.iter().map(|c| c.as_ref().to_vec()).collect())
            }),
        }
    }
}

/// `Echo`, after sending what the connection's `tls()` and `proxy_addr()`
/// said on the channel returned.
fn recording_echo() -> (
    impl Fn(&mut Connection) -> std::io::Result<()> + Send + Sync + 'static,
    mpsc::Receiver<Seen>,
) {
    let (tx, rx) = mpsc::channel();
    let handler = move |conn: &mut Connection| {
        let _ = tx.send(Seen::of(conn));
        Echo.handle(conn)
    };
    (handler, rx)
}

/// A TLS echo server (`builder`) that records what each connection saw.
fn recording_server(park: bool, acceptor: TlsAcceptor) -> (ServerThread, mpsc::Receiver<Seen>) {
    let (handler, seen) = recording_echo();
    (spawn(builder(park, acceptor), handler), seen)
}

/// What the one connection served saw; fails if none was served.
fn seen_once(seen: &mpsc::Receiver<Seen>) -> Seen {
    seen.recv_timeout(TIMEOUT)
        .expect("the handler to have served the connection")
}

/// Waits until the server has counted `n` failed handshakes in all.
fn wait_for_failures(server: &ServerThread, n: u64) {
    wait_until(&format!("{n} failed TLS handshakes"), || {
        server.stats().tls_handshake_failures >= n
    });
    assert_eq!(server.stats().tls_handshake_failures, n);
}

/// Waits for an s_client the server refuses in its handshake: it fails,
/// what it sent (`sent`) never comes back, its errors name `alert`, and
/// the server counts it as failed handshake number `n`.
fn expect_refused(client: Client, sent: &str, alert: &str, server: &ServerThread, n: u64) {
    let out = client.wait();
    assert!(!out.status.success(), "{out}");
    assert!(!out.stdout.contains(sent), "{out}");
    assert!(out.stderr.contains(alert), "expected {alert:?}: {out}");
    wait_for_failures(server, n);
}

fn tls_counts(stats: &Stats) -> (u64, u64) {
    (stats.tls_handshakes, stats.tls_handshake_failures)
}

/// Whether `needle` occurs in the certificate's DER (a subject's common
/// name is there as its plain bytes).
fn der_names(der: &[u8], needle: &str) -> bool {
    der.windows(needle.len()).any(|w| w == needle.as_bytes())
}

// ---------------------------------------------------------------------
// openssl s_client

fn have_openssl() -> Option<PathBuf> {
    outside_program("openssl", "openssl")
}

both_modes!(openssl_s_client_verifies_and_echoes);
/// s_client verifies the certificate, negotiates TLS 1.3, and gets its
/// line back; the handler saw the name it asked for. s_client sending no
/// name (and checking the certificate's IP address instead) is served
/// too, and the handler sees no name.
fn openssl_s_client_verifies_and_echoes(park: bool) {
    let Some(openssl) = have_openssl() else {
        return;
    };
    let pki = Pki::new();
    let acceptor = pki.acceptor();
    let (server, seen) = recording_server(park, acceptor);

    let mut client = Client::start(&mut s_client(&openssl, &server, &pki));
    client.send(b"hello from openssl\n");
    client.expect_line("hello from openssl");
    let out = client.finish();
    assert!(out.status.success(), "{out}");
    assert!(out.stdout.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(out.stdout.contains("New, TLSv1.3, Cipher is"), "{out}");
    // No ALPN offered by either side.
    assert!(out.stdout.contains("No ALPN negotiated"), "{out}");

    let named = seen_once(&seen);
    assert!(named.tls);
    assert_eq!(named.server_name.as_deref(), Some("localhost"));
    assert_eq!(named.version, Some(ProtocolVersion::TLSv1_3));
    assert_eq!(named.alpn, None);
    assert_eq!(named.peer_certificates, None);
    assert_eq!(named.proxy, None);

    let mut client = Client::start(s_client_without_name(&openssl, &server, &pki).args([
        "-noservername",
        "-verify_ip",
        "127.0.0.1",
    ]));
    client.send(b"no name sent\n");
    client.expect_line("no name sent");
    let out = client.finish();
    assert!(out.status.success(), "{out}");
    assert!(out.stdout.contains("Verify return code: 0 (ok)"), "{out}");
    let nameless = seen_once(&seen);
    assert!(nameless.tls);
    assert_eq!(nameless.server_name, None);

    wait_until("both connections to be completed", || {
        server.stats().completed == 2
    });
    assert_eq!(tls_counts(&server.stats()), (2, 0));
    server.stop().unwrap();
}

both_modes!(openssl_s_client_sees_a_reload);
/// A reload while s_client is connected: the next s_client gets the new
/// certificate (subject `second`), the first goes on with the old one.
fn openssl_s_client_sees_a_reload(park: bool) {
    let Some(openssl) = have_openssl() else {
        return;
    };
    let pki = Pki::new();
    let acceptor = pki.acceptor();
    let (server, seen) = recording_server(park, acceptor.clone());

    let mut before = Client::start(&mut s_client(&openssl, &server, &pki));
    before.send(b"before the reload\n");
    before.expect_line("before the reload");
    seen_once(&seen);

    acceptor
        .reload_from_pem_files(&pki.cert2, &pki.key2)
        .unwrap();
    let mut after = Client::start(&mut s_client(&openssl, &server, &pki));
    after.send(b"after the reload\n");
    after.expect_line("after the reload");
    seen_once(&seen);
    before.send(b"still open\n");
    before.expect_line("still open");

    let (before, after) = (before.finish(), after.finish());
    assert!(before.status.success(), "{before}");
    assert!(after.status.success(), "{after}");
    assert!(before.stdout.contains("subject=CN = first"), "{before}");
    assert!(after.stdout.contains("subject=CN = second"), "{after}");
    assert!(
        after.stdout.contains("Verify return code: 0 (ok)"),
        "{after}"
    );
    assert_eq!(tls_counts(&server.stats()), (2, 0));
    server.stop().unwrap();
}

both_modes!(openssl_s_client_negotiates_alpn);
/// An acceptor offering `h2`: s_client offering `h2` agrees on it, and
/// the handler sees it; one offering only `http/1.1` is refused.
fn openssl_s_client_negotiates_alpn(park: bool) {
    let Some(openssl) = have_openssl() else {
        return;
    };
    let pki = Pki::new();
    let acceptor = pki.acceptor().with_alpn(["h2"]);
    let (server, seen) = recording_server(park, acceptor);

    let mut client = Client::start(s_client(&openssl, &server, &pki).args(["-alpn", "h2"]));
    client.send(b"over h2\n");
    client.expect_line("over h2");
    let out = client.finish();
    assert!(out.status.success(), "{out}");
    assert!(out.stdout.contains("ALPN protocol: h2"), "{out}");
    assert!(out.stdout.contains("Verify return code: 0 (ok)"), "{out}");
    let first = seen_once(&seen);
    assert_eq!(first.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(first.server_name.as_deref(), Some("localhost"));

    let mut client = Client::start(s_client(&openssl, &server, &pki).args(["-alpn", "http/1.1"]));
    client.send(b"over http/1.1\n");
    expect_refused(
        client,
        "over http/1.1",
        "no application protocol",
        &server,
        1,
    );
    assert!(seen.try_recv().is_err(), "the refused client was served");
    assert_eq!(tls_counts(&server.stats()), (1, 1));
    server.stop().unwrap();
}

both_modes!(openssl_s_client_with_client_certificates);
/// An acceptor that wants client certificates: s_client presenting one
/// signed by the client CA is served and the handler reads its chain;
/// s_client without one, or with one from another CA, is refused, each
/// counted as a failed handshake.
fn openssl_s_client_with_client_certificates(park: bool) {
    let Some(openssl) = have_openssl() else {
        return;
    };
    let pki = Pki::new();
    let acceptor = pki.acceptor().with_client_ca(&pki.client_ca).unwrap();
    let (server, seen) = recording_server(park, acceptor);

    let mut client = Client::start(
        s_client(&openssl, &server, &pki)
            .arg("-cert")
            .arg(&pki.client_cert)
            .arg("-key")
            .arg(&pki.client_key),
    );
    client.send(b"with my certificate\n");
    client.expect_line("with my certificate");
    let out = client.finish();
    assert!(out.status.success(), "{out}");
    assert!(out.stdout.contains("Verify return code: 0 (ok)"), "{out}");
    // The server named the CA it wants client certificates from.
    let named = "Acceptable client certificate CA names\nCN = socketserver test client CA";
    assert!(out.stdout.contains(named), "{out}");
    let served = seen_once(&seen);
    let chain = served
        .peer_certificates
        .expect("the handler to see the client's certificates");
    assert_eq!(chain.len(), 1, "s_client sends its own certificate only");
    assert!(der_names(&chain[0], "client one"));
    assert_eq!(tls_counts(&server.stats()), (1, 0));

    // TLS 1.3: the client thinks its side done and writes; the server
    // then refuses the missing or foreign certificate with an alert.
    let refusals = [
        (None, "certificate required"),
        (Some((&pki.stranger_cert, &pki.stranger_key)), "unknown ca"),
    ];
    for (n, (identity, alert)) in refusals.into_iter().enumerate() {
        let mut command = s_client(&openssl, &server, &pki);
        if let Some((cert, key)) = identity {
            command.arg("-cert").arg(cert).arg("-key").arg(key);
        }
        let mut client = Client::start(&mut command);
        client.send(b"without a good certificate\n");
        expect_refused(client, "without a good", alert, &server, n as u64 + 1);
    }
    assert!(seen.try_recv().is_err(), "a refused client was served");
    assert_eq!(tls_counts(&server.stats()), (1, 2));
    server.stop().unwrap();
}

both_modes!(openssl_s_client_key_updates);
/// s_client's `K` and `k` commands send a TLS 1.3 KeyUpdate, the first
/// asking the server to update its own keys too: the server answers that
/// one with a KeyUpdate of its own (and not the second), and the echo
/// goes on in the new keys both ways. `-msg` shows the messages.
fn openssl_s_client_key_updates(park: bool) {
    let Some(openssl) = have_openssl() else {
        return;
    };
    let pki = Pki::new();
    let acceptor = pki.acceptor();
    let (server, seen) = recording_server(park, acceptor);

    let mut client = Client::start(s_client(&openssl, &server, &pki).arg("-msg"));
    client.send(b"before\n");
    client.expect_line("before");
    // s_client takes a line that starts with K as a command, and all it
    // read with it: the next line goes once it says it did the command.
    client.send(b"K\n");
    client.expect_stderr_line("KEYUPDATE");
    client.send(b"after an update asked of both\n");
    client.expect_line("after an update asked of both");
    client.send(b"k\n");
    client.expect_stderr_line("KEYUPDATE");
    client.send(b"after the client's own update\n");
    client.expect_line("after the client's own update");
    let out = client.finish();
    assert!(out.status.success(), "{out}");
    assert_eq!(out.stderr.matches("KEYUPDATE").count(), 2, "{out}");
    let sent = ">>> TLS 1.3, Handshake [length 0005], KeyUpdate";
    let answer = "<<< TLS 1.3, Handshake [length 0005], KeyUpdate";
    assert_eq!(out.stdout.matches(sent).count(), 2, "{out}");
    assert_eq!(out.stdout.matches(answer).count(), 1, "{out}");
    // The answer came before the next echo.
    let answered = out.stdout.find(answer).unwrap();
    let echoed = out
        .stdout
        .find("\nafter an update asked of both\n")
        .unwrap();
    assert!(answered < echoed, "{out}");
    seen_once(&seen);
    wait_until("the connection to be completed", || {
        server.stats().completed == 1
    });
    let stats = server.stats();
    assert_eq!(tls_counts(&stats), (1, 0));
    assert_eq!(stats.handler_errors, 0);
    server.stop().unwrap();
}

both_modes!(openssl_s_client_renegotiation_is_refused);
/// Over TLS 1.2, s_client's `R` command asks to renegotiate: the server
/// declines (a `no_renegotiation` warning, as rustls does), s_client gives
/// up on the connection, and the server serves the next client.
fn openssl_s_client_renegotiation_is_refused(park: bool) {
    let Some(openssl) = have_openssl() else {
        return;
    };
    let pki = Pki::new();
    let acceptor = pki.acceptor();
    let (server, seen) = recording_server(park, acceptor);

    renegotiation_declined(&openssl, &server, &pki);
    assert_eq!(seen_once(&seen).version, Some(ProtocolVersion::TLSv1_2));

    let mut client = Client::start(&mut s_client(&openssl, &server, &pki));
    client.send(b"next\n");
    client.expect_line("next");
    let out = client.finish();
    assert!(out.status.success(), "{out}");
    seen_once(&seen);
    assert_eq!(tls_counts(&server.stats()), (2, 0));
    server.stop().unwrap();
}

// ---------------------------------------------------------------------
// Python's ssl module

/// Connects with Python's default client context (the CA file, hostname
/// checked), capped at TLS 1.2 if the third argument says so; echoes one
/// line; prints the version; then `unwrap()`, which sends `close_notify`
/// and waits for the server's.
const PYTHON_CLIENT: &str = r#"
import socket, ssl, sys
port, cafile, cap = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
assert ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED
if cap == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    message = b"hello from python\n"
    tls.sendall(message)
    echoed = b""
    while len(echoed) < len(message):
        chunk = tls.recv(len(message) - len(echoed))
        if not chunk:
            break
        echoed += chunk
    print("echoed" if echoed == message else "wrong echo %r" % echoed)
    print(tls.version())
    tls.unwrap()
    print("closed cleanly")
"#;

both_modes!(python_ssl_speaks_tls_1_3_and_1_2);
/// Python's default context (CA file, hostname checked) gets TLS 1.3 and
/// its echo; capped at TLS 1.2 it gets 1.2. Each closes with
/// `close_notify` and gets the server's back.
fn python_ssl_speaks_tls_1_3_and_1_2(park: bool) {
    let Some(python) = outside_program("python3", "python3") else {
        return;
    };
    let pki = Pki::new();
    let acceptor = pki.acceptor();
    let (server, seen) = recording_server(park, acceptor);
    let port = inet(&server.local_addr()).port().to_string();

    for (cap, version, protocol) in [
        ("none", "TLSv1.3", ProtocolVersion::TLSv1_3),
        ("1.2", "TLSv1.2", ProtocolVersion::TLSv1_2),
    ] {
        let client = Client::start(
            Command::new(&python)
                .args(["-c", PYTHON_CLIENT, &port])
                .arg(&pki.ca)
                .arg(cap),
        );
        let out = client.finish();
        assert!(out.status.success(), "{out}");
        assert_eq!(
            out.stdout,
            format!("echoed\n{version}\nclosed cleanly"),
            "{out}"
        );
        let seen = seen_once(&seen);
        assert_eq!(seen.version, Some(protocol));
        assert_eq!(seen.server_name.as_deref(), Some("localhost"));
    }
    wait_until("both connections to be completed", || {
        server.stats().completed == 2
    });
    let stats = server.stats();
    assert_eq!(tls_counts(&stats), (2, 0));
    assert_eq!(stats.handler_errors, 0);
    server.stop().unwrap();
}

/// Echoes `size` random bytes through the server, writing and reading
/// at once on a non-blocking socket (an echo client that wrote it all
/// before reading would stall once both sides' buffers are full); prints
/// how many came back and whether they are the same.
const PYTHON_BULK: &str = r#"
import os, select, socket, ssl, sys
port, cafile, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=cafile)
data = os.urandom(size)
sent, echoed = 0, bytearray()
retry = (ssl.SSLWantReadError, ssl.SSLWantWriteError)
with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
    tls = ctx.wrap_socket(raw, server_hostname="localhost")
    tls.setblocking(False)
    while len(echoed) < size:
        if not tls.pending():
            writing = [tls] if sent < size else []
            r, w, _ = select.select([tls], writing, [], 5)
            if not r and not w:
                sys.exit("stalled: %d sent, %d echoed" % (sent, len(echoed)))
        if sent < size:
            try:
                sent += tls.send(data[sent:sent + 16384])
            except retry:
                pass
        try:
            chunk = tls.recv(65536)
            if not chunk:
                sys.exit("end of file after %d echoed" % len(echoed))
            echoed += chunk
        except retry:
            pass
    print(len(echoed), bytes(echoed) == data)
"#;

both_modes!(python_ssl_echoes_megabytes);
/// 2 MiB each way through one connection, Python writing and reading
/// at once: all of it comes back, in order.
fn python_ssl_echoes_megabytes(park: bool) {
    let Some(python) = outside_program("python3", "python3") else {
        return;
    };
    let pki = Pki::new();
    let acceptor = pki.acceptor();
    let (server, seen) = recording_server(park, acceptor);
    let port = inet(&server.local_addr()).port().to_string();
    let size = 2 << 20;

    let client = Client::start(
        Command::new(&python)
            .args(["-c", PYTHON_BULK, &port])
            .arg(&pki.ca)
            .arg(size.to_string()),
    );
    let out = client.wait();
    assert!(out.status.success(), "{out}");
    assert_eq!(out.stdout, format!("{size} True"), "{out}");
    seen_once(&seen);
    wait_until("the connection to be completed", || {
        server.stats().completed == 1
    });
    let stats = server.stats();
    assert_eq!(tls_counts(&stats), (1, 0));
    assert_eq!(stats.handler_errors, 0);
    server.stop().unwrap();
}

/// Reads to the end, refusing an end of file without `close_notify`
/// (`suppress_ragged_eofs=False` makes that an `SSLEOFError`), and prints
/// what came.
const PYTHON_READ_TO_CLOSE: &str = r#"
import socket, ssl, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=cafile)
with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
    tls = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
    got = b""
    while True:
        chunk = tls.recv(1024)
        if not chunk:
            break
        got += chunk
    print(got.decode().strip())
    print("close_notify")
"#;

both_modes!(python_ssl_gets_close_notify_when_the_handler_returns);
/// A handler that writes a greeting and returns: Python, which fails on
/// an end of file without `close_notify`, reads the greeting and a clean
/// close.
fn python_ssl_gets_close_notify_when_the_handler_returns(park: bool) {
    let Some(python) = outside_program("python3", "python3") else {
        return;
    };
    let pki = Pki::new();
    let acceptor = pki.acceptor();
    let server = spawn(builder(park, acceptor), |conn: &mut Connection| {
        conn.write_all(b"greetings\n")
    });
    let port = inet(&server.local_addr()).port().to_string();

    let client = Client::start(
        Command::new(&python)
            .args(["-c", PYTHON_READ_TO_CLOSE, &port])
            .arg(&pki.ca),
    );
    let out = client.wait();
    assert!(out.status.success(), "{out}");
    assert_eq!(out.stdout, "greetings\nclose_notify", "{out}");
    assert_eq!(tls_counts(&server.stats()), (1, 0));
    server.stop().unwrap();
}

// ---------------------------------------------------------------------
// socat

/// `socat` relaying its stdin and stdout to `server` over TLS, trusting
/// the CA in `ca`, checking the certificate is for `localhost` (which it
/// sends as SNI too).
fn socat_to(socat: &Path, server: &ServerThread, ca: &Path) -> Command {
    let address = format!(
        "OPENSSL:{},cafile={},verify=1,commonname=localhost",
        inet(&server.local_addr()),
        ca.display()
    );
    let mut command = Command::new(socat);
    command.args(["-T", "5", "-", &address]);
    command
}

both_modes!(socat_echoes_over_tls);
/// socat verifies the certificate for `localhost` (and sends it as SNI)
/// and relays its stdin to the echo and back; socat trusting another CA
/// refuses the certificate within the handshake (an alert), and the
/// server counts that handshake as failed.
fn socat_echoes_over_tls(park: bool) {
    let Some(socat) = outside_program("socat", "socat") else {
        return;
    };
    let pki = Pki::new();
    let acceptor = pki.acceptor();
    let (server, seen) = recording_server(park, acceptor);

    let mut client = Client::start(&mut socat_to(&socat, &server, &pki.ca));
    client.send(b"hello from socat\n");
    client.expect_line("hello from socat");
    let out = client.finish();
    assert!(out.status.success(), "{out}");
    assert_eq!(out.stdout, "hello from socat", "{out}");
    let served = seen_once(&seen);
    assert_eq!(served.server_name.as_deref(), Some("localhost"));
    assert_eq!(served.version, Some(ProtocolVersion::TLSv1_3));

    // The client CA signed no server certificate.
    let mut client = Client::start(&mut socat_to(&socat, &server, &pki.client_ca));
    client.send(b"to an untrusted server\n");
    let out = client.finish();
    assert!(!out.status.success(), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(out.stderr.contains("certificate verify failed"), "{out}");
    wait_for_failures(&server, 1);
    assert!(seen.try_recv().is_err(), "the refusing client was served");
    assert_eq!(tls_counts(&server.stats()), (1, 1));
    server.stop().unwrap();
}

// ---------------------------------------------------------------------
// HAProxy in front

both_modes!(haproxy_sends_proxy_v2_then_tls);
/// HAProxy takes plain TCP clients and, to the server, sends a PROXY v2
/// header and then speaks TLS (SNI `localhost`): the client gets its
/// echo; the handler sees the real client as its peer, HAProxy as the
/// proxy, and the TLS session.
fn haproxy_sends_proxy_v2_then_tls(park: bool) {
    if common::haproxy::have_haproxy().is_none() {
        return;
    }
    let pki = Pki::new();
    let acceptor = pki.acceptor();
    let (handler, seen) = recording_echo();
    let server = spawn(
        builder(park, acceptor).proxy_protocol(ProxyProtocol::new().trust_loopback()),
        handler,
    );
    let proxy = HaProxy::builder(inet(&server.local_addr()), SendProxy::V2)
        .server_options("ssl verify none sni str(localhost)")
        .start();

    for n in 1..=2 {
        let mut client = proxy.connect();
        round_trip(&mut client, b"plain to haproxy, TLS beyond\n");
        let served = seen_once(&seen);
        assert_eq!(served.peer, Addr::Inet(client.local_addr().unwrap()));
        let via = served.proxy.expect("the PROXY header's sender");
        assert!(via.ip().unwrap().is_loopback(), "{via}");
        assert_ne!(via, served.peer);
        assert!(served.tls, "the handler saw no TLS session");
        assert_eq!(served.server_name.as_deref(), Some("localhost"));
        drop(client);
        wait_until("the connection to be completed", || {
            server.stats().completed == n
        });
    }
    let stats = server.stats();
    assert_eq!(tls_counts(&stats), (2, 0));
    assert_eq!((stats.proxy_errors, stats.proxy_refused), (0, 0));
    assert!(!proxy.stderr().contains("ALERT"), "{}", proxy.stderr());
    let check = proxy.check_config();
    assert!(check.contains("Configuration file is valid"), "{check}");
    assert!(!check.contains("WARNING"), "{check}");
    server.stop().unwrap();
}

// ---------------------------------------------------------------------
// Plaintext to the TLS port

both_modes!(plaintext_http_is_turned_away);
/// A plaintext HTTP request to the TLS port: no HTTP reply (at most a TLS
/// alert), the connection closed, one failed handshake counted, the
/// handler never run; the next TLS client is served.
fn plaintext_http_is_turned_away(park: bool) {
    let pki = Pki::new();
    let acceptor = pki.acceptor();
    let (server, seen) = recording_server(park, acceptor);

    let mut plain = common::connect(&server.local_addr());
    plain.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    match plain.read_to_end(&mut reply) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection was not closed: {e} (read {reply:?})"),
    }
    // Nothing, or one fatal TLS alert: a record of type 21, length 2,
    // level 2.
    let alert = reply.len() == 7 && reply[0] == 0x15 && reply[3..6] == [0, 2, 2];
    assert!(
        reply.is_empty() || alert,
        "{:?}",
        String::from_utf8_lossy(&reply)
    );
    wait_for_failures(&server, 1);
    assert!(seen.try_recv().is_err(), "the plaintext client was served");

    let config = client_config(&pki.ca, &[], None);
    let mut client = connect(&server.local_addr(), "localhost", &config).unwrap();
    assert_eq!(exchange(&mut client, b"after http", 10), b"after http");
    assert!(seen_once(&seen).tls);
    assert_eq!(tls_counts(&server.stats()), (1, 1));
    server.stop().unwrap();
}
