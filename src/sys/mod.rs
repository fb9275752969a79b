//! Everything that depends on the operating system: which `accept` errors
//! mean what, how blocked threads are woken at shutdown, which options
//! accepted sockets inherit, socket activation, file locks, waiting on one
//! socket, datagrams in batches (`recvmmsg`, `sendmmsg`), the parking
//! point of a parked handler and the report of its stack overflow. Every
//! `unsafe` block of the crate is in this module, each with a `SAFETY:`
//! comment saying why it is sound.
#![warn(clippy::undocumented_unsafe_blocks)]
//!
//! The crate is written for Linux and tested there; other targets fail to
//! build with a message saying so, rather than building something that
//! half works (the errno values, `SO_DOMAIN`, `SO_ACCEPTCONN`, what
//! `shutdown(2)` wakes and which options `accept` copies all differ).

#[cfg(not(any(target_os = "linux", target_os = "android")))]
compile_error!(
    "socketserver supports Linux (and Android) only: it relies on Linux's accept errors, \
     SO_DOMAIN / SO_ACCEPTCONN, shutdown(2) waking blocked threads, and options inherited by \
     accepted sockets"
);

pub(crate) mod activation;
pub(crate) mod errors;
pub(crate) mod flock;
pub(crate) mod mmsg;
pub(crate) mod overflow;
pub(crate) mod parking;
pub(crate) mod poll;
pub(crate) mod ports;
pub(crate) mod rusage;
pub(crate) mod wake;
