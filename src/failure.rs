//! What a failed handler call reports, and where the report goes by default.

use std::io;
use std::sync::Arc;

use crate::Addr;

/// One handler call that failed, as given to the
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
}

impl Failure<'_> {
    /// The client whose connection failed.
    pub fn peer(&self) -> &Addr {
        match self {
            Failure::Error { peer, .. } | Failure::Panic { peer, .. } => peer,
        }
    }
}

impl std::fmt::Display for Failure<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Error { peer, error } => write!(f, "handler error for {peer}: {error}"),
            Failure::Panic { peer, message } => write!(f, "handler panicked for {peer}: {message}"),
        }
    }
}

/// The hook type stored by the builder.
pub(crate) type ErrorHook = Arc<dyn Fn(&Failure<'_>) + Send + Sync>;

/// The default hook: through the `log` facade when a logger is installed
/// (panics at `error`, errors at `warn`), otherwise one line on stderr, so
/// that nothing is lost in a program that set up no logging.
pub(crate) fn default_hook() -> ErrorHook {
    Arc::new(|failure: &Failure<'_>| {
        if log::max_level() == log::LevelFilter::Off {
            eprintln!("socketserver: {failure}");
            return;
        }
        match failure {
            Failure::Panic { .. } => log::error!("{failure}"),
            Failure::Error { .. } => log::warn!("{failure}"),
        }
    })
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
