//! The loop guard of a datagram server: no endless exchange with another
//! service.
//!
//! Services that answer every datagram (echo, chargen, daytime, time, or
//! any request-reply handler) bounce a datagram between each other forever
//! once someone forges one with the source address of the other service:
//! tens of thousands of datagrams a second, until one is stopped. Dropping
//! source ports below 1024 (`min_source_port`) only covers the well-known
//! ports. The guard covers the rest: a client's datagrams come from a port
//! in the system's ephemeral range, which the kernel hands out to sockets
//! that did not bind one; a datagram from any other port comes from a
//! socket bound on purpose, a service. Each such source address is served
//! at most `per_second` datagrams a second; the rest are dropped and
//! counted. A loop needs every datagram answered, so it dies at the first
//! one dropped: within milliseconds. A client that binds a fixed port on
//! purpose (some game, SIP or NTP clients do) is served up to that rate.
//! (FreeBSD's inetd drops datagrams from the ports of its own services,
//! `check_loop`; this applies the same idea to any service.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sources tracked at most; beyond it, datagrams from new service ports
/// are dropped until old entries expire, so forged sources cannot grow
/// memory without bound.
const MAX_SOURCES: usize = 4096;

/// How long a source's count lasts.
const WINDOW: Duration = Duration::from_secs(1);

/// Per-source counts of datagrams from service ports, in one-second windows.
#[derive(Debug)]
pub(crate) struct LoopGuard {
    ephemeral: RangeInclusive<u16>,
    per_second: u32,
    windows: Mutex<Windows>,
}

#[derive(Debug, Default)]
struct Windows {
    by_source: HashMap<SocketAddr, (Instant, u32)>,
    /// While the table is full: no entry expires before this (the oldest
    /// window's end at the last sweep; a window that restarts only ends
    /// later). A flood of forged sources then costs a comparison each,
    /// not a sweep of the whole table each.
    no_expiry_before: Option<Instant>,
    /// Sweeps made, for the tests.
    sweeps: usize,
}

impl LoopGuard {
    /// A guard serving each service port at most `per_second` datagrams a
    /// second; `ephemeral`: the ports clients come from.
    pub(crate) fn new(per_second: u32, ephemeral: RangeInclusive<u16>) -> Self {
        LoopGuard {
            ephemeral,
            per_second,
            windows: Mutex::default(),
        }
    }

    /// Whether a datagram from `source` may be served now.
    pub(crate) fn admit(&self, source: SocketAddr) -> bool {
        self.admit_at(source, Instant::now())
    }

    /// [`admit`](Self::admit) at `now`.
    fn admit_at(&self, source: SocketAddr, now: Instant) -> bool {
        if self.ephemeral.contains(&source.port()) {
            return true;
        }
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let windows = &mut *windows;
        let table = &mut windows.by_source;
        if table.len() >= MAX_SOURCES && !table.contains_key(&source) {
            if windows.no_expiry_before.is_some_and(|t| now < t) {
                return false;
            }
            windows.sweeps += 1;
            table.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
            if table.len() >= MAX_SOURCES {
                windows.no_expiry_before = table.values().map(|(start, _)| *start + WINDOW).min();
                return false;
            }
            windows.no_expiry_before = None;
        }
        let (start, count) = table.entry(source).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            (*start, *count) = (now, 0);
        }
        if *count >= self.per_second {
            return false;
        }
        *count += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn clients_pass_and_services_are_held_to_the_rate() {
        let guard = LoopGuard::new(3, 32768..=60999);
        assert!((0..1000).all(|_| guard.admit(at(40000))), "a client's port");
        assert_eq!((0..5).filter(|_| guard.admit(at(10007))).count(), 3);
        assert!(guard.admit(at(10019)), "each source has its own count");
    }

    #[test]
    fn forged_sources_cannot_grow_the_table() {
        let guard = LoopGuard::new(1, 60000..=60001);
        let ips = (0..=255u8).flat_map(|a| (0..=255u8).map(move |b| [10, 0, a, b]));
        let admitted = ips
            .take(MAX_SOURCES + 10)
            .filter(|ip| guard.admit(SocketAddr::from((*ip, 7))))
            .count();
        assert_eq!(admitted, MAX_SOURCES);
        assert!(guard.windows.lock().unwrap().by_source.len() <= MAX_SOURCES);
    }

    #[test]
    fn a_full_table_refuses_new_sources_without_sweeping_each_time() {
        let guard = LoopGuard::new(1, 60000..=60001);
        let ips = (0..=255u8).flat_map(|a| (0..=255u8).map(move |b| [10, 0, a, b]));
        let start = Instant::now();
        let half_a_window_later = start + WINDOW / 2;
        let admitted = ips
            .take(MAX_SOURCES + 20_000)
            .enumerate()
            .filter(|(i, ip)| {
                let now = if *i < MAX_SOURCES {
                    start
                } else {
                    half_a_window_later
                };
                guard.admit_at(SocketAddr::from((*ip, 7)), now)
            })
            .count();
        assert_eq!(admitted, MAX_SOURCES);
        // The first refused found every window current, and no window can
        // end before a whole one has passed since the first began.
        assert_eq!(guard.windows.lock().unwrap().sweeps, 1);
        assert!(!guard.admit_at(at(7), start + WINDOW - Duration::from_millis(1)));
        assert_eq!(guard.windows.lock().unwrap().sweeps, 1);
        assert!(
            guard.admit_at(at(7), start + WINDOW),
            "the first windows have ended"
        );
    }
}
