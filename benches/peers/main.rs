//! The comparison against peers: `cargo bench --bench peers`.
//!
//! Runs one client load (in `load.rs`, written once) against this crate,
//! tokio, a std thread-per-connection server, a bare two-thread loop and
//! Python's `socketserver` (when `python3` is present), each server in a
//! process of its own, and prints markdown tables:
//!
//! * A. short connections: connect, read the daytime reply to the end, close
//! * B. echo over 4 persistent connections, 64-byte messages
//! * C. echo over 64 persistent connections
//! * D. UDP echo, 4 clients, 64-byte datagrams: one in flight per client,
//!   clients and servers sharing the CPUs; then the same with the clients
//!   on one CPU and the server on another (as a load generator beside a
//!   server on its own cores measures it); then both again with 8
//!   datagrams in flight per client
//! * E. resident memory idle, and holding 1,000 idle connections
//!
//! The servers take turns in interleaved rounds (A B C A B C ..., the order
//! rotating each round); each figure is the median over the rounds, and each
//! ratio is the median of the same-round ratios, so a burst of noise from
//! another process on the machine moves one round, not the result. CPU time
//! per operation is the server process's user + system time over the
//! round's operations.
//!
//! Options (after `--`): `--rounds N` (10), `--secs S` per round (1),
//! `--only ABCDE` (all), `--clients N` for A (4), `--servers a,b` (all of
//! socketserver, tokio, std, bare, python).

mod cpus;
mod load;
mod procfs;
mod serve;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serve::{Kind, Workload};

struct Args {
    rounds: usize,
    window: Duration,
    only: String,
    clients: usize,
    /// The servers to run (`--servers a,b`); all by default.
    servers: Vec<Kind>,
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = argv.iter().position(|a| a == "--serve") {
        let kind = argv.get(i + 1).and_then(|k| Kind::parse(k));
        let workload = argv.get(i + 2).and_then(|w| Workload::parse(w));
        let (Some(kind), Some(workload)) = (kind, workload) else {
            eprintln!("usage: --serve KIND WORKLOAD");
            std::process::exit(2);
        };
        if let Err(e) = serve::serve(kind, workload) {
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
        only: "ABCDE".into(),
        clients: 4,
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
            "--servers" => {
                args.servers = value().split(',').filter_map(Kind::parse).collect();
            }
            // cargo bench passes --bench; a filter word is not used here.
            _ => {}
        }
    }
    args
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
    fn start(kind: Kind, workload: Workload, python: Option<&Path>) -> Result<Running, String> {
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
                cmd
            }
        };
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
        kinds: &[Kind::Socketserver, Kind::Tokio, Kind::Std, Kind::Python],
        unit: "round trips/s",
        clients: Some(4),
        load: load::echo,
        latency: true,
    },
    Spec {
        title: "C. echo, 64 persistent connections, 64-byte messages",
        workload: Workload::Echo,
        kinds: &[Kind::Socketserver, Kind::Tokio, Kind::Std, Kind::Python],
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

/// The kinds asked for that can run here (python only with python3).
fn available(kinds: &[Kind], args: &Args, python: Option<&Path>) -> Vec<Kind> {
    kinds
        .iter()
        .copied()
        .filter(|k| args.servers.contains(k))
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
    let kinds = available(spec.kinds, args, python);
    if kinds.is_empty() {
        return Vec::new();
    }
    let clients = spec.clients.unwrap_or(args.clients);
    // Every server of the workload stays up through its rounds, idle
    // while the others take their turn.
    let servers: Vec<Running> = match kinds
        .iter()
        .map(|&k| Running::start(k, spec.workload, python))
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
            if first_errors[i].is_none() {
                first_errors[i] = out.first_error.take();
            }
            std::thread::sleep(Duration::from_millis(50));
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
    println!(
        "{} client {}, {} rounds of {:.1} s; medians over rounds; CPU × tokio is the same-round ratio of CPU time per operation (below 1: cheaper than tokio)\n",
        clients,
        if spec.workload == Workload::Daytime || spec.workload.udp() {
            "threads"
        } else {
            "connections (a thread each)"
        },
        args.rounds,
        args.window.as_secs_f64()
    );
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
        let name = server_name(*kind, spec.workload);
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

    let (Some(me), Some(t)) = (kinds.iter().position(|&k| k == Kind::Socketserver), tokio) else {
        return Vec::new();
    };
    let vs_tokio = ratio(&rates, me, t);
    let mut verdicts = Vec::new();
    let target =
        |what: &str, got: f64, want: f64| at_least(&format!("{letter}. {what}"), got, want);
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

/// Connections held open in workload E.
const HELD: usize = 1000;

/// One server's memory in one round of E: idle, then holding the connections.
#[derive(Clone, Copy, Debug)]
struct MemorySample {
    idle: procfs::Memory,
    held: procfs::Memory,
    errors: u64,
}

/// E: resident memory of each echo server idle, then holding 1,000 idle
/// connections (each after one exchange, so the server serves every one).
fn run_memory(args: &Args, python: Option<&Path>) -> Vec<String> {
    let kinds = available(
        &[Kind::Socketserver, Kind::Tokio, Kind::Std, Kind::Python],
        args,
        python,
    );
    if kinds.is_empty() {
        return Vec::new();
    }
    let rounds = args.rounds.min(3);
    let settle = Duration::from_millis(500);
    let mut samples: Vec<Vec<Option<MemorySample>>> = Vec::new();
    for round in 0..rounds {
        eprintln!("E: round {}/{rounds}", round + 1);
        let mut this = vec![None; kinds.len()];
        for i in rotated(&(0..kinds.len()).collect::<Vec<_>>(), round) {
            let server = match Running::start(kinds[i], Workload::Echo, python) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("E: {e}");
                    continue;
                }
            };
            let pid = server.pid();
            std::thread::sleep(settle);
            let idle = procfs::memory(pid);
            let (conns, out) = load::hold(server.addr, HELD);
            std::thread::sleep(settle);
            let held = procfs::memory(pid);
            if let (Some(idle), Some(held)) = (idle, held) {
                this[i] = Some(MemorySample {
                    idle,
                    held,
                    errors: out.errors,
                });
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
    let helds = figure(&|s| s.held.rss);
    let tokio = kinds.iter().position(|&k| k == Kind::Tokio);
    println!(
        "### E. resident memory of the echo server: idle, and holding {HELD} idle connections\n"
    );
    println!(
        "{rounds} rounds, a fresh server each; medians over rounds. RSS is VmRSS \
         (file-backed pages of the binary and libc included); anon is RssAnon \
         (heap and stacks)\n"
    );
    println!(
        "| server | idle RSS MiB | idle anon MiB | {HELD} conns RSS MiB | × tokio | anon KiB per conn | threads | errors |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, kind) in kinds.iter().enumerate() {
        let errors: u64 = samples.iter().flat_map(|r| r[i]).map(|s| s.errors).sum();
        let vs = tokio.map_or(f64::NAN, |t| ratio(&helds, i, t));
        println!(
            "| {} | {:.1} | {:.2} | {:.1} | {vs:.2} | {:.1} | {:.0} | {errors} |",
            server_name(*kind, Workload::Echo),
            mib(per_kind(i, &|s| s.idle.rss)),
            mib(per_kind(i, &|s| s.idle.anon)),
            mib(per_kind(i, &|s| s.held.rss)),
            per_kind(i, &|s| (s.held.anon - s.idle.anon) / HELD as f64 / 1024.0),
            per_kind(i, &|s| s.held.threads),
        );
    }
    println!();
    let Some(me) = kinds.iter().position(|&k| k == Kind::Socketserver) else {
        return Vec::new();
    };
    let idle = mib(per_kind(me, &|s| s.idle.rss));
    let mut verdicts = vec![at_most("E. idle resident memory, MiB", idle, 3.0)];
    if let Some(t) = tokio {
        let what = format!("E. {HELD} idle connections, RSS × tokio");
        verdicts.push(at_most(&what, ratio(&helds, me, t), 2.0));
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

/// The row label: this crate's with the settings it runs with.
fn server_name(kind: Kind, workload: Workload) -> String {
    match kind {
        Kind::Socketserver => format!("socketserver `{}`", serve::socketserver_settings(workload)),
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
