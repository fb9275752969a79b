//! The comparison against peers:
//! `cargo bench -p socketserver-bench --bench peers`.
//!
//! Runs one client load (in `load.rs`, written once) against this crate
//! (in its default thread mode, and with `park_idle(true)` as
//! "socketserver-parked" in the stream workloads), tokio, a std
//! thread-per-connection server, a bare two-thread loop and Python's
//! `socketserver` (when `python3` is present), each server in a process of
//! its own, and prints markdown tables:
//!
//! * A. short connections: connect, read the daytime reply to the end, close
//! * B. echo over 4 persistent connections, 64-byte messages
//! * C. echo over 64 persistent connections
//! * D. UDP echo, 4 clients, 64-byte datagrams: one in flight per client,
//!   clients and servers sharing the CPUs; then the same with the clients
//!   on one CPU and the server on another (as a load generator beside a
//!   server on its own cores measures it); then both again with 8
//!   datagrams in flight per client
//! * E. memory idle, and holding 10,000 idle connections (`--held`):
//!   resident memory plus 16 KiB of kernel stack per thread
//! * F. echo over 512 persistent connections, driven by a few epoll client
//!   threads (`--loaders`), one message in flight on each
//! * G. the same over 5,000 connections
//! * H. TLS handshakes (feature `tls`): a few client threads (`--clients`),
//!   each connecting, making a full handshake (no session resumption),
//!   echoing one 64-byte message, sending `close_notify` and waiting for
//!   the server to close, and again
//! * I. TLS echo (feature `tls`) over 4 persistent connections, 64-byte
//!   messages, one in flight on each
//!
//! H and I run this crate in both modes against tokio with tokio-rustls
//! (the other peers have no TLS), all with rustls's `ring` provider and
//! one ECDSA P-256 certificate made at start (`tls.rs`). Without the
//! feature they are skipped and say so: `cargo bench -p socketserver-bench
//! --bench peers --features tls -- --only HI` runs them alone (the
//! feature is this package's, and turns on the crate's `tls`).
//!
//! Both the driver and each server raise their soft limit on open files to
//! the hard one at start (F, G and E hold thousands of sockets).
//!
//! The servers take turns in interleaved rounds (A B C A B C ..., the order
//! rotating each round); each figure is the median over the rounds, and each
//! ratio is the median of the same-round ratios, so a burst of noise from
//! another process on the machine moves one round, not the result. CPU time
//! per operation is the server process's user + system time over the
//! round's operations.
//!
//! Options (after `--`): `--rounds N` (10), `--secs S` per round (1),
//! `--only ABCDEFGHI` (all), `--clients N` client threads in A and H (4),
//! `--held N` idle connections in E (10,000), `--loaders N` client threads
//! in F and G (2), `--servers a,b` (all of socketserver,
//! socketserver-parked, tokio, std, bare, python).

mod cpus;
mod load;
mod procfs;
mod serve;
#[cfg(feature = "tls")]
mod tls;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serve::{Kind, Workload};

struct Args {
    rounds: usize,
    window: Duration,
    only: String,
    clients: usize,
    /// Idle connections held in E.
    held: usize,
    /// The servers to run (`--servers a,b`); all by default.
    servers: Vec<Kind>,
}

/// Client threads of F and G (`--loaders`).
static LOADERS: AtomicUsize = AtomicUsize::new(2);

/// The soft limit on open files, after [`raise_open_files`].
static OPEN_FILES: AtomicUsize = AtomicUsize::new(1024);

fn main() {
    raise_open_files();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = argv.iter().position(|a| a == "--serve") {
        let kind = argv.get(i + 1).and_then(|k| Kind::parse(k));
        let workload = argv.get(i + 2).and_then(|w| Workload::parse(w));
        let connections = argv.get(i + 3).map_or(Some(0), |n| n.parse().ok());
        let (Some(kind), Some(workload), Some(connections)) = (kind, workload, connections) else {
            eprintln!("usage: --serve KIND WORKLOAD [CONNECTIONS]");
            std::process::exit(2);
        };
        if let Err(e) = serve::serve(kind, workload, connections) {
            eprintln!("{} {}: {e}", kind.name(), workload.name());
            std::process::exit(1);
        }
        return;
    }
    let args = parse_args(&argv);
    let python = python_script();
    print_machine(&args, python.is_some());
    let mut verdicts = Vec::new();
    for (id, spec) in SPECS.iter().enumerate() {
        let letter = (b'A' + id as u8) as char;
        if args.only.contains(letter) {
            verdicts.extend(run_throughput(letter, spec, &args, python.as_deref()));
        }
    }
    if args.only.contains('D') {
        for spec in &UDP_MORE {
            verdicts.extend(run_throughput('D', spec, &args, python.as_deref()));
        }
    }
    if args.only.contains('E') {
        verdicts.extend(run_memory(&args, python.as_deref()));
    }
    for (id, spec) in MANY.iter().enumerate() {
        let letter = (b'F' + id as u8) as char;
        if args.only.contains(letter) {
            verdicts.extend(run_throughput(letter, spec, &args, python.as_deref()));
        }
    }
    verdicts.extend(run_tls(&args));
    if let Some(path) = python {
        let _ = std::fs::remove_file(path);
    }
    println!("### Targets\n");
    for v in &verdicts {
        println!("- {v}");
    }
    println!("\nload average after: {}", load_average());
}

fn parse_args(argv: &[String]) -> Args {
    let mut args = Args {
        rounds: 10,
        window: Duration::from_millis(1000),
        only: "ABCDEFGHI".into(),
        clients: 4,
        held: 10_000,
        servers: Kind::ALL.to_vec(),
    };
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_default();
        match a.as_str() {
            "--rounds" => args.rounds = value().parse().unwrap_or(args.rounds).max(1),
            "--secs" => {
                let secs: f64 = value().parse().unwrap_or(1.0);
                args.window = Duration::from_secs_f64(secs.clamp(0.1, 30.0));
            }
            "--only" => args.only = value().to_uppercase(),
            "--clients" => args.clients = value().parse().unwrap_or(4).clamp(1, 64),
            "--held" => args.held = value().parse().unwrap_or(args.held).max(1),
            "--loaders" => {
                let n: usize = value().parse().unwrap_or(2);
                LOADERS.store(n.clamp(1, 64), Relaxed);
            }
            "--servers" => {
                args.servers = value().split(',').filter_map(Kind::parse).collect();
            }
            // cargo bench passes --bench; a filter word is not used here.
            _ => {}
        }
    }
    args
}

/// Raises this process's soft limit on open files to the hard one (the
/// servers, started from the same binary, do it too) and notes it.
fn raise_open_files() {
    let soft = procfs::raise_open_files();
    OPEN_FILES.store(usize::try_from(soft).unwrap_or(usize::MAX), Relaxed);
}

/// Whether a load of `connections` sockets fits the open-files limit, with
/// room for the process's other descriptors.
fn fits_open_files(connections: usize) -> Result<(), String> {
    let limit = OPEN_FILES.load(Relaxed);
    if connections + 256 <= limit {
        Ok(())
    } else {
        Err(format!(
            "{connections} connections do not fit the limit of {limit} open files (ulimit -Hn)"
        ))
    }
}

/// Writes the Python servers' script to a temporary file if `python3` runs.
fn python_script() -> Option<PathBuf> {
    let ok = Command::new("python3")
        .args(["-c", "import socketserver"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return None;
    }
    let path = std::env::temp_dir().join(format!("peers-{}.py", std::process::id()));
    std::fs::write(&path, serve::PYTHON_SCRIPT).ok()?;
    Some(path)
}

fn print_machine(args: &Args, python: bool) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("## socketserver against peers\n");
    println!(
        "machine: {cpus} CPUs ({model}), Linux {}; clients and servers on the same machine, over loopback",
        kernel.trim()
    );
    println!(
        "{} rounds of {:.1} s per server and workload, servers interleaved; python3: {}",
        args.rounds,
        args.window.as_secs_f64(),
        if python { "yes" } else { "not found, skipped" }
    );
    println!(
        "open files limit: {}; vm.max_map_count: {}",
        OPEN_FILES.load(Relaxed),
        std::fs::read_to_string("/proc/sys/vm/max_map_count")
            .map_or_else(|_| "unknown".into(), |s| s.trim().to_string())
    );
    println!("load average before: {}\n", load_average());
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A server process, killed when dropped.
struct Running {
    child: Child,
    addr: SocketAddr,
}

impl Running {
    /// Starts `kind` serving `workload` for a load of at most
    /// `connections` at once.
    fn start(
        kind: Kind,
        workload: Workload,
        connections: usize,
        python: Option<&Path>,
    ) -> Result<Running, String> {
        let mut cmd = match kind {
            Kind::Python => {
                let mut cmd = Command::new("python3");
                cmd.arg(python.ok_or("no python3")?).arg(workload.name());
                cmd
            }
            _ => {
                let exe = std::env::current_exe().map_err(|e| e.to_string())?;
                let mut cmd = Command::new(exe);
                cmd.args(["--serve", kind.name(), workload.name()]);
                cmd.arg(connections.to_string());
                cmd
            }
        };
        #[cfg(feature = "tls")]
        if workload == Workload::TlsEcho {
            let made = tls::certificate().ok_or("no certificate made")?;
            cmd.env(tls::CERT_VAR, &made.cert)
                .env(tls::KEY_VAR, &made.key);
        }
        // The server exits when its standard input closes: if this driver
        // dies, no server is left behind.
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("start {}: {e}", kind.name()))?;
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped");
        let read = BufReader::new(stdout).read_line(&mut line);
        let mut running = Running {
            child,
            addr: "0.0.0.0:0".parse().expect("valid"),
        };
        match (read, line.trim().parse()) {
            (Ok(_), Ok(addr)) => {
                running.addr = addr;
                Ok(running)
            }
            _ => Err(format!("{} did not start: {line:?}", kind.name())),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One throughput workload: what it serves, with what load, against whom.
struct Spec {
    title: &'static str,
    workload: Workload,
    kinds: &'static [Kind],
    unit: &'static str,
    /// Client threads or connections; `None`: `--clients`.
    clients: Option<usize>,
    load: fn(SocketAddr, usize, Duration, &mut dyn FnMut()) -> load::Outcome,
    latency: bool,
}

/// The servers of B and C: every one with a persistent-connection echo
/// (the bare loop has none).
const ECHO_KINDS: [Kind; 5] = [
    Kind::Socketserver,
    Kind::SocketserverParked,
    Kind::Tokio,
    Kind::Std,
    Kind::Python,
];

const SPECS: [Spec; 4] = [
    Spec {
        title: "A. short connections: connect, read the daytime reply to EOF, close",
        workload: Workload::Daytime,
        kinds: &Kind::ALL,
        unit: "conns/s",
        clients: None,
        load: load::short_connections,
        latency: false,
    },
    Spec {
        title: "B. echo, 4 persistent connections, 64-byte messages",
        workload: Workload::Echo,
        kinds: &ECHO_KINDS,
        unit: "round trips/s",
        clients: Some(4),
        load: load::echo,
        latency: true,
    },
    Spec {
        title: "C. echo, 64 persistent connections, 64-byte messages",
        workload: Workload::Echo,
        kinds: &ECHO_KINDS,
        unit: "round trips/s",
        clients: Some(64),
        load: load::echo,
        latency: true,
    },
    Spec {
        title: UDP_TITLES[0],
        workload: Workload::UdpEcho,
        kinds: &Kind::ALL,
        unit: "round trips/s",
        clients: Some(4),
        load: load::udp_echo,
        latency: true,
    },
];

/// The servers of F and G: those that hold thousands of connections (not
/// python's thread per connection, no bare echo).
const MANY_KINDS: [Kind; 4] = [
    Kind::Socketserver,
    Kind::SocketserverParked,
    Kind::Tokio,
    Kind::Std,
];

/// F and G: echo over many connections, a few epoll client threads.
const MANY: [Spec; 2] = [
    Spec {
        title: "F. echo, 512 persistent connections, 64-byte messages",
        workload: Workload::Echo,
        kinds: &MANY_KINDS,
        unit: "round trips/s",
        clients: Some(512),
        load: echo_many,
        latency: true,
    },
    Spec {
        title: "G. echo, 5,000 persistent connections, 64-byte messages",
        workload: Workload::Echo,
        kinds: &MANY_KINDS,
        unit: "round trips/s",
        clients: Some(5000),
        load: echo_many,
        latency: true,
    },
];

/// The servers of D's further tables (Python's would take most of the time).
const UDP_KINDS: [Kind; 4] = [Kind::Socketserver, Kind::Tokio, Kind::Std, Kind::Bare];

/// D's tables, the first in `SPECS`, the rest in `UDP_MORE`.
const UDP_TITLES: [&str; 4] = [
    "D. UDP echo, 4 clients, 64-byte datagrams, one in flight each, clients and server sharing the CPUs",
    "D. UDP echo, 4 clients, one in flight each, the clients on one CPU and the server on another",
    "D. UDP echo, 4 clients, 8 datagrams in flight each, sharing the CPUs",
    "D. UDP echo, 4 clients, 8 datagrams in flight each, the clients on one CPU and the server on another",
];

/// What the socketserver / tokio ratio of each of D's tables is held to:
/// the short name of the verdict and the target, if it is one. The second
/// table measures what the outside load generator of the README measured.
const UDP_TARGETS: [(&str, Option<f64>); 4] = [
    ("UDP echo, shared CPUs, × tokio", Some(1.1)),
    ("UDP echo, server on a CPU of its own, × tokio", Some(1.2)),
    ("UDP echo, 8 in flight, shared CPUs, × tokio", None),
    (
        "UDP echo, 8 in flight, server on a CPU of its own, × tokio",
        None,
    ),
];

const UDP_MORE: [Spec; 3] = [
    Spec {
        title: UDP_TITLES[1],
        workload: Workload::UdpEchoApart,
        kinds: &UDP_KINDS,
        unit: "round trips/s",
        clients: Some(4),
        load: load::udp_echo_apart,
        latency: true,
    },
    Spec {
        title: UDP_TITLES[2],
        workload: Workload::UdpEcho,
        kinds: &UDP_KINDS,
        unit: "round trips/s",
        clients: Some(4),
        load: load::udp_echo_pipelined,
        latency: true,
    },
    Spec {
        title: UDP_TITLES[3],
        workload: Workload::UdpEchoApart,
        kinds: &UDP_KINDS,
        unit: "round trips/s",
        clients: Some(4),
        load: load::udp_echo_pipelined_apart,
        latency: true,
    },
];

/// [`load::echo_many`] with `--loaders` client threads.
fn echo_many(
    addr: SocketAddr,
    connections: usize,
    window: Duration,
    on_start: &mut dyn FnMut(),
) -> load::Outcome {
    load::echo_many(addr, connections, LOADERS.load(Relaxed), window, on_start)
}

/// The servers of H and I: this crate in both modes, and tokio with
/// tokio-rustls.
#[cfg(feature = "tls")]
const TLS_KINDS: [Kind; 3] = [Kind::Socketserver, Kind::SocketserverParked, Kind::Tokio];

/// H and I: TLS on the same certificate and provider everywhere
/// (`tls.rs`).
#[cfg(feature = "tls")]
const TLS_SPECS: [Spec; 2] = [
    Spec {
        title: "H. TLS handshakes: connect, full handshake, echo one 64-byte message, close",
        workload: Workload::TlsEcho,
        kinds: &TLS_KINDS,
        unit: "handshakes/s",
        clients: None,
        load: load::tls_handshakes,
        latency: true,
    },
    Spec {
        title: "I. TLS echo, 4 persistent connections, 64-byte messages",
        workload: Workload::TlsEcho,
        kinds: &TLS_KINDS,
        unit: "round trips/s",
        clients: Some(4),
        load: load::tls_echo,
        latency: true,
    },
];

/// H and I, if asked for: the certificate is made first, and its files
/// removed after.
#[cfg(feature = "tls")]
fn run_tls(args: &Args) -> Vec<String> {
    let mut verdicts = Vec::new();
    if !args.only.contains(['H', 'I']) {
        return verdicts;
    }
    if let Err(e) = tls::make_certificate() {
        println!("H, I: skipped, {e}\n");
        return vec![format!("H, I: not measured ({e})")];
    }
    for (id, spec) in TLS_SPECS.iter().enumerate() {
        let letter = (b'H' + id as u8) as char;
        if args.only.contains(letter) {
            verdicts.extend(run_throughput(letter, spec, args, None));
        }
    }
    tls::remove_files();
    verdicts
}

/// Without the feature, H and I say so rather than vanish.
#[cfg(not(feature = "tls"))]
fn run_tls(args: &Args) -> Vec<String> {
    match args.only.contains(['H', 'I']) {
        true => vec!["H, I: not measured (TLS needs `--features tls`)".to_string()],
        false => Vec::new(),
    }
}

/// Waits (up to 3 s) until process `pid` has used no CPU time for 100 ms:
/// the server has finished with the last round's connections before the
/// next server's round starts.
fn settle(pid: u32) {
    let give_up = Instant::now() + Duration::from_secs(3);
    let mut before = procfs::cpu_time(pid);
    while Instant::now() < give_up {
        std::thread::sleep(Duration::from_millis(100));
        let now = procfs::cpu_time(pid);
        if now.is_none() || now == before {
            return;
        }
        before = now;
    }
}

/// One server's figures in one round.
#[derive(Clone, Debug, Default)]
struct Sample {
    rate: f64,
    cpu_us_per_op: f64,
    p50: Option<f64>,
    p99: Option<f64>,
    errors: u64,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The servers' order in round `r`: rotated, so none always goes first.
fn rotated<T: Copy>(items: &[T], r: usize) -> Vec<T> {
    let mut v = items.to_vec();
    v.rotate_left(r % items.len());
    v
}

/// The kinds asked for that can run `workload` here (python only with
/// python3).
fn available(kinds: &[Kind], workload: Workload, args: &Args, python: Option<&Path>) -> Vec<Kind> {
    kinds
        .iter()
        .copied()
        .filter(|k| args.servers.contains(k))
        .filter(|k| k.serves(workload))
        .filter(|&k| k != Kind::Python || python.is_some())
        .collect()
}

/// Median over rounds of the same-round ratio `a / b` of some figure.
fn ratio(samples: &[Vec<f64>], a: usize, b: usize) -> f64 {
    let per_round = samples
        .iter()
        .filter(|r| r[b] > 0.0 && r[a].is_finite() && r[b].is_finite())
        .map(|r| r[a] / r[b])
        .collect();
    median(per_round)
}

fn run_throughput(letter: char, spec: &Spec, args: &Args, python: Option<&Path>) -> Vec<String> {
    let kinds = available(spec.kinds, spec.workload, args, python);
    if kinds.is_empty() {
        return Vec::new();
    }
    let clients = spec.clients.unwrap_or(args.clients);
    // F and G: thousands of connections, a few epoll client threads.
    let many = matches!(letter, 'F' | 'G');
    if let Err(e) = fits_open_files(clients) {
        println!("{}: skipped, {e}\n", spec.title);
        return vec![format!("{letter}: not measured ({e})")];
    }
    // Every server of the workload stays up through its rounds, idle
    // while the others take their turn.
    let servers: Vec<Running> = match kinds
        .iter()
        .map(|&k| Running::start(k, spec.workload, clients, python))
        .collect()
    {
        Ok(s) => s,
        Err(e) => {
            println!("{}: skipped, {e}\n", spec.title);
            return vec![format!("{letter}: not measured ({e})")];
        }
    };
    // samples[round][kind index]
    let mut samples: Vec<Vec<Sample>> = Vec::new();
    let mut first_errors: Vec<Option<String>> = vec![None; kinds.len()];
    for round in 0..args.rounds {
        eprintln!("{letter}: round {}/{}", round + 1, args.rounds);
        let mut this = vec![Sample::default(); kinds.len()];
        for i in rotated(&(0..kinds.len()).collect::<Vec<_>>(), round) {
            let server = &servers[i];
            let pid = server.pid();
            let mut cpu_before = None;
            let mut out = (spec.load)(server.addr, clients, args.window, &mut || {
                cpu_before = procfs::cpu_time(pid);
            });
            let cpu_after = procfs::cpu_time(pid);
            drop(std::mem::take(&mut out.open));
            let cpu = match (cpu_before, cpu_after) {
                (Some(a), Some(b)) => b.saturating_sub(a),
                _ => Duration::ZERO,
            };
            this[i] = Sample {
                rate: out.rate(),
                cpu_us_per_op: cpu.as_secs_f64() * 1e6 / out.ops.max(1) as f64,
                p50: out.percentile_us(50),
                p99: out.percentile_us(99),
                errors: out.errors,
            };
            eprintln!(
                "{letter}:   {} {} {}, p99 {:.0} µs, {:.1} CPU µs/op, {} errors",
                kinds[i].name(),
                thousands(this[i].rate),
                spec.unit,
                this[i].p99.unwrap_or(f64::NAN),
                this[i].cpu_us_per_op,
                this[i].errors
            );
            if first_errors[i].is_none() {
                first_errors[i] = out.first_error.take();
            }
            if many {
                // Until the server has closed its thousands of connections.
                settle(pid);
            } else {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        samples.push(this);
    }
    drop(servers);

    let column = |f: &dyn Fn(&Sample) -> f64| -> Vec<Vec<f64>> {
        samples.iter().map(|r| r.iter().map(f).collect()).collect()
    };
    let rates = column(&|s| s.rate);
    let p99s = column(&|s| s.p99.unwrap_or(f64::NAN));
    let cpus = column(&|s| s.cpu_us_per_op);
    let tokio = kinds.iter().position(|&k| k == Kind::Tokio);
    let per_kind =
        |i: usize, f: &dyn Fn(&Sample) -> f64| median(samples.iter().map(|r| f(&r[i])).collect());

    println!("### {}\n", spec.title);
    let load = if many {
        format!(
            "connections over {} client threads (epoll), one message in flight on each",
            LOADERS.load(Relaxed).min(clients)
        )
    } else if spec.workload == Workload::Daytime || spec.workload.udp() || letter == 'H' {
        "threads".to_string()
    } else {
        "connections (a thread each)".to_string()
    };
    println!(
        "{} client {load}, {} rounds of {:.1} s; medians over rounds; CPU × tokio is the same-round ratio of CPU time per operation (below 1: cheaper than tokio)\n",
        clients,
        args.rounds,
        args.window.as_secs_f64()
    );
    #[cfg(feature = "tls")]
    if spec.workload == Workload::TlsEcho {
        println!(
            "{}; p50 and p99 are of {}\n",
            tls::SETUP,
            match letter {
                'H' => "the whole connection, connect to close",
                _ => "one round trip",
            }
        );
    }
    if spec.latency {
        println!(
            "| server | {} | × tokio | p50 µs | p99 µs | server CPU µs/op | CPU × tokio | errors |",
            spec.unit
        );
        println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    } else {
        println!(
            "| server | {} | × tokio | server CPU µs/op | CPU × tokio | errors |",
            spec.unit
        );
        println!("|---|---:|---:|---:|---:|---:|");
    }
    for (i, kind) in kinds.iter().enumerate() {
        let rate = per_kind(i, &|s| s.rate);
        let vs = tokio.map_or(f64::NAN, |t| ratio(&rates, i, t));
        let cpu = per_kind(i, &|s| s.cpu_us_per_op);
        let cpu_vs = tokio.map_or(f64::NAN, |t| ratio(&cpus, i, t));
        let errors: u64 = samples.iter().map(|r| r[i].errors).sum();
        let name = server_name(*kind, spec.workload, clients);
        if spec.latency {
            let p50 = per_kind(i, &|s| s.p50.unwrap_or(f64::NAN));
            let p99 = per_kind(i, &|s| s.p99.unwrap_or(f64::NAN));
            println!(
                "| {name} | {} | {vs:.2} | {p50:.1} | {p99:.1} | {cpu:.1} | {cpu_vs:.2} | {errors} |",
                thousands(rate)
            );
        } else {
            println!(
                "| {name} | {} | {vs:.2} | {cpu:.1} | {cpu_vs:.2} | {errors} |",
                thousands(rate)
            );
        }
    }
    println!();
    for (i, e) in first_errors.iter().enumerate() {
        if let Some(e) = e {
            println!("first error of {}: {e}", kinds[i].name());
        }
    }

    let mut verdicts = Vec::new();
    let target =
        |what: &str, got: f64, want: f64| at_least(&format!("{letter}. {what}"), got, want);
    let parked = kinds.iter().position(|&k| k == Kind::SocketserverParked);
    if let (Some(p), Some(t)) = (parked, tokio) {
        let vs_tokio = ratio(&rates, p, t);
        match letter {
            'A' => verdicts.push(target("short connections, parked × tokio", vs_tokio, 1.5)),
            'C' => verdicts.push(target(
                "echo at 64 connections, parked × tokio",
                vs_tokio,
                1.2,
            )),
            'F' => {
                verdicts.push(target(
                    "echo at 512 connections, parked × tokio",
                    vs_tokio,
                    1.2,
                ));
                verdicts.push(target(
                    "echo at 512 connections, tokio's p99 / parked's",
                    ratio(&p99s, t, p),
                    1.0,
                ));
            }
            'G' => verdicts.push(format!(
                "G. (not a target) echo at 5,000 connections, parked × tokio: {vs_tokio:.2}; \
                 tokio's p99 / parked's: {:.2}",
                ratio(&p99s, t, p)
            )),
            'H' => verdicts.push(target(
                "TLS handshakes, parked × tokio-rustls",
                vs_tokio,
                1.0,
            )),
            'I' => verdicts.push(target(
                "TLS echo at 4 connections, parked × tokio-rustls",
                vs_tokio,
                1.2,
            )),
            _ => {}
        }
    }
    let (Some(me), Some(t)) = (kinds.iter().position(|&k| k == Kind::Socketserver), tokio) else {
        return verdicts;
    };
    let vs_tokio = ratio(&rates, me, t);
    match letter {
        'A' => {
            verdicts.push(target("short connections, × tokio", vs_tokio, 1.6));
            let cpus = column(&|s| s.cpu_us_per_op);
            verdicts.push(format!(
                "A. (not a target) server CPU per connection, tokio's / ours: {:.2}",
                ratio(&cpus, t, me)
            ));
            if let Some(b) = kinds.iter().position(|&k| k == Kind::Bare) {
                verdicts.push(target(
                    "short connections, × bare loop",
                    ratio(&rates, me, b),
                    0.9,
                ));
            }
        }
        'B' => {
            verdicts.push(target("echo at 4 connections, × tokio", vs_tokio, 1.2));
            // p99 no worse than tokio's: tokio's p99 over ours at least 1.
            verdicts.push(target(
                "echo at 4 connections, tokio's p99 / ours",
                ratio(&p99s, t, me),
                1.0,
            ));
        }
        'C' => verdicts.push(target("echo at 64 connections, × tokio", vs_tokio, 1.0)),
        'H' => verdicts.push(target("TLS handshakes, × tokio-rustls", vs_tokio, 1.0)),
        'I' => verdicts.push(target(
            "TLS echo at 4 connections, × tokio-rustls",
            vs_tokio,
            1.2,
        )),
        'D' => {
            let i = UDP_TITLES
                .iter()
                .position(|&t| t == spec.title)
                .unwrap_or(0);
            verdicts.push(match UDP_TARGETS[i] {
                (what, Some(want)) => target(what, vs_tokio, want),
                (what, None) => format!("D. (not a target) {what}: {vs_tokio:.2}"),
            });
        }
        _ => {}
    }
    verdicts
}

/// Kernel stack of each thread, counted with resident memory in E: 16 KiB
/// on x86-64 and arm64 Linux, not in VmRSS.
const KERNEL_STACK: f64 = 16.0 * 1024.0;

/// `workers(2)`: the parked server's event loops, for E's thread target.
const PARKED_LOOPS: f64 = 2.0;

/// One server's memory in one round of E: idle, then holding the connections.
#[derive(Clone, Copy, Debug)]
struct MemorySample {
    idle: procfs::Memory,
    held: procfs::Memory,
    /// Connections held (each after its exchange).
    conns: u64,
    errors: u64,
}

/// Resident memory plus the threads' kernel stacks, bytes.
fn footprint(m: &procfs::Memory) -> f64 {
    m.rss + KERNEL_STACK * m.threads
}

/// E: memory of each echo server idle, then holding `--held` idle
/// connections (each after one exchange, so the server serves every one).
fn run_memory(args: &Args, python: Option<&Path>) -> Vec<String> {
    let held_conns = args.held;
    let kinds = available(
        &[
            Kind::Socketserver,
            Kind::SocketserverParked,
            Kind::Tokio,
            Kind::Std,
            Kind::Python,
        ],
        Workload::Echo,
        args,
        python,
    );
    if kinds.is_empty() {
        return Vec::new();
    }
    let title = format!(
        "E. memory of the echo server: idle, and holding {} idle connections",
        thousands(held_conns as f64)
    );
    if let Err(e) = fits_open_files(held_conns) {
        println!("### {title}\n\nskipped, {e}\n");
        return vec![format!("E: not measured ({e})")];
    }
    let rounds = args.rounds.min(3);
    let settle = Duration::from_millis(500);
    let mut samples: Vec<Vec<Option<MemorySample>>> = Vec::new();
    let mut first_errors: Vec<Option<String>> = vec![None; kinds.len()];
    for round in 0..rounds {
        eprintln!("E: round {}/{rounds}", round + 1);
        let mut this = vec![None; kinds.len()];
        for i in rotated(&(0..kinds.len()).collect::<Vec<_>>(), round) {
            let server = match Running::start(kinds[i], Workload::Echo, held_conns, python) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("E: {e}");
                    continue;
                }
            };
            let pid = server.pid();
            std::thread::sleep(settle);
            let idle = procfs::memory(pid);
            let (conns, mut out) = load::hold(server.addr, held_conns);
            std::thread::sleep(settle);
            let held = procfs::memory(pid);
            if let (Some(idle), Some(held)) = (idle, held) {
                this[i] = Some(MemorySample {
                    idle,
                    held,
                    conns: out.ops,
                    errors: out.errors,
                });
            }
            if first_errors[i].is_none() {
                first_errors[i] = out.first_error.take();
            }
            drop(conns);
            drop(server);
        }
        samples.push(this);
    }
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let figure = |f: &dyn Fn(&MemorySample) -> f64| -> Vec<Vec<f64>> {
        samples
            .iter()
            .map(|r| r.iter().map(|s| s.as_ref().map_or(f64::NAN, f)).collect())
            .collect()
    };
    let per_kind = |i: usize, f: &dyn Fn(&MemorySample) -> f64| {
        median(
            figure(f)
                .iter()
                .map(|r| r[i])
                .filter(|x| x.is_finite())
                .collect(),
        )
    };
    let memories = figure(&|s| footprint(&s.held));
    let tokio = kinds.iter().position(|&k| k == Kind::Tokio);
    let n = thousands(held_conns as f64);
    println!("### {title}\n");
    println!(
        "{rounds} rounds, a fresh server each; medians over rounds. RSS is VmRSS \
         (file-backed pages of the binary and libc included); anon is RssAnon \
         (heap and stacks); memory is RSS plus 16 KiB of kernel stack per thread \
         (Threads: in /proc/PID/status), which VmRSS leaves out; per conn is the \
         growth of memory from idle over the connections held\n"
    );
    println!(
        "| server | idle RSS MiB | idle anon MiB | {n} conns: RSS MiB | threads | memory MiB | × tokio | KiB per conn | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (i, kind) in kinds.iter().enumerate() {
        let errors: u64 = samples.iter().flat_map(|r| r[i]).map(|s| s.errors).sum();
        let vs = tokio.map_or(f64::NAN, |t| ratio(&memories, i, t));
        println!(
            "| {} | {:.1} | {:.2} | {:.1} | {:.0} | {:.1} | {vs:.2} | {:.1} | {errors} |",
            server_name(*kind, Workload::Echo, held_conns),
            mib(per_kind(i, &|s| s.idle.rss)),
            mib(per_kind(i, &|s| s.idle.anon)),
            mib(per_kind(i, &|s| s.held.rss)),
            per_kind(i, &|s| s.held.threads),
            mib(per_kind(i, &|s| footprint(&s.held))),
            per_kind(i, &|s| (footprint(&s.held) - footprint(&s.idle))
                / s.conns.max(1) as f64
                / 1024.0),
        );
    }
    println!();
    for (i, e) in first_errors.iter().enumerate() {
        if let Some(e) = e {
            println!("first error of {}: {e}", kinds[i].name());
        }
    }
    let mut verdicts = Vec::new();
    let me = kinds.iter().position(|&k| k == Kind::Socketserver);
    if let Some(me) = me {
        let idle = mib(per_kind(me, &|s| s.idle.rss));
        verdicts.push(at_most("E. idle resident memory, MiB", idle, 3.0));
        if let Some(t) = tokio {
            // The thread mode's target was set at 1,000 connections; at
            // more, a thread each is what the parked mode is for.
            let got = ratio(&memories, me, t);
            if held_conns <= 1000 {
                let what = format!("E. {n} idle connections, memory × tokio");
                verdicts.push(at_most(&what, got, 2.0));
            } else {
                verdicts.push(format!(
                    "E. (not a target) {n} idle connections, thread mode's memory × tokio: {got:.2}"
                ));
            }
        }
    }
    if let Some(p) = kinds.iter().position(|&k| k == Kind::SocketserverParked) {
        verdicts.push(at_most(
            &format!("E. {n} idle connections, parked threads"),
            per_kind(p, &|s| s.held.threads),
            PARKED_LOOPS + 4.0,
        ));
        if let Some(me) = me {
            verdicts.push(at_most(
                &format!("E. {n} idle connections, parked memory × thread mode's"),
                ratio(&memories, p, me),
                0.2,
            ));
        }
        if let Some(t) = tokio {
            verdicts.push(at_most(
                &format!("E. {n} idle connections, parked memory × tokio"),
                ratio(&memories, p, t),
                4.0,
            ));
        }
    }
    verdicts
}

/// A verdict on a figure that should be at most `limit`.
fn at_most(what: &str, got: f64, limit: f64) -> String {
    let verdict = if got <= limit {
        "met".to_string()
    } else {
        format!("MISSED by {:.0}%", (got / limit - 1.0) * 100.0)
    };
    format!("{what}: {got:.2}, target at most {limit:.2}: {verdict}")
}

/// A verdict on a figure that should be at least `want`.
fn at_least(what: &str, got: f64, want: f64) -> String {
    let verdict = if got >= want {
        "met".to_string()
    } else {
        format!("MISSED by {:.0}%", (1.0 - got / want) * 100.0)
    };
    format!("{what}: {got:.2}, target at least {want:.2}: {verdict}")
}

/// The row label: this crate's with the settings it runs with for a load
/// of at most `connections` at once; tokio's with what speaks TLS for it.
fn server_name(kind: Kind, workload: Workload, connections: usize) -> String {
    #[cfg(feature = "tls")]
    if kind == Kind::Tokio && workload == Workload::TlsEcho {
        return "tokio + tokio-rustls".to_string();
    }
    match kind {
        Kind::Socketserver | Kind::SocketserverParked => format!(
            "{} `{}`",
            kind.name(),
            serve::socketserver_settings(kind, workload, connections)
        ),
        k => k.name().to_string(),
    }
}

/// 12345.6 as "12,346".
fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let s = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
