//! `ServerBuilder`: every setting, its default and unit; checked in `build()`.
//! The socket, timeouts, limits and `build()` are here; what serves the
//! connections (threads, event loops, queue) is in `threads.rs`.

mod threads;

use std::fmt;
use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::accept::open_spare;
use crate::core::Core;
use crate::listen::Target;
use crate::park;
use crate::report::{default_hook, ErrorHook};
use crate::settings::Settings;
use crate::{Error, Failure, Handler, PassedSocket, ProxyProtocol, Server, Transport};

/// Configures a [`Server`]: consuming setters, then [`build`](Self::build).
///
/// Every setter's documentation gives its default. Nothing is checked or
/// opened until `build()`, which returns either a bound server or a typed
/// [`Error`], never a panic.
#[must_use = "a builder does nothing until build() is called"]
pub struct ServerBuilder {
    /// Where to listen: set by `bind`, `bind_unix` or `adopt`.
    target: Option<Target>,
    settings: Settings,
    on_error: ErrorHook,
}

impl Default for ServerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("target", &self.target)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ServerBuilder {
    /// A builder with every setting at its default. Same as [`Server::builder`].
    pub fn new() -> Self {
        ServerBuilder {
            target: None,
            settings: Settings::default(),
            on_error: default_hook(),
        }
    }

    /// The address to listen on: anything [`ToSocketAddrs`], such as
    /// `"[::]:6789"`, `"127.0.0.1:0"`, `"localhost:6789"` or a `SocketAddr`.
    /// Required; no default.
    ///
    /// The address family (IPv4 or IPv6) follows the address. A name that
    /// resolves to several addresses is bound at the first that works, as
    /// `TcpListener::bind` does. Port 0 asks the system for a free port:
    /// read it back with [`Server::local_addr`]. A name that does not
    /// resolve fails in `build()` with [`Error::Resolve`].
    pub fn bind<A: ToSocketAddrs + fmt::Debug>(mut self, addr: A) -> Self {
        self.target = Some(Target::inet(addr));
        self
    }

    /// A Unix-domain socket to listen on instead of an IP address: stream
    /// (`SOCK_STREAM`) or datagram (`SOCK_DGRAM`) by `transport`.
    ///
    /// A socket file left behind by a server that is gone (connecting to it
    /// is refused) is replaced; one a live server answers on is
    /// [`Error::Bind`] (`AddrInUse`), found without waiting even when that
    /// server's backlog is full; a path that is not a socket is never
    /// touched (`AlreadyExists`). When the server stops, the file is removed
    /// only if it is still the one this server bound (same device and
    /// inode): a server that took the path over meanwhile keeps its file.
    /// A stream server refuses connections as soon as its shutdown begins,
    /// so its successor can bind the path while it drains (a graceful
    /// restart); a datagram server holds the path until it has stopped.
    ///
    /// Servers on one path take turns through an advisory lock
    /// (`flock(2)`) on a companion file, the path with `.lock` appended
    /// (`/run/app.sock.lock` for `/run/app.sock`, mode `0666` less the
    /// umask), to check, replace and bind the path, and to check and remove
    /// the file at stop. The lock is held only for those few system calls,
    /// never while serving. If another process holds it for 2 s, `build()`
    /// fails with [`Error::Bind`] (`TimedOut`), and a stopping server
    /// leaves its file for the next one to replace. The lock file stays as
    /// long as the socket file does and is removed with it; one left by a
    /// crashed server is reused. The lock orders only the programs that
    /// take it: this crate's servers, and any other that does the same.
    ///
    /// Peers show as [`Addr::Unix`](crate::Addr::Unix); a datagram reply can only go to a
    /// client that bound its own socket to a path.
    pub fn bind_unix(mut self, path: impl Into<PathBuf>) -> Self {
        self.target = Some(Target::Unix(path.into()));
        self
    }

    /// Serves a socket opened elsewhere instead of binding one: a
    /// [`PassedSocket`] from systemd's [`listen_fds`](crate::listen_fds), or
    /// a `TcpListener`, `UdpSocket`, `UnixListener` or `UnixDatagram`.
    ///
    /// `build()` checks it fits `transport` and is listening (stream);
    /// socket options such as `backlog`, `only_v6` and `reuse_port` do not
    /// apply, since it is already bound.
    ///
    /// Shutdown leaves the socket listening, for whoever else holds it:
    /// systemd keeps it open across a restart, and clients that arrive
    /// meanwhile wait in its backlog for the next server. (Accepting
    /// threads notice the shutdown within 100 ms, rather than at once: a
    /// stream socket gets a 100 ms `SO_RCVTIMEO`, which `accept` obeys and
    /// which stays with the socket.)
    pub fn adopt(mut self, socket: impl Into<PassedSocket>) -> Self {
        self.target = Some(Target::Passed(socket.into()));
        self
    }

    /// Stream (TCP) or datagram (UDP). Default: [`Transport::Stream`].
    pub fn transport(mut self, transport: Transport) -> Self {
        self.settings.transport = transport;
        self
    }

    /// Whether an IPv6 socket takes IPv6 only (`true`) or IPv4 too, as
    /// IPv4-mapped addresses (`false`, dual stack). Default: `false`.
    ///
    /// Always set explicitly on IPv6 sockets before binding, so the result
    /// does not depend on the system's default. `only_v6(true)` with an IPv4
    /// address is an [`Error::InvalidSetting`]; `only_v6(false)` there is a
    /// no-op.
    pub fn only_v6(mut self, only_v6: bool) -> Self {
        self.settings.only_v6 = Some(only_v6);
        self
    }

    /// The `listen(2)` backlog: connections the kernel holds for the server
    /// before they are accepted. Default: 1024 (Linux caps it at
    /// `net.core.somaxconn`). Must be at least 1. Stream only.
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.settings.backlog = backlog;
        self
    }

    /// `SO_REUSEADDR`, so a restarted server can bind while old
    /// connections are in `TIME_WAIT`. Default: `true` for a stream on
    /// Unix, `false` for a datagram (on Linux it would let a second server
    /// bind the same UDP port and silently take part of the traffic).
    pub fn reuse_address(mut self, on: bool) -> Self {
        self.settings.reuse_address = Some(on);
        self
    }

    /// `SO_REUSEPORT`: several sockets (and processes) may bind the same
    /// address and port, and the kernel spreads connections among them.
    /// Default: `false`.
    pub fn reuse_port(mut self, on: bool) -> Self {
        self.settings.reuse_port = on;
        self
    }

    /// `TCP_NODELAY` on accepted connections: small writes go out at once
    /// instead of waiting for an acknowledgement. Default: `true`.
    pub fn nodelay(mut self, on: bool) -> Self {
        self.settings.nodelay = on;
        self
    }

    /// TCP keepalive on accepted connections: once a connection has been
    /// silent for `idle`, the kernel probes the client three times,
    /// `idle / 3` apart (at least 1 s), and ends the connection if none is
    /// answered; a handler waiting on it then gets an error. It finds
    /// clients that vanished without closing (a machine switched off, a
    /// network gone) on connections that may rightly be silent for long,
    /// where `read_timeout` would end live ones too: subscribers, chat
    /// clients (redis-server's `tcp-keepalive 300`). Probes go out only
    /// while nothing sent is unacknowledged: a client that vanishes with
    /// pushed bytes in flight is found by TCP's retransmission timeout
    /// (about 15 minutes on Linux's defaults), or sooner by `max_outbox`
    /// filling. `None`: off. Default: `None`. Range: 1 s to 32,767 s. TCP
    /// only: a Unix-domain socket has no keepalive, and there it does
    /// nothing.
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.settings.tcp_keepalive = idle;
        self
    }

    /// Timeout of each read on an accepted connection (`SO_RCVTIMEO`); a
    /// read that waits longer fails with `TimedOut`. `None`: no limit.
    /// Default: 60 s. Must not be zero.
    pub fn read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.settings.read_timeout = timeout.into();
        self
    }

    /// Timeout of each write on an accepted connection (`SO_SNDTIMEO`), so a
    /// client that stops reading frees its worker. `None`: no limit.
    /// Default: 60 s. Must not be zero.
    pub fn write_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.settings.write_timeout = timeout.into();
        self
    }

    /// Total lifetime of one connection, however it trickles its bytes: at
    /// the deadline its socket is shut down, so the handler's next read or
    /// write fails. `None`: no limit. Default: `None`. Must not be zero.
    pub fn connection_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.settings.connection_timeout = timeout.into();
        self
    }

    /// Bytes pushed to one connection ([`Outbox`](crate::Outbox)) and not
    /// yet written, at most: a send past it cuts that slow client
    /// ([`SendError::Full`](crate::SendError), counted in
    /// [`Stats::slow_consumers`](crate::Stats::slow_consumers)), so it costs
    /// at most this much memory. Default: 1 MiB. Range: 1 byte..=1 GiB.
    pub fn max_outbox(mut self, bytes: usize) -> Self {
        self.settings.max_outbox = bytes;
        self
    }

    /// Largest datagram served, in bytes (datagram only). A larger one is
    /// detected, dropped without reply and counted in
    /// [`Stats::dropped_truncated`](crate::Stats), never served cut short.
    /// Default: 65,507, the most UDP carries over IPv4. Range: 1..=65,507.
    pub fn max_datagram(mut self, bytes: usize) -> Self {
        self.settings.max_datagram = bytes;
        self
    }

    /// Datagrams from source ports below this are dropped without reply
    /// and counted (datagram only). Such ports belong to services, and
    /// answering them lets two services (echo and chargen, say) bounce
    /// datagrams between each other forever. Default: 1024; 0 serves all.
    pub fn min_source_port(mut self, port: u16) -> Self {
        self.settings.min_source_port = port;
        self
    }

    /// The loop guard of a datagram server: datagrams from a source port
    /// outside the system's ephemeral range (a service's port, not a
    /// client's) are served at most this many a second per source address;
    /// the rest are dropped and counted in
    /// [`Stats::dropped_loop`](crate::Stats). `None` turns it off. Default:
    /// 100 a second.
    ///
    /// Two services that answer every datagram (echo and chargen, say)
    /// bounce one forged datagram between each other forever; a loop needs
    /// every datagram answered, so it dies at the first one dropped, within
    /// milliseconds. Clients send from ephemeral ports (Linux:
    /// `net.ipv4.ip_local_port_range`, read at `build()`) and are never
    /// limited; a client that binds a fixed port on purpose is served up to
    /// this rate. A service bound inside the ephemeral range (port 0, say)
    /// is not recognised as one.
    pub fn loop_guard(mut self, per_second: impl Into<Option<u32>>) -> Self {
        self.settings.loop_guard = per_second.into();
        self
    }

    /// How long a graceful shutdown waits for running handlers before it
    /// shuts their sockets down. Default: 5 s. Connections that are only
    /// waiting for the client's next request are not waited for: they get
    /// end of file as soon as shutdown begins. `Duration::MAX` waits
    /// without limit.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.settings.shutdown_timeout = timeout;
        self
    }

    /// The most connections the process holds at once: queued plus being
    /// served (stream only). At the limit the server stops accepting and
    /// further clients wait in the kernel backlog, as `tcpserver -c` does.
    /// Default: no limit beyond `max_workers + queue`. Must be at least 1.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.settings.max_connections = Some(n);
        self
    }

    /// The most connections held at once from one client IP address
    /// (IPv4-mapped IPv6 addresses count as IPv4), as xinetd's
    /// `per_source`. Further connections are closed at once, after the
    /// `busy_message` if set, and counted. Default: no limit. Must be at
    /// least 1. Stream only.
    pub fn max_per_source(mut self, n: usize) -> Self {
        self.settings.max_per_source = Some(n);
        self
    }

    /// Bytes written to a connection refused by `max_per_source` before it
    /// is closed. Default: none (closed silently). Not with `tls`: it would
    /// go out in plaintext, before any handshake.
    pub fn busy_message(mut self, message: impl Into<Vec<u8>>) -> Self {
        self.settings.busy_message = Some(message.into());
        self
    }

    /// Expects a PROXY protocol header (v1 or v2) from trusted proxies
    /// such as HAProxy on every connection, and serves the client it names
    /// (stream only); see [`ProxyProtocol`]. Default: off.
    pub fn proxy_protocol(mut self, proxy_protocol: ProxyProtocol) -> Self {
        self.settings.proxy_protocol = Some(proxy_protocol);
        self
    }

    /// Serves TLS with this acceptor's certificate (stream servers only):
    /// the handshake runs before the handler, after the PROXY header if
    /// one is expected, and the handler's `Connection` reads and writes
    /// plaintext. See the [`tls`](crate::tls) module. Default: off. On a
    /// datagram server this is an [`Error::InvalidSetting`] at `build()`
    /// (DTLS is not supported).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, acceptor: crate::tls::TlsAcceptor) -> Self {
        self.settings.tls = Some(acceptor);
        self
    }

    /// How long a client has for the whole TLS handshake, however its
    /// bytes trickle in (to within a tenth); one that takes longer is
    /// closed, counted in [`Stats::tls_handshake_failures`](crate::Stats).
    /// Default: 10 s. Must not be zero. Only used with `tls`.
    pub fn tls_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.settings.tls_handshake_timeout = timeout;
        self
    }

    /// Called for each handler that returns `Err` or panics, and each
    /// connection closed for sending nothing for the read timeout
    /// ([`Failure::IdleTimeout`]), for failing its TLS handshake
    /// ([`Failure::TlsHandshake`]) or for breaking its TLS session after
    /// it ([`Failure::TlsSession`]), with the client's address, on the
    /// worker thread. Default: through the `log` facade when a logger is
    /// installed, otherwise a line on stderr for errors and panics; each
    /// kind at most once a second, with a count of the lines left out. An
    /// error that says only that the connection was broken (`BrokenPipe`,
    /// `ConnectionReset`, `ConnectionAborted`: the client hung up, or the
    /// server cut it at a deadline or shutdown, which is counted apart) is
    /// counted as a handler error but logged at `debug`, never on stderr.
    pub fn on_error<F>(mut self, hook: F) -> Self
    where
        F: Fn(&Failure<'_>) + Send + Sync + 'static,
    {
        self.on_error = Arc::new(hook);
        self
    }

    /// Checks the settings, creates the socket, sets its options, binds it
    /// and (for a stream) listens. The returned server is reachable at once;
    /// [`Server::run`] serves it.
    pub fn build<H: Handler>(self, handler: H) -> Result<Server<H>, Error> {
        let mut settings = self.settings;
        settings.validate()?;
        if settings.park_idle {
            let (loops, helpers) = (settings.workers(), settings.max_workers());
            settings.max_connections = Some(park::connection_cap(
                settings.max_connections,
                loops,
                helpers,
            )?);
        }
        let bound = self.target.ok_or(Error::NoAddress)?.open(&settings)?;
        let unix = matches!(bound.local_addr, crate::Addr::Unix(_));
        if unix
            && settings
                .proxy_protocol
                .as_ref()
                .is_some_and(|pp| !pp.trusts_unix())
        {
            // Before anything is served: the socket file goes with `bound`.
            if let Some(file) = bound.socket_file {
                file.remove();
            }
            return Err(Error::InvalidSetting {
                setting: "proxy_protocol",
                reason: "a Unix-domain socket's clients have no IP address to trust: \
                         add ProxyProtocol::trust_unix"
                    .into(),
            });
        }
        let core = Core::new(settings, bound, self.on_error, open_spare());
        Ok(Server::new(Arc::new(core), handler))
    }
}
