//! A loop's accepting: a batch at a time from the shared listener, each
//! connection admitted (or refused) by the books before it is served.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use crate::accept::{after_error, AfterError, Backoff};
use crate::admission;
use crate::net::stream::Stream;
use crate::park::event_loop::{EventLoop, ACCEPT_BATCH};
use crate::stats::bump;
use crate::{Addr, Handler};

impl<H: Handler> EventLoop<H> {
    /// Accepts up to a batch of connections and starts serving each.
    pub(super) fn accept_some(&mut self) {
        let now = Instant::now();
        if self.force_at.is_some() || self.accept_paused_until.is_some_and(|t| t > now) {
            return;
        }
        self.accept_paused_until = None;
        let core = Arc::clone(&self.shared.core);
        let settings = &core.settings;
        for _ in 0..ACCEPT_BATCH {
            {
                let mut books = core.books();
                if !books.room(settings) {
                    // A connection ending on any loop makes room and
                    // accepts again.
                    books.room_wanted = true;
                    self.accept_more = false;
                    return;
                }
                books.reserve();
            }
            let accepted = core.listener.accept_nonblocking();
            let mut books = core.books();
            books.unreserve();
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.accept_more = false;
                    return;
                }
                // Shutdown shut the listener down; the loop sees the flag
                // at its next turn.
                Err(_) if core.stopping() => {
                    self.accept_more = false;
                    return;
                }
                Err(e) => {
                    drop(books);
                    let shed = match after_error(&core, &e) {
                        AfterError::Retry => continue,
                        AfterError::BackOff(shed) => shed,
                    };
                    if let Some((stream, peer)) = shed {
                        if stream.set_nonblocking(true).is_ok() {
                            self.admit_shed(stream, peer);
                        }
                    }
                    self.accept_paused_until = Some(now + self.backoff.next());
                    return;
                }
            };
            bump(&core.counters.accepted);
            // Admitted under the lock that gave the reservation back, so
            // that loops accepting at once never hold more than
            // `max_connections` between them.
            let admitted = books.admit(settings, &core.counters, &peer);
            drop(books);
            self.backoff = Backoff::default();
            match admitted {
                Ok(admitted) => self.start(stream, peer, admitted),
                Err(_) => admission::refuse(settings, &core.counters, &stream),
            }
        }
    }

    /// Admits the connection taken with the spare descriptor (no place
    /// was reserved for it), or refuses it by `max_per_source`, or when
    /// `max_connections` are held already (given the busy message, as a
    /// client past the limit would be once it was accepted); starts
    /// serving an admitted one.
    fn admit_shed(&mut self, stream: Stream, peer: Addr) {
        let core = &self.shared.core;
        let admitted = {
            let mut books = core.books();
            match books.room(&core.settings) {
                true => Some(books.admit(&core.settings, &core.counters, &peer)),
                false => None,
            }
        };
        match admitted {
            Some(Ok(admitted)) => self.start(stream, peer, admitted),
            Some(Err(_)) => admission::refuse(&core.settings, &core.counters, &stream),
            None => admission::close_busy(&core.settings, &stream),
        }
    }
}
