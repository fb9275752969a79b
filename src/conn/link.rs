//! A connection as more than one party reaches it: its socket and its
//! state, shared by the handler's I/O and by whoever may have to close it
//! (shutdown, the connection deadline). One per connection, in both
//! engines; dropping the last reference closes the socket.

use std::net::Shutdown;
use std::sync::Arc;

use crate::conn::state::ConnState;
use crate::net::stream::Stream;

/// One accepted stream connection and its [`ConnState`].
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) stream: Stream,
    pub(crate) state: ConnState,
}

impl Link {
    pub(crate) fn new(stream: Stream) -> Arc<Link> {
        Arc::new(Link {
            stream,
            state: ConnState::default(),
        })
    }

    /// Shutdown has begun: an idle connection gets end of file now
    /// (`shutdown(SHUT_RD)`: bytes already received are still read first;
    /// a thread blocked in `read` returns, a parked read is woken by the
    /// readiness it raises); any other gets it at its next idle read.
    /// Returns whether it was idle now.
    pub(crate) fn close_if_idle(&self) -> bool {
        let idle = self.state.shutdown_begins();
        if idle {
            self.close_reading();
        }
        idle
    }

    /// The grace of new connections is over: one that has received nothing
    /// yet is closed as an idle one is. Returns whether it was.
    pub(crate) fn close_if_new(&self) -> bool {
        let new = self.state.grace_over();
        if new {
            self.close_reading();
        }
        new
    }

    /// Ends the reading side: what was received is still read, then end of
    /// file.
    pub(crate) fn close_reading(&self) {
        // ENOTCONN when the peer is already gone: nothing left to close.
        let _ = self.stream.shutdown(Shutdown::Read);
    }

    /// Shuts the socket down both ways, so that blocked or parked reads
    /// and writes return and every later one fails (a read gives end of
    /// file, however much the client goes on sending): the end of a
    /// connection past its deadline, of one a shutdown gave up on, or of a
    /// slow consumer.
    pub(crate) fn cut(&self) {
        self.state.end_reading();
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    /// Ends the client's input for good: a blocked read returns, and every
    /// later one gives end of file, whatever the client sends meanwhile.
    pub(crate) fn end_reading(&self) {
        self.state.end_reading();
        self.close_reading();
    }
}
