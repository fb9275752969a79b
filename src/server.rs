//! `Server<H>`: a bound socket and a handler, ready to serve.

use std::fmt;
use std::sync::Arc;
use std::thread;

use crate::core::{Core, Shared};
use crate::report::log_or_eprint;
use crate::shutdown::{drain, ShutdownHandle, ShutdownReport};
use crate::sys::wake;
use crate::{park, watchdog, worker, Addr, Error, Handler, ServerBuilder, Stats};

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
    /// Starts `workers` threads, which accept (or receive) and serve inline.
    /// Fails only if those threads cannot be started.
    pub fn run(self) -> Result<ShutdownReport, Error> {
        let core = &*self.shared.core;
        let settings = &core.settings;
        if settings.park_idle {
            let report = park::run(&self.shared);
            self.finish();
            if let Ok(report) = &report {
                log_or_eprint(
                    log::Level::Info,
                    &format!("stopped serving {}: {report}", core.local_addr),
                );
            }
            return report;
        }
        let ids = core.lock().pool.start();
        let mut started = Ok(());
        for id in ids {
            if started.is_err() {
                // Counted but never started: take them off again.
                core.lock().pool.not_started();
                continue;
            }
            started = worker::spawn(&self.shared, id);
            if started.is_err() {
                core.lock().pool.not_started();
            }
        }
        let watchdog = match (&started, settings.connection_timeout) {
            (Ok(()), Some(_)) => {
                let core = Arc::clone(&self.shared.core);
                let name = format!("{}-deadline", settings.thread_name);
                let spawned = thread::Builder::new()
                    .name(name.clone())
                    .spawn(move || watchdog::run(&core));
                Some(spawned.map_err(|source| Error::Spawn { name, source }))
            }
            _ => None,
        };
        if let Err(e) = started.and(watchdog.transpose().map(drop)) {
            core.begin_shutdown();
            drain(core);
            self.finish();
            return Err(e);
        }
        log_or_eprint(
            log::Level::Info,
            &format!(
                "serving {} ({}) with {} workers",
                core.local_addr,
                match core.local_addr {
                    Addr::Unix(_) => format!("unix {:?}", settings.transport).to_lowercase(),
                    _ => settings.transport.to_string(),
                },
                settings.workers()
            ),
        );
        worker::run_thread(&self.shared);
        let report = drain(core);
        self.finish();
        log_or_eprint(
            log::Level::Info,
            &format!("stopped serving {}: {report}", core.local_addr),
        );
        Ok(report)
    }

    /// What is left once the drain is over: the socket file, and the
    /// signal listener of `shutdown_on_signals`.
    fn finish(&self) {
        let core = &self.shared.core;
        wake::release(&core.listener, core.passed);
        core.remove_socket_file();
        #[cfg(feature = "signals")]
        if let Some(signals) = core
            .signals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            signals.close();
            crate::signals::end();
        }
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

impl<H> fmt::Debug for Server<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.shared.core.local_addr)
            .field("transport", &self.shared.core.settings.transport)
            .finish_non_exhaustive()
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
