//! What a thread has used: its CPU time and how often it gave up the CPU
//! of its own accord (`getrusage(RUSAGE_THREAD)`). An event loop uses it to
//! tell a handler that blocked (or computed) for long from a thread the
//! scheduler merely left waiting on a busy machine.

use std::time::Duration;

/// The calling thread's use so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// User plus system CPU time.
    pub(crate) cpu: Duration,
    /// Voluntary context switches: times the thread blocked.
    pub(crate) blocked: u64,
}

/// The calling thread's id (its `tid`), from `/proc/thread-self`; 0 if
/// the system will not say.
pub(crate) fn this_thread_id() -> u64 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

/// Whether thread `tid` of this process waits in the kernel now (a lock,
/// a sleep, blocking I/O: state `S` or `D` in `/proc`), rather than runs
/// or waits for a CPU. `false` if the system will not say.
pub(crate) fn thread_blocked(tid: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")) else {
        return false;
    };
    // The state follows the command name, which may hold spaces and
    // parentheses: it is the first field after the last ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    matches!(state, Some('S' | 'D'))
}

/// The calling thread's use so far; zero if the system will not say.
pub(crate) fn this_thread() -> Usage {
    // SAFETY: `rusage` is plain old data; all zeroes is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_THREAD is valid on Linux; `ru` is a live `rusage`
    // that the call fills in.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) } != 0 {
        return Usage::default();
    }
    let time =
        |t: libc::timeval| Duration::new(t.tv_sec.max(0) as u64, (t.tv_usec.max(0) as u32) * 1000);
    Usage {
        cpu: time(ru.ru_utime) + time(ru.ru_stime),
        blocked: ru.ru_nvcsw.max(0) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleeping_blocks_and_spinning_costs_cpu() {
        let before = this_thread();
        std::thread::sleep(Duration::from_millis(5));
        let slept = this_thread();
        assert!(slept.blocked > before.blocked);
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(30) {
            std::hint::spin_loop();
        }
        assert!(this_thread().cpu >= slept.cpu + Duration::from_millis(10));
    }
}
