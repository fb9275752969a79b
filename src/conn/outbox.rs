//! Push: [`Outbox`], a handle that any thread uses to write to a
//! connection while its handler goes on reading (a chat room, a pub/sub
//! channel, a notification). How the bytes reach the socket is
//! `outbox_core.rs`'s part.

use std::fmt;
use std::sync::Arc;

use crate::conn::outbox_core::OutboxCore;
pub use crate::conn::outbox_core::SendError;
use crate::Addr;

/// A handle that writes to one connection from any thread; from
/// [`Connection::outbox`](crate::Connection::outbox).
///
/// Cheap to clone (an `Arc`), `Send + Sync + 'static`: keep it in a chat
/// room, a subscription list, a map of sessions. Sending never blocks the
/// caller. Holding it does not keep the connection open: once the
/// connection ends, sends return [`SendError::Closed`] at once, and its
/// socket is closed as usual.
///
/// ```
/// use std::io::{BufRead, BufReader, Write};
/// use std::sync::{Arc, Mutex};
/// use socketserver::{Connection, Outbox};
///
/// /// A line-broadcast chat: every line a client sends reaches every other.
/// fn chat(room: &Mutex<Vec<Outbox>>, conn: &mut Connection) -> std::io::Result<()> {
///     let me = conn.outbox();
///     room.lock().unwrap().push(me.clone());
///     let mut lines = BufReader::new(conn);
///     let mut line = String::new();
///     while lines.read_line(&mut line)? > 0 {
///         let msg: Arc<[u8]> = Arc::from(line.as_bytes());
///         // Closed and cut connections leave the room as they are met.
///         room.lock().unwrap().retain(|peer| {
///             peer.same_connection(&me) || peer.send_shared(msg.clone()).is_ok()
///         });
///         line.clear();
///     }
///     Ok(())
/// }
/// # let _ = chat;
/// ```
#[derive(Clone)]
pub struct Outbox {
    core: Arc<OutboxCore>,
}

impl Outbox {
    pub(crate) fn new(core: Arc<OutboxCore>) -> Self {
        Outbox { core }
    }

    /// Queues `bytes` as one message and returns without waiting: it is
    /// written whole, after every message sent before it and never inside
    /// one `write` of the handler. A copy is made only of what the socket
    /// does not take at once. For a datagram connection, sends one
    /// datagram to the peer.
    pub fn send(&self, bytes: &[u8]) -> Result<(), SendError> {
        self.core.send(bytes)
    }

    /// As [`send`](Self::send), for a message shared by many connections
    /// (fan-out): nothing is copied.
    pub fn send_shared(&self, bytes: Arc<[u8]>) -> Result<(), SendError> {
        self.core.send_shared(bytes)
    }

    /// Ends the connection once what is queued has been written: its
    /// client then reads end of file, and its handler's next read ends
    /// too. Later sends return [`SendError::Closed`]. With bytes still
    /// queued, the handler's read ends at once, and the end of the
    /// connection writes them within the write timeout: a client that has
    /// stopped reading is then cut, and the bytes left counted as dropped.
    pub fn close(&self) {
        self.core.close();
    }

    /// Whether the connection has ended, was cut as a slow consumer, its
    /// handler shut down its writing half
    /// ([`Connection::shutdown`](crate::Connection::shutdown)), or
    /// [`close`](Self::close) was called; for a datagram peer, whether the
    /// server has stopped. Once true, sends return [`SendError::Closed`].
    pub fn is_closed(&self) -> bool {
        self.core.is_closed()
    }

    /// The client's address, as the connection's
    /// [`peer_addr`](crate::Connection::peer_addr) says.
    pub fn peer_addr(&self) -> Addr {
        self.core.peer().clone()
    }

    /// Bytes queued and not yet written to the socket.
    pub fn queued(&self) -> usize {
        self.core.queued()
    }

    /// Whether both handles write to the same connection.
    pub fn same_connection(&self, other: &Outbox) -> bool {
        Arc::ptr_eq(&self.core, &other.core)
    }
}

impl fmt::Debug for Outbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbox")
            .field("peer", self.core.peer())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
