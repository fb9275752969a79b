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

use socketserver::Outbox;

use crate::glob;
use crate::pubsub::{frame, Registry, Subscriber, Subscribers};
use crate::writers::Writers;

/// The most bytes of distinct frames a batch gathers before it sends them.
const LIMIT: usize = 256 * 1024;

/// One connection's `PUBLISH`es not yet sent.
pub struct Fanout<'r> {
    registry: &'r Registry,
    writers: &'r Writers,
    held: Option<RwLockReadGuard<'r, Subscribers>>,
    pending: Pending,
}

/// The frames gathered: each once, and for each subscriber which it gets,
/// in order.
#[derive(Default)]
struct Pending {
    frames: Vec<Vec<u8>>,
    /// The frames' bytes, together.
    bytes: usize,
    /// While every frame so far goes to the subscribers of one list (a
    /// batch of `PUBLISH`es to one channel, no pattern matching): that
    /// list. Each of them then gets every frame, and no per-subscriber
    /// bookkeeping is needed: the common case, and the one of many
    /// subscribers.
    single: Option<Source>,
    /// How many of `single`'s subscribers were live at its first frame:
    /// the receivers of each of its frames. The list cannot change while
    /// the batch holds the registry; a subscriber whose connection ends
    /// meanwhile is counted as if the message had come a moment earlier.
    single_live: i64,
    by_subscriber: HashMap<u64, (Outbox, Vec<u32>)>,
}

/// A list of subscribers, found again in the registry when the batch is
/// sent (its read lock is held meanwhile, so it is the same list).
#[derive(Clone, PartialEq, Eq)]
enum Source {
    Channel(Vec<u8>),
    Pattern(usize),
}

impl Source {
    fn list<'s>(&self, subs: &'s Subscribers) -> &'s [Subscriber] {
        match self {
            Source::Channel(name) => subs.channels.get(name).map_or(&[], Vec::as_slice),
            Source::Pattern(i) => subs.patterns.get(*i).map_or(&[], |(_, l)| l.as_slice()),
        }
    }
}

impl<'r> Fanout<'r> {
    pub fn new(registry: &'r Registry, writers: &'r Writers) -> Self {
        Fanout {
            registry,
            writers,
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
        if subs.channels.contains_key(channel) {
            let frame = frame(&[b"message", channel, message]);
            let source = Source::Channel(channel.to_vec());
            receivers += self.pending.add(subs, self.writers, source, frame);
        }
        for (i, (pattern, _)) in subs.patterns.iter().enumerate() {
            if glob::matches(pattern, channel) {
                let frame = frame(&[b"pmessage", pattern, channel, message]);
                receivers += self
                    .pending
                    .add(subs, self.writers, Source::Pattern(i), frame);
            }
        }
        receivers
    }

    /// Sends what was gathered, and lets subscriptions change again.
    pub fn release(&mut self) {
        if let Some(subs) = &self.held {
            self.pending.send(subs, self.writers);
        }
        self.held = None;
    }
}

impl Drop for Fanout<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

impl Pending {
    /// Gathers `frame` for each live subscriber of `source`; returns how
    /// many.
    fn add(
        &mut self,
        subs: &Subscribers,
        writers: &Writers,
        source: Source,
        frame: Vec<u8>,
    ) -> i64 {
        if !self.frames.is_empty() && self.bytes + frame.len() > LIMIT {
            self.send(subs, writers);
        }
        let list = source.list(subs);
        let live = list.iter().filter(|s| !s.outbox.is_closed());
        if self.frames.is_empty() {
            self.single = Some(source.clone());
            self.single_live = live.clone().count() as i64;
        }
        if self.single.as_ref() == Some(&source) {
            self.bytes += frame.len();
            self.frames.push(frame);
            return self.single_live;
        }
        if let Some(first) = self.single.take() {
            // A second list: each subscriber of the first gets every frame
            // so far, kept per subscriber from now on.
            let all: Vec<u32> = (0..self.frames.len() as u32).collect();
            for s in first.list(subs) {
                let entry = (s.outbox.clone(), all.clone());
                self.by_subscriber.insert(s.id, entry);
            }
        }
        let index = self.frames.len() as u32;
        self.bytes += frame.len();
        self.frames.push(frame);
        let mut n = 0;
        for s in live {
            let (_, frames) = self
                .by_subscriber
                .entry(s.id)
                .or_insert_with(|| (s.outbox.clone(), Vec::new()));
            frames.push(index);
            n += 1;
        }
        n
    }

    /// Sends each subscriber its frames, in one message. Subscribers that
    /// get the same frames (those of one channel, say) get one buffer,
    /// shared, so a batch costs one copy per distinct sequence and one
    /// write per subscriber, the writes shared among threads when there
    /// are many (`writers.rs`). One that cannot take it is cut (a full
    /// outbox) or gone: its handler then ends, and drops its
    /// subscriptions.
    fn send(&mut self, subs: &Subscribers, writers: &Writers) {
        let frames = &self.frames;
        let mut sends = Vec::new();
        if let Some(source) = self.single.take() {
            let bytes: Arc<[u8]> = frames.concat().into();
            let list = source.list(subs);
            sends.extend(list.iter().map(|s| (s.outbox.clone(), Arc::clone(&bytes))));
        }
        let mut built: HashMap<Vec<u32>, Arc<[u8]>> = HashMap::new();
        for (_, (outbox, indices)) in self.by_subscriber.drain() {
            let bytes = built.entry(indices).or_insert_with_key(|indices| {
                let parts = indices.iter().map(|&i| &frames[i as usize][..]);
                parts.collect::<Vec<_>>().concat().into()
            });
            sends.push((outbox, Arc::clone(bytes)));
        }
        writers.send_all(sends);
        self.frames.clear();
        self.bytes = 0;
    }
}
