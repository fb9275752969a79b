//! `PUBLISH`: the `message` and `pmessage` frames of a connection's
//! pipelined `PUBLISH`es, gathered per subscriber and sent once per batch
//! of requests, so that a subscriber gets one write for many messages
//! rather than one each. A write to a socket costs microseconds, a copy
//! into a buffer nanoseconds; redis-server batches likewise, writing each
//! client's buffer once per turn of its event loop.
//!
//! From its first `PUBLISH` until it has sent, a batch holds the
//! registry's read lock, so no subscription changes in between: the order
//! `pubsub.rs` promises holds as if each message had been sent at once.
//! The batch is sent before its connection reads from or writes to its
//! socket (either may wait for the client), before a subscription change
//! of its own (which takes the write lock), and once [`LIMIT`] bytes wait.

use std::collections::HashMap;
use std::sync::{Arc, RwLockReadGuard};

use socketserver::{Outbox, SendError};

use crate::glob;
use crate::pubsub::{frame, Registry, Subscriber, Subscribers};

/// The most bytes a batch gathers before it sends them; a message for
/// more subscribers than that allows goes at once, shared, uncopied.
const LIMIT: usize = 256 * 1024;

/// The most bytes gathered for one subscriber: then they go. The crate
/// cuts a connection at once for one send longer than its `max_outbox`,
/// so a send gathers no more than this, or one message.
const CHUNK: usize = 16 * 1024;

/// One connection's `PUBLISH`es not yet sent.
pub struct Fanout<'r> {
    registry: &'r Registry,
    held: Option<RwLockReadGuard<'r, Subscribers>>,
    pending: Pending,
}

/// The frames gathered, by subscriber.
#[derive(Default)]
struct Pending {
    by_subscriber: HashMap<u64, (Outbox, Vec<u8>)>,
    bytes: usize,
}

impl<'r> Fanout<'r> {
    pub fn new(registry: &'r Registry) -> Self {
        Fanout {
            registry,
            held: None,
            pending: Pending::default(),
        }
    }

    /// `PUBLISH channel message`: queues it for every subscriber of the
    /// channel and of each matching pattern, and returns how many
    /// receivers there are as Redis counts them: a client once per
    /// matching subscription. A subscriber whose connection has ended is
    /// not counted (its handler is about to drop its subscriptions).
    pub fn publish(&mut self, channel: &[u8], message: &[u8]) -> i64 {
        let registry = self.registry;
        let subs = self.held.get_or_insert_with(|| registry.read());
        let mut receivers = 0;
        if let Some(list) = subs.channels.get(channel) {
            let frame = frame(&[b"message", channel, message]);
            receivers += self.pending.add(list, &frame);
        }
        for (pattern, list) in &subs.patterns {
            if glob::matches(pattern, channel) {
                let frame = frame(&[b"pmessage", pattern, channel, message]);
                receivers += self.pending.add(list, &frame);
            }
        }
        receivers
    }

    /// Sends what was gathered, and lets subscriptions change again.
    pub fn release(&mut self) {
        self.pending.send();
        self.held = None;
    }
}

impl Drop for Fanout<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

impl Pending {
    /// Gathers `frame` for each live subscriber on `list`; returns how many.
    fn add(&mut self, list: &[Subscriber], frame: &[u8]) -> i64 {
        let live = || list.iter().filter(|s| !s.outbox.is_closed());
        if frame.len().saturating_mul(list.len()) > LIMIT {
            // Too big to copy for each: what was gathered goes first, then
            // this, shared. A subscriber cut for it (its outbox full) is
            // counted, as Redis counts one it is about to drop.
            self.send();
            let shared: Arc<[u8]> = frame.into();
            let sent = live().filter(|s| match s.outbox.send_shared(Arc::clone(&shared)) {
                Ok(()) | Err(SendError::Full) => true,
                Err(_) => false,
            });
            return sent.count() as i64;
        }
        let mut n = 0;
        for s in live() {
            let (outbox, bytes) = self
                .by_subscriber
                .entry(s.id)
                .or_insert_with(|| (s.outbox.clone(), Vec::new()));
            if !bytes.is_empty() && bytes.len() + frame.len() > CHUNK {
                let _ = outbox.send(bytes);
                self.bytes -= bytes.len();
                bytes.clear();
            }
            bytes.extend_from_slice(frame);
            self.bytes += frame.len();
            n += 1;
        }
        if self.bytes > LIMIT {
            self.send();
        }
        n as i64
    }

    /// Sends each subscriber its frames, in one message. One it cannot
    /// take is cut (a full outbox) or gone: its handler then ends, and
    /// drops its subscriptions.
    fn send(&mut self) {
        for (_, (outbox, bytes)) in self.by_subscriber.drain() {
            let _ = outbox.send(&bytes);
        }
        self.bytes = 0;
    }
}
