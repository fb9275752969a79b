//! `Greeting`: writes fixed bytes and closes.

use std::io::{self, Write};

use crate::{Connection, Handler};

/// Writes a fixed message and closes: over TCP on connect, over UDP in reply
/// to any datagram. Default message: `connected`, as the seed's threaded
/// server sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Greeting {
    message: Vec<u8>,
}

impl Greeting {
    /// A greeting that sends `message`.
    pub fn new(message: impl Into<Vec<u8>>) -> Self {
        Greeting {
            message: message.into(),
        }
    }

    /// The bytes sent.
    pub fn message(&self) -> &[u8] {
        &self.message
    }
}

impl Default for Greeting {
    fn default() -> Self {
        Greeting::new("connected")
    }
}

impl Handler for Greeting {
    fn handle(&self, conn: &mut Connection) -> io::Result<()> {
        conn.write_all(&self.message)
    }
}
