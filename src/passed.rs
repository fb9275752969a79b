//! `PassedSocket`: a socket opened elsewhere for a server to serve, and
//! systemd socket activation.

use std::fmt;
use std::net::{TcpListener, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::sync::atomic::{AtomicBool, Ordering};

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

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: i32 = 3;

/// Whether this process has already taken the passed descriptors.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes the sockets systemd passed to this process by socket activation
/// (`LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES`), as `sd_listen_fds(3)` does.
///
/// Returns an empty list when none were passed to this process (the
/// variables are unset, or `LISTEN_PID` names another process, as in a
/// child that inherited them), and on any call after the first, so a
/// descriptor is never owned twice. Each socket is marked close-on-exec.
/// Malformed variables are an [`Error::InvalidSetting`].
pub fn listen_fds() -> Result<Vec<PassedSocket>, Error> {
    let var = |name| std::env::var(name).ok();
    let (Some(pid), Some(count)) = (var("LISTEN_PID"), var("LISTEN_FDS")) else {
        return Ok(Vec::new());
    };
    let invalid = |reason: String| Error::InvalidSetting {
        setting: "LISTEN_FDS",
        reason,
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| invalid(format!("LISTEN_PID={pid:?} is not a process id")))?;
    if pid != std::process::id() {
        return Ok(Vec::new());
    }
    let count: i32 = count
        .trim()
        .parse()
        .ok()
        .filter(|n| (0..=1024).contains(n))
        .ok_or_else(|| {
            invalid(format!(
                "LISTEN_FDS={count:?} is not a count of descriptors"
            ))
        })?;
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(Vec::new());
    }
    let names = var("LISTEN_FDNAMES").unwrap_or_default();
    let mut names = names.split(':');
    Ok((FIRST_FD..FIRST_FD + count)
        .map(|fd| {
            let name = names
                .next()
                .filter(|n| !n.is_empty())
                .map_or_else(|| format!("fd {fd}"), str::to_string);
            let fd = take_fd(fd);
            let _ = socket2::SockRef::from(&fd).set_cloexec(true);
            PassedSocket { fd, name }
        })
        .collect())
}

/// Owns a descriptor that systemd passed to this process.
#[allow(unsafe_code)]
fn take_fd(fd: i32) -> OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: systemd's protocol hands descriptors FIRST_FD..FIRST_FD+LISTEN_FDS
    // to the process named by LISTEN_PID, which we checked is this one, and
    // TAKEN ensures they are taken (and so owned and closed) only once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
