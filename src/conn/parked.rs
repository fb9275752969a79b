//! A connection's stream under `park_idle`: non-blocking underneath; where
//! a blocking socket would block its thread, it asks its engine to park
//! the handler ([`Parking`], which `park/` provides) until the socket is
//! ready or a deadline passes. Off a parked handler (a thread the handler
//! started, a helper running `offload`) it waits with `poll(2)` instead.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn::link::Link;
use crate::deadline::deadline_after;
use crate::net::stream::Stream;
use crate::sys::poll;

/// Why a parked handler was resumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The first resume, or what it waited for may be there: try again.
    Ready,
    /// Its deadline passed first.
    TimedOut,
    /// Shutdown gave up waiting for it: its I/O fails from now on.
    Cut,
}

thread_local! {
    static ABANDONING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this thread is a dying event loop dropping its connections'
/// coroutines. Dropping a suspended coroutine unwinds its stack by a panic
/// of its own, which must reach the coroutine's root: a `catch_unwind` of
/// the serving steps rethrows it instead of reporting a handler's panic.
pub(crate) fn abandoning() -> bool {
    ABANDONING.with(std::cell::Cell::get)
}

/// Marks this thread as abandoning its coroutines while it lives.
pub(crate) struct Abandoning(());

impl Abandoning {
    pub(crate) fn begin() -> Self {
        ABANDONING.with(|a| a.set(true));
        Abandoning(())
    }
}

impl Drop for Abandoning {
    fn drop(&mut self) {
        ABANDONING.with(|a| a.set(false));
    }
}

/// How a parked connection waits: what an engine that parks handlers
/// gives their I/O.
pub(crate) trait Parking: Sync {
    /// Suspends the calling handler until its socket may be readable (or,
    /// `writable`, take more bytes) or `deadline` passes. `None` when the
    /// caller is not a parked handler: it must wait on the socket itself.
    fn wait(&self, writable: bool, deadline: Option<Instant>) -> Option<Wake>;

    /// Runs `job` on a helper thread while the calling handler parks, or
    /// in place when the caller is not a parked handler; returns once the
    /// job has run.
    fn offload(&self, job: &mut (dyn FnMut() + Send));

    /// Gives the loop to the other handlers that can go on, and goes on
    /// after them (`Wake::Cut` if its connection was cut meanwhile);
    /// `None` at once when the caller is not a parked handler.
    fn yield_now(&self) -> Option<Wake>;
}

/// Reads and writes a handler may make without waiting before it gives
/// its loop to the others for a turn, as a thread would be preempted: a
/// client that sends (or reads) without pause would otherwise hold the
/// loop, its other connections, its timers and its shutdown, for good.
/// About a millisecond of system calls; tokio's budget is of the same
/// order (128).
const BUDGET: u32 = 128;

/// The error of I/O on a connection the server has ended: a shutdown
/// that gave up waiting for it, or its `connection_timeout`.
fn cut() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "the server ended this connection (its connection_timeout passed, or a shutdown \
         stopped waiting for it)",
    )
}

/// A parked connection's stream; see the module documentation.
pub(crate) struct ParkedStream {
    link: Arc<Link>,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    parking: &'static dyn Parking,
    /// Calls made since the handler last waited (see [`BUDGET`]).
    unwaited: u32,
    /// The loop cut the connection while the handler had yielded: its I/O
    /// fails from now on, whatever the socket still holds.
    cut: bool,
}

impl std::fmt::Debug for ParkedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParkedStream")
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

impl ParkedStream {
    pub(crate) fn new(
        link: Arc<Link>,
        timeouts: (Option<Duration>, Option<Duration>),
        parking: &'static dyn Parking,
    ) -> Self {
        ParkedStream {
            link,
            read_timeout: timeouts.0,
            write_timeout: timeouts.1,
            parking,
            unwaited: 0,
            cut: false,
        }
    }

    /// One more call that did not wait: past [`BUDGET`] of them, the
    /// handler lets the others of its loop go first.
    fn spent(&mut self) {
        self.unwaited += 1;
        if self.unwaited >= BUDGET {
            self.unwaited = 0;
            if let Some(Wake::Cut) = self.parking.yield_now() {
                self.cut = true;
            }
        }
    }

    pub(crate) fn link(&self) -> &Link {
        &self.link
    }

    pub(crate) fn link_arc(&self) -> Arc<Link> {
        Arc::clone(&self.link)
    }

    pub(crate) fn stream(&self) -> &Stream {
        &self.link.stream
    }

    pub(crate) fn parking(&self) -> &'static dyn Parking {
        self.parking
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

    /// Reads with one deadline, however the bytes trickle in; `None`: the
    /// read timeout from when the read first would block (then
    /// `WouldBlock`, as a blocking socket's timeout reads). The deadline is
    /// only worked out once the read would block.
    pub(crate) fn read_within(
        &mut self,
        buf: &mut [u8],
        fixed: Option<Instant>,
    ) -> io::Result<usize> {
        if self.cut {
            return Err(cut());
        }
        if self.link.state.reading_ended() {
            return Ok(0);
        }
        let (link, state) = (&*self.link, &self.link.state);
        let mut deadline = fixed;
        let mut waited = false;
        loop {
            match (&link.stream).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => {
                    if matches!(result, Ok(n) if n > 0) {
                        state.received();
                    }
                    self.spent();
                    return result;
                }
            }
            if !waited && fixed.is_none() {
                deadline = self.read_timeout.map(|t| deadline_after(Instant::now(), t));
            }
            waited = true;
            if state.begin_read() {
                // Shutdown has begun and nothing is asked of this one:
                // end of file, as a blocked read gets it in the thread mode.
                link.close_reading();
                state.end_read(0);
                continue;
            }
            self.unwaited = 0;
            let waited_out = self.wait(false, deadline);
            state.end_read(0);
            waited_out?;
        }
    }

    /// Writes, parking until the peer takes some bytes or the write
    /// timeout passes (then `WouldBlock`).
    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.cut {
            return Err(cut());
        }
        let link = &*self.link;
        let mut deadline = None;
        let mut waited = false;
        loop {
            match (&link.stream).write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => {
                    link.state.replied();
                    self.spent();
                    return result;
                }
            }
            if !waited {
                deadline = self
                    .write_timeout
                    .map(|t| deadline_after(Instant::now(), t));
                waited = true;
            }
            self.unwaited = 0;
            self.wait(true, deadline)?;
        }
    }

    /// Waits until the socket may be readable (or, `writable`, take more
    /// bytes): parked when the caller is a parked handler, in `poll(2)`
    /// otherwise. `Ok` to try again; `WouldBlock` once `deadline` has
    /// passed, as a blocking socket's timeout reads; an error once
    /// shutdown has given up on the connection.
    fn wait(&self, writable: bool, deadline: Option<Instant>) -> io::Result<()> {
        match self.parking.wait(writable, deadline) {
            Some(Wake::Ready) => Ok(()),
            Some(Wake::TimedOut) => Err(io::ErrorKind::WouldBlock.into()),
            Some(Wake::Cut) => Err(cut()),
            None => {
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                match poll::wait(&self.link.stream, writable, left)? {
                    true => Ok(()),
                    false => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }
}
