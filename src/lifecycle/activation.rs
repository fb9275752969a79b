//! `PassedSocket`: a socket opened elsewhere for a server to serve, and
//! systemd socket activation.

use std::fmt;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixListener};

use crate::Error;

/// A socket made elsewhere for a server to serve: passed by systemd (see
/// [`listen_fds`]), or opened by the program itself.
///
/// Give it to [`ServerBuilder::adopt`](crate::ServerBuilder::adopt) instead
/// of `bind`. `build()` checks that its family and type fit the server's
/// transport (a datagram socket given to a stream server is an
/// [`Error::SocketMismatch`]), that a stream socket is listening, and serves
/// it as it is: it is neither bound nor configured again.
pub struct PassedSocket {
    pub(crate) fd: OwnedFd,
    name: String,
}

impl PassedSocket {
    /// Wraps a descriptor, naming it for error messages and logs.
    pub fn new(fd: impl Into<OwnedFd>, name: impl Into<String>) -> Self {
        PassedSocket {
            fd: fd.into(),
            name: name.into(),
        }
    }

    /// The socket's name: systemd's `FileDescriptorName=` (default: the
    /// socket unit's name), or what [`new`](Self::new) was given.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for PassedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PassedSocket")
            .field("fd", &self.fd)
            .field("name", &self.name)
            .finish()
    }
}

macro_rules! passed_from {
    ($($t:ty => $what:literal),*) => {$(
        impl From<$t> for PassedSocket {
            fn from(s: $t) -> Self {
                PassedSocket::new(s, $what)
            }
        }
    )*};
}

passed_from!(
    TcpListener => "a TCP listener",
    UdpSocket => "a UDP socket",
    UnixListener => "a Unix listener",
    UnixDatagram => "a Unix datagram socket"
);

/// Takes the sockets systemd passed to this process by socket activation
/// (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`), as `sd_listen_fds(3)`
/// does, named by `LISTEN_FDNAMES` (a missing name is `"fd 3"` and so on).
///
/// Returns an empty list when none were passed to this process (the
/// variables are unset, or `LISTEN_PID` names another process, as in a
/// child that inherited them), and on any call after one that took them,
/// so a descriptor is never owned twice.
///
/// Before it takes any, it checks each descriptor `LISTEN_FDS` announces
/// (3, 4, ...): that it is open, that it is a socket, and that the socket
/// is a stream or datagram one. If one is not, none is taken and the
/// variables are left as they are: a descriptor that is not open, or not a
/// socket (a file the program opened itself, say, while the variables
/// were set by mistake), is an [`Error::InvalidSetting`] for `LISTEN_FDS`,
/// such as `descriptor 3 is not a socket (a regular file)`; a socket of
/// another type (sequential-packet, say) is an [`Error::SocketMismatch`]
/// naming it. Malformed variables are an [`Error::InvalidSetting`] too.
/// (So a unit that also passes FIFOs or other files, with `ListenFIFO=`
/// or `ListenSpecial=`, cannot use this function.)
///
/// Once they are taken, each socket is marked close-on-exec, and
/// `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` are removed from the
/// environment (as `sd_listen_fds` does when asked to unset them), so
/// that programs this one starts do not see them.
///
/// Call it early in `main`, before starting threads and before opening
/// sockets: changing the environment is not thread-safe for code that
/// reads it with C's `getenv`, and while the checks catch a descriptor
/// that is closed or a file, they cannot tell a socket systemd passed
/// from one the program opened itself at the same number.
pub fn listen_fds() -> Result<Vec<PassedSocket>, Error> {
    Ok(crate::sys::activation::take()?
        .into_iter()
        .map(|(fd, name)| PassedSocket { fd, name })
        .collect())
}
