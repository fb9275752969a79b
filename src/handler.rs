//! The `Handler` trait: the one thing a user implements.

use std::io;

use crate::Connection;

/// Serves one connection (stream) or one datagram exchange.
///
/// Write it as plain blocking code: read from and write to `conn`, return
/// when done. The server owns the connection and closes it after `handle`
/// returns, whatever the result. One handler value serves every connection,
/// from all worker threads at once, hence `Send + Sync`.
///
/// An `Err` or a panic costs that one connection: it is counted in
/// [`Stats`](crate::Stats), reported to the `on_error` hook, and the worker
/// goes on serving.
///
/// Closures `Fn(&mut Connection) -> io::Result<()>` are handlers too:
///
/// ```
/// use std::io::Write;
/// use socketserver::{Connection, Handler};
///
/// fn assert_handler<H: Handler>(_: H) {}
/// assert_handler(|conn: &mut Connection| conn.write_all(b"hello"));
/// ```
pub trait Handler: Send + Sync + 'static {
    /// Serves `conn`. Called on a worker thread.
    fn handle(&self, conn: &mut Connection) -> io::Result<()>;
}

impl<F> Handler for F
where
    F: Fn(&mut Connection) -> io::Result<()> + Send + Sync + 'static,
{
    fn handle(&self, conn: &mut Connection) -> io::Result<()> {
        self(conn)
    }
}
