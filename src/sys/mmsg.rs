//! Datagrams in batches: `recvmmsg(2)` takes every datagram already
//! waiting on a socket in one call, `sendmmsg(2)` sends a batch of replies
//! in one call. A datagram worker makes one call of each per batch instead
//! of two per datagram, and the kernel wakes the batch's clients together.
//!
//! Nothing here keeps a pointer between calls: the headers are filled in
//! right before each call, from buffers borrowed for that call alone.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr;

use socket2::{SockAddr, SockAddrStorage};

/// The headers of one `recvmmsg` call, and what it reported: each
/// datagram's length and source.
pub(crate) struct RecvBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    names: Vec<libc::sockaddr_storage>,
    /// Datagrams the last call received.
    received: usize,
}

impl RecvBatch {
    /// Room for up to `cap` datagrams a call.
    pub(crate) fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        RecvBatch {
            hdrs: (0..cap).map(|_| zeroed_mmsghdr()).collect(),
            iovs: empty_iovecs(cap),
            names: (0..cap).map(|_| zeroed_storage()).collect(),
            received: 0,
        }
    }

    /// Receives up to `count` datagrams (at most the capacity) from `fd`
    /// into `arena`, the `i`th into `arena[i * stride..(i + 1) * stride]`.
    /// With `block`, waits until the first comes (or the socket's receive
    /// timeout passes); without, fails with `WouldBlock` if none waits.
    /// Either way it then takes only those already waiting. Returns how
    /// many came; a datagram longer than `stride` is cut to it, and its
    /// length then reads as `stride`.
    pub(crate) fn recv(
        &mut self,
        fd: BorrowedFd<'_>,
        arena: &mut [u8],
        stride: usize,
        count: usize,
        block: bool,
    ) -> io::Result<usize> {
        self.received = 0;
        let count = match stride {
            0 => 0,
            _ => count.min(self.hdrs.len()).min(arena.len() / stride),
        };
        if count == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no room to receive into",
            ));
        }
        for (i, slot) in arena.chunks_exact_mut(stride).take(count).enumerate() {
            self.iovs[i] = libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: stride,
            };
            let hdr = &mut self.hdrs[i];
            *hdr = zeroed_mmsghdr();
            hdr.msg_hdr.msg_name = ptr::addr_of_mut!(self.names[i]).cast();
            hdr.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            hdr.msg_hdr.msg_iov = ptr::addr_of_mut!(self.iovs[i]);
            hdr.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the first `count` headers are initialised just above, and
        // `count` is at most the length of `hdrs`, `iovs` and `names`. Each
        // header points at one `iovec` and one `sockaddr_storage` of this
        // struct, with the storage's full size as `msg_namelen`, and each
        // `iovec` at a distinct `stride`-byte slot of `arena` (`count`
        // slots fit: `count <= arena.len() / stride`). All of them are
        // borrowed mutably for the whole call and outlive it, so the
        // kernel writes only into memory we own and nobody else reads
        // meanwhile; it writes at most `iov_len` bytes per slot and at most
        // `msg_namelen` bytes per name. The descriptor is borrowed open.
        // No control buffer is given, and the null timeout means none.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                count as libc::c_uint,
                if block {
                    libc::MSG_WAITFORONE
                } else {
                    libc::MSG_DONTWAIT
                } as _,
                ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.received = (n as usize).min(count);
        Ok(self.received)
    }

    /// The length of the `i`th datagram of the last call (capped at the
    /// slot's size).
    pub(crate) fn len(&self, i: usize) -> usize {
        self.hdrs[..self.received][i].msg_len as usize
    }

    /// The source of the `i`th datagram of the last call.
    pub(crate) fn source(&self, i: usize) -> SockAddr {
        let hdr = &self.hdrs[..self.received][i];
        let full = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let len = hdr.msg_hdr.msg_namelen.min(full);
        let mut storage = SockAddrStorage::zeroed();
        // No family at all (an unnamed Unix sender gives no address): the
        // storage stays zeroed, `AF_UNSPEC`, rather than show what an
        // earlier call left there.
        if len as usize >= mem::size_of::<libc::sa_family_t>() {
            // SAFETY: `SockAddrStorage` is `repr(transparent)` over
            // `sockaddr_storage`, so viewing it as one is sound; the view
            // is written once and dropped at the end of the statement.
            unsafe { *storage.view_as::<libc::sockaddr_storage>() = self.names[i] };
        }
        // SAFETY: the kernel wrote the datagram's source address into this
        // storage, a `sockaddr` of the socket's own family (`sockaddr_in`,
        // `sockaddr_in6` or `sockaddr_un`), with its length in
        // `msg_namelen`, capped here at the storage's size; the bytes past
        // it are initialised (zeroed at creation). So family, length and
        // contents agree, as `SockAddr::new` requires; or, under the
        // length of a family, the storage is all zeros, `AF_UNSPEC` of
        // that length, which no accessor reads as an address.
        unsafe { SockAddr::new(storage, len) }
    }
}

/// One reply of a batch: `len` bytes at `start` of the batch's data, for `to`.
#[derive(Clone)]
pub(crate) struct Outgoing {
    pub(crate) start: usize,
    pub(crate) len: usize,
    pub(crate) to: SockAddr,
}

/// The headers of `sendmmsg` calls.
pub(crate) struct SendBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
}

// SAFETY: the raw pointers in `hdrs` and `iovs` are scratch space: `send`
// fills them in from its own borrowed arguments right before each call and
// nothing ever reads through them afterwards, so they carry no access to
// anything between calls. Moving the batch to another thread, or sharing
// `&SendBatch` (which has no methods that touch them), is then as safe as
// for the `Vec`s of plain integers they would otherwise be. This keeps a
// `Connection` that holds a batch `Send + Sync`.
unsafe impl Send for SendBatch {}
// SAFETY: as for `Send` above.
unsafe impl Sync for SendBatch {}

impl SendBatch {
    /// Room for up to `cap` datagrams a call.
    pub(crate) fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        SendBatch {
            hdrs: (0..cap).map(|_| zeroed_mmsghdr()).collect(),
            iovs: empty_iovecs(cap),
        }
    }

    /// Sends every datagram of `out` (each a range of `data`) from `fd`,
    /// in order, in as few calls as the kernel allows. One that cannot be
    /// sent is passed to `failed` with its index and the error, and the
    /// rest still go. A range outside `data` fails with `InvalidInput`.
    pub(crate) fn send(
        &mut self,
        fd: BorrowedFd<'_>,
        data: &[u8],
        out: &[Outgoing],
        mut failed: impl FnMut(usize, io::Error),
    ) {
        let mut next = 0;
        while next < out.len() {
            let mut count = 0;
            for o in out[next..].iter().take(self.hdrs.len()) {
                let Some(bytes) = o
                    .start
                    .checked_add(o.len)
                    .and_then(|end| data.get(o.start..end))
                else {
                    break;
                };
                self.iovs[count] = libc::iovec {
                    // The kernel only reads through it.
                    iov_base: bytes.as_ptr().cast_mut().cast(),
                    iov_len: bytes.len(),
                };
                let hdr = &mut self.hdrs[count];
                *hdr = zeroed_mmsghdr();
                hdr.msg_hdr.msg_name = o.to.as_ptr().cast_mut().cast();
                hdr.msg_hdr.msg_namelen = o.to.len();
                hdr.msg_hdr.msg_iov = ptr::addr_of_mut!(self.iovs[count]);
                hdr.msg_hdr.msg_iovlen = 1;
                count += 1;
            }
            if count == 0 {
                failed(next, io::Error::from(io::ErrorKind::InvalidInput));
                next += 1;
                continue;
            }
            // SAFETY: the first `count` headers are initialised just above
            // (`count` is at most the length of `hdrs` and `iovs`); each
            // points at one `iovec` of this struct, which points at bytes
            // inside `data` (the range was checked), and at the address of
            // one `Outgoing` of `out` with that address's own length. All
            // are borrowed for the whole call and outlive it. `sendmmsg`
            // only reads the names and the data, despite the `*mut` types,
            // and writes only each header's `msg_len`, in `hdrs`, which we
            // hold mutably. The descriptor is borrowed open.
            let n = unsafe {
                libc::sendmmsg(
                    fd.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    count as libc::c_uint,
                    0,
                )
            };
            if n > 0 {
                next += (n as usize).min(count);
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // The first of the call failed: report it, go on after it.
            failed(next, e);
            next += 1;
        }
    }
}

fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: `mmsghdr` is plain data (integers and raw pointers, padding
    // on some targets), for which all zeros is a valid value: null
    // pointers and zero lengths.
    unsafe { mem::zeroed() }
}

/// `cap` iovecs pointing nowhere, filled in before each call.
fn empty_iovecs(cap: usize) -> Vec<libc::iovec> {
    let empty = libc::iovec {
        iov_base: ptr::null_mut(),
        iov_len: 0,
    };
    vec![empty; cap]
}

fn zeroed_storage() -> libc::sockaddr_storage {
    // SAFETY: `sockaddr_storage` is plain integers; all zeros is valid.
    unsafe { mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsFd;
    use std::time::Duration;

    fn pair() -> (UdpSocket, UdpSocket) {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        (server, client)
    }

    #[test]
    fn a_batch_takes_what_waits_and_cuts_at_the_stride() {
        let (server, client) = pair();
        let to = server.local_addr().unwrap();
        for msg in [&b"one"[..], b"two", b"three and more"] {
            client.send_to(msg, to).unwrap();
        }
        // Let all three arrive before the call.
        std::thread::sleep(Duration::from_millis(50));
        let mut batch = RecvBatch::new(8);
        let mut arena = vec![0u8; 8 * 6];
        let n = batch.recv(server.as_fd(), &mut arena, 6, 8, true).unwrap();
        assert_eq!(n, 3);
        let got: Vec<_> = (0..n)
            .map(|i| &arena[i * 6..i * 6 + batch.len(i)])
            .collect();
        assert_eq!(got, [&b"one"[..], b"two", b"three "]);
        let from = client.local_addr().unwrap();
        assert!((0..n).all(|i| batch.source(i).as_socket() == Some(from)));
    }

    #[test]
    fn a_batch_is_sent_in_order_and_a_bad_reply_costs_only_itself() {
        let (server, client) = pair();
        let to = SockAddr::from(client.local_addr().unwrap());
        // Port 0 cannot be sent to: EINVAL for that one alone.
        let nowhere = SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0)));
        let data = b"abcdef";
        let out = [
            Outgoing {
                start: 0,
                len: 2,
                to: to.clone(),
            },
            Outgoing {
                start: 2,
                len: 2,
                to: nowhere,
            },
            Outgoing {
                start: 2,
                len: 4,
                to: to.clone(),
            },
            Outgoing {
                start: 5,
                len: 9,
                to,
            },
        ];
        let mut failures = Vec::new();
        // Two headers a call: the batch takes two calls and more.
        SendBatch::new(2).send(server.as_fd(), data, &out, |i, e| {
            failures.push((i, e.kind()))
        });
        let mut buf = [0u8; 16];
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"ab");
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"cdef");
        let idx: Vec<_> = failures.iter().map(|f| f.0).collect();
        assert_eq!(idx, [1, 3]);
        assert_eq!(failures[1].1, io::ErrorKind::InvalidInput);
    }
}
