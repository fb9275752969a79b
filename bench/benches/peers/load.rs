//! The client load, written once and run unchanged against every server.
//!
//! Every loop is bounded in time (the round's window) and in count, and
//! every socket has a timeout, so a server that stops answering costs a
//! round its errors, never a hang.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

/// How long any client waits for the server before counting an error.
pub const TIMEOUT: Duration = Duration::from_secs(2);
/// How long a UDP client waits for a reply before counting it lost.
const UDP_TIMEOUT: Duration = Duration::from_millis(200);
/// The most operations one client thread does in one round.
const MAX_OPS_PER_CLIENT: u64 = 5_000_000;
/// A client thread gives up its round after this many errors.
const MAX_ERRORS_PER_CLIENT: u64 = 1_000;
/// Bytes per echo message.
pub const MESSAGE: usize = 64;

/// What one round of load did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub ops: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the clients' release to the last one's stop.
    pub elapsed: Duration,
    /// Round-trip times in nanoseconds (echo workloads only).
    pub latencies: Vec<u32>,
    /// Connections the load left open for the caller to close once it has
    /// read the server's CPU time (F and G), so that the server's closing
    /// of thousands of them is not counted against the round.
    pub open: Vec<TcpStream>,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`th percentile of the round-trip times, in microseconds.
    pub fn percentile_us(&mut self, p: usize) -> Option<f64> {
        if self.latencies.is_empty() {
            return None;
        }
        self.latencies.sort_unstable();
        let i = (self.latencies.len() * p / 100).min(self.latencies.len() - 1);
        Some(self.latencies[i] as f64 / 1000.0)
    }

    fn error(&mut self, e: impl ToString) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }

    fn merge(&mut self, other: Outcome) {
        self.ops += other.ops;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.elapsed = self.elapsed.max(other.elapsed);
        self.latencies.extend(other.latencies);
        self.open.extend(other.open);
    }
}

/// A TCP connection with read and write timeouts; the write timeout also
/// bounds the blocking `connect` (Linux honours `SO_SNDTIMEO` there).
pub fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_read_timeout(Some(TIMEOUT))?;
    socket.set_write_timeout(Some(TIMEOUT))?;
    socket.connect(&addr.into())?;
    Ok(socket.into())
}

/// Runs `clients` threads: each prepares (`setup`), all are released at
/// once after `on_start`, and each runs `step` until `window` is over.
/// Returns the merged outcome.
fn run_clients<S, G>(
    clients: usize,
    window: Duration,
    on_start: &mut dyn FnMut(),
    setup: G,
) -> Outcome
where
    S: FnMut() -> io::Result<Option<u32>> + Send + 'static,
    G: Fn() -> io::Result<S>,
{
    let barrier = Arc::new(Barrier::new(clients + 1));
    let started = Arc::new(std::sync::OnceLock::<Instant>::new());
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let prepared = setup();
            let barrier = Arc::clone(&barrier);
            let started = Arc::clone(&started);
            thread::spawn(move || {
                let mut out = Outcome::default();
                let mut step = match prepared {
                    Ok(step) => Some(step),
                    Err(e) => {
                        out.error(format!("setup: {e}"));
                        None
                    }
                };
                barrier.wait();
                let start = *started.get().expect("set before release");
                let deadline = start + window;
                if let Some(step) = step.as_mut() {
                    while out.ops < MAX_OPS_PER_CLIENT && out.errors < MAX_ERRORS_PER_CLIENT {
                        if Instant::now() >= deadline {
                            break;
                        }
                        match step() {
                            Ok(latency) => {
                                out.ops += 1;
                                out.latencies.extend(latency);
                            }
                            Err(e) => out.error(e),
                        }
                    }
                }
                out.elapsed = start.elapsed();
                out
            })
        })
        .collect();
    on_start();
    started.set(Instant::now()).expect("set once");
    barrier.wait();
    join_all(handles)
}

/// Waits for every client thread and adds up what they measured; a thread
/// that panicked counts as an error.
fn join_all(handles: Vec<std::thread::JoinHandle<Outcome>>) -> Outcome {
    let mut total = Outcome::default();
    for h in handles {
        match h.join() {
            Ok(out) => total.merge(out),
            Err(_) => total.error("client thread panicked"),
        }
    }
    total
}

/// Workload A: each client connects, reads the daytime reply to the end,
/// closes, and again. The server closes first, so TIME_WAIT stays on its
/// side and the clients' ports are free again at once.
pub fn short_connections(
    addr: SocketAddr,
    clients: usize,
    window: Duration,
    on_start: &mut dyn FnMut(),
) -> Outcome {
    run_clients(clients, window, on_start, || {
        let mut reply = Vec::with_capacity(64);
        Ok(move || {
            let mut stream = connect(addr)?;
            reply.clear();
            stream.read_to_end(&mut reply)?;
            if reply.len() < 19 {
                return Err(io::Error::other(format!(
                    "short reply: {} bytes",
                    reply.len()
                )));
            }
            Ok(None)
        })
    })
}

/// Workloads B and C: `connections` persistent connections, one client
/// thread each, sending a 64-byte message and reading it back.
pub fn echo(
    addr: SocketAddr,
    connections: usize,
    window: Duration,
    on_start: &mut dyn FnMut(),
) -> Outcome {
    run_clients(connections, window, on_start, || {
        let mut stream = connect(addr)?;
        stream.set_nodelay(true)?;
        let message = [b'x'; MESSAGE];
        let mut reply = [0u8; MESSAGE];
        let mut exchange = move || -> io::Result<Option<u32>> {
            let t0 = Instant::now();
            stream.write_all(&message)?;
            stream.read_exact(&mut reply)?;
            Ok(Some(t0.elapsed().as_nanos().min(u32::MAX as u128) as u32))
        };
        // One exchange before the window: the server has accepted and is
        // serving this connection when the clock starts.
        exchange()?;
        Ok(exchange)
    })
}

/// Workload H: each client connects, makes a full TLS handshake, echoes
/// one 64-byte message, sends `close_notify` and waits for the server to
/// close, and again. The round trip recorded is the whole connection's.
#[cfg(feature = "tls")]
pub fn tls_handshakes(
    addr: SocketAddr,
    clients: usize,
    window: Duration,
    on_start: &mut dyn FnMut(),
) -> Outcome {
    run_clients(clients, window, on_start, || {
        let message = [b'x'; MESSAGE];
        let mut reply = [0u8; MESSAGE];
        Ok(move || {
            let t0 = Instant::now();
            let mut client = crate::tls::connect(addr)?;
            crate::tls::exchange(&mut client, &message, &mut reply)?;
            crate::tls::close(client)?;
            Ok(Some(t0.elapsed().as_nanos().min(u32::MAX as u128) as u32))
        })
    })
}

/// Workload I: `connections` persistent TLS connections, one client thread
/// each, sending a 64-byte message and reading it back, as B does in
/// plaintext.
#[cfg(feature = "tls")]
pub fn tls_echo(
    addr: SocketAddr,
    connections: usize,
    window: Duration,
    on_start: &mut dyn FnMut(),
) -> Outcome {
    run_clients(connections, window, on_start, || {
        let mut client = crate::tls::connect(addr)?;
        let message = [b'x'; MESSAGE];
        let mut reply = [0u8; MESSAGE];
        let mut exchange = move || -> io::Result<Option<u32>> {
            let t0 = Instant::now();
            crate::tls::exchange(&mut client, &message, &mut reply)?;
            Ok(Some(t0.elapsed().as_nanos().min(u32::MAX as u128) as u32))
        };
        // The handshake and one exchange before the window: the clock
        // starts on connections the server is serving.
        exchange()?;
        Ok(exchange)
    })
}

/// Workload D: `clients` UDP clients, each sending a 64-byte datagram and
/// waiting for it back. A reply not back in 200 ms counts as an error (lost).
pub fn udp_echo(
    addr: SocketAddr,
    clients: usize,
    window: Duration,
    on_start: &mut dyn FnMut(),
) -> Outcome {
    run_clients(clients, window, on_start, || {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.connect(addr)?;
        socket.set_read_timeout(Some(UDP_TIMEOUT))?;
        let mut seq = 0u64;
        let mut message = [b'x'; MESSAGE];
        let mut reply = [0u8; MESSAGE + 1];
        let mut exchange = move || -> io::Result<Option<u32>> {
            seq += 1;
            message[..8].copy_from_slice(&seq.to_le_bytes());
            let t0 = Instant::now();
            socket.send(&message)?;
            // A late reply to an earlier, timed-out datagram is skipped.
            loop {
                let n = socket.recv(&mut reply)?;
                if n == MESSAGE && reply[..8] == message[..8] {
                    return Ok(Some(t0.elapsed().as_nanos().min(u32::MAX as u128) as u32));
                }
                if t0.elapsed() > UDP_TIMEOUT {
                    return Err(io::ErrorKind::TimedOut.into());
                }
            }
        };
        let mut warm = Err(io::Error::other("no reply"));
        for _ in 0..10 {
            warm = exchange();
            if warm.is_ok() {
                break;
            }
        }
        warm?;
        Ok(exchange)
    })
}

/// Datagrams each client of the pipelined UDP loads keeps in flight.
pub const IN_FLIGHT: usize = 8;

/// Workload D with the clients on every CPU but the last, which the server
/// (`Workload::UdpEchoApart`) has to itself.
pub fn udp_echo_apart(
    addr: SocketAddr,
    clients: usize,
    window: Duration,
    on_start: &mut dyn FnMut(),
) -> Outcome {
    crate::cpus::leave_the_last(|| udp_echo(addr, clients, window, on_start))
}

/// Workload D, [`IN_FLIGHT`] datagrams in flight per client.
pub fn udp_echo_pipelined(
    addr: SocketAddr,
    clients: usize,
    window: Duration,
    on_start: &mut dyn FnMut(),
) -> Outcome {
    udp_pipelined(addr, clients, IN_FLIGHT, window, on_start)
}

/// The same, the clients on every CPU but the last.
pub fn udp_echo_pipelined_apart(
    addr: SocketAddr,
    clients: usize,
    window: Duration,
    on_start: &mut dyn FnMut(),
) -> Outcome {
    crate::cpus::leave_the_last(|| udp_pipelined(addr, clients, IN_FLIGHT, window, on_start))
}

/// Workload D, pipelined: `clients` UDP clients, each keeping `depth`
/// 64-byte datagrams in flight: every reply that comes back is answered at
/// once with a new datagram, as load generators that measure throughput do.
/// Each datagram carries its send time, so every reply gives a round trip.
/// A client that gets nothing back for 200 ms counts what it had in flight
/// as lost (errors) and starts a new window; replies to the old one are
/// skipped.
fn udp_pipelined(
    addr: SocketAddr,
    clients: usize,
    depth: usize,
    window: Duration,
    on_start: &mut dyn FnMut(),
) -> Outcome {
    let depth = depth.max(1);
    run_clients(clients, window, on_start, || {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.connect(addr)?;
        socket.set_read_timeout(Some(UDP_TIMEOUT))?;
        let origin = Instant::now();
        // The window this client is on: bytes 0..8 of every datagram.
        let mut epoch = 0u64;
        let mut in_flight = 0usize;
        let mut message = [b'x'; MESSAGE];
        let mut reply = [0u8; MESSAGE + 1];
        let mut send = move |socket: &UdpSocket, epoch: u64| -> io::Result<()> {
            message[..8].copy_from_slice(&epoch.to_le_bytes());
            let sent = origin.elapsed().as_nanos() as u64;
            message[8..16].copy_from_slice(&sent.to_le_bytes());
            socket.send(&message).map(drop)
        };
        let step = move || -> io::Result<Option<u32>> {
            while in_flight < depth {
                send(&socket, epoch)?;
                in_flight += 1;
            }
            loop {
                match socket.recv(&mut reply) {
                    Ok(n) if n == MESSAGE && reply[..8] == epoch.to_le_bytes() => {
                        let mut sent = [0u8; 8];
                        sent.copy_from_slice(&reply[8..16]);
                        let rtt = (origin.elapsed().as_nanos() as u64)
                            .saturating_sub(u64::from_le_bytes(sent));
                        in_flight -= 1;
                        return Ok(Some(rtt.min(u32::MAX as u64) as u32));
                    }
                    // A late reply of an abandoned window.
                    Ok(_) => continue,
                    Err(e) => {
                        // Nothing back for the timeout: what is in flight
                        // is lost; start a new window.
                        epoch += 1;
                        let lost = std::mem::take(&mut in_flight);
                        return Err(io::Error::new(
                            e.kind(),
                            format!("{lost} datagrams unanswered for {UDP_TIMEOUT:?}: {e}"),
                        ));
                    }
                }
            }
        };
        Ok(step)
    })
}

/// Workload E: opens `n` connections to an echo server, one exchange on
/// each so the server is serving every one, and returns them open and idle.
pub fn hold(addr: SocketAddr, n: usize) -> (Vec<TcpStream>, Outcome) {
    let mut held = Vec::with_capacity(n);
    let mut out = Outcome::default();
    let start = Instant::now();
    for _ in 0..n {
        let opened = connect(addr).and_then(|mut s| {
            let mut reply = [0u8; MESSAGE];
            s.write_all(&[b'x'; MESSAGE])?;
            s.read_exact(&mut reply)?;
            Ok(s)
        });
        match opened {
            Ok(s) => {
                out.ops += 1;
                held.push(s);
            }
            Err(e) => out.error(e),
        }
        if out.errors >= MAX_ERRORS_PER_CLIENT {
            break;
        }
    }
    out.elapsed = start.elapsed();
    (held, out)
}

/// Workloads F and G: `connections` persistent echo connections shared by
/// `loaders` client threads, each thread waiting on its share with epoll
/// (mio) and keeping one 64-byte message in flight on every connection:
/// as a reply is back in full, its round trip is recorded and the next
/// message goes out. A few threads drive thousands of connections this
/// way, where a thread per connection would swamp a small machine.
///
/// Each connection makes one exchange before the window (blocking, with
/// the timeouts of [`connect`]), so the server serves all of them when the
/// clock starts. At the end of the window no new message goes out, and the
/// replies still in flight are read (and counted, the round's time running
/// on until the last), so that every message the server echoed is counted
/// against its CPU time, and no connection is closed with a reply unread
/// (which would reset it). A connection with no reply for [`TIMEOUT`]
/// counts one error and is left out of the rest of the round.
pub fn echo_many(
    addr: SocketAddr,
    connections: usize,
    loaders: usize,
    window: Duration,
    on_start: &mut dyn FnMut(),
) -> Outcome {
    let loaders = loaders.clamp(1, connections.max(1));
    // Loaders wait at `ready` once their connections are open, and at `go`
    // for the start.
    let ready = Arc::new(Barrier::new(loaders + 1));
    let go = Arc::new(Barrier::new(loaders + 1));
    let started = Arc::new(std::sync::OnceLock::<Instant>::new());
    let handles: Vec<_> = (0..loaders)
        .map(|l| {
            // An even share: the first `connections % loaders` take one more.
            let share = connections / loaders + usize::from(l < connections % loaders);
            let (ready, go) = (Arc::clone(&ready), Arc::clone(&go));
            let started = Arc::clone(&started);
            thread::spawn(move || {
                let mut out = Outcome::default();
                let prepared = EchoLoader::open(addr, share, &mut out);
                ready.wait();
                go.wait();
                let start = *started.get().expect("set before release");
                match prepared {
                    Ok(mut loader) => {
                        loader.run(start + window, &mut out);
                        out.elapsed = start.elapsed();
                        out.open = loader.conns.into_iter().map(|c| c.stream).collect();
                    }
                    Err(e) => {
                        out.error(format!("setup: {e}"));
                        out.elapsed = start.elapsed();
                    }
                }
                out
            })
        })
        .collect();
    ready.wait();
    on_start();
    started.set(Instant::now()).expect("set once");
    go.wait();
    join_all(handles)
}

/// One connection of [`echo_many`].
struct Pending {
    stream: TcpStream,
    /// When the message in flight went out.
    sent: Instant,
    /// Bytes of its reply back so far.
    got: usize,
    /// A message is out and its reply not back in full.
    waiting: bool,
    /// Still in the round: no error, no timeout.
    live: bool,
}

/// One client thread of [`echo_many`] and its share of the connections.
struct EchoLoader {
    poll: mio::Poll,
    conns: Vec<Pending>,
}

impl EchoLoader {
    /// Opens `n` connections, one exchange each, then makes them
    /// non-blocking and registers them. A connection that fails to open
    /// is an error in `out`; the others go on.
    fn open(addr: SocketAddr, n: usize, out: &mut Outcome) -> io::Result<EchoLoader> {
        use std::os::fd::AsRawFd;
        let poll = mio::Poll::new()?;
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            let opened = connect(addr).and_then(|mut s| {
                s.set_nodelay(true)?;
                let mut reply = [0u8; MESSAGE];
                s.write_all(&[b'x'; MESSAGE])?;
                s.read_exact(&mut reply)?;
                s.set_nonblocking(true)?;
                Ok(s)
            });
            match opened {
                Ok(stream) => {
                    let token = mio::Token(conns.len());
                    let fd = stream.as_raw_fd();
                    poll.registry().register(
                        &mut mio::unix::SourceFd(&fd),
                        token,
                        mio::Interest::READABLE,
                    )?;
                    conns.push(Pending {
                        stream,
                        sent: Instant::now(),
                        got: 0,
                        waiting: false,
                        live: true,
                    });
                }
                Err(e) => out.error(format!("connect: {e}")),
            }
            if out.errors >= MAX_ERRORS_PER_CLIENT {
                break;
            }
        }
        Ok(EchoLoader { poll, conns })
    }

    /// Sends the message on connection `i`; an error takes it out.
    fn send(&mut self, i: usize, out: &mut Outcome) {
        let c = &mut self.conns[i];
        c.sent = Instant::now();
        c.got = 0;
        c.waiting = true;
        // 64 bytes into a socket with nothing unacknowledged: all of it
        // fits the send buffer, or the connection is broken.
        match (&c.stream).write(&[b'x'; MESSAGE]) {
            Ok(MESSAGE) => {}
            Ok(n) => {
                c.live = false;
                out.error(format!("short write: {n} of {MESSAGE} bytes"));
            }
            Err(e) => {
                c.live = false;
                out.error(e);
            }
        }
    }

    /// Reads what connection `i` has; at a whole reply, records the round
    /// trip and, before `deadline`, sends the next message.
    fn receive(&mut self, i: usize, deadline: Instant, out: &mut Outcome) {
        let mut buf = [0u8; MESSAGE];
        loop {
            let c = &mut self.conns[i];
            if !c.live {
                return;
            }
            match (&c.stream).read(&mut buf[c.got..]) {
                Ok(0) => {
                    c.live = false;
                    out.error("the server closed the connection");
                    return;
                }
                Ok(n) => {
                    c.got += n;
                    if c.got < MESSAGE {
                        // Edge-triggered: read on until it would block.
                        continue;
                    }
                    let now = Instant::now();
                    let rtt = now.duration_since(c.sent).as_nanos();
                    out.latencies.push(rtt.min(u32::MAX as u128) as u32);
                    out.ops += 1;
                    c.got = 0;
                    c.waiting = false;
                    if now < deadline && out.ops < MAX_OPS_PER_CLIENT {
                        self.send(i, out);
                    }
                    // One message in flight: nothing more comes until the
                    // next is sent, and its arrival is a new edge.
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    c.live = false;
                    out.error(e);
                    return;
                }
            }
        }
    }

    /// The round: a message out on every connection, then replies and
    /// next messages until `deadline`, then the replies still in flight.
    fn run(&mut self, deadline: Instant, out: &mut Outcome) {
        let mut events = mio::Events::with_capacity(1024);
        for i in 0..self.conns.len() {
            self.send(i, out);
        }
        let give_up = deadline + TIMEOUT;
        let mut checked = Instant::now();
        loop {
            let now = Instant::now();
            if out.errors >= MAX_ERRORS_PER_CLIENT || now >= give_up {
                break;
            }
            let until = if now < deadline {
                deadline
            } else if self.conns.iter().any(|c| c.live && c.waiting) {
                give_up
            } else {
                break;
            };
            let wait = (until - now).min(Duration::from_millis(50));
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    out.error(format!("poll: {e}"));
                    break;
                }
            }
            for event in events.iter() {
                self.receive(event.token().0, deadline, out);
            }
            // Every 100 ms: a connection waiting longer than TIMEOUT for
            // its reply is an error, and out of the round.
            if checked.elapsed() >= Duration::from_millis(100) {
                checked = Instant::now();
                for c in self.conns.iter_mut().filter(|c| c.live && c.waiting) {
                    if checked.duration_since(c.sent) > TIMEOUT {
                        c.live = false;
                        out.error("no reply within the timeout");
                    }
                }
            }
        }
        for c in self.conns.iter_mut().filter(|c| c.live && c.waiting) {
            c.live = false;
            out.error("no reply within the timeout");
        }
    }
}
