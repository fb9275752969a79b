//! A key-value server that speaks the core of the Redis protocol (RESP2:
//! arrays of bulk strings, and inline commands), so that `redis-cli` and
//! `redis-benchmark` drive it: `PING`, `ECHO`, `SET`, `GET`, `DEL`,
//! `EXISTS`, `INCR`, `QUIT`; anything else gets Redis's error reply.
//!
//! ```text
//! cargo run --release --example kv_server                  # 127.0.0.1:6380
//! redis-cli -p 6380 set greeting hello                      # OK
//! redis-cli -p 6380 get greeting                            # "hello"
//! redis-benchmark -p 6380 -t ping,set,get -c 50 -q
//! cargo run --release --example kv_server -- --park-idle    # many clients, few threads
//! ```
//!
//! The handler is plain blocking code over `BufRead`: one request at a
//! time, the shared map locked only to look up or change it and released
//! before any reply is written. Requests are bounded: an inline line at
//! 64 KiB (as Redis), a bulk string at 1 MiB, an array at 1,024 elements;
//! more is a protocol error and the connection is closed, so a client
//! cannot grow the process by sending a long line.

mod common;

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Write};
use std::sync::{Arc, Mutex};

use socketserver::Connection;

const MAX_INLINE: usize = 64 * 1024;
const MAX_BULK: usize = 1024 * 1024;
const MAX_ARGS: usize = 1024;

type Store = Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>;

fn main() -> std::process::ExitCode {
    let store: Store = Arc::default();
    common::serve(
        "kv_server",
        "A key-value server speaking the core of the Redis protocol (RESP2).",
        "127.0.0.1:6380",
        move |conn: &mut Connection| serve(conn, &store),
    )
}

/// What one request asks, or why it could not be read.
enum Request {
    Command(Vec<Vec<u8>>),
    /// The client closed the connection between requests.
    End,
}

fn serve(conn: &mut Connection, store: &Store) -> io::Result<()> {
    let mut reader = BufReader::with_capacity(16 * 1024, conn);
    let mut out = Vec::with_capacity(1024);
    loop {
        let args = match read_request(&mut reader) {
            Ok(Request::Command(args)) => args,
            Ok(Request::End) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                // As Redis: say what was wrong, then close.
                out.extend_from_slice(format!("-ERR Protocol error: {e}\r\n").as_bytes());
                return reader.get_mut().write_all(&out);
            }
            Err(e) => return Err(e),
        };
        let quit = execute(&args, store, &mut out);
        // Replies to pipelined requests go out together.
        if quit || reader.buffer().is_empty() {
            reader.get_mut().write_all(&out)?;
            out.clear();
        }
        if quit {
            return Ok(());
        }
    }
}

/// Reads one line, at most `max` bytes, without its CR LF.
fn read_line(reader: &mut impl BufRead, max: usize, what: &str) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return match line.is_empty() {
                true => Ok(None),
                false => Err(io::ErrorKind::UnexpectedEof.into()),
            };
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max + 2 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("too big {what}"),
            ));
        }
        line.extend_from_slice(&buf[..take]);
        reader.consume(take);
        if done {
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(line));
        }
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// A number after a `*` or `$` marker, within `max`.
fn length(line: &[u8], max: usize, what: &str) -> io::Result<usize> {
    let n: i64 = std::str::from_utf8(&line[1..])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("invalid {what} length")))?;
    match usize::try_from(n) {
        Ok(n) if n <= max => Ok(n),
        _ => Err(bad(&format!("invalid {what} length"))),
    }
}

fn read_request(reader: &mut impl BufRead) -> io::Result<Request> {
    let Some(line) = read_line(reader, MAX_INLINE, "inline request")? else {
        return Ok(Request::End);
    };
    if line.first() != Some(&b'*') {
        let args = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|a| !a.is_empty())
            .map(<[u8]>::to_vec)
            .collect();
        return Ok(Request::Command(args));
    }
    let count = length(&line, MAX_ARGS, "multibulk")?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let header = read_line(reader, 32, "bulk header")?.ok_or_else(|| bad("unexpected end"))?;
        if header.first() != Some(&b'$') {
            return Err(bad(&format!(
                "expected '$', got '{}'",
                header.first().map_or('?', |&b| b as char)
            )));
        }
        let len = length(&header, MAX_BULK, "bulk")?;
        let mut arg = vec![0; len + 2];
        reader.read_exact(&mut arg)?;
        if !arg.ends_with(b"\r\n") {
            return Err(bad("bulk string not ended by CRLF"));
        }
        arg.truncate(len);
        args.push(arg);
    }
    Ok(Request::Command(args))
}

fn bulk(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", value.len()).as_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Runs one command, appending its reply; true for `QUIT`.
fn execute(args: &[Vec<u8>], store: &Store, out: &mut Vec<u8>) -> bool {
    let Some(name) = args.first() else {
        return false; // An empty inline line: Redis ignores it.
    };
    let name = String::from_utf8_lossy(name).to_ascii_uppercase();
    let arity_ok = match name.as_str() {
        "PING" => args.len() <= 2,
        "ECHO" | "GET" | "INCR" => args.len() == 2,
        "SET" => args.len() == 3,
        "DEL" | "EXISTS" => args.len() >= 2,
        "QUIT" => true,
        _ => {
            let shown: String = args[1..]
                .iter()
                .map(|a| format!("'{}' ", String::from_utf8_lossy(a)))
                .collect();
            let cmd = String::from_utf8_lossy(&args[0]);
            out.extend_from_slice(
                format!("-ERR unknown command '{cmd}', with args beginning with: {shown}\r\n")
                    .as_bytes(),
            );
            return false;
        }
    };
    if !arity_ok {
        let lower = name.to_ascii_lowercase();
        out.extend_from_slice(
            format!("-ERR wrong number of arguments for '{lower}' command\r\n").as_bytes(),
        );
        return false;
    }
    match name.as_str() {
        "PING" if args.len() == 2 => bulk(out, &args[1]),
        "PING" => out.extend_from_slice(b"+PONG\r\n"),
        "ECHO" => bulk(out, &args[1]),
        "QUIT" => {
            out.extend_from_slice(b"+OK\r\n");
            return true;
        }
        _ => {
            // The lock is held for the lookup or change only, never
            // across a write to the client.
            let mut map = store.lock().unwrap_or_else(|e| e.into_inner());
            match name.as_str() {
                "SET" => {
                    map.insert(args[1].clone(), args[2].clone());
                    drop(map);
                    out.extend_from_slice(b"+OK\r\n");
                }
                "GET" => match map.get(&args[1]).cloned() {
                    Some(v) => {
                        drop(map);
                        bulk(out, &v);
                    }
                    None => out.extend_from_slice(b"$-1\r\n"),
                },
                "DEL" | "EXISTS" => {
                    let n = args[1..]
                        .iter()
                        .filter(|k| match name.as_str() {
                            "DEL" => map.remove(*k).is_some(),
                            _ => map.contains_key(*k),
                        })
                        .count();
                    drop(map);
                    out.extend_from_slice(format!(":{n}\r\n").as_bytes());
                }
                _ => {
                    let old = map.get(&args[1]).map_or(Some(0), |v| {
                        std::str::from_utf8(v)
                            .ok()
                            .and_then(|s| s.parse::<i64>().ok())
                    });
                    let new = old.and_then(|n| n.checked_add(1));
                    let reply = match new {
                        Some(n) => {
                            map.insert(args[1].clone(), n.to_string().into_bytes());
                            format!(":{n}\r\n")
                        }
                        None => "-ERR value is not an integer or out of range\r\n".to_string(),
                    };
                    drop(map);
                    out.extend_from_slice(reply.as_bytes());
                }
            }
        }
    }
    false
}
