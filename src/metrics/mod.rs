//! A server's [`Stats`](crate::Stats) for Prometheus: the text format
//! ([`Stats::to_prometheus`](crate::Stats::to_prometheus)), and an HTTP
//! endpoint that serves it ([`serve`]), itself a server of this crate.
//!
//! ```no_run
//! use socketserver::{handlers::Echo, metrics, Server};
//!
//! let server = Server::builder().bind("0.0.0.0:7007").build(Echo)?;
//! // http://127.0.0.1:9100/metrics: echo_accepted_total, echo_active_connections, ...
//! let endpoint = metrics::serve("127.0.0.1:9100", server.shutdown_handle(), "echo")?;
//! server.run()?;
//! endpoint.stop()?;
//! # Ok::<(), socketserver::Error>(())
//! ```

mod http;
mod prometheus;

use std::fmt;
use std::net::ToSocketAddrs;
use std::time::Duration;

use crate::{Error, Handler, Server, ServerBuilder, ServerThread, ShutdownHandle};

/// Connections the endpoint holds at once. A scraper keeps one or two;
/// idle ones cost a few KiB each, parked, and cannot keep it from
/// answering.
const MAX_CONNECTIONS: usize = 1024;
/// Longest a connection may stay, however it trickles its request.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the next bytes of a request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `of`'s counters, named `prefix_...`, over HTTP on `addr` (a
/// `host:port`; port 0 picks a free one, see
/// [`ServerThread::local_addr`]), from a server of its own on a thread of
/// its own, until stopped: [`builder`] bound to `addr`, serving
/// [`handler`].
///
/// `GET /metrics` (any query string, as Prometheus may add one) answers
/// the [`Stats`](crate::Stats) snapshot in the Prometheus text format
/// (version 0.0.4); `HEAD` the same headers; any other path is 404, any
/// other method 405. One request per connection (`Connection: close`).
///
/// It cannot be blocked by clients that connect and send nothing: its
/// connections are parked ([`park_idle`](crate::ServerBuilder::park_idle))
/// on one event loop, up to 1,024 at once, each for at most 10 s (5 s
/// between bytes). Stop it with [`ServerThread::stop`], after `of`.
///
/// # Errors
///
/// As [`ServerBuilder::build`] and [`Server::spawn`]: the address cannot
/// be bound, or the thread cannot be started.
pub fn serve<A: ToSocketAddrs + fmt::Debug>(
    addr: A,
    of: ShutdownHandle,
    prefix: &str,
) -> Result<ServerThread, Error> {
    builder().bind(addr).build(handler(of, prefix))?.spawn()
}

/// The endpoint's settings, without a socket: [`bind`](ServerBuilder::bind)
/// or [`adopt`](ServerBuilder::adopt) one (a socket passed by systemd or
/// by an [`Upgrade`](crate::Upgrade)), then build it with [`handler`].
pub fn builder() -> ServerBuilder {
    Server::builder()
        .park_idle(true)
        .workers(1)
        .max_connections(MAX_CONNECTIONS)
        .read_timeout(Some(READ_TIMEOUT))
        .connection_timeout(Some(CONNECTION_TIMEOUT))
        .shutdown_timeout(Duration::from_secs(1))
        .thread_name("metrics")
}

/// The endpoint's handler: answers HTTP requests for `of`'s counters,
/// named `prefix_...`, as [`serve`] says.
pub fn handler(of: ShutdownHandle, prefix: &str) -> impl Handler {
    let prefix = prefix.to_string();
    move |conn: &mut crate::Connection| http::respond(conn, || of.stats().to_prometheus(&prefix))
}
