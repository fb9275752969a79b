//! What both engines of one server share: settings, the listening socket,
//! counters, the admission books, and the commands a running server is
//! given ([`Command`]): each engine handles them in one place, its
//! [`Engine::command`].
//!
//! See `CONCURRENCY.md` beside this file for the locks and each atomic's
//! ordering.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::admission::loop_guard::LoopGuard;
use crate::admission::Books;
use crate::deadline::deadline_after;
use crate::lifecycle::socket_file::SocketFile;
use crate::lifecycle::upgrade::HandOver;
use crate::lifecycle::Command;
use crate::net::listener::Listener;
use crate::net::wake;
use crate::report::{log_or_eprint, ErrorHook, RateLimit};
use crate::settings::Settings;
use crate::stats::{add, Counters};
use crate::{Addr, Handler, Stats, Transport};

/// Rate limits for the lines the server itself logs.
#[derive(Debug)]
pub(crate) struct Logs {
    pub(crate) accept_errors: RateLimit,
    pub(crate) exhausted: RateLimit,
    pub(crate) spawn_errors: RateLimit,
    pub(crate) internal: RateLimit,
    pub(crate) stalls: RateLimit,
    pub(crate) queue_timeouts: RateLimit,
}

impl Default for Logs {
    fn default() -> Self {
        Logs {
            accept_errors: RateLimit::per_second(),
            exhausted: RateLimit::per_second(),
            spawn_errors: RateLimit::per_second(),
            internal: RateLimit::per_second(),
            stalls: RateLimit::per_second(),
            queue_timeouts: RateLimit::per_second(),
        }
    }
}

/// A bound socket and what is known of it, as `build()` made it.
#[derive(Debug)]
pub(crate) struct Bound {
    pub(crate) listener: Listener,
    pub(crate) local_addr: Addr,
    /// Passed in by `adopt`: other processes may hold it too.
    pub(crate) held_elsewhere: bool,
    /// Accepted connections inherit the listener's options.
    pub(crate) inherits_options: bool,
    /// The Unix socket file `bind_unix` created.
    pub(crate) socket_file: Option<SocketFile>,
}

/// What an engine reports of the work in its hands, for `stats()`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Gauges {
    pub(crate) queued: u64,
    pub(crate) active: u64,
    pub(crate) threads: u64,
    pub(crate) parked: u64,
}

/// A serving engine (the thread mode's workers, or `park_idle`'s event
/// loops), as the rest of the server reaches it.
pub(crate) trait Engine: Send + Sync {
    /// Carries out a command. Each engine handles every command here, and
    /// only once: a second `Stop` does nothing.
    fn command(&self, command: Command);
    /// The work in its hands now.
    fn gauges(&self) -> Gauges;
}

/// What every thread of a server shares, whatever its handler type.
pub(crate) struct Core {
    pub(crate) settings: Settings,
    pub(crate) listener: Listener,
    pub(crate) local_addr: Addr,
    /// Accepted connections inherit `TCP_NODELAY` and the read and write
    /// timeouts from the listener, where they were set once (TCP on Linux),
    /// sparing three system calls per connection; see
    /// [`inherits_options`](Self::inherits_options).
    inherits_options: bool,
    /// The socket was passed in (`adopt`): other processes may hold it
    /// too, so shutdown must leave it working.
    held_elsewhere: bool,
    /// An upgrade in place is passing, or has tried to pass, the socket
    /// on: another process may have changed the listener's options, so
    /// each connection gets its own.
    sharing: AtomicBool,
    /// An upgrade is under way: a new process holds the socket too, and
    /// may serve it if it gets ready.
    upgrading: AtomicBool,
    /// An upgrade in place has passed the socket on: it is held elsewhere
    /// from now on.
    handed_over: AtomicBool,
    pub(crate) counters: Arc<Counters>,
    pub(crate) on_error: ErrorHook,
    pub(crate) logs: Logs,
    /// Datagram servers: no endless exchange with another service.
    pub(crate) loop_guard: Option<LoopGuard>,
    /// Set once, when shutdown begins.
    stop: AtomicBool,
    /// Connections admitted, by source. In the thread mode it is taken
    /// while holding the pool's state, never the other way round.
    books: Mutex<Books>,
    /// The engine serving, once `run()` has started it.
    engine: OnceLock<Arc<dyn Engine>>,
    /// A descriptor kept in reserve, given up to accept-and-close a client
    /// when descriptors run out.
    pub(crate) spare: Mutex<Option<File>>,
    /// The Unix socket file this server created, removed when it stops.
    socket_file: Mutex<Option<SocketFile>>,
    /// The signal listener of `shutdown_on_signals`, closed when the
    /// server stops so that it leaves no thread or handler behind.
    #[cfg(feature = "signals")]
    pub(crate) signals: Mutex<SignalListener>,
}

/// Where a server is with `shutdown_on_signals`.
#[cfg(feature = "signals")]
#[derive(Debug, Default)]
pub(crate) enum SignalListener {
    /// Not asked for (yet).
    #[default]
    None,
    Listening(signal_hook::iterator::Handle),
    /// Over: the first signal came, or the server stopped or was dropped
    /// without running. Asking again does nothing: nothing would stop
    /// listening again.
    Done,
}

impl Core {
    /// Stops listening for SIGINT and SIGTERM, if `shutdown_on_signals`
    /// did: the thread ends, and the next signal does what it would have
    /// done without it (once no other server listens). Once per server,
    /// whoever comes first: the first signal, the end of `run`, or a
    /// server dropped without running.
    #[cfg(feature = "signals")]
    pub(crate) fn stop_listening_for_signals(&self) {
        let mut state = self.signals.lock().unwrap_or_else(|e| e.into_inner());
        let before = std::mem::replace(&mut *state, SignalListener::Done);
        drop(state);
        if let SignalListener::Listening(listener) = before {
            listener.close();
            crate::lifecycle::signals::end();
        }
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        // A server built but never run still leaves no file behind.
        self.remove_socket_file();
    }
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("local_addr", &self.local_addr)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A server's core together with its handler: what the engines serve.
pub(crate) struct Shared<H> {
    pub(crate) core: Arc<Core>,
    pub(crate) handler: H,
}

impl<H: Handler> Shared<H> {
    pub(crate) fn new(core: Arc<Core>, handler: H) -> Arc<Self> {
        Arc::new(Shared { core, handler })
    }
}

impl Core {
    /// Assembles the shared state of a server around its bound socket.
    pub(crate) fn new(
        settings: Settings,
        bound: Bound,
        on_error: ErrorHook,
        spare: Option<File>,
    ) -> Self {
        let Bound {
            listener,
            local_addr,
            held_elsewhere,
            inherits_options,
            socket_file,
        } = bound;
        let loop_guard = match (settings.transport, settings.loop_guard) {
            (Transport::Datagram, Some(rate)) => {
                Some(LoopGuard::new(rate, crate::sys::ports::ephemeral_range()))
            }
            _ => None,
        };
        Core {
            settings,
            listener,
            local_addr,
            inherits_options,
            held_elsewhere,
            sharing: AtomicBool::new(false),
            upgrading: AtomicBool::new(false),
            handed_over: AtomicBool::new(false),
            counters: Arc::default(),
            on_error,
            logs: Logs::default(),
            loop_guard,
            stop: AtomicBool::new(false),
            books: Mutex::default(),
            engine: OnceLock::new(),
            spare: Mutex::new(spare),
            socket_file: Mutex::new(socket_file),
            #[cfg(feature = "signals")]
            signals: Mutex::default(),
        }
    }

    /// The admission books.
    pub(crate) fn books(&self) -> MutexGuard<'_, Books> {
        // Only counts change under this lock and nothing that can panic
        // runs under it, so a poisoned lock still holds consistent books.
        self.books.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether shutdown has begun. SeqCst: paired with each connection's
    /// state (see CONCURRENCY.md).
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(SeqCst)
    }

    /// Makes `engine` the one serving. A command given before it started
    /// is carried out now. Both sides store, then load, all `SeqCst`, so
    /// a shutdown racing with the start reaches the engine at least once.
    pub(crate) fn start_engine(&self, engine: Arc<dyn Engine>) {
        let engine = self.engine.get_or_init(|| engine);
        // The store above, then the load below, in one total order with
        // `command`'s swap of the flag and its load of the engine.
        std::sync::atomic::fence(SeqCst);
        if self.stopping() {
            engine.command(Command::Stop);
        }
    }

    /// How long after shutdown begins a connection that has received
    /// nothing yet is closed as idle: its request may be on the wire (a
    /// client that just connected). Go's `http.Server` gives new
    /// connections 5 s; here at most half the shutdown timeout, so that the
    /// rest of it is left for them to be served.
    pub(crate) fn new_connection_grace(&self) -> Duration {
        const NEW_GRACE: Duration = Duration::from_secs(5);
        NEW_GRACE.min(self.settings.shutdown_timeout / 2)
    }

    /// Says, once, that the server is serving, and how.
    pub(crate) fn log_serving(&self, how: &str) {
        let transport = match self.local_addr {
            Addr::Unix(_) => format!("unix {:?}", self.settings.transport).to_lowercase(),
            _ => self.settings.transport.to_string(),
        };
        let line = format!("serving {} ({transport}) {how}", self.local_addr);
        log_or_eprint(log::Level::Info, &line);
        // The process is ready: systemd, or the old process of an upgrade,
        // may count on it from now on.
        crate::lifecycle::notify::ready();
    }

    pub(crate) fn stats(&self) -> Stats {
        let g = self.engine.get().map(|e| e.gauges()).unwrap_or_default();
        let helpers = self.counters.helpers.load(Relaxed);
        self.counters
            .snapshot(g.queued, g.active, g.threads + helpers, g.parked)
    }

    /// Removes the Unix socket file this server created, once, and only if
    /// it is still the one this server bound, and not handed on to a new
    /// process by an upgrade (which serves it now).
    pub(crate) fn remove_socket_file(&self) {
        let file = self
            .socket_file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match file {
            Some(file) if self.handed_over.load(SeqCst) => std::mem::forget(file),
            Some(file) => file.remove(),
            None => {}
        }
    }

    /// Whether another process may hold the socket too (passed in, or
    /// passed on by an upgrade): a shutdown must leave it working.
    pub(crate) fn held_elsewhere(&self) -> bool {
        // While an upgrade starts, the new process holds the socket too: a
        // shutdown then must not shut it down, nor close its queue, before
        // the upgrade has killed that process (`keep` does what it left).
        self.held_elsewhere || self.handed_over.load(SeqCst) || self.upgrading.load(SeqCst)
    }

    /// At the end of a shutdown: waits for an upgrade under way to give up
    /// (it sees the shutdown within a tenth of a second, kills the new
    /// process and keeps the socket, `HandOver::keep`), so that the program
    /// does not exit and leave that process holding the socket, and the
    /// socket is this server's alone again to let go of.
    pub(crate) fn await_upgrade(&self) {
        let until = deadline_after(Instant::now(), Duration::from_secs(5));
        while self.upgrading.load(SeqCst) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Whether the socket was passed in and has not been passed on: the
    /// next to serve it, after this server, may expect it as it came.
    pub(crate) fn adopted_and_kept(&self) -> bool {
        self.held_elsewhere && !self.handed_over.load(SeqCst)
    }

    /// Whether accepted connections get their options from the listener
    /// (not once an upgrade may have let another process change them).
    pub(crate) fn inherits_options(&self) -> bool {
        self.inherits_options && !self.sharing.load(SeqCst)
    }

    /// Gives a running server a command, from any thread.
    ///
    /// `Stop` flags the shutdown, has the engine wake every thread that
    /// waits and close the idle connections, closes the connections in the
    /// listen backlog (counted as dropped), and wakes threads blocked on
    /// the listener. Only the first `Stop` does anything.
    pub(crate) fn command(&self, command: Command) {
        match command {
            Command::Stop => {
                if self.stop.swap(true, SeqCst) {
                    return;
                }
                std::sync::atomic::fence(SeqCst);
                let unsent = self.counters.outbox_dropped.load(Relaxed);
                self.counters.outbox_dropped_at_stop.store(unsent, Relaxed);
                if self.settings.reuse_port {
                    // Other processes may serve this port (a rolling
                    // restart): the listener goes first, so that with
                    // `net.ipv4.tcp_migrate_req=1` (Linux 5.14+) the kernel
                    // hands its accept queue to them rather than this
                    // server closing the connections in it.
                    wake::wake_all(&self.listener, self.held_elsewhere());
                }
                if let Some(engine) = self.engine.get() {
                    engine.command(Command::Stop);
                }
                if !self.settings.reuse_port {
                    self.close_listener();
                }
            }
        }
    }

    /// Shutdown's end of the listener: what waits in its backlog closed
    /// and counted, then every thread waiting on it woken.
    fn close_listener(&self) {
        let backlog = self.close_backlog();
        add(&self.counters.dropped_at_shutdown, backlog as u64);
        wake::wake_all(&self.listener, self.held_elsewhere());
    }

    /// Accepts and closes every connection waiting in the listen backlog,
    /// so that each is counted rather than reset unseen when the listener
    /// is shut down. A listener held elsewhere too keeps its backlog for
    /// whoever serves it next.
    fn close_backlog(&self) -> usize {
        if self.held_elsewhere() || matches!(self.listener, Listener::Datagram(_)) {
            return 0;
        }
        if self.listener.sock_ref().set_nonblocking(true).is_err() {
            return 0;
        }
        let mut closed = 0;
        // Bounded: the backlog holds at most `backlog` connections, and
        // clients arriving meanwhile are few.
        while closed < (self.settings.backlog as usize).saturating_mul(2) {
            match self.listener.accept() {
                Ok(_) => closed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionAborted => {}
                Err(_) => break,
            }
        }
        closed
    }
}

impl HandOver for Core {
    fn socket_fd(&self) -> RawFd {
        self.listener.sock_ref().as_raw_fd()
    }

    fn is_stopping(&self) -> bool {
        self.stopping()
    }

    fn share(&self) {
        self.sharing.store(true, SeqCst);
        self.upgrading.store(true, SeqCst);
    }

    fn hand_over_and_stop(&self) {
        self.handed_over.store(true, SeqCst);
        self.upgrading.store(false, SeqCst);
        // Not shut down, the socket no longer wakes a blocked accept or
        // receive: its timeout does (`net/wake.rs`).
        if let Err(e) = wake::set_shared_socket_tick(&self.listener) {
            let msg = format!(
                "{}: setting SO_RCVTIMEO for the shutdown: {e}",
                self.local_addr
            );
            log_or_eprint(log::Level::Warn, &msg);
        }
        self.command(Command::Stop);
    }

    fn keep(&self) {
        // The other process may have changed the socket's mode and
        // timeout, which belong to the socket, not to a descriptor.
        let sock = self.listener.sock_ref();
        let _ = sock.set_nonblocking(self.settings.park_idle);
        if self.held_elsewhere {
            let _ = wake::set_shared_socket_tick(&self.listener);
        } else if self.inherits_options {
            // Restored; but `sharing` stays set: connections accepted
            // meanwhile, some still queued, took the other process's
            // options, so each connection gets its own from now on.
            let _ = wake::set_inherited_options(&self.listener, &self.settings);
        } else {
            let _ = sock.set_read_timeout(None);
        }
        self.upgrading.store(false, SeqCst);
        if self.stopping() {
            // A shutdown came while the upgrade was under way: what it left
            // for the socket, now this process's alone again.
            self.close_listener();
        }
    }
}
