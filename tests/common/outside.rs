//! Outside clients (`openssl s_client`, Python, socat...) run as child
//! processes that a test drives over their stdin and reads line by line,
//! every wait bounded and every child killed when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use super::{KillOnDrop, TIMEOUT};

/// How long an outside client may take from its start to its exit: its
/// whole run, an interpreter's start included, on a machine that may be
/// busy with other tests.
pub const EXIT_TIMEOUT: std::time::Duration = TIMEOUT.saturating_mul(2);

/// An outside client run as a child process: the test writes its stdin,
/// reads its stdout and stderr line by line, and every wait is bounded.
/// Killed when dropped, so a failing test leaves nothing running.
pub struct Client {
    what: String,
    child: KillOnDrop,
    stdin: Option<ChildStdin>,
    stdout: Lines,
    stderr: Lines,
}

/// The lines of one of a child's outputs: those read so far, and the
/// channel the rest come on, closed at the end of the output.
struct Lines {
    incoming: mpsc::Receiver<String>,
    read: Vec<String>,
}

impl Lines {
    fn of(pipe: impl Read + Send + 'static) -> Lines {
        let (tx, incoming) = mpsc::channel();
        std::thread::spawn(move || {
            let mut pipe = BufReader::new(pipe);
            let mut line = Vec::new();
            while matches!(pipe.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let text = String::from_utf8_lossy(&line);
                let _ = tx.send(text.trim_end_matches(['\r', '\n']).to_string());
                line.clear();
            }
        });
        Lines {
            incoming,
            read: Vec::new(),
        }
    }

    /// Reads lines until one is `want` or, with `want` `None`, until the
    /// output ends; an error if `deadline` comes first.
    fn until(&mut self, want: Option<&str>, deadline: Instant) -> Result<(), String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(left) {
                Ok(line) => {
                    let found = Some(line.as_str()) == want;
                    self.read.push(line);
                    if found {
                        return Ok(());
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) if want.is_none() => return Ok(()),
                Err(e) => return Err(format!("{e:?}")),
            }
        }
    }

    /// What came so far, without waiting.
    fn text(&mut self) -> String {
        self.read.extend(self.incoming.try_iter());
        self.read.join("\n")
    }
}

/// How an outside client ended.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Client {
    pub fn start(command: &mut Command) -> Client {
        let what = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        Client {
            what,
            stdin: child.stdin.take(),
            stdout: Lines::of(child.stdout.take().unwrap()),
            stderr: Lines::of(child.stderr.take().unwrap()),
            child: KillOnDrop(child),
        }
    }

    /// Writes `bytes` to the client's stdin.
    pub fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the client to print `want` to stdout as a line of its own.
    pub fn expect_line(&mut self, want: &str) {
        let result = self.stdout.until(Some(want), Instant::now() + TIMEOUT);
        if let Err(e) = result {
            self.fail(&format!("no line {want:?} on stdout ({e})"));
        }
    }

    /// Waits for the client to print `want` to stderr as a line of its own.
    pub fn expect_stderr_line(&mut self, want: &str) {
        let result = self.stderr.until(Some(want), Instant::now() + TIMEOUT);
        if let Err(e) = result {
            self.fail(&format!("no line {want:?} on stderr ({e})"));
        }
    }

    fn fail(&mut self, why: &str) -> ! {
        panic!(
            "{}: {why}\nstdout:\n{}\nstderr:\n{}",
            self.what,
            self.stdout.text(),
            self.stderr.text()
        )
    }

    /// Closes the client's stdin (end of its input) and waits for it to
    /// exit.
    pub fn finish(mut self) -> Finished {
        self.stdin = None;
        self.wait()
    }

    /// Waits for the client to exit by itself, its stdin left as it is
    /// (open, for a client the server turns away).
    pub fn wait(mut self) -> Finished {
        let deadline = Instant::now() + EXIT_TIMEOUT;
        // Its outputs end when it exits.
        let ended = self.stdout.until(None, deadline);
        let ended = ended.and_then(|()| self.stderr.until(None, deadline));
        if let Err(e) = ended {
            self.fail(&format!("did not exit within {EXIT_TIMEOUT:?} ({e})"));
        }
        let status = loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                self.fail("closed its outputs but did not exit");
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        Finished {
            status,
            stdout: self.stdout.text(),
            stderr: self.stderr.text(),
        }
    }
}

impl std::fmt::Display for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\nstdout:\n{}\nstderr:\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}
