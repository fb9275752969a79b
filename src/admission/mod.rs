//! Admission: the one place that admits or refuses a connection, by
//! `max_connections` (connections held by the process) and
//! `max_per_source` (connections held per client IP).
//!
//! A connection is held from its `accept()` until it is closed. So that
//! workers accepting at the same time can never hold more than
//! `max_connections` between them, each reserves its place before it calls
//! `accept()`; a reservation becomes a held connection once accepted.
//!
//! For datagrams, `loop_guard.rs` decides which sources are served at all.

pub(crate) mod loop_guard;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::IpAddr;

use crate::net::stream::Stream;
use crate::settings::Settings;
use crate::stats::{bump, Counters};
use crate::Addr;

/// The counts admission keeps, under their own lock (`Core::books`).
#[derive(Debug, Default)]
pub(crate) struct Books {
    /// Connections accepted and not yet closed: queued or served.
    held: usize,
    /// Accepts under way, each holding a place.
    reserved: usize,
    /// Held connections per canonical source IP (only with `max_per_source`).
    per_source: HashMap<IpAddr, usize>,
    /// An event loop found no room and stopped accepting: the next
    /// connection to end, on whichever loop, accepts again.
    pub(crate) room_wanted: bool,
}

/// What was counted for one held connection, to be given back when it
/// closes: the place, and the source IP it counts against, if any.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admitted {
    pub(crate) source: Option<IpAddr>,
}

/// Why a connection was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SourceFull;

impl Books {
    /// Whether another connection may be accepted under `max_connections`.
    pub(crate) fn room(&self, settings: &Settings) -> bool {
        self.held + self.reserved < settings.max_connections()
    }

    /// Holds a place for an `accept()` about to be made.
    pub(crate) fn reserve(&mut self) {
        self.reserved += 1;
    }

    /// The `accept()` that held a place has returned.
    pub(crate) fn unreserve(&mut self) {
        self.reserved -= 1;
    }

    /// Admits a newly accepted connection from `peer`, or refuses it
    /// because its source holds `max_per_source` already. Under the PROXY
    /// protocol the source is counted later, once the header names it
    /// ([`count_source`](Self::count_source)).
    pub(crate) fn admit(
        &mut self,
        settings: &Settings,
        counters: &Counters,
        peer: &Addr,
    ) -> Result<Admitted, SourceFull> {
        let mut admitted = Admitted::default();
        if settings.proxy_protocol.is_none() {
            self.count_source(settings, &mut admitted, peer)?;
        }
        self.held += 1;
        if self.held == settings.max_connections() {
            bump(&counters.max_connections_reached);
        }
        Ok(admitted)
    }

    /// Counts a held connection against its client's `max_per_source`.
    pub(crate) fn count_source(
        &mut self,
        settings: &Settings,
        admitted: &mut Admitted,
        client: &Addr,
    ) -> Result<(), SourceFull> {
        let (Some(limit), Some(ip)) = (settings.max_per_source, client.canonical_ip()) else {
            return Ok(());
        };
        let count = self.per_source.entry(ip).or_insert(0);
        if *count >= limit {
            return Err(SourceFull);
        }
        *count += 1;
        admitted.source = Some(ip);
        Ok(())
    }

    /// Gives back what a connection held.
    pub(crate) fn release(&mut self, admitted: Admitted) {
        self.held -= 1;
        if let Some(ip) = admitted.source {
            if let Some(count) = self.per_source.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    self.per_source.remove(&ip);
                }
            }
        }
    }
}

/// Closes a connection refused by `max_per_source`, after writing the busy
/// message if one is set; counts it.
pub(crate) fn refuse(settings: &Settings, counters: &Counters, stream: &Stream) {
    bump(&counters.rejected_per_source);
    close_busy(settings, stream);
}

/// Writes the busy message, if any, and ends the connection so that the
/// client reads it: without blocking, the message goes out only if it fits
/// in the socket's send buffer, as it does on a new connection; then the
/// end of file, and what the client sent already is read and dropped, so
/// that closing does not reset the connection (a reset may discard the
/// message before the client reads it).
pub(crate) fn close_busy(settings: &Settings, stream: &Stream) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    if let Some(msg) = &settings.busy_message {
        let _ = { stream }.write(msg);
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match { stream }.read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max_connections: usize, max_per_source: usize) -> Settings {
        Settings {
            max_connections: Some(max_connections),
            max_per_source: Some(max_per_source),
            ..Settings::default()
        }
    }

    fn peer(ip: &str) -> Addr {
        Addr::Inet(std::net::SocketAddr::new(ip.parse().unwrap(), 4000))
    }

    #[test]
    fn sequential_connections_never_count_as_reaching_the_limit() {
        let (s, c) = (settings(4, 10), Counters::default());
        let mut books = Books::default();
        for _ in 0..5 {
            books.reserve();
            books.unreserve();
            let a = books.admit(&s, &c, &peer("127.0.0.1")).unwrap();
            books.release(a);
        }
        assert_eq!(
            c.max_connections_reached
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    #[test]
    fn reservations_and_held_connections_share_the_limit() {
        let (s, c) = (settings(2, 10), Counters::default());
        let mut books = Books::default();
        books.reserve();
        assert!(books.room(&s));
        books.reserve();
        assert!(!books.room(&s));
        books.unreserve();
        let a = books.admit(&s, &c, &peer("10.0.0.1")).unwrap();
        assert!(!books.room(&s), "one held and one reserved");
        books.unreserve();
        let b = books.admit(&s, &c, &peer("10.0.0.2")).unwrap();
        assert_eq!(
            c.max_connections_reached
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        books.release(a);
        books.release(b);
        assert!(books.room(&s));
    }

    #[test]
    fn a_source_at_its_limit_is_refused_until_one_closes() {
        let (s, c) = (settings(100, 1), Counters::default());
        let mut books = Books::default();
        let a = books.admit(&s, &c, &peer("::ffff:10.0.0.1")).unwrap();
        assert_eq!(books.admit(&s, &c, &peer("10.0.0.1")), Err(SourceFull));
        books.release(a);
        assert!(books.per_source.is_empty());
        assert!(books.admit(&s, &c, &peer("10.0.0.1")).is_ok());
    }
}
