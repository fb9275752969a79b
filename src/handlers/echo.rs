//! `Echo`: the RFC 862 echo service.

use std::io::{self, Read, Write};

use crate::{Connection, Handler, Transport};

/// Sends back what it receives (RFC 862). Port 7.
///
/// RFC 862 over TCP: "Once a connection is established any data received
/// is sent back. This continues until the calling user terminates the
/// connection." Over UDP: "When a datagram is received, the data from it
/// is sent back in an answering datagram."
///
/// Over TCP every byte is sent back until the client closes its side; over
/// UDP each datagram is answered by one datagram of the same bytes (an
/// empty datagram gets an empty reply). A reply is never larger than its
/// request, so echo is no amplifier; datagrams from another service (such
/// as another echo or chargen) are dropped or held to a low rate by the
/// server before they get here (`min_source_port`, `loop_guard`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Echo;

impl Handler for Echo {
    fn handle(&self, conn: &mut Connection) -> io::Result<()> {
        if conn.transport() == Transport::Datagram {
            return conn.echo_datagram();
        }
        // Small on purpose: a connection idling in read() holds its worker's
        // stack, and each 4 KiB page of buffer touched is resident memory
        // for every such connection. Echo is about round trips, not bulk.
        let mut buf = [0u8; 1024];
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
