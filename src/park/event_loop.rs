//! One `park_idle` event loop: a thread that accepts from the shared
//! listener, runs each connection's handler in a coroutine of its own, and
//! parks those waiting for their socket, a deadline or an offloaded call.
//!
//! One turn: resume the handlers that can go on; poll for readiness (not
//! waiting at all if some can still go on); take what the poll reported
//! (sockets ready, offloaded calls done, shutdown); fire the deadlines
//! that passed; accept new connections. A handler stays on the loop that
//! accepted it. A loop that is held up by a handler does not accept, so
//! new clients go to the other loops.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::accept::Backoff;
use crate::conn::link::Link;
use crate::conn::parked::Wake;
use crate::core::Shared;
use crate::park::gauges::LoopGauges;
use crate::park::helpers::{Helpers, Resume};
use crate::park::parking::{self, Park};
use crate::park::stacks::Stacks;
use crate::park::task::Done;
use crate::park::{LoopHandle, Loops};
use crate::sys::overflow;
use crate::sys::rusage::{self, Usage};
use crate::{Addr, Handler};

const WAKER: Token = Token(usize::MAX);
pub(super) const LISTENER: Token = Token(usize::MAX - 1);
/// A handler that holds the loop this long without parking stalls it.
pub(crate) const STALL: Duration = Duration::from_millis(100);
/// Connections accepted in one turn before the loop serves the others.
pub(super) const ACCEPT_BATCH: usize = 64;

/// What a connection's coroutine waits for. (Whether a connection parked
/// in a read is idle is its state's to say: `conn/state.rs`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// Running, or in the run queue.
    Nothing,
    Read,
    Write,
    Offload,
}

pub(super) struct Task {
    pub(super) coro: Coroutine<Wake, Park, Done, DefaultStack>,
    /// Where its stack mapping starts (the guard page), for the overflow report.
    pub(super) stack_start: usize,
    /// Tells apart the tasks that reuse a key, for stale timers.
    pub(super) generation: u32,
    /// Its socket and state, shared with its coroutine's I/O.
    pub(super) link: Arc<Link>,
    pub(super) peer: Addr,
    pub(super) wait: Wait,
    pub(super) io_deadline: Option<Instant>,
    pub(super) conn_deadline: Option<Instant>,
    /// When this task's live entry in the timer heap fires.
    pub(super) timer_at: Option<Instant>,
    /// Shutdown gave up on it: its next wait fails at once.
    pub(super) cut: bool,
    /// What its socket is registered for in the poll: nothing until it
    /// first waits (a connection served without waiting costs no
    /// registration), then readable, and writable too once a write waited.
    pub(super) interest: Option<Interest>,
}

/// Clears what marks a coroutine as running on this thread.
struct LeftCoroutine;

impl Drop for LeftCoroutine {
    fn drop(&mut self) {
        parking::leave();
        overflow::leave_stack();
    }
}

/// Offloaded calls finished, for the loop to resume their connections.
pub(crate) struct Finished {
    pub(super) keys: Mutex<Vec<usize>>,
    pub(super) waker: Arc<Waker>,
}

impl Resume for Finished {
    fn done(&self, key: usize) {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(key);
        // A loop that cannot be woken finds the key at its next turn.
        let _ = self.waker.wake();
    }
}

/// A loop's state; see the module documentation.
pub(crate) struct EventLoop<H: Handler> {
    pub(super) shared: Arc<Shared<H>>,
    pub(super) loops: Arc<Loops>,
    pub(super) helpers: Arc<Helpers>,
    pub(super) poll: Poll,
    pub(super) finished: Arc<Finished>,
    pub(super) gauges: Arc<LoopGauges>,
    pub(super) tasks: Vec<Option<Task>>,
    pub(super) free_keys: Vec<usize>,
    pub(super) generation: u32,
    pub(super) runnable: VecDeque<(usize, Wake)>,
    pub(super) timers: BinaryHeap<Reverse<(Instant, usize, u32)>>,
    pub(super) stacks: Stacks,
    pub(super) live: usize,
    pub(super) parked: usize,
    /// The listener may have connections waiting: accept in this turn.
    pub(super) accept_more: bool,
    pub(super) accept_paused_until: Option<Instant>,
    pub(super) backoff: Backoff,
    /// When shutdown began for this loop: give up on the rest at this time.
    pub(super) force_at: Option<Instant>,
    /// During shutdown: when new connections that have received nothing
    /// are closed as idle.
    pub(super) grace_over_at: Option<Instant>,
    pub(super) forced: bool,
    /// This thread's use at the start of the turn, to tell a handler that
    /// held the loop from a thread the scheduler left waiting.
    pub(super) turn_usage: Usage,
}

impl<H: Handler> EventLoop<H> {
    /// Makes a loop's poll (its descriptors are taken before the thread
    /// starts, so that running out of them is an error of `run()`).
    pub(crate) fn poll() -> io::Result<(Poll, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok((poll, waker))
    }

    /// Sets up a loop on its poll and makes it known to the server (stats,
    /// shutdown).
    pub(crate) fn new(
        shared: Arc<Shared<H>>,
        loops: Arc<Loops>,
        helpers: Arc<Helpers>,
        (poll, waker): (Poll, Arc<Waker>),
    ) -> io::Result<Self> {
        let listener_fd = shared.core.listener.sock_ref().as_raw_fd();
        poll.registry()
            .register(&mut SourceFd(&listener_fd), LISTENER, Interest::READABLE)?;
        let gauges = Arc::new(LoopGauges::default());
        loops.add(LoopHandle {
            gauges: Arc::clone(&gauges),
            waker: Arc::clone(&waker),
        });
        let stack_size = shared.core.settings.parked_stack_size;
        Ok(EventLoop {
            shared,
            loops,
            helpers,
            poll,
            finished: Arc::new(Finished {
                keys: Mutex::default(),
                waker,
            }),
            gauges,
            tasks: Vec::new(),
            free_keys: Vec::new(),
            generation: 0,
            runnable: VecDeque::new(),
            timers: BinaryHeap::new(),
            stacks: Stacks::new(stack_size),
            live: 0,
            parked: 0,
            accept_more: true,
            accept_paused_until: None,
            backoff: Backoff::default(),
            force_at: None,
            grace_over_at: None,
            forced: false,
            turn_usage: Usage::default(),
        })
    }

    /// Serves until shutdown has begun and every connection of this loop
    /// has ended.
    pub(crate) fn run(mut self) {
        self.gauges.tid.store(rusage::this_thread_id(), Relaxed);
        if !overflow::prepare_thread() {
            crate::report::log_or_eprint(
                log::Level::Debug,
                "stack overflows of parked handlers will not be reported in words",
            );
        }
        let mut events = Events::with_capacity(1024);
        loop {
            #[cfg(test)]
            super::stopping::tests::die_if_told(&self.shared.core.settings.thread_name);
            // After the poll, so that its own blocking is not counted.
            self.turn_usage = rusage::this_thread();
            self.run_ready();
            let now = Instant::now();
            if self.force_at.is_none() && self.shared.core.stopping() {
                self.begin_stop(now);
            }
            if self.grace_over_at.is_some_and(|at| now >= at) {
                self.grace_over_at = None;
                for task in self.tasks.iter().flatten() {
                    task.link.close_if_new();
                }
            }
            if let Some(at) = self.force_at {
                if now >= at && !self.forced {
                    self.force_all();
                }
                if self.live == 0 {
                    break;
                }
            }
            let timeout = self.poll_timeout(now);
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.log_internal(&format!("event loop poll failed: {e}"));
                    // Nothing sensible is left but to wait and try again.
                    std::thread::sleep(Duration::from_millis(10));
                }
                continue;
            }
            for event in events.iter() {
                match event.token() {
                    WAKER => {}
                    LISTENER => self.accept_more = true,
                    Token(key) => {
                        let want = match self.task_wait(key) {
                            Some(Wait::Read) => {
                                event.is_readable() || event.is_read_closed() || event.is_error()
                            }
                            Some(Wait::Write) => {
                                event.is_writable() || event.is_write_closed() || event.is_error()
                            }
                            _ => false,
                        };
                        if want {
                            self.wake(key, Wake::Ready);
                        }
                    }
                }
            }
            self.take_finished();
            self.fire_timers(Instant::now());
            if self.accept_more {
                self.accept_some();
            }
        }
    }

    pub(super) fn task_wait(&self, key: usize) -> Option<Wait> {
        self.tasks.get(key)?.as_ref().map(|t| t.wait)
    }

    /// How long the poll may wait: not at all while handlers can go on or
    /// connections wait to be accepted; otherwise until the next deadline.
    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let accepting = self.accept_more
            && self.force_at.is_none()
            && self.accept_paused_until.is_none_or(|t| t <= now);
        if !self.runnable.is_empty() || accepting {
            return Some(Duration::ZERO);
        }
        let next = [
            self.timers.peek().map(|Reverse((t, _, _))| *t),
            self.force_at.filter(|_| !self.forced),
            self.grace_over_at,
            self.accept_paused_until,
        ]
        .into_iter()
        .flatten()
        .min()?;
        // Rounded up to the poll's millisecond, so it never wakes early.
        Some(next.saturating_duration_since(now) + Duration::from_micros(999))
    }

    /// Resumes the handlers that can go on, each once.
    fn run_ready(&mut self) {
        for _ in 0..self.runnable.len() {
            let Some((key, wake)) = self.runnable.pop_front() else {
                break;
            };
            self.resume(key, wake);
        }
    }

    /// Puts a parked task in the run queue.
    pub(super) fn wake(&mut self, key: usize, wake: Wake) {
        let Some(task) = self.tasks.get_mut(key).and_then(Option::as_mut) else {
            return;
        };
        if task.wait == Wait::Nothing {
            return;
        }
        task.wait = Wait::Nothing;
        task.io_deadline = None;
        self.parked -= 1;
        self.gauges.parked.store(self.parked as u64, Relaxed);
        self.runnable.push_back((key, wake));
    }

    /// Runs one handler until it parks or ends.
    pub(super) fn resume(&mut self, key: usize, wake: Wake) {
        let Some(task) = self.tasks.get_mut(key).and_then(Option::as_mut) else {
            return;
        };
        overflow::enter_stack(task.stack_start);
        let started = Instant::now();
        // For the run thread's watch (`watch.rs`), which reports a turn
        // held too long while it lasts.
        let turn = self.gauges.turns.fetch_add(1, Relaxed) + 1;
        self.gauges.held_by.store(key, Relaxed);
        let since = self.loops.since_epoch_us(started).saturating_add(1);
        self.gauges.held_since_us.store(since, Relaxed);
        let result = {
            // However `resume` returns, unwinding included, no coroutine
            // runs on this thread any more.
            let _left = LeftCoroutine;
            task.coro.resume(wake)
        };
        self.gauges.held_since_us.store(0, Relaxed);
        let held = started.elapsed();
        if held > STALL && self.gauges.reported.load(Relaxed) != turn {
            let peer = task.peer.clone();
            self.maybe_stalled(&peer, held);
        }
        match result {
            CoroutineResult::Yield(park) => self.park(key, park),
            CoroutineResult::Return(done) => self.finish(key, done),
        }
    }

    /// Records what a handler that just suspended waits for.
    fn park(&mut self, key: usize, park: Park) {
        let Some(task) = self.tasks.get_mut(key).and_then(Option::as_mut) else {
            return;
        };
        let (wait, deadline) = match park {
            Park::Read { deadline } => (Wait::Read, deadline),
            Park::Write { deadline } => (Wait::Write, deadline),
            Park::Yield => {
                // Not parked: no readiness is awaited. Resumed after the
                // handlers already in the run queue, and the next poll.
                let wake = if task.cut { Wake::Cut } else { Wake::Ready };
                self.runnable.push_back((key, wake));
                return;
            }
            Park::Offload(job) => {
                task.wait = Wait::Offload;
                self.parked += 1;
                self.gauges.parked.store(self.parked as u64, Relaxed);
                let resume: Arc<dyn Resume> = self.finished.clone();
                self.helpers.submit(job, resume, key);
                // The connection deadline runs on while the call does: its
                // timer may have been spent by an I/O timeout just before.
                self.arm(key);
                return;
            }
        };
        let want = match wait {
            Wait::Write => Interest::READABLE | Interest::WRITABLE,
            _ => Interest::READABLE,
        };
        let writable = want.is_writable();
        if task
            .interest
            .is_none_or(|has| writable && !has.is_writable())
        {
            let fd = task.link.stream.as_raw_fd();
            let registry = self.poll.registry();
            // Registering looks at the socket's readiness at once, so an
            // edge that came between the failed call and now is not lost.
            let done = match task.interest {
                None => registry.register(&mut SourceFd(&fd), Token(key), want),
                Some(_) => registry.reregister(&mut SourceFd(&fd), Token(key), want),
            };
            if done.is_err() {
                // No readiness can reach it: it fails like a cut one.
                task.cut = true;
            } else {
                task.interest = Some(want);
            }
        }
        if task.cut {
            self.runnable.push_back((key, Wake::Cut));
            return;
        }
        task.wait = wait;
        task.io_deadline = deadline;
        self.parked += 1;
        self.gauges.parked.store(self.parked as u64, Relaxed);
        self.arm(key);
    }

    fn take_finished(&mut self) {
        let keys =
            std::mem::take(&mut *self.finished.keys.lock().unwrap_or_else(|e| e.into_inner()));
        for key in keys {
            if self.task_wait(key) == Some(Wait::Offload) {
                self.wake(key, Wake::Ready);
            }
        }
    }
}
