//! `Transport`: stream or datagram.

/// The kind of socket a server listens on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Transport {
    /// A connected byte stream: TCP (`SOCK_STREAM`). The default.
    #[default]
    Stream,
    /// Independent datagrams: UDP (`SOCK_DGRAM`).
    Datagram,
}

impl Transport {
    /// `"tcp"` or `"udp"`, as printed in `listening on ADDR (tcp)`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Stream => "tcp",
            Transport::Datagram => "udp",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
