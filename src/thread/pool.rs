//! The pool policy: when a worker accepts, waits, grows the pool or
//! retires. A pure state machine: it counts and decides, and the worker
//! (`worker.rs`) acts on its decisions (spawns, notifies, logs)
//! after releasing the lock. It knows nothing of threads or sockets, so
//! every decision is unit-tested below.
//!
//! The counts live under the thread engine's state lock; see
//! `CONCURRENCY.md` for who waits where and who wakes whom.

use crate::settings::Limits;

/// Who is doing what.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    limits: Limits,
    /// Worker threads alive, or spawned and about to run.
    threads: usize,
    /// Threads counted but not yet in their loop: about to accept, so
    /// nobody else needs to be started for the next connection.
    starting: usize,
    /// Workers waiting for work and not yet claimed by a wake-up.
    idle: usize,
    /// Wake-ups sent to waiting workers that have not yet left their
    /// wait. A waiter that finds one takes it, whether or not its own
    /// wait timed out: so a worker whose timed wait expires just as it is
    /// woken does not retire with the wake-up meant for it.
    wakeups: usize,
    /// Workers inside `accept()` / `recv_from()`.
    pub(crate) accepting: usize,
    /// The run thread is inside `accept()`, filling the queue.
    pub(crate) run_accepting: bool,
    /// Connections (or datagrams) being served.
    pub(crate) active: usize,
    /// The last spawn failed: until a thread starts or leaves, the pool
    /// is as large as it can get.
    cannot_grow: bool,
    /// Shutdown has begun: take no new work.
    pub(crate) stopping: bool,
    /// Shutdown has begun, and the clients already accepted, queued or
    /// held past the queue, are still served: another process serves the
    /// socket from now on (an upgrade, a rolling restart), so none of them
    /// need be turned away.
    pub(crate) serving_accepted: bool,
    /// Serial number for the next worker thread's name.
    next_id: usize,
    /// A datagram server's pool: one worker receives at a time (see
    /// `batch`); the others stand by for handlers that take long.
    sole_receiver: bool,
    /// Datagram batches begun: whether the server is serving.
    pub(crate) batches: u64,
    /// When the receiving worker began serving a batch while keeping the
    /// receiving to itself (`None` otherwise): the run thread hands the
    /// receiving over if it takes long.
    /// With the batch's number, so that only its worker clears it.
    pub(crate) receiver_busy_since: Option<(std::time::Instant, u64)>,
    /// The run thread waits without a timeout, the server being quiet: the
    /// next batch must wake it.
    pub(crate) supervisor_asleep: bool,
}

/// What a free worker does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Shutdown began: leave.
    Stop,
    /// Serve the connection at the head of the queue.
    TakeQueued,
    /// Serve the connection that has waited longest past the queue (see
    /// `queue_timeout`).
    TakeWaiting,
    /// Accept (or receive) one and serve it.
    Accept,
    /// Wait for one of the above.
    Wait,
}

/// What must happen so that someone takes the next connection, decided
/// when a worker has just become busy.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Grow {
    /// Someone is accepting already, or accepting is paused on purpose.
    Nothing,
    /// Wake one idle worker (already claimed: notify `work` once).
    WakeIdle,
    /// Start a thread with this serial number (already counted).
    Spawn(usize),
    /// Every worker is busy at `max_workers`: wake the run thread to
    /// accept ahead into the queue.
    WakeRunThread,
    /// Every worker is busy at `max_workers` and the queue is full or off:
    /// new clients wait for a worker up to `queue_timeout`. Worth a
    /// warning, and the run thread is woken to hold them.
    Exhausted,
}

impl Pool {
    /// An empty pool within `limits`.
    pub(crate) fn new(limits: Limits) -> Self {
        Pool {
            limits,
            ..Pool::default()
        }
    }

    /// Makes this a datagram server's pool: one worker receives at a time.
    pub(crate) fn receive_alone(&mut self) {
        self.sole_receiver = true;
    }

    /// Worker threads alive.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// Counts the first `workers` threads before they are spawned; returns
    /// their serial numbers.
    pub(crate) fn start(&mut self) -> std::ops::Range<usize> {
        let first = self.next_id;
        self.threads += self.limits.workers;
        self.starting += self.limits.workers;
        self.next_id += self.limits.workers;
        first..self.next_id
    }

    /// What a free worker does next, with `queued` connections in the
    /// queue, `waiting` held past it, and `room` for another under
    /// `max_connections`. Those that came first are served first.
    pub(crate) fn next_step(&self, queued: usize, waiting: usize, room: bool) -> Step {
        if self.stopping {
            match (self.serving_accepted, queued > 0, waiting > 0 && room) {
                (true, true, _) => Step::TakeQueued,
                (true, false, true) => Step::TakeWaiting,
                _ => Step::Stop,
            }
        } else if queued > 0 {
            Step::TakeQueued
        } else if waiting > 0 {
            match room {
                true => Step::TakeWaiting,
                false => Step::Wait,
            }
        } else if !self.run_accepting && self.accepting < self.receivers() && room {
            // At most `workers` threads accept at once, so that threads the
            // pool grew beyond that can wait, idle, and retire.
            Step::Accept
        } else {
            Step::Wait
        }
    }

    /// Whether no thread receives, and none is about to: not one started
    /// or woken for it.
    pub(crate) fn nobody_receiving(&self) -> bool {
        self.accepting == 0 && self.starting == 0 && self.wakeups == 0
    }

    /// How many threads accept (receive) at once.
    fn receivers(&self) -> usize {
        match self.sole_receiver {
            true => 1,
            false => self.limits.workers,
        }
    }

    /// A worker has just become busy: decides how the next connection will
    /// be taken. `queue_room`: the queue could take another.
    pub(crate) fn on_busy(&mut self, queue_room: bool, room: bool) -> Grow {
        if self.stopping || self.accepting > 0 || self.starting > 0 || self.run_accepting || !room {
            return Grow::Nothing;
        }
        if self.idle > 0 {
            self.idle -= 1;
            self.wakeups += 1;
            return Grow::WakeIdle;
        }
        if self.threads < self.limits.max_workers && !self.cannot_grow {
            self.threads += 1;
            self.starting += 1;
            self.next_id += 1;
            return Grow::Spawn(self.next_id - 1);
        }
        self.when_full(queue_room)
    }

    /// A spawn decided by [`on_busy`](Self::on_busy) failed: the pool is as
    /// large as it gets for now; the queue, if any, takes over.
    pub(crate) fn spawn_failed(&mut self, queue_room: bool) -> Grow {
        self.threads -= 1;
        self.starting -= 1;
        self.cannot_grow = true;
        self.when_full(queue_room)
    }

    fn when_full(&self, queue_room: bool) -> Grow {
        if self.limits.queue > 0 && queue_room {
            Grow::WakeRunThread
        } else {
            Grow::Exhausted
        }
    }

    /// A thread that was counted has started running.
    pub(crate) fn started(&mut self) {
        self.starting -= 1;
        self.cannot_grow = false;
    }

    /// A thread that was counted could not be started.
    pub(crate) fn not_started(&mut self) {
        self.threads -= 1;
        self.starting -= 1;
    }

    /// Whether the run thread should accept ahead into the queue now
    /// (`queued` in it, `waiting` held past it). Not while clients wait
    /// past the queue: they came first, and those accepted now go behind
    /// them, so that they are served first.
    pub(crate) fn run_thread_may_accept(&self, queued: usize, waiting: usize, room: bool) -> bool {
        !self.stopping
            && self.limits.queue > 0
            && queued < self.limits.queue
            && waiting == 0
            && room
            && !self.run_accepting
            && self.accepting == 0
            && self.idle == 0
            && self.wakeups == 0
            && self.active >= self.threads
            && (self.threads >= self.limits.max_workers || self.cannot_grow)
    }

    /// Whether the run thread should accept a connection to wait past the
    /// queue (`waiting` wait already): no worker can take one, none is
    /// coming, and the pool cannot grow. `room`: under `max_connections`.
    pub(crate) fn run_thread_may_hold(&self, waiting: usize, room: bool) -> bool {
        !self.stopping
            && room
            && waiting < self.limits.waiting
            && !self.run_accepting
            && self.accepting == 0
            && self.starting == 0
            && self.idle == 0
            && self.wakeups == 0
            && self.active >= self.threads
            && (self.threads >= self.limits.max_workers || self.cannot_grow)
    }

    /// A connection was queued: claims an idle worker to take it, if any
    /// (notify `work` once when this returns true).
    pub(crate) fn claim_idle(&mut self) -> bool {
        if self.idle == 0 {
            return false;
        }
        self.idle -= 1;
        self.wakeups += 1;
        true
    }

    /// A worker is about to wait for work. Returns whether its wait should
    /// time out (it is above `workers`, so it may retire).
    pub(crate) fn begin_wait(&mut self) -> bool {
        self.idle += 1;
        self.threads > self.limits.workers
    }

    /// A worker's wait ended (`timed_out`: its timed wait expired). Returns
    /// whether it retires; a retiring thread is already off the count.
    pub(crate) fn end_wait(&mut self, timed_out: bool, queued: usize) -> bool {
        if self.wakeups > 0 {
            self.wakeups -= 1;
            return false;
        }
        self.idle -= 1;
        if timed_out && !self.stopping && self.threads > self.limits.workers && queued == 0 {
            self.threads -= 1;
            return true;
        }
        false
    }

    /// Shutdown begins: every waiter is woken, none is claimed.
    pub(crate) fn stop(&mut self) {
        self.stopping = true;
        self.idle += self.wakeups;
        self.wakeups = 0;
    }

    /// A thread that was on the count has ended (`died`: by a panic).
    /// Returns the serial number of a replacement to spawn (already
    /// counted) when a death left fewer than `workers`.
    pub(crate) fn exited(&mut self, died: bool) -> Option<usize> {
        self.threads -= 1;
        self.cannot_grow = false;
        if died && !self.stopping && self.threads < self.limits.workers {
            self.threads += 1;
            self.starting += 1;
            self.next_id += 1;
            return Some(self.next_id - 1);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(workers: usize, max_workers: usize, queue: usize) -> Pool {
        let mut p = Pool::new(Limits {
            workers,
            max_workers,
            queue,
            waiting: 8,
        });
        assert_eq!(p.start(), 0..workers);
        for _ in 0..workers {
            p.started();
        }
        p
    }

    #[test]
    fn threads_still_starting_count_as_acceptors() {
        let mut p = Pool::new(Limits {
            workers: 2,
            max_workers: 8,
            queue: 0,
            waiting: 8,
        });
        p.start();
        p.started();
        assert_eq!(
            p.on_busy(false, true),
            Grow::Nothing,
            "one is about to accept"
        );
        p.started();
        assert_eq!(p.on_busy(false, true), Grow::Spawn(2));
        p.not_started();
        assert_eq!(p.threads(), 2);
    }

    #[test]
    fn free_workers_accept_up_to_workers_at_once() {
        let mut p = pool(2, 4, 0);
        assert_eq!(p.next_step(0, 0, true), Step::Accept);
        p.accepting = 2;
        assert_eq!(p.next_step(0, 0, true), Step::Wait);
        assert_eq!(p.next_step(1, 0, true), Step::TakeQueued);
        p.accepting = 0;
        assert_eq!(p.next_step(0, 0, false), Step::Wait, "max_connections held");
        p.stopping = true;
        assert_eq!(p.next_step(1, 0, true), Step::Stop);
        p.serving_accepted = true;
        assert_eq!(p.next_step(1, 1, true), Step::TakeQueued);
        assert_eq!(p.next_step(0, 1, true), Step::TakeWaiting);
        assert_eq!(p.next_step(0, 1, false), Step::Stop, "max_connections held");
        assert_eq!(p.next_step(0, 0, true), Step::Stop);
    }

    #[test]
    fn a_datagram_pool_receives_on_one_worker_and_grows_when_asked() {
        let mut p = pool(3, 4, 0);
        p.receive_alone();
        assert_eq!(p.next_step(0, 0, true), Step::Accept);
        p.accepting = 1;
        assert_eq!(p.next_step(0, 0, true), Step::Wait, "one receives");
        // The other two stand by, untimed: they are within `workers`.
        assert!(!p.begin_wait() && !p.begin_wait());
        // The receiver took a batch and found it long: a standby takes over.
        p.accepting = 0;
        p.active = 1;
        assert_eq!(p.on_busy(false, true), Grow::WakeIdle);
        assert!(!p.end_wait(false, 0));
        assert_eq!(p.next_step(0, 0, true), Step::Accept);
    }

    #[test]
    fn the_last_free_worker_grows_the_pool_then_says_it_is_exhausted() {
        let mut p = pool(1, 2, 0);
        p.active = 1;
        assert_eq!(p.on_busy(false, true), Grow::Spawn(1));
        assert_eq!(p.threads(), 2);
        p.started();
        p.active = 2;
        assert_eq!(p.on_busy(false, true), Grow::Exhausted);
        p.accepting = 1;
        assert_eq!(p.on_busy(false, true), Grow::Nothing);
    }

    #[test]
    fn an_idle_worker_is_woken_before_a_thread_is_spawned() {
        let mut p = pool(1, 3, 0);
        assert!(!p.begin_wait());
        assert_eq!(p.on_busy(false, true), Grow::WakeIdle);
        assert_eq!(
            p.on_busy(false, true),
            Grow::Spawn(1),
            "the idle one is claimed"
        );
        assert!(!p.end_wait(false, 0));
        assert_eq!((p.idle, p.wakeups), (0, 0));
    }

    /// The lost wake-up: a thread above `workers` whose timed wait expired
    /// just as it was claimed must take the work, not retire with it.
    #[test]
    fn a_claimed_worker_whose_wait_timed_out_does_not_retire() {
        let mut p = pool(1, 2, 0);
        assert_eq!(p.on_busy(false, true), Grow::Spawn(1));
        p.started();
        assert!(p.begin_wait(), "above workers: a timed wait");
        assert_eq!(p.on_busy(false, true), Grow::WakeIdle);
        assert!(!p.end_wait(true, 0), "claimed: it must not retire");
        assert_eq!(p.threads(), 2);
        assert!(p.begin_wait());
        assert!(p.end_wait(true, 0), "unclaimed and timed out: it retires");
        assert_eq!(p.threads(), 1);
        assert!(!p.begin_wait(), "at workers: an untimed wait");
        assert!(!p.end_wait(true, 0));
    }

    #[test]
    fn a_failed_spawn_hands_over_to_the_queue() {
        let mut p = pool(1, 4, 8);
        p.active = 1;
        assert_eq!(p.on_busy(true, true), Grow::Spawn(1));
        assert_eq!(p.spawn_failed(true), Grow::WakeRunThread);
        assert!(p.run_thread_may_accept(0, 0, true));
        assert_eq!(
            p.on_busy(true, true),
            Grow::WakeRunThread,
            "no retry until a thread leaves"
        );
        assert_eq!(p.on_busy(false, true), Grow::Exhausted, "queue full");
    }

    #[test]
    fn the_run_thread_accepts_only_when_every_worker_is_busy() {
        let mut p = pool(2, 2, 4);
        assert!(
            !p.run_thread_may_accept(0, 0, true),
            "workers are free to accept"
        );
        p.accepting = 0;
        p.active = 2;
        assert!(p.run_thread_may_accept(3, 0, true));
        assert!(!p.run_thread_may_accept(4, 0, true), "queue full");
        assert!(
            !p.run_thread_may_accept(0, 0, false),
            "max_connections held"
        );
        assert!(
            !p.run_thread_may_accept(0, 1, true),
            "a client waits past the queue"
        );
        p.begin_wait();
        assert!(!p.run_thread_may_accept(0, 0, true), "a worker is idle");
        assert!(p.claim_idle());
        assert!(!p.claim_idle());
    }

    #[test]
    fn past_the_queue_connections_wait_only_for_an_exhausted_pool() {
        let mut p = pool(1, 2, 0);
        p.active = 1;
        assert!(!p.run_thread_may_hold(0, true), "the pool can grow");
        assert_eq!(p.on_busy(false, true), Grow::Spawn(1));
        p.started();
        p.active = 2;
        assert!(p.run_thread_may_hold(7, true));
        assert!(!p.run_thread_may_hold(8, true), "as many as the backlog");
        assert!(!p.run_thread_may_hold(0, false), "max_connections held");
        assert_eq!(p.next_step(0, 1, true), Step::TakeWaiting);
        assert_eq!(p.next_step(1, 1, true), Step::TakeQueued, "first come");
        assert_eq!(p.next_step(0, 1, false), Step::Wait);
        p.begin_wait();
        assert!(!p.run_thread_may_hold(0, true), "a worker is idle");
    }

    #[test]
    fn a_dead_worker_is_replaced_unless_stopping() {
        let mut p = pool(2, 2, 0);
        assert_eq!(p.exited(true), Some(2));
        assert_eq!(p.threads(), 2);
        assert_eq!(p.exited(false), None, "a clean exit is not replaced");
        p.stop();
        assert_eq!(p.exited(true), None);
        assert_eq!(p.threads(), 0);
    }

    #[test]
    fn shutdown_releases_claims_so_every_waiter_leaves() {
        let mut p = pool(1, 1, 0);
        p.begin_wait();
        p.begin_wait();
        assert!(p.claim_idle());
        p.stop();
        assert!(!p.end_wait(false, 0));
        assert!(!p.end_wait(false, 0));
        assert_eq!((p.idle, p.wakeups), (0, 0));
        assert_eq!(p.next_step(0, 0, true), Step::Stop);
    }
}
