//! Waiting for one socket to become ready with `poll(2)`: how a parked
//! connection's I/O blocks when it is used outside its event loop (from a
//! thread the handler started, or inside `offload`).

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::deadline::deadline_after;

/// Waits until `fd` is readable (or `writable`), closed, or in error;
/// `Ok(false)` when `timeout` passed first. `None` waits without limit.
pub(crate) fn wait(
    fd: &impl AsRawFd,
    writable: bool,
    timeout: Option<Duration>,
) -> io::Result<bool> {
    let events = if writable {
        libc::POLLOUT
    } else {
        libc::POLLIN
    };
    let deadline = timeout.map(|t| deadline_after(Instant::now(), t));
    loop {
        let ms = match deadline {
            None => -1,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                // Rounded up, so that a wait never ends before its deadline.
                let ms = left.as_nanos().div_ceil(1_000_000);
                libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
            }
        };
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events,
            revents: 0,
        };
        // SAFETY: `pfd` is one valid, initialised `pollfd` that lives across
        // the call, and the count passed is 1. `poll` only writes its
        // `revents` field. The descriptor is borrowed from a live socket.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        match n {
            0 => return Ok(false),
            n if n > 0 => return Ok(true),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}
