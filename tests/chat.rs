//! `examples/chat_server.rs` as its users run it, in both serving modes
//! (`both_modes!`): 1,000 clients, every line reaching every other client
//! in order; and a client that never reads, cut at `--max-outbox` while
//! the others get everything, the server's memory bounded.
//!
//! The clients live in this process, read through one `mio` poll; the
//! server is the example's own process.

mod common;

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use common::*;

/// How long a whole exchange may take on a loaded machine.
const LIMIT: Duration = Duration::from_secs(120);

/// The chat server, killed when dropped.
struct Chat {
    child: KillOnDrop,
    stdout: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl Chat {
    fn start(park: bool, extra: &[&str]) -> Chat {
        let mut args = vec!["--bind", "127.0.0.1:0", "--workers", "2"];
        if park {
            args.push("--park-idle");
        }
        args.extend_from_slice(extra);
        let mut child = KillOnDrop(
            Command::new(example("chat_server"))
                .args(&args)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.trim_end().strip_suffix(" (tcp)"))
            .unwrap_or_else(|| panic!("first line {line:?}"))
            .parse()
            .unwrap();
        Chat {
            child,
            stdout,
            addr,
        }
    }

    /// The second line, after `--metrics`: the URL's host and port.
    fn metrics_addr(&mut self) -> SocketAddr {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim_end()
            .strip_prefix("metrics on http://")
            .and_then(|rest| rest.strip_suffix("/metrics"))
            .unwrap_or_else(|| panic!("second line {line:?}"))
            .parse()
            .unwrap()
    }

    /// A value from `/proc/PID/status`, in KiB.
    fn status_kib(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.0.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// SIGTERM; the server reports its shutdown and exits 0.
    fn stop(mut self) -> String {
        sigterm(&self.child.0);
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        assert!(self.child.0.wait().unwrap().success());
        rest
    }
}

/// One client: its socket, registered in the poll, and what it read.
struct Client {
    stream: mio::net::TcpStream,
    partial: Vec<u8>,
    lines: Vec<String>,
    /// The server closed the connection.
    ended: bool,
}

/// Clients read through one poll.
struct Clients {
    poll: Poll,
    events: Events,
    all: Vec<Client>,
}

impl Clients {
    fn connect(addr: SocketAddr, n: usize) -> Clients {
        let poll = Poll::new().unwrap();
        let mut all = Vec::with_capacity(n);
        for i in 0..n {
            let std = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
            std.set_nonblocking(true).unwrap();
            let mut stream = mio::net::TcpStream::from_std(std);
            poll.registry()
                .register(&mut stream, Token(i), Interest::READABLE)
                .unwrap();
            all.push(Client {
                stream,
                partial: Vec::new(),
                lines: Vec::new(),
                ended: false,
            });
        }
        Clients {
            poll,
            events: Events::with_capacity(1024),
            all,
        }
    }

    /// Writes all of `bytes` to client `i` (its socket is non-blocking).
    fn send(&mut self, i: usize, bytes: &[u8]) {
        let started = Instant::now();
        let mut done = 0;
        while done < bytes.len() {
            match self.all[i].stream.write(&bytes[done..]) {
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(started.elapsed() < LIMIT, "client {i} cannot send");
                    self.read_some(Duration::from_millis(1));
                }
                Err(e) => panic!("client {i}: {e}"),
            }
        }
    }

    /// Reads what has come, waiting up to `wait` for something.
    fn read_some(&mut self, wait: Duration) {
        self.poll.poll(&mut self.events, Some(wait)).unwrap();
        let ready: Vec<usize> = self.events.iter().map(|e| e.token().0).collect();
        let mut buf = [0; 64 * 1024];
        for i in ready {
            let c = &mut self.all[i];
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        c.ended = true;
                        break;
                    }
                    Ok(n) => {
                        c.partial.extend_from_slice(&buf[..n]);
                        while let Some(end) = c.partial.iter().position(|&b| b == b'\n') {
                            let line: Vec<u8> = c.partial.drain(..=end).collect();
                            c.lines.push(String::from_utf8(line).unwrap());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("client {i}: {e}"),
                }
            }
        }
    }

    /// Reads until `done` holds, within `LIMIT`.
    fn read_until(&mut self, what: &str, mut done: impl FnMut(&[Client]) -> bool) {
        let started = Instant::now();
        while !done(&self.all) {
            assert!(started.elapsed() < LIMIT, "timed out waiting for {what}");
            self.read_some(Duration::from_millis(10));
        }
    }

    /// Client 0 says `sync` until every other client has heard it: each
    /// has then joined the room.
    fn all_in_the_room(&mut self) {
        let started = Instant::now();
        loop {
            self.send(0, b"sync\n");
            let deadline = Instant::now() + Duration::from_millis(50);
            while Instant::now() < deadline {
                self.read_some(Duration::from_millis(5));
            }
            let heard = |c: &Client| c.lines.iter().any(|l| l == "sync\n");
            if self.all[1..].iter().all(heard) {
                break;
            }
            let state: Vec<(usize, bool)> =
                self.all.iter().map(|c| (c.lines.len(), c.ended)).collect();
            assert!(
                started.elapsed() < LIMIT,
                "not everyone joined: (lines, ended) of each: {state:?}"
            );
        }
        self.read_some(Duration::from_millis(50));
        for c in &mut self.all {
            c.lines.retain(|l| l != "sync\n");
        }
    }
}

both_modes!(every_line_reaches_every_other_client_of_a_thousand);
fn every_line_reaches_every_other_client_of_a_thousand(park: bool) {
    const N: usize = 1000;
    const LINES: usize = 2;
    let _alone = one_at_a_time();
    let chat = Chat::start(park, &[]);
    let mut clients = Clients::connect(chat.addr, N);
    clients.all_in_the_room();
    let started = Instant::now();
    for k in 0..LINES {
        for i in 0..N {
            clients.send(i, format!("{i} {k}\n").as_bytes());
        }
    }
    let expected = (N - 1) * LINES;
    clients.read_until("every line everywhere", |all| {
        all.iter().all(|c| c.lines.len() >= expected)
    });
    println!(
        "{} lines delivered in {:.2?}",
        N * expected,
        started.elapsed()
    );
    for (me, c) in clients.all.iter().enumerate() {
        assert_eq!(c.lines.len(), expected, "client {me}");
        // In order per sender, and nothing of its own.
        let mut next: HashMap<usize, usize> = HashMap::new();
        for line in &c.lines {
            let (from, k) = line.trim_end().split_once(' ').unwrap();
            let (from, k): (usize, usize) = (from.parse().unwrap(), k.parse().unwrap());
            assert_ne!(from, me, "client {me} got its own line");
            let want = next.entry(from).or_default();
            assert_eq!(k, *want, "client {me}: {from}'s lines out of order");
            *want += 1;
        }
    }
    let report = chat.stop();
    assert!(report.starts_with("shut down: "), "{report}");
}

both_modes!(a_client_that_never_reads_is_cut_and_slows_no_one);
/// One client talks 20 MB of lines; three read them all as they come,
/// one reads nothing. The silent one is cut once `--max-outbox` (256 KiB) waits for
/// it; the readers get every line, in order; and the server's peak memory
/// grows by far less than the 20 MB the silent client was sent.
fn a_client_that_never_reads_is_cut_and_slows_no_one(park: bool) {
    const LINES: usize = 20_000;
    const LINE: usize = 1024;
    const MAX_OUTBOX: usize = 256 * 1024;
    let _alone = one_at_a_time();
    let max = MAX_OUTBOX.to_string();
    let mut chat = Chat::start(park, &["--max-outbox", &max, "--metrics", "127.0.0.1:0"]);
    let metrics = chat.metrics_addr();
    // 0 talks, 1-3 read; the silent one never reads. Everyone hears the
    // sync but the silent one, whose joining the server's count of
    // handlers shows instead.
    let mut clients = Clients::connect(chat.addr, 4);
    let silent = TcpStream::connect_timeout(&chat.addr, TIMEOUT).unwrap();
    clients.all_in_the_room();
    wait_until("five handlers", || {
        metric(metrics, "chat_server_active") == 5
    });
    let before = chat.status_kib("VmHWM:");
    let started = Instant::now();
    let filler = "x".repeat(LINE - 8);
    // The readers keep up: the talker sends a window of 64 lines, then
    // waits for every reader to have it, so a reader is never more than
    // 64 KiB behind (a reader this test's one thread reads too slowly
    // would be cut as a slow consumer too, rightly).
    const WINDOW: usize = 64;
    for k in 0..LINES {
        clients.send(0, format!("{k:06} {filler}\n").as_bytes());
        if (k + 1) % WINDOW == 0 || k + 1 == LINES {
            clients.read_until("a window at every reader", |all| {
                all[1..].iter().all(|c| c.lines.len() > k)
            });
        }
    }
    let took = started.elapsed();
    for c in &clients.all[1..] {
        assert_eq!(c.lines.len(), LINES);
        for (k, line) in c.lines.iter().enumerate() {
            assert!(
                line.starts_with(&format!("{k:06} ")),
                "line {k}: {line:.20}"
            );
        }
    }
    assert_eq!(metric(metrics, "chat_server_slow_consumers_total"), 1);
    let grew = chat.status_kib("VmHWM:").saturating_sub(before);
    println!("20 MB to each of 4 clients in {took:.2?}; peak memory grew {grew} KiB");
    assert!(grew < 8 * 1024, "peak memory grew {grew} KiB");
    drop(silent);
    chat.stop();
}

/// A value from the server's `/metrics`.
fn metric(addr: SocketAddr, name: &str) -> u64 {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

both_modes!(a_silent_client_is_kept_and_probed_unless_read_timeout_says);
/// Chat clients may only listen: by default none is cut for sending
/// nothing, and keepalive probes start after 300 s of silence, as
/// redis-server's; `--read-timeout 1` cuts one silent for a second.
fn a_silent_client_is_kept_and_probed_unless_read_timeout_says(park: bool) {
    let chat = Chat::start(park, &[]);
    let listener = TcpStream::connect_timeout(&chat.addr, TIMEOUT).unwrap();
    // Set as its serving begins, a moment after the accept.
    wait_until("the keepalive timer", || {
        server_side_timer(chat.addr.port(), &listener).0 == 2
    });
    let (_, when) = server_side_timer(chat.addr.port(), &listener);
    assert!(when > Duration::from_secs(290), "probes in {when:?}");
    drop(chat);

    let chat = Chat::start(park, &["--read-timeout", "1"]);
    let mut silent = TcpStream::connect_timeout(&chat.addr, TIMEOUT).unwrap();
    silent.set_read_timeout(Some(TIMEOUT)).unwrap();
    let start = Instant::now();
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    let after = start.elapsed();
    assert!(
        after > Duration::from_millis(900) && after < Duration::from_secs(4),
        "cut after {after:?}"
    );
}
