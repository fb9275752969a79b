//! Starting a program with descriptors of ours at 3, 4, ... (the numbers
//! `sd_listen_fds` reads), as systemd passes sockets to a service.

use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// The first descriptor number passed (after stdin, stdout, stderr).
pub(crate) const FIRST: RawFd = 3;

/// Spawns `command` with `fds[i]` open as descriptor `FIRST + i` in the
/// child (without close-on-exec), and nothing else of ours beyond stdio
/// (the standard library opens every descriptor close-on-exec).
pub(crate) fn with_fds(command: &mut Command, fds: &[RawFd]) -> io::Result<Child> {
    let fds = fds.to_vec();
    let count = RawFd::try_from(fds.len())
        .ok()
        .filter(|n| *n <= 1024)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too many descriptors"))?;
    // Written by the child, so allocated before the fork.
    let mut copies: Vec<RawFd> = vec![-1; fds.len()];
    // SAFETY: the closure runs in the child between fork and exec, where
    // only async-signal-safe calls are allowed: it calls `fcntl` and `dup2`
    // only, allocates nothing (`fds` and `copies` were allocated before the
    // fork; it reads the one and writes within the other's length), and
    // takes no lock. The descriptors of `fds` are open in the parent while
    // `spawn` forks (the caller holds them), so they are open in the child.
    // Each is first copied at or above `FIRST + count` (close-on-exec), so
    // placing one at its target number cannot close another not yet
    // copied; `dup2` then makes the target, without close-on-exec, and
    // exec closes the copies.
    unsafe {
        command.pre_exec(move || {
            for (copy, &fd) in copies.iter_mut().zip(&fds) {
                *copy = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, FIRST + count);
                if *copy < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            for (target, &copy) in (FIRST..).zip(&copies) {
                if libc::dup2(copy, target) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        })
    };
    command.spawn()
}
