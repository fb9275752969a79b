//! `listen_fds()` takes only what systemd really passed: open sockets of a
//! type the crate serves, each owned once.
//!
//! Each case needs a process of its own: `LISTEN_PID` naming it, and
//! descriptor 3 (and 4) set up just so. The test re-runs this test binary,
//! through `sh`, which sets `LISTEN_PID` to its own process id and closes
//! descriptor 3 before it `exec`s the binary (as systemd-socket-activate
//! does), with only `helper_in_a_child_process` selected. That helper then
//! opens the file or socket the case needs, which the system places at the
//! lowest free descriptor, 3, calls `listen_fds()` and checks the outcome.
//!
//! `passed_listeners_are_taken_once_and_served` serves the passed stream
//! socket in both serving modes (`both_modes!`: a thread per connection,
//! and `park_idle`). The other cases serve nothing: they check what
//! `listen_fds()` takes, the same for either mode.

mod common;

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use socketserver::{listen_fds, Connection, Error, Server, Transport};

use common::{tcp_exchange, udp_exchange, KillOnDrop, TIMEOUT};

/// Selects the case a child process runs; unset, the helper does nothing.
const CASE_VAR: &str = "SOCKETSERVER_ACTIVATION_CASE";

/// The test the child process runs.
const HELPER: &str = "helper_in_a_child_process";

/// How long a child process may take, building and starting servers on a
/// loaded machine included, before the test fails.
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `case` in a child process that systemd's variables say was passed
/// `fds` descriptors named `names`, and returns its output once it has
/// succeeded.
fn run_case(case: &str, fds: &str, names: Option<&str>) -> String {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(r#"export LISTEN_PID=$$; exec "$0" "$@" 3<&- 2>&1"#)
        .arg(std::env::current_exe().unwrap())
        .args([HELPER, "--exact", "--nocapture", "--test-threads=1"])
        .env(CASE_VAR, case)
        .env("LISTEN_FDS", fds)
        .env_remove("LISTEN_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    match names {
        Some(names) => cmd.env("LISTEN_FDNAMES", names),
        None => cmd.env_remove("LISTEN_FDNAMES"),
    };
    let mut child = KillOnDrop(cmd.spawn().expect("start sh"));
    let deadline = Instant::now() + CHILD_TIMEOUT;

    // The output, read on a thread so that the wait for it is bounded.
    let mut stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        let _ = tx.send(out);
    });
    let out = rx
        .recv_timeout(CHILD_TIMEOUT)
        .unwrap_or_else(|_| panic!("case {case}: no end of output in {CHILD_TIMEOUT:?}"));
    let out = String::from_utf8_lossy(&out).into_owned();

    // Its output has ended, so it is exiting: the status follows at once.
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "case {case}: still running after its output ended:\n{out}"
        );
        std::thread::yield_now();
    };
    assert!(status.success(), "case {case}: {status}:\n{out}");
    // Proof that the helper ran (a filter that matched no test passes too).
    assert!(
        out.contains(&format!("case {case}: checked")),
        "case {case} did not run:\n{out}"
    );
    out
}

#[test]
fn a_regular_file_at_descriptor_3_is_an_error_and_stays_usable() {
    run_case("regular-file", "1", None);
}

#[test]
fn a_closed_descriptor_3_is_an_error() {
    run_case("closed", "1", None);
}

#[test]
fn one_bad_descriptor_means_none_is_taken() {
    run_case("socket-and-file", "2", Some("web:log"));
}

#[test]
fn a_socket_neither_stream_nor_datagram_is_a_mismatch() {
    run_case("seqpacket", "1", Some("packets"));
}

both_modes!(passed_listeners_are_taken_once_and_served);
fn passed_listeners_are_taken_once_and_served(park: bool) {
    let case = if park { "sockets-parked" } else { "sockets" };
    run_case(case, "2", Some("web"));
}

/// The child process's side: does nothing unless `CASE_VAR` names a case.
#[test]
fn helper_in_a_child_process() {
    let Ok(case) = std::env::var(CASE_VAR) else {
        return;
    };
    assert_eq!(
        std::env::var("LISTEN_PID").unwrap(),
        std::process::id().to_string(),
        "sh exec'd this process in its own place"
    );
    assert!(!is_open(3), "sh closed descriptor 3");
    match case.as_str() {
        "regular-file" => regular_file(),
        "closed" => closed(),
        "socket-and-file" => socket_and_file(),
        "seqpacket" => seqpacket(),
        "sockets" => sockets(false),
        "sockets-parked" => sockets(true),
        other => panic!("unknown case {other}"),
    }
    println!("case {case}: checked");
}

/// `listen_fds()` fails with `InvalidSetting` for LISTEN_FDS, for `reason`.
fn expect_refused(reason: &str) -> Error {
    let err = listen_fds().unwrap_err();
    common::invalid_setting(&err, "LISTEN_FDS");
    assert_eq!(
        err.to_string(),
        format!("invalid setting LISTEN_FDS: {reason}")
    );
    err
}

/// A file at descriptor 3 is not taken: the call fails, and the file keeps
/// its descriptor. (Taking it and closing it with the socket would let the
/// next file opened reuse descriptor 3 under this one.)
fn regular_file() {
    let mut file = temp_file();
    assert_eq!(file.as_raw_fd(), 3);
    file.write_all(b"before ").unwrap();

    let err = expect_refused("descriptor 3 is not a socket (a regular file)");

    file.write_all(b"after").unwrap();
    let mut other = temp_file();
    other.write_all(b"other").unwrap();
    file.rewind().unwrap();
    let mut text = String::new();
    file.read_to_string(&mut text).unwrap();
    assert_eq!(text, "before after");

    // Nothing was taken: the variables stay, and asking again fails again.
    assert_eq!(std::env::var("LISTEN_FDS").as_deref(), Ok("1"));
    assert_eq!(listen_fds().unwrap_err().to_string(), err.to_string());
}

fn closed() {
    expect_refused("descriptor 3 is not open");
    assert!(!is_open(3));
}

/// A listener at 3 and a file at 4: the file fails the check, and the
/// listener is not taken either. It stays this process's, and listening.
fn socket_and_file() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    assert_eq!(listener.as_raw_fd(), 3);
    let mut file = temp_file();
    assert_eq!(file.as_raw_fd(), 4);

    let err = listen_fds().unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid setting LISTEN_FDS: descriptor 4 is not a socket (a regular file)"
    );

    let addr = listener.local_addr().unwrap();
    let client = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
    let (accepted, _) = listener.accept().unwrap();
    assert_eq!(accepted.peer_addr().unwrap(), client.local_addr().unwrap());
    file.write_all(b"still mine").unwrap();
}

/// A socket of a type no server serves is named in the error, and not
/// taken.
fn seqpacket() {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::UNIX, Type::SEQPACKET, None).unwrap();
    assert_eq!(socket.as_raw_fd(), 3);

    let err = listen_fds().unwrap_err();
    assert!(
        matches!(&err, Error::SocketMismatch { socket, .. } if socket == "packets"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "cannot serve socket packets: it is a sequential-packet socket, \
         neither stream nor datagram"
    );
    assert_eq!(socket.r#type().unwrap(), Type::SEQPACKET);
}

/// A TCP listener at 3 and a UDP socket at 4, handed over as systemd does:
/// no longer owned by anything in this process, and not close-on-exec.
/// `park`: the stream server parks its connections (`park_idle`).
fn sockets(park: bool) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&listener)
        .set_cloexec(false)
        .unwrap();
    socket2::SockRef::from(&udp).set_cloexec(false).unwrap();
    assert_eq!(listener.into_raw_fd(), 3);
    assert_eq!(udp.into_raw_fd(), 4);
    assert!(!is_cloexec(3) && !is_cloexec(4));

    let passed = listen_fds().unwrap();
    let names: Vec<_> = passed.iter().map(|s| s.name().to_string()).collect();
    assert_eq!(
        names,
        ["web", "fd 4"],
        "a missing name defaults to the number"
    );
    assert!(is_cloexec(3) && is_cloexec(4));
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        assert!(std::env::var_os(var).is_none(), "{var} is still set");
    }
    assert!(listen_fds().unwrap().is_empty(), "taken once only");

    let mut passed = passed.into_iter();
    let reply = |conn: &mut Connection| conn.write_all(b"served");
    let tcp = Server::builder()
        .adopt(passed.next().unwrap())
        .transport(Transport::Stream)
        .park_idle(park)
        .workers(1)
        .build(reply)
        .unwrap()
        .spawn()
        .unwrap();
    let udp = Server::builder()
        .adopt(passed.next().unwrap())
        .transport(Transport::Datagram)
        .workers(1)
        .build(reply)
        .unwrap()
        .spawn()
        .unwrap();
    assert_eq!(tcp_exchange(&tcp.local_addr(), None), b"served");
    assert_eq!(udp_exchange(&udp.local_addr(), b"hi"), b"served");
    assert!(tcp.stop().unwrap().is_clean());
    assert!(udp.stop().unwrap().is_clean());
}

/// A new, empty file, already unlinked: it lives as long as its descriptor.
fn temp_file() -> File {
    static FILES: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "socketserver-activation-{}-{}",
        std::process::id(),
        FILES.fetch_add(1, Ordering::Relaxed)
    ));
    let file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    file
}

fn is_open(fd: RawFd) -> bool {
    std::fs::symlink_metadata(format!("/proc/self/fd/{fd}")).is_ok()
}

/// Reads the descriptor's flags from `/proc/self/fdinfo`.
fn is_cloexec(fd: RawFd) -> bool {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
    let flags = info
        .lines()
        .find_map(|line| line.strip_prefix("flags:"))
        .expect("a flags line");
    let flags = i32::from_str_radix(flags.trim(), 8).unwrap();
    flags & libc::O_CLOEXEC != 0
}
