//! Upgrade in place: the listening sockets go to a new copy of the
//! program, which says when it is ready; only then do the servers here
//! stop accepting, drain as in a graceful shutdown, and let the process
//! exit. The listen queues are never closed, so no client is refused.

use std::os::fd::RawFd;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::deadline::deadline_after;
use crate::lifecycle::notify::{self, ReadyListener, UPGRADE_VAR};
use crate::report::log_or_eprint;
use crate::sys::spawn;
use crate::Error;

/// Default of [`Upgrade::ready_timeout`].
const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the wait for the new process looks whether it has exited.
const LOOK: Duration = Duration::from_millis(100);

/// What an upgrade needs of a server whose socket it hands on.
pub(crate) trait HandOver: Send + Sync {
    /// The listening (or datagram) socket.
    fn socket_fd(&self) -> RawFd;
    /// Whether the server is stopping (or stopped) already.
    fn is_stopping(&self) -> bool;
    /// Another process may serve the socket from now on: set each
    /// connection's options on it, rather than through the listener (whose
    /// options the other process may change).
    fn share(&self);
    /// The other process serves the socket now: never shut it down, close
    /// its queue or remove its file; then stop, gracefully.
    fn hand_over_and_stop(&self);
    /// The upgrade failed: serve the socket as before, in case the other
    /// process changed its mode.
    fn keep(&self);
}

/// Upgrade in place: hands the listening sockets of the servers given to
/// a new copy of this program, and once it says it is ready, shuts those
/// servers down gracefully, as [`ShutdownHandle::shutdown`] does, but
/// leaving their sockets, and the clients queued on them, to the new
/// process. If the new process fails, or is not ready within
/// [`ready_timeout`](Self::ready_timeout), it is killed and these servers
/// go on serving; the error says why.
///
/// The new process is the program this one was started from (the same
/// path, so a binary replaced there is the one started), with the same
/// arguments and environment, and the sockets passed as systemd passes
/// them: at descriptors 3, 4, ... with `LISTEN_PID`, `LISTEN_FDS` and
/// `LISTEN_FDNAMES` (the names given to [`server`](Self::server)), for
/// [`listen_fds`](crate::listen_fds) to take and
/// [`adopt`](crate::ServerBuilder::adopt) to serve. It is ready when one
/// of its servers begins to serve (the crate tells the old process so).
/// Under systemd (`NOTIFY_SOCKET`, `Type=notify`), the new process reports
/// `READY=1` with its `MAINPID` when it starts serving, and the old one
/// reports the new `MAINPID` too, so that `NotifyAccess=main` suffices.
///
/// ```no_run
/// use socketserver::{handlers::Echo, listen_fds, Server, Upgrade};
///
/// // The socket the old process passed, if it was started by an upgrade.
/// let builder = match listen_fds()?.into_iter().next() {
///     Some(socket) => Server::builder().adopt(socket),
///     None => Server::builder().bind("0.0.0.0:7007"),
/// };
/// let server = builder.build(Echo)?;
/// server.shutdown_handle().shutdown_on_signals()?;
/// // `kill -USR2 <pid>`: a new copy of the program takes over.
/// Upgrade::new().server("echo", &server.shutdown_handle()).on_signal()?;
/// println!("shut down: {}", server.run()?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// [`ShutdownHandle::shutdown`]: crate::ShutdownHandle::shutdown
#[derive(Clone)]
pub struct Upgrade {
    pub(crate) servers: Vec<(String, Arc<dyn HandOver>)>,
    ready_timeout: Duration,
}

impl Default for Upgrade {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.servers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Upgrade")
            .field("servers", &names)
            .field("ready_timeout", &self.ready_timeout)
            .finish()
    }
}

impl Upgrade {
    /// An upgrade of no server yet; add them with
    /// [`server`](Self::server).
    pub fn new() -> Self {
        Upgrade {
            servers: Vec::new(),
            ready_timeout: DEFAULT_READY_TIMEOUT,
        }
    }

    /// How long the new process has to say it is ready before it is killed
    /// and the upgrade abandoned. Default: 30 s. Zero is taken as 1 ms.
    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Starts the new process and waits until it is ready; then stops the
    /// servers here, gracefully, leaving their sockets to it. Returns the
    /// new process's id once the servers here have begun to stop (each
    /// one's `run()` returns after its drain, as after a shutdown).
    ///
    /// # Errors
    ///
    /// [`Error::Upgrade`], and these servers go on serving: no server was
    /// given, one is stopping already, the program cannot be started, or
    /// it exited or was not ready within the timeout (it is then killed).
    /// A shutdown that begins while the new process starts wins: that
    /// process is killed, and the shutdown goes on, the sockets' queues
    /// included, as if no upgrade had begun.
    pub fn start(&self) -> Result<u32, Error> {
        let failed = |reason: String| Error::Upgrade {
            reason: match self.stopping() {
                true => format!("{reason}; this process goes on with its shutdown"),
                false => format!("{reason}; this process goes on serving"),
            },
        };
        if self.servers.is_empty() {
            return Err(failed("no server was given to hand over".into()));
        }
        if self.stopping() {
            return Err(failed("a server is shutting down already".into()));
        }
        let listener = ReadyListener::new()
            .map_err(|e| failed(format!("cannot make its notify socket: {e}")))?;
        for (_, server) in &self.servers {
            server.share();
        }
        let started = self.spawn(&listener);
        let ready = started.and_then(|child| self.wait_ready(child, &listener));
        let mut child = match ready {
            Ok(child) => child,
            Err(reason) => {
                for (_, server) in &self.servers {
                    server.keep();
                }
                return Err(failed(reason));
            }
        };
        let pid = child.id();
        // Reaped whenever it exits, should this process outlive it.
        let reap = move || drop(child.wait());
        if let Err(e) = std::thread::Builder::new()
            .name("upgrade-reap".into())
            .spawn(reap)
        {
            log::debug!("cannot start a thread to reap process {pid}: {e}");
        }
        if let Err(e) = notify::main_pid(pid) {
            let msg = format!("cannot tell NOTIFY_SOCKET that process {pid} serves now: {e}");
            log_or_eprint(log::Level::Warn, &msg);
        }
        // Said before the servers stop: once they have, the program may
        // exit at any moment.
        let names: Vec<&str> = self.servers.iter().map(|(n, _)| n.as_str()).collect();
        let msg = format!(
            "upgrade in place: process {pid} is ready and serves {}; this one drains and exits",
            names.join(", ")
        );
        log_or_eprint(log::Level::Info, &msg);
        for (_, server) in &self.servers {
            server.hand_over_and_stop();
        }
        Ok(pid)
    }

    /// Whether one of the servers has begun to shut down.
    fn stopping(&self) -> bool {
        self.servers.iter().any(|(_, s)| s.is_stopping())
    }

    /// Starts the new program with the sockets passed to it.
    fn spawn(&self, listener: &ReadyListener) -> Result<Child, String> {
        let program = program().map_err(|e| format!("cannot tell which program to start: {e}"))?;
        let names: Vec<&str> = self.servers.iter().map(|(n, _)| n.as_str()).collect();
        let fds: Vec<RawFd> = self.servers.iter().map(|(_, s)| s.socket_fd()).collect();
        let mut command = Command::new("/bin/sh");
        // `$$` is the shell's process id, which `exec` keeps: LISTEN_PID
        // names the new program, as sd_listen_fds requires.
        command
            .arg("-c")
            .arg("LISTEN_PID=$$ exec \"$0\" \"$@\"")
            .arg(&program)
            .args(std::env::args_os().skip(1))
            .env_remove("LISTEN_PID")
            .env("LISTEN_FDS", fds.len().to_string())
            .env("LISTEN_FDNAMES", names.join(":"))
            .env(UPGRADE_VAR, listener.path());
        spawn::with_fds(&mut command, &fds)
            .map_err(|e| format!("cannot start {}: {e}", program.display()))
    }

    /// Waits for the new process's `READY=1`; kills it if it does not come
    /// in time, or if a server here begins to shut down meanwhile (the
    /// program is being stopped, not upgraded).
    fn wait_ready(&self, mut child: Child, listener: &ReadyListener) -> Result<Child, String> {
        let pid = child.id();
        let until = deadline_after(Instant::now(), self.ready_timeout);
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let ready = listener.ready_from(pid, left.min(LOOK));
            if self.stopping() {
                stop_child(&mut child);
                return Err(format!(
                    "this process began to shut down; the new process {pid} was killed"
                ));
            }
            match ready {
                Ok(true) => return Ok(child),
                Ok(false) => {}
                Err(e) => {
                    stop_child(&mut child);
                    return Err(format!("cannot hear from the new process {pid}: {e}"));
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "the new process {pid} exited ({status}) before it was ready"
                ));
            }
            if left.is_zero() {
                stop_child(&mut child);
                return Err(format!(
                    "the new process {pid} was not ready within {:?}; it was killed",
                    self.ready_timeout
                ));
            }
        }
    }

    /// Upgrades on each `SIGUSR2`, from a thread of its own, until one
    /// succeeds. A failure is logged at `error`, with why, and the servers
    /// go on serving; a success at `info` (by [`start`](Self::start)).
    ///
    /// # Errors
    ///
    /// The signal handler or the thread cannot be set up.
    #[cfg(feature = "signals")]
    #[cfg_attr(docsrs, doc(cfg(feature = "signals")))]
    pub fn on_signal(self) -> std::io::Result<()> {
        use signal_hook::consts::SIGUSR2;
        let mut signals = signal_hook::iterator::Signals::new([SIGUSR2])?;
        std::thread::Builder::new()
            .name("upgrade".into())
            .spawn(move || {
                for _ in signals.forever() {
                    match self.start() {
                        Ok(_) => return,
                        Err(e) => log_or_eprint(log::Level::Error, &format!("SIGUSR2: {e}")),
                    }
                }
            })?;
        Ok(())
    }
}

/// The program this process runs, at the path it was started from: a
/// binary replaced there since is the one the upgrade starts.
fn program() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // Linux names a replaced binary "PATH (deleted)".
    let replaced = exe
        .to_str()
        .and_then(|s| s.strip_suffix(" (deleted)"))
        .map(PathBuf::from);
    Ok(replaced.unwrap_or(exe))
}

/// Kills a new process that was not ready, and reaps it.
fn stop_child(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}
