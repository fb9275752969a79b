//! What runs inside a parked connection's coroutine: the serving steps of
//! `conn/` over a parked stream, with every panic caught so that it costs
//! this one connection and never the loop.

use std::sync::Arc;

use crate::admission::{Admitted, Books};
use crate::conn::io::SocketIo;
use crate::conn::link::Link;
use crate::conn::outbox_core::PushSetup;
use crate::conn::parked::{ParkedStream, Wake};
use crate::conn::serve::serve_stream;
use crate::core::{Core, Shared};
use crate::park::parking::{self, ParkYielder, COROUTINES};
use crate::{Addr, Handler};

/// What a finished coroutine hands back to its loop: the books to
/// release, what admission and the PROXY header's client counted. Given
/// back when dropped unless [`release`](Self::release) did, so that a loop
/// that dies between the two does not keep them.
pub(crate) struct Done {
    held: Held,
}

impl Done {
    /// Gives the books back, under the lock the caller holds.
    pub(crate) fn release(mut self, books: &mut Books) {
        books.release(self.held.hand_back());
    }
}

impl std::fmt::Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Done")
            .field("admitted", &self.held.admitted)
            .finish()
    }
}

/// The body of the coroutine that serves one accepted connection.
/// `serve_stream` catches every panic: nothing may unwind out of a
/// coroutine, it would leave its loop thread.
pub(crate) fn body<H: Handler>(
    shared: Arc<Shared<H>>,
    push: Arc<PushSetup>,
    link: Arc<Link>,
    peer: Addr,
    admitted: Admitted,
) -> impl FnOnce(&ParkYielder, Wake) -> Done + 'static {
    let held = Held {
        core: Arc::clone(&shared.core),
        admitted,
        armed: true,
    };
    move |yielder, _first| {
        // The whole of it, dropped with the closure whether or not it ran.
        let mut held = held;
        parking::enter(yielder);
        let core = &*shared.core;
        let timeouts = (core.settings.read_timeout, core.settings.write_timeout);
        let stream = ParkedStream::new(Arc::clone(&link), timeouts, &COROUTINES);
        let io = SocketIo::parked(stream);
        serve_stream(
            core,
            &shared.handler,
            &link,
            io,
            &push,
            peer,
            &mut held.admitted,
        );
        Done { held }
    }
}

/// What a connection holds on the books, given back when dropped unless
/// handed back first: by its coroutine's drop if it never returns (its
/// loop dies, a defect of the library's own, and drops it suspended, or
/// before it first ran), or by its [`Done`]'s. Only the coroutine knows
/// the client that a PROXY header named and that was counted against
/// `max_per_source`, so the loop cannot give it back.
struct Held {
    core: Arc<Core>,
    admitted: Admitted,
    /// Until it hands `admitted` back in [`Done`].
    armed: bool,
}

impl Held {
    /// For the caller to give back: this no longer will.
    fn hand_back(&mut self) -> Admitted {
        self.armed = false;
        self.admitted
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if self.armed {
            self.core.books().release(self.admitted);
        }
    }
}
