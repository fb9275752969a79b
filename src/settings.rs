//! The resolved settings a running server works from.

use std::time::Duration;

use crate::{ProxyProtocol, Transport};

/// Every tunable, with its default; the builder fills it in, `build()`
/// checks it, the server reads it.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) transport: Transport,
    pub(crate) only_v6: Option<bool>,
    pub(crate) backlog: u32,
    pub(crate) workers: usize,
    pub(crate) max_workers: Option<usize>,
    pub(crate) worker_idle_timeout: Duration,
    pub(crate) stack_size: Option<usize>,
    pub(crate) thread_name: String,
    pub(crate) queue: usize,
    pub(crate) reuse_address: Option<bool>,
    pub(crate) reuse_port: bool,
    pub(crate) nodelay: bool,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
    pub(crate) connection_timeout: Option<Duration>,
    pub(crate) max_datagram: usize,
    pub(crate) min_source_port: u16,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) max_connections: Option<usize>,
    pub(crate) max_per_source: Option<usize>,
    pub(crate) busy_message: Option<Vec<u8>>,
    pub(crate) proxy_protocol: Option<ProxyProtocol>,
}

/// Default listen backlog. std's 128 overflows on a burst of connects and
/// costs clients 1-3 s of SYN retries; Linux caps it at `net.core.somaxconn`.
pub(crate) const DEFAULT_BACKLOG: u32 = 1024;
/// The largest UDP payload over IPv4 (65,535 - 8 UDP - 20 IP header bytes).
pub(crate) const MAX_UDP_PAYLOAD: usize = 65_507;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            transport: Transport::Stream,
            only_v6: None,
            backlog: DEFAULT_BACKLOG,
            workers: std::thread::available_parallelism().map_or(4, |n| n.get()),
            max_workers: None,
            worker_idle_timeout: Duration::from_secs(60),
            stack_size: None,
            thread_name: "socketserver".into(),
            queue: 0,
            reuse_address: None,
            reuse_port: false,
            nodelay: true,
            read_timeout: Some(Duration::from_secs(60)),
            write_timeout: Some(Duration::from_secs(60)),
            connection_timeout: None,
            max_datagram: MAX_UDP_PAYLOAD,
            min_source_port: 1024,
            shutdown_timeout: Duration::from_secs(5),
            max_connections: None,
            max_per_source: None,
            busy_message: None,
            proxy_protocol: None,
        }
    }
}

impl Settings {
    /// The pool's ceiling: `max_workers`, or `workers` when not set.
    pub(crate) fn max_workers(&self) -> usize {
        self.max_workers.unwrap_or(self.workers).max(self.workers)
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
