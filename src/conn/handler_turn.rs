//! The connection's own side of its outbox: its handler's writes (and,
//! over TLS, every record its session makes) take turns with the pushes,
//! and its end writes what is left.

use std::io::{self, Write};
use std::sync::Arc;

use crate::conn::io::SocketIo;
use crate::conn::outbox_core::OutboxCore;

impl OutboxCore {
    /// Queues `bytes` (the handler's own records, over TLS) after whatever
    /// is queued; returns where they end, for
    /// [`write_until`](Self::write_until).
    pub(crate) fn enqueue(&self, bytes: Vec<u8>) -> u64 {
        let mut inner = self.lock();
        if !bytes.is_empty() {
            inner.bytes += bytes.len();
            inner.queue.push_back(Arc::from(bytes));
            self.mark_queued(&inner);
        }
        inner.written + inner.bytes as u64
    }

    /// Writes what is queued without blocking, if no one has the turn.
    #[cfg(feature = "tls")]
    pub(crate) fn kick(self: &Arc<Self>) {
        let mut inner = self.lock();
        if inner.writing || inner.queue.is_empty() {
            return;
        }
        inner.writing = true;
        drop(inner);
        self.end_turn();
    }

    /// The handler writes the queue, in its own blocking (or parking) way,
    /// up to `end` (from [`enqueue`](Self::enqueue)).
    pub(crate) fn write_until(self: &Arc<Self>, io: &mut SocketIo, end: u64) -> io::Result<()> {
        self.begin_turn();
        let written = self.write_queue(io, end);
        self.end_turn();
        written
    }

    /// With the turn: writes the queue up to `end`.
    fn write_queue(&self, io: &mut SocketIo, end: u64) -> io::Result<()> {
        loop {
            if self.lock().written >= end {
                return Ok(());
            }
            let Some((msg, offset)) = self.next_queued() else {
                return Err(io::ErrorKind::NotConnected.into());
            };
            match io.write(&msg[offset..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.consumed(n),
                Err(e) => return Err(e),
            }
        }
    }

    /// The handler is about to write: waits for the turn (held by others
    /// only for one non-blocking write at a time) and takes it. Then
    /// [`next_queued`](Self::next_queued) gives the queue to write first,
    /// and [`end_turn`](Self::end_turn) gives the turn up.
    pub(crate) fn begin_turn(&self) {
        let mut inner = self.lock();
        while inner.writing {
            inner.turn_waiters += 1;
            inner = self.turn.wait(inner).unwrap_or_else(|e| e.into_inner());
            inner.turn_waiters -= 1;
        }
        inner.writing = true;
    }

    /// With the turn: the next queued bytes to write, if any.
    pub(crate) fn next_queued(&self) -> Option<(Arc<[u8]>, usize)> {
        let inner = self.lock();
        inner.queue.front().map(|f| (Arc::clone(f), inner.offset))
    }

    /// Gives up the turn the handler took, writing (without blocking) what
    /// was queued meanwhile.
    pub(crate) fn end_turn(self: &Arc<Self>) {
        match self.link() {
            Some(link) => self.pump(&link),
            None => self.end_queue(),
        }
    }

    /// The handler shuts down the writing half: no more messages are
    /// taken, and every one taken before, a push being written meanwhile
    /// included, is written whole first (within the write timeout), so
    /// that the end of the stream never cuts a message. What cannot be
    /// written is dropped and counted.
    pub(crate) fn finish(self: &Arc<Self>, io: &mut SocketIo) -> io::Result<()> {
        self.refuse_more();
        // Waits for a push in the middle of its write: its rest is queued,
        // and nothing comes after it.
        self.begin_turn();
        let all = self.enqueue(Vec::new());
        let written = self.write_queue(io, all);
        match written {
            Ok(()) => self.end_turn(),
            Err(_) => self.end_queue(),
        }
        written
    }

    /// The connection ends: no more messages are taken; what is still
    /// queued (the handler wrote what it could first) is dropped and
    /// counted. A push in the middle of its write meanwhile counts the
    /// rest of its message itself (`Inner::ended`).
    pub(crate) fn end(&self) {
        #[cfg(test)]
        crate::conn::failpoint::BEFORE_END.reach();
        self.end_queue();
        self.flusher.forget(self.key());
    }

    /// The handler's `write` on a connection that may be pushed to: in the
    /// writing turn, what was queued first, then all of `buf`, so that no
    /// message lands inside it. A failure after some of `buf` went out returns
    /// that count; the next write reports the failure.
    pub(crate) fn write_in_turn(
        self: &Arc<Self>,
        io: &mut SocketIo,
        buf: &[u8],
    ) -> io::Result<usize> {
        self.begin_turn();
        let written = (|| {
            while let Some((msg, offset)) = self.next_queued() {
                match io.write(&msg[offset..])? {
                    0 => return Err(io::ErrorKind::WriteZero.into()),
                    n => self.consumed(n),
                }
            }
            let mut done = 0;
            while done < buf.len() {
                match io.write(&buf[done..]) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => done += n,
                    Err(_) if done > 0 => break,
                    Err(e) => return Err(e),
                }
            }
            Ok(done)
        })();
        self.end_turn();
        written
    }
}
