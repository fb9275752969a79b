//! The report: one markdown row per subscriber count and server, medians
//! over the rounds, ratios against redis as the median of the same-round
//! ratios (with their range), an error row for a server whose rounds
//! failed; and a progress line per round on stderr.

use std::time::Duration;

use crate::resp;
use crate::round::{Outcome, Phase};
use crate::server::Kind;
use crate::Args;

pub fn table_header() {
    println!("| subscribers | server | deliveries/s | × redis | p50 µs | p99 µs | RSS MiB | RSS × redis |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
}

/// One round's figures, on stderr, as they come.
pub fn progress(n: usize, round: usize, args: &Args, kind: Kind, o: &Outcome, took: Duration) {
    let slow = o.slow.map_or(String::new(), |s| {
        format!(
            "; with slow: {} deliveries/s, RSS +{:.1} MiB, cut: {}",
            thousands(s.rate),
            mib(s.rss_growth as f64),
            o.slow_cut
        )
    });
    eprintln!(
        "{n} subscribers, round {}/{}, {}: {} deliveries/s, p99 {:.0} µs, RSS {:.1} MiB, server CPU {:.2}{slow} (subscribed in {:.2} s; {:.1} s in all)",
        round + 1,
        args.rounds,
        kind.name(),
        thousands(o.plain.rate),
        o.plain.p99_ns as f64 / 1e3,
        mib(o.rss_idle as f64),
        o.plain.server_cpus,
        o.subscribed.as_secs_f64(),
        took.as_secs_f64()
    );
}

pub fn print_slow(rows: &[String]) {
    println!("\n### With one slow subscriber (subscribed, never reads)\n");
    println!("| subscribers | server | deliveries/s without | with slow | with / without | p99 µs with slow | RSS growth MiB without | with slow | owed to slow one MiB | slow one cut |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for row in rows {
        println!("{row}");
    }
}

/// One server's rounds at one subscriber count.
pub struct Results {
    pub kind: Kind,
    pub rounds: Vec<Option<Outcome>>,
    /// `round N: why`, for each round that failed.
    pub failed: Vec<String>,
    /// Why it sits out its later rounds, if it does.
    pub out: Option<String>,
}

impl Results {
    pub fn new(kind: Kind, rounds: usize) -> Results {
        Results {
            kind,
            rounds: vec![None; rounds],
            failed: Vec::new(),
            out: None,
        }
    }

    /// Why there are no figures.
    fn why(&self) -> &str {
        self.failed
            .first()
            .or(self.out.as_ref())
            .map_or("no round finished", String::as_str)
    }

    fn ok(&self) -> impl Iterator<Item = &Outcome> {
        self.rounds.iter().flatten()
    }

    fn median(&self, f: impl Fn(&Outcome) -> Option<f64>) -> Option<f64> {
        median(self.ok().filter_map(f).collect())
    }

    /// The median and range of this server's figure over redis's, round
    /// by round, in the rounds both finished.
    fn ratio(&self, redis: Option<&Results>, f: impl Fn(&Outcome) -> Option<f64>) -> String {
        let Some(redis) = redis else {
            return "–".into();
        };
        let ratios: Vec<f64> = self
            .rounds
            .iter()
            .zip(&redis.rounds)
            .filter_map(|(a, b)| Some(f(a.as_ref()?)? / f(b.as_ref()?)?))
            .filter(|r| r.is_finite())
            .collect();
        ratio_cell(ratios)
    }

    /// For a row with figures: the rounds they come from, if some failed.
    fn note(&self) -> String {
        let done = self.ok().count();
        match self.failed.split_first() {
            Some((first, more)) if done > 0 => format!(
                " ({done} of {} rounds; {first}{})",
                self.rounds.len(),
                match more.len() {
                    0 => String::new(),
                    k => format!("; {k} more failed"),
                }
            ),
            _ => String::new(),
        }
    }
}

pub fn print_rows(n: usize, results: &[Results]) {
    let redis = results
        .iter()
        .find(|r| r.kind == Kind::Redis && r.ok().next().is_some());
    for r in results {
        let name = r.kind.name();
        if r.ok().next().is_none() {
            let why = r.why();
            println!(
                "| {n} | {name} | **error**: {} | | | | | |",
                why.replace('|', "\\|")
            );
            continue;
        }
        let rate = r.median(|o| Some(o.plain.rate));
        let p50 = r.median(|o| Some(o.plain.p50_ns as f64 / 1e3));
        let p99 = r.median(|o| Some(o.plain.p99_ns as f64 / 1e3));
        let rss = r.median(|o| Some(mib(o.rss_idle as f64)));
        println!(
            "| {n} | {name}{} | {} | {} | {} | {} | {} | {} |",
            r.note().replace('|', "\\|"),
            rate.map_or("–".into(), thousands),
            r.ratio(redis, |o| Some(o.plain.rate)),
            p50.map_or("–".into(), |v| format!("{v:.0}")),
            p99.map_or("–".into(), |v| format!("{v:.0}")),
            rss.map_or("–".into(), |v| format!("{v:.1}")),
            r.ratio(redis, |o| Some(o.rss_idle as f64)),
        );
    }
}

pub fn slow_rows(n: usize, results: &[Results]) -> Vec<String> {
    let mut rows = Vec::new();
    for r in results {
        let name = r.kind.name();
        if !r.ok().any(|o| o.slow.is_some()) {
            rows.push(format!(
                "| {n} | {name} | **error**: {} | | | | | | | |",
                r.why().replace('|', "\\|")
            ));
            continue;
        }
        let slow = |f: fn(&Phase) -> f64| r.median(move |o| o.slow.as_ref().map(f));
        let with_without: Vec<f64> = r
            .ok()
            .filter_map(|o| Some(o.slow?.rate / o.plain.rate))
            .collect();
        let cut = r.ok().filter(|o| o.slow_cut).count();
        let total = r.ok().filter(|o| o.slow.is_some()).count();
        rows.push(format!(
            "| {n} | {name}{} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.note().replace('|', "\\|"),
            r.median(|o| Some(o.plain.rate))
                .map_or("–".into(), thousands),
            slow(|p| p.rate).map_or("–".into(), thousands),
            ratio_cell(with_without),
            slow(|p| p.p99_ns as f64 / 1e3).map_or("–".into(), |v| format!("{v:.0}")),
            r.median(|o| Some(mib(o.plain.rss_growth as f64)))
                .map_or("–".into(), |v| format!("{v:.1}")),
            slow(|p| mib(p.rss_growth as f64)).map_or("–".into(), |v| format!("{v:.1}")),
            slow(|p| mib((p.messages * resp::PUSH_BYTES) as f64))
                .map_or("–".into(), |v| format!("{v:.1}")),
            match cut {
                0 => "no".to_string(),
                c if c == total => "yes".to_string(),
                c => format!("in {c} of {total} rounds"),
            },
        ));
    }
    rows
}

/// `median (low–high)`, or `–` when there is none.
fn ratio_cell(ratios: Vec<f64>) -> String {
    let low = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let high = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match median(ratios) {
        None => "–".into(),
        Some(m) if format!("{low:.2}") == format!("{high:.2}") => format!("{m:.2}"),
        Some(m) => format!("{m:.2} ({low:.2}–{high:.2})"),
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(match v.len() % 2 {
        1 => v[mid],
        _ => (v[mid - 1] + v[mid]) / 2.0,
    })
}

pub fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

/// `1,234,567`.
fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
