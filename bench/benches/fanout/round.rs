//! One round for one server and one subscriber count: start the server,
//! subscribe N connections, read its resident memory with them idle,
//! publish half a second to warm up, then for S seconds and wait for every
//! delivery; with `--slow`, then add a subscriber that never reads and
//! publish S seconds more.
//!
//! Deliveries per second are the deliveries of the messages published in
//! the window over the time from the first PUBLISH to the last of them
//! arriving: a server that queues instead of delivering pays for the
//! queue in the same round. Every subscriber must get every message; one
//! lost or a connection closed fails the round.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::thread;
use std::time::{Duration, Instant};

use crate::publisher::Publisher;
use crate::server::{self, Kind, Ports, Programs, Server};
use crate::subscribers::{Slow, Subscribers, Window};
use crate::Args;

/// How long the publisher's last messages may take to reach everyone.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Time to connect and confirm: a base, plus this per subscriber.
const SUBSCRIBE_BASE: Duration = Duration::from_secs(5);
const SUBSCRIBE_EACH: Duration = Duration::from_micros(1500);
/// Publishing before the measured phases, unmeasured (at most half of
/// `--secs`).
const WARM_UP: Duration = Duration::from_millis(500);
/// Settling before the idle memory is read.
const SETTLE: Duration = Duration::from_millis(200);

/// One publishing phase's figures.
#[derive(Clone, Copy, Debug)]
pub struct Phase {
    pub rate: f64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    /// Peak resident memory during the phase less that at its start.
    pub rss_growth: i64,
    /// Messages published (each owed to every subscriber).
    pub messages: u64,
    /// The server's CPU time over the phase's wall time: 1.0 is one CPU
    /// busy throughout (Redis's ceiling: it fans out on one thread).
    pub server_cpus: f64,
}

#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Resident memory with the subscribers connected and idle.
    pub rss_idle: u64,
    pub plain: Phase,
    /// With the slow subscriber (`--slow`).
    pub slow: Option<Phase>,
    /// Whether the server closed the slow subscriber by the end.
    pub slow_cut: bool,
    /// From the first connect to the last confirmation.
    pub subscribed: Duration,
}

/// Why a round failed.
pub struct Failure {
    pub msg: String,
    /// The server does not do pub/sub (SUBSCRIBE or PUBLISH answered
    /// wrong): no point in another round.
    pub unsupported: bool,
}

pub fn run(
    kind: Kind,
    n: usize,
    args: &Args,
    programs: &Programs,
    ports: &mut Ports,
) -> Result<Outcome, Failure> {
    let failed = |msg: String| {
        let unsupported = msg.contains("answered SUBSCRIBE") || msg.contains("answered PUBLISH");
        Failure { msg, unsupported }
    };
    let mut server = Server::start(kind, programs, n + 2, ports).map_err(failed)?;
    measure(&mut server, n, args).map_err(|msg| match server.alive() {
        // A connection reset says less than the server's own exit.
        Err(exited) => failed(format!("{exited} ({msg})")),
        Ok(()) => failed(msg),
    })
}

fn measure(server: &mut Server, n: usize, args: &Args) -> Result<Outcome, String> {
    let began = Instant::now();
    let deadline = began + SUBSCRIBE_BASE + SUBSCRIBE_EACH * n as u32;
    let subs = Subscribers::connect(server.addr, n, args.threads, deadline)?;
    subs.wait_confirmed(deadline)?;
    let subscribed = began.elapsed();
    thread::sleep(SETTLE);
    server.alive()?;
    let rss_idle = server.rss()?;
    let mut publisher = Publisher::connect(server.addr)?;
    // Unmeasured: the first messages meet cold caches, unsized output
    // buffers and TCP windows still opening. Without it the first phase
    // pays for those and the second (`--slow`) looks better than it is.
    phase(
        server,
        &subs,
        &mut publisher,
        n,
        WARM_UP.min(args.window / 2),
    )?;
    let plain = phase(server, &subs, &mut publisher, n, args.window)?;
    let (slow, slow_cut) = match args.slow {
        false => (None, false),
        true => {
            let slow = Slow::connect(server.addr)?;
            let phase = phase(server, &subs, &mut publisher, n, args.window)?;
            (Some(phase), slow.cut()?)
        }
    };
    server.alive()?;
    // The subscribers close before the server is killed: their ends take
    // the TIME_WAITs, on a port no later round uses.
    drop(subs);
    Ok(Outcome {
        rss_idle,
        plain,
        slow,
        slow_cut,
        subscribed,
    })
}

/// Publishes for `window`, waits until all `n` subscribers have every
/// message, and measures.
fn phase(
    server: &Server,
    subs: &Subscribers,
    publisher: &mut Publisher,
    n: usize,
    window: Duration,
) -> Result<Phase, String> {
    let rss_start = server.rss()?;
    let cpu_start = crate::procfs::cpu_time(server.pid());
    let wall_start = Instant::now();
    let peak = AtomicU64::new(rss_start);
    let sampling = AtomicBool::new(true);
    let (first_sent, messages, arrived) = thread::scope(|s| {
        s.spawn(|| sample_peak(server.pid(), &sampling, &peak));
        let outcome = publish_and_drain(subs, publisher, n, window);
        sampling.store(false, Relaxed);
        outcome
    })?;
    let server_cpus = match (cpu_start, crate::procfs::cpu_time(server.pid())) {
        (Some(a), Some(b)) => (b - a).as_secs_f64() / wall_start.elapsed().as_secs_f64(),
        _ => f64::NAN,
    };
    let elapsed = arrived.last_arrival.saturating_sub(first_sent).max(1);
    let ns = |q| arrived.latency.quantile(q).unwrap_or(0);
    Ok(Phase {
        rate: arrived.delivered as f64 * 1e9 / elapsed as f64,
        p50_ns: ns(0.50),
        p99_ns: ns(0.99),
        rss_growth: peak.load(Relaxed) as i64 - rss_start as i64,
        messages,
        server_cpus,
    })
}

/// The publisher's run and the wait for its deliveries: the time of the
/// first PUBLISH, the messages published, and what arrived.
fn publish_and_drain(
    subs: &Subscribers,
    publisher: &mut Publisher,
    n: usize,
    window: Duration,
) -> Result<(u64, u64, Window), String> {
    subs.open(crate::now_ns());
    let published = publisher.run(window, &mut || subs.check())?;
    let expected = published.commands * n as u64;
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    loop {
        let delivered = subs.delivered()?;
        if delivered >= expected {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{delivered} of {expected} deliveries ({} messages to {n} subscribers) arrived within {} s of the last PUBLISH; \
                 the server's replies counted {:.1} receivers a message",
                published.commands,
                DRAIN_TIMEOUT.as_secs(),
                published.receivers as f64 / published.commands.max(1) as f64
            ));
        }
        thread::sleep(Duration::from_millis(1));
    }
    Ok((published.first_sent, published.commands, subs.close()))
}

/// Samples the server's resident memory every 10 ms while `on`, keeping
/// the highest.
fn sample_peak(pid: u32, on: &AtomicBool, peak: &AtomicU64) {
    while on.load(Relaxed) {
        if let Some(rss) = server::rss(pid) {
            peak.fetch_max(rss, Relaxed);
        }
        thread::sleep(Duration::from_millis(10));
    }
}
