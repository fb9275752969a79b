//! Blocking socket servers, done right.
//!
//! Implement one [`Handler`] in plain blocking code; choose IPv4 or IPv6,
//! stream (TCP) or datagram (UDP), backlog and pool size on the
//! [`ServerBuilder`]; get a server that binds at once, serves from a bounded
//! pool of worker threads, survives panicking handlers and floods, and
//! shuts down cleanly.
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::TcpStream;
//! use std::time::Duration;
//! use socketserver::{Connection, Handler, Server, Transport};
//!
//! struct Greeting;
//! impl Handler for Greeting {
//!     fn handle(&self, conn: &mut Connection) -> std::io::Result<()> {
//!         conn.write_all(b"connected")
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::builder()
//!     .bind("127.0.0.1:0")              // port 0: any free port
//!     .transport(Transport::Stream)
//!     .workers(4)
//!     .build(Greeting)?;                // bound and listening here
//! let addr = server.local_addr();
//! let running = server.spawn()?;        // or server.run() on this thread
//!
//! let mut client = TcpStream::connect(addr)?;
//! client.set_read_timeout(Some(Duration::from_secs(5)))?;
//! let mut reply = String::new();
//! client.read_to_string(&mut reply)?;
//! assert_eq!(reply, "connected");
//!
//! let report = running.stop()?;         // graceful: drains running handlers
//! assert!(report.is_clean());
//! # Ok(())
//! # }
//! ```
//!
//! A closure is a handler too, and the same handler serves UDP:
//! `.transport(Transport::Datagram).build(|conn: &mut Connection| conn.write_all(b"hi"))`.
//!
//! Ready-made handlers are in [`handlers`]: the standard small services
//! (echo, discard, chargen, quote of the day, daytime and time, RFC 862-868)
//! and the seed's greeting. A decoder for the PROXY protocol header that
//! proxies such as HAProxy send is in [`proxy`].
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
// One `unsafe` block, in `passed.rs`: owning the descriptors systemd passes.
#![deny(unsafe_code)]

mod accept;
mod addr;
mod builder;
mod connection;
mod error;
mod failure;
mod handler;
pub mod handlers;
mod passed;
mod pool;
pub mod proxy;
mod proxy_protocol;
mod server;
mod settings;
mod shared;
mod shutdown;
mod slot;
mod socket;
mod stats;
mod stream;
mod transport;
mod watchdog;

pub use addr::Addr;
pub use builder::ServerBuilder;
pub use connection::Connection;
pub use error::Error;
pub use failure::Failure;
pub use handler::Handler;
pub use passed::{listen_fds, PassedSocket};
pub use proxy_protocol::ProxyProtocol;
pub use server::{Server, ServerThread};
pub use shutdown::{ShutdownHandle, ShutdownReport};
pub use stats::Stats;
pub use transport::Transport;

/// Logs through the `log` facade when a logger is installed; otherwise
/// warnings and errors go to stderr so they are never lost, and lower
/// levels are dropped.
pub(crate) fn log_or_eprint(level: log::Level, msg: &str) {
    if log::max_level() != log::LevelFilter::Off {
        log::log!(level, "{msg}");
    } else if level <= log::Level::Warn {
        eprintln!("socketserver: {msg}");
    }
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
