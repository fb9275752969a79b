//! The subscribers: N connections, each `SUBSCRIBE chan`, read by a few
//! client threads with mio, each thread owning a share of the sockets (one
//! thread per socket would measure the bench's scheduler, not the server).
//!
//! Each delivery's latency is its arrival (taken once per `read`, after
//! it returns) less the publish time the message carries. Arrivals are
//! counted into the open measuring [`Window`]; a message published before
//! the window opened (a straggler of an earlier one) is not counted.
//!
//! Each thread connects its own share, a few hundred unconfirmed at a
//! time in all (see [`read_loop`]), so that 10,000 subscribe in about a
//! second. Every wait is bounded: each connect by [`CONNECT_TIMEOUT`] and
//! the caller's deadline, the confirmations by the deadline and by
//! [`STALL`] without progress, and the threads stop within one poll
//! timeout of being asked, on drop too.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use socket2::{Domain, Socket, Type};

use crate::hist::Histogram;
use crate::now_ns;
use crate::resp::{self, Frame, Item, CHANNEL, SUBSCRIBE};

/// Bytes one `read` asks for: 668 message pushes.
const READ_BUF: usize = 64 * 1024;
/// How long a reader thread sleeps in `poll` before it looks at `stop`.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
const WAKER: Token = Token(usize::MAX);
/// Connected but unconfirmed subscribers at most, all threads: under
/// Redis's listen backlog of 511.
const PENDING: usize = 256;
/// The longest one connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// [`Subscribers::wait_confirmed`] gives up when no confirmation has come
/// for this long.
pub const STALL: Duration = Duration::from_secs(5);

/// What arrived in one measuring window, on one thread or all.
#[derive(Clone, Default)]
pub struct Window {
    /// Only messages published at or after this (ns since the base) count.
    pub start: u64,
    pub open: bool,
    pub delivered: u64,
    pub last_arrival: u64,
    /// Delivery latencies, ns.
    pub latency: Histogram,
}

impl Window {
    fn merge(&mut self, other: &Window) {
        self.delivered += other.delivered;
        self.last_arrival = self.last_arrival.max(other.last_arrival);
        self.latency.merge(&other.latency);
    }
}

/// What a reader thread shares with the bench's main thread.
#[derive(Default)]
struct Shared {
    window: Mutex<Window>,
    confirmed: AtomicUsize,
    connected: AtomicUsize,
    failure: Mutex<Option<String>>,
    stop: AtomicBool,
}

impl Shared {
    fn window(&self) -> MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, msg: String) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        failure.get_or_insert(msg);
    }

    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

struct Reader {
    shared: Arc<Shared>,
    waker: Arc<Waker>,
    handle: Option<JoinHandle<()>>,
}

/// N subscribed connections and the threads reading them.
pub struct Subscribers {
    n: usize,
    began: Instant,
    readers: Vec<Reader>,
}

/// A blocking TCP connection to `addr`, the connect bounded by `timeout`.
pub fn connect(
    addr: SocketAddr,
    timeout: Duration,
    recv_buf: Option<usize>,
) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    if let Some(bytes) = recv_buf {
        // Before connect, so that the window offered to the server is small.
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.connect_timeout(&addr.into(), timeout)?;
    socket.set_tcp_nodelay(true)?;
    Ok(socket.into())
}

impl Subscribers {
    /// Starts `threads` reader threads that connect `n` subscribers
    /// between them, each sending `SUBSCRIBE chan` at once; see
    /// [`wait_confirmed`](Self::wait_confirmed) for the outcome.
    pub fn connect(
        addr: SocketAddr,
        n: usize,
        threads: usize,
        deadline: Instant,
    ) -> Result<Self, String> {
        let began = Instant::now();
        let threads = threads.clamp(1, n.max(1));
        // Built first, so that a failure below stops the threads started.
        let mut subs = Subscribers {
            n,
            began,
            readers: Vec::with_capacity(threads),
        };
        for t in 0..threads {
            let share = n / threads + usize::from(t < n % threads);
            let poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
            let waker =
                Arc::new(Waker::new(poll.registry(), WAKER).map_err(|e| format!("waker: {e}"))?);
            let shared = Arc::new(Shared::default());
            let theirs = Arc::clone(&shared);
            let pending = (PENDING / threads).max(16);
            let target = Target {
                addr,
                share,
                pending,
                deadline,
            };
            let handle = thread::Builder::new()
                .name(format!("subscribers-{t}"))
                .spawn(move || read_loop(poll, target, &theirs))
                .map_err(|e| format!("spawn: {e}"))?;
            subs.readers.push(Reader {
                shared,
                waker,
                handle: Some(handle),
            });
        }
        Ok(subs)
    }

    /// The first failure any reader thread met: a connection closed, a
    /// frame that is not what a pub/sub server sends.
    pub fn check(&self) -> Result<(), String> {
        match self.readers.iter().find_map(|r| r.shared.failure()) {
            Some(msg) => Err(msg),
            None => Ok(()),
        }
    }

    /// Waits until every subscriber has its `subscribe chan 1`
    /// confirmation. Fails at `deadline`, or when none has come for
    /// [`STALL`] (a server that accepts no more), saying how far it got.
    pub fn wait_confirmed(&self, deadline: Instant) -> Result<(), String> {
        let mut last = (0, Instant::now());
        loop {
            self.check()?;
            let sum = |f: fn(&Shared) -> usize| -> usize {
                self.readers.iter().map(|r| f(&r.shared)).sum()
            };
            let confirmed = sum(|s| s.confirmed.load(Relaxed));
            let connected = sum(|s| s.connected.load(Relaxed));
            if confirmed == self.n {
                return Ok(());
            }
            let now = Instant::now();
            if confirmed > last.0 {
                last = (confirmed, now);
            }
            let stalled = now - last.1 >= STALL;
            if stalled || now >= deadline {
                return Err(format!(
                    "only {confirmed} of {} subscriptions confirmed ({connected} connected) in {:.1} s{}",
                    self.n,
                    (now - self.began).as_secs_f64(),
                    match stalled {
                        true => format!(", none in the last {} s", STALL.as_secs()),
                        false => String::new(),
                    }
                ));
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Opens a fresh measuring window: from now on, messages published at
    /// or after `start` are counted.
    pub fn open(&self, start: u64) {
        for r in &self.readers {
            *r.shared.window() = Window {
                start,
                open: true,
                ..Window::default()
            };
        }
    }

    /// Deliveries counted so far in the open window, all threads.
    pub fn delivered(&self) -> Result<u64, String> {
        self.check()?;
        Ok(self
            .readers
            .iter()
            .map(|r| r.shared.window().delivered)
            .sum())
    }

    /// Closes the window and returns what it counted, all threads merged.
    pub fn close(&self) -> Window {
        let mut all = Window::default();
        for r in &self.readers {
            let mut w = r.shared.window();
            w.open = false;
            all.start = w.start;
            all.merge(&w);
        }
        all
    }
}

impl Drop for Subscribers {
    fn drop(&mut self) {
        for r in &self.readers {
            r.shared.stop.store(true, Relaxed);
            let _ = r.waker.wake();
        }
        for r in &mut self.readers {
            if let Some(h) = r.handle.take() {
                let _ = h.join();
            }
        }
    }
}

/// One subscriber connection, owned by its reader thread.
struct Conn {
    /// Non-blocking, registered with its thread's poll (mio's `net`
    /// feature is not among the crate's: a std stream and its descriptor).
    stream: TcpStream,
    /// The start of a frame the last read cut short (at most
    /// [`resp::MAX_FRAME`] bytes).
    carry: Vec<u8>,
    confirmed: bool,
    /// Failed and deregistered.
    done: bool,
}

/// Whom a reader thread connects, and how.
struct Target {
    addr: SocketAddr,
    /// Subscribers this thread connects and reads.
    share: usize,
    /// Connected but unconfirmed subscribers this thread allows itself.
    pending: usize,
    deadline: Instant,
}

/// A reader thread: connects its share of subscribers, keeping at most
/// `pending` unconfirmed (a server busy accepting is not handed more than
/// its listen backlog holds, which would cost a dropped SYN and a second's
/// wait for its retry), and reads them all until asked to stop.
fn read_loop(mut poll: Poll, target: Target, shared: &Shared) {
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; READ_BUF + resp::MAX_FRAME];
    let mut conns: Vec<Conn> = Vec::with_capacity(target.share);
    while !shared.stop.load(Relaxed) {
        while conns.len() < target.share
            && conns.len() - shared.confirmed.load(Relaxed) < target.pending
        {
            match open(&poll, &target, conns.len()) {
                Ok(conn) => {
                    conns.push(conn);
                    shared.connected.fetch_add(1, Relaxed);
                }
                Err(msg) => {
                    shared.fail(msg);
                    return;
                }
            }
        }
        let timeout = match conns.len() < target.share {
            true => Duration::from_millis(5),
            false => POLL_TIMEOUT,
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            shared.fail(format!("poll: {e}"));
            return;
        }
        for event in events.iter() {
            let Some(conn) = conns.get_mut(event.token().0) else {
                continue; // the waker
            };
            if conn.done {
                continue;
            }
            if let Err(msg) = drain(conn, &mut buf, shared) {
                shared.fail(msg);
                conn.done = true;
                let _ = poll
                    .registry()
                    .deregister(&mut SourceFd(&conn.stream.as_raw_fd()));
            }
        }
    }
}

/// Connects subscriber `i` of this thread, sends `SUBSCRIBE chan` and
/// registers it as token `i`.
fn open(poll: &Poll, target: &Target, i: usize) -> Result<Conn, String> {
    let left = target.deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(format!(
            "{i} subscribers connected by one thread before the deadline"
        ));
    }
    let mut stream =
        connect(target.addr, left.min(CONNECT_TIMEOUT), None).map_err(|e| match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => format!(
                "a subscriber's connect timed out after {} s: the server accepts no more",
                CONNECT_TIMEOUT.as_secs()
            ),
            _ => format!("a subscriber's connect: {e}"),
        })?;
    let setup = |s: &mut TcpStream| -> io::Result<()> {
        s.write_all(SUBSCRIBE)?;
        s.set_nonblocking(true)?;
        poll.registry()
            .register(&mut SourceFd(&s.as_raw_fd()), Token(i), Interest::READABLE)
    };
    setup(&mut stream).map_err(|e| format!("a subscriber's SUBSCRIBE: {e}"))?;
    Ok(Conn {
        stream,
        carry: Vec::new(),
        confirmed: false,
        done: false,
    })
}

/// Reads what `conn` has. mio's readiness is edge-triggered: a read that
/// fills less than it was given has emptied the socket (a later arrival
/// raises a new edge), so the read that would say `WouldBlock` is saved,
/// one system call per wake-up on 10,000 sockets.
fn drain(conn: &mut Conn, buf: &mut [u8], shared: &Shared) -> Result<(), String> {
    loop {
        let carried = conn.carry.len();
        buf[..carried].copy_from_slice(&conn.carry);
        let room = READ_BUF.min(buf.len() - carried);
        match conn.stream.read(&mut buf[carried..carried + room]) {
            Ok(0) if conn.confirmed => {
                return Err("the server closed a subscriber's connection".into())
            }
            Ok(0) => {
                return Err("the server closed a connection before confirming its SUBSCRIBE".into())
            }
            Ok(n) => {
                let arrival = now_ns();
                let have = carried + n;
                let used = process(conn, &buf[..have], arrival, shared)?;
                conn.carry.clear();
                conn.carry.extend_from_slice(&buf[used..have]);
                if conn.carry.len() > resp::MAX_FRAME {
                    return Err(format!("a frame longer than {} bytes", resp::MAX_FRAME));
                }
                if n < room {
                    return Ok(());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("a subscriber's read: {e}")),
        }
    }
}

/// Handles the whole frames in `bytes`: returns how many bytes they took.
fn process(conn: &mut Conn, bytes: &[u8], arrival: u64, shared: &Shared) -> Result<usize, String> {
    let mut at = 0;
    // Locked once per read, at its first message.
    let mut window: Option<MutexGuard<'_, Window>> = None;
    while let Some((frame, used)) = resp::frame(&bytes[at..])? {
        at += used;
        if !conn.confirmed {
            match frame {
                Frame::Push {
                    kind,
                    channel,
                    data: Item::Integer(1),
                } if kind == b"subscribe" && channel == CHANNEL => {
                    conn.confirmed = true;
                    shared.confirmed.fetch_add(1, Relaxed);
                    continue;
                }
                other => return Err(format!("the server answered SUBSCRIBE chan with {other}")),
            }
        }
        let payload = match frame {
            Frame::Push {
                kind,
                channel,
                data: Item::Bulk(Some(payload)),
            } if kind == b"message" && channel == CHANNEL => payload,
            other => {
                return Err(format!(
                    "the server sent {other} where a message push was expected"
                ))
            }
        };
        let stamp = resp::stamp(payload)
            .ok_or_else(|| format!("a message not published here: {}", resp::Shown(payload)))?;
        let w = window.get_or_insert_with(|| shared.window());
        if w.open && stamp >= w.start {
            w.delivered += 1;
            w.latency.record(arrival.saturating_sub(stamp));
            w.last_arrival = w.last_arrival.max(arrival);
        }
    }
    Ok(at)
}

/// The slow subscriber of `--slow`: subscribed, then never read, with a
/// small receive buffer so that what the server keeps for it shows soon.
pub struct Slow {
    stream: TcpStream,
}

impl Slow {
    pub fn connect(addr: SocketAddr) -> Result<Slow, String> {
        let mut stream = connect(addr, Duration::from_secs(3), Some(4096))
            .map_err(|e| format!("slow subscriber: connect: {e}"))?;
        let io = |e: io::Error| format!("slow subscriber: {e}");
        stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .map_err(io)?;
        stream.write_all(SUBSCRIBE).map_err(io)?;
        let mut buf = [0u8; 512];
        let mut have = 0;
        loop {
            let n = stream.read(&mut buf[have..]).map_err(io)?;
            if n == 0 {
                return Err("slow subscriber: closed before SUBSCRIBE was confirmed".into());
            }
            have += n;
            match resp::frame(&buf[..have])? {
                None if have < buf.len() => continue,
                Some((
                    Frame::Push {
                        kind,
                        channel,
                        data: Item::Integer(1),
                    },
                    used,
                )) if kind == b"subscribe" && channel == CHANNEL && used == have => {
                    return Ok(Slow { stream });
                }
                Some((other, _)) => {
                    return Err(format!("slow subscriber: SUBSCRIBE answered {other}"))
                }
                None => return Err("slow subscriber: a reply too long".into()),
            }
        }
    }

    /// Whether the server has closed the connection, found by reading
    /// what it still holds for this subscriber once publishing has
    /// stopped: the end of the stream (or a reset) says it was cut;
    /// [`QUIET`] without a byte says it is still connected. (A close
    /// cannot be seen without reading: the server's FIN waits behind the
    /// bytes this subscriber never read.)
    pub fn cut(mut self) -> Result<bool, String> {
        const QUIET: Duration = Duration::from_millis(300);
        let deadline = Instant::now() + Duration::from_secs(10);
        self.stream
            .set_read_timeout(Some(QUIET))
            .map_err(|e| format!("slow subscriber: {e}"))?;
        let mut buf = vec![0u8; 256 * 1024];
        while Instant::now() < deadline {
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(true),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(true),
                Err(e) => return Err(format!("slow subscriber: reading what it was owed: {e}")),
            }
        }
        Err("slow subscriber: still receiving 10 s after the publisher stopped".into())
    }
}
