//! The metrics endpoint's side of HTTP/1.x: one request read, one reply
//! written, the connection closed. Only what a scraper or a person with
//! `curl` sends is understood; anything else gets its status code.

use std::io::{self, Read, Write};

use crate::Connection;

/// The most bytes of a request head read: a scraper's is a few hundred.
const MAX_HEAD: usize = 8 * 1024;
/// The path served; a query string after it is allowed and ignored.
const PATH: &str = "/metrics";

/// Reads one request head from `conn` and answers it, calling `body` for
/// the metrics.
pub(super) fn respond(conn: &mut Connection, body: impl FnOnce() -> String) -> io::Result<()> {
    let Some(head) = read_head(conn)? else {
        return write(conn, "400 Bad Request", false, "request head too long\n");
    };
    let first = head.lines().next().unwrap_or_default();
    let mut parts = first.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method.is_empty() {
        // Connected and closed, or sent nothing but blank lines.
        return Ok(());
    }
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    match (method, path) {
        ("GET" | "HEAD", PATH) => write(conn, "200 OK", method == "HEAD", &body()),
        ("GET" | "HEAD", _) => write(conn, "404 Not Found", method == "HEAD", "try /metrics\n"),
        _ => write(conn, "405 Method Not Allowed", false, "GET /metrics\n"),
    }
}

/// Writes a whole reply; `head_only` leaves the body out (for `HEAD`).
fn write(conn: &mut Connection, status: &str, head_only: bool, body: &str) -> io::Result<()> {
    let mut reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        reply.push_str(body);
    }
    conn.write_all(reply.as_bytes())?;
    conn.flush()
}

/// Reads up to the blank line that ends a request head (or the end of
/// file); `None` when it runs past `MAX_HEAD`.
fn read_head(conn: &mut Connection) -> io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    loop {
        let ended =
            head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n");
        if ended {
            break;
        }
        if head.len() >= MAX_HEAD {
            return Ok(None);
        }
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}
