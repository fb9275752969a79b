//! Pub/sub fan-out: `cargo bench -p socketserver-bench --bench fanout`.
//!
//! One publisher connection sends `PUBLISH chan <64 bytes>`, closed-loop
//! with up to 8 commands outstanding, for `--secs` per round; N subscriber
//! connections (`--subscribers`, default 100, 1000 and 10000), each
//! subscribed to `chan` before publishing starts, are read by a few mio
//! client threads (`--threads`). Each message carries its publish time,
//! so each delivery's latency is measured where it arrives.
//!
//! It compares `redis-server` with this crate's `kv_server` example in
//! both modes (`kv`, and `kv-parked` with `--park-idle`), each in a process
//! of its own, started fresh each round; rounds are interleaved
//! (A B C, B C A, ...), each figure is the median over the rounds, and each
//! ratio against redis the median of the same-round ratios, so a burst of
//! noise from elsewhere on the machine moves one round, not the result.
//! A server that fails (one that does not answer SUBSCRIBE correctly, say)
//! gets an error row and the others still run.
//!
//! Reported per subscriber count and server: deliveries per second across
//! all subscribers, delivery latency p50 and p99, and resident memory with
//! the subscribers connected and idle, also against redis's. With
//! `--slow`, each round then adds one subscriber that never reads and
//! publishes again: the others' delivery rate with and without it, and
//! the server's memory growth during each phase.
//!
//! Build the servers first: `cargo build --release --examples`. Options
//! (after `--`): `--subscribers 100,1000,10000`, `--rounds R` (5),
//! `--secs S` (2), `--servers redis,kv,kv-parked`, `--slow`, `--threads T`
//! reader threads (2, or CPUs / 2 if more, at most 8), `--redis PATH`
//! (/usr/bin/redis-server), `--kv-server PATH` (the `kv_server` beside
//! this bench's target directory), `--port-base P` (17000: the servers
//! take ports from P to P + 2000, below the ephemeral range).
//!
//! The soft limit on open files is raised to the hard one at start (the
//! servers inherit it): 10,000 subscribers need 10,000 descriptors here
//! and as many in the server. Exit status: 1 when any round failed (its
//! server has an error row), 2 for a bad argument.
//!
//! Reading the latency: a server answers PUBLISH once it has queued the
//! message for every subscriber, not once they have read it, so with 8
//! outstanding up to 8 × N deliveries are in flight, and at large N the
//! latency is mostly that queue (Little's law: p50 near 8 × N over the
//! deliveries per second). On a small machine the subscriber threads and
//! the server share the CPUs: the server's CPU use per round is on the
//! progress lines (stderr), 1.00 being one CPU busy throughout.

mod hist;
// Shared with the peers bench, which uses all of it.
#[allow(dead_code)]
#[path = "../peers/procfs.rs"]
mod procfs;
mod publisher;
mod report;
mod resp;
mod round;
mod server;
mod subscribers;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use report::Results;
use round::Failure;
use server::{Kind, Ports, Programs};

/// The instant every publish time and arrival is measured from.
static BASE: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since [`BASE`]: the clock both ends of a delivery share.
pub fn now_ns() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A server sits out the rest of a subscriber count's rounds after this
/// many failures there (one may be a burst of load on the machine).
const MAX_FAILURES: usize = 2;

pub struct Args {
    subscribers: Vec<usize>,
    rounds: usize,
    window: Duration,
    servers: Vec<Kind>,
    slow: bool,
    threads: usize,
    redis: PathBuf,
    kv: Option<PathBuf>,
    port_base: u16,
}

const USAGE: &str = "usage: fanout [--subscribers 100,1000,10000] [--rounds 5] [--secs 2] \
[--servers redis,kv,kv-parked] [--slow] [--threads T] [--redis PATH] [--kv-server PATH] [--port-base 17000]";

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut args = Args {
        subscribers: vec![100, 1000, 10_000],
        rounds: 5,
        window: Duration::from_secs(2),
        servers: Kind::ALL.to_vec(),
        slow: false,
        threads: (cpus / 2).clamp(2, 8),
        redis: PathBuf::from("/usr/bin/redis-server"),
        kv: None,
        port_base: 17_000,
    };
    let mut it = argv.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        let bad = |v: &str| format!("{a}: bad value {v:?}");
        match a.as_str() {
            "--subscribers" => {
                let v = value()?;
                args.subscribers = v
                    .split(',')
                    .map(|n| {
                        n.trim()
                            .replace('_', "")
                            .parse()
                            .ok()
                            .filter(|&n: &usize| n > 0)
                    })
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad(&v))?;
            }
            "--rounds" => {
                let v = value()?;
                args.rounds = v.parse().ok().filter(|&r| r > 0).ok_or_else(|| bad(&v))?;
            }
            "--secs" => {
                let v = value()?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s| (0.1..=60.0).contains(s))
                    .ok_or_else(|| bad(&v))?;
                args.window = Duration::from_secs_f64(secs);
            }
            "--servers" => {
                let v = value()?;
                args.servers = v
                    .split(',')
                    .map(Kind::parse)
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad(&v))?;
            }
            "--slow" => args.slow = true,
            "--threads" => {
                let v = value()?;
                args.threads = v
                    .parse()
                    .ok()
                    .filter(|t| (1..=64).contains(t))
                    .ok_or_else(|| bad(&v))?;
            }
            "--redis" => args.redis = value()?.into(),
            "--kv-server" => args.kv = Some(value()?.into()),
            "--port-base" => {
                let v = value()?;
                args.port_base = v
                    .parse()
                    .ok()
                    .filter(|&p| (1024..=63_000).contains(&p))
                    .ok_or_else(|| bad(&v))?;
            }
            // cargo bench passes --bench.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.servers.is_empty() {
        return Err("--servers: none".into());
    }
    Ok(args)
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let args = match parse_args(&argv[1..]) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("fanout: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    now_ns();
    let open_files = procfs::raise_open_files();
    let programs = Programs {
        redis: args.redis.clone(),
        kv: args.kv.clone().unwrap_or_else(find_kv_server),
    };
    let began = Instant::now();
    print_header(&argv, &args, &programs, open_files);

    let mut ports = Ports::new(args.port_base);
    // Servers that cannot serve pub/sub at all, with why.
    let mut unsupported: Vec<(Kind, String)> = args
        .servers
        .iter()
        .filter_map(|&k| programs.missing(k).map(|why| (k, why)))
        .collect();
    report::table_header();
    let mut slow_rows = Vec::new();
    let mut turn = 0;
    let mut failures = 0;
    for &n in &args.subscribers {
        let mut results: Vec<Results> = args
            .servers
            .iter()
            .map(|&k| Results::new(k, args.rounds))
            .collect();
        // The thread mode holds a thread per connection, up to its
        // `max_workers` (1,024 by default): more subscribers are not its
        // load, and would only time out.
        for r in &mut results {
            if r.kind == Kind::Kv && n > 1024 {
                r.out = Some("not run: the thread mode serves 1,024 connections at once by default (max_workers); many held connections are park_idle's load".into());
            }
        }
        let needed = n + 64;
        if needed as u64 > open_files {
            for r in &mut results {
                r.out = Some(format!(
                    "{n} subscribers need about {needed} open files; the limit is {open_files} (ulimit -Hn)"
                ));
            }
        }
        for round in 0..args.rounds {
            for i in 0..results.len() {
                let r = &mut results[(i + turn) % args.servers.len()];
                if let Some((_, why)) = unsupported.iter().find(|(k, _)| *k == r.kind) {
                    r.out.get_or_insert_with(|| why.clone());
                }
                if r.out.is_some() {
                    continue;
                }
                let started = Instant::now();
                match round::run(r.kind, n, &args, &programs, &mut ports) {
                    Ok(outcome) => {
                        report::progress(n, round, &args, r.kind, &outcome, started.elapsed());
                        r.rounds[round] = Some(outcome);
                    }
                    Err(Failure {
                        msg,
                        unsupported: no,
                    }) => {
                        failures += 1;
                        eprintln!(
                            "{n} subscribers, round {}, {}: FAILED: {msg}",
                            round + 1,
                            r.kind.name()
                        );
                        r.failed.push(format!("round {}: {msg}", round + 1));
                        if no {
                            // No pub/sub: not at any subscriber count.
                            unsupported.push((r.kind, msg));
                        } else if r.failed.len() >= MAX_FAILURES {
                            // Its later rounds would fail alike, each
                            // after its timeouts: it sits them out.
                            r.out = Some(msg);
                        }
                    }
                }
            }
            turn += 1;
        }
        report::print_rows(n, &results);
        slow_rows.extend(report::slow_rows(n, &results));
    }
    if args.slow {
        report::print_slow(&slow_rows);
    }
    println!(
        "\ntook {:.0} s; load average after: {}",
        began.elapsed().as_secs_f64(),
        load_average()
    );
    if failures > 0 {
        eprintln!("fanout: failed rounds: {failures} (see the error rows)");
        std::process::exit(1);
    }
}

/// `kv_server` in the `examples` folder of this bench's own profile
/// directory (the bench runs from `target/release/deps/`, the workspace's
/// target directory, where `cargo build --release --examples` puts it too),
/// else under `target/release/examples/` of the workspace's root (cargo
/// runs a bench in its package's folder, `bench/`, not the root).
fn find_kv_server() -> PathBuf {
    let beside = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .skip(1)
            .take(2)
            .map(|dir| dir.join("examples/kv_server"))
            .find(|p| p.is_file())
    });
    beside.unwrap_or_else(|| {
        let bench = Path::new(env!("CARGO_MANIFEST_DIR"));
        bench
            .parent()
            .unwrap_or(bench)
            .join("target/release/examples/kv_server")
    })
}

fn print_header(argv: &[String], args: &Args, programs: &Programs, open_files: u64) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown model".into());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let command: Vec<String> = argv.iter().map(|a| server::quote(a)).collect();
    let options: Vec<&str> = command
        .iter()
        .skip(1)
        .map(String::as_str)
        .filter(|a| *a != "--bench")
        .collect();
    println!("## Pub/sub fan-out\n");
    println!(
        "machine: {cpus} CPUs ({model}), Linux {}; bench and servers on the same machine, over loopback",
        kernel.trim()
    );
    println!("command: `{}`", command.join(" "));
    println!(
        "(the same: `cargo bench -p socketserver-bench --bench fanout{}`)\n",
        match options.is_empty() {
            true => String::new(),
            false => format!(" -- {}", options.join(" ")),
        }
    );
    println!(
        "1 publisher, closed-loop, {} PUBLISH outstanding, {}-byte messages; subscribers read by {} mio threads; \
         rounds: {} of {:.1} s per server, servers interleaved, a fresh server process each round, warmed up by 0.5 s of unmeasured publishing; \
         figures are medians over the rounds, × redis the median (and range) of same-round ratios; \
         deliveries/s counts every subscriber's copy, from the first PUBLISH to the last delivery; \
         RSS with the subscribers connected and idle",
        publisher::WINDOW,
        resp::PAYLOAD,
        args.threads,
        args.rounds,
        args.window.as_secs_f64(),
    );
    println!(
        "open files: soft limit {open_files}; load average before: {}",
        load_average()
    );
    println!("servers (P: a free port from {}):", args.port_base);
    for &k in &args.servers {
        let (program, a) = programs.command(k, 0, 0);
        let line = server::shell_line(&program, &a)
            .replace(":0", ":P")
            .replace("--port 0", "--port P");
        println!("- {}: `{line}`", k.name());
    }
    if args.servers.contains(&Kind::Redis) {
        println!("  (redis with `--maxclients` subscribers + 18 where that passes its default of 10,000)");
    }
    println!();
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
