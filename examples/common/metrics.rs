//! `--metrics ADDR`: a small HTTP/1.0 responder, itself a server of this
//! crate, that serves another server's `Stats` in the Prometheus text
//! format at `/metrics`, for a scraper.

use std::io::{self, Read, Write};

use socketserver::{Connection, ServerThread, ShutdownHandle};

/// The most bytes of a request head read: a scraper's is a few hundred.
const MAX_HEAD: usize = 8 * 1024;

/// Starts the responder on `addr`, serving `of`'s counters named
/// `prefix_...`.
pub fn serve(
    addr: &str,
    of: ShutdownHandle,
    prefix: &'static str,
) -> Result<ServerThread, socketserver::Error> {
    let respond = move |conn: &mut Connection| -> io::Result<()> {
        let head = read_head(conn)?;
        let first = head.lines().next().unwrap_or_default();
        let mut parts = first.split_whitespace();
        let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (status, body) = match (method, path) {
            ("GET", "/metrics") => ("200 OK", of.stats().to_prometheus(prefix)),
            ("GET", _) => ("404 Not Found", "try /metrics\n".to_string()),
            _ => ("405 Method Not Allowed", "GET /metrics\n".to_string()),
        };
        let reply = format!(
            "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(reply.as_bytes())
    };
    socketserver::Server::builder()
        .bind(addr)
        .workers(1)
        .max_workers(4)
        .read_timeout(std::time::Duration::from_secs(5))
        .thread_name("metrics")
        .build(respond)?
        .spawn()
}

/// Reads the request head, up to its blank line (or `MAX_HEAD` bytes).
fn read_head(conn: &mut Connection) -> io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "request head too long",
            ));
        }
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}
