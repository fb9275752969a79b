//! A connection's TLS session, as its handler and its outbox share it.
//!
//! Without an outbox the handler alone uses the session, as it always
//! did: each read and write goes straight through it (`tls/session.rs`).
//!
//! With one, pushes encrypt through the same session from other threads.
//! So the session is locked for each step, never across a wait on the
//! socket, and every record it makes (the handler's, a push's, a key
//! update's answer, an alert, `close_notify`) is put in the outbox's one
//! queue while the lock is held: records reach the socket in the order
//! they were made, as TLS requires. The handler's write then writes the
//! queue up to its own records; its read reads records off the socket
//! unlocked, then feeds them to the session.

use std::io::{self, Read};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::conn::io::SocketIo;
use crate::conn::outbox_core::OutboxCore;
use crate::tls::{Facts, Session, TlsAcceptor, TlsInfo};

/// Records read off the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// See the module documentation.
pub(crate) struct TlsSide {
    session: Arc<Mutex<Session>>,
    facts: Facts,
    /// Records read off the socket and not yet taken by the session,
    /// while an outbox shares it.
    records: Vec<u8>,
}

impl TlsSide {
    pub(crate) fn handshake(
        acceptor: &TlsAcceptor,
        io: &mut SocketIo,
        limit: Duration,
    ) -> io::Result<Self> {
        let session = Session::handshake(acceptor, io, limit)?;
        Ok(TlsSide {
            facts: session.facts(),
            session: Arc::new(Mutex::new(session)),
            records: Vec::new(),
        })
    }

    pub(crate) fn info(&self) -> TlsInfo<'_> {
        TlsInfo::new(&self.facts)
    }

    fn lock(&self) -> MutexGuard<'_, Session> {
        // A panic under the lock (in rustls) leaves a session no worse than
        // its error would: the connection fails at its next record.
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the client broke the session, and `error` (the handler's) is
    /// that failure (see `Session::broken`).
    pub(crate) fn broken(&self, error: &io::Error) -> bool {
        self.lock().broken(error)
    }

    /// The session, for an outbox to encrypt its pushes through. What a
    /// write that timed out left unsent goes first in its queue.
    pub(crate) fn share(&self, outbox: &Arc<OutboxCore>) -> Arc<Mutex<Session>> {
        let unsent = self.lock().take_unsent();
        outbox.enqueue(unsent);
        Arc::clone(&self.session)
    }

    pub(crate) fn read(
        &mut self,
        io: &mut SocketIo,
        outbox: Option<&Arc<OutboxCore>>,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        let Some(outbox) = outbox else {
            return self.lock().read(io, buf);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            {
                let mut session = self.lock();
                if let Some(n) = session.take_plaintext(buf)? {
                    return Ok(n);
                }
                let mut owed = Vec::new();
                session.owed(&mut owed)?;
                outbox.enqueue(owed);
            }
            outbox.kick();
            if self.records.is_empty() {
                self.records.resize(READ_CHUNK, 0);
                let n = io
                    .read(&mut self.records)
                    .inspect_err(|_| self.records.clear())?;
                self.records.truncate(n);
                if n == 0 {
                    // Closed without `close_notify`: end of file, as most
                    // TLS stacks read it (see `Connection`'s `read`).
                    return Ok(0);
                }
            }
            let fed = {
                let mut session = self.lock();
                let fed = session.feed(&self.records);
                let mut owed = Vec::new();
                // The alert that says why, if a record was bad.
                let _ = session.owed(&mut owed);
                outbox.enqueue(owed);
                fed
            };
            outbox.kick();
            match fed? {
                // Taken by neither plaintext nor `close_notify` (which
                // reads as the end): never so; an error rather than a spin.
                0 => return Err(io::Error::other("the TLS session takes no more records")),
                taken => drop(self.records.drain(..taken)),
            }
        }
    }

    pub(crate) fn write(
        &mut self,
        io: &mut SocketIo,
        outbox: Option<&Arc<OutboxCore>>,
        buf: &[u8],
    ) -> io::Result<usize> {
        let Some(outbox) = outbox else {
            return self.lock().write(io, buf);
        };
        let end = {
            let mut session = self.lock();
            let mut records = Vec::new();
            session.seal(buf, &mut records)?;
            outbox.enqueue(records)
        };
        outbox.write_until(io, end)?;
        Ok(buf.len())
    }

    pub(crate) fn flush(
        &mut self,
        io: &mut SocketIo,
        outbox: Option<&Arc<OutboxCore>>,
    ) -> io::Result<()> {
        match outbox {
            None => self.lock().flush(io),
            Some(outbox) => {
                let end = outbox.enqueue(Vec::new());
                outbox.write_until(io, end)
            }
        }
    }

    /// Sends `close_notify`, once: waiting within the write timeout if
    /// `wait`, otherwise only what the socket takes at once (the rest, with
    /// an outbox, goes with what it still holds).
    pub(crate) fn close_notify(
        &mut self,
        io: &mut SocketIo,
        outbox: Option<&Arc<OutboxCore>>,
        wait: bool,
    ) -> io::Result<()> {
        let Some(outbox) = outbox else {
            return self.lock().close_notify(io, wait);
        };
        let end = {
            let mut session = self.lock();
            // No push is sealed after the session's last record.
            outbox.refuse_more();
            let mut records = Vec::new();
            session.seal_close_notify(&mut records)?;
            outbox.enqueue(records)
        };
        match wait {
            true => outbox.write_until(io, end),
            false => {
                outbox.kick();
                Ok(())
            }
        }
    }
}
