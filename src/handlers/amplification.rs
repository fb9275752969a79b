//! `Amplification`: how much larger than a request a UDP reply may be.

use crate::Connection;

/// The most bytes a UDP reply may carry, relative to the datagram it
/// answers. Streams are never limited: TCP's handshake proves the client's
/// address, so nobody can aim a TCP reply at a third party.
///
/// A UDP service that answers a small datagram with a large one is a
/// *reflection amplifier*: an attacker sends small datagrams with a forged
/// source address, and the service floods that address with replies many
/// times larger. Chargen (up to 512 bytes for any datagram) and quote of the
/// day are classic ones. So [`Chargen`](super::Chargen), [`Qotd`](super::Qotd)
/// and [`Daytime`](super::Daytime) answer with at most
/// `max(factor × request, floor)` bytes, sending a shorter reply or none at
/// all when the full one would be larger. [`Echo`](super::Echo) never
/// answers with more than it got, and [`Time`](super::Time) with 4 bytes.
///
/// The default is a factor of 3 (the bound QUIC sets on a server before it
/// has validated a client's address, RFC 9000 section 8) with a floor of
/// 128 bytes. Counted on the wire, with the 46 bytes of Ethernet, IPv4 and
/// UDP headers (66 with IPv6) and Ethernet's 64-byte minimum frame, a reply
/// is then never more than three times the size of the request: the floor
/// lets an empty request (`rdate -u`) or a newline (`nc -u`) be answered
/// with a time, a date line or a short quote.
///
/// ```
/// use socketserver::handlers::Amplification;
///
/// let limit = Amplification::default();
/// assert_eq!(limit.max_reply(0), 128);
/// assert_eq!(limit.max_reply(100), 300);
/// assert_eq!(Amplification::unlimited().max_reply(0), usize::MAX);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Amplification {
    /// `(factor, floor)`, or `None` for no limit.
    limit: Option<(usize, usize)>,
}

impl Amplification {
    /// The default factor: a reply may be three times the request.
    pub const FACTOR: usize = 3;
    /// The default floor, in bytes: any request may get this much.
    pub const FLOOR: usize = 128;

    /// Replies of at most `max(factor × request bytes, floor bytes)`.
    pub const fn limited(factor: usize, floor: usize) -> Self {
        Amplification {
            limit: Some((factor, floor)),
        }
    }

    /// No limit: every UDP reply is sent in full, whatever the request.
    ///
    /// Only for a service that untrusted hosts cannot reach (loopback, a
    /// firewalled network): anywhere else it makes the service a
    /// reflection amplifier.
    pub const fn unlimited() -> Self {
        Amplification { limit: None }
    }

    /// The largest reply allowed to a request of `request_len` bytes;
    /// `usize::MAX` when unlimited.
    pub fn max_reply(&self, request_len: usize) -> usize {
        match self.limit {
            Some((factor, floor)) => request_len.saturating_mul(factor).max(floor),
            None => usize::MAX,
        }
    }

    /// The largest reply allowed on `conn`: unlimited on a stream, limited
    /// by the received datagram's size on a datagram exchange.
    pub(crate) fn budget(&self, conn: &Connection) -> usize {
        conn.datagram()
            .map_or(usize::MAX, |request| self.max_reply(request.len()))
    }
}

impl Default for Amplification {
    /// [`FACTOR`](Self::FACTOR) 3, [`FLOOR`](Self::FLOOR) 128 bytes.
    fn default() -> Self {
        Self::limited(Self::FACTOR, Self::FLOOR)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_holds_for_small_requests_and_the_factor_for_large() {
        let a = Amplification::default();
        assert_eq!(a.max_reply(0), 128);
        assert_eq!(a.max_reply(42), 128);
        assert_eq!(a.max_reply(43), 129);
        assert_eq!(a.max_reply(usize::MAX), usize::MAX);
        assert_eq!(Amplification::limited(1, 4).max_reply(10), 10);
    }

    /// The documented property: counted with headers and Ethernet's
    /// minimum frame, a reply is at most three times its request.
    #[test]
    fn on_the_wire_a_reply_is_at_most_three_times_the_request() {
        let a = Amplification::default();
        for headers in [46, 66] {
            for request in 0..2000 {
                let request_frame = (request + headers).max(64);
                let reply_frame = a.max_reply(request) + headers;
                assert!(reply_frame <= 3 * request_frame, "{headers} {request}");
            }
        }
    }
}
