//! systemd socket activation, as `sd_listen_fds(3)` does it: which
//! descriptors the environment says were passed to this process, checking
//! that each is an open socket the crate can serve, and owning them.

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{SockRef, Type};

use crate::Error;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// The most descriptors `LISTEN_FDS` may announce.
const MAX_FDS: RawFd = 1024;

/// The protocol's variables, unset once the descriptors are taken.
const VARS: [&str; 3] = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"];

/// Whether this process has taken the passed descriptors.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes the descriptors passed to this process, each with its name, once
/// all of them have passed [`check`]; see [`crate::listen_fds`].
pub(crate) fn take() -> Result<Vec<(OwnedFd, String)>, Error> {
    let var = |name| std::env::var(name).ok();
    let Some(passed) = announced(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    )?
    else {
        return Ok(Vec::new());
    };
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Ok(Vec::new());
    }
    if let Err(err) = passed.iter().try_for_each(|(fd, name)| check(*fd, name)) {
        // None was taken, so none is owned twice if a later call checks
        // them again (and fails again, unless they were fixed meanwhile).
        TAKEN.store(false, Ordering::SeqCst);
        return Err(err);
    }
    // As sd_listen_fds(unset_environment = 1): programs this one starts,
    // and later calls, do not see descriptors that are no longer passed.
    for var in VARS {
        std::env::remove_var(var);
    }
    Ok(passed
        .into_iter()
        .map(|(fd, name)| (own(fd), name))
        .collect())
}

/// The descriptors, with their names, that the variables say were passed
/// to the process `me`; `None` when none were passed to it (`LISTEN_PID`
/// or `LISTEN_FDS` unset, or `LISTEN_PID` naming another process, as in a
/// child that inherited them).
fn announced(
    pid: Option<&str>,
    count: Option<&str>,
    names: Option<&str>,
    me: u32,
) -> Result<Option<Vec<(RawFd, String)>>, Error> {
    let (Some(pid), Some(count)) = (pid, count) else {
        return Ok(None);
    };
    let invalid = |reason: String| Error::InvalidSetting {
        setting: "LISTEN_FDS",
        reason,
    };
    let pid: u32 = pid
        .trim()
        .parse()
        .map_err(|_| invalid(format!("LISTEN_PID={pid:?} is not a process id")))?;
    if pid != me {
        return Ok(None);
    }
    let count: RawFd = count
        .trim()
        .parse()
        .ok()
        .filter(|n| (0..=MAX_FDS).contains(n))
        .ok_or_else(|| {
            invalid(format!(
                "LISTEN_FDS={count:?} is not a count of descriptors"
            ))
        })?;
    let mut names = names.unwrap_or_default().split(':');
    Ok(Some(
        (FIRST_FD..FIRST_FD + count)
            .map(|fd| {
                let name = names
                    .next()
                    .filter(|n| !n.is_empty())
                    .map_or_else(|| format!("fd {fd}"), str::to_string);
                (fd, name)
            })
            .collect(),
    ))
}

/// Checks, without taking it, that descriptor `raw` is open and is a
/// stream or datagram socket. `name` names it in a
/// [`SocketMismatch`](Error::SocketMismatch).
fn check(raw: RawFd, name: &str) -> Result<(), Error> {
    let invalid = |reason: String| Error::InvalidSetting {
        setting: "LISTEN_FDS",
        reason,
    };
    let inspect = |e: io::Error| invalid(format!("cannot inspect descriptor {raw}: {e}"));

    // SAFETY: fcntl(F_GETFD) takes no pointer and changes nothing: it reads
    // the descriptor's flags, and fails with EBADF on a number that is not
    // an open descriptor.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } == -1 {
        let e = io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EBADF) {
            invalid(format!("descriptor {raw} is not open"))
        } else {
            inspect(e)
        });
    }
    // SAFETY: `raw` is open (F_GETFD just succeeded) and stays open while
    // borrowed: the borrow ends with this function, which closes nothing,
    // and the protocol gives descriptors FIRST_FD.. of the process that
    // LISTEN_PID names (this one) to `listen_fds` alone, so nothing else in
    // the process owns them and may close them meanwhile. The borrow is
    // used only to read the descriptor's status (fstat, getsockopt), never
    // to change or close it.
    let fd = unsafe { BorrowedFd::borrow_raw(raw) };

    let mut stat = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `stat.as_mut_ptr()` is valid for writing one `struct stat`
    // and is not kept past the call; `fd` is an open descriptor.
    if unsafe { libc::fstat(fd.as_raw_fd(), stat.as_mut_ptr()) } == -1 {
        return Err(inspect(io::Error::last_os_error()));
    }
    // SAFETY: fstat returned 0, so it filled in the whole `struct stat`.
    let mode = unsafe { stat.assume_init() }.st_mode;
    if mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(invalid(format!(
            "descriptor {raw} is not a socket ({})",
            file_kind(mode)
        )));
    }

    // getsockopt(SO_TYPE).
    let ty = SockRef::from(&fd).r#type().map_err(inspect)?;
    if ty != Type::STREAM && ty != Type::DGRAM {
        let kind = match i32::from(ty) {
            libc::SOCK_SEQPACKET => "a sequential-packet socket".to_string(),
            libc::SOCK_RAW => "a raw socket".to_string(),
            n => format!("a socket of type {n}"),
        };
        return Err(Error::SocketMismatch {
            socket: name.to_string(),
            reason: format!("it is {kind}, neither stream nor datagram"),
        });
    }
    Ok(())
}

/// What a descriptor that is not a socket refers to, from its `st_mode`.
fn file_kind(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFIFO => "a pipe or FIFO",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFLNK => "a symbolic link",
        _ => "an unknown kind of file",
    }
}

/// Owns descriptor `raw`, which passed [`check`], and marks it
/// close-on-exec.
fn own(raw: RawFd) -> OwnedFd {
    // SAFETY: systemd's protocol hands descriptors FIRST_FD..FIRST_FD +
    // LISTEN_FDS to the process LISTEN_PID names, which `announced` found
    // is this one, and nothing else in the process owns them. `check`
    // found `raw` open and a socket. TAKEN lets only one call own them,
    // once each (the numbers are distinct), until the process ends.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // Programs this one starts do not inherit it. (F_SETFD on an open
    // descriptor does not fail.)
    let _ = SockRef::from(&fd).set_cloexec(true);
    fd
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::net::{TcpListener, UdpSocket};

    use super::*;

    const ME: u32 = 4242;

    fn reason(err: Error) -> String {
        match err {
            Error::InvalidSetting {
                setting: "LISTEN_FDS",
                reason,
            } => reason,
            Error::SocketMismatch { socket, reason } => format!("{socket}: {reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nothing_is_announced_without_both_variables_or_to_another_process() {
        assert_eq!(announced(None, None, None, ME).unwrap(), None);
        assert_eq!(announced(Some("4242"), None, None, ME).unwrap(), None);
        assert_eq!(announced(None, Some("1"), None, ME).unwrap(), None);
        assert_eq!(announced(Some("1"), Some("1"), None, ME).unwrap(), None);
        assert_eq!(
            announced(Some("4242"), Some("0"), None, ME).unwrap(),
            Some(Vec::new())
        );
    }

    #[test]
    fn descriptors_start_at_3_and_are_named_in_order() {
        let passed = announced(Some("4242"), Some(" 3\n"), Some("web::dns"), ME).unwrap();
        assert_eq!(
            passed.unwrap(),
            [
                (3, "web".to_string()),
                (4, "fd 4".to_string()),
                (5, "dns".to_string())
            ]
        );
        let passed = announced(Some("4242"), Some("2"), None, ME).unwrap();
        assert_eq!(
            passed.unwrap(),
            [(3, "fd 3".to_string()), (4, "fd 4".to_string())]
        );
    }

    #[test]
    fn malformed_variables_are_invalid_settings() {
        let err = |pid, count| reason(announced(Some(pid), Some(count), None, ME).unwrap_err());
        assert_eq!(err("me", "1"), r#"LISTEN_PID="me" is not a process id"#);
        assert_eq!(err("-1", "1"), r#"LISTEN_PID="-1" is not a process id"#);
        for count in ["-1", "1025", "", "two"] {
            assert_eq!(
                err("4242", count),
                format!("LISTEN_FDS={count:?} is not a count of descriptors")
            );
        }
    }

    #[test]
    fn stream_and_datagram_sockets_pass_the_check() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        check(listener.as_raw_fd(), "tcp").unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        check(udp.as_raw_fd(), "udp").unwrap();
    }

    #[test]
    fn other_descriptors_fail_it_and_say_why() {
        let file = File::open("Cargo.toml").unwrap();
        let fd = file.as_raw_fd();
        assert_eq!(
            reason(check(fd, "x").unwrap_err()),
            format!("descriptor {fd} is not a socket (a regular file)")
        );
        let dir = File::open(".").unwrap();
        let fd = dir.as_raw_fd();
        assert_eq!(
            reason(check(fd, "x").unwrap_err()),
            format!("descriptor {fd} is not a socket (a directory)")
        );
        let null = File::open("/dev/null").unwrap();
        let fd = null.as_raw_fd();
        assert_eq!(
            reason(check(fd, "x").unwrap_err()),
            format!("descriptor {fd} is not a socket (a character device)")
        );
        let packets = socket2::Socket::new(socket2::Domain::UNIX, Type::SEQPACKET, None).unwrap();
        assert_eq!(
            reason(check(packets.as_raw_fd(), "packets").unwrap_err()),
            "packets: it is a sequential-packet socket, neither stream nor datagram"
        );
        // Above any limit on open descriptors, so never open.
        assert_eq!(
            reason(check(RawFd::MAX, "x").unwrap_err()),
            format!("descriptor {} is not open", RawFd::MAX)
        );
    }
}
