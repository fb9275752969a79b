//! The `kv_server` example and a real redis-server, each on a loopback
//! port of its own and killed when dropped, and a RESP2 client to compare
//! their replies with.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use socketserver::Addr;

use super::{connect, example, outside_program, read_to_end, KillOnDrop, TIMEOUT};

pub struct KvServer {
    pub child: Child,
    _stdout: BufReader<ChildStdout>,
    pub port: u16,
}

impl Drop for KvServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(park: bool) -> KvServer {
    start_with(park, &[])
}

pub fn start_with(park: bool, args: &[&str]) -> KvServer {
    start_with_env(park, args, &[])
}

/// `kv_server` with `args` and the environment variables `env` set.
pub fn start_with_env(park: bool, args: &[&str], env: &[(&str, &str)]) -> KvServer {
    let mut cmd = Command::new(example("kv_server"));
    cmd.args(["--bind", "127.0.0.1:0"]).args(args);
    cmd.envs(env.iter().copied());
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

/// A real redis-server on a loopback port of its own, in an empty
/// directory of its own, saving nothing; killed when dropped.
pub struct RedisServer {
    child: KillOnDrop,
    pub port: u16,
    dir: PathBuf,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // Stopped first, so that it writes nothing more there.
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts redis-server, or says why not (`None`: skipped).
pub fn start_redis_server() -> Option<RedisServer> {
    let program = outside_program("redis-server", "redis-server")?;
    // A port found free may be taken before redis-server binds it: then it
    // exits, and another is tried.
    for _ in 0..3 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("kv-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(&program)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = RedisServer {
            child: KillOnDrop(child),
            port,
            dir,
        };
        if answers_ping(&mut server) {
            return Some(server);
        }
    }
    panic!("redis-server did not start on any of three free ports");
}

/// Connects to a starting redis-server until it answers `PING`, within
/// `TIMEOUT`; false if it exited.
pub fn answers_ping(server: &mut RedisServer) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    loop {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, TIMEOUT) {
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut reply = [0; 7];
            if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut reply).is_ok() {
                assert_eq!(&reply, b"+PONG\r\n", "not redis-server on {addr}");
                return true;
            }
        }
        if server.child.0.try_wait().unwrap().is_some() {
            return false;
        }
        assert!(
            Instant::now() < deadline,
            "redis-server on {addr} did not answer"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The request of a command, as a RESP array of bulk strings.
pub fn cmd<A: AsRef<[u8]>>(args: &[A]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        let arg = arg.as_ref();
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Commands written as `SET k v; GET k`, as RESP arrays in one write
/// (pipelined).
pub fn r(script: &str) -> Vec<u8> {
    script
        .split("; ")
        .flat_map(|one| cmd(&one.split(' ').filter(|a| !a.is_empty()).collect::<Vec<_>>()))
        .collect()
}

/// Bytes as a Rust byte string shows them, for failure messages.
pub fn show(bytes: &[u8]) -> String {
    let text: String = bytes.escape_ascii().to_string();
    match text.len() {
        0..=600 => text,
        n => format!("{}... ({n} in all)", &text[..600]),
    }
}

/// Sends `request` on a connection of its own, half-closes it, and reads
/// until the server closes.
pub fn exchange(port: u16, request: &[u8]) -> Vec<u8> {
    let addr = Addr::from(SocketAddr::from(([127, 0, 0, 1], port)));
    let mut stream = connect(&addr);
    stream.write_all(request).unwrap();
    // A server that closes before it reads the end of file (QUIT, an HTTP
    // request) may have closed already.
    match stream.shutdown(std::net::Shutdown::Write) {
        Err(e) if e.kind() == std::io::ErrorKind::NotConnected => {}
        result => result.unwrap(),
    }
    read_to_end(&mut stream)
}

/// Reads one whole RESP2 reply, and returns its bytes as they came.
pub fn read_frame(r: &mut impl BufRead) -> Vec<u8> {
    let mut frame = Vec::new();
    r.read_until(b'\n', &mut frame).expect("a reply in time");
    assert!(frame.ends_with(b"\r\n"), "cut reply {}", show(&frame));
    let n = || -> i64 {
        std::str::from_utf8(&frame[1..frame.len() - 2])
            .unwrap()
            .parse()
            .unwrap()
    };
    match frame[0] {
        b'+' | b'-' | b':' => {}
        b'$' if n() >= 0 => {
            let mut data = vec![0; n() as usize + 2];
            r.read_exact(&mut data).expect("a bulk string in time");
            frame.extend_from_slice(&data);
        }
        b'$' => {}
        b'*' => {
            for _ in 0..n().max(0) {
                let item = read_frame(r);
                frame.extend_from_slice(&item);
            }
        }
        _ => panic!("not a RESP2 reply: {}", show(&frame)),
    }
    frame
}

/// A client connection that keeps every reply it read, in order, to be
/// compared with the same client's of the other server.
pub struct Peer {
    pub reader: BufReader<TcpStream>,
    pub seen: Vec<u8>,
}

impl Peer {
    pub fn connect(port: u16) -> Peer {
        let addr = Addr::from(SocketAddr::from(([127, 0, 0, 1], port)));
        Peer {
            reader: BufReader::new(connect(&addr)),
            seen: Vec::new(),
        }
    }

    pub fn send(&mut self, request: &[u8]) {
        self.reader.get_mut().write_all(request).unwrap();
    }

    /// Reads `n` replies (or pushed messages).
    pub fn frames(&mut self, n: usize) {
        for _ in 0..n {
            self.frame();
        }
    }

    pub fn frame(&mut self) -> Vec<u8> {
        let frame = read_frame(&mut self.reader);
        self.seen.extend_from_slice(&frame);
        frame
    }

    /// Sends one command and reads its one reply.
    pub fn call(&mut self, args: &[&str]) -> Vec<u8> {
        self.send(&cmd(args));
        self.frame()
    }
}
