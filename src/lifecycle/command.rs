//! What a running server can be asked to do, from any thread: the one
//! type every request to a server's life goes through (a shutdown from a
//! handle or a signal), handled by each engine in one place.

/// A command to a running server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// Graceful shutdown: take no new work, close idle connections at
    /// once, drain the others within `shutdown_timeout`, then cut them.
    Stop,
}
