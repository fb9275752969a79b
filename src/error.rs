//! The crate's one error type.

use std::io;

use crate::Addr;

/// Everything that can go wrong while building or running a server.
///
/// Each variant names what was being done and to which address; the
/// underlying [`io::Error`] is kept as the [`source`](std::error::Error::source).
/// `io::Error::from(err)` keeps the original [`io::ErrorKind`], so
/// `io::Error::from(err).kind() == io::ErrorKind::AddrInUse` still holds for
/// an address in use.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `build()` was called without `bind()`.
    #[error("no address to bind: call bind() before build()")]
    NoAddress,

    /// The address given to `bind()` did not resolve to any socket address.
    #[error("cannot resolve address {addr}")]
    Resolve {
        /// The address as it was given.
        addr: String,
        /// Why resolution failed.
        #[source]
        source: io::Error,
    },

    /// A setting is out of range or contradicts another one.
    #[error("invalid setting {setting}: {reason}")]
    InvalidSetting {
        /// The builder method the setting came from, e.g. `"workers"`.
        setting: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The socket could not be created.
    #[error("cannot create a socket for {addr}")]
    Socket {
        /// The address the socket was for.
        addr: Addr,
        /// The error from `socket(2)`.
        #[source]
        source: io::Error,
    },

    /// A socket option could not be set.
    #[error("cannot set {option} on the socket for {addr}")]
    SetOption {
        /// The option, e.g. `"IPV6_V6ONLY"`.
        option: &'static str,
        /// The address the socket is for.
        addr: Addr,
        /// The error from `setsockopt(2)`.
        #[source]
        source: io::Error,
    },

    /// The address could not be bound (in use, not local, not permitted).
    #[error("cannot bind {addr}")]
    Bind {
        /// The address that could not be bound.
        addr: Addr,
        /// The error from `bind(2)`; its kind is e.g. `AddrInUse`.
        #[source]
        source: io::Error,
    },

    /// The socket could not start listening.
    #[error("cannot listen on {addr} with backlog {backlog}")]
    Listen {
        /// The bound address.
        addr: Addr,
        /// The backlog asked for.
        backlog: u32,
        /// The error from `listen(2)`.
        #[source]
        source: io::Error,
    },

    /// A socket given to `adopt` (passed by systemd, say) does not fit the
    /// server: wrong family or type, or a stream socket not listening.
    #[error("cannot serve socket {socket}: {reason}")]
    SocketMismatch {
        /// The socket's name (systemd's `FileDescriptorName=`, or a description).
        socket: String,
        /// What does not fit.
        reason: String,
    },

    /// A worker or server thread could not be started.
    #[error("cannot start thread {name}")]
    Spawn {
        /// The thread's name.
        name: String,
        /// The error from the operating system.
        #[source]
        source: io::Error,
    },

    /// An upgrade in place ([`Upgrade::start`](crate::Upgrade::start))
    /// did not happen: the servers of this process go on serving (or on
    /// with their shutdown, if one began meanwhile).
    #[error("upgrade in place failed: {reason}")]
    Upgrade {
        /// Why: the program could not be started, or it exited or was not
        /// ready in time, and so on; and what this process does now.
        reason: String,
    },

    /// A TLS certificate, key or CA file is missing or unusable; the
    /// [`TlsError`](crate::tls::TlsError) names the file and what is wrong.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),

    /// An I/O error from the caller's own code, carried by `?` in a
    /// function that returns this type (`impl From<io::Error>`): the
    /// crate itself always reports one of the variants above, which say
    /// what it was doing.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// The underlying I/O error, if there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Resolve { source, .. }
            | Error::Socket { source, .. }
            | Error::SetOption { source, .. }
            | Error::Bind { source, .. }
            | Error::Listen { source, .. }
            | Error::Spawn { source, .. }
            | Error::Io(source) => Some(source),
            #[cfg(feature = "tls")]
            Error::Tls(e) => e.io_error(),
            Error::NoAddress
            | Error::InvalidSetting { .. }
            | Error::SocketMismatch { .. }
            | Error::Upgrade { .. } => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(err: Error) -> Self {
        let kind = err
            .io_error()
            .map_or(io::ErrorKind::InvalidInput, io::Error::kind);
        io::Error::new(kind, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_conversion_keeps_kind_and_message() {
        let addr = Addr::from("127.0.0.1:80".parse::<std::net::SocketAddr>().unwrap());
        let err = Error::Bind {
            addr,
            source: io::Error::from(io::ErrorKind::AddrInUse),
        };
        assert_eq!(err.to_string(), "cannot bind 127.0.0.1:80");
        let io = io::Error::from(err);
        assert_eq!(io.kind(), io::ErrorKind::AddrInUse);
        assert!(io.to_string().contains("127.0.0.1:80"));
    }

    /// `main() -> Result<(), socketserver::Error>` can use `?` on any I/O.
    #[test]
    fn question_mark_works_on_io_in_a_function_returning_error() {
        fn main_like() -> Result<(), Error> {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            std::fs::read("/nonexistent/socketserver-test")?;
            drop(listener);
            Ok(())
        }
        let err = main_like().unwrap_err();
        assert!(matches!(err, Error::Io(_)), "{err:?}");
        assert_eq!(err.io_error().unwrap().kind(), io::ErrorKind::NotFound);
        assert_eq!(io::Error::from(err).kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn settings_errors_are_invalid_input() {
        let err = Error::InvalidSetting {
            setting: "workers",
            reason: "must be at least 1".into(),
        };
        assert_eq!(io::Error::from(err).kind(), io::ErrorKind::InvalidInput);
    }
}
