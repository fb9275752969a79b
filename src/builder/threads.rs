//! The `ServerBuilder` settings of what serves the connections: the
//! worker threads and their pool, `park_idle`'s event loops, the queue.

use std::time::Duration;

use super::ServerBuilder;

impl ServerBuilder {
    /// Worker threads always running: each accepts (or receives) and
    /// serves one connection (or datagram) at a time. Default: the number
    /// of CPUs ([`std::thread::available_parallelism`]), at most
    /// `max_workers`. Range: 1..=1,048,576.
    ///
    /// A connection being served holds its worker thread until it closes:
    /// a client that stays connected holds one thread all that time, and
    /// the pool grows (up to `max_workers`) so that others are served too.
    pub fn workers(mut self, workers: usize) -> Self {
        self.settings.workers = Some(workers);
        self
    }

    /// The most worker threads: when all are busy the pool grows, one
    /// thread at a time, up to this; threads above `workers` retire after
    /// `worker_idle_timeout` without work. Default: 1024 (or `workers`, if
    /// that is set higher), so that a few hundred persistent clients are
    /// all served with no setting changed. When every one is busy, new
    /// clients wait in the listen backlog; the server then logs a warning
    /// (at most once a second) and counts it in
    /// [`Stats::pool_exhausted`](crate::Stats). Must be at least `workers`
    /// when both are set. Range: 1..=1,048,576.
    pub fn max_workers(mut self, max_workers: usize) -> Self {
        self.settings.max_workers = Some(max_workers);
        self
    }

    /// How long a thread above `workers` waits for work before it retires.
    /// Default: 60 s.
    pub fn worker_idle_timeout(mut self, timeout: Duration) -> Self {
        self.settings.worker_idle_timeout = timeout;
        self
    }

    /// Stack size of worker threads, in bytes. Default: Rust's default for
    /// spawned threads (2 MiB, or `RUST_MIN_STACK`). Range: 128 KiB..=1
    /// GiB (a TLS handshake, and a handler's panic with its backtrace, run
    /// on this stack).
    pub fn stack_size(mut self, bytes: usize) -> Self {
        self.settings.stack_size = Some(bytes);
        self
    }

    /// Parks connections that wait for input off the threads (stream
    /// transports: TCP and Unix stream). Default: `false`.
    ///
    /// With `false` (the thread mode) a connection being served holds a
    /// worker thread for its whole life. With `true`, each of the `workers`
    /// threads runs an event loop and many connections: each handler runs
    /// on a small stack of its own (see
    /// [`parked_stack_size`](Self::parked_stack_size)), and a read or
    /// write that would block parks that connection until its socket is
    /// ready, while the thread serves others. The handler's code is the
    /// same plain blocking code; timeouts, limits, the PROXY header, panics,
    /// `Stats` and shutdown behave as in the thread mode, with one
    /// difference: `connection_timeout` counts from the accept, the PROXY
    /// header included. `queue` does not apply, and `max_workers` bounds
    /// the helper threads of `offload`.
    ///
    /// Choose it when many clients stay connected and speak rarely (chat,
    /// telemetry, keep-alive protocols): 10,000 idle connections served by
    /// 2 event loops cost 4 threads in all and 4.2 KiB each (measured),
    /// where the thread mode takes a thread and 25.7 KiB each. Keep
    /// the thread mode for few, busy connections or handlers that block on
    /// other things.
    ///
    /// The mode has three rules, because one thread runs many handlers:
    ///
    /// * **Do not hold a lock across connection I/O.** A handler parked in
    ///   `read` while holding a `Mutex` stalls every other handler of the
    ///   same thread that wants that lock. Take what you need, release the
    ///   lock, then write:
    ///
    ///   ```
    ///   # use std::io::Write;
    ///   # use std::sync::{Arc, Mutex};
    ///   # fn handle(conn: &mut socketserver::Connection, counter: &Arc<Mutex<u64>>) -> std::io::Result<()> {
    ///   let n = {
    ///       let mut count = counter.lock().unwrap();
    ///       *count += 1;
    ///       *count
    ///   }; // released before the write parks
    ///   writeln!(conn, "you are visitor {n}")
    ///   # }
    ///   ```
    ///
    /// * **Send other blocking calls through
    ///   [`Connection::offload`](crate::Connection::offload)**: a database
    ///   query, a file read, a `sleep`. It runs on a helper thread while
    ///   the connection parks. A handler that holds its thread for more
    ///   than 100 ms some other way stalls every connection of that thread;
    ///   it is logged (at most once a second, naming the client) and counted
    ///   in [`Stats::loop_stalls`](crate::Stats::loop_stalls).
    ///
    ///   ```
    ///   # use std::io::Write;
    ///   # fn handle(conn: &mut socketserver::Connection) -> std::io::Result<()> {
    ///   let row = conn.offload(|| std::fs::read_to_string("/etc/hostname"))?;
    ///   conn.write_all(row.as_bytes())
    ///   # }
    ///   ```
    ///
    /// * **Mind thread-local state**, shared by the handlers of a loop: one
    ///   parked inside a tokio `block_on` makes the others' `block_on`
    ///   panic. Run such calls through `offload`. (A handler that unwinds
    ///   never parks: its I/O waits in place, within its timeouts.)
    ///
    /// On a datagram server, where no connection waits, setting it is an
    /// [`Error::InvalidSetting`](crate::Error::InvalidSetting) at `build()`, as `proxy_protocol` is.
    ///
    /// Each parked connection takes two memory maps (its stack and a guard
    /// page): with `park_idle`, `max_connections` defaults to what the
    /// system's `vm.max_map_count` allows (about 28,000 on a stock Linux),
    /// and a higher `max_connections` is an error at `build()` that says
    /// which sysctl to raise.
    pub fn park_idle(mut self, on: bool) -> Self {
        self.settings.park_idle = on;
        self
    }

    /// Stack size of each handler under [`park_idle`](Self::park_idle), in
    /// bytes. Default: 256 KiB. Range: 128 KiB..=64 MiB (a TLS handshake,
    /// and a panic's backtrace with `RUST_BACKTRACE` set, run on this
    /// stack).
    ///
    /// This is address space: only the pages a handler touches become
    /// resident (4 KiB for a handler with a small buffer), and a stack
    /// is reused by the next connection. A handler that overflows it ends
    /// the process with "stack overflow in a parked handler; raise
    /// parked_stack_size", never a silent crash.
    pub fn parked_stack_size(mut self, bytes: usize) -> Self {
        self.settings.parked_stack_size = bytes;
        self
    }

    /// Prefix of thread names: workers are `NAME-0`, `NAME-1`, ...
    /// Default: `"socketserver"`. Must not contain a NUL byte (Linux shows
    /// the first 15 bytes of a thread's name).
    pub fn thread_name(mut self, name: impl Into<String>) -> Self {
        self.settings.thread_name = name.into();
        self
    }

    /// Accepted connections that may wait in the process for a worker
    /// (stream only). Default: 0.
    ///
    /// With 0, a connection is only accepted by a free worker, which serves
    /// it at once: when all workers are busy, clients wait in the kernel
    /// backlog. With `n > 0`, once every worker is busy and the pool is at
    /// `max_workers`, the run thread accepts up to `n` connections ahead
    /// into a queue; when it is full, accepting stops and clients wait in
    /// the backlog again. Memory stays bounded either way.
    ///
    /// At shutdown, queued connections are closed at once, unserved
    /// (counted in [`ShutdownReport::dropped`](crate::ShutdownReport)), so
    /// that their clients can go elsewhere; unless another server may
    /// take the socket's clients over (`reuse_port`, an adopted socket, an
    /// upgrade in place): then they are served, drained with the rest
    /// within `shutdown_timeout`.
    pub fn queue(mut self, n: usize) -> Self {
        self.settings.queue = n;
        self
    }

    /// The longest a connection waits for a worker in the thread mode
    /// (stream only). Default: 5 s. Must not be zero.
    ///
    /// Once every worker is busy at `max_workers` and the [`queue`](Self::queue)
    /// is full, the server goes on accepting, up to [`backlog`](Self::backlog)
    /// connections beyond it, so that no client waits unseen in the kernel:
    /// each is served by the first worker that frees up, in the order they
    /// came, or, if none does within `queue_timeout`, sent
    /// [`busy_message`](Self::busy_message) (if set) and closed, counted in
    /// [`Stats::queue_timeouts`](crate::Stats::queue_timeouts). So is a
    /// connection that waited in the queue that long. A server that must
    /// hold many mostly idle connections at once wants
    /// [`park_idle`](Self::park_idle), where this does not apply (nothing
    /// waits for a thread there).
    pub fn queue_timeout(mut self, timeout: Duration) -> Self {
        self.settings.queue_timeout = timeout;
        self
    }
}
