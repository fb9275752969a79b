//! Telling whoever started this process that it is ready: systemd's
//! `sd_notify(3)` protocol (`READY=1`, `MAINPID=`), to systemd through
//! `NOTIFY_SOCKET`, and to the old process of an upgrade in place through
//! a socket of its own ([`UPGRADE_VAR`]).

use std::io;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::{Duration, Instant};

use crate::deadline::deadline_after;

/// The variable that names the old process's socket in a new one started
/// by an upgrade in place.
pub(crate) const UPGRADE_VAR: &str = "SOCKETSERVER_UPGRADE_NOTIFY";

/// Whether this process has said it is ready.
static READY: AtomicBool = AtomicBool::new(false);

/// Says, once per process, that it is ready (`READY=1`, with its process
/// id as `MAINPID`): to systemd if `NOTIFY_SOCKET` is set (a `Type=notify`
/// service), and to the old process if this one was started by an
/// upgrade. Called when a server of the process begins to serve: its
/// socket is listening, and clients queue for it from then on.
pub(crate) fn ready() {
    if READY.swap(true, SeqCst) {
        return;
    }
    let msg = format!("READY=1\nMAINPID={}\n", std::process::id());
    for var in ["NOTIFY_SOCKET", UPGRADE_VAR] {
        if let Some(to) = std::env::var_os(var) {
            if let Err(e) = send(Path::new(&to), &msg) {
                // An upgrade's old process that is gone (this process
                // inherited the variable from one it started) waits for
                // nothing: not worth a warning.
                let gone = var == UPGRADE_VAR
                    && matches!(
                        e.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                    );
                let level = match gone {
                    true => log::Level::Debug,
                    false => log::Level::Warn,
                };
                let msg = format!(
                    "cannot tell {var}={} that this process is ready: {e}",
                    Path::new(&to).display()
                );
                crate::report::log_or_eprint(level, &msg);
            }
        }
    }
}

/// Tells systemd, if this process runs under it with `NOTIFY_SOCKET`,
/// that `pid` is the service's main process now, and ready: an old
/// process hands over to the new one it started.
pub(crate) fn main_pid(pid: u32) -> io::Result<()> {
    match std::env::var_os("NOTIFY_SOCKET") {
        Some(to) => send(Path::new(&to), &format!("MAINPID={pid}\nREADY=1\n")),
        None => Ok(()),
    }
}

/// Sends one message to a notification socket: a path, or with a leading
/// `@` a name in the abstract namespace (as systemd may give it).
fn send(to: &Path, msg: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let bytes = to.as_os_str().as_encoded_bytes();
    match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(msg.as_bytes(), &addr)?;
        }
        None => {
            sock.send_to(msg.as_bytes(), to)?;
        }
    }
    Ok(())
}

/// The old process's end: a socket in a directory only this user may
/// enter, for the new process's `READY=1`. Removed when dropped.
#[derive(Debug)]
pub(crate) struct ReadyListener {
    sock: UnixDatagram,
    dir: PathBuf,
    path: PathBuf,
}

impl ReadyListener {
    pub(crate) fn new() -> io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = std::env::temp_dir().join(format!(
            "socketserver-upgrade-{}-{nanos}",
            std::process::id()
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let path = dir.join("notify");
        let sock = match UnixDatagram::bind(&path) {
            Ok(sock) => sock,
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(e);
            }
        };
        Ok(ReadyListener { sock, dir, path })
    }

    /// The value of [`UPGRADE_VAR`] for the new process.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Waits up to `wait` for a `READY=1` from process `pid`; `Ok(false)`
    /// when none came in time. Messages from others, or without
    /// `READY=1`, are ignored.
    pub(crate) fn ready_from(&self, pid: u32, wait: Duration) -> io::Result<bool> {
        let until = deadline_after(Instant::now(), wait);
        let mut buf = [0u8; 4096];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            self.sock.set_read_timeout(Some(left))?;
            let n = match self.sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(false)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let text = String::from_utf8_lossy(&buf[..n]);
            let says = |line: &str| text.lines().any(|l| l == line);
            if says("READY=1") && says(&format!("MAINPID={pid}")) {
                return Ok(true);
            }
        }
    }
}

impl Drop for ReadyListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_dir(&self.dir);
    }
}
