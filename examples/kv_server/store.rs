//! The keyspace: strings and hashes, each key with an optional deadline.
//!
//! Keys expire as in Redis: a key whose deadline has passed is gone for
//! every command from that millisecond on (looked up, it is deleted), and
//! a sweeper thread deletes the ones nobody looks up, so that their memory
//! goes too. Deadlines are Unix milliseconds, as Redis keeps them, so that
//! `EXAT` and `PXAT` mean what they mean there.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a key holds.
pub enum Value {
    Str(Vec<u8>),
    Hash(HashMap<Vec<u8>, Vec<u8>>),
}

pub struct Entry {
    pub value: Value,
    /// Unix milliseconds after which the key is gone.
    pub expires_at: Option<i64>,
}

impl Entry {
    /// Redis's `keyIsExpired`: gone once now is past the deadline.
    fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| now > at)
    }
}

/// The map, and the deadlines in the order they fall due.
#[derive(Default)]
pub struct Db {
    map: HashMap<Vec<u8>, Entry>,
    /// Deadlines set, soonest first; one may be stale (its key since
    /// deleted, or given another deadline): the sweeper skips those.
    deadlines: BinaryHeap<Reverse<(i64, Vec<u8>)>>,
}

/// The keyspace shared by every connection. The lock is held to look a key
/// up or change it and to copy a reply out, never across the client's I/O.
#[derive(Clone, Default)]
pub struct Store(Arc<Mutex<Db>>);

impl Store {
    pub fn lock(&self) -> MutexGuard<'_, Db> {
        // Nothing panics while changing the map half way.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the thread that deletes expired keys nobody reads, ten times
    /// a second, a bounded batch per turn of the lock.
    pub fn sweep_in_background(&self) {
        let store = self.clone();
        let sweeper = move || loop {
            std::thread::sleep(Duration::from_millis(100));
            while store.lock().sweep(now_ms(), 256) {}
        };
        std::thread::Builder::new()
            .name("kv-expiry".into())
            .spawn(sweeper)
            .expect("a thread for the expiry sweeper");
    }
}

/// Now, in Unix milliseconds (Redis's `mstime`).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Db {
    /// The entry at `key`, unless absent or expired. Reads do not delete:
    /// what they skip, the next write or the sweeper deletes.
    pub fn get(&self, key: &[u8]) -> Option<&Entry> {
        let entry = self.map.get(key)?;
        match entry.expires_at {
            Some(_) if entry.expired(now_ms()) => None,
            _ => Some(entry),
        }
    }

    /// The entry at `key` to change, deleting it first if it has expired.
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let entry = self.map.get(key)?;
        if entry.expires_at.is_some() && entry.expired(now_ms()) {
            self.map.remove(key);
            return None;
        }
        self.map.get_mut(key)
    }

    /// Sets `key` to `value`, with a deadline or none.
    pub fn set(&mut self, key: Vec<u8>, value: Value, expires_at: Option<i64>) {
        match expires_at {
            Some(at) => {
                self.map.insert(key.clone(), Entry { value, expires_at });
                self.remember_deadline(at, &key);
            }
            None => {
                self.map.insert(key, Entry { value, expires_at });
            }
        }
    }

    /// Gives the live `key` a deadline (or takes it away): false if there
    /// is no such key.
    pub fn set_deadline(&mut self, key: &[u8], expires_at: Option<i64>) -> bool {
        let Some(entry) = self.get_mut(key) else {
            return false;
        };
        entry.expires_at = expires_at;
        if let Some(at) = expires_at {
            self.remember_deadline(at, key);
        }
        true
    }

    /// Deletes `key`: true if it was there (and not expired).
    pub fn remove(&mut self, key: &[u8]) -> bool {
        self.get_mut(key).is_some() && self.map.remove(key).is_some()
    }

    /// After `key` was given the deadline `at`.
    fn remember_deadline(&mut self, at: i64, key: &[u8]) {
        self.deadlines.push(Reverse((at, key.to_vec())));
        // Stale deadlines are bounded: past twice the keys, rebuilt from
        // the keys themselves.
        if self.deadlines.len() > 2 * self.map.len() + 1024 {
            self.deadlines = self
                .map
                .iter()
                .filter_map(|(k, e)| Some(Reverse((e.expires_at?, k.clone()))))
                .collect();
        }
    }

    /// Deletes up to `max` keys whose deadline passed before `now`; true
    /// if more may be due.
    pub fn sweep(&mut self, now: i64, max: usize) -> bool {
        for _ in 0..max {
            match self.deadlines.peek() {
                Some(Reverse((at, _))) if now > *at => {}
                _ => return false,
            }
            let Some(Reverse((at, key))) = self.deadlines.pop() else {
                return false;
            };
            if self.map.get(&key).is_some_and(|e| e.expires_at == Some(at)) {
                self.map.remove(&key);
            }
        }
        true
    }
}
