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
//!
//! A connection being served holds a worker thread. For many clients that
//! stay connected and speak rarely, [`ServerBuilder::park_idle`] serves
//! them on a few event-loop threads instead, with the same handler code:
//! a connection waiting for input holds no thread.
#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]
// docs.rs marks what needs a feature.
#![cfg_attr(docsrs, feature(doc_cfg))]
// Every `unsafe` block is in `sys` (the calls into the operating system
// that std does not wrap, and the coroutines' parking point), each with a
// SAFETY comment.
#![deny(unsafe_code)]

// A tour for maintainers: the folders in the order a connection crosses
// them (CONCURRENCY.md has the locks and who wakes whom).
//
// 1. builder.rs, settings.rs, listen.rs: the settings checked, the socket
//    bound and listening (net/ sets it up) when `build()` returns.
// 2. server.rs: `run()` picks an engine, and does nothing else.
// 3. thread/ (the default) or park/ (`park_idle`): the engine accepts
//    (accept.rs: errors and back-off, shared), asks admission/ whether to
//    serve, and makes the connection reachable by shutdown.
// 4. conn/: the connection's own steps, the same in both engines: socket
//    options, the PROXY header (proxy/), the TLS handshake (tls/), the
//    handler with its panics caught, and the state that says whether it
//    is idle.
// 5. lifecycle/: what a running server is told (stop), what its shutdown
//    reports, signals, sockets passed in, its Unix socket file.
// Beside them: metrics/ (`Stats` as Prometheus text, and an endpoint
// that serves it from a second server).
// Beneath all: core.rs (what the engines share), stats.rs, report.rs,
// and sys/, the only place the operating system is called directly.
mod accept;
mod addr;
mod admission;
mod builder;
mod conn;
mod core;
mod deadline;
mod error;
mod handler;
pub mod handlers;
mod lifecycle;
mod listen;
pub mod metrics;
mod net;
mod park;
pub mod proxy;
mod report;
mod server;
mod settings;
mod stats;
#[allow(unsafe_code)]
mod sys;
mod thread;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
mod transport;

pub use addr::Addr;
pub use builder::ServerBuilder;
pub use conn::connection::Connection;
pub use conn::outbox::{Outbox, SendError};
pub use error::Error;
pub use handler::Handler;
pub use lifecycle::activation::{listen_fds, PassedSocket};
pub use lifecycle::report::ShutdownReport;
pub use lifecycle::upgrade::Upgrade;
pub use proxy::trust::ProxyProtocol;
pub use report::Failure;
pub use server::{Server, ServerThread, ShutdownHandle};
pub use stats::Stats;
pub use transport::Transport;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

// The pages in `docs/`, each compiled the same way: their Rust examples
// are doc tests too (a code block with no language is taken as Rust).
#[cfg(doctest)]
#[doc = include_str!("../docs/deploy.md")]
pub struct DeployDoctests;
#[cfg(doctest)]
#[doc = include_str!("../docs/design.md")]
pub struct DesignDoctests;
#[cfg(doctest)]
#[doc = include_str!("../docs/examples.md")]
pub struct ExamplesDoctests;
#[cfg(doctest)]
#[doc = include_str!("../docs/modes.md")]
pub struct ModesDoctests;
#[cfg(doctest)]
#[doc = include_str!("../docs/performance.md")]
pub struct PerformanceDoctests;
#[cfg(doctest)]
#[doc = include_str!("../docs/push.md")]
pub struct PushDoctests;
#[cfg(doctest)]
#[doc = include_str!("../docs/reliability.md")]
pub struct ReliabilityDoctests;
#[cfg(doctest)]
#[doc = include_str!("../docs/tls.md")]
pub struct TlsDoctests;
