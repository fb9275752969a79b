//! What runs inside a parked connection's coroutine: the serving steps of
//! `conn/` over a parked stream, with every panic caught so that it costs
//! this one connection and never the loop.

use std::sync::Arc;

use crate::admission::Admitted;
use crate::conn::io::SocketIo;
use crate::conn::link::Link;
use crate::conn::outbox_core::PushSetup;
use crate::conn::parked::{ParkedStream, Wake};
use crate::conn::serve::serve_stream;
use crate::core::Shared;
use crate::park::parking::{self, ParkYielder, COROUTINES};
use crate::{Addr, Handler};

/// What a finished coroutine hands back to its loop.
#[derive(Debug)]
pub(crate) struct Done {
    /// The books to release: what admission, and the PROXY header's
    /// client, counted.
    pub(crate) admitted: Admitted,
}

/// The body of the coroutine that serves one accepted connection.
/// `serve_stream` catches every panic: nothing may unwind out of a
/// coroutine, it would leave its loop thread.
pub(crate) fn body<H: Handler>(
    shared: Arc<Shared<H>>,
    push: Arc<PushSetup>,
    link: Arc<Link>,
    peer: Addr,
    mut admitted: Admitted,
) -> impl FnOnce(&ParkYielder, Wake) -> Done + 'static {
    move |yielder, _first| {
        parking::enter(yielder);
        let core = &*shared.core;
        let timeouts = (core.settings.read_timeout, core.settings.write_timeout);
        let stream = ParkedStream::new(Arc::clone(&link), timeouts, &COROUTINES);
        let io = SocketIo::parked(stream);
        serve_stream(core, &shared.handler, &link, io, &push, peer, &mut admitted);
        Done { admitted }
    }
}
