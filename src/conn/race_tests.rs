//! Races between a push and its connection's end, made certain by
//! stopping one thread at a [`failpoint`](super::failpoint).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{mpsc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::failpoint::{AFTER_PUSH_WRITE, BEFORE_END};
use crate::{Connection, SendError, Server};

const TIMEOUT: Duration = Duration::from_secs(5);

/// The failpoints are global: one race at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A push that has written part of its message when the connection ends
/// (its handler returned, its queue was dropped) does not queue the rest
/// on the dead connection and report success: the rest is dropped with
/// the queue, and the sender told `Closed`.
fn a_push_cut_short_by_its_connections_end_says_so(park: bool) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .park_idle(park)
        .thread_name("race")
        .max_outbox(64 << 20)
        .build(move |conn: &mut Connection| -> io::Result<()> {
            tx.lock().unwrap().send(conn.outbox()).unwrap();
            let mut one = [0; 1];
            conn.read_exact(&mut one)
        })
        .unwrap()
        .spawn()
        .unwrap();
    // A client that never reads, with a small receive buffer: a large
    // push is written only in part.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let addr = server.local_addr().inet().unwrap();
    socket.connect_timeout(&addr.into(), TIMEOUT).unwrap();
    let mut client: TcpStream = socket.into();
    client.set_write_timeout(Some(TIMEOUT)).unwrap();
    let outbox = rx.recv_timeout(TIMEOUT).unwrap();

    // The handler returns; its connection stops just before dropping its
    // (empty) queue.
    BEFORE_END.arm("race-");
    AFTER_PUSH_WRITE.arm("race-pusher");
    client.write_all(b"x").unwrap();
    assert!(BEFORE_END.wait_stopped(), "the connection did not end");
    // A push takes the turn and writes what the socket takes.
    let pushing = outbox.clone();
    let pusher = thread::Builder::new()
        .name("race-pusher".into())
        .spawn(move || pushing.send(&vec![b'q'; 8 << 20]))
        .unwrap();
    assert!(AFTER_PUSH_WRITE.wait_stopped(), "the push did not write");
    // The connection ends meanwhile.
    BEFORE_END.release();
    let deadline = Instant::now() + TIMEOUT;
    while !outbox.is_closed() {
        assert!(Instant::now() < deadline, "the queue was not dropped");
        thread::sleep(Duration::from_millis(1));
    }
    AFTER_PUSH_WRITE.release();
    assert_eq!(pusher.join().unwrap(), Err(SendError::Closed));
    assert_eq!(outbox.queued(), 0, "the rest queued on an ended connection");
    assert!(outbox.is_closed());
    let mut sink = Vec::new();
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let _ = client.read_to_end(&mut sink);
    server.stop().unwrap();
}

#[test]
fn a_push_cut_short_by_its_connections_end_says_so_threads() {
    a_push_cut_short_by_its_connections_end_says_so(false);
}

#[test]
fn a_push_cut_short_by_its_connections_end_says_so_parked() {
    a_push_cut_short_by_its_connections_end_says_so(true);
}
