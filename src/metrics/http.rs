//! The metrics endpoint's side of HTTP/1.x: one request read, one reply
//! written, the connection closed. Only what a scraper or a person with
//! `curl` sends is understood; anything else gets its status code.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use crate::Connection;

/// The most bytes of a request head read: a scraper's is a few hundred.
const MAX_HEAD: usize = 8 * 1024;
/// The path served; a query string after it is allowed and ignored.
const PATH: &str = "/metrics";

/// Reads one request head from `conn` and answers it, calling `body` for
/// the metrics.
pub(super) fn respond(conn: &mut Connection, body: impl FnOnce() -> String) -> io::Result<()> {
    let Some(head) = read_head(conn)? else {
        write(conn, "400 Bad Request", false, "request head too long\n")?;
        return close_gently(conn);
    };
    // Blank lines before the request line are ignored (RFC 9112, 2.2).
    let first = head.trim_start_matches(['\r', '\n']).lines().next();
    let mut parts = first.unwrap_or_default().split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method.is_empty() {
        // Connected and closed, or sent nothing but blank lines.
        return Ok(());
    }
    let path = origin_form(target);
    let path = path.split_once('?').map_or(path, |(path, _query)| path);
    let head_only = method == "HEAD";
    match (method, path) {
        ("GET" | "HEAD", PATH) => write(conn, "200 OK", head_only, &body()),
        ("GET" | "HEAD", _) => write(conn, "404 Not Found", head_only, "try /metrics\n"),
        _ => {
            let status = "405 Method Not Allowed\r\nAllow: GET, HEAD";
            write(conn, status, false, "GET /metrics\n")?;
            close_gently(conn)
        }
    }
}

/// After an error reply to a request not read to its end (a head too
/// long, a body): the end of the reply, then what the client still sends
/// is read and dropped for a moment (a second, 1 MiB at most). Closed
/// with unread bytes, the socket would send a reset, and the client could
/// lose the reply to it.
fn close_gently(conn: &mut Connection) -> io::Result<()> {
    const LINGER: Duration = Duration::from_millis(200);
    const MOST: usize = 1 << 20;
    let until = Instant::now() + Duration::from_secs(1);
    conn.shutdown(Shutdown::Write)?;
    conn.set_read_timeout(Some(LINGER))?;
    let mut buf = [0u8; 4096];
    let mut dropped = 0;
    while dropped < MOST && Instant::now() < until {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => dropped += n,
        }
    }
    Ok(())
}

/// The path and query of a request target: `/metrics?x` as it is, and
/// the absolute form a proxy sends, `http://host:9100/metrics?x`, without
/// its scheme and host (RFC 9112, 3.2.2: a server must accept both).
fn origin_form(target: &str) -> &str {
    let Some((scheme, rest)) = target.split_once("://") else {
        return target;
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return target;
    }
    rest.find(['/', '?']).map_or("/", |at| &rest[at..])
}

/// Writes a whole reply; `head_only` leaves the body out (for `HEAD`).
/// `status` may carry further header lines after it.
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
