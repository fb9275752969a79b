//! The helper threads of `Connection::offload`: a bounded pool that runs
//! blocking calls while their connections park, then hands each
//! connection back to its event loop.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use crate::core::Core;
use crate::park::parking::Job;
use crate::report::{log_or_eprint, with_skipped};

/// Where a finished job's connection goes back to: its event loop.
pub(crate) trait Resume: Send + Sync {
    /// The job of connection `key` is done.
    fn done(&self, key: usize);
}

struct Queued {
    job: Job,
    resume: Arc<dyn Resume>,
    key: usize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Queued>,
    threads: usize,
    idle: usize,
    stopping: bool,
}

/// The pool: threads start on demand up to `max`, and retire after
/// `idle_timeout` without work.
pub(crate) struct Helpers {
    core: Arc<Core>,
    state: Mutex<State>,
    work: Condvar,
    /// Signalled as the last thread leaves, for `stop`.
    gone: Condvar,
    max: usize,
    idle_timeout: Duration,
}

impl Helpers {
    pub(crate) fn new(core: Arc<Core>) -> Arc<Self> {
        let (max, idle_timeout) = (
            core.settings.max_workers(),
            core.settings.worker_idle_timeout,
        );
        Arc::new(Helpers {
            core,
            state: Mutex::default(),
            work: Condvar::new(),
            gone: Condvar::new(),
            max,
            idle_timeout,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Only queue operations and counts run under this lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `job` on a helper thread, then tells `resume` that `key` is done.
    pub(crate) fn submit(self: &Arc<Self>, job: Job, resume: Arc<dyn Resume>, key: usize) {
        let mut st = self.lock();
        st.queue.push_back(Queued { job, resume, key });
        if st.idle > st.queue.len() - 1 {
            self.work.notify_one();
            return;
        }
        if st.threads >= self.max {
            return;
        }
        st.threads += 1;
        drop(st);
        self.core.counters.helpers.fetch_add(1, Relaxed);
        let me = Arc::clone(self);
        let name = format!("{}-offload", self.core.settings.thread_name);
        if let Err(e) = thread::Builder::new().name(name).spawn(move || me.serve()) {
            self.core.counters.helpers.fetch_sub(1, Relaxed);
            let orphans: Vec<Queued> = {
                let mut st = self.lock();
                st.threads -= 1;
                // With no thread at all, nobody would ever run them.
                match st.threads {
                    0 => st.queue.drain(..).collect(),
                    _ => Vec::new(),
                }
            };
            if let Some(skipped) = self.core.logs.spawn_errors.admit() {
                let msg = format!("cannot start an offload helper thread: {e}");
                log_or_eprint(log::Level::Warn, &with_skipped(msg, skipped));
            }
            for q in orphans {
                q.job.run();
                q.resume.done(q.key);
            }
        }
    }

    fn serve(&self) {
        let mut st = self.lock();
        loop {
            if let Some(q) = st.queue.pop_front() {
                drop(st);
                q.job.run();
                q.resume.done(q.key);
                st = self.lock();
                continue;
            }
            if st.stopping {
                break;
            }
            st.idle += 1;
            let (guard, timeout) = self
                .work
                .wait_timeout(st, self.idle_timeout)
                .unwrap_or_else(|e| e.into_inner());
            st = guard;
            st.idle -= 1;
            if timeout.timed_out() && st.queue.is_empty() {
                break;
            }
        }
        st.threads -= 1;
        if st.threads == 0 {
            self.gone.notify_all();
        }
        drop(st);
        self.core.counters.helpers.fetch_sub(1, Relaxed);
    }

    /// Lets the threads finish what is queued and leave; waits for them
    /// at most `grace`.
    pub(crate) fn stop(&self, grace: Duration) {
        let mut st = self.lock();
        st.stopping = true;
        self.work.notify_all();
        let deadline = std::time::Instant::now() + grace;
        while st.threads > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .gone
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}
