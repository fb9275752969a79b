//! The settings a running server works from, and `validate()`, which
//! rejects every value that could misbehave later: each is either checked
//! here with a typed error, or used with saturating arithmetic, so no
//! setting can panic once the server runs.

use std::time::Duration;

use crate::{Error, ProxyProtocol, Transport};

/// Every tunable, with its default; the builder fills it in, `build()`
/// checks it, the server reads it.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) transport: Transport,
    pub(crate) only_v6: Option<bool>,
    pub(crate) backlog: u32,
    pub(crate) workers: Option<usize>,
    pub(crate) max_workers: Option<usize>,
    pub(crate) worker_idle_timeout: Duration,
    pub(crate) stack_size: Option<usize>,
    pub(crate) thread_name: String,
    pub(crate) queue: usize,
    pub(crate) queue_timeout: Duration,
    pub(crate) reuse_address: Option<bool>,
    pub(crate) reuse_port: bool,
    pub(crate) nodelay: bool,
    pub(crate) tcp_keepalive: Option<Duration>,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) connection_timeout: Option<Duration>,
    pub(crate) max_datagram: usize,
    pub(crate) min_source_port: u16,
    pub(crate) loop_guard: Option<u32>,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_per_source: Option<usize>,
    pub(crate) busy_message: Option<Vec<u8>>,
    pub(crate) proxy_protocol: Option<ProxyProtocol>,
    pub(crate) park_idle: bool,
    pub(crate) parked_stack_size: usize,
    pub(crate) max_outbox: usize,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsAcceptor>,
    pub(crate) tls_handshake_timeout: Duration,
}

/// The limits the thread mode's pool works within, from the settings.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Limits {
    /// Threads always running; also the most that accept at once.
    pub(crate) workers: usize,
    /// The pool's ceiling.
    pub(crate) max_workers: usize,
    /// Accepted connections that may wait for a worker (0: none).
    pub(crate) queue: usize,
    /// Connections that may wait for a worker past `queue` once the pool
    /// is exhausted, each for at most `queue_timeout` (the backlog).
    pub(crate) waiting: usize,
}

/// Default of `max_outbox`: 1 MiB of pushed bytes unsent per connection.
pub(crate) const DEFAULT_MAX_OUTBOX: usize = 1 << 20;
/// Upper bound of `max_outbox`: 1 GiB, far past any client worth waiting
/// for, and no count near overflowing.
pub(crate) const MAX_OUTBOX: usize = 1 << 30;
/// Default listen backlog. std's 128 overflows on a burst of connects and
/// costs clients 1-3 s of SYN retries; Linux caps it at `net.core.somaxconn`.
pub(crate) const DEFAULT_BACKLOG: u32 = 1024;
/// The largest UDP payload over IPv4 (65,535 - 8 UDP - 20 IP header bytes).
pub(crate) const MAX_UDP_PAYLOAD: usize = 65_507;
/// Default ceiling of the pool: enough that a few hundred persistent
/// clients are all served at once with no setting changed. It matches the
/// usual soft limit on open files, so a process that holds more
/// connections has raised its limits, and should raise this too.
pub(crate) const DEFAULT_MAX_WORKERS: usize = 1024;
/// The longest `tcp_keepalive` idle time Linux takes (`TCP_KEEPIDLE`).
pub(crate) const MAX_KEEPALIVE_IDLE: Duration = Duration::from_secs(32767);

/// Default of `loop_guard`: datagrams a second served to each source
/// address whose port is outside the ephemeral range.
pub(crate) const DEFAULT_LOOP_GUARD: u32 = 100;
/// Upper bound of `workers` and `max_workers`: far above what one process
/// can run as threads, low enough that no count overflows.
pub(crate) const MAX_THREADS: usize = 1 << 20;
/// Upper bound of `stack_size`: 1 GiB. The standard library rounds a stack
/// size up to whole pages, which overflows near `usize::MAX`.
pub(crate) const MAX_STACK: usize = 1 << 30;

/// Default stack of a parked connection's handler: 256 KiB of address
/// space, of which only the pages a handler touches become resident.
pub(crate) const DEFAULT_PARKED_STACK: usize = 256 * 1024;
/// Bounds of `parked_stack_size`: the library's own work on a handler's
/// stack must fit with room to spare. A TLS handshake in a debug build
/// overflows 64 KiB and fits in 96; a handler's panic, with
/// `RUST_BACKTRACE` set, prints its backtrace there, which takes some 40
/// KiB. Above 64 MiB a stack per connection is address space better spent
/// on threads.
pub(crate) const PARKED_STACK_RANGE: std::ops::RangeInclusive<usize> = 128 * 1024..=64 << 20;

/// Default of `queue_timeout`: as Go's `http.Server` gives a new
/// connection before calling it idle; far longer than a worker is
/// normally awaited, short enough that a client is told before it gives up.
pub(crate) const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// Default of `tls_handshake_timeout`: long enough for a client across
/// the world on a poor link (a handshake is two round trips), short enough
/// that a client that stops halfway holds its connection for little.
pub(crate) const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for Settings {
    fn default() -> Self {
        Settings {
            transport: Transport::Stream,
            only_v6: None,
            backlog: DEFAULT_BACKLOG,
            workers: None,
            max_workers: None,
            worker_idle_timeout: Duration::from_secs(60),
            stack_size: None,
            thread_name: "socketserver".into(),
            queue: 0,
            queue_timeout: DEFAULT_QUEUE_TIMEOUT,
            reuse_address: None,
            reuse_port: false,
            nodelay: true,
            tcp_keepalive: None,
            read_timeout: Some(Duration::from_secs(60)),
            write_timeout: Some(Duration::from_secs(60)),
            connection_timeout: None,
            max_datagram: MAX_UDP_PAYLOAD,
            min_source_port: 1024,
            loop_guard: Some(DEFAULT_LOOP_GUARD),
            shutdown_timeout: Duration::from_secs(5),
            max_connections: None,
            max_per_source: None,
            busy_message: None,
            proxy_protocol: None,
            park_idle: false,
            parked_stack_size: DEFAULT_PARKED_STACK,
            max_outbox: DEFAULT_MAX_OUTBOX,
            #[cfg(feature = "tls")]
            tls: None,
            tls_handshake_timeout: DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        }
    }
}

impl Settings {
    /// Threads always running: as set, or the number of CPUs, at most
    /// `max_workers`.
    pub(crate) fn workers(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
            cpus.min(self.max_workers.unwrap_or(DEFAULT_MAX_WORKERS))
        })
    }

    /// The pool's ceiling: as set, or [`DEFAULT_MAX_WORKERS`] (or `workers`
    /// when that is set higher).
    pub(crate) fn max_workers(&self) -> usize {
        self.max_workers
            .unwrap_or_else(|| DEFAULT_MAX_WORKERS.max(self.workers()))
    }

    /// What the pool policy needs.
    pub(crate) fn limits(&self) -> Limits {
        Limits {
            workers: self.workers(),
            max_workers: self.max_workers(),
            queue: self.queue,
            waiting: match self.transport {
                Transport::Stream => self.backlog as usize,
                Transport::Datagram => 0,
            },
        }
    }

    /// `SO_REUSEADDR`: on for a stream on Unix unless set. Off for a
    /// datagram, where Linux would let a second server bind the same port
    /// and silently split the traffic.
    pub(crate) fn reuse_address(&self) -> bool {
        self.reuse_address
            .unwrap_or(cfg!(unix) && self.transport == Transport::Stream)
    }

    /// Connections the process may hold at once (queued + being served).
    pub(crate) fn max_connections(&self) -> usize {
        self.max_connections.unwrap_or(usize::MAX)
    }
}

impl Settings {
    /// Rejects settings that are out of range or contradict each other.
    pub(crate) fn validate(&self) -> Result<(), Error> {
        let invalid = |setting, reason: &str| {
            Err(Error::InvalidSetting {
                setting,
                reason: reason.to_string(),
            })
        };
        let threads = |n: usize| (1..=MAX_THREADS).contains(&n);
        if self.workers.is_some_and(|n| !threads(n)) {
            return invalid("workers", "must be between 1 and 1048576");
        }
        if self.max_workers.is_some_and(|n| !threads(n)) {
            return invalid("max_workers", "must be between 1 and 1048576");
        }
        if let (Some(w), Some(m)) = (self.workers, self.max_workers) {
            if m < w {
                return invalid("max_workers", "must be at least workers");
            }
        }
        if self.backlog == 0 {
            return invalid("backlog", "must be at least 1");
        }
        if let Some(idle) = self.tcp_keepalive {
            if !(Duration::from_secs(1)..=MAX_KEEPALIVE_IDLE).contains(&idle) {
                return invalid(
                    "tcp_keepalive",
                    "must be between 1 s and 32767 s (Linux's TCP_KEEPIDLE); None turns it off",
                );
            }
            if self.transport == Transport::Datagram {
                return invalid("tcp_keepalive", "applies to stream servers only");
            }
        }
        if self.max_datagram == 0 || self.max_datagram > MAX_UDP_PAYLOAD {
            return invalid("max_datagram", "must be between 1 and 65507 bytes");
        }
        if self.loop_guard == Some(0) {
            return invalid(
                "loop_guard",
                "must be at least 1 a second; None turns it off",
            );
        }
        if self.max_connections == Some(0) {
            return invalid("max_connections", "must be at least 1");
        }
        if self.max_per_source == Some(0) {
            return invalid("max_per_source", "must be at least 1");
        }
        // At least what a parked handler gets, for the same reasons: a
        // worker thread runs its handler's TLS handshake and panics on its
        // own stack (with RUST_BACKTRACE set, 16 and 24 KiB overflow at a
        // panic and abort the process).
        if self
            .stack_size
            .is_some_and(|b| !(*PARKED_STACK_RANGE.start()..=MAX_STACK).contains(&b))
        {
            return invalid("stack_size", "must be between 128 KiB and 1 GiB");
        }
        if self.thread_name.contains('\0') {
            return invalid("thread_name", "must not contain a NUL byte");
        }
        if self.park_idle && self.transport == Transport::Datagram {
            return invalid("park_idle", "applies to stream servers only");
        }
        if !PARKED_STACK_RANGE.contains(&self.parked_stack_size) {
            return invalid("parked_stack_size", "must be between 128 KiB and 64 MiB");
        }
        if self.max_outbox == 0 || self.max_outbox > MAX_OUTBOX {
            return invalid("max_outbox", "must be between 1 byte and 1 GiB");
        }
        if let Some(pp) = &self.proxy_protocol {
            if self.transport == Transport::Datagram {
                return invalid("proxy_protocol", "applies to stream servers only");
            }
            if pp.has_zero_timeout() {
                return invalid("proxy_protocol", "the header timeout must not be zero");
            }
        }
        #[cfg(feature = "tls")]
        if self.tls.is_some() && self.busy_message.is_some() {
            return invalid(
                "busy_message",
                "is written before any TLS handshake, in plaintext: not with tls",
            );
        }
        #[cfg(feature = "tls")]
        if self.tls.is_some() && self.transport == Transport::Datagram {
            return invalid(
                "tls",
                "applies to stream servers only (DTLS, TLS over datagrams, is not supported)",
            );
        }
        if self.queue_timeout.is_zero() {
            return invalid("queue_timeout", "must not be zero");
        }
        if self.tls_handshake_timeout.is_zero() {
            return invalid("tls_handshake_timeout", "must not be zero");
        }
        let zero = Some(Duration::ZERO);
        for (setting, value) in [
            ("read_timeout", self.read_timeout),
            ("write_timeout", self.write_timeout),
            ("connection_timeout", self.connection_timeout),
        ] {
            if value == zero {
                return invalid(setting, "must not be zero; use None for no limit");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_serve_hundreds_and_start_with_the_cpus() {
        let s = Settings::default();
        assert_eq!(s.max_workers(), DEFAULT_MAX_WORKERS);
        assert!(s.workers() >= 1 && s.workers() <= DEFAULT_MAX_WORKERS);
    }

    #[test]
    fn max_workers_alone_caps_the_default_workers() {
        let s = Settings {
            max_workers: Some(1),
            ..Settings::default()
        };
        assert_eq!((s.workers(), s.max_workers()), (1, 1));
        assert!(s.validate().is_ok(), "max_workers(1) works on any machine");
    }

    #[test]
    fn workers_alone_raise_the_ceiling_if_needed() {
        let s = Settings {
            workers: Some(4000),
            ..Settings::default()
        };
        assert_eq!(s.max_workers(), 4000);
    }

    #[test]
    fn out_of_range_settings_are_errors() {
        let bad = [
            Settings {
                thread_name: "a\0b".into(),
                ..Settings::default()
            },
            Settings {
                stack_size: Some(usize::MAX),
                ..Settings::default()
            },
            Settings {
                workers: Some(usize::MAX),
                ..Settings::default()
            },
            Settings {
                workers: Some(4),
                max_workers: Some(2),
                ..Settings::default()
            },
        ];
        for s in bad {
            assert!(
                matches!(s.validate(), Err(Error::InvalidSetting { .. })),
                "{s:?}"
            );
        }
    }
}
