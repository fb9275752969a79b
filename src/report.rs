//! Reporting: what a failed connection tells the `on_error` hook, where
//! reports go by default, and the rate limit that keeps a flood of
//! failures from becoming a flood of log lines.

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Addr;

/// One connection that ended badly, as given to the
/// [`on_error`](crate::ServerBuilder::on_error) hook.
#[derive(Debug)]
#[non_exhaustive]
pub enum Failure<'a> {
    /// The handler returned `Err`.
    Error {
        /// The client it was serving.
        peer: &'a Addr,
        /// What it returned.
        error: &'a io::Error,
    },
    /// The handler panicked; the worker caught it and goes on serving.
    Panic {
        /// The client it was serving.
        peer: &'a Addr,
        /// The panic's message, or `"<non-string panic payload>"`.
        message: &'a str,
    },
    /// The client failed its TLS handshake (feature `tls`): it spoke
    /// plaintext or garbage, offered nothing the server accepts, presented
    /// no certificate or one refused, closed mid-handshake, or took over
    /// `tls_handshake_timeout`. The handler never saw the connection. A
    /// client that closes or resets before its first TLS byte (a TCP
    /// health check) is not reported.
    TlsHandshake {
        /// The client (as named by the PROXY header, if any).
        peer: &'a Addr,
        /// What went wrong (`TimedOut` for a handshake too slow).
        error: &'a io::Error,
    },
    /// The client broke its TLS session after the handshake (feature
    /// `tls`), and the handler returned the error its read failed with (or
    /// one wrapping it): the client sent a fatal alert (as one does that
    /// gives up on a TLS 1.2 renegotiation the server declined, or a
    /// scanner that alerts and closes), a record that does not decrypt or
    /// parse, or a message TLS does not allow there (a second
    /// renegotiation request). A failure of the client's, not the
    /// handler's; a client's `close_notify`, or a close without one, is
    /// the end of the stream, not a failure.
    TlsSession {
        /// The client (as named by the PROXY header, if any).
        peer: &'a Addr,
        /// What the handler returned: an `InvalidData` error carrying
        /// rustls's error (`rustls::Error::AlertReceived`, `DecryptError`,
        /// ...), unless the handler wrapped it.
        error: &'a io::Error,
    },
    /// The client sent nothing for the read timeout, and the handler gave
    /// up on it (its read failed with `TimedOut` and it returned that error).
    IdleTimeout {
        /// The client that went quiet.
        peer: &'a Addr,
        /// The read timeout it exceeded.
        after: Duration,
    },
}

impl Failure<'_> {
    /// The client whose connection failed.
    pub fn peer(&self) -> &Addr {
        match self {
            Failure::Error { peer, .. }
            | Failure::Panic { peer, .. }
            | Failure::TlsHandshake { peer, .. }
            | Failure::TlsSession { peer, .. }
            | Failure::IdleTimeout { peer, .. } => peer,
        }
    }
}

impl fmt::Display for Failure<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Error { peer, error } => write!(f, "handler error for {peer}: {error}"),
            Failure::Panic { peer, message } => write!(f, "handler panicked for {peer}: {message}"),
            Failure::TlsHandshake { peer, error } => {
                write!(f, "TLS handshake with {peer} failed: {error}")
            }
            Failure::TlsSession { peer, error } => {
                write!(f, "TLS session with {peer} failed: {error}")
            }
            Failure::IdleTimeout { peer, after } => write!(
                f,
                "closed {peer}: it sent nothing for {after:?} (the read timeout)"
            ),
        }
    }
}

/// The hook type stored by the builder.
pub(crate) type ErrorHook = Arc<dyn Fn(&Failure<'_>) + Send + Sync>;

/// The default hook: through the `log` facade when a logger is installed
/// (panics at `error`, errors at `warn`, idle timeouts, failed TLS
/// handshakes and TLS sessions the client broke at `info`, and
/// errors that only say the client hung up at `debug`), otherwise one line
/// on stderr for panics and the other errors. Each kind is limited to one
/// line a second, with a count of the lines left out, so that a flood of
/// failing clients costs a few lines.
pub(crate) fn default_hook() -> ErrorHook {
    let limits = [
        RateLimit::per_second(),
        RateLimit::per_second(),
        RateLimit::per_second(),
        RateLimit::per_second(),
        RateLimit::per_second(),
        RateLimit::per_second(),
    ];
    Arc::new(move |failure: &Failure<'_>| {
        let (limit, level) = match failure {
            Failure::Panic { .. } => (&limits[0], log::Level::Error),
            // A client that resets or closes while its reply is written is
            // the network's everyday business, not the server's fault; so
            // is a liveness probe (a connect and close) from another server
            // of the same Unix path.
            Failure::Error { error, .. } if client_gone(error.kind()) => {
                (&limits[3], log::Level::Debug)
            }
            Failure::Error { .. } => (&limits[1], log::Level::Warn),
            Failure::IdleTimeout { .. } => (&limits[2], log::Level::Info),
            // Scanners and plaintext clients knock on every TLS port: the
            // count in Stats is what matters, the lines are for debugging.
            Failure::TlsHandshake { .. } => (&limits[4], log::Level::Info),
            // So do they after the handshake: a fatal alert and a close,
            // a declined renegotiation.
            Failure::TlsSession { .. } => (&limits[5], log::Level::Info),
        };
        if let Some(skipped) = limit.admit() {
            log_or_eprint(level, &with_skipped(failure.to_string(), skipped));
        }
    })
}

/// Whether a stream error means only that the client has gone: it reset
/// the connection, closed it while a reply was being written, or closed it
/// in the middle of a request (`read_exact` and the like: end of file).
pub(crate) fn client_gone(kind: io::ErrorKind) -> bool {
    matches!(
        kind,
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

/// Logs through the `log` facade when a logger is installed; otherwise
/// warnings and errors go to stderr so they are never lost, and lower
/// levels are dropped.
///
/// Never panics: a logger that panics, or a closed stderr, costs the line,
/// not the thread that logs it (an event loop serves many connections).
pub(crate) fn log_or_eprint(level: log::Level, msg: &str) {
    let logged = std::panic::catch_unwind(|| {
        if log::max_level() != log::LevelFilter::Off {
            log::log!(level, "{msg}");
        } else if level <= log::Level::Warn {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "socketserver: {msg}");
        }
    });
    if let Err(payload) = logged {
        drop_payload(payload);
    }
}

/// Appends how many like lines were left out, if any.
pub(crate) fn with_skipped(msg: String, skipped: u64) -> String {
    match skipped {
        0 => msg,
        1 => format!("{msg} (1 more like it not logged)"),
        n => format!("{msg} ({n} more like it not logged)"),
    }
}

/// At most one report per interval; the ones in between are counted.
#[derive(Debug)]
pub(crate) struct RateLimit {
    every: Duration,
    /// When the last report went out, and how many were left out since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimit {
    /// One report a second.
    pub(crate) fn per_second() -> Self {
        RateLimit {
            every: Duration::from_secs(1),
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(left out since the last one)` when a report may go out now;
    /// `None` when it must be left out (and is counted). The caller writes
    /// the line after this returns, with no lock held.
    pub(crate) fn admit(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match state.0 {
            Some(at) if now.duration_since(at) < self.every => {
                state.1 += 1;
                None
            }
            _ => {
                state.0 = Some(now);
                Some(std::mem::take(&mut state.1))
            }
        }
    }
}

/// The message of a caught panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "<non-string panic payload>"
    }
}

/// Drops a caught panic payload without letting a panicking `Drop` of the
/// payload escape: such a payload is leaked instead, as the standard
/// library's thread spawner does.
pub(crate) fn drop_payload(payload: Box<dyn std::any::Any + Send>) {
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(payload)));
    if let Err(second) = dropped {
        std::mem::forget(second);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_admits_one_a_second_and_counts_the_rest() {
        let limit = RateLimit::per_second();
        assert_eq!(limit.admit(), Some(0));
        assert_eq!(limit.admit(), None);
        assert_eq!(limit.admit(), None);
        limit.state.lock().unwrap().0 = Some(Instant::now() - Duration::from_secs(2));
        assert_eq!(limit.admit(), Some(2));
        assert_eq!(limit.admit(), None);
    }

    #[test]
    fn a_payload_whose_drop_panics_is_contained() {
        struct Bomb;
        impl Drop for Bomb {
            fn drop(&mut self) {
                panic!("dropping the payload");
            }
        }
        let caught = std::panic::catch_unwind(|| std::panic::panic_any(Bomb)).unwrap_err();
        drop_payload(caught);
    }
}
