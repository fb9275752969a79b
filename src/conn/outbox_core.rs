//! What an [`Outbox`](crate::Outbox) and its connection share: the queue
//! of pushed bytes, and the turn to write to the socket.
//!
//! How a message reaches the socket, without making anyone wait:
//!
//! * One party writes to a connection's socket at a time: the *turn*
//!   (`Inner::writing`). A `send` that finds the turn free and nothing
//!   queued writes at once from the caller's thread, without blocking
//!   (`MSG_DONTWAIT`): the common case costs one system call, wakes no
//!   thread and parks no coroutine. What the socket does not take now is
//!   queued.
//! * A `send` that finds the turn taken queues its message and returns:
//!   whoever has the turn writes the queue before giving it up
//!   ([`OutboxCore::pump`]).
//! * What stays queued because the client reads slowly is written when its
//!   socket can take more: the server's [`Flusher`] thread waits for that
//!   and takes the turn then. A parked handler is not woken for it.
//! * The handler's own `write` takes the turn too, waiting for it only
//!   while another party makes one non-blocking write; it writes the queue
//!   first, then its bytes. So every message reaches the socket whole and
//!   in order, never cut into by another message or by one `write` of the
//!   handler.
//! * Unsent bytes are bounded by `max_outbox`: a `send` that would pass it
//!   finds a slow consumer, which is cut (counted in
//!   `Stats::slow_consumers`) so that its memory goes.
//!
//! * Over TLS every record the session makes, a push's or the handler's,
//!   is queued (or written) while the session is locked, so records reach
//!   the socket in the order they were made (`conn/tls_side.rs`).
//!
//! While bytes are queued the connection is not idle
//! ([`ConnState::set_queued`](crate::conn::state::ConnState::set_queued)):
//! a shutdown drains them as it drains a handler at work.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
#[cfg(feature = "tls")]
use std::sync::OnceLock;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

pub use crate::conn::send_error::SendError;

use crate::conn::flusher::Flusher;
use crate::conn::link::Link;
use crate::net::datagram::DatagramSocket;
use crate::stats::{add, Counters};
use crate::Addr;

enum Message<'a> {
    Borrowed(&'a [u8]),
    Shared(Arc<[u8]>),
    /// Records encrypted for this connection alone (TLS).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Owned(Vec<u8>),
}

impl Message<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Message::Borrowed(b) => b,
            Message::Shared(b) => b,
            Message::Owned(b) => b,
        }
    }

    /// What is left after `sent` bytes, to queue.
    fn rest(self, sent: usize) -> Arc<[u8]> {
        match self {
            Message::Shared(b) if sent == 0 => b,
            m => Arc::from(&m.bytes()[sent..]),
        }
    }
}

/// Where an outbox writes.
enum Target {
    /// A stream connection; weak, so that the outbox does not keep it open.
    Stream(Weak<Link>),
    /// The server's datagram socket, each message one datagram to `peer`.
    Datagram(DatagramSocket),
}

#[derive(Default)]
pub(super) struct Inner {
    /// Messages not yet written whole; the first from `offset` on.
    pub(super) queue: VecDeque<Arc<[u8]>>,
    pub(super) offset: usize,
    /// Bytes left to write, over the whole queue.
    pub(super) bytes: usize,
    /// Bytes written off the queue since the connection opened: where the
    /// handler's own queued records end is counted in these.
    pub(super) written: u64,
    /// Someone has the turn to write to the socket.
    pub(super) writing: bool,
    /// Threads waiting for the turn (`OutboxCore::turn`).
    pub(super) turn_waiters: usize,
    /// The socket became writable while someone had the turn: whoever has
    /// it tries again before giving it up.
    pub(super) retry: bool,
    /// No more messages are taken.
    pub(super) closed: bool,
    /// Nothing more will be written: the queue was dropped (`end_queue`).
    pub(super) ended: bool,
    /// `close()` was called: the connection ends once the queue is empty.
    pub(super) close_when_empty: bool,
}

/// What an [`Outbox`](crate::Outbox) and its connection share; see the module
/// documentation.
pub(crate) struct OutboxCore {
    target: Target,
    pub(super) peer: Addr,
    max: usize,
    pub(super) counters: Arc<Counters>,
    pub(super) flusher: Arc<Flusher>,
    /// Its key in the flusher.
    key: usize,
    inner: Mutex<Inner>,
    /// `Inner::closed`, to be read without the lock (a fan-out asks it of
    /// every subscriber). Relaxed: a stale `false` costs one send that
    /// fails with `Closed`.
    pub(super) closed: AtomicBool,
    /// The handler waits here for the turn.
    pub(super) turn: Condvar,
    /// The connection's TLS session, shared: pushes are encrypted through
    /// it (`conn/tls_side.rs`).
    #[cfg(feature = "tls")]
    tls: OnceLock<Arc<Mutex<crate::tls::Session>>>,
}

/// What an engine gives its connections so that each can have an outbox.
#[derive(Debug)]
pub(crate) struct PushSetup {
    /// `max_outbox`, in bytes.
    pub(crate) max: usize,
    pub(crate) counters: Arc<Counters>,
    pub(crate) flusher: Arc<Flusher>,
}

impl OutboxCore {
    pub(crate) fn stream(setup: &PushSetup, link: &Arc<Link>, peer: Addr) -> Arc<Self> {
        let core = Self::new(setup, Target::Stream(Arc::downgrade(link)), peer);
        setup.flusher.track(&core);
        core
    }

    pub(crate) fn datagram(setup: &PushSetup, socket: DatagramSocket, peer: Addr) -> Arc<Self> {
        Self::new(setup, Target::Datagram(socket), peer)
    }

    /// An outbox that takes nothing: sends fail with `Closed`.
    pub(crate) fn closed(setup: &PushSetup, peer: Addr) -> Arc<Self> {
        let core = Self::new(setup, Target::Stream(Weak::new()), peer);
        core.lock().closed = true;
        core.closed.store(true, Relaxed);
        core
    }

    /// Whether it writes to a stream (and so takes turns with the handler).
    pub(crate) fn is_stream(&self) -> bool {
        matches!(&self.target, Target::Stream(_))
    }

    fn new(setup: &PushSetup, target: Target, peer: Addr) -> Arc<Self> {
        Arc::new(OutboxCore {
            target,
            peer,
            max: setup.max,
            counters: Arc::clone(&setup.counters),
            key: setup.flusher.new_key(),
            flusher: Arc::clone(&setup.flusher),
            inner: Mutex::default(),
            closed: AtomicBool::new(false),
            turn: Condvar::new(),
            #[cfg(feature = "tls")]
            tls: OnceLock::new(),
        })
    }

    /// From now on, pushes are encrypted through `session`.
    #[cfg(feature = "tls")]
    pub(crate) fn set_tls(&self, session: Arc<Mutex<crate::tls::Session>>) {
        let _ = self.tls.set(session);
    }

    pub(crate) fn peer(&self) -> &Addr {
        &self.peer
    }

    pub(crate) fn is_closed(&self) -> bool {
        let gone = match &self.target {
            Target::Stream(link) => link.strong_count() == 0,
            // A datagram peer is reachable while the server runs.
            Target::Datagram(_) => self.flusher.stopped(),
        };
        gone || self.closed.load(Relaxed)
    }

    pub(crate) fn queued(&self) -> usize {
        self.lock().bytes
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // Only the queue and flags change under it; nothing that panics.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn link(&self) -> Option<Arc<Link>> {
        match &self.target {
            Target::Stream(link) => link.upgrade(),
            Target::Datagram(_) => None,
        }
    }

    pub(crate) fn send(self: &Arc<Self>, bytes: &[u8]) -> Result<(), SendError> {
        self.send_message(Message::Borrowed(bytes))
    }

    pub(crate) fn send_shared(self: &Arc<Self>, bytes: Arc<[u8]>) -> Result<(), SendError> {
        self.send_message(Message::Shared(bytes))
    }

    fn send_message(self: &Arc<Self>, msg: Message<'_>) -> Result<(), SendError> {
        if let Target::Datagram(socket) = &self.target {
            return self.send_datagram(socket, msg.bytes());
        }
        #[cfg(feature = "tls")]
        if let Some(session) = self.tls.get() {
            if msg.bytes().is_empty() {
                return Ok(());
            }
            // Held until the records are queued or written: records reach
            // the socket in the order the session made them.
            let mut session = session.lock().unwrap_or_else(|e| e.into_inner());
            // Nothing is sealed once no more is taken: a record made and
            // never sent would break the sequence of the records after it.
            if self.lock().closed {
                return Err(SendError::Closed);
            }
            let mut records = Vec::new();
            if session.seal(msg.bytes(), &mut records).is_err() {
                return Err(SendError::Closed);
            }
            return self.send_stream(Message::Owned(records));
        }
        self.send_stream(msg)
    }

    fn send_stream(self: &Arc<Self>, msg: Message<'_>) -> Result<(), SendError> {
        let len = msg.bytes().len();
        let mut inner = self.lock();
        if inner.closed {
            return Err(SendError::Closed);
        }
        if len == 0 {
            return Ok(());
        }
        if inner.writing || !inner.queue.is_empty() {
            if inner.bytes + len > self.max {
                drop(inner);
                self.cut_slow_consumer();
                return Err(SendError::Full);
            }
            inner.queue.push_back(msg.rest(0));
            inner.bytes += len;
            self.mark_queued(&inner);
            return Ok(());
        }
        // The fast path: the turn is free and nothing waits before this
        // message. Write what the socket takes now, queue the rest.
        inner.writing = true;
        drop(inner);
        let Some(link) = self.link() else {
            self.give_up_turn(self.lock());
            return Err(SendError::Closed);
        };
        let sent = match link.stream.send_now(msg.bytes()) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => 0,
            Err(_) => {
                // The client is gone: the handler's next read says so.
                self.end_queue();
                return Err(SendError::Closed);
            }
        };
        #[cfg(test)]
        crate::conn::failpoint::AFTER_PUSH_WRITE.reach();
        let mut inner = self.lock();
        if inner.ended {
            // The connection ended while this was being written: its queue
            // was dropped, and the rest of this message is dropped with it.
            let rest = len - sent;
            add(&self.counters.outbox_dropped, rest as u64);
            self.give_up_turn(inner);
            return if rest == 0 {
                Ok(())
            } else {
                Err(SendError::Closed)
            };
        }
        if sent == len {
            if inner.queue.is_empty() && !inner.close_when_empty {
                // Nothing came meanwhile, so the connection's mark of bytes
                // waiting is still clear, as it was when the turn was free.
                self.give_up_turn(inner);
                return Ok(());
            }
        } else {
            // Only what the socket did not take counts against the bound:
            // one large message to a client that reads is no slow consumer.
            if inner.bytes + (len - sent) > self.max {
                self.give_up_turn(inner);
                self.cut_slow_consumer();
                return Err(SendError::Full);
            }
            // Messages sent meanwhile were queued behind the turn: this
            // one's rest goes before them.
            inner.queue.push_front(msg.rest(sent));
            inner.bytes += len - sent;
            self.mark_queued(&inner);
        }
        drop(inner);
        self.pump(&link);
        Ok(())
    }

    fn send_datagram(&self, socket: &DatagramSocket, bytes: &[u8]) -> Result<(), SendError> {
        // After the server stops, its socket is no longer its own.
        if self.lock().closed || self.flusher.stopped() {
            return Err(SendError::Closed);
        }
        match socket.send_now(bytes, &self.peer) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(SendError::Full),
            // Too large a datagram, or no kernel memory for it: this one is
            // not sent, and the peer is still there.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EMSGSIZE | libc::ENOBUFS | libc::ENOMEM)
                ) =>
            {
                Err(SendError::Full)
            }
            // The peer's port is closed (an ICMP error came back), or the
            // server's socket is gone: nobody to send to.
            Err(_) => Err(SendError::Closed),
        }
    }

    /// Tells the connection's state whether bytes wait, so that shutdown
    /// neither calls it idle nor forgets it once they are written.
    pub(super) fn mark_queued(&self, inner: &Inner) {
        if let Some(link) = self.link() {
            if link.state.set_queued(inner.bytes > 0) {
                link.close_reading();
            }
        }
    }

    /// With the turn: writes the queue without blocking until it is empty
    /// (then gives up the turn) or the socket is full (then gives up the
    /// turn and has the flusher wait for room).
    pub(super) fn pump(self: &Arc<Self>, link: &Link) {
        loop {
            let mut inner = self.lock();
            inner.retry = false;
            let Some(front) = inner.queue.front().cloned() else {
                let close = inner.close_when_empty;
                self.mark_queued(&inner);
                self.give_up_turn(inner);
                if close {
                    link.cut();
                }
                return;
            };
            let offset = inner.offset;
            drop(inner);
            match link.stream.send_now(&front[offset..]) {
                Ok(n) => self.consumed(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let inner = self.lock();
                    if inner.retry {
                        continue;
                    }
                    self.give_up_turn(inner);
                    if let Err(e) = self.flusher.wait_writable(self, link.stream.as_raw_fd()) {
                        crate::report::log_or_eprint(
                            log::Level::Debug,
                            &format!("cannot wait for {} to read: {e}", self.peer),
                        );
                    }
                    return;
                }
                Err(_) => {
                    // The client is gone; the handler's next read says so.
                    self.end_queue();
                    return;
                }
            }
        }
    }

    /// Gives up the turn to write, waking the handler if it waits for it.
    /// Only then: a wake is a system call even with nobody waiting, and a
    /// push that writes at once takes and gives up the turn each time.
    pub(super) fn give_up_turn(&self, mut inner: MutexGuard<'_, Inner>) {
        inner.writing = false;
        let waiting = inner.turn_waiters > 0;
        drop(inner);
        if waiting {
            self.turn.notify_all();
        }
    }

    /// `n` more bytes of the queue were written.
    pub(super) fn consumed(&self, mut n: usize) {
        let mut inner = self.lock();
        // A shutdown that is done may have ended the queue meanwhile
        // (`Flusher::end_all`): what was written of it is written.
        inner.bytes = inner.bytes.saturating_sub(n);
        inner.written += n as u64;
        while n > 0 {
            let Some(front) = inner.queue.front() else {
                break;
            };
            let left = front.len() - inner.offset;
            if n < left {
                inner.offset += n;
                break;
            }
            n -= left;
            inner.offset = 0;
            inner.queue.pop_front();
        }
    }

    /// The flusher saw the socket take more: write, or have whoever has
    /// the turn try again.
    pub(crate) fn on_writable(self: &Arc<Self>) {
        let mut inner = self.lock();
        if inner.writing {
            inner.retry = true;
            return;
        }
        if inner.queue.is_empty() {
            return;
        }
        inner.writing = true;
        drop(inner);
        match self.link() {
            Some(link) => self.pump(&link),
            None => self.end_queue(),
        }
    }

    pub(crate) fn key(&self) -> usize {
        self.key
    }
}

impl fmt::Debug for OutboxCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxCore")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}
