//! Why [`Outbox::send`](crate::Outbox::send) refuses a message.

use std::io;

/// Why [`Outbox::send`](crate::Outbox::send) did not queue a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The connection's unsent bytes would pass
    /// [`max_outbox`](crate::ServerBuilder::max_outbox): its client reads
    /// too slowly. The connection is cut and counted in
    /// [`Stats::slow_consumers`](crate::Stats::slow_consumers); later sends
    /// return [`Closed`](Self::Closed). For a datagram connection: the
    /// socket's send buffer is full, or the datagram is too large (over
    /// 65,507 bytes for UDP), and this one datagram was not sent; the peer
    /// can still be sent to.
    #[error("the client reads too slowly: its outbox is full and the connection was cut")]
    Full,
    /// The connection has ended (or [`Outbox::close`](crate::Outbox::close) was called).
    #[error("the connection is closed")]
    Closed,
}

impl From<SendError> for io::Error {
    fn from(e: SendError) -> Self {
        let kind = match e {
            SendError::Full => io::ErrorKind::WouldBlock,
            SendError::Closed => io::ErrorKind::NotConnected,
        };
        io::Error::new(kind, e)
    }
}
