//! One parked connection's steps, run inside its coroutine: socket
//! options, the PROXY header (under its deadline, parking as it waits),
//! then the handler, with every panic caught so that it costs this one
//! connection and never the loop.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use crate::admission::Admitted;
use crate::connection::Connection;
use crate::core::Shared;
use crate::deadline::deadline_after;
use crate::net::stream::Stream;
use crate::proxy::read_header;
use crate::serve;
use crate::sys::parking::{self, ParkYielder, ParkedStream, Wake, Within};
use crate::{Addr, Handler};

/// What a finished coroutine hands back to its loop.
#[derive(Debug)]
pub(crate) struct Done {
    /// The books to release: what admission, and the PROXY header's
    /// client, counted.
    pub(crate) admitted: Admitted,
}

/// The body of the coroutine that serves one accepted connection.
pub(crate) fn body<H: Handler>(
    shared: Arc<Shared<H>>,
    stream: Arc<Stream>,
    peer: Addr,
    admitted: Admitted,
) -> impl FnOnce(&ParkYielder, Wake) -> Done + 'static {
    move |yielder, _first| {
        parking::enter(yielder);
        let mut admitted = admitted;
        let served = catch_unwind(AssertUnwindSafe(|| {
            steps(&shared, stream, peer.clone(), &mut admitted);
        }));
        if let Err(payload) = served {
            // Nothing may unwind out of a coroutine: it would leave its
            // loop thread.
            let reported = catch_unwind(AssertUnwindSafe(|| {
                serve::internal_error(&shared.core, &peer, payload);
            }));
            if let Err(payload) = reported {
                crate::report::drop_payload(payload);
            }
        }
        Done { admitted }
    }
}

fn steps<H: Handler>(shared: &Shared<H>, stream: Arc<Stream>, peer: Addr, admitted: &mut Admitted) {
    let core = &*shared.core;
    let settings = &core.settings;
    if settings.nodelay && !core.inherits_options {
        // A failure means the peer is already gone; the handler will see it.
        let _ = stream.set_nodelay(true);
    }
    let timeouts = (settings.read_timeout, settings.write_timeout);
    let mut parked = ParkedStream::new(Arc::clone(&stream), timeouts);
    let (peer, proxy) = match &settings.proxy_protocol {
        None => (peer, None),
        Some(pp) => {
            let deadline = deadline_after(Instant::now(), pp.timeout());
            let read = || {
                read_header(&mut Within {
                    stream: &mut parked,
                    deadline,
                })
            };
            match serve::proxied_client(core, pp, &stream, &peer, admitted, read) {
                Some(client) => {
                    // The header is the proxy's, not a request: the
                    // connection waits for its client's first one.
                    parked.mark_awaiting();
                    (client, Some(peer))
                }
                None => return,
            }
        }
    };
    drop(stream);
    let mut conn = Connection::parked(parked, peer, core.local_addr.clone());
    conn.set_proxy(proxy);
    serve::handle_stream(shared, &mut conn);
}
