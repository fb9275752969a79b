//! Helpers shared by the integration tests: clients with timeouts, so a bug
//! fails a test fast instead of hanging it, and servers on port 0; and
//! [`both_modes!`], which runs a test in each serving mode.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socketserver::{Addr, Connection, Handler, Server, ServerBuilder, ServerThread, Transport};

pub mod haproxy;
pub mod kv;
pub mod logs;
pub mod outside;
pub mod proxy_check;
#[cfg(feature = "tls")]
pub mod tls;

/// How long any client waits for anything before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Makes a test of each serving mode of a stream server from a function
/// `fn NAME(park: bool)`: a module `NAME` with two tests, `NAME::threads`
/// (a thread per connection) and `NAME::parked` (`park_idle(true)`:
/// connections on event loops). The function gets the mode as `park`, for
/// `.park_idle(park)` on its stream builders (datagram builders leave it
/// out: the mode is for streams). Written just above the function, where
/// `#[test]` would be:
///
/// ```ignore
/// both_modes!(serves_in_each_mode);
/// /// What it checks.
/// fn serves_in_each_mode(park: bool) {
///     let server = spawn(Server::builder().bind("127.0.0.1:0").park_idle(park), Echo);
///     // ...
/// }
/// ```
///
/// A parked run that fails for a known reason in the library stays in the
/// matrix, ignored with that reason until it is fixed:
/// `both_modes!(#[parked_ignore = "parked: why, in one line"] NAME);`.
#[macro_export]
macro_rules! both_modes {
    ($( $(#[parked_ignore = $why:literal])? $name:ident ),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn threads() {
                super::$name(false)
            }

            #[test]
            $(#[ignore = $why])?
            fn parked() {
                super::$name(true)
            }
        }
    )+};
}

/// Held by a test that measures or changes the whole process (its
/// threads, descriptors or memory, its panic hook), so that the other
/// tests of its binary that do so, such as its other mode's run, wait.
pub fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A test that failed holding it leaves it poisoned, not wrong.
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A child process, killed and reaped when dropped, also when the test
/// panics: a failing test leaves nothing running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // Both do nothing once the child has been reaped.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An example program: `cargo test` builds the examples next to the test
/// binaries.
pub fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(path.exists(), "{} not built", path.display());
    path
}

/// Sends SIGTERM to a child process, as Ctrl-C or systemd would stop it.
pub fn sigterm(child: &std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The RFC 864 chargen pattern from line `line` on, `len` bytes: 72 of
/// the 95 printing characters per line, each line starting one further
/// round the ring, and CR LF.
pub fn chargen_pattern(line: usize, len: usize) -> Vec<u8> {
    (line..)
        .flat_map(|n| {
            let chars = (0..72).map(move |col| b' ' + ((n + col) % 95) as u8);
            chars.chain(*b"\r\n")
        })
        .take(len)
        .collect()
}

/// Checks an RFC 867 daytime line as xinetd writes it,
/// `25 NOV 2026 03:12:09 UTC` and CR LF, and that it is now (local time,
/// within 2 s).
pub fn assert_daytime_now(reply: &[u8]) {
    let line = std::str::from_utf8(reply).unwrap();
    let text = line.strip_suffix("\r\n").expect("a CR LF line end");
    assert!(!text.contains(['\r', '\n']), "{line:?}");
    let (stamp, zone) = text.rsplit_once(' ').unwrap();
    assert!(zone == "UTC" || zone.starts_with(['+', '-']), "{line:?}");
    let month = &stamp[3..6];
    assert_eq!(month, month.to_ascii_uppercase(), "{line:?}");
    let sent = chrono::NaiveDateTime::parse_from_str(stamp, "%d %b %Y %H:%M:%S")
        .unwrap_or_else(|e| panic!("{line:?}: {e}"));
    let now = chrono::Local::now().naive_local();
    assert!((now - sent).num_seconds().abs() <= 2, "{sent} vs {now}");
}

/// Builds `builder` with `handler` and runs it on its own thread.
pub fn spawn<H: Handler>(builder: ServerBuilder, handler: H) -> ServerThread {
    builder
        .build(handler)
        .expect("build")
        .spawn()
        .expect("spawn")
}

/// Serves `handler` over TCP and UDP, on IPv4 and IPv6 loopback, sends
/// `request` to each (TCP: then half-closes) and checks each reply. `park`:
/// the TCP server parks its connections (`park_idle`).
pub fn over_both<H: Handler>(park: bool, handler: H, request: &[u8], check: impl Fn(&[u8])) {
    let handler = Arc::new(handler);
    for bind in ["127.0.0.1:0", "[::1]:0"] {
        for transport in [Transport::Stream, Transport::Datagram] {
            let shared = Arc::clone(&handler);
            let server = spawn(
                Server::builder()
                    .bind(bind)
                    .transport(transport)
                    .park_idle(park && transport == Transport::Stream)
                    .workers(2),
                move |conn: &mut Connection| shared.handle(conn),
            );
            let addr = server.local_addr();
            let reply = match transport {
                Transport::Stream => tcp_exchange(&addr, Some(request)),
                Transport::Datagram => udp_exchange(&addr, request),
            };
            check(&reply);
            server.stop().unwrap();
        }
    }
}

pub fn inet(addr: &Addr) -> SocketAddr {
    addr.inet().expect("an IP address")
}

/// A TCP client with read and write timeouts.
pub fn connect(addr: &Addr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&inet(addr), TIMEOUT).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Reads until the server closes.
pub fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).expect("read to end");
    out
}

/// Connects, optionally sends `request` and half-closes, reads to the end.
pub fn tcp_exchange(addr: &Addr, request: Option<&[u8]>) -> Vec<u8> {
    let mut stream = connect(addr);
    if let Some(req) = request {
        stream.write_all(req).unwrap();
        // A server that replies without reading may have closed (and, with
        // the request unread, reset) the connection already; its reply is
        // still there to read.
        match stream.shutdown(std::net::Shutdown::Write) {
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => {}
            result => result.unwrap(),
        }
    }
    read_to_end(&mut stream)
}

/// A UDP socket of the right family on loopback, with a read timeout.
pub fn udp_client(addr: &Addr, timeout: Duration) -> UdpSocket {
    let local = if inet(addr).is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = UdpSocket::bind(local).unwrap();
    socket.set_read_timeout(Some(timeout)).unwrap();
    socket
}

/// Sends one datagram and returns the reply.
pub fn udp_exchange(addr: &Addr, payload: &[u8]) -> Vec<u8> {
    let socket = udp_client(addr, TIMEOUT);
    socket.send_to(payload, inet(addr)).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = socket.recv_from(&mut buf).expect("a reply datagram");
    assert_eq!(from, to_loopback(inet(addr)));
    buf.truncate(n);
    buf
}

/// A wildcard address as a client reaches it on loopback.
pub fn to_loopback(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(a) if a.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], a.port()))
        }
        SocketAddr::V6(a) if a.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port()))
        }
        a => a,
    }
}

/// A gate handlers wait at until the test opens it, and a channel on which
/// they say they have started: lets a test know exactly what is running
/// without sleeping.
#[derive(Clone)]
pub struct Gate {
    open: Arc<(Mutex<bool>, std::sync::Condvar)>,
    started_tx: Arc<Mutex<mpsc::Sender<()>>>,
}

impl Gate {
    pub fn new() -> (Gate, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        let gate = Gate {
            open: Arc::new((Mutex::new(false), std::sync::Condvar::new())),
            started_tx: Arc::new(Mutex::new(tx)),
        };
        (gate, rx)
    }

    /// Called by a handler: reports that it started, waits for the gate.
    pub fn arrive(&self) {
        let _ = self.started_tx.lock().unwrap().send(());
        let (lock, cv) = &*self.open;
        let mut open = lock.lock().unwrap();
        while !*open {
            let (guard, timeout) = cv.wait_timeout(open, Duration::from_secs(30)).unwrap();
            open = guard;
            if timeout.timed_out() {
                break;
            }
        }
    }

    /// Called by a handler serving `conn`: [`arrive`](Self::arrive),
    /// through [`Connection::offload`], as the `park_idle` mode's rule
    /// wants of a blocking call that is not the connection's I/O: there
    /// the wait holds a helper thread while the connection parks, not the
    /// event loop that serves other connections too. In the thread mode
    /// `offload` simply calls it.
    pub fn arrive_from(&self, conn: &Connection) {
        conn.offload(|| self.arrive())
    }

    /// A handler that arrives at this gate, then writes `reply`.
    pub fn handler(
        &self,
        reply: &'static [u8],
    ) -> impl Fn(&mut Connection) -> std::io::Result<()> + Send + Sync + 'static {
        let gate = self.clone();
        move |conn: &mut Connection| {
            gate.arrive_from(conn);
            conn.write_all(reply)
        }
    }

    pub fn open(&self) {
        let (lock, cv) = &*self.open;
        *lock.lock().unwrap() = true;
        cv.notify_all();
    }
}

/// Waits up to `TIMEOUT` for `n` handler starts.
pub fn expect_started(rx: &mpsc::Receiver<()>, n: usize) {
    for i in 0..n {
        rx.recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("only {i} of {n} handlers started"));
    }
}

/// Asserts that `err` is [`socketserver::Error::InvalidSetting`] for
/// `setting`, and returns its reason for the test to check further.
#[track_caller]
pub fn invalid_setting<'e>(err: &'e socketserver::Error, setting: &str) -> &'e str {
    match err {
        socketserver::Error::InvalidSetting {
            setting: got,
            reason,
        } if *got == setting => reason,
        _ => panic!("expected an invalid setting {setting:?}, got {err:?}"),
    }
}

/// Polls `cond` (a cheap read of the server's counters) until it holds or
/// `TIMEOUT` passes. This waits for the server's own work, never for it to
/// start: `build()` already returned listening.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Resident memory of this process, in KiB (Linux).
pub fn rss_kib() -> u64 {
    proc_status_field("VmRSS:")
}

/// Threads of this process (Linux).
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Threads of this process whose name starts with `prefix` (Linux shows
/// the first 15 bytes of a name in `comm`).
pub fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(Result::ok)
        .filter(|task| {
            // A thread may end between the listing and this read.
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.trim_end().starts_with(prefix))
        })
        .count()
}

/// Open descriptors of this process (Linux).
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn proc_status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(name)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// CPU time (user + system) a process has used, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 1000 / clock_ticks())
}

fn clock_ticks() -> u64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Asserts `reply` is the seed's daytime text, `YYYY-MM-DD HH:MM:SS.ffffff`
/// (an optional line end aside), within 5 s of now.
pub fn assert_seed_time(reply: &[u8]) {
    let text = std::str::from_utf8(reply).unwrap().trim_end();
    let sent = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.6f")
        .unwrap_or_else(|e| panic!("{text:?}: {e}"));
    let now = chrono::Local::now().naive_local();
    assert!((now - sent).num_seconds().abs() < 5, "{sent} vs {now}");
}

/// A handler that replies `TRANSPORT PEER LOCAL`, as it sees them.
pub fn whoami(conn: &mut Connection) -> std::io::Result<()> {
    let text = format!(
        "{} {} {}",
        conn.transport(),
        conn.peer_addr(),
        conn.local_addr()
    );
    conn.write_all(text.as_bytes())
}

/// Writes `msg` and expects it back (an echo server).
pub fn round_trip(stream: &mut TcpStream, msg: &[u8]) {
    stream.write_all(msg).unwrap();
    let mut back = vec![0u8; msg.len()];
    stream.read_exact(&mut back).expect("the echo");
    assert_eq!(back, msg);
}

/// Stops `server` on another thread and returns its report and how long
/// `stop()` took; fails the test if it has not returned after twice
/// `TIMEOUT`, instead of hanging it.
pub fn stop_timed(server: ServerThread) -> (socketserver::ShutdownReport, Duration) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let t = std::time::Instant::now();
        let report = server.stop();
        let _ = tx.send((report, t.elapsed()));
    });
    let (report, took) = rx.recv_timeout(TIMEOUT * 2).expect("stop() to return");
    (report.expect("stop"), took)
}

/// The environment variable under which a missing outside program fails
/// its test instead of skipping it. `.ci/run` sets it, after installing
/// the programs, so that CI runs every test.
pub const REQUIRE_ALL: &str = "SOCKETSERVER_TEST_REQUIRE_ALL";

/// Where an outside program (a real client or proxy the test talks to) is
/// installed: on the PATH, or in the sbin directories, which not every
/// PATH includes. When it is missing, the test says so in one line and
/// is skipped (`None`), unless [`REQUIRE_ALL`] is set: then it fails.
pub fn outside_program(program: &str, package: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        let why = format!(
            "`{program}` is not installed (Debian: apt-get install {package}; .ci/run installs it)"
        );
        if std::env::var_os(REQUIRE_ALL).is_some() {
            panic!("{why}, and {REQUIRE_ALL} is set");
        }
        // Straight to stderr, past the test harness's capture, so that a
        // skip shows in a plain `cargo test`.
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "skipped: {why}");
    }
    found
}

/// Asserts that `client` gets nothing for `wait`: it is kept waiting.
pub fn expect_no_reply(client: &mut TcpStream, wait: Duration) {
    client.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 8];
    match client.read(&mut buf) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!("expected to wait, got {other:?}"),
    }
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
}

/// Whether `net.ipv4.tcp_migrate_req` is 1 (Linux 5.14+: a closed
/// `reuse_port` listener's queue moves to the others of its port); says
/// why a test is skipped, or fails if every test must run, when it is not.
pub fn tcp_migrate_req() -> bool {
    let on = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_migrate_req")
        .is_ok_and(|v| v.trim() == "1");
    if !on {
        let why = "net.ipv4.tcp_migrate_req is not 1 (sysctl -w net.ipv4.tcp_migrate_req=1; .ci/run sets it)";
        assert!(std::env::var_os(REQUIRE_ALL).is_none(), "{why}");
        eprintln!("skipped: {why}");
    }
    on
}

/// The server's side of `client`'s connection (IPv4) as `/proc/net/tcp`
/// shows it: the kernel's own fields for the socket.
fn server_side(server_port: u16, client: &std::net::TcpStream) -> Vec<String> {
    let client_port = client.local_addr().unwrap().port();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap(), 16).unwrap();
    table
        .lines()
        .skip(1)
        .map(|line| {
            line.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .find(|f| port(&f[1]) == server_port && port(&f[2]) == client_port)
        .unwrap_or_else(|| panic!("no server-side socket for port {client_port} in /proc/net/tcp"))
}

/// The timer of the server's side of `client`'s connection: which one
/// (2: keepalive) and in how long.
pub fn server_side_timer(server_port: u16, client: &std::net::TcpStream) -> (u8, Duration) {
    let fields = server_side(server_port, client);
    let (timer, when) = fields[5].split_once(':').unwrap();
    // In clock ticks of 1/100 s (USER_HZ).
    let ticks = u64::from_str_radix(when, 16).unwrap();
    (timer.parse().unwrap(), Duration::from_millis(ticks * 10))
}

/// Bytes the server's side of `client`'s connection has received and
/// nobody has read yet.
pub fn server_side_unread(server_port: u16, client: &std::net::TcpStream) -> usize {
    let fields = server_side(server_port, client);
    let (_, unread) = fields[4].split_once(':').unwrap();
    usize::from_str_radix(unread, 16).unwrap()
}
