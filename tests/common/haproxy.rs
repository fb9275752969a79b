//! A real HAProxy between a test's clients and a test's server, sending the
//! PROXY protocol header: `send-proxy` (version 1) or `send-proxy-v2`.
//!
//! ```ignore
//! let proxy = HaProxy::start(server_addr, SendProxy::V2); // listening when this returns
//! let mut client = proxy.connect();                       // through HAProxy to the server
//! // The server reads a header whose source is client.local_addr()
//! // and whose destination is proxy.frontend().
//! ```
//!
//! HAProxy runs in the foreground (`-db`) as a child process with its own
//! config in a temporary directory: one `mode tcp` frontend on loopback, one
//! backend server, no logging, no stats. Dropping the `HaProxy` kills it.
//! Needs `haproxy` installed (Debian package `haproxy`; `.ci/run` installs it).

use std::env;
use std::fs;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::TIMEOUT;

/// How long HAProxy may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How many free ports to try when another process takes the chosen one
/// between choosing it and HAProxy binding it.
const PORT_ATTEMPTS: usize = 5;

/// Which PROXY protocol version HAProxy sends to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendProxy {
    /// `send-proxy`: the text line, `PROXY TCP4 ...\r\n`.
    V1,
    /// `send-proxy-v2`: the binary header.
    V2,
}

impl SendProxy {
    fn keyword(self) -> &'static str {
        match self {
            SendProxy::V1 => "send-proxy",
            SendProxy::V2 => "send-proxy-v2",
        }
    }
}

/// A running HAProxy, killed on drop.
pub struct HaProxy {
    child: Child,
    dir: PathBuf,
    frontend: SocketAddr,
}

/// Options for [`HaProxy`] beyond the backend and the PROXY version.
pub struct HaProxyBuilder {
    backend: SocketAddr,
    send_proxy: SendProxy,
    frontend_ip: IpAddr,
    check_interval: Option<Duration>,
    server_options: String,
}

impl HaProxy {
    /// Starts HAProxy on `127.0.0.1:<free port>`, relaying to `backend` with
    /// `send_proxy`. Returns once HAProxy listens.
    pub fn start(backend: SocketAddr, send_proxy: SendProxy) -> HaProxy {
        HaProxy::builder(backend, send_proxy).start()
    }

    pub fn builder(backend: SocketAddr, send_proxy: SendProxy) -> HaProxyBuilder {
        HaProxyBuilder {
            backend,
            send_proxy,
            frontend_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            check_interval: None,
            server_options: String::new(),
        }
    }

    /// Where clients connect: HAProxy's listening address, which the PROXY
    /// header reports as the destination.
    pub fn frontend(&self) -> SocketAddr {
        self.frontend
    }

    /// A client connected through HAProxy, with read and write timeouts.
    pub fn connect(&self) -> TcpStream {
        let stream =
            TcpStream::connect_timeout(&self.frontend, TIMEOUT).expect("connect to haproxy");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        stream
    }

    /// What HAProxy wrote to stderr so far (warnings, alerts).
    pub fn stderr(&self) -> String {
        fs::read_to_string(self.dir.join("stderr")).unwrap_or_default()
    }

    /// What `haproxy -c` says of the config this one runs with.
    pub fn check_config(&self) -> String {
        let out = Command::new(find_haproxy())
            .arg("-c")
            .arg("-f")
            .arg(self.dir.join("haproxy.cfg"))
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl HaProxyBuilder {
    /// The address HAProxy listens on; default `127.0.0.1`. `::1` makes
    /// the headers carry IPv6 addresses (`TCP6`, `AF_INET6`).
    pub fn frontend_ip(mut self, ip: IpAddr) -> Self {
        self.frontend_ip = ip;
        self
    }

    /// Health checks of the backend every `interval`, each a connection
    /// with a header of its own: version 2 sends `LOCAL`, version 1 a `TCP4`
    /// or `TCP6` line with the check connection's own addresses. Off by
    /// default.
    pub fn health_checks(mut self, interval: Duration) -> Self {
        self.check_interval = Some(interval);
        self
    }

    /// More options on the backend's `server` line, after the PROXY
    /// keyword: `ssl verify none` makes HAProxy speak TLS to the server
    /// (after the PROXY header, which goes in the clear). None by default.
    pub fn server_options(mut self, options: &str) -> Self {
        self.server_options = format!(" {}", options.trim());
        self
    }

    /// Starts HAProxy and returns once its frontend listens.
    pub fn start(self) -> HaProxy {
        let program = find_haproxy();
        let dir = temp_dir();
        let mut stderr = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let frontend = SocketAddr::new(self.frontend_ip, free_port(self.frontend_ip));
            let config = self.config(frontend);
            fs::write(dir.join("haproxy.cfg"), &config).unwrap();
            let log = fs::File::create(dir.join("stderr")).unwrap();
            let child = Command::new(&program)
                .arg("-db") // foreground: the child is HAProxy itself
                .arg("-f")
                .arg(dir.join("haproxy.cfg"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
            let mut proxy = HaProxy {
                child,
                dir: dir.clone(),
                frontend,
            };
            match proxy.wait_listening() {
                Ok(()) => return proxy,
                Err(exited) => {
                    stderr = proxy.stderr();
                    let port_taken = stderr.contains("cannot bind") || stderr.contains("in use");
                    if !port_taken {
                        panic!("haproxy {exited}\nconfig:\n{config}\nstderr:\n{stderr}");
                    }
                    proxy.dir = PathBuf::new(); // keep the directory for the next attempt
                }
            }
        }
        let _ = fs::remove_dir_all(&dir);
        panic!("haproxy found no free port in {PORT_ATTEMPTS} attempts:\n{stderr}");
    }

    fn config(&self, frontend: SocketAddr) -> String {
        let checks = match self.check_interval {
            Some(every) => format!(" check inter {}ms", every.as_millis().max(1)),
            None => String::new(),
        };
        let timeout = TIMEOUT.as_millis();
        format!(
            "# socketserver test: clients -> haproxy -> the server under test\n\
             global\n\
             \x20   nbthread 1\n\
             \x20   # A port taken by another HAProxy fails to bind, instead of being shared.\n\
             \x20   noreuseport\n\
             \x20   maxconn 1000\n\
             \n\
             defaults\n\
             \x20   mode tcp\n\
             \x20   timeout connect {timeout}ms\n\
             \x20   timeout client {timeout}ms\n\
             \x20   timeout server {timeout}ms\n\
             \n\
             frontend clients\n\
             \x20   bind {frontend}\n\
             \x20   default_backend server\n\
             \n\
             backend server\n\
             \x20   server under_test {backend} {send_proxy}{options}{checks}\n",
            backend = self.backend,
            send_proxy = self.send_proxy.keyword(),
            options = self.server_options,
        )
    }
}

impl HaProxy {
    /// Waits until HAProxy holds a listening socket on the frontend's port.
    ///
    /// Looks in /proc rather than connecting: a probe connection would be
    /// relayed to the server under test, which would count it as a client.
    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Err(format!("exited at start with {status}"));
            }
            if listens(self.child.id(), self.frontend.port()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                panic!(
                    "haproxy did not listen on {} within {START_TIMEOUT:?}\nstderr:\n{}",
                    self.frontend,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for HaProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let _ = writeln!(io::stderr(), "haproxy stderr:\n{}", self.stderr());
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Accepts one connection on `listener` within `TIMEOUT` (HAProxy connects
/// on its own schedule), with read and write timeouts set, and the address
/// it came from.
pub fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + TIMEOUT;
    let (stream, from) = loop {
        match listener.accept() {
            Ok(accepted) => break accepted,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("no connection from haproxy within {TIMEOUT:?}: {e}"),
        }
    };
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    (stream, from)
}

/// The first line of `haproxy -v`, e.g. `HAProxy version 2.6.12-1+deb12u4 ...`.
pub fn version() -> String {
    let out = Command::new(find_haproxy()).arg("-v").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().next().unwrap_or_default().to_string()
}

/// `haproxy` on PATH, or in the sbin directories Debian installs it to,
/// which are not on every user's PATH.
pub fn find_haproxy() -> PathBuf {
    have_haproxy().expect("haproxy is not installed (Debian: apt-get install haproxy)")
}

/// HAProxy's path, or `None` (with one line saying the test is skipped)
/// when it is not installed; see [`super::outside_program`].
pub fn have_haproxy() -> Option<PathBuf> {
    super::outside_program("haproxy", "haproxy")
}

/// A new empty directory for one HAProxy's files.
fn temp_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = env::temp_dir().join(format!("socketserver-haproxy-{}-{n}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port that was free a moment ago: bound to port 0, read back, released.
fn free_port(ip: IpAddr) -> u16 {
    let listener = TcpListener::bind((ip, 0)).expect("bind a loopback port");
    listener.local_addr().unwrap().port()
}

/// Whether process `pid` holds a listening TCP socket on `port`: a socket
/// among its open files whose inode /proc/net/tcp{,6} lists as listening
/// there. Those tables hold every socket of the machine, tens of thousands
/// on a busy one, so lines are sifted by the port's text before being split.
fn listens(pid: u32, port: u16) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let inodes: Vec<String> = fds
        .filter_map(|fd| fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let local_port = format!(":{port:04X} ");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .any(|table| {
            table
                .lines()
                .filter(|line| line.contains(&local_port))
                .any(|line| {
                    // sl local_address rem_address st ... uid timeout inode
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    fields.get(1).is_some_and(|local| local.ends_with(local_port.trim_end()))
                        && fields.get(3) == Some(&"0A") // TCP_LISTEN
                        && fields.get(9).is_some_and(|inode| inodes.iter().any(|i| i == inode))
                })
        })
}
