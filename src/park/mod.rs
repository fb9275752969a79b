//! The parked engine (`park_idle`): event loops that serve many
//! connections each, a handler per connection on a small stack of its own,
//! parked off the thread whenever its socket would block.
//!
//! * `event_loop.rs`: one loop thread: poll, resume, park;
//!   `connections.rs`, `accepting.rs`, `deadlines.rs` and `stopping.rs`:
//!   starting and ending a connection, its accepting, its timers, and its
//!   shutdown and stall reports.
//! * `task.rs`: what runs inside a connection's coroutine.
//! * `helpers.rs`: the helper threads `offload` runs on.
//! * `stacks.rs`: the handlers' stacks, reused, and the memory-map limit.
//! * `parking.rs`: the parking point, with the `unsafe` it needs: how a
//!   handler's blocking call gives its thread back to the loop.
//! * `gauges.rs`: what a loop tells the rest of the server of itself;
//!   `watch.rs`: the run thread's watch on loops a handler holds.
//!
//! A connection's own steps and its parked I/O are in `conn/`, shared with
//! the thread engine; this folder provides their [`Parking`].
//!
//! [`Parking`]: crate::conn::parked::Parking

mod accepting;
mod connections;
mod deadlines;
pub(crate) mod event_loop;
mod gauges;
pub(crate) mod helpers;
#[allow(unsafe_code)]
mod parking;
pub(crate) mod stacks;
mod stopping;
pub(crate) mod task;
mod watch;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::Instant;

use crate::conn::flusher::Flusher;
use crate::conn::outbox_core::PushSetup;
use crate::core::{Core, Engine, Gauges, Shared};
use crate::deadline::deadline_after;
use crate::lifecycle::report::{report, ShutdownReport, EXIT_GRACE};
use crate::lifecycle::Command;
use crate::report::{drop_payload, log_or_eprint, panic_message};
use crate::stats::{add, bump};

use crate::{Error, Handler};
use gauges::LoopGauges;

pub(crate) use stacks::connection_cap;

use event_loop::EventLoop;
use helpers::Helpers;

/// Loop threads still running, and a way to wait for none.
#[derive(Default)]
struct Running {
    count: Mutex<usize>,
    cv: Condvar,
}

impl Running {
    fn leave(&self) {
        let mut n = self.count.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        self.cv.notify_all();
    }
}

/// One event loop, as the rest of the server sees it.
#[derive(Debug)]
pub(crate) struct LoopHandle {
    pub(crate) gauges: Arc<LoopGauges>,
    /// Wakes the loop from its poll (shutdown).
    pub(crate) waker: Arc<mio::Waker>,
}

/// The parked engine of one server: its loops, as shutdown and `stats()`
/// reach them.
#[derive(Debug)]
pub(crate) struct Loops {
    /// Origin of the loops' turn times.
    pub(crate) epoch: Instant,
    /// What each connection needs for an outbox.
    pub(crate) push: Arc<PushSetup>,
    loops: Mutex<Vec<LoopHandle>>,
    /// `None` while serving; at shutdown, the connections served when it
    /// began (what the report calls in flight).
    stopped: Mutex<Option<usize>>,
    /// When shutdown began: every loop's `shutdown_timeout`, and the run
    /// thread's wait for the loops, count from this one instant.
    pub(crate) stop_at: OnceLock<Instant>,
    /// The run thread waits here for shutdown.
    control: Condvar,
}

impl Loops {
    fn new(core: &Core) -> Self {
        Loops {
            epoch: Instant::now(),
            push: Arc::new(PushSetup {
                max: core.settings.max_outbox,
                counters: Arc::clone(&core.counters),
                flusher: Flusher::new(&core.settings.thread_name),
            }),
            loops: Mutex::default(),
            stopped: Mutex::default(),
            stop_at: OnceLock::new(),
            control: Condvar::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Vec<LoopHandle>> {
        self.loops.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn add(&self, handle: LoopHandle) {
        self.lock().push(handle);
    }

    pub(crate) fn remove(&self, gauges: &Arc<LoopGauges>) {
        self.lock().retain(|l| !Arc::ptr_eq(&l.gauges, gauges));
    }

    /// Connections of loops still running that never got to cut them: a
    /// handler holds its loop's thread (a lock, a sleep, blocking I/O not
    /// offloaded), so that loop could not even count them. Forced, as the
    /// thread mode counts a handler still running at the deadline.
    fn held_by_their_handlers(&self) -> u64 {
        self.lock()
            .iter()
            .filter(|l| !l.gauges.forced.load(Relaxed))
            .map(|l| l.gauges.live.load(Relaxed))
            .sum()
    }

    fn stopped(&self) -> MutexGuard<'_, Option<usize>> {
        self.stopped.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Engine for Loops {
    fn command(&self, command: Command) {
        match command {
            Command::Stop => {
                let mut stopped = self.stopped();
                if stopped.is_some() {
                    return;
                }
                *stopped = Some(self.gauges().active as usize);
                let _ = self.stop_at.set(Instant::now());
                drop(stopped);
                // Each loop, woken, sees the flag and stops (`stopping.rs`).
                for l in self.lock().iter() {
                    // A loop that cannot be woken finds the flag at its next turn.
                    let _ = l.waker.wake();
                }
                self.control.notify_all();
            }
        }
    }

    fn gauges(&self) -> Gauges {
        let loops = self.lock();
        let (mut active, mut parked) = (0, 0);
        for l in loops.iter() {
            active += l.gauges.live.load(Relaxed);
            parked += l.gauges.parked.load(Relaxed);
        }
        Gauges {
            queued: 0,
            active,
            threads: loops.len() as u64,
            parked,
        }
    }
}

/// Counts a loop thread out however it ends.
struct Leave(Arc<Running>);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// What starting a loop thread takes.
struct LoopKit<H: Handler> {
    shared: Arc<Shared<H>>,
    engine: Arc<Loops>,
    helpers: Arc<Helpers>,
    running: Arc<Running>,
}

impl<H: Handler> Clone for LoopKit<H> {
    fn clone(&self) -> Self {
        LoopKit {
            shared: Arc::clone(&self.shared),
            engine: Arc::clone(&self.engine),
            helpers: Arc::clone(&self.helpers),
            running: Arc::clone(&self.running),
        }
    }
}

impl<H: Handler> LoopKit<H> {
    /// Starts loop thread `id`, counted in `running` until it ends. A loop
    /// that dies (a defect of the library's own: a handler's panic is
    /// caught in its coroutine) has given back what its connections held
    /// (`EventLoop`'s drop), is reported, and is replaced, unless shutdown
    /// has begun.
    fn start(&self, id: usize) -> Result<(), Error> {
        let name = format!("{}-{id}", self.shared.core.settings.thread_name);
        let poll = EventLoop::<H>::poll().map_err(|source| Error::Spawn {
            name: name.clone(),
            source,
        })?;
        *self.running.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let leave = Leave(Arc::clone(&self.running));
        let kit = self.clone();
        // A loop's coroutines never leave its thread, so it is made there.
        let spawned = thread::Builder::new().name(name.clone()).spawn(move || {
            let _leave = leave;
            let shared = Arc::clone(&kit.shared);
            let (loops, helpers) = (Arc::clone(&kit.engine), Arc::clone(&kit.helpers));
            let event_loop = match EventLoop::new(shared, loops, helpers, poll) {
                Ok(event_loop) => event_loop,
                Err(e) => {
                    let msg = format!("cannot start an event loop: {e}; shutting down");
                    crate::report::log_or_eprint(log::Level::Error, &msg);
                    kit.shared.core.command(Command::Stop);
                    return;
                }
            };
            let ran = catch_unwind(AssertUnwindSafe(|| event_loop.run()));
            if let Err(payload) = ran {
                kit.replace(id, payload);
            }
        });
        // A thread not started dropped its closure, and with it `leave`.
        spawned
            .map(drop)
            .map_err(|source| Error::Spawn { name, source })
    }

    /// Reports loop `id`'s death and starts another in its place.
    fn replace(&self, id: usize, payload: Box<dyn std::any::Any + Send>) {
        let core = &self.shared.core;
        bump(&core.counters.panics);
        let why = panic_message(&*payload).to_string();
        drop_payload(payload);
        if core.stopping() {
            return;
        }
        let replaced = match self.start(id) {
            Ok(()) => "its connections were closed; another loop takes its place".to_string(),
            Err(e) => format!("its connections were closed, and it cannot be replaced: {e}"),
        };
        let msg = format!(
            "event loop {id} of {} died: {why}; {replaced}",
            core.local_addr
        );
        log_or_eprint(log::Level::Error, &msg);
    }
}

/// Serves on `workers` event loops until shutdown, then drains them and
/// reports, as the thread mode's `run` does.
pub(crate) fn run<H: Handler>(shared: &Arc<Shared<H>>) -> Result<ShutdownReport, Error> {
    let core = &*shared.core;
    let settings = &core.settings;
    if let Err(source) = core.listener.sock_ref().set_nonblocking(true) {
        return Err(Error::SetOption {
            option: "O_NONBLOCK",
            addr: core.local_addr.clone(),
            source,
        });
    }
    let engine = Arc::new(Loops::new(core));
    let helpers = Helpers::new(Arc::clone(&shared.core));
    let running = Arc::new(Running::default());
    let kit = LoopKit {
        shared: Arc::clone(shared),
        engine: Arc::clone(&engine),
        helpers: Arc::clone(&helpers),
        running: Arc::clone(&running),
    };
    let mut started = Ok(());
    for id in 0..settings.workers() {
        started = kit.start(id);
        if started.is_err() {
            break;
        }
    }
    // Registered after the loops are counted, so that a shutdown before
    // every loop has its poll still waits for them below.
    core.start_engine(Arc::clone(&engine) as Arc<dyn Engine>);
    if started.is_ok() {
        core.log_serving(&format!(
            "on {} event loops (park_idle)",
            settings.workers()
        ));
        let mut stopped = engine.stopped();
        while stopped.is_none() {
            stopped = engine
                .control
                .wait_timeout(stopped, watch::EVERY)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if stopped.is_none() {
                drop(stopped);
                engine.watch(core);
                stopped = engine.stopped();
            }
        }
    } else {
        core.command(Command::Stop);
    }
    let stop_at = engine.stop_at.get().copied().unwrap_or_else(Instant::now);
    let leave_by = deadline_after(
        deadline_after(stop_at, settings.shutdown_timeout),
        EXIT_GRACE,
    );
    let mut left = running.count.lock().unwrap_or_else(|e| e.into_inner());
    while *left > 0 {
        let wait = leave_by.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            break;
        }
        left = running
            .cv
            .wait_timeout(left, wait)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    drop(left);
    // The same deadline for the helpers: a helper stuck in an offloaded
    // call is left behind, as a stuck worker is in the thread mode, rather
    // than given a grace of its own.
    helpers.stop(leave_by.saturating_duration_since(Instant::now()));
    // As in the thread mode's drain: what is still queued is lost.
    engine.push.flusher.end_all();
    engine.push.flusher.stop();
    if core.adopted_and_kept() {
        // Whoever serves the passed socket next may expect it blocking
        // (not a new process of an upgrade, which serves it already).
        let _ = core.listener.sock_ref().set_nonblocking(false);
    }
    started?;
    // The loops counted what they cut; a loop held by a handler counted
    // nothing, and its connections were not drained either.
    let held = engine.held_by_their_handlers();
    add(&core.counters.forced_at_shutdown, held);
    let forced = core.counters.forced_at_shutdown.load(Relaxed) as usize;
    let in_flight = engine.stopped().unwrap_or(0);
    Ok(report(&core.counters, in_flight, forced))
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use super::stopping::tests::{doom, doomed};
    use crate::handlers::Echo;
    use crate::{ProxyProtocol, Server, ServerThread};

    const TIMEOUT: Duration = Duration::from_secs(5);

    fn echoed(server: &ServerThread, msg: &[u8]) -> TcpStream {
        let addr = server.local_addr().inet().unwrap();
        let mut client = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        client.set_read_timeout(Some(TIMEOUT)).unwrap();
        client.set_write_timeout(Some(TIMEOUT)).unwrap();
        client.write_all(msg).unwrap();
        let mut back = vec![0; msg.len()];
        client.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
        client
    }

    /// Has the server's one loop die at its next turn, which `held` (a
    /// connection on it) wakes, and waits for its replacement.
    fn kill_the_loop(server: &ServerThread, name: &'static str, mut held: TcpStream) {
        doom(name);
        held.write_all(b"x").unwrap();
        let mut rest = Vec::new();
        match held.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.len() <= 1, "{rest:?}"),
            Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        }
        let deadline = Instant::now() + TIMEOUT;
        while server.stats().active != 0 || server.stats().workers != 1 {
            assert!(Instant::now() < deadline, "{:?}", server.stats());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!doomed(name), "the loop took the defect");
    }

    /// A client that a PROXY header names, through a connection of its
    /// own: its first message echoed.
    fn proxied(server: &ServerThread, client: &str, msg: &[u8]) -> TcpStream {
        let addr = server.local_addr().inet().unwrap();
        let mut conn = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        conn.set_read_timeout(Some(TIMEOUT)).unwrap();
        conn.set_write_timeout(Some(TIMEOUT)).unwrap();
        let header = format!("PROXY TCP4 {client} 127.0.0.1 40000 7\r\n");
        conn.write_all(&[header.as_bytes(), msg].concat()).unwrap();
        let mut back = vec![0; msg.len()];
        conn.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
        conn
    }

    /// A defect that kills a loop (injected: a handler's own panics are
    /// caught in its coroutine) costs that loop's connections, nothing
    /// more: their places under `max_connections` are given back, the
    /// gauges come down, and another loop serves the next client.
    #[test]
    fn a_loop_that_dies_gives_back_its_books_and_is_replaced() {
        let server = Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(true)
            .workers(1)
            .max_connections(1)
            .thread_name("doomed")
            .build(Echo)
            .unwrap()
            .spawn()
            .unwrap();
        let held = echoed(&server, b"held");
        assert_eq!(server.stats().active, 1);

        kill_the_loop(&server, "doomed", held);
        drop(echoed(&server, b"served by the new loop"));
        assert_eq!(server.stats().panics, 1);
        server.stop().unwrap();
    }

    /// What a loop that dies gives back includes the client a PROXY
    /// header named, counted against `max_per_source` by the connection's
    /// coroutine: that client is served again, not refused for good.
    #[test]
    fn a_loop_that_dies_gives_back_the_clients_its_proxy_headers_named() {
        let server = Server::builder()
            .bind("127.0.0.1:0")
            .park_idle(true)
            .workers(1)
            .proxy_protocol(ProxyProtocol::new().trust_loopback())
            .max_per_source(1)
            .thread_name("doomed-proxied")
            .build(Echo)
            .unwrap()
            .spawn()
            .unwrap();
        let held = proxied(&server, "203.0.113.7", b"held");
        let deadline = Instant::now() + TIMEOUT;
        proxied_refused(&server, "203.0.113.7");
        while server.stats().rejected_per_source != 1 {
            assert!(Instant::now() < deadline, "{:?}", server.stats());
            std::thread::sleep(Duration::from_millis(5));
        }
        kill_the_loop(&server, "doomed-proxied", held);
        drop(proxied(&server, "203.0.113.7", b"served again"));
        assert_eq!(server.stats().rejected_per_source, 1);
        server.stop().unwrap();
    }

    /// A second connection for a client at its `max_per_source`: closed
    /// unserved.
    fn proxied_refused(server: &ServerThread, client: &str) {
        let addr = server.local_addr().inet().unwrap();
        let mut conn = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        conn.set_read_timeout(Some(TIMEOUT)).unwrap();
        let header = format!("PROXY TCP4 {client} 127.0.0.1 40001 7\r\nping");
        conn.write_all(header.as_bytes()).unwrap();
        let mut rest = Vec::new();
        let _ = conn.read_to_end(&mut rest);
        assert!(!rest.starts_with(b"ping"), "served: {rest:?}");
    }
}
