//! Subscriptions as Redis 7.0 keeps them over RESP2: `SUBSCRIBE`,
//! `UNSUBSCRIBE`, `PSUBSCRIBE`, `PUNSUBSCRIBE`, and who listens to what.
//! `PUBLISH` is `fanout.rs`: it pushes `message` and `pmessage` frames to
//! each subscriber through its connection's [`Outbox`] while the
//! subscriber's own handler waits for its next request.
//!
//! Ordering, as a single-threaded Redis gives it: a publisher sends while
//! it holds the registry's read lock (sends never block), and a client's
//! subscriptions change under the write lock, with their confirmations
//! queued on its outbox before the lock is released. So a subscriber reads
//! its `subscribe` confirmation before any message of that channel, and no
//! message of a channel after its `unsubscribe` confirmation.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use socketserver::{Connection, Outbox};

use crate::resp;

/// What a subscription change asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Subscribe,
    Unsubscribe,
    PSubscribe,
    PUnsubscribe,
}

#[derive(Clone)]
pub struct Subscriber {
    /// Its connection's [`Session::id`].
    pub id: u64,
    pub outbox: Outbox,
}

/// Who listens to what: channels by name, patterns in the order they were
/// first subscribed.
#[derive(Default)]
pub struct Subscribers {
    pub channels: HashMap<Vec<u8>, Vec<Subscriber>>,
    pub patterns: Vec<(Vec<u8>, Vec<Subscriber>)>,
}

impl Subscribers {
    /// Drops connection `id` from the subscribers of a channel, or of a
    /// pattern (`pattern`).
    fn remove(&mut self, pattern: bool, name: &[u8], id: u64) {
        let list = match pattern {
            false => self.channels.get_mut(name),
            true => self
                .patterns
                .iter_mut()
                .find(|(p, _)| p == name)
                .map(|(_, l)| l),
        };
        let Some(list) = list else {
            return;
        };
        list.retain(|s| s.id != id);
        if list.is_empty() {
            match pattern {
                false => drop(self.channels.remove(name)),
                true => self.patterns.retain(|(p, _)| p != name),
            }
        }
    }
}

/// The subscriptions of every connection, shared by all.
#[derive(Default)]
pub struct Registry {
    subscribers: RwLock<Subscribers>,
    next_id: AtomicU64,
}

impl Registry {
    fn write(&self) -> RwLockWriteGuard<'_, Subscribers> {
        self.subscribers.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The subscriptions, to publish to: held from a batch's first
    /// `PUBLISH` until its messages are sent ([`Fanout`](crate::fanout::Fanout)).
    pub fn read(&self) -> RwLockReadGuard<'_, Subscribers> {
        self.subscribers.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// A pushed frame: an array of bulk strings.
pub fn frame(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + parts.iter().map(|p| p.len() + 16).sum::<usize>());
    resp::array(&mut out, parts.len());
    for part in parts {
        resp::bulk(&mut out, part);
    }
    out
}

/// One connection's subscriptions, dropped from the registry with it
/// (however its handler ends, a panic included).
pub struct Session<'r> {
    registry: &'r Registry,
    id: u64,
    /// Made at the first subscription: a connection never subscribed
    /// writes as before, without taking turns with pushes.
    outbox: Option<Outbox>,
    channels: BTreeSet<Vec<u8>>,
    patterns: Vec<Vec<u8>>,
}

impl<'r> Session<'r> {
    pub fn new(registry: &'r Registry) -> Self {
        Session {
            registry,
            id: registry.next_id.fetch_add(1, Ordering::Relaxed),
            outbox: None,
            channels: BTreeSet::new(),
            patterns: Vec::new(),
        }
    }

    /// Subscribed to something: the client may then send only the
    /// subscription commands, `PING`, `QUIT` and `RESET`.
    pub fn subscribed(&self) -> bool {
        self.count() > 0
    }

    fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    /// Runs a subscription command on `names`. Its confirmations go
    /// through the outbox, queued behind what was pushed before; `out`
    /// must be written before this is called. Before any subscription
    /// there is no outbox: then they go to `out`.
    pub fn change(
        &mut self,
        change: Change,
        names: &[Vec<u8>],
        conn: &Connection,
        out: &mut Vec<u8>,
    ) {
        let subscribing = matches!(change, Change::Subscribe | Change::PSubscribe);
        if subscribing && self.outbox.is_none() {
            let outbox = conn.outbox();
            if outbox.is_closed() {
                return resp::error(out, "pub/sub needs push, which this connection cannot take");
            }
            self.outbox = Some(outbox);
        }
        let mut replies = Vec::new();
        let mut subs = self.registry.write();
        let (kind, pattern): (&[u8], bool) = match change {
            Change::Subscribe => (b"subscribe", false),
            Change::Unsubscribe => (b"unsubscribe", false),
            Change::PSubscribe => (b"psubscribe", true),
            Change::PUnsubscribe => (b"punsubscribe", true),
        };
        if subscribing {
            for name in names {
                if self.add(pattern, name) {
                    let me = Subscriber {
                        id: self.id,
                        outbox: self.outbox.clone().expect("made above"),
                    };
                    match pattern {
                        false => subs.channels.entry(name.clone()).or_default().push(me),
                        true => match subs.patterns.iter_mut().find(|(p, _)| p == name) {
                            Some((_, list)) => list.push(me),
                            None => subs.patterns.push((name.clone(), vec![me])),
                        },
                    }
                }
                confirm(&mut replies, kind, Some(name), self.count());
            }
        } else {
            // No names: all of them; and when there are none, Redis still
            // confirms, with a null name.
            let all: Vec<Vec<u8>> = match (names.is_empty(), pattern) {
                (false, _) => names.to_vec(),
                (true, false) => self.channels.iter().cloned().collect(),
                (true, true) => self.patterns.clone(),
            };
            if all.is_empty() {
                confirm(&mut replies, kind, None, self.count());
            }
            for name in &all {
                if self.drop_one(pattern, name) {
                    subs.remove(pattern, name, self.id);
                }
                confirm(&mut replies, kind, Some(name), self.count());
            }
        }
        match &self.outbox {
            // A failed send cut the connection: its next read ends it.
            Some(outbox) => drop(outbox.send(&replies)),
            None => out.extend_from_slice(&replies),
        }
        drop(subs);
    }

    /// Adds a subscription: false if it was there.
    fn add(&mut self, pattern: bool, name: &[u8]) -> bool {
        match pattern {
            false => self.channels.insert(name.to_vec()),
            true if self.patterns.iter().any(|p| p == name) => false,
            true => {
                self.patterns.push(name.to_vec());
                true
            }
        }
    }

    /// Drops a subscription: false if there was none.
    fn drop_one(&mut self, pattern: bool, name: &[u8]) -> bool {
        match pattern {
            false => self.channels.remove(name),
            true => {
                let before = self.patterns.len();
                self.patterns.retain(|p| p != name);
                self.patterns.len() < before
            }
        }
    }

    /// Drops every subscription without a word (`RESET`, or the end of
    /// the connection).
    pub fn leave(&mut self) {
        if !self.subscribed() {
            return;
        }
        let mut subs = self.registry.write();
        for name in std::mem::take(&mut self.channels) {
            subs.remove(false, &name, self.id);
        }
        for name in std::mem::take(&mut self.patterns) {
            subs.remove(true, &name, self.id);
        }
    }
}

impl Drop for Session<'_> {
    fn drop(&mut self) {
        self.leave();
    }
}

/// `*3 kind name count`: the confirmation of one (un)subscription.
fn confirm(out: &mut Vec<u8>, kind: &[u8], name: Option<&[u8]>, count: usize) {
    resp::array(out, 3);
    resp::bulk(out, kind);
    match name {
        Some(name) => resp::bulk(out, name),
        None => resp::nil(out),
    }
    resp::int(out, count as i64);
}
