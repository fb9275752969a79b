//! The `inetd` example against real clients from Debian packages: `rdate`
//! for time (RFC 868), `nc` (netcat-openbsd) and `socat` for echo, discard,
//! chargen, daytime and qotd, over TCP and UDP. `.ci/run` installs them; a
//! missing client fails its test, never skips it.
//!
//! The tests that talk TCP run in both serving modes (`both_modes!`: a
//! thread per connection, and inetd's `--park-idle`, which parks its TCP
//! services' connections). `nc_talks_to_every_service_over_udp` and
//! `socat_talks_to_every_service_over_udp` talk UDP only (`park_idle` is for
//! streams), and `inetd_refuses_an_offset_past_the_last_port` serves nothing.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex};

use common::*;
use socketserver::handlers::Qotd;

/// The services and their RFC ports, as inetd serves them.
const SERVICES: [(&str, u16); 6] = [
    ("echo", 7),
    ("discard", 9),
    ("daytime", 13),
    ("qotd", 17),
    ("chargen", 19),
    ("time", 37),
];

/// Two rounds of chargen's 95-line ring.
const CHARGEN_BYTES: usize = 2 * 95 * 74;

/// A running `inetd`, killed when dropped if a test failed before `stop`.
struct Inetd {
    child: Child,
    /// Its stdout, line by line, from a thread: reads that cannot hang.
    /// (In a mutex only so that client threads may share an `&Inetd`.)
    lines: Mutex<mpsc::Receiver<String>>,
    /// `(service, "tcp" or "udp")` to the address it listens on.
    addrs: HashMap<(&'static str, String), SocketAddr>,
    stopped: bool,
}

/// An offset that puts every service on a free port, below the ephemeral
/// range so that no client's port can take one meanwhile, and different
/// for each test of this process.
fn free_offset(ip: IpAddr) -> u16 {
    static TRIES: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = TRIES.fetch_add(1, Ordering::Relaxed);
        assert!(n < 1000, "no free ports for inetd");
        let spread = u64::from(std::process::id()) * 7919 + u64::from(n) * 101;
        let offset = 11_000 + (spread % 20_000) as u16;
        let free = SERVICES.iter().all(|&(_, port)| {
            let addr = SocketAddr::new(ip, port + offset);
            TcpListener::bind(addr).is_ok() && UdpSocket::bind(addr).is_ok()
        });
        if free {
            return offset;
        }
    }
}

impl Inetd {
    /// Starts inetd on `ip` and reads its twelve `listening on` lines.
    fn start(ip: &str, extra: &[&str]) -> Inetd {
        let ip: IpAddr = ip.parse().unwrap();
        // Another process may take a port between the check and the bind.
        for _ in 0..5 {
            let offset = free_offset(ip);
            let mut child = Command::new(example("inetd"))
                .args(["--bind", &ip.to_string(), "--offset", &offset.to_string()])
                .args(extra)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let stdout = BufReader::new(child.stdout.take().unwrap());
            let (tx, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in stdout.lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            let mut addrs = HashMap::new();
            while addrs.len() < 2 * SERVICES.len() {
                let line = match lines.recv_timeout(TIMEOUT) {
                    Ok(line) => line,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    Err(e) => panic!("inetd printed {} lines, then nothing: {e}", addrs.len()),
                };
                let rest = line
                    .strip_prefix("listening on ")
                    .unwrap_or_else(|| panic!("unexpected line {line:?}"));
                let (addr, proto) = rest.rsplit_once(' ').unwrap();
                let addr: SocketAddr = addr.parse().unwrap();
                let proto = proto.trim_matches(['(', ')']).to_string();
                assert!(proto == "tcp" || proto == "udp", "{line:?}");
                let &(name, _) = SERVICES
                    .iter()
                    .find(|&&(_, port)| port + offset == addr.port())
                    .unwrap_or_else(|| panic!("no service on {addr}"));
                assert_eq!(addr.ip(), ip);
                assert!(addrs.insert((name, proto), addr).is_none(), "{line:?}");
            }
            if addrs.len() == 2 * SERVICES.len() {
                return Inetd {
                    child,
                    lines: Mutex::new(lines),
                    addrs,
                    stopped: false,
                };
            }
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains("in use"), "inetd failed: {stderr}");
        }
        panic!("inetd found its ports taken five times");
    }

    fn addr(&self, service: &'static str, proto: &str) -> SocketAddr {
        self.addrs[&(service, proto.to_string())]
    }

    /// `HOST PORT` arguments for nc and rdate's `-o PORT HOST`.
    fn host_port(&self, service: &'static str, proto: &str) -> (String, String) {
        let addr = self.addr(service, proto);
        (addr.ip().to_string(), addr.port().to_string())
    }

    /// socat's address for a service: `TCP:[::1]:10007`.
    fn socat(&self, service: &'static str, proto: &str) -> String {
        format!("{}:{}", proto.to_uppercase(), self.addr(service, proto))
    }

    /// SIGTERM, as Ctrl-C would: every socket drains, and inetd exits 0.
    fn stop(mut self) {
        sigterm(&self.child);
        let mut lines = Vec::new();
        loop {
            match self.lines.get_mut().unwrap().recv_timeout(TIMEOUT) {
                Ok(line) => lines.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(e) => panic!("inetd did not exit after SIGTERM: {e}; printed {lines:?}"),
            }
        }
        assert_eq!(lines.len(), 12, "{lines:?}");
        assert!(
            lines.iter().all(|l| l.starts_with("shut down ")),
            "{lines:?}"
        );
        assert!(self.child.wait().unwrap().success());
        self.stopped = true;
    }
}

impl Drop for Inetd {
    fn drop(&mut self) {
        if !self.stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The client's path, or `None` (the test is skipped, or fails under
/// `.ci/run`) if it is not installed; fails the test if `nc` is not
/// OpenBSD's, whose flags the tests use.
fn require(program: &str, package: &str) -> Option<String> {
    let path = outside_program(program, package)?;
    if program == "nc" {
        let help = Command::new(&path).arg("-h").output().unwrap();
        let text = String::from_utf8_lossy(&help.stderr) + String::from_utf8_lossy(&help.stdout);
        assert!(
            text.contains("OpenBSD netcat"),
            "`nc` is not OpenBSD netcat (apt-get install netcat-openbsd): {text}"
        );
    }
    Some(path.to_string_lossy().into_owned())
}

/// Runs a client with `input` on its stdin, killed after 5 s if it has
/// not finished: a client that hangs fails the test instead of hanging it.
fn run(args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new("timeout")
        .args(["-k", "1", "5"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `pipeline` in sh, bounded like `run`: for a client cut off by
/// `head` after `CHARGEN_BYTES`, as a user stops chargen.
fn run_sh(pipeline: &str) -> Vec<u8> {
    run(&["sh", "-c", pipeline], b"").stdout
}

/// Parses what `rdate -p` prints, `Wed Nov 25 03:12:09 UTC 2026`, and
/// checks that it is now (local time, within 2 s).
fn assert_rdate_now(out: &Output) {
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    let [.., month, day, time, _zone, year] = words[..] else {
        panic!("rdate printed {text:?}");
    };
    let stamp = format!("{month} {day} {time} {year}");
    let sent = chrono::NaiveDateTime::parse_from_str(&stamp, "%b %d %H:%M:%S %Y")
        .unwrap_or_else(|e| panic!("rdate printed {text:?}: {e}"));
    let now = chrono::Local::now().naive_local();
    assert!((now - sent).num_seconds().abs() <= 2, "{sent} vs {now}");
}

fn default_quotes() -> Vec<String> {
    Qotd::default().quotes().map(String::from).collect()
}

fn assert_a_quote(out: &[u8], quotes: &[String]) {
    let quote = String::from_utf8_lossy(out);
    assert!(quotes.iter().any(|q| *q == quote), "{quote:?} is no quote");
}

/// inetd's flags for a serving mode: `park`, TCP connections parked.
fn mode(park: bool) -> &'static [&'static str] {
    if park {
        &["--park-idle"]
    } else {
        &[]
    }
}

fn assert_chargen(out: &[u8], max: usize) {
    assert!(out.len() <= max, "{} bytes", out.len());
    assert_eq!(out, &chargen_pattern(0, out.len())[..]);
}

both_modes!(rdate_reads_the_time_over_tcp_and_udp_on_ipv4_and_ipv6);
fn rdate_reads_the_time_over_tcp_and_udp_on_ipv4_and_ipv6(park: bool) {
    let Some(rdate) = require("rdate", "rdate") else {
        return;
    };
    for (ip, family) in [("127.0.0.1", "-4"), ("::1", "-6")] {
        let inetd = Inetd::start(ip, mode(park));
        let (host, port) = inetd.host_port("time", "tcp");
        assert_rdate_now(&run(&[&rdate, family, "-p", "-o", &port, &host], b""));
        let (host, port) = inetd.host_port("time", "udp");
        assert_rdate_now(&run(&[&rdate, family, "-p", "-u", "-o", &port, &host], b""));
        inetd.stop();
    }
}

both_modes!(nc_talks_to_every_service_over_tcp);
fn nc_talks_to_every_service_over_tcp(park: bool) {
    let Some(nc_path) = require("nc", "netcat-openbsd") else {
        return;
    };
    let inetd = Inetd::start("127.0.0.1", mode(park));
    let nc = |service, input: &[u8], flag| {
        let (host, port) = inetd.host_port(service, "tcp");
        run(&[&nc_path, flag, &host, &port], input).stdout
    };
    // -N: half-close after stdin's end, so echo and discard see the end.
    assert_eq!(nc("echo", b"hello\nworld\n", "-N"), b"hello\nworld\n");
    assert_eq!(nc("discard", b"into the void\n", "-N"), b"");
    // -d: send nothing, just read until the server closes.
    assert_daytime_now(&nc("daytime", b"", "-d"));
    let quotes = default_quotes();
    assert_a_quote(&nc("qotd", b"", "-d"), &quotes);
    // Input the server throws away does not cost the reply.
    assert_a_quote(&nc("qotd", b"ignored\n", "-N"), &quotes);
    let (host, port) = inetd.host_port("chargen", "tcp");
    let out = run_sh(&format!(
        "{nc_path} -d {host} {port} | head -c {CHARGEN_BYTES}"
    ));
    assert_eq!(out.len(), CHARGEN_BYTES);
    assert_chargen(&out, CHARGEN_BYTES);
    inetd.stop();
}

#[test]
fn nc_talks_to_every_service_over_udp() {
    let Some(nc_path) = require("nc", "netcat-openbsd") else {
        return;
    };
    let path = std::env::temp_dir().join(format!("inetd-quotes-{}.txt", std::process::id()));
    std::fs::write(&path, "Short one.\n%\nAnother,\n  on two lines.\n").unwrap();
    let inetd = Inetd::start("::1", &["--quotes", &path.to_string_lossy()]);
    let quotes: Vec<String> = Qotd::from_file(&path)
        .unwrap()
        .quotes()
        .map(String::from)
        .collect();
    std::fs::remove_file(&path).unwrap();
    // -W1: quit after the one reply datagram; -w2: or after 2 s without.
    let nc = |service, input: &[u8]| {
        let (host, port) = inetd.host_port(service, "udp");
        run(&[&nc_path, "-u", "-W1", "-w2", &host, &port], input).stdout
    };
    std::thread::scope(|s| {
        s.spawn(|| assert_eq!(nc("echo", b"hello\n"), b"hello\n"));
        s.spawn(|| assert_daytime_now(&nc("daytime", b"\n")));
        s.spawn(|| assert_a_quote(&nc("qotd", b"\n"), &quotes));
        // A newline may get 128 bytes at most; 200 bytes the RFC's 512.
        s.spawn(|| assert_chargen(&nc("chargen", b"\n"), 128));
        s.spawn(|| assert_chargen(&nc("chargen", &[b'x'; 200]), 512));
        s.spawn(|| {
            let (host, port) = inetd.host_port("discard", "udp");
            let out = run(&[&nc_path, "-u", "-w1", &host, &port], b"into the void\n");
            assert_eq!(out.stdout, b"");
        });
    });
    inetd.stop();
}

both_modes!(socat_talks_to_every_service_over_tcp);
fn socat_talks_to_every_service_over_tcp(park: bool) {
    let Some(socat_path) = require("socat", "socat") else {
        return;
    };
    let inetd = Inetd::start("127.0.0.1", mode(park));
    let quotes = default_quotes();
    let both_ways = |service, input: &[u8]| {
        run(&[&socat_path, "-", &inetd.socat(service, "tcp")], input).stdout
    };
    let read_only =
        |service| run(&[&socat_path, "-u", &inetd.socat(service, "tcp"), "-"], b"").stdout;
    assert_eq!(both_ways("echo", b"hello\n"), b"hello\n");
    assert_eq!(both_ways("discard", b"into the void\n"), b"");
    assert_daytime_now(&read_only("daytime"));
    assert_daytime_now(&both_ways("daytime", b"ignored\n"));
    assert_a_quote(&read_only("qotd"), &quotes);
    let out = run_sh(&format!(
        "{socat_path} -u {} - 2>/dev/null | head -c {CHARGEN_BYTES}",
        inetd.socat("chargen", "tcp")
    ));
    assert_eq!(out.len(), CHARGEN_BYTES);
    assert_chargen(&out, CHARGEN_BYTES);
    inetd.stop();
}

#[test]
fn socat_talks_to_every_service_over_udp() {
    let Some(socat_path) = require("socat", "socat") else {
        return;
    };
    let inetd = Inetd::start("127.0.0.1", &[]);
    let quotes = default_quotes();
    // -t1: after stdin's end, wait up to 1 s for the reply.
    let socat = |service, input: &[u8]| {
        run(
            &[&socat_path, "-t1", "-", &inetd.socat(service, "udp")],
            input,
        )
        .stdout
    };
    std::thread::scope(|s| {
        s.spawn(|| assert_eq!(socat("echo", b"hello\n"), b"hello\n"));
        s.spawn(|| assert_eq!(socat("discard", b"into the void\n"), b""));
        s.spawn(|| assert_daytime_now(&socat("daytime", b"\n")));
        s.spawn(|| assert_a_quote(&socat("qotd", b"\n"), &quotes));
        s.spawn(|| assert_chargen(&socat("chargen", &[b'x'; 200]), 512));
    });
    inetd.stop();
}

#[test]
fn inetd_refuses_an_offset_past_the_last_port() {
    let out = Command::new(example("inetd"))
        .args(["--offset", "65530"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("beyond port 65535"), "{stderr}");
}
