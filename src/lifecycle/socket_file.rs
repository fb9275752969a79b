//! The life of a Unix-domain socket file: replacing a stale one before
//! binding, and removing the server's own when it stops, without harming
//! another server on the same path.
//!
//! Both steps look at the path and then change it, so two servers on one
//! path could interleave: two starting together could both find an old
//! file stale, the second deleting the first's fresh one; and a server that
//! drains (its listener refuses connections at once) could delete at stop
//! the file a new server has meanwhile bound. So:
//!
//! * Each step runs under an exclusive advisory lock (`flock(2)`) on a
//!   companion file, `PATH.lock`, as PostgreSQL does with
//!   `.s.PGSQL.5432.lock`. It is held only while a server checks, replaces
//!   and binds the path (and listens, so that the next one finds it live),
//!   or checks and removes it; never while serving, so a new server can
//!   bind while an old one drains. A crashed process holds no lock.
//! * The lock file stays while the socket file does, and goes with it
//!   (removed by the holder while still locked). A server that waited on
//!   the lock of a file removed meanwhile sees it is no longer at the path
//!   and tries again with the new one.
//! * After binding, the server records the socket file's device and inode;
//!   at stop it removes the file only if the path is still a socket with
//!   that identity. The server's own socket keeps that inode in use until
//!   then, so no other file can have it.
//! * Whether a server is live is probed with a non-blocking `connect`, so a
//!   live server with a full backlog is found in use at once rather than
//!   after the connect waits for room.
//!
//! Servers that do not take the lock (other programs, older versions of
//! this crate) are not serialised with; against them the identity check
//! still keeps a server from removing a file it did not bind, but for the
//! instant between the check and the removal.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};

use crate::{sys, Addr, Error, Transport};

/// How long a server waits for another process to release `PATH.lock`.
/// Each holder keeps it for a few system calls; a longer wait means a
/// process stopped or stuck while holding it.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// The longest pause between two tries to take the lock.
const LOCK_PAUSE_MAX: Duration = Duration::from_millis(20);

/// The socket file a server bound, to remove when it stops.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

/// Binds a Unix-domain socket at `path` with `bind`, which must create the
/// socket, bind it and (for a stream) listen; returns what it made and the
/// socket file to remove at stop (none for a name in Linux's abstract
/// namespace, which has no file).
///
/// First, under the lock: a socket file a server still answers on is
/// `AddrInUse`; a stale one (connecting is refused) is removed; a path
/// that is not a socket is never touched (`AlreadyExists`).
pub(crate) fn bind<T>(
    path: &Path,
    transport: Transport,
    bind: impl FnOnce() -> Result<T, Error>,
) -> Result<(T, Option<SocketFile>), Error> {
    if path.as_os_str().as_bytes().first() == Some(&0) {
        return Ok((bind()?, None));
    }
    let failed = |source: io::Error| Error::Bind {
        addr: Addr::Unix(Some(path.to_path_buf())),
        source,
    };
    // Checked before the lock too, so no lock file appears beside a file
    // that is not a socket.
    refuse_other_files(path).map_err(failed)?;
    let lock = Lock::take(path).map_err(failed)?;
    clear(path, transport).map_err(failed)?;
    let bound = bind()?;
    let meta = fs::symlink_metadata(path).map_err(failed)?;
    drop(lock);
    let file = SocketFile {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
    };
    Ok((bound, Some(file)))
}

impl SocketFile {
    /// Removes the socket file, under the lock, if it is still the one this
    /// server bound; a server that has taken the path over keeps its file.
    /// If the lock cannot be had, the file is left: the next server to bind
    /// the path finds it stale and replaces it.
    pub(crate) fn remove(self) {
        let lock = match Lock::take(&self.path) {
            Ok(lock) => lock,
            // Nothing to leave behind if the file is gone already.
            Err(_) if fs::symlink_metadata(&self.path).is_err() => return,
            Err(e) => {
                crate::report::log_or_eprint(
                    log::Level::Warn,
                    &format!("leaving the socket file {}: {e}", self.path.display()),
                );
                return;
            }
        };
        match fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_socket() && (m.dev(), m.ino()) == (self.dev, self.ino) => {
                if let Err(e) = fs::remove_file(&self.path) {
                    log::debug!("removing the socket file {}: {e}", self.path.display());
                }
            }
            Ok(_) => log::debug!(
                "{} is no longer this server's socket file; left in place",
                self.path.display()
            ),
            Err(_) => {}
        }
        drop(lock);
    }
}

/// A path that exists and is not a socket is `AlreadyExists`.
fn refuse_other_files(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => Err(not_a_socket()),
        _ => Ok(()),
    }
}

fn not_a_socket() -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        "the path exists and is not a socket",
    )
}

/// Makes way for binding `path` (under the lock): refuses a path that is
/// not a socket or that a server is bound to, removes a stale socket file.
/// A path that cannot be looked at is left for `bind(2)` to report on.
fn clear(path: &Path, transport: Transport) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => return Err(not_a_socket()),
        Ok(_) => {}
        Err(_) => return Ok(()),
    }
    match probe(path, transport)? {
        Probe::Live => Err(io::ErrorKind::AddrInUse.into()),
        Probe::Stale => match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        Probe::Gone => Ok(()),
    }
}

/// What a `connect` to a socket file says about it.
enum Probe {
    /// A server is bound to it (and, for a stream, listening).
    Live,
    /// Nothing is: the server that made it is gone, or a stream server has
    /// shut its listener down.
    Stale,
    /// There is no file at the path any more.
    Gone,
}

/// Connects to `path` without blocking. A stream server whose backlog is
/// full answers `EAGAIN` (Linux) or `EINPROGRESS` rather than refusing:
/// live too. A connection made is closed at once; the server sees an
/// empty one.
fn probe(path: &Path, transport: Transport) -> io::Result<Probe> {
    let ty = match transport {
        Transport::Stream => Type::STREAM,
        Transport::Datagram => Type::DGRAM,
    };
    let socket = Socket::new(Domain::UNIX, ty, None)?;
    socket.set_nonblocking(true)?;
    let Err(e) = socket.connect(&SockAddr::unix(path)?) else {
        return Ok(Probe::Live);
    };
    match e.kind() {
        io::ErrorKind::WouldBlock => Ok(Probe::Live),
        _ if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(Probe::Live),
        io::ErrorKind::ConnectionRefused => Ok(Probe::Stale),
        io::ErrorKind::NotFound => Ok(Probe::Gone),
        _ => Err(e),
    }
}

/// The exclusive lock on `PATH.lock`, released when dropped.
struct Lock {
    file: File,
    path: PathBuf,
    socket: PathBuf,
}

impl Lock {
    /// Takes the lock for the socket file at `socket`, creating the lock
    /// file if need be; waits up to [`LOCK_WAIT`] for another holder.
    fn take(socket: &Path) -> io::Result<Lock> {
        Lock::take_within(socket, LOCK_WAIT)
    }

    fn take_within(socket: &Path, patience: Duration) -> io::Result<Lock> {
        let mut path = socket.as_os_str().to_owned();
        path.push(".lock");
        let path = PathBuf::from(path);
        let context = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let deadline = Instant::now() + patience;
        let mut pause = Duration::from_millis(1);
        let mut wait = || {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("still locked by another process after {patience:?}"),
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(LOCK_PAUSE_MAX);
            Ok(())
        };
        loop {
            let file = open(&path).map_err(context)?;
            while !sys::flock::try_lock_exclusive(&file).map_err(context)? {
                wait().map_err(context)?;
            }
            // The holder before may have removed the file while this
            // process waited: the lock counts only on the file at the path.
            let held = file.metadata().map_err(context)?;
            match fs::symlink_metadata(&path) {
                Ok(m) if (m.dev(), m.ino()) == (held.dev(), held.ino()) => {
                    let socket = socket.to_path_buf();
                    return Ok(Lock { file, path, socket });
                }
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(context(e)),
                _ => wait().map_err(context)?,
            }
        }
    }
}

impl Drop for Lock {
    /// With no socket file left at the path, removes the lock file too,
    /// while still holding it; unless it is not empty, which this crate's
    /// never is: then it is someone else's file and stays.
    fn drop(&mut self) {
        let socket_gone =
            fs::symlink_metadata(&self.socket).is_err_and(|e| e.kind() == io::ErrorKind::NotFound);
        if socket_gone && self.file.metadata().is_ok_and(|m| m.len() == 0) {
            if let Err(e) = fs::remove_file(&self.path) {
                log::debug!("removing the lock file {}: {e}", self.path.display());
            }
        }
    }
}

/// Opens (creating) the lock file: never through a symbolic link, nor
/// anything but a regular file; read-only where it belongs to another user
/// who lets others read it, which is all `flock(2)` needs.
fn open(path: &Path) -> io::Result<File> {
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK;
    let file = match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .custom_flags(flags)
        .open(path)
    {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)
            .map_err(|_| e)?,
        opened => opened?,
    };
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the lock file exists and is not a regular file",
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh socket path in a directory of this test's own.
    fn socket_path() -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "socketserver-unit-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&dir).unwrap();
        dir.join("s.sock")
    }

    fn lock_path(socket: &Path) -> PathBuf {
        let mut path = socket.as_os_str().to_owned();
        path.push(".lock");
        path.into()
    }

    #[test]
    fn the_lock_excludes_a_second_taker_until_released() {
        let socket = socket_path();
        let lock = Lock::take(&socket).unwrap();
        assert!(lock_path(&socket).exists());
        let t = Instant::now();
        let err = Lock::take_within(&socket, Duration::from_millis(50))
            .err()
            .expect("a second taker waits");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert!(err.to_string().contains(".lock"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        drop(lock);
        assert!(
            !lock_path(&socket).exists(),
            "no socket file, so the lock file goes"
        );
        drop(Lock::take_within(&socket, Duration::ZERO).unwrap());
    }

    #[test]
    fn the_lock_file_stays_while_the_socket_file_does() {
        let socket = socket_path();
        let listener = UnixListener::bind(&socket).unwrap();
        drop(Lock::take(&socket).unwrap());
        assert!(lock_path(&socket).exists());
        drop(listener);
        fs::remove_file(&socket).unwrap();
        drop(Lock::take(&socket).unwrap());
        assert!(!lock_path(&socket).exists());
    }

    #[test]
    fn a_taker_whose_lock_file_was_removed_takes_the_new_one() {
        let socket = socket_path();
        let first = Lock::take(&socket).unwrap();
        let waiter = {
            let socket = socket.clone();
            std::thread::spawn(move || Lock::take(&socket).unwrap())
        };
        // With no socket file, the first holder removes the lock file as it
        // releases it, perhaps under a waiter that has it open already.
        drop(first);
        let second = waiter.join().unwrap();
        let at_path = fs::symlink_metadata(lock_path(&socket)).unwrap();
        let held = second.file.metadata().unwrap();
        assert_eq!((held.dev(), held.ino()), (at_path.dev(), at_path.ino()));
    }

    #[test]
    fn a_lock_file_that_is_a_symlink_is_not_followed() {
        let socket = socket_path();
        let target = socket.with_file_name("elsewhere");
        std::os::unix::fs::symlink(&target, lock_path(&socket)).unwrap();
        assert!(Lock::take(&socket).is_err());
        assert!(!target.exists());
    }

    #[test]
    fn a_lock_file_with_content_is_not_removed() {
        let socket = socket_path();
        fs::write(lock_path(&socket), "someone's").unwrap();
        drop(Lock::take(&socket).unwrap());
        assert_eq!(fs::read_to_string(lock_path(&socket)).unwrap(), "someone's");
    }

    #[test]
    fn the_probe_tells_live_stale_and_gone_apart_without_waiting() {
        let socket = socket_path();
        assert!(matches!(
            probe(&socket, Transport::Stream).unwrap(),
            Probe::Gone
        ));
        // Backlog 0: one connection waiting fills it.
        let listener = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        listener.bind(&SockAddr::unix(&socket).unwrap()).unwrap();
        listener.listen(0).unwrap();
        assert!(matches!(
            probe(&socket, Transport::Stream).unwrap(),
            Probe::Live
        ));
        let mut waiting = Vec::new();
        loop {
            let client = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            client
                .set_write_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            client.set_nonblocking(true).unwrap();
            match client.connect(&SockAddr::unix(&socket).unwrap()) {
                Ok(()) => waiting.push(client),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => panic!("{e}"),
            }
            assert!(waiting.len() < 64, "the backlog never filled");
        }
        let t = Instant::now();
        assert!(matches!(
            probe(&socket, Transport::Stream).unwrap(),
            Probe::Live
        ));
        assert!(t.elapsed() < Duration::from_millis(500));
        drop(listener);
        assert!(matches!(
            probe(&socket, Transport::Stream).unwrap(),
            Probe::Stale
        ));
    }
}
