//! One forged datagram between two shipped UDP services dies out: the loop
//! guard serves a service port (outside the ephemeral range) at most its
//! rate, and a loop needs every datagram answered.
//!
//! Forging the source address takes a raw socket (root, or CAP_NET_RAW);
//! without one the test says so and passes as skipped.
//!
//! Datagrams only, so the thread mode only: `park_idle` is for streams.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use common::*;
use socket2::{Domain, Protocol, Socket, Type};
use socketserver::handlers::{Chargen, Echo};
use socketserver::{Server, ServerThread, Stats, Transport};

/// The next port to try, below the ephemeral range where services live;
/// tests running at once each take their own.
static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

/// Serves echo or chargen on a free 127.0.0.1 port below the ephemeral
/// range; returns the server and its port.
fn serve(guard: Option<u32>, chargen: bool) -> (ServerThread, u16) {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .unwrap_or_else(|_| "32768 60999".into());
    let low: u16 = range.split_whitespace().next().unwrap().parse().unwrap();
    let base = 20_000 + (std::process::id() % 5_000) as u16;
    for _ in 0..1000 {
        let port = base + NEXT_PORT.fetch_add(1, Ordering::Relaxed) % 5_000;
        if port >= low {
            continue;
        }
        let builder = Server::builder()
            .bind((Ipv4Addr::LOCALHOST, port))
            .transport(Transport::Datagram)
            .workers(1)
            .max_workers(1)
            .loop_guard(guard);
        let built = match chargen {
            true => builder.build(Chargen::new()).map(|s| s.spawn()),
            false => builder.build(Echo).map(|s| s.spawn()),
        };
        if let Ok(spawned) = built {
            return (spawned.expect("spawn"), port);
        }
    }
    panic!("no free UDP port below {low}");
}

/// Sends one UDP datagram to `to` that claims to come from `from`, through
/// a raw socket; `false` when this process may not open one.
fn forge(from: SocketAddr, to: SocketAddr, payload: &[u8]) -> bool {
    let raw = match Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(libc::IPPROTO_RAW)),
    ) {
        Ok(raw) => raw,
        Err(e) => {
            println!("skipped: a raw socket is needed to forge a source address ({e})");
            return false;
        }
    };
    let (SocketAddr::V4(src), SocketAddr::V4(dst)) = (from, to) else {
        unreachable!("IPv4 only");
    };
    let udp_len = 8 + payload.len() as u16;
    let mut packet = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    packet.extend_from_slice(&src.ip().octets());
    packet.extend_from_slice(&dst.ip().octets());
    // The kernel fills in the IP total length, id and checksum; a UDP
    // checksum of 0 means none, which IPv4 allows.
    packet.extend_from_slice(&src.port().to_be_bytes());
    packet.extend_from_slice(&dst.port().to_be_bytes());
    packet.extend_from_slice(&udp_len.to_be_bytes());
    packet.extend_from_slice(&[0, 0]);
    packet.extend_from_slice(payload);
    raw.send_to(&packet, &to.into())
        .expect("send the forged datagram");
    true
}

fn received(a: &ServerThread, b: &ServerThread) -> u64 {
    a.stats().datagrams_received + b.stats().datagrams_received
}

/// Starts the loop between echo and chargen; returns the servers, or
/// `None` when forging is not possible here.
fn start_loop(guard: Option<u32>) -> Option<(ServerThread, ServerThread)> {
    let (echo, echo_port) = serve(guard, false);
    let (chargen, chargen_port) = serve(guard, true);
    let from = SocketAddr::from((Ipv4Addr::LOCALHOST, chargen_port));
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, echo_port));
    forge(from, to, b"one forged datagram\n").then_some((echo, chargen))
}

#[test]
fn a_forged_datagram_between_echo_and_chargen_dies_out() {
    let Some((echo, chargen)) = start_loop(Some(100)) else {
        return;
    };
    let start = Instant::now();
    wait_until("the loop guard to drop a datagram", || {
        echo.stats().dropped_loop + chargen.stats().dropped_loop > 0
    });
    let died = start.elapsed();
    let settled = received(&echo, &chargen);
    std::thread::sleep(Duration::from_millis(300));
    let after = received(&echo, &chargen);
    let (e, c): (Stats, Stats) = (echo.stats(), chargen.stats());
    println!("loop died after {died:?} and {settled} datagrams; echo {e:?}; chargen {c:?}");
    assert!(died < Duration::from_secs(1), "{died:?}");
    assert_eq!(after, settled, "datagrams still bouncing");
    assert!(
        settled <= 2 * 100 + 2,
        "{settled} datagrams before the guard"
    );
    echo.stop().unwrap();
    chargen.stop().unwrap();
}

/// The same forged datagram without the guard: the loop runs on, which is
/// what the guard is for (and shows that the test above can fail).
#[test]
fn without_the_guard_the_loop_runs_on() {
    let Some((echo, chargen)) = start_loop(None) else {
        return;
    };
    wait_until("the loop to start", || received(&echo, &chargen) > 1000);
    let before = received(&echo, &chargen);
    std::thread::sleep(Duration::from_millis(200));
    let after = received(&echo, &chargen);
    println!("without the guard: {} datagrams in 200 ms", after - before);
    assert!(after > before + 100, "{before} -> {after}");
    echo.stop().unwrap();
    chargen.stop().unwrap();
}

/// A client on an ephemeral port is never limited by the guard.
#[test]
fn clients_on_ephemeral_ports_are_not_limited() {
    let (echo, _) = serve(Some(1), false);
    let client = udp_client(&echo.local_addr(), TIMEOUT);
    let mut buf = [0u8; 16];
    for _ in 0..50 {
        client.send_to(b"ping", inet(&echo.local_addr())).unwrap();
        let (n, _) = client.recv_from(&mut buf).expect("a reply");
        assert_eq!(&buf[..n], b"ping");
    }
    assert_eq!(echo.stats().dropped_loop, 0);
    echo.stop().unwrap();
}
