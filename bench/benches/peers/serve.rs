//! The servers under test, each run as its own process (the bench binary
//! started again with `--serve KIND WORKLOAD`), so that its CPU time and
//! resident memory can be read from `/proc`.
//!
//! Each binds `127.0.0.1:0`, prints the bound address as its first line and
//! serves until it is killed, or until its standard input closes (the driver
//! is gone), whichever comes first.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::{Arc, OnceLock};
use std::thread;

use chrono::format::{Item, StrftimeItems};
use chrono::Local;

/// The servers compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// This crate, a thread per served connection (the default mode).
    Socketserver,
    /// This crate with `park_idle(true)`: `workers` event loops, each
    /// handler on a coroutine stack, parked while its socket would block.
    /// Stream workloads only.
    SocketserverParked,
    /// tokio's multi-threaded runtime, a task per connection.
    Tokio,
    /// std: a thread per connection (one thread for UDP).
    Std,
    /// No library: two threads looping accept-write-close (or
    /// receive-send) on one socket. The practical floor.
    Bare,
    /// Python's `socketserver.ThreadingTCPServer` / `ThreadingUDPServer`.
    Python,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Socketserver,
        Kind::SocketserverParked,
        Kind::Tokio,
        Kind::Std,
        Kind::Bare,
        Kind::Python,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Socketserver => "socketserver",
            Kind::SocketserverParked => "socketserver-parked",
            Kind::Tokio => "tokio",
            Kind::Std => "std",
            Kind::Bare => "bare",
            Kind::Python => "python",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Whether this server can run `workload` (`park_idle` is for streams;
    /// TLS is this crate's and tokio-rustls's only).
    pub fn serves(self, workload: Workload) -> bool {
        #[cfg(feature = "tls")]
        if workload == Workload::TlsEcho {
            return matches!(
                self,
                Kind::Socketserver | Kind::SocketserverParked | Kind::Tokio
            );
        }
        !(self == Kind::SocketserverParked && workload == Workload::UdpEcho)
    }
}

/// What the server does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// TCP: write the local time, close.
    Daytime,
    /// TCP: send back every byte until the client closes.
    Echo,
    /// UDP: send each datagram back.
    UdpEcho,
    /// The same, the server on the last CPU alone (the clients get the
    /// others: `cpus::leave_the_last`).
    UdpEchoApart,
    /// TCP with TLS: the handshake, then send back every plaintext byte
    /// until the client closes; then `close_notify`.
    #[cfg(feature = "tls")]
    TlsEcho,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Daytime => "daytime",
            Workload::Echo => "echo",
            Workload::UdpEcho => "udp-echo",
            Workload::UdpEchoApart => "udp-echo-apart",
            #[cfg(feature = "tls")]
            Workload::TlsEcho => "tls-echo",
        }
    }

    pub fn parse(s: &str) -> Option<Workload> {
        [
            Workload::Daytime,
            Workload::Echo,
            Workload::UdpEcho,
            Workload::UdpEchoApart,
            #[cfg(feature = "tls")]
            Workload::TlsEcho,
        ]
        .into_iter()
        .find(|w| w.name() == s)
    }

    /// UDP echo, wherever the server runs.
    pub fn udp(self) -> bool {
        matches!(self, Workload::UdpEcho | Workload::UdpEchoApart)
    }
}

/// The pool ceiling of this crate's echo server when the driver will hold
/// `connections` at once: the default 1024, or the next multiple of 1024
/// above `connections`, so that the thread mode serves every connection (a
/// thread each) with a worker to spare (a pool with every worker busy warns
/// that new clients wait).
pub fn echo_max_workers(connections: usize) -> usize {
    (connections + 1).div_ceil(1024).max(1) * 1024
}

/// The settings this crate's server runs with, as the README states them,
/// for a load of at most `connections` at once.
pub fn socketserver_settings(kind: Kind, workload: Workload, connections: usize) -> String {
    let base = match workload {
        Workload::Daytime => "workers(2)".to_string(),
        Workload::Echo => format!("workers(2).max_workers({})", echo_max_workers(connections)),
        // As the outside load generator's server ran (README, bench section).
        Workload::UdpEcho | Workload::UdpEchoApart => "workers(4), Transport::Datagram".to_string(),
        #[cfg(feature = "tls")]
        Workload::TlsEcho => format!(
            "workers(2).max_workers({}).tls(acceptor)",
            echo_max_workers(connections)
        ),
    };
    if kind == Kind::SocketserverParked {
        format!("{base}.park_idle(true)")
    } else {
        base
    }
}

/// Runs one server in this process; never returns unless it fails to start.
/// `connections`: the most the driver will hold at once.
pub fn serve(kind: Kind, workload: Workload, connections: usize) -> io::Result<()> {
    if workload == Workload::UdpEchoApart {
        // Before any thread starts, so that all of them stay there.
        crate::cpus::take_the_last()?;
    }
    let workload = match workload {
        Workload::UdpEchoApart => Workload::UdpEcho,
        w => w,
    };
    exit_when_driver_goes();
    if !kind.serves(workload) {
        return Err(io::Error::other("not a workload this server runs"));
    }
    match kind {
        Kind::Socketserver => serve_socketserver(workload, connections, false),
        Kind::SocketserverParked => serve_socketserver(workload, connections, true),
        Kind::Tokio => serve_tokio(workload),
        Kind::Std => serve_std(workload),
        Kind::Bare => serve_bare(workload),
        Kind::Python => Err(io::Error::other("python runs its own script")),
    }
}

/// The driver holds our standard input open; when it ends (the driver
/// exited or was killed), so do we.
fn exit_when_driver_goes() {
    thread::spawn(|| {
        let mut sink = [0u8; 64];
        while matches!(io::stdin().read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
}

fn announce(addr: std::net::SocketAddr) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{addr}");
    let _ = out.flush();
}

/// The crate's `Daytime` format: Python's `str(datetime.now())`.
const DAYTIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// The daytime text the hand-written peers send: the same chrono format the
/// crate's `Daytime` handler uses, parsed once as it does.
fn daytime_text() -> String {
    static ITEMS: OnceLock<Vec<Item<'static>>> = OnceLock::new();
    let items = ITEMS.get_or_init(|| {
        StrftimeItems::new(DAYTIME_FORMAT)
            .map(|i| i.to_owned())
            .collect()
    });
    Local::now().format_with_items(items.iter()).to_string()
}

fn serve_socketserver(workload: Workload, connections: usize, parked: bool) -> io::Result<()> {
    use socketserver::handlers::{Daytime, Echo};
    use socketserver::{Server, Transport};
    let builder = Server::builder().bind("127.0.0.1:0").workers(2);
    // park_idle(false) is the default: the thread mode is built exactly as
    // before.
    let builder = if parked {
        builder.park_idle(true)
    } else {
        builder
    };
    match workload {
        Workload::Daytime => {
            let server = builder.build(Daytime::new())?;
            announce(server.local_addr().inet().expect("inet"));
            server.run()?;
        }
        Workload::Echo => {
            let server = builder
                .max_workers(echo_max_workers(connections))
                .build(Echo)?;
            announce(server.local_addr().inet().expect("inet"));
            server.run()?;
        }
        Workload::UdpEcho | Workload::UdpEchoApart => {
            let server = builder
                .workers(4)
                .transport(Transport::Datagram)
                .build(Echo)?;
            announce(server.local_addr().inet().expect("inet"));
            server.run()?;
        }
        #[cfg(feature = "tls")]
        Workload::TlsEcho => {
            let (cert, key) = crate::tls::server_files()?;
            let acceptor = socketserver::tls::TlsAcceptor::from_pem_files(cert, key)
                .map_err(io::Error::other)?;
            let server = builder
                .max_workers(echo_max_workers(connections))
                .tls(acceptor)
                .build(Echo)?;
            announce(server.local_addr().inet().expect("inet"));
            server.run()?;
        }
    }
    Ok(())
}

/// tokio written the idiomatic way: `#[tokio::main]`'s runtime (one worker
/// per CPU), a spawned task per connection; UDP as tokio's `echo-udp`
/// example, one task looping receive and send.
fn serve_tokio(workload: Workload) -> io::Result<()> {
    #[cfg(feature = "tls")]
    if workload == Workload::TlsEcho {
        return serve_tokio_tls();
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            if workload == Workload::UdpEcho {
                let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
                announce(socket.local_addr()?);
                let mut buf = vec![0u8; 65536];
                loop {
                    let (n, peer) = socket.recv_from(&mut buf).await?;
                    let _ = socket.send_to(&buf[..n], peer).await;
                }
            }
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            announce(listener.local_addr()?);
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    continue;
                };
                if workload == Workload::Daytime {
                    tokio::spawn(async move {
                        let _ = stream.write_all(daytime_text().as_bytes()).await;
                    });
                } else {
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 1024];
                        loop {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    if stream.write_all(&buf[..n]).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    });
                }
            }
        })
}

/// tokio with tokio-rustls, as its server example goes: the same runtime
/// as [`serve_tokio`], a task per connection that runs the handshake, then
/// echoes until the client closes, then sends `close_notify`. The rustls
/// configuration is built as the crate's `TlsAcceptor` builds its own (the
/// `ring` provider, the safe default versions, no client certificates,
/// rustls's default session tickets). `TCP_NODELAY` is set, as this crate
/// sets it by default: without it the first echo could wait on Nagle
/// behind the unacknowledged session tickets.
#[cfg(feature = "tls")]
fn serve_tokio_tls() -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let (cert, key) = crate::tls::server_files()?;
    let chain = CertificateDer::pem_file_iter(&cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(io::Error::other)?;
    let key = PrivateKeyDer::from_pem_file(&key).map_err(io::Error::other)?;
    // ring, as the crate\'s acceptor (see its `provider`, deprecated for PQ).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(io::Error::other)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            announce(listener.local_addr()?);
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 1024];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    let _ = stream.shutdown().await;
                });
            }
        })
}

/// Sends back every byte until the client closes: the std and bare peers' echo.
fn echo_stream(mut stream: TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// Receives and sends back datagrams forever.
fn echo_datagrams(socket: &UdpSocket) -> io::Result<()> {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, peer) = socket.recv_from(&mut buf)?;
        let _ = socket.send_to(&buf[..n], peer);
    }
}

/// std the textbook way: a thread per connection; one thread for UDP.
fn serve_std(workload: Workload) -> io::Result<()> {
    if workload == Workload::UdpEcho {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        announce(socket.local_addr()?);
        return echo_datagrams(&socket);
    }
    let listener = TcpListener::bind("127.0.0.1:0")?;
    announce(listener.local_addr()?);
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        if workload == Workload::Daytime {
            thread::spawn(move || {
                let _ = stream.write_all(daytime_text().as_bytes());
            });
        } else {
            thread::spawn(move || echo_stream(stream));
        }
    }
    Ok(())
}

/// No library: two threads, each looping accept-write-close (or
/// receive-send) on the one socket. Two threads cannot hold persistent
/// connections, so there is no bare TCP echo.
fn serve_bare(workload: Workload) -> io::Result<()> {
    if workload == Workload::Echo {
        return Err(io::Error::other("no bare echo over TCP"));
    }
    if workload == Workload::UdpEcho {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0")?);
        announce(socket.local_addr()?);
        let other = Arc::clone(&socket);
        thread::spawn(move || echo_datagrams(&other));
        return echo_datagrams(&socket);
    }
    let listener = Arc::new(TcpListener::bind("127.0.0.1:0")?);
    announce(listener.local_addr()?);
    let serve = move |listener: &TcpListener| loop {
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.write_all(daytime_text().as_bytes());
        }
    };
    let other = Arc::clone(&listener);
    thread::spawn(move || serve(&other));
    serve(&listener)
}

/// Python's standard library servers, written to a file and run with `python3`.
pub const PYTHON_SCRIPT: &str = r#"
import datetime, os, socketserver, sys, threading

class Daytime(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.sendall(str(datetime.datetime.now()).encode())

class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(1024)
            if not data:
                return
            self.request.sendall(data)

class UdpEcho(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(data, self.client_address)

class Tcp(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

class Udp(socketserver.ThreadingUDPServer):
    daemon_threads = True

def exit_when_driver_goes():
    while sys.stdin.buffer.read(64):
        pass
    os._exit(0)

workload = sys.argv[1]
if workload == "udp-echo-apart" and len(os.sched_getaffinity(0)) > 1:
    os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
if workload.startswith("udp-echo"):
    server = Udp(("127.0.0.1", 0), UdpEcho)
else:
    server = Tcp(("127.0.0.1", 0), Daytime if workload == "daytime" else Echo)
threading.Thread(target=exit_when_driver_goes, daemon=True).start()
print("127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
"#;
