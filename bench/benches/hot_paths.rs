//! Criterion micro-benches of the hot paths:
//! `cargo bench -p socketserver-bench --bench hot_paths`.
//!
//! * `daytime/render`: formatting the seed's time string.
//! * `tcp/short connection`: one whole daytime connection over loopback
//!   (connect, accept, serve, read to EOF, close) through the crate, next to
//!   the same through a bare two-thread accept loop: the difference is what
//!   the crate's accept path costs.
//! * `tcp/echo round trip`: one 64-byte round trip on a held connection,
//!   crate and bare: the per-read and per-write cost of a `Connection`.
//! * `udp/echo round trip`: one 64-byte datagram and its reply, crate and bare.
//! * `handoff/channel ping-pong`: what handing a job to another thread and
//!   waking it costs, the hand-off the crate's workers avoid by accepting
//!   themselves.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::{mpsc, OnceLock};
use std::thread;
use std::time::Duration;

use chrono::Local;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use socketserver::handlers::{Daytime, Echo};
use socketserver::{Server, ServerThread, Transport};

const TIMEOUT: Duration = Duration::from_secs(5);

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_millis(1500))
        .sample_size(30)
}

fn daytime(c: &mut Criterion) {
    let d = Daytime::new();
    c.bench_function("daytime/render", |b| b.iter(|| d.render(Local::now())));
}

fn crate_server(transport: Transport, daytime: bool) -> (ServerThread, SocketAddr) {
    let builder = Server::builder()
        .bind("127.0.0.1:0")
        .transport(transport)
        .workers(2);
    let server = if daytime {
        builder.build(Daytime::new()).map(|s| s.spawn())
    } else {
        builder.build(Echo).map(|s| s.spawn())
    };
    let server = server.expect("build").expect("spawn");
    let addr = server.local_addr().inet().expect("inet");
    (server, addr)
}

/// Two threads looping accept-then-`serve` on one listener, left running
/// until the process ends.
fn bare_tcp(serve: fn(TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    for _ in 0..2 {
        let listener = listener.try_clone().expect("clone");
        thread::spawn(move || {
            while let Ok((stream, _)) = listener.accept() {
                serve(stream);
            }
        });
    }
    addr
}

fn bare_daytime(mut stream: TcpStream) {
    static DAYTIME: OnceLock<Daytime> = OnceLock::new();
    let d = DAYTIME.get_or_init(Daytime::new);
    let _ = stream.write_all(d.render(Local::now()).as_bytes());
}

fn bare_echo(mut stream: TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n @ 1..) = stream.read(&mut buf) {
        if stream.write_all(&buf[..n]).is_err() {
            return;
        }
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

fn short_connection(c: &mut Criterion) {
    let (server, crate_addr) = crate_server(Transport::Stream, true);
    let bare_addr = bare_tcp(bare_daytime);
    let mut group = c.benchmark_group("tcp/short connection");
    let mut reply = Vec::with_capacity(64);
    for (name, addr) in [("socketserver", crate_addr), ("bare loop", bare_addr)] {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let mut stream = connect(addr);
                reply.clear();
                stream.read_to_end(&mut reply).expect("read");
                assert!(!reply.is_empty());
            })
        });
    }
    group.finish();
    server.stop().expect("stop");
}

fn echo_round_trip(c: &mut Criterion) {
    let (server, crate_addr) = crate_server(Transport::Stream, false);
    let bare_addr = bare_tcp(bare_echo);
    let mut group = c.benchmark_group("tcp/echo round trip");
    let mut reply = [0u8; 64];
    for (name, addr) in [("socketserver", crate_addr), ("bare loop", bare_addr)] {
        let mut stream = connect(addr);
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                stream.write_all(&[b'x'; 64]).expect("write");
                stream.read_exact(&mut reply).expect("read");
            })
        });
    }
    group.finish();
    server.stop().expect("stop");
}

fn udp_round_trip(c: &mut Criterion) {
    let (server, crate_addr) = crate_server(Transport::Datagram, false);
    let bare = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let bare_addr = bare.local_addr().expect("addr");
    for _ in 0..2 {
        let socket = bare.try_clone().expect("clone");
        thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while let Ok((n, peer)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(&buf[..n], peer);
            }
        });
    }
    let mut group = c.benchmark_group("udp/echo round trip");
    let mut reply = [0u8; 65];
    for (name, addr) in [("socketserver", crate_addr), ("bare loop", bare_addr)] {
        let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
        client.connect(addr).expect("connect");
        client.set_read_timeout(Some(TIMEOUT)).unwrap();
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                client.send(&[b'x'; 64]).expect("send");
                assert_eq!(client.recv(&mut reply).expect("recv"), 64);
            })
        });
    }
    group.finish();
    server.stop().expect("stop");
}

fn handoff(c: &mut Criterion) {
    let (to_worker, jobs) = mpsc::channel::<u64>();
    let (to_main, done) = mpsc::channel::<u64>();
    let worker = thread::spawn(move || {
        while let Ok(job) = jobs.recv() {
            if to_main.send(job).is_err() {
                return;
            }
        }
    });
    c.bench_function("handoff/channel ping-pong", |b| {
        b.iter(|| {
            to_worker.send(1).expect("send");
            done.recv().expect("recv")
        })
    });
    drop(to_worker);
    worker.join().expect("join");
}

criterion_group! {
    name = benches;
    config = config();
    targets = daytime, short_connection, echo_round_trip, udp_round_trip, handoff
}
criterion_main!(benches);
