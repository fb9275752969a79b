//! `Stats` in the Prometheus text exposition format, for a scraper.

use std::fmt::Write;

use crate::Stats;

/// Whether a metric counts up for ever or says how things are now.
#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

impl Stats {
    /// The snapshot in the Prometheus text exposition format (version
    /// 0.0.4), each metric named `PREFIX_NAME` with a `# HELP` and a
    /// `# TYPE` line: totals as counters (`..._total`), current values as
    /// gauges named with their unit (`active_connections`,
    /// `queued_connections`, `worker_threads`, `parked_connections`). The
    /// gauges' earlier names (`active`, `queued`, `workers`, `parked`) are
    /// written too, with the same values, for dashboards that use them.
    ///
    /// Characters a metric name may not hold (anything but ASCII letters,
    /// digits, `_` and `:`) are written as `_`, and a prefix that starts
    /// with a digit gets a `_` before it; an empty prefix leaves the bare
    /// names. Serve it as `text/plain; version=0.0.4`:
    /// [`metrics::serve`](crate::metrics::serve) does.
    ///
    /// ```
    /// let text = socketserver::Stats::default().to_prometheus("echo");
    /// assert!(text.contains("# TYPE echo_accepted_total counter\necho_accepted_total 0\n"));
    /// assert!(text.contains("# TYPE echo_active_connections gauge\n"));
    /// ```
    pub fn to_prometheus(&self, prefix: &str) -> String {
        let s = self;
        let rows: [(&str, Kind, u64, &str); 34] = [
            (
                "accepted_total",
                Kind::Counter,
                s.accepted,
                "Stream connections accepted.",
            ),
            (
                "active_connections",
                Kind::Gauge,
                s.active,
                "Connections (or datagrams) being served by a handler now.",
            ),
            (
                "queued_connections",
                Kind::Gauge,
                s.queued,
                "Accepted connections waiting for a worker now.",
            ),
            (
                "worker_threads",
                Kind::Gauge,
                s.workers,
                "Worker (or event loop and helper) threads alive now.",
            ),
            (
                "parked_connections",
                Kind::Gauge,
                s.parked,
                "Connections parked off the threads now (park_idle).",
            ),
            (
                "active",
                Kind::Gauge,
                s.active,
                "Same as active_connections (the name before it).",
            ),
            (
                "queued",
                Kind::Gauge,
                s.queued,
                "Same as queued_connections (the name before it).",
            ),
            (
                "workers",
                Kind::Gauge,
                s.workers,
                "Same as worker_threads (the name before it).",
            ),
            (
                "parked",
                Kind::Gauge,
                s.parked,
                "Same as parked_connections (the name before it).",
            ),
            (
                "loop_stalls_total",
                Kind::Counter,
                s.loop_stalls,
                "Times an event loop was held over 100 ms by a handler.",
            ),
            (
                "pool_exhausted_total",
                Kind::Counter,
                s.pool_exhausted,
                "Times every worker was busy at max_workers.",
            ),
            (
                "completed_total",
                Kind::Counter,
                s.completed,
                "Handler calls that returned Ok.",
            ),
            (
                "handler_errors_total",
                Kind::Counter,
                s.handler_errors,
                "Handler calls that returned Err (idle timeouts apart).",
            ),
            (
                "idle_timeouts_total",
                Kind::Counter,
                s.idle_timeouts,
                "Connections closed for sending nothing for the read timeout.",
            ),
            (
                "panics_total",
                Kind::Counter,
                s.panics,
                "Handler calls that panicked.",
            ),
            (
                "max_connections_reached_total",
                Kind::Counter,
                s.max_connections_reached,
                "Times accepting paused at max_connections.",
            ),
            (
                "rejected_per_source_total",
                Kind::Counter,
                s.rejected_per_source,
                "Connections refused by max_per_source.",
            ),
            (
                "accept_errors_total",
                Kind::Counter,
                s.accept_errors,
                "Failed accept calls.",
            ),
            (
                "timed_out_total",
                Kind::Counter,
                s.timed_out,
                "Connections cut at connection_timeout.",
            ),
            (
                "proxy_refused_total",
                Kind::Counter,
                s.proxy_refused,
                "Connections from untrusted proxies refused.",
            ),
            (
                "proxy_errors_total",
                Kind::Counter,
                s.proxy_errors,
                "Connections closed for a bad PROXY header.",
            ),
            (
                "datagrams_received_total",
                Kind::Counter,
                s.datagrams_received,
                "Datagrams received.",
            ),
            (
                "dropped_truncated_total",
                Kind::Counter,
                s.dropped_truncated,
                "Datagrams dropped for exceeding max_datagram.",
            ),
            (
                "dropped_low_port_total",
                Kind::Counter,
                s.dropped_low_port,
                "Datagrams dropped for a source port below min_source_port.",
            ),
            (
                "dropped_loop_total",
                Kind::Counter,
                s.dropped_loop,
                "Datagrams dropped by the loop guard.",
            ),
            (
                "dropped_at_shutdown_total",
                Kind::Counter,
                s.dropped_at_shutdown,
                "Connections or datagrams dropped unserved at shutdown.",
            ),
            (
                "closed_idle_total",
                Kind::Counter,
                s.closed_idle,
                "Idle connections closed at shutdown.",
            ),
            (
                "forced_at_shutdown_total",
                Kind::Counter,
                s.forced_at_shutdown,
                "Handlers cut after shutdown_timeout.",
            ),
            (
                "tls_handshakes_total",
                Kind::Counter,
                s.tls_handshakes,
                "TLS handshakes completed.",
            ),
            (
                "tls_handshake_failures_total",
                Kind::Counter,
                s.tls_handshake_failures,
                "Connections closed for a failed or slow TLS handshake.",
            ),
            (
                "tls_session_failures_total",
                Kind::Counter,
                s.tls_session_failures,
                "TLS sessions the client broke after the handshake (a fatal alert, a bad record).",
            ),
            (
                "slow_consumers_total",
                Kind::Counter,
                s.slow_consumers,
                "Connections cut for pushed bytes past max_outbox.",
            ),
            (
                "disconnects_total",
                Kind::Counter,
                s.disconnects,
                "Handlers ended by a client that reset or hung up.",
            ),
            (
                "queue_timeouts_total",
                Kind::Counter,
                s.queue_timeouts,
                "Connections closed unserved after waiting queue_timeout for a worker.",
            ),
        ];
        let mut prefix: String = prefix
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | ':' => c,
                _ => '_',
            })
            .collect();
        // A metric name may not begin with a digit: a scraper refuses the
        // whole page for one.
        if prefix.starts_with(|c: char| c.is_ascii_digit()) {
            prefix.insert(0, '_');
        }
        let mut out = String::with_capacity(4096);
        for (name, kind, value, help) in rows {
            let full = match prefix.is_empty() {
                true => name.to_string(),
                false => format!("{prefix}_{name}"),
            };
            let kind = match kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            // Writing to a String cannot fail.
            let _ = write!(
                out,
                "# HELP {full} {help}\n# TYPE {full} {kind}\n{full} {value}\n"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::Stats;

    #[test]
    fn names_are_cleaned_and_every_metric_has_its_type() {
        let text = Stats {
            accepted: 7,
            parked: 3,
            ..Stats::default()
        }
        .to_prometheus("my-server.1");
        assert!(text.contains("my_server_1_accepted_total 7\n"));
        assert!(text.contains("# TYPE my_server_1_parked gauge\nmy_server_1_parked 3\n"));
        assert!(text.contains("my_server_1_parked_connections 3\n"));
        assert_eq!(text.matches("# TYPE").count(), 34);
        assert_eq!(text.lines().count(), 102);
    }

    #[test]
    fn a_prefix_that_starts_with_a_digit_is_made_a_name() {
        let text = Stats::default().to_prometheus("9100");
        assert!(text.contains("\n_9100_accepted_total 0\n"), "{text}");
        assert!(!text
            .lines()
            .any(|l| l.starts_with(|c: char| c.is_ascii_digit())));
    }
}
