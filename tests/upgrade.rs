//! Upgrade in place (`Upgrade`, SIGUSR2 in the examples): the echo
//! server, under load from client threads that connect, send, read the
//! echo and close without pause, is upgraded 20 times in a row; not one
//! request may fail. The old process must exit after each, and the new one
//! says so (its `READY=1` reached the old one).
//!
//! * `twenty_upgrades_under_load_lose_nothing`: TCP, thread mode and
//!   `park_idle` (`..._parked`).
//! * `twenty_upgrades_under_tls_load_lose_nothing` (feature `tls`), both
//!   modes.
//! * `twenty_upgrades_answer_every_datagram`: UDP.
//! * `twenty_upgrades_of_a_unix_socket_lose_nothing`.
//! * `a_new_process_that_fails_leaves_the_old_one_serving`.
//! * `systemd_hears_ready_and_the_new_main_pid`: `NOTIFY_SOCKET`.
//! * `twenty_rolling_restarts_under_load_lose_nothing`: `SO_REUSEPORT`
//!   and `net.ipv4.tcp_migrate_req=1` instead of a handover, both modes.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const UPGRADES: usize = 20;
const CLIENTS: usize = 6;
const WAIT: Duration = Duration::from_secs(15);

/// The generations of one example server: the first, our child, and the
/// ones each upgrade started; all killed when dropped.
struct Generations {
    first: Child,
    pids: Vec<u32>,
    stderr: mpsc::Receiver<String>,
    stdout: mpsc::Receiver<String>,
    addr: SocketAddr,
}

impl Drop for Generations {
    fn drop(&mut self) {
        for pid in &self.pids {
            signal(*pid, "KILL");
        }
        let _ = self.first.wait();
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// The lines `from` gives, read on a thread of their own.
fn lines(from: impl BufRead + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in from.lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Kills process `pid` when dropped, should a test fail before it ends.
struct KillPid(u32);

impl Drop for KillPid {
    fn drop(&mut self) {
        if !exited(self.0) {
            signal(self.0, "KILL");
        }
    }
}

/// Whether process `pid` has exited (gone, or a zombie).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

impl Generations {
    fn start(args: &[&str]) -> Generations {
        Self::start_with(Command::new(example("echo_server")).args(args))
    }

    fn start_with(command: &mut Command) -> Generations {
        let mut first = command
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(first.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        // A Unix socket's address is its path, which its test knows.
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.trim_end().rsplit_once(' '))
            .unwrap_or_else(|| panic!("first line {line:?}"))
            .0
            .parse()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        // Every generation writes to these pipes; keep them drained.
        let stdout = lines(stdout);
        let stderr = lines(BufReader::new(first.stderr.take().unwrap()));
        let pid = first.id();
        Generations {
            first,
            pids: vec![pid],
            stderr,
            stdout,
            addr,
        }
    }

    fn current(&self) -> u32 {
        *self.pids.last().unwrap()
    }

    /// SIGUSR2 to the current generation; returns the first line of its
    /// stderr from then on that contains one of `said`.
    fn signal_upgrade(&self, said: &[&str]) -> String {
        let old = self.current();
        signal(old, "USR2");
        let until = Instant::now() + WAIT;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let line = self
                .stderr
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("nothing from {old} about its upgrade in {WAIT:?}"));
            if said.iter().any(|s| line.contains(s)) {
                return line;
            }
        }
    }

    /// SIGUSR2 to the current generation; waits for the new one to serve
    /// and the old one to exit.
    fn upgrade(&mut self) {
        let old = self.current();
        let until = Instant::now() + WAIT;
        let line = self.signal_upgrade(&["upgrade in place", "SIGUSR2"]);
        let new = line
            .split("upgrade in place: process ")
            .nth(1)
            .unwrap_or_else(|| panic!("{line}"))
            .split(' ')
            .next()
            .unwrap()
            .parse::<u32>()
            .unwrap();
        self.pids.push(new);
        while !exited(old) {
            assert!(
                Instant::now() < until,
                "{old} did not exit after the upgrade"
            );
            thread::sleep(Duration::from_millis(10));
        }
        assert!(!exited(new), "the new process {new} exited");
    }

    /// SIGTERM to the current generation; waits for it to exit. Returns
    /// its shutdown report's line.
    fn stop(mut self) -> String {
        let pid = self.current();
        signal(pid, "TERM");
        let until = Instant::now() + WAIT;
        while !exited(pid) {
            assert!(Instant::now() < until, "{pid} did not stop");
            thread::sleep(Duration::from_millis(10));
        }
        self.pids.clear();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let line = self.stdout.recv_timeout(left).expect("a shutdown report");
            if line.starts_with("shut down: ") {
                return line;
            }
        }
    }
}

/// Client threads, each doing `one` without pause until stopped; counts
/// the requests that succeeded and those that failed (with the first
/// failure's message).
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    threads: Vec<thread::JoinHandle<Vec<String>>>,
}

impl Load {
    fn start(one: impl Fn(u64) -> Result<(), String> + Send + Sync + 'static) -> Load {
        let (stop, ok) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let one = Arc::new(one);
        let threads = (0..CLIENTS as u64)
            .map(|t| {
                let (stop, ok, one) = (stop.clone(), ok.clone(), one.clone());
                thread::spawn(move || {
                    let mut failures = Vec::new();
                    let mut n = t << 32;
                    while !stop.load(SeqCst) {
                        n += 1;
                        match one(n) {
                            Ok(()) => drop(ok.fetch_add(1, SeqCst)),
                            Err(e) => failures.push(e),
                        }
                    }
                    failures
                })
            })
            .collect();
        Load { stop, ok, threads }
    }

    /// Waits until at least `n` more requests have succeeded.
    fn wait_for(&self, n: u64) {
        let target = self.ok.load(SeqCst) + n;
        let until = Instant::now() + WAIT;
        while self.ok.load(SeqCst) < target {
            assert!(Instant::now() < until, "the load stalled");
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the clients; returns (succeeded, failures).
    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, SeqCst);
        let failures = self
            .threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        (self.ok.load(SeqCst), failures)
    }
}

/// Runs `UPGRADES` upgrades of the server started with `args` under the
/// load `one`, and asserts that every request succeeded.
fn upgrades_under_load(
    args: &[&str],
    one: impl Fn(SocketAddr, u64) -> Result<(), String> + Send + Sync + 'static,
) {
    let server = Generations::start(args);
    let addr = server.addr;
    upgrades(args, server, Load::start(move |n| one(addr, n)));
}

/// Runs `UPGRADES` upgrades of `server` under `load`, and asserts that
/// every request succeeded.
fn upgrades(args: &[&str], mut server: Generations, load: Load) {
    load.wait_for(50);
    for _ in 0..UPGRADES {
        server.upgrade();
        // The new process serves, and the load goes on through it.
        load.wait_for(20);
    }
    let (ok, failures) = load.finish();
    println!(
        "{args:?}: {ok} requests over {UPGRADES} upgrades, {} failed",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} failed, the first: {:?}",
        failures.len(),
        ok + failures.len() as u64,
        &failures[..failures.len().min(5)]
    );
    server.stop();
}

/// One TCP request: connect, send, read the whole echo, close.
fn tcp_request(addr: SocketAddr, n: u64) -> Result<(), String> {
    let s = TcpStream::connect_timeout(&addr, WAIT).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    echoed(s, n)
}

/// Sends request `n` over `s` and reads its whole echo.
fn echoed(mut s: impl Read + Write, n: u64) -> Result<(), String> {
    let msg = format!("request {n}\n");
    s.write_all(msg.as_bytes())
        .and_then(|()| s.flush())
        .map_err(|e| format!("write: {e}"))?;
    let mut back = vec![0; msg.len()];
    s.read_exact(&mut back).map_err(|e| format!("read: {e}"))?;
    match back == msg.as_bytes() {
        true => Ok(()),
        false => Err(format!("echo {back:?}")),
    }
}

#[test]
fn twenty_upgrades_under_load_lose_nothing() {
    upgrades_under_load(&["--bind", "127.0.0.1:0"], tcp_request);
}

#[test]
fn twenty_upgrades_under_load_lose_nothing_parked() {
    upgrades_under_load(&["--bind", "127.0.0.1:0", "--park-idle"], tcp_request);
}

#[test]
fn twenty_upgrades_answer_every_datagram() {
    upgrades_under_load(&["--bind", "127.0.0.1:0", "--udp"], |addr, n| {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let msg = format!("datagram {n}");
        sock.send_to(msg.as_bytes(), addr)
            .map_err(|e| format!("send: {e}"))?;
        let mut buf = [0u8; 64];
        let (len, _) = sock
            .recv_from(&mut buf)
            .map_err(|e| format!("{msg} unanswered: {e}"))?;
        match &buf[..len] == msg.as_bytes() {
            true => Ok(()),
            false => Err(format!("echo {:?}", &buf[..len])),
        }
    });
}

/// Over a Unix socket: the old process leaves the socket file to the new
/// one, and every request is answered.
#[test]
fn twenty_upgrades_of_a_unix_socket_lose_nothing() {
    use std::os::unix::net::UnixStream;
    let dir =
        std::env::temp_dir().join(format!("socketserver-upgrade-unix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let args = ["--unix", path.to_str().unwrap()];
    let server = Generations::start(&args);
    let socket = path.clone();
    let load = Load::start(move |n| {
        let s = UnixStream::connect(&socket).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_write_timeout(Some(WAIT)).unwrap();
        echoed(s, n)
    });
    upgrades(&args, server, load);
    // A socket passed in is not the server's to remove: the file stays,
    // for the next bind to replace (it answers no one).
    assert!(path.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(feature = "tls")]
#[test]
fn twenty_upgrades_under_tls_load_lose_nothing() {
    tls_upgrades(false);
}

#[cfg(feature = "tls")]
#[test]
fn twenty_upgrades_under_tls_load_lose_nothing_parked() {
    tls_upgrades(true);
}

/// A handshake in flight when the old process stops is drained with the
/// rest: its messages were no reply, the client is in the middle.
#[cfg(feature = "tls")]
fn tls_upgrades(park: bool) {
    use common::tls::{client_config, connect_over, Pki};
    let pki = Pki::new();
    let config = client_config(&pki.ca, &[], None);
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    let mut args = vec![
        "--bind",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];
    if park {
        args.push("--park-idle");
    }
    upgrades_under_load(&args, move |addr, n| {
        let tcp = TcpStream::connect_timeout(&addr, WAIT).map_err(|e| format!("connect: {e}"))?;
        let client =
            connect_over(tcp, "localhost", &config).map_err(|e| format!("handshake: {e}"))?;
        echoed(client, n)
    });
    drop(pki);
}

/// A broken deploy: the program on disk, replaced, exits at once, or
/// never gets ready. The old process says why, kills what it started in
/// the second case, and goes on serving; a later upgrade, once the
/// program is fixed, succeeds.
#[test]
fn a_new_process_that_fails_leaves_the_old_one_serving() {
    let deployed = Deployed::new("deploy");
    let mut server = deployed.start(&["--ready-timeout", "1"]);
    let addr = server.addr;
    let replace = |content: &[u8]| deployed.replace(content);
    let old = server.current();
    for (script, why) in [
        (
            &b"#!/bin/sh\nexit 3\n"[..],
            "exited (exit status: 3) before it was ready",
        ),
        (
            &b"#!/bin/sh\nexec sleep 60\n"[..],
            "was not ready within 1s; it was killed",
        ),
    ] {
        replace(script);
        let said = server.signal_upgrade(&["upgrade in place failed"]);
        assert!(said.contains(why), "{said}");
        assert!(said.contains("this process goes on serving"), "{said}");
        assert!(!exited(old));
        for n in 0..20 {
            tcp_request(addr, n).unwrap();
        }
    }

    replace(&std::fs::read(example("echo_server")).unwrap());
    server.upgrade();
    tcp_request(addr, 99).unwrap();
    server.stop();
}

/// A copy of `echo_server` in a directory of its own, as a deploy leaves
/// it on disk, to be started and then replaced; removed when dropped.
struct Deployed {
    dir: std::path::PathBuf,
    program: std::path::PathBuf,
}

impl Deployed {
    fn new(tag: &str) -> Deployed {
        let dir = std::env::temp_dir().join(format!("socketserver-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let program = dir.join("echo_server");
        std::fs::copy(example("echo_server"), &program).unwrap();
        Deployed { dir, program }
    }

    /// Starts it on a port of its own, with `args`.
    fn start(&self, args: &[&str]) -> Generations {
        Generations::start_with(
            Command::new(&self.program)
                .args(["--bind", "127.0.0.1:0"])
                .args(args),
        )
    }

    /// A running binary cannot be written: it is replaced, as a deploy
    /// does.
    fn replace(&self, content: &[u8]) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::remove_file(&self.program).unwrap();
        std::fs::write(&self.program, content).unwrap();
        std::fs::set_permissions(&self.program, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

impl Drop for Deployed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A shutdown (SIGTERM) while the new process is starting wins over the
/// upgrade: the new process is killed rather than left holding the
/// sockets, and the old one shuts down as if no upgrade had begun.
#[test]
fn a_shutdown_during_an_upgrade_kills_the_new_process() {
    a_shutdown_during_an_upgrade(&[]);
}

#[test]
fn a_shutdown_during_an_upgrade_kills_the_new_process_parked() {
    a_shutdown_during_an_upgrade(&["--park-idle"]);
}

fn a_shutdown_during_an_upgrade(mode: &[&str]) {
    let deployed = Deployed::new(&format!("abort{}", mode.len()));
    let mut server = deployed.start(&[&["--ready-timeout", "30"], mode].concat());
    tcp_request(server.addr, 0).unwrap();
    // The deployed program never gets ready; it says who it is.
    let pid_file = deployed.dir.join("new.pid");
    let script = format!(
        "#!/bin/sh\necho $$ > {}\nexec sleep 60\n",
        pid_file.display()
    );
    deployed.replace(script.as_bytes());
    signal(server.current(), "USR2");
    let new = pid_written_to(&pid_file);
    let _new = KillPid(new);
    let stderr = std::mem::replace(&mut server.stderr, mpsc::channel().1);
    let report = server.stop();
    assert!(exited(new), "the new process {new} was left running");
    assert!(report.contains("0 forced"), "{report}");
    // Why, if it was said before the process exited: not that it goes on
    // serving.
    for line in stderr.try_iter() {
        if line.contains("upgrade in place failed") {
            assert!(line.contains("goes on with its shutdown"), "{line}");
        }
    }
}

/// While the new process starts, it may make the shared socket
/// non-blocking (one in `park_idle` does): the old one, in the thread
/// mode, then waits for connections as before, rather than spin on
/// `EAGAIN`. The new process here is a Python script that does just that,
/// and never gets ready.
#[test]
fn the_old_process_does_not_spin_while_the_new_one_starts() {
    let Some(python) = outside_program("python3", "python3") else {
        return;
    };
    let deployed = Deployed::new("nonblocking");
    let server = deployed.start(&["--ready-timeout", "30"]);
    let pid_file = deployed.dir.join("new.pid");
    let script = format!(
        "#!{}\nimport os, time\nos.set_blocking(3, False)\n\
         open({:?}, 'w').write('%d\\n' % os.getpid())\ntime.sleep(60)\n",
        python.display(),
        pid_file.display().to_string(),
    );
    deployed.replace(script.as_bytes());
    signal(server.current(), "USR2");
    let new = pid_written_to(&pid_file);
    let _new = KillPid(new);
    // Each accepting thread meets the non-blocking socket once its
    // blocked accept has returned a connection.
    for n in 0..6 {
        tcp_request(server.addr, n).unwrap();
    }
    let old = server.current();
    let before = cpu_time(old);
    // Measured over a while, idle.
    thread::sleep(Duration::from_millis(500));
    let used = cpu_time(old) - before;
    // Ten clock ticks (spinning took 85).
    assert!(
        used < Duration::from_millis(100),
        "{used:?} of CPU in 0.5 s, idle"
    );
    for n in 0..3 {
        tcp_request(server.addr, n).unwrap();
    }
    server.stop();
    assert!(exited(new));
}

/// The process id the new process wrote to `file`, once it has.
fn pid_written_to(file: &std::path::Path) -> u32 {
    let until = Instant::now() + WAIT;
    loop {
        match std::fs::read_to_string(file) {
            Ok(pid) if pid.ends_with('\n') => return pid.trim().parse().unwrap(),
            _ => assert!(Instant::now() < until, "the new process did not start"),
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Under systemd (`NOTIFY_SOCKET`): the first process reports `READY=1`
/// with its `MAINPID`; after an upgrade, the new main process is reported.
#[test]
fn systemd_hears_ready_and_the_new_main_pid() {
    let dir = std::env::temp_dir().join(format!("socketserver-notify-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("notify");
    let systemd = UnixDatagram::bind(&path).unwrap();
    systemd.set_read_timeout(Some(WAIT)).unwrap();
    let mut server = Generations::start_with(
        Command::new(example("echo_server"))
            .args(["--bind", "127.0.0.1:0"])
            .env("NOTIFY_SOCKET", &path),
    );
    let heard = |systemd: &UnixDatagram| {
        let mut buf = [0u8; 256];
        let n = systemd.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = server.current();
    assert_eq!(heard(&systemd), format!("READY=1\nMAINPID={first}\n"));
    server.upgrade();
    let new = server.current();
    let mut said = vec![heard(&systemd), heard(&systemd)];
    said.sort();
    assert_eq!(
        said,
        [
            format!("MAINPID={new}\nREADY=1\n"),
            format!("READY=1\nMAINPID={new}\n")
        ],
        "from the new process itself, and from the old on its behalf"
    );
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Rolling restarts with `SO_REUSEPORT`: a new process joins the port,
/// then the old one gets SIGTERM; it shuts its listener first, so its
/// accept queue moves to the new one (`tcp_migrate_req`), and drains.
/// 20 in a row under load: not one request may fail.
#[test]
fn twenty_rolling_restarts_under_load_lose_nothing() {
    rolling_restarts(&[]);
}

#[test]
fn twenty_rolling_restarts_under_load_lose_nothing_parked() {
    rolling_restarts(&["--park-idle"]);
}

fn rolling_restarts(mode: &[&str]) {
    if !tcp_migrate_req() {
        return;
    }
    let first = [&["--bind", "127.0.0.1:0", "--reuse-port"][..], mode].concat();
    let mut current = Generations::start(&first);
    let addr = current.addr;
    let bind = addr.to_string();
    let next = [&["--bind", bind.as_str(), "--reuse-port"][..], mode].concat();
    let load = Load::start(move |n| tcp_request(addr, n));
    load.wait_for(50);
    for _ in 0..UPGRADES {
        let report = std::mem::replace(&mut current, Generations::start(&next)).stop();
        assert!(report.contains(" 0 forced, 0 dropped unserved"), "{report}");
        load.wait_for(20);
    }
    let (ok, failures) = load.finish();
    // The kernel may reset a handshake caught in flight as the old
    // listener closes (it migrates the queue, rarely not a half-open
    // connection: seen once in some 150,000 requests, on a loaded
    // machine). Such a client never reached a server, and its connect
    // fails at once; no request that reached one may be lost.
    let (refused, lost): (Vec<_>, Vec<_>) =
        failures.iter().partition(|f| f.starts_with("connect: "));
    println!(
        "{mode:?}: {ok} requests over {UPGRADES} rolling restarts, {} lost, {} connects reset",
        lost.len(),
        refused.len()
    );
    assert!(
        lost.is_empty(),
        "{} lost, the first: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    assert!(
        refused.len() <= 2,
        "{} connects reset: {refused:?}",
        refused.len()
    );
    current.stop();
}
