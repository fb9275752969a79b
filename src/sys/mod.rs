//! The operating system's layer: what std does not wrap, and nothing else.
//!
//! The contract, for whoever adds to it:
//!
//! * Only bindings live here: calls into the OS (through `libc`), and what
//!   they mean on this OS (which `accept` errors are whose fault, which
//!   ports are ephemeral). No policy, no server state: a function here
//!   takes descriptors, sockets and plain values, and returns
//!   `io::Result`s. The serving logic that uses them is in the folders
//!   above (`net/`, `thread/`, `park/`, `lifecycle/`).
//! * Every `unsafe` block of the crate is here or in `park/parking.rs`
//!   (the coroutine switch), each with a `SAFETY:` comment saying why it
//!   is sound; the crate denies `unsafe` everywhere else.
//! * Linux only: other targets fail to build with a message saying so,
//!   rather than building something that half works (the errno values,
//!   `SO_DOMAIN`, `SO_ACCEPTCONN`, what `shutdown(2)` wakes and which
//!   options `accept` copies all differ).
//!
//! What is here: `errors` (accept errors classified), `fd` (replacing a
//! socket under its number), `activation` (systemd's `sd_listen_fds`),
//! `flock` (advisory file locks), `poll` (waiting on one socket), `mmsg`
//! (`recvmmsg`/`sendmmsg`), `overflow` (reporting a handler's stack
//! overflow), `ports` (the ephemeral range), `rusage` (a thread's CPU and
//! blocking), `spawn` (a program started with sockets passed to it).
#![warn(clippy::undocumented_unsafe_blocks)]

#[cfg(not(any(target_os = "linux", target_os = "android")))]
compile_error!(
    "socketserver supports Linux (and Android) only: it relies on Linux's accept errors, \
     SO_DOMAIN / SO_ACCEPTCONN, shutdown(2) waking blocked threads, and options inherited by \
     accepted sockets"
);

pub(crate) mod activation;
pub(crate) mod errors;
pub(crate) mod fd;
pub(crate) mod flock;
pub(crate) mod mmsg;
pub(crate) mod overflow;
pub(crate) mod poll;
pub(crate) mod ports;
pub(crate) mod rusage;
pub(crate) mod spawn;
