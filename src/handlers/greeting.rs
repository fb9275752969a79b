//! `Greeting`: writes fixed bytes and closes.

use std::io::{self, Write};

use super::Amplification;
use crate::{Connection, Handler};

/// Writes a fixed message and closes: over TCP on connect, over UDP in reply
/// to any datagram. Default message: `connected`, as the seed's threaded
/// server sends.
///
/// Over UDP the reply is held to the [`Amplification`] limit, by default
/// `max(3 × request, 128)` bytes: a message larger than the limit for a
/// given request is not sent at all (a greeting cut short would be a
/// different message), so the service is no reflection amplifier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Greeting {
    message: Vec<u8>,
    amplification: Amplification,
}

impl Greeting {
    /// A greeting that sends `message`.
    pub fn new(message: impl Into<Vec<u8>>) -> Self {
        Greeting {
            message: message.into(),
            amplification: Amplification::default(),
        }
    }

    /// The bytes sent.
    pub fn message(&self) -> &[u8] {
        &self.message
    }

    /// How much larger than its request a UDP reply may be. Default:
    /// [`Amplification::default`], `max(3 × request, 128)` bytes.
    pub fn amplification(mut self, limit: Amplification) -> Self {
        self.amplification = limit;
        self
    }
}

impl Default for Greeting {
    fn default() -> Self {
        Greeting::new("connected")
    }
}

impl Handler for Greeting {
    fn handle(&self, conn: &mut Connection) -> io::Result<()> {
        if self.message.len() > self.amplification.budget(conn) {
            return Ok(());
        }
        conn.write_all(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limit_allows_the_seed_greeting() {
        let g = Greeting::default();
        assert!(g.message().len() <= g.amplification.max_reply(0));
    }
}
