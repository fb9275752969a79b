//! One connection, the same in both engines: what its handler reads and
//! writes ([`Connection`](crate::Connection)), the I/O under it, the state
//! that says whether it is idle, and the steps that serve it.
//!
//! * `link.rs`: a stream connection as more than one party reaches it (its
//!   handler's I/O, shutdown, the deadline): its socket and its state.
//! * `state.rs`: that state, and the one answer to "is it idle?".
//! * `io.rs`: the socket under a `Connection`: blocking (the thread mode),
//!   parked (`park_idle`), or one datagram.
//! * `parked.rs`: the parked stream, and [`Parking`](parked::Parking), what
//!   an engine that parks handlers gives it.
//! * `serve.rs`: the serving steps, driven by either engine: options, the
//!   PROXY header, TLS, the handler, panics caught, what is reported.
//! * `outbox.rs`: push, the public `Outbox`: any thread writes to a
//!   connection; `send_error.rs`, why a send is refused; `outbox_core.rs`:
//!   its queue and the turn to write, `outbox_end.rs`, how it stops taking
//!   messages, and `handler_turn.rs`, the connection's own side of that
//!   turn;
//!   `flusher.rs`: the thread that finishes writing to clients that read
//!   slowly.
//! * `tls_side.rs` (feature `tls`): the TLS session, as the handler and
//!   the outbox share it.
//! * `connection.rs`: the public `Connection`.
//! * `failpoint.rs` and `race_tests.rs` (unit tests only): where a test
//!   stops a thread, to make a race certain, and the races so tested.
//!
//! This folder knows nothing of either engine: they call into it.

pub(crate) mod connection;
#[cfg(test)]
pub(crate) mod failpoint;
pub(crate) mod flusher;
mod handler_turn;
pub(crate) mod io;
pub(crate) mod link;
pub(crate) mod outbox;
pub(crate) mod outbox_core;
mod outbox_end;
pub(crate) mod parked;
#[cfg(test)]
mod race_tests;
mod send_error;
pub(crate) mod serve;
pub(crate) mod state;
#[cfg(feature = "tls")]
pub(crate) mod tls_side;
