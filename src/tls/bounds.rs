//! The handshake's deadline: the socket timeouts that keep it within
//! `tls_handshake_timeout`, and the writes of its flights under them.

use std::io;
use std::time::{Duration, Instant};

use rustls::ServerConnection;

use crate::tls::session::PlainIo;

/// The socket timeouts that keep the handshake within its deadline. Each
/// is set to what is left before a step that could wait, but only when
/// that is a tenth of the limit below what is set already: a handshake
/// then costs two or three `setsockopt` calls in the thread mode rather
/// than one per step, and ends at most a tenth of the limit late.
pub(super) struct Bounds {
    pub(super) deadline: Instant,
    pub(super) limit: Duration,
    pub(super) read: Option<Duration>,
    pub(super) write: Option<Duration>,
}

impl Bounds {
    fn left(&self) -> io::Result<Duration> {
        Some(self.deadline.saturating_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
            .ok_or_else(|| self.timed_out())
    }

    /// The new bound for a timeout set at `set`, if it must change.
    fn tighter(&self, set: Option<Duration>) -> io::Result<Option<Duration>> {
        let left = self.left()?;
        Ok(match set {
            Some(set) if set.saturating_sub(left) < self.limit / 10 => None,
            _ => Some(left),
        })
    }

    pub(super) fn before_read(&mut self, io: &mut impl PlainIo) -> io::Result<()> {
        if let Some(t) = self.tighter(self.read)? {
            io.set_read_timeout(Some(t))?;
            self.read = Some(t);
        }
        Ok(())
    }

    fn before_write(&mut self, io: &mut impl PlainIo) -> io::Result<()> {
        if let Some(t) = self.tighter(self.write)? {
            io.set_write_timeout(Some(t))?;
            self.write = Some(t);
        }
        Ok(())
    }

    pub(super) fn timed_out(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the TLS handshake took over {:?} (tls_handshake_timeout)",
                self.limit
            ),
        )
    }

    /// A socket timeout during the handshake is the handshake's.
    pub(super) fn worded(&self, e: io::Error) -> io::Error {
        match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => self.timed_out(),
            _ => e,
        }
    }
}

/// Sends every TLS record queued, gathered into one write: rustls hands
/// its records over one by one, and a flight of the handshake is three
/// or four of them (one packet, not four, with `TCP_NODELAY`). Within the
/// handshake's deadline however slowly the client takes the bytes: the
/// write timeout is set again before each write (a parked write counts
/// its timeout from each call, and the records of a large certificate
/// chain may take several).
pub(super) fn send_within(
    conn: &mut ServerConnection,
    io: &mut impl PlainIo,
    bounds: &mut Bounds,
) -> io::Result<()> {
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out)?;
    }
    let mut sent = 0;
    while sent < out.len() {
        bounds.before_write(io)?;
        match io.write(&out[sent..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => sent += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(bounds.worded(e)),
        }
    }
    Ok(())
}
