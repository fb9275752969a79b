//! The servers under test, each a process of its own, started fresh for
//! every round (so that one round's memory high-water mark or leftover
//! connections do not carry into the next), killed when dropped, and
//! killed too if the bench dies (`PR_SET_PDEATHSIG`).
//!
//! Ports come from a range below the ephemeral ones (the 10,000
//! subscribers' own ports come from those), each checked free by binding
//! it first, and a new one each start, so that no server meets the last
//! one's `TIME_WAIT`s. A server counts as started when it answers `PING`
//! with `+PONG` on its port and its process is still alive, within
//! [`START_TIMEOUT`]; else the round fails with the tail of its output.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::subscribers::connect;

const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Redis's default `maxclients`; raised when a run needs more.
const REDIS_MAXCLIENTS: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Kv,
    KvParked,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Redis, Kind::Kv, Kind::KvParked];

    /// The name in `--servers` and in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::Kv => "kv",
            Kind::KvParked => "kv-parked",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s.trim())
    }
}

/// Where the programs are.
pub struct Programs {
    pub redis: PathBuf,
    pub kv: PathBuf,
}

impl Programs {
    /// The program and arguments that serve `kind` on `port` for a load
    /// of `clients` connections.
    pub fn command(&self, kind: Kind, port: u16, clients: usize) -> (PathBuf, Vec<String>) {
        match kind {
            Kind::Redis => {
                let mut args: Vec<String> = [
                    "--port",
                    &port.to_string(),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                args.extend(["--bind".into(), "127.0.0.1".into()]);
                // Redis refuses clients beyond maxclients (10,000): give
                // it room when the subscribers, the publisher and the
                // slow subscriber need more.
                if clients + 16 > REDIS_MAXCLIENTS {
                    args.extend(["--maxclients".into(), (clients + 16).to_string()]);
                }
                (self.redis.clone(), args)
            }
            Kind::Kv | Kind::KvParked => {
                let mut args = vec!["--bind".to_string(), format!("127.0.0.1:{port}")];
                if kind == Kind::KvParked {
                    args.push("--park-idle".into());
                }
                (self.kv.clone(), args)
            }
        }
    }

    /// Why `kind` cannot run at all, if so.
    pub fn missing(&self, kind: Kind) -> Option<String> {
        let (program, _) = self.command(kind, 0, 0);
        match program.is_file() {
            true => None,
            false if kind == Kind::Redis => {
                Some(format!("{} not found (--redis PATH)", program.display()))
            }
            false => Some(format!(
                "{} not found: run `cargo build --release --examples` first (or --kv-server PATH)",
                program.display()
            )),
        }
    }
}

/// The ports servers are given: `base` up, a new one each start.
pub struct Ports {
    base: u16,
    next: u16,
}

/// Ports tried per start.
const PORT_SPAN: u16 = 2000;

impl Ports {
    pub fn new(base: u16) -> Ports {
        Ports { base, next: 0 }
    }

    /// A port nothing listens on, checked by binding it.
    fn take(&mut self) -> Result<u16, String> {
        for _ in 0..PORT_SPAN {
            let port = self.base.saturating_add(self.next);
            self.next = (self.next + 1) % PORT_SPAN;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
        Err(format!(
            "no free port in {}..{}",
            self.base,
            self.base.saturating_add(PORT_SPAN)
        ))
    }
}

/// A server process, killed when dropped.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    log: PathBuf,
    /// The command line, for error messages.
    pub line: String,
}

impl Server {
    pub fn start(
        kind: Kind,
        programs: &Programs,
        clients: usize,
        ports: &mut Ports,
    ) -> Result<Server, String> {
        let port = ports.take()?;
        let (program, args) = programs.command(kind, port, clients);
        let line = shell_line(&program, &args);
        let log = std::env::temp_dir().join(format!("fanout-{}-{port}.log", std::process::id()));
        let out = File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env("RUST_LOG", "warn");
        // SAFETY: prctl is async-signal-safe and touches no memory of the
        // parent; it asks the kernel to kill the child if the bench dies.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("start {line}: {e}"))?;
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            line,
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.alive()?;
            if ping(self.addr).is_ok() {
                // Answered; and still ours, not a stranger on the port?
                return self.alive();
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "{} did not answer PING within {} s{}",
                    self.line,
                    START_TIMEOUT.as_secs(),
                    self.log_tail()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Fails, with the tail of its output, if the process has ended.
    pub fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited ({status}){}",
                self.line,
                self.log_tail()
            )),
            Err(e) => Err(format!("{}: {e}", self.line)),
        }
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        let _ = File::open(&self.log).and_then(|mut f| f.read_to_string(&mut text));
        // Its last two lines, each cut at 160 characters.
        let mut lines: Vec<String> = text
            .lines()
            .rev()
            .take(2)
            .map(|l| l.trim().chars().take(160).collect())
            .collect();
        lines.reverse();
        match lines.is_empty() {
            true => String::new(),
            false => format!(": {}", lines.join(" / ")),
        }
    }

    /// Resident memory now (`VmRSS` of /proc/PID/status), bytes.
    pub fn rss(&self) -> Result<u64, String> {
        rss(self.child.id()).ok_or_else(|| {
            format!(
                "{}: no VmRSS in /proc/{}/status",
                self.line,
                self.child.id()
            )
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// `VmRSS` of a process, bytes.
pub fn rss(pid: u32) -> Option<u64> {
    crate::procfs::memory(pid).map(|m| m.rss as u64)
}

/// One `PING`, answered `+PONG`, within a second.
fn ping(addr: SocketAddr) -> Result<(), String> {
    let mut s = connect(addr, Duration::from_secs(1), None).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"*1\r\n$4\r\nPING\r\n")
        .map_err(|e| e.to_string())?;
    let mut reply = [0u8; 7];
    s.read_exact(&mut reply).map_err(|e| e.to_string())?;
    match &reply {
        b"+PONG\r\n" => Ok(()),
        other => Err(format!("PING answered {}", other.escape_ascii())),
    }
}

/// `program args`, quoted for a shell where needed.
pub fn shell_line(program: &Path, args: &[String]) -> String {
    std::iter::once(program.display().to_string())
        .chain(args.iter().map(|a| quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@".contains(&b));
    match plain {
        true => s.to_string(),
        false => format!("'{}'", s.replace('\'', r"'\''")),
    }
}
