//! The PROXY protocol end to end: a real HAProxy (`send-proxy`,
//! `send-proxy-v2`) in front of the server, and clients that are not
//! trusted or send broken headers; in both serving modes (`both_modes!`: a
//! thread per connection, and `park_idle`). `proxy_protocol_is_for_streams_only`
//! checks a datagram server's settings, which no mode changes.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::haproxy::{have_haproxy, HaProxy, SendProxy};
use common::*;
use socket2::{Domain, Socket, Type};
use socketserver::{Connection, ProxyProtocol, Server};

/// Replies `PEER via PROXY`, as the handler sees them.
fn whoami(conn: &mut Connection) -> std::io::Result<()> {
    let proxy = conn
        .proxy_addr()
        .map_or("none".to_string(), |a| a.to_string());
    conn.write_all(format!("{} via {proxy}", conn.peer_addr()).as_bytes())
}

/// Asserts the server closed `s` without sending anything: end of file, or
/// a reset (the server did not read what the client sent before closing).
fn assert_closed_unserved(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected a close, got {other:?}"),
    }
}

fn read_reply(mut s: TcpStream) -> String {
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    reply
}

both_modes!(haproxy_passes_the_real_client_with_v1_and_v2);
fn haproxy_passes_the_real_client_with_v1_and_v2(park: bool) {
    if have_haproxy().is_none() {
        return;
    }
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(2)
            .proxy_protocol(ProxyProtocol::new().trust_loopback()),
        whoami,
    );
    let backend = inet(&server.local_addr());
    for (send, frontend_ip) in [
        (SendProxy::V1, "127.0.0.1"),
        (SendProxy::V2, "127.0.0.1"),
        (SendProxy::V1, "::1"),
        (SendProxy::V2, "::1"),
    ] {
        let proxy = HaProxy::builder(backend, send)
            .frontend_ip(frontend_ip.parse().unwrap())
            .start();
        let client = proxy.connect();
        let me = client.local_addr().unwrap();
        let reply = read_reply(client);
        let (peer, via) = reply.split_once(" via ").unwrap();
        assert_eq!(peer, me.to_string(), "{send:?} {frontend_ip}");
        let via: SocketAddr = via.parse().unwrap();
        assert!(via.ip().is_loopback() && via != me, "{reply}");
    }
    let stats = server.stats();
    assert_eq!(
        (stats.completed, stats.proxy_errors, stats.proxy_refused),
        (4, 0, 0)
    );
    server.stop().unwrap();
}

/// A client socket bound to a chosen loopback address, connected to `to`.
fn connect_from(local: &str, to: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&format!("{local}:0").parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.connect_timeout(&to.into(), TIMEOUT).unwrap();
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s
}

both_modes!(max_per_source_counts_the_clients_behind_the_proxy);
fn max_per_source_counts_the_clients_behind_the_proxy(park: bool) {
    if have_haproxy().is_none() {
        return;
    }
    let (gate, started) = Gate::new();
    let handler = {
        let gate = gate.clone();
        move |conn: &mut Connection| {
            gate.arrive_from(conn);
            whoami(conn)
        }
    };
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(4)
            .max_per_source(1)
            .busy_message("busy")
            .proxy_protocol(ProxyProtocol::new().trust_loopback()),
        handler,
    );
    let proxy = HaProxy::start(inet(&server.local_addr()), SendProxy::V2);
    let first = connect_from("127.0.0.1", proxy.frontend());
    expect_started(&started, 1);
    // Same real client: refused, though every connection is from HAProxy.
    assert_eq!(
        read_reply(connect_from("127.0.0.1", proxy.frontend())),
        "busy"
    );
    // Another real client behind the same proxy: served.
    let other = connect_from("127.0.0.2", proxy.frontend());
    expect_started(&started, 1);
    gate.open();
    assert!(read_reply(first).starts_with("127.0.0.1:"));
    assert!(read_reply(other).starts_with("127.0.0.2:"));
    assert_eq!(server.stats().rejected_per_source, 1);
    server.stop().unwrap();
}

both_modes!(connections_from_untrusted_addresses_are_refused);
fn connections_from_untrusted_addresses_are_refused(park: bool) {
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(1)
            .proxy_protocol(ProxyProtocol::new().trust("10.9.9.9".parse().unwrap())),
        whoami,
    );
    let mut client = connect(&server.local_addr());
    client
        .write_all(b"PROXY TCP4 1.2.3.4 5.6.7.8 1000 2000\r\n")
        .unwrap();
    assert_closed_unserved(&mut client);
    wait_until("the refusal to be counted", || {
        server.stats().proxy_refused == 1
    });
    assert_eq!(server.stats().completed, 0);
    server.stop().unwrap();
}

both_modes!(broken_missing_and_slow_headers_close_the_connection);
fn broken_missing_and_slow_headers_close_the_connection(park: bool) {
    let header_timeout = Duration::from_millis(400);
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(2)
            .proxy_protocol(
                ProxyProtocol::new()
                    .trust_loopback()
                    .header_timeout(header_timeout),
            ),
        whoami,
    );
    let addr = server.local_addr();
    let mut v2_too_long = b"\r\n\r\n\0\r\nQUIT\n\x21\x11".to_vec();
    v2_too_long.extend_from_slice(&u16::MAX.to_be_bytes());
    for bad in [
        &b"GET / HTTP/1.0\r\n\r\n"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 2000\r\n",
        b"PROXY TCP4 not-an-address 5.6.7.8 1 2\r\n",
        &v2_too_long,
    ] {
        let mut client = connect(&addr);
        client.write_all(bad).unwrap();
        let t = Instant::now();
        assert_closed_unserved(&mut client);
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
    }
    // A header that trickles in and never ends is cut at the header timeout.
    let mut slow = connect(&addr);
    let t = Instant::now();
    for b in b"PROXY TCP4 " {
        slow.write_all(&[*b]).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_closed_unserved(&mut slow);
    let took = t.elapsed();
    assert!(
        took >= header_timeout && took < header_timeout * 2,
        "{took:?}"
    );
    wait_until("5 header errors counted", || {
        server.stats().proxy_errors == 5
    });
    // A good header still works.
    let mut good = connect(&addr);
    good.write_all(b"PROXY TCP4 192.0.2.1 127.0.0.1 4444 80\r\n")
        .unwrap();
    assert_eq!(
        read_to_end(&mut good),
        format!("192.0.2.1:4444 via {}", good.local_addr().unwrap()).as_bytes()
    );
    server.stop().unwrap();
}

both_modes!(a_client_silent_before_its_header_is_closed_idle_at_shutdown);
/// A connection still waiting for its PROXY header has sent nothing yet:
/// shutdown gives it the grace of new connections (its header may be on
/// the wire), half of `shutdown_timeout` here, then closes it as idle, in
/// both modes alike, rather than waiting out `shutdown_timeout` (or the
/// header timeout) and calling it drained, forced or a bad header.
fn a_client_silent_before_its_header_is_closed_idle_at_shutdown(park: bool) {
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .workers(2)
            .shutdown_timeout(Duration::from_secs(2))
            .proxy_protocol(
                ProxyProtocol::new()
                    .trust_loopback()
                    .header_timeout(Duration::from_secs(30)),
            ),
        whoami,
    );
    let mut silent = connect(&server.local_addr());
    wait_until("the silent client to be accepted", || {
        server.stats().accepted == 1
    });
    let t = Instant::now();
    let stats = server.shutdown_handle();
    let report = server.stop().unwrap();
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(2),
        "{took:?}"
    );
    assert_eq!(report.closed_idle, 1, "{report}");
    assert_eq!((report.drained, report.forced), (0, 0), "{report}");
    assert!(report.is_clean(), "{report}");
    assert_eq!(stats.stats().proxy_errors, 0);
    assert_closed_unserved(&mut silent);
}

#[test]
fn proxy_protocol_is_for_streams_only() {
    let err = Server::builder()
        .bind("127.0.0.1:0")
        .transport(socketserver::Transport::Datagram)
        .proxy_protocol(ProxyProtocol::new().trust_loopback())
        .build(whoami)
        .unwrap_err();
    common::invalid_setting(&err, "proxy_protocol");
}

both_modes!(whoami_server_behind_haproxy_shows_the_real_client);
fn whoami_server_behind_haproxy_shows_the_real_client(park: bool) {
    if have_haproxy().is_none() {
        return;
    }
    use std::io::BufRead;
    let mut child = std::process::Command::new(example("whoami_server"))
        .args(["--bind", "127.0.0.1:0", "--proxy-protocol"])
        .args(park.then_some("--park-idle"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut child = KillOnDrop(child);
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr: SocketAddr = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap()
        .strip_suffix(" (tcp)")
        .unwrap()
        .parse()
        .unwrap();
    for send in [SendProxy::V1, SendProxy::V2] {
        let proxy = HaProxy::start(addr, send);
        let client = proxy.connect();
        let me = client.local_addr().unwrap();
        assert_eq!(read_reply(client), format!("{me}\n"));
    }
    sigterm(&child.0);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert!(child.0.wait().unwrap().success());
    assert!(rest.starts_with("shut down: "), "{rest}");
}
