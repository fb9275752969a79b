//! `Discard`: the RFC 863 discard service.

use std::io::{self, Read};

use crate::{Connection, Handler, Transport};

/// Throws away what it receives and sends nothing (RFC 863). Port 9.
///
/// RFC 863 over TCP: "Once a connection is established any data received
/// is thrown away. No response is sent. This continues until the calling
/// user terminates the connection." Over UDP: "When a datagram is
/// received, it is thrown away. No response is sent."
///
/// Over TCP the connection ends when the client closes its side or resets
/// the connection (both count as a normal end), or when a read waits longer
/// than the server's [`read_timeout`](crate::ServerBuilder::read_timeout)
/// (60 s by default; an error, as for any handler).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Discard;

impl Handler for Discard {
    fn handle(&self, conn: &mut Connection) -> io::Result<()> {
        if conn.transport() == Transport::Datagram {
            return Ok(());
        }
        let mut buf = [0u8; 8192];
        loop {
            match conn.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if crate::report::client_gone(e.kind()) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}
