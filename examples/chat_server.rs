//! A line-broadcast chat: every line a client sends reaches every other
//! client, pushed to each through its `Outbox` while its own handler waits
//! for its next line.
//!
//! ```text
//! cargo run --example chat_server                 # 127.0.0.1:7077
//! nc 127.0.0.1 7077                                # in two terminals: type
//! cargo run --example chat_server -- --park-idle  # thousands of clients, few threads
//! ```
//!
//! A client that stops reading is cut once `--max-outbox` bytes wait for
//! it (1 MiB by default); the others are not slowed.

mod common;

use std::io::{self, BufRead, BufReader, Read};
use std::sync::{Arc, Mutex};

use socketserver::{Connection, Handler, Outbox};

/// The longest line relayed, in bytes; a longer one ends its client.
const MAX_LINE: usize = 64 * 1024;

/// Everyone connected. Copied on join and leave, so that a broadcast
/// takes the lock only to clone one `Arc`, and sends with it released.
#[derive(Default)]
struct Room {
    members: Mutex<Arc<Vec<Outbox>>>,
}

impl Room {
    fn members(&self) -> Arc<Vec<Outbox>> {
        Arc::clone(&self.members.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn change(&self, f: impl FnOnce(&mut Vec<Outbox>)) {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = members.as_ref().clone();
        f(&mut next);
        *members = Arc::new(next);
    }
}

struct Chat {
    room: Room,
}

impl Handler for Chat {
    fn handle(&self, conn: &mut Connection) -> io::Result<()> {
        let me = conn.outbox();
        self.room.change(|m| m.push(me.clone()));
        let relayed = relay(&self.room, &me, conn);
        self.room
            .change(|m| m.retain(|o| !o.same_connection(&me) && !o.is_closed()));
        relayed
    }
}

/// Sends each line the client writes to every other member.
fn relay(room: &Room, me: &Outbox, conn: &mut Connection) -> io::Result<()> {
    let mut lines = BufReader::new(conn);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut lines)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        if line.last() != Some(&b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a line longer than 64 KiB, or cut short",
            ));
        }
        let msg: Arc<[u8]> = Arc::from(&line[..]);
        for peer in room.members().iter() {
            if !peer.same_connection(me) {
                // A peer cut as a slow consumer, or gone, leaves the room
                // as its own handler ends.
                let _ = peer.send_shared(Arc::clone(&msg));
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    common::serve_listeners(
        "chat_server",
        "Relays every line a client sends to every other client.",
        "127.0.0.1:7077",
        Chat {
            room: Room::default(),
        },
    )
}
