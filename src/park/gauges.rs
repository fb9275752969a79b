//! What one event loop tells the rest of the server of itself: how many
//! connections it serves and parks (for `stats()`), and whether a handler
//! holds its thread now and for how long (for the watch on stalled
//! loops, which the run thread keeps). Only the loop's own thread writes
//! them, with plain stores, except `reported`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use crate::Addr;

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct LoopGauges {
    /// Connections of this loop parked right now.
    pub(crate) parked: AtomicU64,
    /// Connections this loop serves right now.
    pub(crate) live: AtomicU64,
    /// Shutdown's grace is over and this loop has cut (and counted) the
    /// connections it still served.
    pub(crate) forced: AtomicBool,
    /// Handler turns begun on this loop.
    pub(crate) turns: AtomicU64,
    /// When the handler now running began its turn, in microseconds after
    /// the engine's epoch, plus one; 0 while no handler runs.
    pub(crate) held_since_us: AtomicU64,
    /// The connection whose handler runs now (its key in the loop).
    pub(crate) held_by: AtomicUsize,
    /// The turn the watch reported as a stall while it lasted: the loop
    /// does not count it again when it ends.
    pub(crate) reported: AtomicU64,
    /// The loop thread's id, for the watch to ask the system whether it
    /// is blocked; 0 until known.
    pub(crate) tid: AtomicU64,
    /// Each connection's client, by key: set when it starts and ends, so
    /// that a stall is reported with the client's address.
    pub(crate) peers: Mutex<HashMap<usize, Addr>>,
}

impl LoopGauges {
    pub(crate) fn peer(&self, key: usize) -> Option<Addr> {
        let peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.get(&key).cloned()
    }

    pub(crate) fn set_peer(&self, key: usize, peer: Option<Addr>) {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        match peer {
            Some(peer) => peers.insert(key, peer),
            None => peers.remove(&key),
        };
    }

    /// The turn now running, and since when, if a handler runs.
    pub(crate) fn held(&self) -> Option<(u64, u64)> {
        match self.held_since_us.load(Relaxed) {
            0 => None,
            since => Some((self.turns.load(Relaxed), since - 1)),
        }
    }
}
