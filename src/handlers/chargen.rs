//! `Chargen`: the RFC 864 character generator.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use super::Amplification;
use crate::{Connection, Handler, Transport};

/// The 95 printing ASCII characters, space (32) to tilde (126).
const PRINTABLE: usize = 95;
/// Characters on a line, before its CR LF.
const LINE: usize = 72;
/// A line with its CR LF.
const LINE_BYTES: usize = LINE + 2;
/// Largest UDP reply, RFC 864's "between 0 and 512".
const MAX_DATAGRAM: usize = 512;

/// Every line of the pattern once: line 95 is line 0 again, so a stream is
/// this block sent over and over. 7,030 bytes, built at compile time.
static CYCLE: [u8; PRINTABLE * LINE_BYTES] = cycle();

const fn cycle() -> [u8; PRINTABLE * LINE_BYTES] {
    let mut out = [0u8; PRINTABLE * LINE_BYTES];
    let mut line = 0;
    while line < PRINTABLE {
        let mut col = 0;
        while col < LINE {
            out[line * LINE_BYTES + col] = b' ' + ((line + col) % PRINTABLE) as u8;
            col += 1;
        }
        out[line * LINE_BYTES + LINE] = b'\r';
        out[line * LINE_BYTES + LINE + 1] = b'\n';
        line += 1;
    }
    out
}

/// Sends lines of text without regard to the input (RFC 864). Port 19.
///
/// The lines are the RFC's pattern: "72 character lines of the ASCII
/// printing characters. There are 95 printing characters in the ASCII
/// character set. [...] On line N, put characters (0+N mod 95) through
/// (71+N mod 95). End each line with carriage return and line feed." The
/// characters run from space to `~`, so line 0 starts with a space, line 1
/// with `!`, and line 95 is line 0 again.
///
/// **TCP**: "Once a connection is established a stream of data is sent out
/// the connection (and any data received is thrown away). This continues
/// until the calling user terminates the connection." The stream starts at
/// line 0 and runs until the client closes or resets the connection (a
/// normal end) or stops reading for longer than the server's
/// [`write_timeout`](crate::ServerBuilder::write_timeout) (an error). Bytes
/// the client sends are never read: TCP flow control holds back a client
/// that sends more than the socket buffers take.
///
/// **UDP**: "When a datagram is received, an answering datagram is sent
/// containing a random number (between 0 and 512) of characters (the data
/// in the received datagram is ignored)." The reply is the pattern from
/// line 0, cut at that length.
///
/// **Reflection risk**: UDP chargen is a textbook amplifier, answering any
/// datagram (even an empty one) with up to 512 bytes. So the random length
/// is also capped by [`Amplification`]: by default a reply is at most
/// `max(3 × request, 128)` bytes, so a `nc -u` newline gets at most 128
/// characters and a request of 171 bytes or more the RFC's full range.
/// [`amplification`](Self::amplification) changes that; lift it only where
/// no untrusted host can reach the service. (Datagrams from ports below
/// 1024, such as another service's, are dropped by the server already.)
pub struct Chargen {
    amplification: Amplification,
    /// State of a splitmix64 generator, for the UDP reply lengths.
    random: AtomicU64,
}

impl Chargen {
    /// A chargen with the default [`Amplification`] limit.
    pub fn new() -> Self {
        // Any seed will do: the lengths need to vary, not be secret.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Chargen {
            amplification: Amplification::default(),
            random: AtomicU64::new(seed),
        }
    }

    /// Limits UDP replies relative to the request's size. Default:
    /// [`Amplification::default`], `max(3 × request, 128)` bytes.
    pub fn amplification(mut self, limit: Amplification) -> Self {
        self.amplification = limit;
        self
    }

    /// A length in `0..=512` for a UDP reply, before the amplification cap.
    fn random_len(&self) -> usize {
        // splitmix64: lock-free and well mixed, since workers share it.
        let mut z = self
            .random
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % (MAX_DATAGRAM as u64 + 1)) as usize
    }
}

impl Default for Chargen {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Chargen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chargen")
            .field("amplification", &self.amplification)
            .finish_non_exhaustive()
    }
}

impl Handler for Chargen {
    fn handle(&self, conn: &mut Connection) -> io::Result<()> {
        if conn.transport() == Transport::Datagram {
            let len = self.random_len().min(self.amplification.budget(conn));
            // The cycle begins with line 0 and is longer than 512 bytes.
            return super::reply_once(conn, &CYCLE[..len]);
        }
        loop {
            match conn.write_all(&CYCLE) {
                Ok(()) => {}
                Err(e) if crate::report::client_gone(e.kind()) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_rfc_864() {
        let lines: Vec<&[u8]> = CYCLE.chunks(LINE_BYTES).collect();
        assert_eq!(lines.len(), 95);
        assert!(CYCLE.len() >= MAX_DATAGRAM);
        assert_eq!(&lines[0][..10], b" !\"#$%&'()");
        assert_eq!(&lines[1][..10], b"!\"#$%&'()*");
        assert_eq!(&lines[94][..3], b"~ !");
        for (n, line) in lines.iter().enumerate() {
            assert_eq!(&line[LINE..], b"\r\n");
            for (col, &c) in line[..LINE].iter().enumerate() {
                assert_eq!(c as usize, 32 + (n + col) % 95, "line {n} col {col}");
            }
        }
    }

    #[test]
    fn random_lengths_cover_0_to_512() {
        let c = Chargen::new();
        let lens: Vec<usize> = (0..4000).map(|_| c.random_len()).collect();
        assert!(lens.iter().all(|&n| n <= 512));
        assert!(lens.iter().any(|&n| n < 50));
        assert!(lens.iter().any(|&n| n > 460));
    }
}
