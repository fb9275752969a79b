//! `socketserver::metrics::serve`: a server's `Stats` over HTTP, from a
//! second server of the crate.
//!
//! * `idle_connections_cannot_block_the_endpoint`: 200 clients that
//!   connect and send nothing, and a scrape is still answered at once.
//! * `a_query_string_is_answered`, `head_and_other_paths_and_methods`,
//!   `an_error_reply_outlives_the_unread_request`.
//! * `promtool_finds_the_text_clean`: Prometheus's own checker (Debian
//!   `prometheus`), skipped without it unless every tool is required.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use socketserver::handlers::Echo;
use socketserver::{metrics, Addr, Server, ServerThread};

/// An echo server, one exchange served, and its metrics endpoint.
fn endpoint() -> (ServerThread, ServerThread) {
    let server = spawn(Server::builder().bind("127.0.0.1:0"), Echo);
    assert_eq!(tcp_exchange(&server.local_addr(), Some(b"hi")), b"hi");
    let endpoint = metrics::serve("127.0.0.1:0", server.shutdown_handle(), "echo").unwrap();
    (server, endpoint)
}

/// Sends `request` and returns the whole reply (status line, headers,
/// body) as text.
fn http(addr: &Addr, request: &str) -> String {
    let mut stream = connect(addr);
    stream.write_all(request.as_bytes()).unwrap();
    String::from_utf8(read_to_end(&mut stream)).unwrap()
}

fn body(reply: &str) -> &str {
    reply.split_once("\r\n\r\n").expect("a head and a body").1
}

#[test]
fn idle_connections_cannot_block_the_endpoint() {
    let (server, endpoint) = endpoint();
    let addr = endpoint.local_addr();
    let idle: Vec<TcpStream> = (0..200).map(|_| connect(&addr)).collect();
    let began = Instant::now();
    let reply = http(&addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    let took = began.elapsed();
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(body(&reply).contains("echo_accepted_total 1\n"), "{reply}");
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
    drop(idle);
    endpoint.stop().unwrap();
    server.stop().unwrap();
}

#[test]
fn a_query_string_is_answered() {
    let (server, endpoint) = endpoint();
    let reply = http(
        &endpoint.local_addr(),
        "GET /metrics?any=query&x HTTP/1.0\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
    assert!(
        reply.contains("Content-Type: text/plain; version=0.0.4"),
        "{reply}"
    );
    assert!(
        body(&reply).contains("# TYPE echo_active_connections gauge\n"),
        "{reply}"
    );
    endpoint.stop().unwrap();
    server.stop().unwrap();
}

#[test]
fn head_and_other_paths_and_methods() {
    let (server, endpoint) = endpoint();
    let addr = endpoint.local_addr();
    let head = http(&addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert_eq!(body(&head), "", "no body for HEAD");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(length > 1000, "{head}");
    let other = http(&addr, "GET /other HTTP/1.1\r\n\r\n");
    assert!(other.starts_with("HTTP/1.1 404 Not Found\r\n"), "{other}");
    let post = http(&addr, "POST /metrics HTTP/1.1\r\n\r\n");
    assert!(
        post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{post}"
    );
    assert!(post.contains("\r\nAllow: GET, HEAD\r\n"), "{post}");
    // The absolute form a proxy sends, and a blank line before the
    // request line: both to be accepted (RFC 9112).
    let absolute = http(
        &addr,
        "GET http://localhost:9100/metrics?x HTTP/1.1\r\n\r\n",
    );
    assert!(absolute.starts_with("HTTP/1.1 200 OK\r\n"), "{absolute}");
    let late = http(&addr, "\r\nGET /metrics HTTP/1.1\r\n\r\n");
    assert!(late.starts_with("HTTP/1.1 200 OK\r\n"), "{late}");
    let mut huge = connect(&addr);
    let _ = huge.write_all(&[b'a'; 9000]);
    let mut reply = Vec::new();
    let _ = huge.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{reply}");
    endpoint.stop().unwrap();
    server.stop().unwrap();
}

#[test]
fn promtool_finds_the_text_clean() {
    let Some(promtool) = outside_program("promtool", "prometheus") else {
        return;
    };
    let (server, endpoint) = endpoint();
    let reply = http(&endpoint.local_addr(), "GET /metrics HTTP/1.1\r\n\r\n");
    let mut check = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = check.stdin.take().unwrap();
    stdin.write_all(body(&reply).as_bytes()).unwrap();
    drop(stdin);
    let out = check.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {said}");
    assert_eq!(said.trim(), "", "promtool had something to say");
    endpoint.stop().unwrap();
    server.stop().unwrap();
}

/// An error reply to a request the endpoint did not read to its end (a
/// POST's body): the client reads the reply, not a reset.
#[test]
fn an_error_reply_outlives_the_unread_request() {
    let (server, endpoint) = endpoint();
    for _ in 0..5 {
        let mut stream = connect(&endpoint.local_addr());
        let body = vec![b'x'; 256 * 1024];
        let head = format!(
            "POST /metrics HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        // The server may stop reading at any point of the body.
        let _ = stream.write_all(&body);
        let mut reply = Vec::new();
        let read = stream.read_to_end(&mut reply);
        let reply = String::from_utf8_lossy(&reply);
        assert!(read.is_ok(), "{read:?} after {reply:?}");
        assert!(
            reply.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{reply}"
        );
    }
    endpoint.stop().unwrap();
    server.stop().unwrap();
}
