//! Placing the clients and the server on CPUs of their own: the server on
//! the last CPU, the clients on the others, as a load generator run beside
//! a server on its own cores measures it. With one CPU, nothing is placed.

use std::io;
use std::mem;

/// The CPUs this thread may run on.
fn allowed() -> io::Result<libc::cpu_set_t> {
    // SAFETY: `cpu_set_t` is a plain bit array; all zeros is valid.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is a valid, writable `cpu_set_t` of the size passed,
    // the only memory `sched_getaffinity` writes; 0 means this thread.
    let r = unsafe { libc::sched_getaffinity(0, mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(set)
}

fn set(cpus: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: `cpus` is a valid `cpu_set_t` of the size passed, which
    // `sched_setaffinity` only reads; 0 means this thread.
    let r = unsafe { libc::sched_setaffinity(0, mem::size_of::<libc::cpu_set_t>(), cpus) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The CPUs in `set`, in order.
fn members(set: &libc::cpu_set_t) -> Vec<usize> {
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `CPU_ISSET` reads one bit of a valid set, in range.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, set) })
        .collect()
}

fn only(cpus: &[usize]) -> libc::cpu_set_t {
    // SAFETY: as in `allowed`.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    for &c in cpus {
        // SAFETY: `CPU_SET` sets one bit of a valid set; `c` came from
        // `members`, so it is below `CPU_SETSIZE`.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    set
}

/// Moves this thread (and the threads it starts from now on) to the last
/// of its CPUs: the server's place. Call before any thread is started.
pub fn take_the_last() -> io::Result<()> {
    let cpus = members(&allowed()?);
    match cpus.last() {
        Some(&last) if cpus.len() > 1 => set(&only(&[last])),
        _ => Ok(()),
    }
}

/// Runs `f` with this thread (and the threads it starts meanwhile) on every
/// CPU but the last, then puts it back: the clients' place.
pub fn leave_the_last<T>(f: impl FnOnce() -> T) -> T {
    let Ok(before) = allowed() else {
        return f();
    };
    let cpus = members(&before);
    if cpus.len() < 2 || set(&only(&cpus[..cpus.len() - 1])).is_err() {
        return f();
    }
    let out = f();
    let _ = set(&before);
    out
}
