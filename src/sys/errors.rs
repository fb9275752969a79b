//! What an `accept()` or `recv_from()` error means for the loop that got it.

use std::io;

/// What to do after a failed `accept()` or `recv_from()`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ErrorClass {
    /// The error belongs to one pending connection or one peer: go on at once.
    Retry,
    /// The process or system is out of descriptors: shed a client, back off.
    Descriptors,
    /// Out of memory or buffers, or not understood: back off.
    Resource,
}

/// Classifies an error of `accept(2)` or `recvfrom(2)`.
pub(crate) fn classify(e: &io::Error) -> ErrorClass {
    match e.raw_os_error() {
        // accept(2) on Linux: errors of the pending connection or the
        // network should be treated like EAGAIN and retried. On a datagram
        // socket, ICMP errors (port unreachable after an earlier reply)
        // surface as ECONNREFUSED and the like: they concern one peer.
        Some(
            libc::ECONNABORTED
            | libc::ECONNRESET
            | libc::EINTR
            | libc::EAGAIN
            | libc::EPROTO
            | libc::EPERM
            | libc::ENETDOWN
            | libc::ENOPROTOOPT
            | libc::EHOSTDOWN
            | libc::ENONET
            | libc::EHOSTUNREACH
            | libc::EOPNOTSUPP
            | libc::ENETUNREACH
            | libc::ETIMEDOUT
            | libc::ECONNREFUSED,
        ) => ErrorClass::Retry,
        Some(libc::EMFILE | libc::ENFILE) => ErrorClass::Descriptors,
        _ => ErrorClass::Resource,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified() {
        let e = |n| io::Error::from_raw_os_error(n);
        assert_eq!(classify(&e(libc::ECONNABORTED)), ErrorClass::Retry);
        assert_eq!(classify(&e(libc::EINTR)), ErrorClass::Retry);
        assert_eq!(classify(&e(libc::ECONNREFUSED)), ErrorClass::Retry);
        assert_eq!(classify(&e(libc::EMFILE)), ErrorClass::Descriptors);
        assert_eq!(classify(&e(libc::ENFILE)), ErrorClass::Descriptors);
        assert_eq!(classify(&e(libc::ENOBUFS)), ErrorClass::Resource);
        assert_eq!(classify(&e(libc::ENOMEM)), ErrorClass::Resource);
    }
}
