//! Push: `Connection::outbox` lets any thread write to a connection while
//! its handler goes on reading. Each test runs in both serving modes
//! (`both_modes!`: a thread per connection, and `park_idle`), against real
//! sockets on loopback; the datagram one over UDP.

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use socketserver::{Connection, Outbox, SendError, Server, ServerThread, Transport};

/// A handler that hands its connection's outbox to the test, then echoes
/// what it reads until end of file.
fn hands_over(tx: mpsc::Sender<Outbox>) -> impl Fn(&mut Connection) -> io::Result<()> {
    let tx = std::sync::Mutex::new(tx);
    move |conn: &mut Connection| {
        let outbox = conn.outbox();
        // A test may take only the first connection's.
        let _ = tx.lock().unwrap().send(outbox);
        let mut buf = [0; 4096];
        loop {
            match conn.read(&mut buf)? {
                0 => return Ok(()),
                n => conn.write_all(&buf[..n])?,
            }
        }
    }
}

/// A server of `builder` with the `hands_over` handler, a client of it,
/// and that client's outbox.
fn served(builder: socketserver::ServerBuilder) -> (ServerThread, TcpStream, Outbox) {
    let (tx, rx) = mpsc::channel();
    let server = spawn(builder, hands_over(tx));
    let client = connect(&server.local_addr());
    let outbox = rx.recv_timeout(TIMEOUT).unwrap();
    (server, client, outbox)
}

fn read_exactly(client: &mut impl Read, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    client.read_exact(&mut buf).unwrap();
    buf
}

both_modes!(pushed_messages_reach_a_client_whose_handler_waits_to_read);
fn pushed_messages_reach_a_client_whose_handler_waits_to_read(park: bool) {
    let (server, mut client, outbox) =
        served(Server::builder().bind("127.0.0.1:0").park_idle(park));
    assert_eq!(
        outbox.peer_addr().to_string(),
        client.local_addr().unwrap().to_string()
    );
    // The handler is blocked (or parked) in its read meanwhile.
    outbox.send(b"one ").unwrap();
    outbox.send_shared(Arc::from(&b"two "[..])).unwrap();
    assert_eq!(read_exactly(&mut client, 8), b"one two ");
    // The handler's own replies still come, after what was pushed.
    client.write_all(b"echo").unwrap();
    assert_eq!(read_exactly(&mut client, 4), b"echo");
    outbox.send(b"three").unwrap();
    assert_eq!(read_exactly(&mut client, 5), b"three");
    assert!(!outbox.is_closed());
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"");
    // The connection has ended: sends fail at once, and say why.
    wait_until("the outbox to close", || outbox.is_closed());
    assert_eq!(outbox.send(b"late"), Err(SendError::Closed));
    let report = server.stop().unwrap();
    assert!(report.is_clean(), "{report}");
}

both_modes!(messages_are_never_cut_into_by_the_handlers_writes);
/// A handler writing large replies and another thread pushing small
/// messages to the same client: every message arrives whole, every reply
/// too, and nothing is lost.
fn messages_are_never_cut_into_by_the_handlers_writes(park: bool) {
    const REPLY: usize = 200_000;
    const REPLIES: usize = 20;
    const MSG: usize = 100;
    const MSGS: usize = 500;
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let server = spawn(
        Server::builder().bind("127.0.0.1:0").park_idle(park),
        move |conn: &mut Connection| {
            tx.lock().unwrap().send(conn.outbox()).unwrap();
            let reply = vec![b'h'; REPLY];
            for _ in 0..REPLIES {
                conn.write_all(&reply)?;
            }
            let mut rest = Vec::new();
            conn.read_to_end(&mut rest).map(drop)
        },
    );
    let mut client = connect(&server.local_addr());
    let outbox = rx.recv_timeout(TIMEOUT).unwrap();
    let pusher = std::thread::spawn(move || {
        let msg = [b'm'; MSG];
        for _ in 0..MSGS {
            outbox.send(&msg).unwrap();
        }
        outbox
    });
    let total = REPLY * REPLIES + MSG * MSGS;
    let got = read_exactly(&mut client, total);
    let outbox = pusher.join().unwrap();
    let mut runs = got.chunk_by(|a, b| a == b);
    let (mut h, mut m) = (0, 0);
    for run in &mut runs {
        match run[0] {
            b'h' => h += run.len(),
            b'm' => {
                assert_eq!(run.len() % MSG, 0, "a message was cut into");
                m += run.len();
            }
            other => panic!("unexpected byte {other}"),
        }
    }
    assert_eq!((h, m), (REPLY * REPLIES, MSG * MSGS));
    assert_eq!(outbox.queued(), 0);
    client.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut client), b"");
    server.stop().unwrap();
}

both_modes!(a_client_that_stops_reading_is_cut_at_max_outbox);
/// Sends never block, however slowly the client reads; once its unsent
/// bytes would pass `max_outbox` it is cut, counted, and later sends fail.
fn a_client_that_stops_reading_is_cut_at_max_outbox(park: bool) {
    const MAX: usize = 64 * 1024;
    let (server, client, outbox) = served(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .max_outbox(MAX),
    );
    let msg = [b'x'; 1024];
    let mut sent = 0;
    let started = Instant::now();
    let full = loop {
        let t = Instant::now();
        let result = outbox.send(&msg);
        assert!(t.elapsed() < Duration::from_millis(100), "a send blocked");
        match result {
            Ok(()) => sent += msg.len(),
            Err(e) => break e,
        }
        assert!(started.elapsed() < TIMEOUT, "never full after {sent} bytes");
    };
    assert_eq!(full, SendError::Full);
    // The socket's buffers took some; the outbox held at most MAX more.
    assert!(sent > MAX, "{sent}");
    assert!(outbox.is_closed());
    assert_eq!(outbox.send(b"more"), Err(SendError::Closed));
    wait_until("the handler to end", || server.stats().active == 0);
    assert_eq!(server.stats().slow_consumers, 1);
    drop(client);
    server.stop().unwrap();
}

both_modes!(one_message_larger_than_max_outbox_reaches_a_reading_client);
/// `max_outbox` bounds what waits unsent, not a message: one the socket
/// takes at once goes out, however large.
fn one_message_larger_than_max_outbox_reaches_a_reading_client(park: bool) {
    let (server, mut client, outbox) = served(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .max_outbox(1024),
    );
    outbox.send(&[b'b'; 16 * 1024]).unwrap();
    assert_eq!(read_exactly(&mut client, 16 * 1024), vec![b'b'; 16 * 1024]);
    assert_eq!(server.stats().slow_consumers, 0);
    server.stop().unwrap();
}

both_modes!(shutting_the_writing_half_writes_what_was_pushed_whole);
/// A handler that shuts down its writing half (the end of its reply)
/// first writes every message already pushed, whole: the client never
/// reads the end of the stream in the middle of a message. Later pushes
/// are refused.
fn shutting_the_writing_half_writes_what_was_pushed_whole(park: bool) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let (about_to_shut, shutting) = mpsc::channel();
    let about_to_shut = std::sync::Mutex::new(about_to_shut);
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .max_outbox(64 << 20),
        move |conn: &mut Connection| -> io::Result<()> {
            tx.lock().unwrap().send(conn.outbox()).unwrap();
            let mut one = [0; 1];
            conn.read_exact(&mut one)?;
            about_to_shut.lock().unwrap().send(()).unwrap();
            conn.shutdown(Shutdown::Write)?;
            io::copy(conn, &mut io::sink()).map(drop)
        },
    );
    let mut client = slow_reader(&server);
    let outbox = rx.recv_timeout(TIMEOUT).unwrap();
    let message = vec![b'q'; 8 << 20];
    outbox.send(&message).unwrap();
    assert!(outbox.queued() > 0, "all of it taken at once");
    client.write_all(b"x").unwrap();
    // The client reads only once the handler is shutting down.
    shutting.recv_timeout(TIMEOUT).unwrap();
    let got = read_to_end(&mut client);
    assert_eq!(
        got.len(),
        message.len(),
        "the end of the stream cut the message"
    );
    assert_eq!(outbox.send(b"later"), Err(SendError::Closed));
    client.shutdown(Shutdown::Write).unwrap();
    let report = server.stop().unwrap();
    assert_eq!(report.unsent_bytes, 0, "{report}");
}

both_modes!(close_ends_the_connection_after_what_is_queued);
fn close_ends_the_connection_after_what_is_queued(park: bool) {
    let (server, mut client, outbox) =
        served(Server::builder().bind("127.0.0.1:0").park_idle(park));
    outbox.send(b"bye").unwrap();
    outbox.close();
    assert_eq!(outbox.send(b"later"), Err(SendError::Closed));
    assert_eq!(read_to_end(&mut client), b"bye");
    // The handler's read ended too, and it returned.
    wait_until("the handler to end", || server.stats().completed == 1);
    server.stop().unwrap();
}

/// A server whose connections wait for input with no read timeout (as
/// listeners do) and write within 500 ms, 32 MiB of outbox each.
fn listeners(park: bool) -> socketserver::ServerBuilder {
    Server::builder()
        .bind("127.0.0.1:0")
        .park_idle(park)
        .read_timeout(None)
        .write_timeout(Some(Duration::from_millis(500)))
        .max_outbox(32 << 20)
}

both_modes!(close_to_a_client_that_does_not_read_ends_within_the_write_timeout);
/// `close()` with bytes queued for a client that has stopped reading: the
/// handler's read ends at once (no read timeout would end it), and the
/// connection within the write timeout, the rest counted as dropped.
fn close_to_a_client_that_does_not_read_ends_within_the_write_timeout(park: bool) {
    let (tx, rx) = mpsc::channel();
    let ended = std::sync::Mutex::new(tx);
    let server = spawn(listeners(park), move |conn: &mut Connection| {
        let _ = ended.lock().unwrap().send(conn.outbox());
        let mut buf = [0; 64];
        while conn.read(&mut buf)? > 0 {}
        Ok(())
    });
    let _client = slow_reader(&server);
    let outbox = rx.recv_timeout(TIMEOUT).unwrap();
    let chunk: Arc<[u8]> = Arc::from(vec![b'p'; 1 << 20]);
    for _ in 0..16 {
        outbox.send_shared(Arc::clone(&chunk)).unwrap();
    }
    assert!(outbox.queued() > 0, "the kernel took all 16 MiB");
    let closed = Instant::now();
    outbox.close();
    wait_until("the connection to end", || server.stats().active == 0);
    let after = closed.elapsed();
    assert!(after < Duration::from_secs(3), "ended after {after:?}");
    let report = server.stop().unwrap();
    assert_eq!(
        report.unsent_bytes, 0,
        "dropped before the shutdown: {report}"
    );
}

both_modes!(once_closed_a_clients_input_is_not_read);
/// Once its outbox is closed, with bytes still queued for it or none, a
/// connection's reads give end of file, whatever the client sent: on TCP,
/// shutting the reading side down does not stop bytes already there or
/// still coming, and a client that sends without pause would otherwise
/// keep its handler reading.
fn once_closed_a_clients_input_is_not_read(park: bool) {
    for queued in [true, false] {
        let (tx, rx) = mpsc::channel();
        let handed = std::sync::Mutex::new(tx);
        let (go, wait) = mpsc::channel::<()>();
        let wait = std::sync::Mutex::new(wait);
        let (report, read_after) = mpsc::channel();
        let report = std::sync::Mutex::new(report);
        let server = spawn(listeners(park), move |conn: &mut Connection| {
            let _ = handed.lock().unwrap().send(conn.outbox());
            // Reads only once the test has closed the outbox.
            let _ = wait.lock().unwrap().recv_timeout(TIMEOUT);
            let (mut buf, mut total) = ([0; 4096], 0);
            while let Ok(n @ 1..) = conn.read(&mut buf) {
                total += n;
            }
            let _ = report.lock().unwrap().send(total);
            Ok(())
        });
        let mut client = slow_reader(&server);
        let outbox = rx.recv_timeout(TIMEOUT).unwrap();
        client.write_all(&[b'c'; 32 * 1024]).unwrap();
        let port = server.local_addr().inet().unwrap().port();
        wait_until("the client's bytes to arrive", || {
            server_side_unread(port, &client) == 32 * 1024
        });
        if queued {
            let chunk: Arc<[u8]> = Arc::from(vec![b'p'; 1 << 20]);
            for _ in 0..16 {
                outbox.send_shared(Arc::clone(&chunk)).unwrap();
            }
            assert!(outbox.queued() > 0, "the kernel took all 16 MiB");
        }
        outbox.close();
        go.send(()).unwrap();
        let read = read_after.recv_timeout(TIMEOUT).unwrap();
        assert_eq!(read, 0, "queued: {queued}");
        wait_until("the handler to end", || server.stats().active == 0);
        drop(client);
        server.stop().unwrap();
    }
}

/// A client of `server` with a small receive buffer, fixed (no
/// autotuning, which may grow to tcp_rmem's 32 MiB): the kernel then holds
/// at most the server's send buffer (tcp_wmem, up to 4 MiB) and this, so
/// bytes pushed past that stay queued in the outbox until the client reads.
fn slow_reader(server: &ServerThread) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket
        .connect_timeout(&inet(&server.local_addr()).into(), TIMEOUT)
        .unwrap();
    let client: TcpStream = socket.into();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    client.set_write_timeout(Some(TIMEOUT)).unwrap();
    client
}

/// A server with one client that has not read yet, and bytes pushed to
/// it: 8 MiB waiting in its outbox, less than its `max_outbox`. The kernel
/// takes more of a client's bytes than its buffers first held, as the
/// sending socket's buffer grows (up to `net.ipv4.tcp_wmem`'s 4 MiB):
/// less than 8 MiB queued could be taken before the shutdown is over.
/// Returns how many bytes were pushed.
fn queued_for_a_client(park: bool, shutdown_timeout: Duration) -> (ServerThread, TcpStream, usize) {
    let (tx, rx) = mpsc::channel();
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .max_outbox(64 << 20)
            .shutdown_timeout(shutdown_timeout),
        hands_over(tx),
    );
    let mut client = slow_reader(&server);
    // One exchange: the connection is no longer new, and waits for its
    // client's next request (idle but for what is pushed to it).
    client.write_all(b"x").unwrap();
    assert_eq!(read_exactly(&mut client, 1), b"x");
    let outbox = rx.recv_timeout(TIMEOUT).unwrap();
    let msg = vec![b'q'; 64 * 1024];
    let mut sent = 0;
    while outbox.queued() < 8 << 20 {
        outbox.send(&msg).unwrap();
        sent += msg.len();
    }
    (server, client, sent)
}

both_modes!(a_shutdown_drains_queued_bytes_and_reports_those_it_cut);
/// Bytes queued for a client are work a shutdown waits for, like a
/// handler at work; cut at the end of `shutdown_timeout`, they are
/// reported.
fn a_shutdown_drains_queued_bytes_and_reports_those_it_cut(park: bool) {
    let (server, client, _) = queued_for_a_client(park, Duration::from_millis(300));
    let t = Instant::now();
    let report = server.stop().unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300), "not drained");
    assert_eq!((report.forced, report.closed_idle), (1, 0), "{report}");
    assert!(report.unsent_bytes > 0, "{report}");
    drop(client);
}

both_modes!(a_reading_client_gets_its_queued_bytes_before_shutdown_closes_it);
/// The other side: a client that reads what was queued lets the shutdown
/// close it as idle once its outbox is empty, well before the timeout.
fn a_reading_client_gets_its_queued_bytes_before_shutdown_closes_it(park: bool) {
    let (server, mut client, sent) = queued_for_a_client(park, Duration::from_secs(10));
    let handle = server.shutdown_handle();
    let t = Instant::now();
    let stopping = std::thread::spawn(move || server.stop().unwrap());
    wait_until("shutdown to begin", || handle.is_shutdown());
    assert_eq!(read_to_end(&mut client).len(), sent);
    let report = stopping.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!((report.closed_idle, report.forced), (1, 0), "{report}");
    assert_eq!(report.unsent_bytes, 0, "{report}");
}

both_modes!(pushes_reach_a_client_behind_a_proxy);
/// Under the PROXY protocol the outbox names the client the proxy spoke
/// for, and writes after the header, on the proxy's connection.
fn pushes_reach_a_client_behind_a_proxy(park: bool) {
    let (tx, rx) = mpsc::channel();
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(park)
            .proxy_protocol(socketserver::ProxyProtocol::new().trust_loopback()),
        hands_over(tx),
    );
    let mut proxy = connect(&server.local_addr());
    proxy
        .write_all(b"PROXY TCP4 192.0.2.9 127.0.0.1 4321 80\r\n")
        .unwrap();
    let outbox = rx.recv_timeout(TIMEOUT).unwrap();
    assert_eq!(outbox.peer_addr().to_string(), "192.0.2.9:4321");
    outbox.send(b"pushed").unwrap();
    assert_eq!(read_exactly(&mut proxy, 6), b"pushed");
    server.stop().unwrap();
}

#[test]
fn a_datagram_outbox_sends_each_message_as_one_datagram() {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let server = spawn(
        Server::builder()
            .bind("127.0.0.1:0")
            .transport(Transport::Datagram),
        move |conn: &mut Connection| {
            tx.lock().unwrap().send(conn.outbox()).unwrap();
            conn.write_all(b"ack")
        },
    );
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    client
        .send_to(b"subscribe", inet(&server.local_addr()))
        .unwrap();
    let mut buf = [0; 64];
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ack");
    // The exchange is over; its peer can still be sent to.
    let outbox = rx.recv_timeout(TIMEOUT).unwrap();
    outbox.send(b"first").unwrap();
    outbox.send_shared(Arc::from(&b"second"[..])).unwrap();
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"first");
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"second");
    // Too large for one datagram: not sent, and the peer is not lost.
    assert_eq!(outbox.send(&[b'x'; 70_000]), Err(SendError::Full));
    outbox.send(b"third").unwrap();
    let n = client.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"third");
    assert!(!outbox.is_closed());
    server.stop().unwrap();
    // The server has stopped: its socket sends nothing more.
    assert_eq!(outbox.send(b"late"), Err(SendError::Closed));
    assert!(outbox.is_closed());
}

/// The same over TLS: pushes are encrypted through the connection's own
/// session, their records in order with the handler's.
#[cfg(feature = "tls")]
mod over_tls {
    use super::*;
    use common::tls::{builder, client_config, connect as tls_connect, Pki, TlsClient};
    use rustls::ClientConfig;

    /// A TLS server with the `hands_over` handler, a client of it that
    /// has had one exchange, and that client's outbox; with the PKI and
    /// the client's configuration, which must outlive them.
    fn tls_served(park: bool) -> (Pki, ClientConfig, ServerThread, TlsClient, Outbox) {
        let pki = Pki::new();
        let (tx, rx) = mpsc::channel();
        let server = spawn(builder(park, pki.acceptor()), hands_over(tx));
        let config = client_config(&pki.ca, &[], None);
        let mut client = tls_connect(&server.local_addr(), "localhost", &config).unwrap();
        // The handler has its outbox once it runs, after the handshake;
        // the first exchange makes sure it is reading.
        client.write_all(b"hi").unwrap();
        assert_eq!(read_exactly(&mut client, 2), b"hi");
        let outbox = rx.recv_timeout(TIMEOUT).unwrap();
        (pki, config, server, client, outbox)
    }

    both_modes!(pushed_messages_reach_a_tls_client);
    fn pushed_messages_reach_a_tls_client(park: bool) {
        let (_pki, _config, server, mut client, outbox) = tls_served(park);
        outbox.send(b"one ").unwrap();
        outbox.send_shared(Arc::from(&b"two "[..])).unwrap();
        assert_eq!(read_exactly(&mut client, 8), b"one two ");
        client.write_all(b"echo").unwrap();
        assert_eq!(read_exactly(&mut client, 4), b"echo");
        client.conn.send_close_notify();
        client.flush().unwrap();
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"");
        wait_until("the outbox to close", || outbox.is_closed());
        assert_eq!(outbox.send(b"late"), Err(SendError::Closed));
        assert_eq!(server.stats().tls_handshake_failures, 0);
        server.stop().unwrap();
    }

    both_modes!(close_notify_with_bytes_after_it_ends_the_connection);
    /// A client's `close_notify` with more bytes after it, in one write,
    /// on a connection with an outbox: the handler reads the end, and
    /// nothing spins on the bytes the session takes no more of.
    fn close_notify_with_bytes_after_it_ends_the_connection(park: bool) {
        let (_pki, config, server, mut client, _outbox) = tls_served(park);
        client.conn.send_close_notify();
        let mut wire = Vec::new();
        while client.conn.wants_write() {
            client.conn.write_tls(&mut wire).unwrap();
        }
        wire.extend_from_slice(&[0x17; 5000]);
        client.sock.write_all(&wire).unwrap();
        wait_until("the handler to read the end", || {
            server.stats().completed == 1
        });
        // The server still serves.
        let mut other = tls_connect(&server.local_addr(), "localhost", &config).unwrap();
        other.write_all(b"again").unwrap();
        assert_eq!(read_exactly(&mut other, 5), b"again");
        drop(other);
        server.stop().unwrap();
    }

    both_modes!(large_writes_from_a_client_with_an_outbox_are_read_whole);
    /// A client that writes 20,000 bytes at a time (a record of 16 KiB and
    /// one of the rest) to a connection with an outbox: every byte is read,
    /// however the records fall across the server's socket reads.
    fn large_writes_from_a_client_with_an_outbox_are_read_whole(park: bool) {
        const WRITE: usize = 20_000;
        const WRITES: usize = 200;
        let pki = Pki::new();
        let server = spawn(
            builder(park, pki.acceptor()),
            |conn: &mut Connection| -> io::Result<()> {
                let _outbox = conn.outbox();
                let mut buf = vec![0; 7000];
                let mut total = 0;
                loop {
                    match conn.read(&mut buf)? {
                        0 => break,
                        n => total += n,
                    }
                }
                conn.write_all(total.to_string().as_bytes())
            },
        );
        let config = client_config(&pki.ca, &[], None);
        let mut client = tls_connect(&server.local_addr(), "localhost", &config).unwrap();
        for i in 0..WRITES {
            client.write_all(&[b'a' + (i % 26) as u8; WRITE]).unwrap();
        }
        client.conn.send_close_notify();
        client.flush().unwrap();
        let mut reply = Vec::new();
        let _ = client.read_to_end(&mut reply);
        assert_eq!(
            String::from_utf8_lossy(&reply),
            (WRITE * WRITES).to_string()
        );
        assert_eq!(server.stats().handler_errors, 0);
        server.stop().unwrap();
    }

    both_modes!(tls_records_of_pushes_and_replies_arrive_in_order);
    /// Large replies and small pushes from another thread at once: had a
    /// record gone out of order, the client's session would fail.
    fn tls_records_of_pushes_and_replies_arrive_in_order(park: bool) {
        const REPLY: usize = 50_000;
        const REPLIES: usize = 20;
        const MSG: usize = 100;
        const MSGS: usize = 500;
        let pki = Pki::new();
        let (tx, rx) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let server = spawn(
            builder(park, pki.acceptor()),
            move |conn: &mut Connection| {
                tx.lock().unwrap().send(conn.outbox()).unwrap();
                let mut go = [0; 1];
                conn.read_exact(&mut go)?;
                let reply = vec![b'h'; REPLY];
                for _ in 0..REPLIES {
                    conn.write_all(&reply)?;
                }
                let mut rest = Vec::new();
                conn.read_to_end(&mut rest).map(drop)
            },
        );
        let config = client_config(&pki.ca, &[], None);
        let mut client = tls_connect(&server.local_addr(), "localhost", &config).unwrap();
        let outbox = rx.recv_timeout(TIMEOUT).unwrap();
        client.write_all(b"g").unwrap();
        client.flush().unwrap();
        let pusher = std::thread::spawn(move || {
            for _ in 0..MSGS {
                outbox.send(&[b'm'; MSG]).unwrap();
            }
        });
        let got = read_exactly(&mut client, REPLY * REPLIES + MSG * MSGS);
        pusher.join().unwrap();
        let (mut h, mut m) = (0, 0);
        for run in got.chunk_by(|a, b| a == b) {
            match run[0] {
                b'h' => h += run.len(),
                _ => {
                    assert_eq!(run.len() % MSG, 0, "a message was cut into");
                    m += run.len();
                }
            }
        }
        assert_eq!((h, m), (REPLY * REPLIES, MSG * MSGS));
        server.stop().unwrap();
    }
}
