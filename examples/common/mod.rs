//! What the server examples share: their command line, logging, signals,
//! and the `listening on ADDR (tcp)` line.
// Each example uses the parts it needs: `inetd` builds its own servers.
#![allow(dead_code)]

pub mod tls;

use std::io;
use std::process::ExitCode;

use clap::{value_parser, Arg, ArgAction, Command};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use socketserver::{metrics, Addr, Handler, ProxyProtocol, Server, Transport, Upgrade};

/// Parses the common flags, builds the server, prints where it listens,
/// and serves until Ctrl-C or SIGTERM; then prints what the shutdown drained.
///
/// The socket: the one systemd passed (socket activation, `LISTEN_FDS`),
/// else `--unix PATH`, else `--bind ADDR` (default `default_bind`).
pub fn serve<H: Handler>(
    name: &'static str,
    about: &'static str,
    default_bind: &'static str,
    handler: H,
) -> ExitCode {
    serve_with(name, about, default_bind, false, handler)
}

/// As [`serve`], for a server whose clients may listen for long without
/// sending (subscribers, chat): no read timeout unless `--read-timeout`
/// sets one, and TCP keepalive probes after 300 s idle find clients that
/// vanished without closing (as redis-server's `timeout 0` and
/// `tcp-keepalive 300`).
pub fn serve_listeners<H: Handler>(
    name: &'static str,
    about: &'static str,
    default_bind: &'static str,
    handler: H,
) -> ExitCode {
    serve_with(name, about, default_bind, true, handler)
}

fn serve_with<H: Handler>(
    name: &'static str,
    about: &'static str,
    default_bind: &'static str,
    listeners: bool,
    handler: H,
) -> ExitCode {
    let command = Command::new(name)
        .about(about)
        .arg(
            Arg::new("bind")
                .long("bind")
                .value_name("ADDR")
                .default_value(default_bind)
                .help(bind_help(default_bind)),
        )
        .arg(
            Arg::new("unix")
                .long("unix")
                .value_name("PATH")
                .help("listen on a Unix-domain socket at PATH instead"),
        )
        .arg(
            Arg::new("workers")
                .long("workers")
                .value_name("N")
                .value_parser(value_parser!(usize))
                .help("worker threads [default: number of CPUs]"),
        )
        .arg(
            Arg::new("backlog")
                .long("backlog")
                .value_name("N")
                .value_parser(value_parser!(u32))
                .default_value("1024")
                .help("listen(2) backlog"),
        )
        .arg(
            Arg::new("udp")
                .long("udp")
                .action(ArgAction::SetTrue)
                .help("serve datagrams (UDP, or a Unix datagram socket) instead of a stream"),
        )
        .arg(
            Arg::new("reuse-port")
                .long("reuse-port")
                .action(ArgAction::SetTrue)
                .help("SO_REUSEPORT: let several processes serve the same port"),
        )
        .arg(
            Arg::new("proxy-protocol")
                .long("proxy-protocol")
                .action(ArgAction::SetTrue)
                .help("expect a PROXY protocol header (v1 or v2) from proxies on loopback or at the --unix socket, such as HAProxy's send-proxy"),
        )
        .arg(
            Arg::new("metrics")
                .long("metrics")
                .value_name("ADDR")
                .help("also serve the server's counters to Prometheus over HTTP at ADDR, e.g. 127.0.0.1:9100 (path /metrics)"),
        )
        .arg(
            Arg::new("max-outbox")
                .long("max-outbox")
                .value_name("BYTES")
                .value_parser(value_parser!(usize))
                .help("bytes pushed to one client and not yet written before it is cut as a slow consumer [default: 1 MiB]"),
        )
        .arg(
            Arg::new("read-timeout")
                .long("read-timeout")
                .value_name("SECS")
                .value_parser(value_parser!(u64))
                .default_value(if listeners { "0" } else { "60" })
                .help("close a connection whose client sends nothing for this long (0: no limit)"),
        )
        .arg(
            Arg::new("ready-timeout")
                .long("ready-timeout")
                .value_name("SECS")
                .value_parser(value_parser!(u64))
                .default_value("30")
                .help("on SIGUSR2, how long the new process has to be ready before it is killed and this one goes on serving"),
        )
        .arg(
            Arg::new("park-idle")
                .long("park-idle")
                .action(ArgAction::SetTrue)
                .help("park connections that wait for input off the threads: each worker runs an event loop serving many connections (stream only)"),
        )
        .after_help(
            "Started by systemd socket activation (LISTEN_FDS set), it serves the \
             passed socket and ignores --bind and --unix. On SIGUSR2 it upgrades in \
             place: a new copy of the program takes its sockets over, and once that \
             one is ready this one drains and exits.",
        );
    let args = tls::args(command).get_matches();
    init_logging();

    let transport = match args.get_flag("udp") {
        true => Transport::Datagram,
        false => Transport::Stream,
    };
    let mut builder = Server::builder()
        .transport(transport)
        .backlog(*args.get_one::<u32>("backlog").expect("has a default"))
        .reuse_port(args.get_flag("reuse-port"));
    if let Some(&n) = args.get_one::<usize>("workers") {
        builder = builder.workers(n);
    }
    if args.get_flag("park-idle") {
        builder = builder.park_idle(true);
    }
    if let Some(&bytes) = args.get_one::<usize>("max-outbox") {
        builder = builder.max_outbox(bytes);
    }
    builder = match *args.get_one::<u64>("read-timeout").expect("has a default") {
        0 => builder.read_timeout(None),
        secs => builder.read_timeout(Some(std::time::Duration::from_secs(secs))),
    };
    if listeners && transport == Transport::Stream {
        builder = builder.tcp_keepalive(Some(std::time::Duration::from_secs(300)));
    }
    if args.get_flag("proxy-protocol") {
        // Proxies on this machine: on loopback, or at the `--unix` socket.
        let local = ProxyProtocol::new().trust_loopback().trust_unix();
        builder = builder.proxy_protocol(local);
    }
    builder = match tls::apply(&args, builder) {
        Ok(builder) => builder,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let passed = match socketserver::listen_fds() {
        Ok(passed) => passed,
        Err(e) => return fail(name, &e),
    };
    // An upgrade in place passes the metrics endpoint's socket too, by name.
    let (mut metrics_socket, mut main_socket) = (None, None);
    for socket in passed {
        match socket.name() {
            "metrics" => metrics_socket = Some(socket),
            _ => main_socket = main_socket.or(Some(socket)),
        }
    }
    builder = match (main_socket, args.get_one::<String>("unix")) {
        (Some(socket), _) => builder.adopt(socket),
        (None, Some(path)) => builder.bind_unix(path),
        (None, None) => builder.bind(
            args.get_one::<String>("bind")
                .expect("has a default")
                .as_str(),
        ),
    };
    let server = match builder.build(handler) {
        Ok(server) => server,
        Err(e) => return fail(name, &e),
    };
    // Signals are caught before the address is printed, so that whoever
    // reads that line may stop the server at once.
    if let Err(e) = server.shutdown_handle().shutdown_on_signals() {
        return fail(name, &e);
    }
    let metrics = match (metrics_socket, args.get_one::<String>("metrics")) {
        (Some(socket), _) => Some(metrics::builder().adopt(socket)),
        (None, Some(addr)) => Some(metrics::builder().bind(addr.as_str())),
        (None, None) => None,
    };
    let handler = metrics::handler(server.shutdown_handle(), name);
    let metrics = match metrics.map(|b| b.build(handler).and_then(|m| m.spawn())) {
        Some(Ok(running)) => Some(running),
        Some(Err(e)) => return fail(name, &e),
        None => None,
    };
    // SIGUSR2: a new copy of this program takes the sockets over, and this
    // one drains and exits (upgrade in place).
    let ready = *args.get_one::<u64>("ready-timeout").expect("has a default");
    let mut upgrade = Upgrade::new()
        .ready_timeout(std::time::Duration::from_secs(ready))
        .server("main", &server.shutdown_handle());
    if let Some(m) = &metrics {
        upgrade = upgrade.server("metrics", &m.shutdown_handle());
    }
    if let Err(e) = upgrade.on_signal() {
        return fail(name, &e);
    }
    println!("listening on {}", describe(&server.local_addr(), transport));
    if let Some(m) = &metrics {
        println!("metrics on http://{}/metrics", m.local_addr());
    }
    let served = server.run();
    if let Some(m) = metrics {
        let _ = m.stop();
    }
    match served {
        Ok(report) => {
            println!("shut down: {report}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(name, &e),
    }
}

/// The `--bind` help, with this example's own port.
fn bind_help(default_bind: &str) -> String {
    let port = default_bind.rsplit(':').next().unwrap_or("PORT");
    format!("address to listen on, with its port: e.g. 0.0.0.0:{port}, or [::]:{port} for IPv6 and IPv4")
}

/// `ADDR (tcp)`, `ADDR (udp)`, or for a Unix socket `unix:PATH (stream)`.
pub fn describe(addr: &Addr, transport: Transport) -> String {
    match (addr, transport) {
        (Addr::Unix(_), Transport::Stream) => format!("{addr} (stream)"),
        (Addr::Unix(_), Transport::Datagram) => format!("{addr} (datagram)"),
        _ => format!("{addr} ({transport})"),
    }
}

/// Logs warnings and errors to stderr; `RUST_LOG` asks for more.
pub fn init_logging() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
}

/// Catches Ctrl-C and SIGTERM from now on, instead of dying of them; the
/// first to arrive is read from the returned `Signals`.
pub fn catch_signals() -> io::Result<Signals> {
    Signals::new([SIGINT, SIGTERM])
}

/// Prints an error and its causes to stderr; the exit code is 1.
pub fn fail(name: &str, err: &dyn std::error::Error) -> ExitCode {
    let mut msg = format!("{name}: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        msg.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    eprintln!("{msg}");
    ExitCode::FAILURE
}
