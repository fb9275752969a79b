//! Ready-made handlers. Each serves TCP and UDP alike.
//!
//! * [`Daytime`]: the local time as text (RFC 867, and the seed's time server).
//! * [`Time`]: the time as 4 binary bytes (RFC 868, what `rdate` reads).
//! * [`Echo`]: sends back what it receives (RFC 862).
//! * [`Discard`]: throws away what it receives (RFC 863).
//! * [`Chargen`]: an endless stream of text lines (RFC 864).
//! * [`Qotd`]: a quote (RFC 865).
//! * [`Greeting`]: fixed bytes (the seed's threaded server says `connected`).
//!
//! The six standard services listen on ports 7 (echo), 9 (discard),
//! 13 (daytime), 17 (qotd), 19 (chargen) and 37 (time); the `inetd`
//! example serves all of them.
//!
//! Over UDP two services cannot bounce a forged datagram between each
//! other for long: the server drops datagrams from source ports below 1024
//! before any handler sees them
//! ([`min_source_port`](crate::ServerBuilder::min_source_port), default
//! 1024), and serves any other port outside the ephemeral range, a
//! service's port, at most 100 datagrams a second
//! ([`loop_guard`](crate::ServerBuilder::loop_guard)), so such a loop dies
//! within milliseconds. Nor do they reply with much more than they
//! received: see [`Amplification`].

use std::io::{self, Read, Write};
use std::net::Shutdown;

use crate::report::client_gone;
use crate::Connection;

mod amplification;
mod chargen;
mod daytime;
mod discard;
mod echo;
mod greeting;
mod qotd;
mod time;

pub use amplification::Amplification;
pub use chargen::Chargen;
pub use daytime::Daytime;
pub use discard::Discard;
pub use echo::Echo;
pub use greeting::Greeting;
pub use qotd::Qotd;
pub use time::Time;

/// How long a reply-once service waits, after its reply, for the client
/// to close (see [`reply_once`]).
const LINGER: std::time::Duration = std::time::Duration::from_millis(500);

/// Sends `reply` and ends the exchange: over UDP as exactly one datagram
/// (even an empty one, which `write_all` would skip); over TCP followed by
/// a FIN, then, if the client sent something (which the service ignores),
/// a lingering close: that is read and dropped until the client closes
/// too, for at most [`LINGER`]. Closing a socket with unread input makes
/// the kernel send a reset, which can destroy the reply before the client
/// has read it: a client that sends a line and half-closes (`nc -N`) lost
/// its quote now and then. A client that sent nothing costs no wait.
pub(crate) fn reply_once(conn: &mut Connection, reply: &[u8]) -> io::Result<()> {
    if conn.datagram().is_some() {
        return conn.reply_datagram(reply);
    }
    conn.write_all(reply)?;
    match conn.shutdown(Shutdown::Write) {
        Err(e) if !client_gone(e.kind()) && e.kind() != io::ErrorKind::NotConnected => Err(e),
        Err(_) => Ok(()),
        Ok(()) => {
            if conn.has_unread() {
                linger(conn);
            }
            Ok(())
        }
    }
}

/// Reads and drops what the client still sends, until it closes, for at
/// most [`LINGER`] in all; a failure only ends it sooner.
fn linger(conn: &mut Connection) {
    let until = std::time::Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    loop {
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || conn.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match conn.read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
    }
}
