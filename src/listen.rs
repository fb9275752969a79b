//! Where a server listens, as the builder was told (an address, a Unix
//! socket path, a socket opened elsewhere), and opening it: the listening
//! socket with its options, bound and listening.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use crate::core::Bound;
use crate::lifecycle::socket_file;
use crate::net::socket::{self, SocketOptions};
use crate::net::wake;
use crate::settings::Settings;
use crate::{Addr, Error, PassedSocket};

/// Where a server listens.
#[derive(Debug)]
pub(crate) enum Target {
    /// An IP address as given, and what it resolved to.
    Inet(String, io::Result<Vec<SocketAddr>>),
    /// A Unix-domain socket path.
    Unix(PathBuf),
    /// A socket opened elsewhere.
    Passed(PassedSocket),
}

impl Target {
    /// An address as given to `bind`, resolved now; an error is kept for
    /// `build()` to return.
    pub(crate) fn inet<A: ToSocketAddrs + fmt::Debug>(addr: A) -> Target {
        let shown = format!("{addr:?}");
        let shown = shown.trim_matches('"').to_string();
        let resolved = addr.to_socket_addrs().map(|it| it.collect());
        // std says only "invalid socket address" for an address without a
        // port; say what is missing.
        let resolved = resolved.map_err(|e| match no_port(&shown) {
            true => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "no port: write it as {}:PORT (0 for any free port)",
                    bracketed(&shown)
                ),
            ),
            false => e,
        });
        Target::Inet(shown, resolved)
    }

    /// Creates the socket, sets its options, binds it and (for a stream)
    /// listens; or checks and takes over a socket passed in.
    pub(crate) fn open(self, settings: &Settings) -> Result<Bound, Error> {
        let options = SocketOptions {
            transport: settings.transport,
            only_v6: settings.only_v6,
            backlog: settings.backlog,
            reuse_address: settings.reuse_address(),
            reuse_port: settings.reuse_port,
        };
        let mut unix_path = None;
        let mut socket_file = None;
        let held_elsewhere = matches!(self, Target::Passed(_));
        let listener = match self {
            Target::Inet(shown, resolved) => {
                let addrs = match resolved {
                    Ok(addrs) if addrs.is_empty() => {
                        return Err(Error::Resolve {
                            addr: shown,
                            source: io::Error::new(io::ErrorKind::NotFound, "no addresses found"),
                        })
                    }
                    Ok(addrs) => addrs,
                    Err(source) => {
                        return Err(Error::Resolve {
                            addr: shown,
                            source,
                        })
                    }
                };
                socket::open(&addrs, &options)?
            }
            Target::Unix(path) => {
                let (listener, file) = socket_file::bind(&path, settings.transport, || {
                    socket::open_unix(&path, &options)
                })?;
                unix_path = Some(path);
                socket_file = file;
                listener
            }
            Target::Passed(passed) => socket::adopt(passed, settings.transport)?,
        };
        let bound = listener.local_addr().map_err(|source| Error::Socket {
            addr: Addr::Unix(unix_path.clone()),
            source,
        })?;
        let inherits_options = match held_elsewhere {
            true => {
                wake::set_shared_socket_tick(&listener).map_err(|source| Error::SetOption {
                    option: "SO_RCVTIMEO",
                    addr: bound.clone(),
                    source,
                })?;
                false
            }
            false => wake::set_inherited_options(&listener, settings),
        };
        Ok(Bound {
            listener,
            local_addr: bound,
            held_elsewhere,
            inherits_options,
            socket_file,
        })
    }
}

/// Whether `addr` is an IP address or a host name with no port.
fn no_port(addr: &str) -> bool {
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    addr.parse::<std::net::IpAddr>().is_ok()
        || (!addr.is_empty() && !addr.contains(':') && !addr.contains(' '))
}

/// An IPv6 address in brackets, as it is written before a port.
fn bracketed(addr: &str) -> String {
    match addr.parse::<std::net::Ipv6Addr>() {
        Ok(v6) => format!("[{v6}]"),
        Err(_) => addr.to_string(),
    }
}
