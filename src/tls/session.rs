//! One connection's TLS session over its socket: the handshake within a
//! deadline, then plaintext reads and writes, then `close_notify`.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use rustls::ServerConnection;

use super::info::Facts;
use super::TlsAcceptor;
use crate::deadline::deadline_after;
use crate::tls::bounds::{send_within, Bounds};

/// What a TLS session needs of the socket under it (the connection's own
/// plaintext socket, with its timeouts).
pub(crate) trait PlainIo: Read + Write {
    /// The read and write timeouts the handler has set (as last set, not
    /// asked of the socket again).
    fn timeouts(&self) -> (Option<Duration>, Option<Duration>);
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;
    /// Counts the connection as waiting for its client's first request,
    /// or as in the middle of it; either ends the handshake's
    /// [`set_opening`](Self::set_opening).
    fn set_awaiting(&mut self, awaiting: bool);
    /// The handshake begins: what is written until `set_awaiting` answers
    /// no request.
    fn set_opening(&mut self);
    /// Writes what the socket takes now, never waiting.
    fn write_now(&mut self, buf: &[u8]) -> io::Result<usize>;
}

/// A TLS session whose handshake is done.
pub(crate) struct Session {
    conn: ServerConnection,
    /// `close_notify` has been queued: nothing more may be written.
    closed: bool,
    /// Records taken from rustls that the socket has not taken yet (a
    /// write that timed out midway): sent first by the next write, so a
    /// handler that tries again after `TimedOut` goes on with a whole
    /// stream, as over a plain socket.
    unsent: Vec<u8>,
    /// A read has failed with rustls's error: the session is over (see
    /// [`broken`](Self::broken)).
    failed: bool,
}

impl Session {
    /// Runs the server's side of the handshake over `io`, all of it within
    /// `limit`, however the client's bytes trickle in. The socket's own
    /// timeouts are put back afterwards.
    pub(crate) fn handshake(
        acceptor: &TlsAcceptor,
        io: &mut impl PlainIo,
        limit: Duration,
    ) -> io::Result<Session> {
        let mut conn = ServerConnection::new(acceptor.config())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let saved = io.timeouts();
        io.set_opening();
        let deadline = deadline_after(Instant::now(), limit);
        let done = drive(&mut conn, io, deadline, limit);
        // The handler's timeouts again, and a clean stall flag; the
        // handshake's own error, if any, is the one to tell.
        let restored = io
            .set_read_timeout(saved.0)
            .and_then(|()| io.set_write_timeout(saved.1));
        done?;
        restored?;
        // The handshake was no request: the connection waits for its
        // first, unless that came with the client's last handshake message.
        let early = conn
            .process_new_packets()
            .map_or(0, |state| state.plaintext_bytes_to_read());
        io.set_awaiting(early == 0);
        Ok(Session {
            conn,
            closed: false,
            unsent: Vec::new(),
            failed: false,
        })
    }

    /// What the handshake settled, kept for the connection's lifetime.
    pub(crate) fn facts(&self) -> Facts {
        Facts::of(&self.conn)
    }

    // The session taken apart, for a connection with an outbox: there the
    // session is shared behind a lock with whoever pushes, never held
    // across a wait on the socket, and every record it makes goes out
    // through the outbox's one ordered queue (`conn/tls_side.rs`).

    /// Records a write that timed out left unsent, to go out first.
    pub(crate) fn take_unsent(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.unsent)
    }

    /// Encrypts all of `buf` into records appended to `out`, after any the
    /// session owes.
    pub(crate) fn seal(&mut self, buf: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        if self.closed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the TLS session's writing side was shut down (close_notify sent)",
            ));
        }
        let mut done = 0;
        loop {
            self.owed(out)?;
            if done == buf.len() {
                return Ok(());
            }
            // rustls takes up to its buffer limit; `owed` empties it.
            done += self.conn.writer().write(&buf[done..])?;
        }
    }

    /// Appends to `out` the records the session owes the client (a key
    /// update's answer, an alert).
    pub(crate) fn owed(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(out)?;
        }
        Ok(())
    }

    /// Queues `close_notify`, once, into `out`.
    pub(crate) fn seal_close_notify(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        if !std::mem::replace(&mut self.closed, true) {
            self.conn.send_close_notify();
        }
        self.owed(out)
    }

    /// Plaintext already decrypted, into `buf`: `None` when more must be
    /// read off the socket first; `Some(0)` at the end of the stream (a
    /// client that closes without `close_notify` too).
    pub(crate) fn take_plaintext(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.conn.reader().read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(Some(0)),
            Err(e) => Err(e),
        }
    }

    /// Takes records read off the socket, until some plaintext is ready
    /// to be read, or the session takes no more (after the client's
    /// `close_notify`). Returns how many bytes it took: the caller keeps
    /// the rest for later. rustls holds at most 16 KiB of plaintext and
    /// refuses records past that, so the plaintext goes first. On a bad
    /// record the alert that says why is left owed.
    pub(crate) fn feed(&mut self, records: &[u8]) -> io::Result<usize> {
        let mut rest = records;
        while !rest.is_empty() {
            if self.conn.read_tls(&mut rest)? == 0 {
                break;
            }
            match self.conn.process_new_packets() {
                Err(e) => return Err(self.failure(e)),
                Ok(state) if state.plaintext_bytes_to_read() > 0 => break,
                Ok(_) => {}
            }
        }
        Ok(records.len() - rest.len())
    }

    /// Reads plaintext. A client that closes without `close_notify` reads
    /// as end of file too.
    pub(crate) fn read(&mut self, io: &mut impl PlainIo, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            // What the session owes the client first (a key update's answer).
            self.send(io)?;
            match self.conn.read_tls(io) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            if let Err(e) = self.conn.process_new_packets() {
                // The alert that says why, if the socket takes it.
                let _ = self.send(io);
                return Err(self.failure(e));
            }
        }
    }

    /// A read's error for rustls's `error` on the client's records: an
    /// `InvalidData` error carrying it, as it is (a handler may look at it
    /// with `get_ref`). The session is marked as failed.
    fn failure(&mut self, error: rustls::Error) -> io::Error {
        self.failed = true;
        io::Error::new(io::ErrorKind::InvalidData, error)
    }

    /// Whether a read of this session failed on the client's records, and
    /// `error`, as a handler returned it, carries a rustls error of the
    /// client's making (see [`client_broke_tls`]).
    pub(crate) fn broken(&self, error: &io::Error) -> bool {
        self.failed && client_broke_tls(error)
    }

    /// Encrypts and sends `buf` (or as much of it as rustls takes at once),
    /// all of it sent before returning, as a plain socket's write is.
    pub(crate) fn write(&mut self, io: &mut impl PlainIo, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the TLS session's writing side was shut down (close_notify sent)",
            ));
        }
        // What an earlier write left goes first; its error, if it fails
        // again, is this write's.
        if !self.unsent.is_empty() {
            self.send(io)?;
        }
        // rustls takes up to its buffer limit; sending empties it.
        let mut n = self.conn.writer().write(buf)?;
        if n == 0 && !buf.is_empty() {
            self.send(io)?;
            n = self.conn.writer().write(buf)?;
        }
        match self.send(io) {
            // As a plain socket's write that timed out midway: the count
            // taken, and the error at the next write. What the socket did
            // not take goes first then; until it has gone, no close_notify
            // can, so a client never takes a cut reply for a whole one.
            Err(_) if n > 0 => Ok(n),
            Err(e) => Err(e),
            Ok(()) => Ok(n),
        }
    }

    /// Sends what an earlier write left unsent, waiting within the write
    /// timeout.
    pub(crate) fn flush(&mut self, io: &mut impl PlainIo) -> io::Result<()> {
        self.send(io)
    }

    /// Sends `close_notify`, once: blocking within the write timeout if
    /// `wait`, otherwise only if the socket takes it at once (for the
    /// server's own close, which must not wait on a client that stopped
    /// reading).
    pub(crate) fn close_notify(&mut self, io: &mut impl PlainIo, wait: bool) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.conn.send_close_notify();
        match wait {
            true => self.send(io),
            false => self.send_with(|bytes| io.write_now(bytes)),
        }
    }

    /// Sends every record queued (and any left unsent before).
    fn send(&mut self, io: &mut impl PlainIo) -> io::Result<()> {
        self.send_with(|bytes| io.write(bytes))
    }

    fn send_with(&mut self, mut write: impl FnMut(&[u8]) -> io::Result<usize>) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.unsent)?;
        }
        let mut sent = 0;
        let result = loop {
            if sent == self.unsent.len() {
                break Ok(());
            }
            match write(&self.unsent[sent..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.unsent.drain(..sent);
        // An idle connection keeps no large buffer.
        if self.unsent.is_empty() && self.unsent.capacity() > 16 * 1024 {
            self.unsent = Vec::new();
        }
        result
    }
}

/// The handshake's steps until it is done, each read and write bounded by
/// what is left until `deadline`.
fn drive(
    conn: &mut ServerConnection,
    io: &mut impl PlainIo,
    deadline: Instant,
    limit: Duration,
) -> io::Result<()> {
    let mut bounds = Bounds {
        deadline,
        limit,
        read: None,
        write: None,
    };
    let mut received = false;
    loop {
        if conn.wants_write() {
            send_within(conn, io, &mut bounds)?;
        }
        if !conn.is_handshaking() {
            return Ok(());
        }
        bounds.before_read(io)?;
        match conn.read_tls(io) {
            Ok(0) if !received => {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, SentNothing))
            }
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the client closed the connection during the TLS handshake",
                ))
            }
            Ok(_) => received = true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if !received && e.kind() == io::ErrorKind::ConnectionReset => {
                return Err(io::Error::new(io::ErrorKind::ConnectionReset, SentNothing))
            }
            Err(e) => return Err(bounds.worded(e)),
        }
        if let Err(e) = conn.process_new_packets() {
            // The alert that tells the client why, if the socket takes it.
            while conn.wants_write() {
                if !matches!(conn.write_tls(&mut NoWait(io)), Ok(n) if n > 0) {
                    break;
                }
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("TLS handshake failed: {e}"),
            ));
        }
    }
}

/// Why a handshake ended before it began: the client closed or reset the
/// connection before its first TLS byte, as a TCP health check or a port
/// scan does (after a PROXY header, if one is expected). No TLS client
/// failed, so it is neither counted nor reported.
#[derive(Debug)]
struct SentNothing;

impl std::fmt::Display for SentNothing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client closed the connection without starting a TLS handshake")
    }
}

impl std::error::Error for SentNothing {}

/// Whether a handshake's error says the client sent nothing at all.
pub(crate) fn sent_nothing(error: &io::Error) -> bool {
    error.get_ref().is_some_and(|e| e.is::<SentNothing>())
}

/// Whether `error` carries a rustls error that the client's records
/// caused: a fatal alert it sent (rustls's `AlertReceived`: a client that
/// gives up, a TLS 1.2 client whose renegotiation the server declined with
/// a `no_renegotiation` warning), a record that does not decrypt or parse,
/// a message TLS does not allow there (a second renegotiation request
/// after the first was declined: `PeerMisbehaved`). The rustls error is
/// looked for in `error` and the errors it wraps, as a handler may have
/// wrapped the read's error in one of its own. Errors of the server's own
/// making (no random bytes, a record too large to encrypt, and the like)
/// are not the client's.
fn client_broke_tls(error: &io::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = error.get_ref().map(|e| e as _);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return matches!(
                tls,
                rustls::Error::AlertReceived(_)
                    | rustls::Error::DecryptError
                    | rustls::Error::InvalidMessage(_)
                    | rustls::Error::InappropriateMessage { .. }
                    | rustls::Error::InappropriateHandshakeMessage { .. }
                    | rustls::Error::PeerMisbehaved(_)
                    | rustls::Error::PeerIncompatible(_)
                    | rustls::Error::PeerSentOversizedRecord
            );
        }
        // An `io::Error`'s `source` is its inner error's source, past the
        // inner error itself.
        next = match e.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|e| e as _),
            None => e.source(),
        };
    }
    false
}

/// Writes to the socket only what it takes at once.
struct NoWait<'a, S>(&'a mut S);

impl<S: PlainIo> Write for NoWait<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write_now(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carrying(error: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, error)
    }

    #[test]
    fn what_the_client_broke_is_told_by_the_rustls_error_inside() {
        use rustls::AlertDescription;
        assert!(client_broke_tls(&carrying(rustls::Error::AlertReceived(
            AlertDescription::HandshakeFailure
        ))));
        assert!(client_broke_tls(&carrying(rustls::Error::DecryptError)));
        assert!(client_broke_tls(&carrying(
            rustls::PeerMisbehaved::TooManyRenegotiationRequests.into()
        )));
        // Wrapped by a handler, in an `io::Error` or an error of its own.
        let wrapped = io::Error::other(carrying(rustls::Error::DecryptError));
        assert!(client_broke_tls(&wrapped));
        #[derive(Debug)]
        struct Request(io::Error);
        impl std::fmt::Display for Request {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("reading the request")
            }
        }
        impl std::error::Error for Request {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let own = io::Error::other(Request(carrying(rustls::Error::AlertReceived(
            AlertDescription::BadRecordMac,
        ))));
        assert!(client_broke_tls(&own));
        // The server's own trouble, and errors that carry no rustls error,
        // the same words included.
        assert!(!client_broke_tls(&carrying(
            rustls::Error::FailedToGetRandomBytes
        )));
        assert!(!client_broke_tls(&carrying(rustls::Error::EncryptError)));
        assert!(!client_broke_tls(&io::Error::new(
            io::ErrorKind::InvalidData,
            "received fatal alert: HandshakeFailure"
        )));
        assert!(!client_broke_tls(&io::ErrorKind::UnexpectedEof.into()));
    }
}
