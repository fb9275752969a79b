//! Sockets: setting up the listening socket, and the stream and datagram
//! types the workers serve.

pub(crate) mod batch;
pub(crate) mod datagram;
pub(crate) mod listener;
pub(crate) mod socket;
pub(crate) mod stream;
pub(crate) mod wake;
