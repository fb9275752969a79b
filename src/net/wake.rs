//! Waking the threads blocked on a server's socket when shutdown begins,
//! and the socket options that make that possible.
//!
//! On Linux, closing a descriptor does not wake a thread blocked in
//! `accept()` or `recv_from()` on it; `shutdown(2)` does:
//!
//! * a listening stream socket: `shutdown(SHUT_RDWR)` makes every blocked
//!   and later `accept` fail at once;
//! * a datagram socket: `shutdown(SHUT_RD)` makes every blocked and later
//!   `recv_from` return at once (it also reports `ENOTCONN` on an
//!   unconnected socket, but wakes the receivers all the same), while the
//!   socket can still send the replies of handlers that are running.
//!
//! Both act on the socket, not on this process's descriptor. A socket
//! passed in from elsewhere (systemd keeps it open across restarts, and
//! other processes may share it) must go on working after this server
//! stops, so it is never shut down: its blocking calls time out every
//! [`SHARED_SOCKET_TICK`] instead (`SO_RCVTIMEO`, which Linux applies to `accept`
//! too), and the loops look at the shutdown flag then.

use std::io;
use std::net::Shutdown;
use std::time::Duration;

use crate::net::listener::Listener;
use crate::settings::Settings;

/// How long a thread blocked on a passed socket waits before it looks
/// whether shutdown has begun.
pub(crate) const SHARED_SOCKET_TICK: Duration = Duration::from_millis(100);

/// Wakes every thread blocked in `accept()` or `recv_from()` on a socket
/// this server opened itself; nothing to do for a passed one (see the
/// module documentation).
pub(crate) fn wake_all(listener: &Listener, held_elsewhere: bool) {
    if held_elsewhere {
        return;
    }
    let how = match listener {
        Listener::Tcp(_) | Listener::Unix(_) => Shutdown::Both,
        Listener::Datagram(_) => Shutdown::Read,
    };
    match listener.sock_ref().shutdown(how) {
        // An unconnected datagram socket says so, and wakes its receivers.
        Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
        Err(e) => log::debug!("waking the threads on shutdown: {e}"),
        Ok(()) => {}
    }
}

/// Makes the blocking calls on a passed socket time out every
/// [`SHARED_SOCKET_TICK`]. Accepted sockets would inherit the timeout, so their
/// options are then set on each connection.
pub(crate) fn set_shared_socket_tick(listener: &Listener) -> io::Result<()> {
    listener
        .sock_ref()
        .set_read_timeout(Some(SHARED_SOCKET_TICK))
}

/// Sets the options every accepted connection needs on a TCP listener,
/// once: Linux copies `TCP_NODELAY`, `SO_RCVTIMEO` and `SO_SNDTIMEO` into
/// each accepted socket. Returns whether that was done; if not, they are
/// set on each connection. (The listener's own `accept` then also times
/// out after the read timeout, which the accept loop simply retries.)
pub(crate) fn set_inherited_options(listener: &Listener, settings: &Settings) -> bool {
    let Listener::Tcp(_) = listener else {
        return false;
    };
    if settings.proxy_protocol.is_some() {
        return false;
    }
    // A read timeout shorter than the tick would wake every idle accepting
    // thread that often: such a timeout goes on each connection instead.
    if settings
        .read_timeout
        .is_some_and(|t| t < SHARED_SOCKET_TICK)
    {
        return false;
    }
    let sock = listener.sock_ref();
    sock.set_tcp_nodelay(settings.nodelay).is_ok()
        && sock.set_read_timeout(settings.read_timeout).is_ok()
        && sock.set_write_timeout(settings.write_timeout).is_ok()
}

/// Lets go of a datagram socket this server opened once it has stopped,
/// although the server's shared state (and so the socket's descriptor)
/// may live on in a `ShutdownHandle` the program keeps: a fresh, unbound
/// socket is put in its place (`dup2`), which closes the bound one, so the
/// port is free again and the kernel stops sending this server a share of
/// a `reuse_port` group's datagrams. Stream listeners need nothing: a
/// listener shut down has already left its group. A passed socket is not
/// the server's to let go.
pub(crate) fn release(listener: &Listener, held_elsewhere: bool) {
    let Listener::Datagram(_) = listener else {
        return;
    };
    if held_elsewhere {
        return;
    }
    if let Err(e) = crate::sys::fd::replace_with_unbound(listener.sock_ref()) {
        log::debug!("letting go of the datagram socket: {e}");
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use super::*;

    fn listener() -> Listener {
        Listener::Tcp(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    #[test]
    fn a_read_timeout_shorter_than_the_tick_stays_off_the_listener() {
        let settings = Settings {
            read_timeout: Some(Duration::from_millis(1)),
            ..Settings::default()
        };
        let l = listener();
        assert!(!set_inherited_options(&l, &settings));
        assert_eq!(l.sock_ref().read_timeout().unwrap(), None);

        let settings = Settings {
            read_timeout: Some(Duration::from_secs(2)),
            ..Settings::default()
        };
        assert!(set_inherited_options(&l, &settings));
        assert_eq!(
            l.sock_ref().read_timeout().unwrap(),
            Some(Duration::from_secs(2))
        );
    }
}
