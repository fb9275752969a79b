//! A datagram worker's batch: the datagrams it takes off the socket in one
//! call ([`Incoming`]), and their replies, sent back together in one call when
//! the batch has been served ([`Replies`]).
//!
//! One worker receives at a time (the others stand by, see `worker`). A
//! batch is what is already waiting when it receives: it never waits for
//! more, so under light load a batch is one datagram and nothing is held
//! back. Under load, one `recvmmsg` and one `sendmmsg` replace two system
//! calls per datagram, the pool's books are kept once per batch, and the
//! clients answered are woken together.
//!
//! Between batches the receiving worker polls the socket for a moment
//! ([`POLL`]) before it sleeps in the kernel, while datagrams keep coming
//! that soon: going to sleep and being woken again costs more than such a
//! wait (most of a round trip on a virtual machine), and a thread that
//! never sleeps also spares the others being woken for each datagram.
//!
//! Datagrams of one batch are served one after the other by one worker, so
//! a slow handler holds up the rest of its batch. A batch is therefore
//! sized to the handler: after each one the worker sets the next batch's
//! size to what it gets through in about [`BUDGET`], from 1 (a datagram at
//! a time, as without batches) to [`SLOTS`]. A batch expected to take
//! longer than [`HAND_OFF`] is served while another worker takes over the
//! receiving, as is one that turns out long (the run thread sees to it).

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use socket2::SockAddr;

use super::datagram::{unanswerable, DatagramSocket};
use crate::sys::mmsg::{Outgoing, RecvBatch, SendBatch};
use crate::Addr;

/// The most datagrams one receive takes, and the most replies one send
/// carries.
pub(crate) const SLOTS: usize = 32;
/// The time a batch is sized to take: about the longest that the last
/// datagram of a batch waits behind the others.
pub(crate) const BUDGET: Duration = Duration::from_micros(500);
/// A batch expected to take longer is served while another worker
/// receives: worth waking a thread for.
pub(crate) const HAND_OFF: Duration = Duration::from_micros(200);
/// How long the receiving worker polls the socket before it sleeps.
pub(crate) const POLL: Duration = Duration::from_micros(50);
/// A yield between polls that took longer than this gave the CPU to
/// another thread: the machine has other work for it (the clients, on a
/// small machine), which polling would hold up, so polling stops there
/// and the worker sleeps in the receive.
const YIELDED: Duration = Duration::from_micros(10);
/// After polls that found nothing, the receives that skip polling: at
/// most this many, so a server that turns busy again polls again soon.
const MAX_POLL_SKIP: u32 = 63;
/// Replies up to this size wait for the end of the batch; a larger one is
/// sent at once (after those waiting, so that order is kept).
const HELD_REPLY_MAX: usize = 4096;
/// Bytes of replies held at most; beyond, those held are sent first.
const HELD_BYTES_MAX: usize = 64 * 1024;
/// The largest reply datagram: the most UDP carries over IPv4.
const REPLY_MAX: usize = 65_507;

/// The receiving side of a worker's batches.
pub(crate) struct Incoming {
    recv: RecvBatch,
    /// One slot of `stride` bytes per datagram; lent to each handler's
    /// `Connection` while it runs.
    pub(crate) arena: Vec<u8>,
    /// The slot size: one byte more than the largest datagram served, so
    /// that a datagram that fills it is known to be too large.
    pub(crate) stride: usize,
    slots: usize,
    /// How many datagrams the next receive may take (1..=`slots`).
    limit: usize,
    /// How long a datagram took to serve, replies sent, in the last batch;
    /// `None` before the first.
    each: Option<Duration>,
    /// Whether the socket is a Unix-domain one.
    unix: bool,
    /// Receives to come that skip polling, after polls that found nothing.
    poll_skip: u32,
    /// What `poll_skip` is set to after the next poll that finds nothing:
    /// doubled each time, so an idle server soon hardly polls at all.
    poll_backoff: u32,
}

impl Incoming {
    /// Batches for datagrams of up to `max_datagram` bytes from `socket`.
    /// The arena is allocated zeroed and untouched, so only the pages that
    /// datagrams are written to become resident.
    pub(crate) fn new(socket: &DatagramSocket, max_datagram: usize) -> Self {
        let stride = max_datagram + 1;
        Incoming {
            recv: RecvBatch::new(SLOTS),
            arena: vec![0u8; stride * SLOTS],
            stride,
            slots: SLOTS,
            // The first batch is one datagram: nothing is known yet of how
            // long the handler takes.
            limit: 1,
            each: None,
            unix: matches!(socket, DatagramSocket::Unix(_)),
            poll_skip: 0,
            poll_backoff: 0,
        }
    }

    /// Receives a batch: waits until one datagram comes (or the socket's
    /// receive timeout passes), and takes those waiting behind it, up to
    /// the current limit. Returns how many came.
    ///
    /// Unless recent polls found nothing, it first polls the socket for up
    /// to [`POLL`], yielding the CPU between polls (to the clients, on a
    /// small machine). Ends at once, with `WouldBlock`, when `stopping`
    /// says so.
    pub(crate) fn receive(
        &mut self,
        socket: &DatagramSocket,
        stopping: impl Fn() -> bool,
    ) -> io::Result<usize> {
        // A `Connection` that was not given back took the arena with it.
        if self.arena.len() < self.stride * self.slots {
            self.arena = vec![0u8; self.stride * self.slots];
        }
        let began = Instant::now();
        if self.poll_skip > 0 {
            self.poll_skip -= 1;
        } else {
            loop {
                let polled =
                    self.recv
                        .recv(socket.fd(), &mut self.arena, self.stride, self.limit, false);
                match polled {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    polled => {
                        self.poll_backoff = 0;
                        return polled;
                    }
                }
                if stopping() {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let now = Instant::now();
                if now.duration_since(began) >= POLL {
                    break;
                }
                std::thread::yield_now();
                // The CPU went to another thread meanwhile: polling takes
                // it from others that have work (the clients, say), and
                // sleeping would serve them better.
                if now.elapsed() > YIELDED {
                    break;
                }
            }
            self.poll_backoff = (self.poll_backoff * 2 + 1).min(MAX_POLL_SKIP);
            self.poll_skip = self.poll_backoff;
        }
        let received = self
            .recv
            .recv(socket.fd(), &mut self.arena, self.stride, self.limit, true);
        // A datagram that came within the polling time: polling pays again.
        if received.is_ok() && began.elapsed() <= POLL {
            (self.poll_skip, self.poll_backoff) = (0, 0);
        }
        received
    }

    /// Whether serving `n` datagrams is expected to take longer than
    /// [`HAND_OFF`], going by the last batch (or nothing known yet).
    pub(crate) fn expect_long(&self, n: usize) -> bool {
        self.each
            .is_none_or(|each| each.saturating_mul(n as u32) > HAND_OFF)
    }

    /// The `i`th datagram of the last receive: where it lies in the arena,
    /// its length (`stride` if it was larger), and its source, `None` if the
    /// kernel gave none that can be read.
    pub(crate) fn datagram(&self, i: usize) -> (usize, usize, Option<Addr>) {
        let start = i * self.stride;
        let len = self.recv.len(i);
        let source = self.recv.source(i);
        let peer = if self.unix {
            // An unnamed sender reads as no path.
            Some(Addr::Unix(source.as_pathname().map(Path::to_path_buf)))
        } else {
            source.as_socket().map(Addr::Inet)
        };
        (start, len, peer)
    }

    /// Sizes the next batch from the last one: `served` datagrams that
    /// took `took` together, replies sent.
    pub(crate) fn adapt(&mut self, served: usize, took: Duration) {
        self.limit = next_limit(served, took, self.slots);
        if served > 0 {
            self.each = Some(took / served as u32);
        }
    }
}

/// How many datagrams the next batch may take: as many as the handlers,
/// at the pace of the last batch, serve in [`BUDGET`], within `1..=slots`.
fn next_limit(served: usize, took: Duration, slots: usize) -> usize {
    if served == 0 {
        return 1;
    }
    let each = took.as_nanos() / served as u128;
    let fit = BUDGET.as_nanos().checked_div(each).unwrap_or(u128::MAX);
    fit.clamp(1, slots as u128) as usize
}

/// The replies of a worker's batch, held until the batch has been served
/// and then sent in one call. Lent to each handler's `Connection` in turn.
pub(crate) struct Replies {
    socket: DatagramSocket,
    /// The bytes of the replies held, back to back.
    data: Vec<u8>,
    /// Each reply held: its bytes in `data` and its destination.
    held: Vec<Outgoing>,
    /// Which datagram of the batch each held reply answers.
    tags: Vec<usize>,
    sender: SendBatch,
    /// The datagram of the batch being served.
    current: usize,
    /// Replies that could not be sent, by the datagram they answer, for
    /// the end of the batch to report.
    failed: Vec<(usize, io::Error)>,
    /// The reply the current handler is writing: its writes collect here
    /// into one datagram, until it returns or flushes.
    open: Vec<u8>,
}

impl Replies {
    /// The socket the replies go out on.
    pub(crate) fn socket(&self) -> &DatagramSocket {
        &self.socket
    }

    pub(crate) fn new(socket: DatagramSocket) -> Self {
        Replies {
            socket,
            data: Vec::new(),
            held: Vec::with_capacity(SLOTS),
            tags: Vec::with_capacity(SLOTS),
            sender: SendBatch::new(SLOTS),
            current: 0,
            failed: Vec::new(),
            open: Vec::new(),
        }
    }

    /// Adds `bytes` to the reply being written, which goes out as one
    /// datagram when [`close`](Self::close)d.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.open.len() + bytes.len() > REPLY_MAX {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a reply datagram cannot be longer than 65,507 bytes",
            ));
        }
        self.open.extend_from_slice(bytes);
        Ok(())
    }

    /// The reply being written is complete: one datagram for `to` (none if
    /// nothing was written), held or sent as [`reply`](Self::reply) says.
    pub(crate) fn close(&mut self, to: &Addr) -> io::Result<()> {
        if self.open.is_empty() {
            return Ok(());
        }
        let open = std::mem::take(&mut self.open);
        let sent = self.reply(&open, to);
        self.open = open;
        self.open.clear();
        sent
    }

    /// The next replies answer the `k`th datagram of the batch.
    pub(crate) fn begin(&mut self, k: usize) {
        self.current = k;
    }

    /// One reply datagram of `bytes` for `to`: held until the end of the
    /// batch, or sent at once if large (see the constants). An address
    /// that cannot be answered fails here, as would an error sending the
    /// replies held when they have to go first.
    pub(crate) fn reply(&mut self, bytes: &[u8], to: &Addr) -> io::Result<()> {
        let dest = match to {
            Addr::Inet(a) => SockAddr::from(*a),
            Addr::Unix(Some(path)) => SockAddr::unix(path)?,
            _ => return Err(unanswerable(to)),
        };
        if bytes.len() > HELD_REPLY_MAX {
            self.send_held()?;
            return self.socket.send_to(bytes, to).map(drop);
        }
        if self.held.len() >= SLOTS || self.data.len() + bytes.len() > HELD_BYTES_MAX {
            self.send_held()?;
        }
        self.held.push(Outgoing {
            start: self.data.len(),
            len: bytes.len(),
            to: dest,
        });
        self.tags.push(self.current);
        self.data.extend_from_slice(bytes);
        Ok(())
    }

    /// Sends the replies held now. The first failure of the current
    /// datagram's own replies is returned (to its handler); the others'
    /// are kept for the end of the batch.
    pub(crate) fn send_held(&mut self) -> io::Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let (tags, current, failed) = (&self.tags, self.current, &mut self.failed);
        let mut own = None;
        self.sender
            .send(self.socket.fd(), &self.data, &self.held, |i, e| {
                let tag = tags[i];
                if tag != current {
                    failed.push((tag, e));
                } else if own.is_none() {
                    own = Some(e);
                }
            });
        self.held.clear();
        self.tags.clear();
        self.data.clear();
        own.map_or(Ok(()), Err)
    }

    /// Ends the batch: sends the replies held, keeping every failure for
    /// [`failures`](Self::failures).
    pub(crate) fn finish(&mut self) {
        self.current = usize::MAX;
        // With no current datagram, every failure is kept.
        let _ = self.send_held();
    }

    /// The replies of the batch that could not be sent, as (datagram of
    /// the batch, error).
    pub(crate) fn failures(&mut self) -> std::vec::Drain<'_, (usize, io::Error)> {
        self.failed.drain(..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_holding_the_replies_stays_send_and_sync() {
        fn assert<T: Send + Sync>() {}
        assert::<Replies>();
        assert::<crate::Connection>();
    }

    #[test]
    fn a_batch_is_sized_to_the_handler() {
        let us = Duration::from_micros;
        // Fast handlers: the whole batch.
        assert_eq!(next_limit(4, us(4), 32), 32);
        // 100 µs each: 5 fit in the budget.
        assert_eq!(next_limit(2, us(200), 32), 5);
        // Slower than the budget: one at a time.
        assert_eq!(next_limit(1, Duration::from_millis(20), 32), 1);
        assert_eq!(next_limit(0, us(0), 32), 1);
        assert_eq!(next_limit(3, Duration::ZERO, 32), 32);
    }
}
