//! The `kv_server` example driven by real Redis clients nobody here wrote:
//! `redis-cli` for each command, `redis-benchmark` with 200 simultaneous
//! persistent clients (Debian's `redis-tools`; skipped with one line when
//! missing, installed by `.ci/run`), in both serving modes; and a client
//! sending one endless line, which must not grow the server.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};

use common::*;

struct KvServer {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    port: u16,
}

impl Drop for KvServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(park: bool) -> KvServer {
    let mut cmd = Command::new(example("kv_server"));
    cmd.args(["--bind", "127.0.0.1:0"]);
    if park {
        cmd.arg("--park-idle");
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("first line {line:?}"));
    let port = addr.rsplit(':').next().unwrap().parse().unwrap();
    KvServer {
        child,
        _stdout: stdout,
        port,
    }
}

fn cli(redis_cli: &std::path::Path, port: u16, args: &[&str]) -> String {
    // coreutils' `timeout` ends a client that would hang on a server that
    // does not answer (redis-cli 7.0 has no timeout option of its own).
    let out = Command::new("timeout")
        .arg("10")
        .arg(redis_cli)
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end()
        .to_string()
}

both_modes!(redis_cli_speaks_to_kv_server);
fn redis_cli_speaks_to_kv_server(park: bool) {
    let Some(redis_cli) = outside_program("redis-cli", "redis-tools") else {
        return;
    };
    let server = start(park);
    let p = server.port;
    assert_eq!(cli(&redis_cli, p, &["ping"]), "PONG");
    assert_eq!(cli(&redis_cli, p, &["echo", "hi there"]), "hi there");
    assert_eq!(cli(&redis_cli, p, &["set", "greeting", "hello"]), "OK");
    assert_eq!(cli(&redis_cli, p, &["get", "greeting"]), "hello");
    assert_eq!(cli(&redis_cli, p, &["exists", "greeting", "nope"]), "1");
    assert_eq!(cli(&redis_cli, p, &["incr", "n"]), "1");
    assert_eq!(cli(&redis_cli, p, &["incr", "n"]), "2");
    assert_eq!(
        cli(&redis_cli, p, &["incr", "greeting"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(cli(&redis_cli, p, &["del", "greeting", "n", "nope"]), "2");
    assert_eq!(cli(&redis_cli, p, &["get", "greeting"]), "");
    assert_eq!(
        cli(&redis_cli, p, &["frobnicate", "a", "b"]),
        "ERR unknown command 'frobnicate', with args beginning with: 'a' 'b'"
    );
}

both_modes!(redis_benchmark_with_200_clients_sees_no_error);
fn redis_benchmark_with_200_clients_sees_no_error(park: bool) {
    let Some(bench) = outside_program("redis-benchmark", "redis-tools") else {
        return;
    };
    let server = start(park);
    let out = Command::new("timeout")
        .arg("120")
        .arg(bench)
        .args(["-p", &server.port.to_string()])
        .args(["-t", "ping,set,get", "-c", "200", "-n", "20000", "--csv"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("rror") && !text.contains("rror"),
        "{stderr}{text}"
    );
    // One CSV line per test, each with a rate.
    for test in ["PING_INLINE", "PING_MBULK", "SET", "GET"] {
        assert!(
            text.contains(&format!("\"{test}\",")),
            "{test} missing from {text}"
        );
    }
}

/// This process's resident memory, from `/proc`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

both_modes!(an_endless_inline_line_is_refused_without_growing_the_server);
fn an_endless_inline_line_is_refused_without_growing_the_server(park: bool) {
    let server = start(park);
    let before = rss_kib(server.child.id());
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    s.set_write_timeout(Some(TIMEOUT)).unwrap();
    // Up to 64 MiB of one line, with no newline; the server stops reading
    // after 64 KiB, so the writes soon fail.
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..64 {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || reply.starts_with("-ERR Protocol error: too big inline request"),
        "{reply:?}"
    );
    let after = rss_kib(server.child.id());
    assert!(
        after < before + 8 * 1024,
        "grew from {before} KiB to {after} KiB"
    );
}
