//! Deployment: systemd socket activation with the real
//! `systemd-socket-activate`, two processes on one port with SO_REUSEPORT,
//! logging through the `log` facade.
//!
//! Stream servers in both serving modes (`both_modes!`: a thread per
//! connection, and `park_idle`); `socket_activation_of_a_datagram_server`
//! serves datagrams only (`park_idle` is for streams).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// systemd's own activator, or `None` (the test is skipped, or fails under
/// `.ci/run`) when it is not installed.
fn activator() -> Option<Command> {
    outside_program("systemd-socket-activate", "systemd").map(Command::new)
}

/// A child process stopped with SIGTERM when dropped; its stdout is kept
/// open until then, so that it can print its shutdown report.
struct Running(Child, Option<BufReader<ChildStdout>>);

impl Drop for Running {
    fn drop(&mut self) {
        sigterm(&self.0);
        let _ = self.0.wait();
    }
}

/// An example server's flag for a serving mode: `park`, `--park-idle`.
fn mode(park: bool) -> Option<&'static str> {
    park.then_some("--park-idle")
}

fn first_line(out: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

/// Retries `attempt` for up to 5 s while the activator starts listening:
/// it is an outside program with no ready signal of its own.
fn retry<T>(what: &str, mut attempt: impl FnMut() -> std::io::Result<T>) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match attempt() {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

both_modes!(socket_activation_of_a_stream_server);
fn socket_activation_of_a_stream_server(park: bool) {
    let port = free_port();
    let Some(mut activate) = activator() else {
        return;
    };
    let mut child = activate
        .args(["-l", &format!("127.0.0.1:{port}"), "--fdname=time"])
        .arg(example("time_server"))
        .args(["--bind", "127.0.0.1:1"]) // ignored: the passed socket wins
        .args(mode(park))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out_pipe = child.stdout.take().unwrap();
    let mut running = Running(child, Some(BufReader::new(out_pipe)));
    let out = running.1.as_mut().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut client = retry("connect to the activator", || {
        TcpStream::connect_timeout(&addr, TIMEOUT)
    });
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_seed_time(&reply);
    assert_eq!(
        first_line(out),
        format!("listening on 127.0.0.1:{port} (tcp)")
    );
    // Served by the passed socket, again and again.
    assert_seed_time(&tcp_exchange(&addr.into(), None));
}

#[test]
fn socket_activation_of_a_datagram_server() {
    let port = free_port();
    let Some(mut activate) = activator() else {
        return;
    };
    let mut child = activate
        .args(["--datagram", "-l", &format!("127.0.0.1:{port}")])
        .arg(example("time_server"))
        .arg("--udp")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out_pipe = child.stdout.take().unwrap();
    let mut running = Running(child, Some(BufReader::new(out_pipe)));
    let out = running.1.as_mut().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 128];
    let n = retry("a reply from the activated server", || {
        client.send_to(b"\n", addr)?;
        client.recv_from(&mut buf).map(|(n, _)| n)
    });
    assert_seed_time(&buf[..n]);
    assert_eq!(
        first_line(out),
        format!("listening on 127.0.0.1:{port} (udp)")
    );
}

both_modes!(a_passed_socket_of_the_wrong_type_is_a_clear_error);
fn a_passed_socket_of_the_wrong_type_is_a_clear_error(park: bool) {
    let port = free_port();
    let Some(mut activate) = activator() else {
        return;
    };
    let mut child = activate
        .args([
            "--datagram",
            "-l",
            &format!("127.0.0.1:{port}"),
            "--fdname=daytime-udp",
        ])
        .arg(example("time_server")) // a stream server, given a datagram socket
        .args(mode(park))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    // The activator waits for traffic before it starts the server.
    // (Sent until it does: it may not be listening yet.)
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    let status = retry("the server to start and fail", || {
        client.send_to(b"\n", ("127.0.0.1", port))?;
        child
            .try_wait()?
            .ok_or(std::io::ErrorKind::WouldBlock.into())
    });
    let mut msg = String::new();
    stderr.read_to_string(&mut msg).unwrap();
    assert!(!status.success());
    assert!(
        msg.contains("cannot serve socket daytime-udp") && msg.contains("datagram"),
        "{msg}"
    );
}

both_modes!(two_processes_share_a_port_with_reuse_port);
fn two_processes_share_a_port_with_reuse_port(park: bool) {
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let start = |name| {
        let mut child = Command::new(example(name))
            .args(["--bind", &bind, "--reuse-port", "--workers", "1"])
            .args(mode(park))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        assert_eq!(first_line(&mut out), format!("listening on {bind} (tcp)"));
        Running(child, Some(out))
    };
    let _time = start("time_server");
    let _greeting = start("greeting_server");
    let addr: SocketAddr = bind.parse().unwrap();
    let (mut greetings, mut times) = (0, 0);
    for _ in 0..64 {
        match tcp_exchange(&addr.into(), None).as_slice() {
            b"connected" => greetings += 1,
            reply => {
                assert_seed_time(reply);
                times += 1;
            }
        }
    }
    println!("{greetings} greetings, {times} times");
    assert!(
        greetings > 0 && times > 0,
        "{greetings} greetings, {times} times"
    );
}

both_modes!(rust_log_shows_the_library_log_lines);
fn rust_log_shows_the_library_log_lines(park: bool) {
    let mut child = Command::new(example("echo_server"))
        .args(["--bind", "127.0.0.1:0", "--workers", "3"])
        .args(mode(park))
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let line = first_line(&mut out);
    let addr = line
        .strip_prefix("listening on ")
        .unwrap()
        .strip_suffix(" (tcp)")
        .unwrap()
        .to_string();
    let mut stderr = child.stderr.take().unwrap();
    sigterm(&child);
    assert!(child.wait().unwrap().success());
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();
    let serving = match park {
        false => format!("serving {addr} (tcp) with 3 workers"),
        true => format!("serving {addr} (tcp) on 3 event loops (park_idle)"),
    };
    assert!(log.contains(&serving), "{log}");
    assert!(
        log.contains(&format!("stopped serving {addr}: 0 drained")),
        "{log}"
    );
    assert!(log.contains("signal 15"), "{log}");
}

both_modes!(a_passed_listener_keeps_listening_after_shutdown);
/// What systemd does across `systemctl restart`: it keeps the listening
/// socket open while the service stops and starts again, so clients that
/// arrive meanwhile wait in the backlog. A server that served a passed
/// socket must leave it listening when it shuts down.
fn a_passed_listener_keeps_listening_after_shutdown(park: bool) {
    use socketserver::{handlers::Daytime, Server};

    let held = TcpListener::bind("127.0.0.1:0").unwrap(); // systemd's copy
    let addr = held.local_addr().unwrap();
    let serve = || {
        Server::builder()
            .adopt(held.try_clone().unwrap())
            .park_idle(park)
            .workers(2)
            .build(Daytime::new())
            .unwrap()
            .spawn()
            .unwrap()
    };
    let first = serve();
    assert_seed_time(&tcp_exchange(&addr.into(), None));
    let stopping = Instant::now();
    // (The handler may still be leaving when the client has read its
    // reply, and so count as drained.)
    assert_eq!(first.stop().unwrap().forced, 0);
    assert!(stopping.elapsed() < Duration::from_secs(2), "{stopping:?}");
    assert!(socket2::SockRef::from(&held).is_listener().unwrap());
    // A client arriving between the two servers waits in the backlog...
    let mut waiting = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    waiting.set_read_timeout(Some(TIMEOUT)).unwrap();
    let second = serve();
    // ... and the next server serves it.
    let mut reply = Vec::new();
    waiting.read_to_end(&mut reply).unwrap();
    assert_seed_time(&reply);
    second.stop().unwrap();
}

both_modes!(a_passed_unix_listener_keeps_listening_after_shutdown);
fn a_passed_unix_listener_keeps_listening_after_shutdown(park: bool) {
    use socketserver::{handlers::Daytime, Server};
    use std::os::unix::net::{UnixListener, UnixStream};

    let path =
        std::env::temp_dir().join(format!("socketserver-passed-{}-{park}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let held = UnixListener::bind(&path).unwrap();
    let serve = || {
        Server::builder()
            .adopt(held.try_clone().unwrap())
            .park_idle(park)
            .workers(1)
            .build(Daytime::new())
            .unwrap()
            .spawn()
            .unwrap()
    };
    serve().stop().unwrap();
    let mut waiting = UnixStream::connect(&path).unwrap();
    waiting.set_read_timeout(Some(TIMEOUT)).unwrap();
    let second = serve();
    let mut reply = Vec::new();
    waiting.read_to_end(&mut reply).unwrap();
    assert_seed_time(&reply);
    second.stop().unwrap();
    assert!(
        path.exists(),
        "a passed socket's file is not the server's to remove"
    );
    std::fs::remove_file(&path).unwrap();
}
