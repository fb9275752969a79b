//! One process serving the six standard small services over TCP and UDP,
//! as xinetd's internal services do: echo (RFC 862), discard (863),
//! chargen (864), qotd (865), daytime (867) and time (868). Each listens
//! on its RFC port plus `--offset` (default 10000, so no root is needed),
//! with a worker limit of its own.
//!
//! ```text
//! cargo run --example inetd                   # 127.0.0.1, ports 10007 to 10037
//! cargo run --example inetd -- --bind ::      # IPv6, also takes IPv4
//! cargo run --example inetd -- --offset 0     # the real ports (as root)
//! cargo run --example inetd -- --park-idle    # TCP connections parked off the threads
//! echo hello | nc -N 127.0.0.1 10007          # echo: hello
//! echo hello | nc -u -W1 127.0.0.1 10007      # echo over UDP: hello
//! nc -d 127.0.0.1 10019 | head -n 3           # chargen: three lines of the pattern
//! nc -d 127.0.0.1 10017                       # qotd: a quote
//! nc -d 127.0.0.1 10013                       # daytime: 25 NOV 2026 03:12:09 UTC
//! rdate -p -o 10037 127.0.0.1                 # time: Wed Nov 25 03:12:09 UTC 2026
//! rdate -p -u -o 10037 127.0.0.1              # time over UDP
//! ```
//!
//! It prints `listening on ADDR (tcp)` or `(udp)` for each of its twelve
//! sockets, then serves until Ctrl-C or SIGTERM, and prints what each
//! drained. On SIGUSR2 it upgrades in place: a new copy of the program
//! takes all twelve sockets over, and this one drains and exits.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use socketserver::handlers::{Chargen, Daytime, Discard, Echo, Qotd, Time};
use socketserver::{Connection, Handler, PassedSocket, Server, ServerThread, Transport, Upgrade};

/// Serves echo, discard, daytime, qotd, chargen and time over TCP and UDP.
#[derive(Parser)]
#[command(name = "inetd")]
struct Args {
    /// Address to listen on; `::` takes IPv6 and IPv4.
    #[arg(long, value_name = "IP", default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Added to each service's RFC port: 10000 puts daytime on 10013.
    #[arg(long, value_name = "N", default_value_t = 10000)]
    offset: u16,
    /// Quotes for qotd, in fortune(6) format: quotes separated by `%` lines.
    #[arg(long, value_name = "FILE")]
    quotes: Option<PathBuf>,
    /// Park TCP connections that wait for input off the threads: each
    /// worker runs an event loop serving many connections.
    #[arg(long)]
    park_idle: bool,
}

/// One service, as an xinetd `service` entry would configure it.
struct Service {
    name: &'static str,
    /// The port RFC 1700 assigns it, before the offset.
    port: u16,
    /// Worker limits, as xinetd's `instances`. A TCP worker is held for a
    /// whole connection (chargen's lasts as long as the client likes); a
    /// UDP worker only for one datagram, so one each is plenty.
    tcp_workers: usize,
    udp_workers: usize,
    handler: Arc<dyn Handler>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    common::init_logging();
    let qotd = match &args.quotes {
        Some(path) => Qotd::from_file(path),
        None => Ok(Qotd::default()),
    };
    let qotd = match qotd {
        Ok(qotd) => qotd,
        Err(socketserver::Error::InvalidSetting { reason, .. }) => {
            eprintln!("inetd: --quotes: {reason}");
            return ExitCode::FAILURE;
        }
        Err(e) => return common::fail("inetd", &e),
    };
    let service = |name, port, tcp_workers, handler| Service {
        name,
        port,
        tcp_workers,
        udp_workers: 1,
        handler,
    };
    let services = [
        service("echo", 7, 4, Arc::new(Echo)),
        service("discard", 9, 4, Arc::new(Discard)),
        service("daytime", 13, 2, Arc::new(Daytime::rfc867())),
        service("qotd", 17, 2, Arc::new(qotd)),
        service("chargen", 19, 2, Arc::new(Chargen::new())),
        service("time", 37, 2, Arc::new(Time)),
    ];

    // Sockets passed by an upgrade in place, by name ("echo/tcp", ...).
    let mut passed = match socketserver::listen_fds() {
        Ok(passed) => passed,
        Err(e) => return common::fail("inetd", &e),
    };
    let mut running = Vec::new();
    for service in &services {
        if let Err(e) = start(service, &args, &mut passed, &mut running) {
            return common::fail("inetd", &*e);
        }
    }
    // Signals are caught before the addresses are printed, so that whoever
    // reads those lines may stop the servers at once.
    let mut signals = match common::catch_signals() {
        Ok(signals) => signals,
        Err(e) => return common::fail("inetd", &e),
    };
    let mut upgrade = Upgrade::new();
    for (server, transport) in &running {
        let name = server
            .local_addr()
            .port()
            .map_or(String::new(), |p| format!("{p}/{transport}"));
        upgrade = upgrade.server(&name, &server.shutdown_handle());
    }
    if let Err(e) = upgrade.on_signal() {
        return common::fail("inetd", &e);
    }
    for (server, transport) in &running {
        println!("listening on {} ({transport})", server.local_addr());
    }
    // Ctrl-C or SIGTERM stops them all at once, so that the drains run
    // side by side; after an upgrade they have stopped already.
    let handles: Vec<_> = running.iter().map(|(s, _)| s.shutdown_handle()).collect();
    std::thread::spawn(move || {
        signals.forever().next();
        for handle in handles {
            handle.shutdown();
        }
    });
    let mut status = ExitCode::SUCCESS;
    for (server, transport) in running {
        let addr = server.local_addr();
        match server.join() {
            Ok(report) => println!("shut down {addr} ({transport}): {report}"),
            Err(e) => status = common::fail("inetd", &e),
        }
    }
    status
}

/// Builds and spawns the service's TCP and UDP servers, on the sockets an
/// upgrade passed (named `PORT/tcp`, `PORT/udp`) if it did.
fn start(
    service: &Service,
    args: &Args,
    passed: &mut Vec<PassedSocket>,
    running: &mut Vec<(ServerThread, Transport)>,
) -> Result<(), Box<dyn std::error::Error>> {
    let port = service.port.checked_add(args.offset).ok_or_else(|| {
        format!(
            "--offset {} puts {} (port {}) beyond port 65535",
            args.offset, service.name, service.port
        )
    })?;
    for (transport, workers) in [
        (Transport::Stream, service.tcp_workers),
        (Transport::Datagram, service.udp_workers),
    ] {
        let handler = Arc::clone(&service.handler);
        let park = args.park_idle && transport == Transport::Stream;
        let name = format!("{port}/{transport}");
        let builder = match passed.iter().position(|p| p.name() == name) {
            Some(i) => Server::builder().adopt(passed.swap_remove(i)),
            None => Server::builder().bind(SocketAddr::new(args.bind, port)),
        };
        let server = builder
            .transport(transport)
            .park_idle(park)
            .workers(workers)
            .thread_name(format!("{}-{transport}", service.name))
            .build(move |conn: &mut Connection| handler.handle(conn))?;
        running.push((server.spawn()?, transport));
    }
    Ok(())
}
