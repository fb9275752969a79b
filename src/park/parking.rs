//! The parking point of `park_idle`: how a parked connection's `read`,
//! `write` and `offload` (`conn/parked.rs`) give the thread back to the
//! event loop, through [`Parking`], and how they run in place when called
//! off the loop.
//!
//! Each parked connection's handler runs in a coroutine. When its socket
//! would block, [`park`] suspends the coroutine with what it waits for
//! ([`Park`]); the loop resumes it with what happened ([`Wake`]). The
//! coroutine's `Yielder` is reached through a thread-local pointer, set by
//! the coroutine itself when it starts and each time it is resumed, and
//! cleared by the loop whenever a coroutine gives control back. So the
//! pointer is set exactly while code of that coroutine runs on this
//! thread; anywhere else (the loop, a thread the handler started, a helper
//! running `offload`) I/O falls back to waiting with `poll(2)`.
#![warn(clippy::undocumented_unsafe_blocks)]

use std::cell::Cell;
use std::ptr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use corosensei::Yielder;

use crate::conn::parked::{Parking, Wake};

/// What a suspended handler waits for.
pub(crate) enum Park {
    /// The socket to become readable, until `deadline`.
    Read { deadline: Option<Instant> },
    /// The socket to take more bytes, until `deadline`.
    Write { deadline: Option<Instant> },
    /// A job to run on a helper thread.
    Offload(Job),
    /// Nothing: the handler has had a long turn (`conn/parked.rs`'s
    /// budget) and goes on after the others that can.
    Yield,
}

/// The yielder of the coroutines the loops run.
pub(crate) type ParkYielder = Yielder<Wake, Park>;

thread_local! {
    /// The running coroutine's yielder; null outside every coroutine.
    static CURRENT: Cell<*const ParkYielder> = const { Cell::new(ptr::null()) };
}

/// Called by a coroutine as it starts: it now runs on this thread.
pub(crate) fn enter(yielder: &ParkYielder) {
    CURRENT.with(|c| c.set(yielder));
}

/// Called by the loop each time a coroutine gives control back.
pub(crate) fn leave() {
    CURRENT.with(|c| c.set(ptr::null()));
}

/// Suspends the running coroutine until the loop resumes it; `Err` gives
/// `park` back when the caller is not a coroutine.
fn park(park: Park) -> Result<Wake, Park> {
    let current = CURRENT.with(|c| c.get());
    // A handler unwinding (a drop guard that reads or flushes) does not
    // park: the thread's panic count is the thread's, not the coroutine's,
    // so the next handler resumed on it would find `thread::panicking()`
    // true (and its mutexes not poisoned by its own panic). Its I/O waits
    // in place instead, within its timeouts.
    if current.is_null() || std::thread::panicking() {
        return Err(park);
    }
    // SAFETY: `CURRENT` is non-null only while code of the coroutine that
    // stored it runs on this thread (see the module documentation): it was
    // set from the `&Yielder` that coroutine's body received, which lives
    // as long as that body runs, and we are inside that body now, on its
    // own stack. The pointer is thread-local, so no other thread sees it.
    let yielder = unsafe { &*current };
    let wake = yielder.suspend(park);
    // Other coroutines ran meanwhile and set their own.
    CURRENT.with(|c| c.set(current));
    Ok(wake)
}

/// Whether a job handed to a helper has run (or was dropped unrun).
#[derive(Debug, Default)]
pub(crate) struct Completion {
    done: Mutex<bool>,
    cv: Condvar,
}

impl Completion {
    fn set(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cv.notify_all();
    }

    fn wait(&self) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            done = self.cv.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A blocking call handed to a helper thread. Its completion is marked
/// when it has run or is dropped, whichever comes first.
pub(crate) struct Job {
    run: Option<Box<dyn FnOnce() + Send + 'static>>,
    done: Arc<Completion>,
}

impl Job {
    /// Runs the job (on whichever thread calls this).
    pub(crate) fn run(mut self) {
        if let Some(run) = self.run.take() {
            run();
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // The closure and what it owns go first: it may borrow the frame
        // that waits for the mark.
        drop(self.run.take());
        self.done.set();
    }
}

/// Waits, however the caller's frame is left (unwinding included), until
/// the job borrowing that frame is done with it.
struct AwaitJob(Arc<Completion>);

impl Drop for AwaitJob {
    fn drop(&mut self) {
        self.0.wait();
    }
}

/// The parking point the event loops' connections use.
pub(crate) static COROUTINES: Coroutines = Coroutines;

/// Parks the coroutine that runs the caller, where there is one.
#[derive(Debug)]
pub(crate) struct Coroutines;

impl Parking for Coroutines {
    fn wait(&self, writable: bool, deadline: Option<Instant>) -> Option<Wake> {
        let why = match writable {
            true => Park::Write { deadline },
            false => Park::Read { deadline },
        };
        park(why).ok()
    }

    fn yield_now(&self) -> Option<Wake> {
        park(Park::Yield).ok()
    }

    fn offload(&self, job: &mut (dyn FnMut() + Send)) {
        let run: Box<dyn FnOnce() + Send + '_> = Box::new(job);
        // SAFETY: only the lifetime changes. `run` borrows `job`, and
        // whatever `job` borrows, all of which outlive this call. The
        // `Job` that owns `run` marks `done` when it has run or is
        // dropped, and `_await` (dropped on every path out of this
        // function, unwinding included) waits for that mark. So `run` is
        // never called, nor dropped, after those borrows end, which is
        // what `std::thread::scope` relies on too.
        let run: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(run) };
        let done = Arc::new(Completion::default());
        let _await = AwaitJob(Arc::clone(&done));
        let job = Job {
            run: Some(run),
            done,
        };
        if let Err(Park::Offload(job)) = park(Park::Offload(job)) {
            job.run();
        }
    }
}
