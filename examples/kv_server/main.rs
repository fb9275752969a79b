//! A key-value server that a Redis client cannot tell from redis-server
//! 7.0 for what it implements: RESP2 (arrays of bulk strings, and inline
//! commands), strings with deadlines, hashes, and publish/subscribe, each
//! reply byte for byte as redis-server's (`tests/redis.rs` compares them).
//!
//! ```text
//! cargo run --release --example kv_server                  # 127.0.0.1:6380
//! redis-cli -p 6380 set greeting hello ex 60                # OK
//! redis-cli -p 6380 get greeting                            # "hello"
//! redis-cli -p 6380 incrby visits 5                         # (integer) 5
//! redis-cli -p 6380 subscribe news                          # in one terminal: waits for messages
//! redis-cli -p 6380 publish news "hello all"                # in another: (integer) 1
//! redis-benchmark -p 6380 -t ping,set,get -c 50 -q
//! cargo run --release --example kv_server -- --park-idle    # many clients, few threads
//! ```
//!
//! Commands: `PING`, `ECHO`, `QUIT`, `RESET`, `AUTH`; `GET`, `SET` (`NX`,
//! `XX`, `GET`, `EX`, `PX`, `EXAT`, `PXAT`, `KEEPTTL`), `MGET`, `MSET`,
//! `INCR`, `DECR`, `INCRBY`, `DECRBY`; `DEL`, `EXISTS`, `TYPE`, `EXPIRE`,
//! `PEXPIRE`, `PERSIST`, `TTL`, `PTTL`; `HSET`, `HGET`, `HDEL`, `HLEN`;
//! `PUBLISH`, `SUBSCRIBE`, `UNSUBSCRIBE`, `PSUBSCRIBE`, `PUNSUBSCRIBE`.
//! Anything else gets Redis's unknown-command error.
//!
//! The handler is plain blocking code over `BufRead`: one request at a
//! time, replies to pipelined requests written together. A subscriber's
//! messages are pushed to it by the publishers' handlers through its
//! connection's `Outbox` while its own handler waits for its next request
//! (`pubsub.rs`); those of pipelined `PUBLISH`es go together (`fanout.rs`),
//! and a fan-out to many subscribers is written by several threads at once
//! (`writers.rs`; `KV_WRITER_THREADS=N` sets how many helpers, 0 for none,
//! by default one per CPU beyond the first, at most 3).
//! A subscriber is cut once more than `--max-outbox` bytes (1 MiB by
//! default) wait for it, as Redis cuts one past its pub/sub output limit.
//!
//! Where it differs from Redis, on purpose: requests are bounded, so that
//! a client cannot grow the process much by what it sends. An inline line
//! at 64 KiB (as Redis), a bulk string at 1 MiB (Redis: 512 MB) and an
//! array at 2^20 elements (Redis: 2^31), past which the reply is a
//! protocol error and the connection is closed; a whole request at 64 MiB
//! (then the connection is closed, as Redis's `client-query-buffer-limit`
//! closes it at 1 GB).
//!
//! The parts: `resp.rs` reads requests and writes replies, `commands.rs`
//! checks a request and runs it, `strings.rs`, `keys.rs` and `hashes.rs`
//! are the commands on the keyspace of `store.rs`, `pubsub.rs` the
//! subscriptions, `fanout.rs` publishing, `writers.rs` the threads that
//! share a large fan-out's writes, and `glob.rs` Redis's pattern
//! matching.

#[path = "../common/mod.rs"]
mod common;

mod commands;
mod fanout;
mod glob;
mod hashes;
mod keys;
mod pubsub;
mod resp;
mod store;
mod strings;
mod writers;

use std::io::{self, BufReader, Read, Write};
use std::sync::Arc;

use socketserver::Connection;

use commands::Flow;
use fanout::Fanout;
use pubsub::{Registry, Session};
use resp::{ProtocolError, TooBig};
use store::Store;
use writers::Writers;

/// What every connection shares.
pub struct Shared {
    pub store: Store,
    pub registry: Registry,
    pub writers: Writers,
}

fn main() -> std::process::ExitCode {
    let shared = Arc::new(Shared {
        store: Store::default(),
        registry: Registry::default(),
        writers: Writers::default(),
    });
    shared.store.sweep_in_background();
    common::serve_listeners(
        "kv_server",
        "A key-value server speaking Redis's protocol (RESP2), pub/sub included.",
        "127.0.0.1:6380",
        move |conn: &mut Connection| serve(conn, &shared),
    )
}

fn serve(conn: &mut Connection, shared: &Shared) -> io::Result<()> {
    // Dropped last: the batch of pushes in `serve_requests` goes first,
    // then the subscriptions.
    let mut session = Session::new(&shared.registry);
    serve_requests(conn, shared, &mut session)
}

/// The connection as the request loop has it: the messages of its
/// `PUBLISH`es are sent before it waits to read or write, and so before
/// any reply to them.
struct Client<'c, 'r> {
    conn: &'c mut Connection,
    fanout: Fanout<'r>,
}

impl Read for Client<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.fanout.release();
        self.conn.read(buf)
    }
}

impl Client<'_, '_> {
    /// Writes the replies gathered in `out`, and empties it.
    fn reply(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        self.fanout.release();
        self.conn.write_all(out)?;
        out.clear();
        Ok(())
    }
}

fn serve_requests(
    conn: &mut Connection,
    shared: &Shared,
    session: &mut Session<'_>,
) -> io::Result<()> {
    let client = Client {
        conn,
        fanout: Fanout::new(&shared.registry, &shared.writers),
    };
    // 4 KiB: std's BufReader zero-fills all of its buffer before the
    // first read of a reader that cannot read into uninitialised memory,
    // so each connection's buffer is resident in full; 10,000 subscribers
    // hold 40 MB here rather than 160 MB.
    let mut reader = BufReader::with_capacity(4 * 1024, client);
    let mut out = Vec::with_capacity(1024);
    loop {
        let args = match resp::read_request(&mut reader) {
            Ok(Some(args)) => args,
            Ok(None) => return Ok(()),
            Err(e) => {
                if let Some(ProtocolError(why)) = ProtocolError::of(&e) {
                    // As Redis: the replies so far, what was wrong, then close.
                    resp::error_safe(&mut out, &[&b"Protocol error: "[..], why].concat());
                    return reader.get_mut().reply(&mut out);
                }
                if e.get_ref().is_some_and(|e| e.is::<TooBig>()) {
                    let peer = reader.get_ref().conn.peer_addr();
                    log::warn!("closing {peer}: it sent {e} (Redis's client-query-buffer-limit)");
                    return Ok(());
                }
                return Err(e);
            }
        };
        let client = reader.get_mut();
        match commands::dispatch(&args, session.subscribed(), shared, &mut out) {
            Flow::Next => {}
            Flow::Publish => {
                let receivers = client.fanout.publish(&args[1], &args[2]);
                resp::int(&mut out, receivers);
            }
            Flow::Quit => return client.reply(&mut out),
            Flow::Refuse => {
                log::warn!(
                    "{}: possible SECURITY ATTACK detected: somebody is sending POST or Host: \
                     commands (cross-protocol scripting?); connection aborted",
                    client.conn.peer_addr()
                );
                return Ok(());
            }
            Flow::Reset => {
                client.fanout.release();
                session.leave();
                out.extend_from_slice(b"+RESET\r\n");
            }
            Flow::PubSub(change) => {
                // The replies so far go before the confirmations, which go
                // through the outbox, in order with the pushed messages.
                client.reply(&mut out)?;
                session.change(change, &args[1..], client.conn, &mut out);
            }
        }
        // Replies to pipelined requests go out together.
        if reader.buffer().is_empty() && !out.is_empty() {
            reader.get_mut().reply(&mut out)?;
        }
    }
}
