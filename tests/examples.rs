//! Each example program started as a user would start it, and talked to.
//!
//! In the thread mode, but for `stream_examples_take_park_idle`, which
//! serves with each stream example's connections parked (`--park-idle`).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, ChildStdout, Command, Stdio};

use common::*;
use socketserver::Addr;

/// A running example server, stopped with SIGTERM when dropped.
struct Running {
    child: Child,
    stdout: BufReader<ChildStdout>,
    addr: Addr,
}

fn start(name: &str, args: &[&str]) -> Running {
    let mut child = Command::new(example(name))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let rest = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line {line:?}"));
    let (addr, proto) = rest.trim_end().rsplit_once(' ').unwrap();
    let expected = if args.contains(&"--udp") {
        "(udp)"
    } else {
        "(tcp)"
    };
    assert_eq!(proto, expected);
    let addr: SocketAddr = addr.parse().unwrap();
    assert_ne!(addr.port(), 0);
    Running {
        child,
        stdout,
        addr: addr.into(),
    }
}

/// A test that fails before `stop` leaves no example running.
impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    /// SIGTERM, as Ctrl-C or systemd would stop it: exits 0 after
    /// printing what the shutdown drained.
    fn stop(mut self) {
        sigterm(&self.child);
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).unwrap();
        // The last exchange's handler may still be finishing: drained.
        assert!(
            rest.starts_with("shut down: ")
                && rest.contains(" idle closed, 0 forced, 0 dropped unserved"),
            "{rest:?}"
        );
        assert!(self.child.wait().unwrap().success());
    }
}

fn client(args: &[&str]) -> String {
    let out = Command::new(example("client")).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn time_server_over_tcp_ipv4_ipv6_and_udp() {
    for args in [
        &["--bind", "127.0.0.1:0"][..],
        &["--bind", "[::1]:0", "--workers", "2", "--backlog", "64"][..],
        &["--bind", "127.0.0.1:0", "--udp"][..],
    ] {
        let server = start("time_server", args);
        let reply = match args.contains(&"--udp") {
            true => udp_exchange(&server.addr, b"\n"),
            false => tcp_exchange(&server.addr, None),
        };
        assert_seed_time(&reply);
        server.stop();
    }
}

#[test]
fn greeting_server_says_connected() {
    let server = start("greeting_server", &["--bind", "127.0.0.1:0"]);
    assert_eq!(tcp_exchange(&server.addr, None), b"connected");
    server.stop();
}

#[test]
fn echo_server_echoes_over_tcp_and_udp() {
    let server = start("echo_server", &["--bind", "127.0.0.1:0"]);
    assert_eq!(tcp_exchange(&server.addr, Some(b"hello")), b"hello");
    server.stop();
    let server = start("echo_server", &["--bind", "[::1]:0", "--udp"]);
    assert_eq!(udp_exchange(&server.addr, b"hello"), b"hello");
    server.stop();
}

/// Every stream server example serves with its connections parked off the
/// threads too; on a datagram server the flag is refused in words.
#[test]
fn stream_examples_take_park_idle() {
    let args = ["--bind", "127.0.0.1:0", "--park-idle", "--workers", "1"];
    let echo = start("echo_server", &args);
    assert_eq!(tcp_exchange(&echo.addr, Some(b"hello")), b"hello");
    echo.stop();
    let greeting = start("greeting_server", &args);
    assert_eq!(tcp_exchange(&greeting.addr, None), b"connected");
    greeting.stop();
    let time = start("time_server", &args);
    assert_seed_time(&tcp_exchange(&time.addr, None));
    time.stop();
    let whoami = start("whoami_server", &args);
    let reply = String::from_utf8(tcp_exchange(&whoami.addr, None)).unwrap();
    assert!(reply.starts_with("127.0.0.1:"), "{reply:?}");
    whoami.stop();
    let out = Command::new(example("echo_server"))
        .args(["--bind", "127.0.0.1:0", "--udp", "--park-idle"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("park_idle") && stderr.contains("stream"),
        "{stderr}"
    );
}

#[test]
fn client_prints_what_the_servers_send() {
    let time = start("time_server", &["--bind", "127.0.0.1:0"]);
    assert_seed_time(client(&["--connect", &time.addr.to_string()]).as_bytes());
    time.stop();
    let time = start("time_server", &["--bind", "[::1]:0", "--udp"]);
    assert_seed_time(client(&["--udp", "--connect", &time.addr.to_string()]).as_bytes());
    time.stop();
    let greeting = start("greeting_server", &["--bind", "127.0.0.1:0"]);
    assert_eq!(
        client(&["--connect", &greeting.addr.to_string()]),
        "connected\n"
    );
    greeting.stop();
}

#[test]
fn a_bad_flag_or_address_fails_with_a_message() {
    for args in [
        &["--workers", "0"][..],
        &["--bind", "no-such-host.invalid:1"][..],
        &["--bogus"][..],
    ] {
        let out = Command::new(example("time_server"))
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
    // An address without a port says what is missing.
    let out = Command::new(example("echo_server"))
        .args(["--bind", "127.0.0.1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no port") && stderr.contains("127.0.0.1:PORT"),
        "{stderr}"
    );
    // A missing quotes file, and a UDP request nobody answers, in words.
    let out = Command::new(example("inetd"))
        .args(["--quotes", "/nonexistent/quotes"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.starts_with("inetd: --quotes: cannot read /nonexistent/quotes"),
        "{stderr}"
    );
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let out = Command::new(example("client"))
        .args(["--udp", "--timeout", "1", "--connect"])
        .arg(silent.local_addr().unwrap().to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no reply within 1 s"), "{stderr}");
    // Each example's help shows its own port.
    let help = Command::new(example("echo_server"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("0.0.0.0:7007"));
    let busy = start("time_server", &["--bind", "127.0.0.1:0"]);
    let out = Command::new(example("time_server"))
        .args(["--bind", &busy.addr.to_string()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&busy.addr.to_string()) && stderr.contains("in use"),
        "{stderr}"
    );
    busy.stop();
}

#[test]
fn help_lists_the_flags() {
    let out = Command::new(example("time_server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--bind",
        "--workers",
        "--backlog",
        "--udp",
        "--park-idle",
        "--tls-cert",
        "--tls-key",
        "--tls-client-ca",
        "0.0.0.0:6789",
    ] {
        assert!(help.contains(flag), "{flag} missing from {help}");
    }
}

/// `--metrics ADDR`: the counters served over HTTP from a second server,
/// scraped by a real client and read by Prometheus's own parser (Python's
/// `prometheus_client`).
#[test]
fn metrics_are_served_to_a_prometheus_parser() {
    let Some(python) = outside_program("python3", "python3") else {
        return;
    };
    let has_parser = Command::new(&python)
        .args(["-c", "import prometheus_client.parser"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_parser {
        let why = "Python's prometheus_client is not installed (apt-get install python3-prometheus-client)";
        assert!(std::env::var_os(REQUIRE_ALL).is_none(), "{why}");
        eprintln!("skipped: {why}");
        return;
    }
    let mut server = start(
        "echo_server",
        &["--bind", "127.0.0.1:0", "--metrics", "127.0.0.1:0"],
    );
    let mut line = String::new();
    server.stdout.read_line(&mut line).unwrap();
    let url = line
        .trim_end()
        .strip_prefix("metrics on ")
        .unwrap_or_else(|| panic!("second line {line:?}"))
        .to_string();
    assert_eq!(tcp_exchange(&server.addr, Some(b"hello")), b"hello");
    let script = r#"
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
reply = urllib.request.urlopen(sys.argv[1], timeout=5)
assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
families = text_string_to_metric_families(reply.read().decode())
print(json.dumps({s.name: [f.type, float(s.value)] for f in families for s in f.samples}))
"#;
    let out = Command::new(&python)
        .args(["-c", script, &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed = String::from_utf8(out.stdout).unwrap();
    assert!(
        parsed.contains(r#""echo_server_accepted_total": ["counter", 1.0]"#),
        "{parsed}"
    );
    assert!(
        parsed.contains(r#""echo_server_workers": ["gauge", "#),
        "{parsed}"
    );
    assert!(
        parsed.contains(r#""echo_server_parked": ["gauge", 0.0]"#),
        "{parsed}"
    );
    // The shutdown report follows.
    server.stop();
}

/// `--tls-cert` and `--tls-key`: the echo server speaks TLS; SIGHUP reads
/// the files again, a new client gets the new certificate and a client
/// connected before goes on.
#[cfg(feature = "tls")]
#[test]
fn echo_server_serves_tls_and_reloads_on_sighup() {
    use common::tls::{client_config, connect, exchange, served_certificate_names, Pki};
    let pki = Pki::new();
    let (cert, key) = (pki.dir.join("live.pem"), pki.dir.join("live-key.pem"));
    std::fs::copy(&pki.cert, &cert).unwrap();
    std::fs::copy(&pki.key, &key).unwrap();
    let mut server = start(
        "echo_server",
        &[
            "--bind",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let config = client_config(&pki.ca, &[], None);
    let mut old = connect(&server.addr, "localhost", &config).unwrap();
    assert!(served_certificate_names(&old, "first"));
    assert_eq!(exchange(&mut old, b"hello", 5), b"hello");

    std::fs::copy(&pki.cert2, &cert).unwrap();
    std::fs::copy(&pki.key2, &key).unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // Should the line never come, the server is killed and the read ends.
    let (said, watchdog) = std::sync::mpsc::channel::<()>();
    let pid = server.child.id().to_string();
    std::thread::spawn(move || {
        if watchdog.recv_timeout(TIMEOUT).is_err() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    });
    let mut line = String::new();
    server.stdout.read_line(&mut line).unwrap();
    let _ = said.send(());
    assert!(line.starts_with("SIGHUP: reloaded "), "{line:?}");

    let mut new = connect(&server.addr, "localhost", &config).unwrap();
    assert!(served_certificate_names(&new, "second"));
    assert_eq!(exchange(&mut new, b"new", 3), b"new");
    assert_eq!(exchange(&mut old, b"still", 5), b"still");
    drop((old, new));
    server.stop();
}

/// Built without the `tls` feature, the TLS flags say how to get it.
#[cfg(not(feature = "tls"))]
#[test]
fn tls_flags_without_the_feature_say_what_to_do() {
    let out = Command::new(example("echo_server"))
        .args([
            "--bind",
            "127.0.0.1:0",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--features tls"), "{stderr}");
}
