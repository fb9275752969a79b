//! `Echo`: sends back what it receives.

use std::io::{self, Read, Write};

use crate::{Connection, Handler, Transport};

/// Sends back what it receives: over TCP every byte until the client closes
/// its side, over UDP each datagram as one reply datagram of the same bytes
/// (an empty datagram gets an empty reply).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Echo;

impl Handler for Echo {
    fn handle(&self, conn: &mut Connection) -> io::Result<()> {
        if conn.transport() == Transport::Datagram {
            return conn.echo_datagram();
        }
        let mut buf = [0u8; 8192];
        loop {
            let n = match conn.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            conn.write_all(&buf[..n])?;
        }
    }
}
