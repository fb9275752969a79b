//! Large fan-outs written by more than one thread. A write to a socket
//! costs a few microseconds, nearly all of it in the kernel (the loopback
//! delivers it and wakes the reader on the spot), so a `PUBLISH` to a few
//! hundred subscribers is a run of writes that one thread makes one after
//! the other while the other CPUs may be idle. An `Outbox` may be written
//! from any thread, so the writes are shared: the publisher's thread takes
//! one part, helper threads the others, and the publisher waits until all
//! are sent. Redis 6 and later can do the same (`io-threads`), off by
//! default.
//!
//! A part that no helper has taken by the time the publisher is done with
//! its own, it writes itself: busy helpers cost nothing but the sharing.
//! Each subscriber's messages are in one part, and the publisher waits
//! for every part, so the order of each subscriber's messages is the
//! order of the `PUBLISH`es, as when one thread writes them.
//!
//! Under `--park-idle` the publisher's handler holds its event loop while
//! it waits for the helpers, as it would while writing every part itself;
//! with them, for about as long as its own part takes.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;

use socketserver::Outbox;

/// Fewer sends than this are written by the publisher alone: handing a
/// part to another thread and waking it costs 15-25 µs, about as much as
/// a few writes.
const LEAST_PER_PART: usize = 32;

/// The most helper threads, beside the publishers' own, unless
/// `KV_WRITER_THREADS` says how many.
const MOST_HELPERS: usize = 3;

/// How many helper threads to start: `KV_WRITER_THREADS` (0: none, each
/// publisher writes all of its fan-out), else one per CPU beyond the
/// first, at most [`MOST_HELPERS`].
const HELPERS_VAR: &str = "KV_WRITER_THREADS";

/// One message for one subscriber.
pub type Delivery = (Outbox, Arc<[u8]>);

/// The helper threads, started at the first large fan-out.
#[derive(Default)]
pub struct Writers {
    shared: OnceLock<Arc<Queue>>,
}

/// Parts not yet taken, oldest first.
#[derive(Default)]
struct Queue {
    parts: Mutex<VecDeque<Part>>,
    more: Condvar,
    /// The helpers running.
    helpers: AtomicUsize,
}

/// Counted down when dropped, written or not: a part lost to a panic
/// does not leave its publisher waiting for good.
struct Part {
    sends: Vec<Delivery>,
    done: Arc<Countdown>,
}

impl Drop for Part {
    fn drop(&mut self) {
        let mut left = self.done.lock();
        *left -= 1;
        if *left == 0 {
            self.done.zero.notify_one();
        }
    }
}

/// How many parts of one fan-out are still being written elsewhere.
#[derive(Default)]
struct Countdown {
    left: Mutex<usize>,
    zero: Condvar,
}

impl Writers {
    /// Sends each message to its subscriber, and returns once all are
    /// sent (queued on their outboxes). What a send returns is left out:
    /// a subscriber whose outbox is full is cut, one gone is gone, and
    /// either's handler drops its subscriptions as it ends.
    pub fn send_all(&self, mut sends: Vec<Delivery>) {
        let queue = self.queue();
        let helpers = queue.helpers.load(Relaxed);
        let parts = (sends.len() / LEAST_PER_PART).min(helpers + 1);
        if parts < 2 {
            return send(sends);
        }
        let done = Arc::new(Countdown::default());
        let per_part = sends.len().div_ceil(parts);
        {
            let mut queued = queue.lock();
            while sends.len() > per_part {
                let rest = sends.split_off(per_part);
                let part = std::mem::replace(&mut sends, rest);
                // Counted before it exists: dropping it counts it down.
                *done.lock() += 1;
                queued.push_back(Part {
                    sends: part,
                    done: Arc::clone(&done),
                });
            }
        }
        for _ in 1..parts {
            queue.more.notify_one();
        }
        send(sends);
        // Parts still queued: no helper was free for them.
        let mine: VecDeque<Part> = {
            let mut queued = queue.lock();
            let (mine, others) = queued.drain(..).partition(|p| Arc::ptr_eq(&p.done, &done));
            *queued = others;
            mine
        };
        for mut part in mine {
            send(std::mem::take(&mut part.sends));
        }
        let mut left = done.lock();
        while *left > 0 {
            left = done.zero.wait(left).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn queue(&self) -> &Arc<Queue> {
        self.shared.get_or_init(|| {
            let queue = Arc::new(Queue::default());
            for i in 0..helpers_wanted() {
                let helper = Arc::clone(&queue);
                let spawned = thread::Builder::new()
                    .name(format!("kv-writer-{i}"))
                    .spawn(move || helper.help());
                match spawned {
                    Ok(_) => {
                        queue.helpers.fetch_add(1, Relaxed);
                    }
                    // Those started share the writes; with none, each
                    // publisher writes all of its own.
                    Err(e) => log::warn!("cannot start a writer thread: {e}"),
                }
            }
            queue
        })
    }
}

fn helpers_wanted() -> usize {
    if let Ok(value) = std::env::var(HELPERS_VAR) {
        match value.parse() {
            Ok(n) => return n,
            Err(_) => log::warn!("{HELPERS_VAR}={value:?} is not a count; ignored"),
        }
    }
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    (cpus - 1).min(MOST_HELPERS)
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Part>> {
        // Only whole parts go in and out under it.
        self.parts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A helper's life: write the parts it takes, for good.
    fn help(&self) {
        let mut queued = self.lock();
        loop {
            match queued.pop_front() {
                Some(mut part) => {
                    drop(queued);
                    let sends = std::mem::take(&mut part.sends);
                    // A send does not panic; were one to, the rest of the
                    // part is lost, not the helper.
                    if catch_unwind(AssertUnwindSafe(|| send(sends))).is_err() {
                        log::error!("a writer thread's part of a fan-out panicked");
                    }
                    drop(part);
                    queued = self.lock();
                }
                None => queued = self.more.wait(queued).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

impl Countdown {
    fn lock(&self) -> MutexGuard<'_, usize> {
        self.left.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn send(sends: Vec<Delivery>) {
    for (outbox, bytes) in sends {
        let _ = outbox.send_shared(bytes);
    }
}
