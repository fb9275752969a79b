//! What a user holds of a server: `Server<H>` (a bound socket and a
//! handler, ready to serve), `ServerThread` (one serving on a thread of its
//! own) and `ShutdownHandle` (stops it from anywhere). `run` picks the
//! engine, `thread` or `park`, and nothing more.

use std::fmt;
use std::sync::Arc;
use std::thread;

#[cfg(feature = "signals")]
use crate::core::SignalListener;
use crate::core::{Core, Shared};
use crate::lifecycle::report::ShutdownReport;
use crate::lifecycle::Command;
use crate::net::wake;
use crate::report::log_or_eprint;
use crate::{park, Addr, Error, Handler, ServerBuilder, Stats};

/// A server: its socket is bound (and listening, for a stream) as soon as
/// [`ServerBuilder::build`] returns; [`run`](Self::run) serves it.
///
/// See the [crate documentation](crate) for an example.
pub struct Server<H> {
    shared: Arc<Shared<H>>,
}

impl Server<()> {
    /// Starts configuring a server; see [`ServerBuilder`] for every setting
    /// and its default.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::new()
    }
}

impl<H: Handler> Server<H> {
    pub(crate) fn new(core: Arc<Core>, handler: H) -> Self {
        Server {
            shared: Shared::new(core, handler),
        }
    }

    /// The address the socket is bound to, with port 0 resolved to the
    /// port the system chose.
    pub fn local_addr(&self) -> Addr {
        self.shared.core.local_addr.clone()
    }

    /// A handle that stops this server from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            core: Arc::clone(&self.shared.core),
        }
    }

    /// A snapshot of the server's counters.
    pub fn stats(&self) -> Stats {
        self.shared.core.stats()
    }

    /// Serves on the calling thread until [`ShutdownHandle::shutdown`] is
    /// called, then drains and returns what the shutdown did.
    ///
    /// Starts `workers` threads, which accept (or receive) and serve inline
    /// (or, with `park_idle`, `workers` event loops). Fails only if those
    /// threads cannot be started.
    pub fn run(self) -> Result<ShutdownReport, Error> {
        let core = &*self.shared.core;
        let result = match core.settings.park_idle {
            true => park::run(&self.shared),
            false => crate::thread::run(&self.shared),
        };
        self.finish();
        if let Ok(report) = &result {
            log_or_eprint(
                log::Level::Info,
                &format!("stopped serving {}: {report}", core.local_addr),
            );
        }
        result
    }

    /// What is left once the drain is over: the socket file, and the
    /// signal listener of `shutdown_on_signals`.
    fn finish(&self) {
        let core = &self.shared.core;
        core.await_upgrade();
        wake::release(&core.listener, core.held_elsewhere());
        core.remove_socket_file();
        #[cfg(feature = "signals")]
        core.stop_listening_for_signals();
    }

    /// Runs the server on a thread of its own and returns at once.
    pub fn spawn(self) -> Result<ServerThread, Error> {
        let handle = self.shutdown_handle();
        let local_addr = self.local_addr();
        let name = format!("{}-run", self.shared.core.settings.thread_name);
        let thread = thread::Builder::new()
            .name(name.clone())
            .spawn(move || self.run())
            .map_err(|source| Error::Spawn { name, source })?;
        Ok(ServerThread {
            handle,
            local_addr,
            thread,
        })
    }
}

/// A server dropped without running: its signal listener, which holds a
/// handle to it, would keep it (and its socket) alive, and keep taking the
/// signals, for good.
impl<H> Drop for Server<H> {
    fn drop(&mut self) {
        #[cfg(feature = "signals")]
        self.shared.core.stop_listening_for_signals();
    }
}

impl<H> fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.shared.core.local_addr)
            .field("transport", &self.shared.core.settings.transport)
            .finish_non_exhaustive()
    }
}

/// Stops a server from any thread, including from inside a handler.
///
/// Cheap to clone and `Send + Sync`. [`shutdown`](Self::shutdown) returns at
/// once; the server's [`run`](crate::Server::run) does the draining and
/// returns the [`ShutdownReport`].
#[derive(Clone)]
pub struct ShutdownHandle {
    pub(crate) core: Arc<Core>,
}

impl ShutdownHandle {
    /// Begins a graceful shutdown and returns without waiting.
    ///
    /// Threads blocked in `accept()` or `recv_from()` wake at once
    /// (`shutdown(2)` on the server's socket; a passed socket, which others
    /// may share, is left working and its threads notice within 100 ms).
    /// No new connection or datagram is taken. Connections waiting in the
    /// listen backlog or the queue are closed unserved and counted as
    /// dropped. Connections whose handler waits for the client's next
    /// request (blocked in `read` with nothing read since its last write)
    /// get end of file at once, and so do the others when they next wait
    /// so; running handlers get `shutdown_timeout` to finish, after which
    /// their sockets are shut down. Calling it again does nothing.
    pub fn shutdown(&self) {
        self.core.command(Command::Stop);
    }

    /// Whether shutdown has begun.
    pub fn is_shutdown(&self) -> bool {
        self.core.stopping()
    }

    /// A snapshot of the server's counters.
    pub fn stats(&self) -> Stats {
        self.core.stats()
    }

    /// Shuts the server down gracefully on the first SIGINT (Ctrl-C) or
    /// SIGTERM (what `kill` and systemd send) from now on.
    ///
    /// The handlers are installed before this returns, so a signal that
    /// arrives right after is not lost; a thread named `NAME-signals` waits
    /// for it. Without this, either signal ends the process at once,
    /// dropping connections in flight. Requires the `signals` feature (on
    /// by default).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let server = socketserver::Server::builder()
    ///     .bind("127.0.0.1:6789")
    ///     .build(socketserver::handlers::Echo)?;
    /// server.shutdown_handle().shutdown_on_signals()?;
    /// let report = server.run()?; // returns after Ctrl-C, drained
    /// println!("shut down: {report}");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Once the first signal has begun the shutdown, or the server has
    /// stopped (or was dropped without running), the signal handlers are
    /// taken away and the thread ends, so the next Ctrl-C acts as it would
    /// have without this (or on whatever the program set up): a second
    /// Ctrl-C during a long drain ends the process at once. Calling this
    /// again does nothing, and so does calling it after that.
    #[cfg(feature = "signals")]
    #[cfg_attr(docsrs, doc(cfg(feature = "signals")))]
    pub fn shutdown_on_signals(&self) -> std::io::Result<()> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut registered = self.core.signals.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(*registered, SignalListener::None) || self.core.stopping() {
            return Ok(());
        }
        // Disarms the default actions first: a signal that comes between
        // the two would otherwise end the process.
        crate::lifecycle::signals::begin()?;
        let listen = || -> std::io::Result<signal_hook::iterator::Handle> {
            let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
            let handle = self.clone();
            let listener = signals.handle();
            std::thread::Builder::new()
                .name(format!("{}-signals", self.core.settings.thread_name))
                .spawn(move || {
                    if let Some(signal) = signals.forever().next() {
                        log::info!("signal {signal}: shutting down {}", handle.core.local_addr);
                        handle.shutdown();
                        // A second signal, during the drain, is for the
                        // process: it ends at once.
                        handle.core.stop_listening_for_signals();
                    }
                })?;
            Ok(listener)
        };
        match listen() {
            Ok(listener) => *registered = SignalListener::Listening(listener),
            Err(e) => {
                crate::lifecycle::signals::end();
                return Err(e);
            }
        }
        Ok(())
    }
}

impl crate::Upgrade {
    /// Adds a server whose socket the upgrade hands on, under `name` (its
    /// entry in `LISTEN_FDNAMES`, what [`PassedSocket::name`] says in the
    /// new process; no `:` in it). The sockets are passed in the order the
    /// servers are added.
    ///
    /// [`PassedSocket::name`]: crate::PassedSocket::name
    pub fn server(mut self, name: &str, handle: &ShutdownHandle) -> Self {
        let name = name.replace(':', "_");
        let core: Arc<dyn crate::lifecycle::upgrade::HandOver> = Arc::clone(&handle.core) as _;
        self.servers.push((name, core));
        self
    }
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("local_addr", &self.core.local_addr)
            .field("is_shutdown", &self.is_shutdown())
            .finish()
    }
}

/// A server running on its own thread, from [`Server::spawn`].
///
/// Dropping it leaves the server running; call [`stop`](Self::stop) (or
/// `shutdown_handle().shutdown()` and [`join`](Self::join)) to end it.
#[derive(Debug)]
pub struct ServerThread {
    handle: ShutdownHandle,
    local_addr: Addr,
    thread: thread::JoinHandle<Result<ShutdownReport, Error>>,
}

impl ServerThread {
    /// The address the server is bound to.
    pub fn local_addr(&self) -> Addr {
        self.local_addr.clone()
    }

    /// A handle that stops the server from any thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// A snapshot of the server's counters.
    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }

    /// Waits for the server to stop (after a shutdown from elsewhere).
    pub fn join(self) -> Result<ShutdownReport, Error> {
        match self.thread.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Shuts the server down and waits for its drain to finish.
    pub fn stop(self) -> Result<ShutdownReport, Error> {
        self.handle.shutdown();
        self.join()
    }
}
