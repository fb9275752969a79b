//! A server's life beyond serving connections: the commands it is given
//! ([`Command`]), what its shutdown reports, the signals that stop it,
//! sockets passed in by systemd or another process, handed on to a new
//! process (upgrade in place) and the readiness it reports, and the Unix
//! socket file it owns. A leaf: it knows nothing of the engines; each engine
//! carries out the commands in one place of its own.

pub(crate) mod activation;
mod command;
pub(crate) mod notify;
pub(crate) mod report;
#[cfg(feature = "signals")]
pub(crate) mod signals;
pub(crate) mod socket_file;
pub(crate) mod upgrade;

pub(crate) use command::Command;
