//! Advisory file locks (`flock(2)`), which std wraps only from Rust 1.89 on.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Takes an exclusive advisory lock (`flock(2)`, `LOCK_EX | LOCK_NB`) on
/// `file` if no other open file description holds one; returns whether it
/// did. The lock goes when `file` is closed. (`File::try_lock` does this
/// from Rust 1.89 on.)
#[allow(unsafe_code)]
pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    loop {
        // SAFETY: `flock` takes two integers and touches no memory of ours;
        // the descriptor is borrowed from `file`, so it stays open for the
        // whole call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => return Ok(false),
            io::ErrorKind::Interrupted => continue,
            _ => return Err(e),
        }
    }
}
