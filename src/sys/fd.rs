//! Replacing a socket under its descriptor number.

use std::io;
use std::os::fd::AsRawFd;

use socket2::SockRef;

/// Puts a fresh, unbound socket of the same family in place of `bound`
/// (`dup2`), which closes the bound one while its descriptor number stays
/// valid for whoever still holds it; see `net/wake.rs` for why.
pub(crate) fn replace_with_unbound(bound: SockRef<'_>) -> io::Result<()> {
    let fresh = socket2::Socket::new(bound.domain()?, socket2::Type::DGRAM, None)?;
    // SAFETY: `dup2` takes two descriptor numbers and touches no memory of
    // ours. Both are open and owned for the whole call: `fresh` by this
    // function, the bound one by the server's listener, which outlives the
    // borrow `bound`. `dup2` closes the bound socket's description and
    // makes its number refer to `fresh`'s, which the listener then owns
    // and closes in its turn; `fresh` closes its own number when dropped.
    let replaced = unsafe { libc::dup2(fresh.as_raw_fd(), bound.as_raw_fd()) };
    match replaced < 0 {
        true => Err(io::Error::last_os_error()),
        false => Ok(()),
    }
}
