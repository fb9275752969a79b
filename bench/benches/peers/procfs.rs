//! What the system tells about a server process (`/proc`: CPU time and
//! resident memory), and this process's limit on open files. Shared by the
//! `peers` and `fanout` benches.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Clock ticks per second of `/proc/PID/stat`'s times (`getconf CLK_TCK`;
/// 100, Linux's value everywhere in practice, when it cannot be asked).
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// User plus system CPU time the process has used so far, all its threads
/// (those that ended included).
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces;
    // count fields after its closing one. utime and stime are fields 14, 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / clock_ticks()))
}

/// A process's memory and threads, from `/proc/PID/status`.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// Resident memory (`VmRSS`: anonymous, file-backed and shared), bytes.
    pub rss: f64,
    /// Its anonymous part (`RssAnon`: heap, stacks), bytes.
    pub anon: f64,
    pub threads: f64,
}

pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some(Memory {
        rss: field("VmRSS:")? * 1024.0,
        anon: field("RssAnon:")? * 1024.0,
        threads: field("Threads:")?,
    })
}

/// Raises this process's soft limit on open files to the hard one, and
/// returns the soft limit in force (1,024 if the system will not say).
pub fn raise_open_files() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct
    // passed, which lives for both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    // rlim_t is u64 on Linux, the crate's one target.
    limit.rlim_cur
}
