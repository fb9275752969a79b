//! The parking point of `park_idle`: how a handler's blocking `read`,
//! `write` and `offload` give its thread back to the event loop (see
//! `park/`), and how they block when called off the loop.
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

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use corosensei::Yielder;

use crate::deadline::deadline_after;
use crate::net::stream::Stream;
use crate::sys::poll;

/// What a suspended handler waits for.
pub(crate) enum Park {
    /// The socket to become readable, until `deadline`. `idle`: nothing
    /// was read since the handler last wrote (or since the connection
    /// opened), so shutdown may close it at once.
    Read {
        deadline: Option<Instant>,
        idle: bool,
    },
    /// The socket to take more bytes, until `deadline`.
    Write { deadline: Option<Instant> },
    /// A job to run on a helper thread.
    Offload(Job),
}

/// Why a handler was resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The first resume, or what it waited for may be there: try again.
    Ready,
    /// Its deadline passed first.
    TimedOut,
    /// Shutdown closes this idle connection: the read sees end of file.
    Closing,
    /// Shutdown gave up waiting for it: its I/O fails from now on.
    Cut,
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

/// Whether the caller runs inside a parked handler's coroutine.
fn in_coroutine() -> bool {
    CURRENT.with(|c| !c.get().is_null())
}

/// Suspends the running coroutine until the loop resumes it; `Err` gives
/// `park` back when the caller is not a coroutine.
fn park(park: Park) -> Result<Wake, Park> {
    let current = CURRENT.with(|c| c.get());
    if current.is_null() {
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

fn cut() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the server is shutting down and stopped waiting for this connection",
    )
}

/// A connection's stream under `park_idle`: non-blocking underneath, and
/// parks its handler where a blocking socket would block its thread.
#[derive(Debug)]
pub(crate) struct ParkedStream {
    stream: Arc<Stream>,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    /// Nothing read since the last write (or since the connection opened).
    awaiting: bool,
}

impl ParkedStream {
    pub(crate) fn new(stream: Arc<Stream>, timeouts: (Option<Duration>, Option<Duration>)) -> Self {
        ParkedStream {
            stream,
            read_timeout: timeouts.0,
            write_timeout: timeouts.1,
            awaiting: true,
        }
    }

    /// Counts the connection as waiting for its client's next request.
    pub(crate) fn mark_awaiting(&mut self) {
        self.awaiting = true;
    }

    /// Counts the connection as waiting for its client's next request,
    /// or (`false`) as in the middle of one.
    #[cfg(feature = "tls")]
    pub(crate) fn set_awaiting(&mut self, awaiting: bool) {
        self.awaiting = awaiting;
    }

    pub(crate) fn stream(&self) -> &Stream {
        &self.stream
    }

    pub(crate) fn read_timeout(&self) -> Option<Duration> {
        self.read_timeout
    }

    pub(crate) fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    pub(crate) fn set_read_timeout(&mut self, t: Option<Duration>) {
        self.read_timeout = t;
    }

    pub(crate) fn set_write_timeout(&mut self, t: Option<Duration>) {
        self.write_timeout = t;
    }

    /// Reads, parking until data comes or the read timeout passes (then
    /// `WouldBlock`, as a blocking socket's timeout reads). The deadline is
    /// only worked out once the read would block.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_within(buf, None)
    }

    /// Reads with one deadline, however the bytes trickle in; `None`: the
    /// read timeout from when the read first would block.
    pub(crate) fn read_within(
        &mut self,
        buf: &mut [u8],
        fixed: Option<Instant>,
    ) -> io::Result<usize> {
        let mut deadline = fixed;
        let mut waited = false;
        loop {
            match (&*self.stream).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => {
                    if matches!(result, Ok(n) if n > 0) {
                        self.awaiting = false;
                    }
                    return result;
                }
            }
            if !waited && fixed.is_none() {
                deadline = self.read_timeout.map(|t| deadline_after(Instant::now(), t));
            }
            waited = true;
            let idle = self.awaiting;
            match park(Park::Read { deadline, idle }) {
                Ok(Wake::Ready) => {}
                Ok(Wake::TimedOut) => return Err(io::ErrorKind::WouldBlock.into()),
                Ok(Wake::Closing) => return Ok(0),
                Ok(Wake::Cut) => return Err(cut()),
                Err(_) => {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if !poll::wait(&*self.stream, false, left)? {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                }
            }
        }
    }

    /// Writes, parking until the peer takes some bytes or the write
    /// timeout passes (then `WouldBlock`).
    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut deadline = None;
        let mut waited = false;
        loop {
            match (&*self.stream).write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => {
                    self.awaiting = true;
                    return result;
                }
            }
            if !waited {
                deadline = self
                    .write_timeout
                    .map(|t| deadline_after(Instant::now(), t));
                waited = true;
            }
            match park(Park::Write { deadline }) {
                Ok(Wake::Ready) => {}
                Ok(Wake::TimedOut) => return Err(io::ErrorKind::WouldBlock.into()),
                Ok(Wake::Closing | Wake::Cut) => return Err(cut()),
                Err(_) => {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    if !poll::wait(&*self.stream, true, left)? {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                }
            }
        }
    }
}

/// Reads a PROXY header off a parked stream within one deadline.
pub(crate) struct Within<'a> {
    pub(crate) stream: &'a mut ParkedStream,
    pub(crate) deadline: Instant,
}

impl Read for Within<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.stream.read_within(buf, Some(self.deadline)) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no complete PROXY header in time",
            )),
            result => result,
        }
    }
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

/// Runs `f` on a helper thread while the calling handler parks, when
/// called from a parked handler; anywhere else runs `f` in place.
/// A panic in `f` resumes in the caller.
pub(crate) fn offload<F, R>(f: F) -> R
where
    F: FnOnce() -> R + Send,
    R: Send,
{
    if !in_coroutine() {
        return f();
    }
    let mut out: Option<thread::Result<R>> = None;
    let done = Arc::new(Completion::default());
    {
        let slot = &mut out;
        let run: Box<dyn FnOnce() + Send + '_> = Box::new(move || {
            *slot = Some(catch_unwind(AssertUnwindSafe(f)));
        });
        // SAFETY: only the lifetime changes. `run` borrows `out` and
        // whatever `f` borrows, all of which outlive this block. The job
        // that owns `run` marks `done` when it has run or is dropped, and
        // `_await` (declared after `out`, so dropped before it, on every
        // path out of this block, unwinding included) waits for that mark.
        // So `run` is never called, nor dropped, after those borrows end,
        // which is what `std::thread::scope` relies on too.
        let run: Box<dyn FnOnce() + Send + 'static> = unsafe { std::mem::transmute(run) };
        let _await = AwaitJob(Arc::clone(&done));
        let job = Job {
            run: Some(run),
            done: Arc::clone(&done),
        };
        if let Err(Park::Offload(job)) = park(Park::Offload(job)) {
            job.run();
        }
    }
    match out {
        Some(Ok(value)) => value,
        Some(Err(payload)) => resume_unwind(payload),
        // The loop dropped the job unrun: it only does so while dying.
        None => panic!("an offloaded call was dropped before it ran"),
    }
}
