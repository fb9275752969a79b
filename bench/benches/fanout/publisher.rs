//! The publisher: one connection, closed-loop with a window of
//! [`WINDOW`] PUBLISH commands outstanding. It sends more only as integer
//! replies come back, so it publishes as fast as the server fans out, and
//! a server that falls behind slows it instead of queueing without bound.
//! Each message carries its publish time, taken as the command is written.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::now_ns;
use crate::resp::{self, Frame, Item};
use crate::subscribers::connect;

/// PUBLISH commands outstanding at most.
pub const WINDOW: usize = 8;
/// The longest wait for a reply before the round fails.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Publisher {
    stream: TcpStream,
    out: Vec<u8>,
    input: Vec<u8>,
}

/// What one run published.
pub struct Published {
    pub commands: u64,
    /// The sum of the integer replies: deliveries the server promised.
    pub receivers: u64,
    /// When the first command was written, ns since the base.
    pub first_sent: u64,
}

impl Publisher {
    pub fn connect(addr: SocketAddr) -> Result<Publisher, String> {
        let stream = connect(addr, Duration::from_secs(3), None)
            .map_err(|e| format!("publisher: connect: {e}"))?;
        stream
            .set_read_timeout(Some(REPLY_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(REPLY_TIMEOUT)))
            .map_err(|e| format!("publisher: {e}"))?;
        Ok(Publisher {
            stream,
            out: Vec::with_capacity(WINDOW * 128),
            input: vec![0; 64 * 1024],
        })
    }

    /// Publishes for `secs`, then waits for the outstanding replies.
    /// `check` is asked now and then whether the round should stop (a
    /// subscriber failed).
    pub fn run(
        &mut self,
        secs: Duration,
        check: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<Published, String> {
        let io = |e: io::Error| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                format!(
                    "publisher: no reply to PUBLISH within {} s",
                    REPLY_TIMEOUT.as_secs()
                )
            }
            _ => format!("publisher: {e}"),
        };
        let end = Instant::now() + secs;
        let mut done = Published {
            commands: 0,
            receivers: 0,
            first_sent: now_ns(),
        };
        let mut outstanding = 0;
        let mut have = 0;
        let mut turns = 0u32;
        loop {
            if outstanding < WINDOW && Instant::now() < end {
                self.out.clear();
                while outstanding < WINDOW {
                    resp::publish(&mut self.out, now_ns());
                    outstanding += 1;
                    done.commands += 1;
                }
                self.stream.write_all(&self.out).map_err(io)?;
            }
            if outstanding == 0 {
                return Ok(done);
            }
            turns += 1;
            if turns == 64 {
                turns = 0;
                check()?;
            }
            let n = self.stream.read(&mut self.input[have..]).map_err(io)?;
            if n == 0 {
                return Err("publisher: the server closed the connection".into());
            }
            have += n;
            let mut at = 0;
            while let Some((frame, used)) =
                resp::frame(&self.input[at..have]).map_err(|e| format!("publisher: {e}"))?
            {
                at += used;
                match frame {
                    Frame::Single(Item::Integer(k)) if outstanding > 0 => {
                        outstanding -= 1;
                        done.receivers += u64::try_from(k).unwrap_or(0);
                    }
                    other => return Err(format!("the server answered PUBLISH with {other}")),
                }
            }
            self.input.copy_within(at..have, 0);
            have -= at;
        }
    }
}
