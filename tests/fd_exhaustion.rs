//! Descriptor exhaustion: a child process with a low RLIMIT_NOFILE serves,
//! runs out of descriptors, and must neither spin nor leave clients hanging;
//! in both serving modes (`both_modes!`: a thread per connection, and
//! `park_idle`).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use socketserver::{handlers::Greeting, Server};

/// The serving mode of the child's server: `threads` or `parked`.
const CHILD: &str = "SOCKETSERVER_FD_CHILD";

/// Run by the parent test in a child process (`ulimit -n 64`): serves, then
/// on command opens descriptors until none are left, and frees them again.
#[test]
#[ignore = "run by descriptors_run_out_without_spinning in a child process"]
fn child_server() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let park = mode == "parked";
    let server = Server::builder()
        .bind("127.0.0.1:0")
        .park_idle(park)
        // One acceptor, so that which thread meets the exhaustion first is
        // not a race: with several, one may take the spare descriptor the
        // other just freed, and serve the client instead of closing it.
        .workers(1)
        .build(Greeting::new("served"))
        .unwrap();
    println!("addr {}", server.local_addr());
    let mut lines = std::io::stdin().lock().lines();
    assert_eq!(lines.next().unwrap().unwrap(), "exhaust");
    // Threads: take every descriptor before the workers start, so that
    // none of them has one reserved in a blocked accept(). Parked: once the
    // event loop has started (it counts in `workers` from then on), as it
    // needs descriptors of its own (its poll and waker) to start, and
    // accepts without blocking.
    let (mut idle, mut running) = (Some(server), None);
    if park {
        let server = idle.take().unwrap().spawn().unwrap();
        wait_until("the event loop to start", || server.stats().workers == 1);
        running = Some(server);
    }
    let mut hoard = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hoard.push(f);
    }
    let server = running.unwrap_or_else(|| idle.unwrap().spawn().unwrap());
    println!("exhausted {}", hoard.len());
    for line in lines {
        match line.unwrap().as_str() {
            "free" => {
                hoard.clear();
                println!("freed");
            }
            _ => break,
        }
    }
    let report = server.stop().unwrap();
    println!("stopped {report}");
}

both_modes!(descriptors_run_out_without_spinning);
fn descriptors_run_out_without_spinning(park: bool) {
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 64 && exec "$0" --exact child_server --ignored --nocapture --test-threads 1"#)
        .arg(&exe)
        .env(CHILD, if park { "parked" } else { "threads" })
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut child = KillOnDrop(child);
    let mut expect = |prefix: &str| -> String {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(
                out.read_line(&mut line).unwrap() > 0,
                "child ended before {prefix:?}"
            );
            // libtest may print its own "test NAME ... " before ours.
            if let Some(at) = line.find(prefix) {
                return line[at + prefix.len()..].trim().to_string();
            }
        }
    };
    let addr: std::net::SocketAddr = expect("addr").parse().unwrap();
    let addr = socketserver::Addr::from(addr);

    writeln!(stdin, "exhaust").unwrap();
    let hoarded: usize = expect("exhausted").parse().unwrap();
    assert!(hoarded > 20, "{hoarded}");

    // A client now is accepted on the spare descriptor and closed at once.
    let t = Instant::now();
    let mut client = connect(&addr);
    let mut buf = [0u8; 16];
    let got = client.read(&mut buf);
    assert!(matches!(got, Ok(0) | Err(_)), "{got:?}");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );

    // While out of descriptors, with a client waiting, the process idles.
    let _waiting = connect(&addr);
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_time(pid) - before;
    println!("cpu over 2 s while out of descriptors: {used:?}");
    assert!(used < Duration::from_millis(100), "used {used:?} of 2 s");

    writeln!(stdin, "free").unwrap();
    expect("freed");
    let t = Instant::now();
    let reply = tcp_exchange(&addr, None);
    let took = t.elapsed();
    println!("first client after freeing served in {took:?}");
    // The waiting client may have been shed while descriptors were out;
    // the next one must be served within the 1 s back-off cap.
    assert_eq!(reply, b"served");
    assert!(took < Duration::from_millis(1200), "{took:?}");

    drop(stdin);
    let stopped = expect("stopped");
    assert!(stopped.contains("0 forced"), "{stopped}");
    assert!(child.0.wait().unwrap().success());
}
