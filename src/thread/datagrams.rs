//! A datagram worker: its loop, and the batches of datagrams it serves
//! (see `net/batch.rs`).

use std::sync::Arc;
use std::time::Instant;

use crate::conn::connection::{Connection, Datagram};
use crate::conn::serve::{call_handler, report};
use crate::core::Shared;
use crate::net::batch::{self, Incoming, Replies, SLOTS};
use crate::net::datagram::DatagramSocket;
use crate::net::listener::Listener;
use crate::report::Failure;
use crate::stats::{add, bump};
use crate::thread::accept::receive_batch;
use crate::thread::pool::Step;
use crate::thread::worker::{become_busy, finish, wait_for_work, Owed};
use crate::thread::Workers;
use crate::{Addr, Handler};

/// A datagram worker: while it is the one worker receiving (see `batch`),
/// receive a batch on the shared socket and serve it inline; otherwise
/// stand by. The pool's books are kept per batch.
///
/// A batch expected to take long is served while another worker takes
/// over the receiving, as a stream worker's connection is (`become_busy`).
/// A short one is served keeping the receiving, so that no thread is woken
/// for it: the run thread hands the receiving over if it takes long after
/// all (`supervise_datagrams`).
pub(super) fn worker_loop<H: Handler>(
    shared: &Arc<Shared<H>>,
    workers: &Arc<Workers>,
    owed: &mut Owed,
) {
    let core = &*shared.core;
    let Listener::Datagram(socket) = &core.listener else {
        return;
    };
    let mut incoming = Incoming::new(socket, core.settings.max_datagram);
    let mut replies = Replies::new(socket.clone());
    let mut ready = Vec::with_capacity(batch::SLOTS);
    let mut st = workers.lock();
    loop {
        match st.pool.next_step(0, 0, true) {
            Step::Stop => return,
            Step::Wait | Step::TakeQueued | Step::TakeWaiting => {
                match wait_for_work(workers, st, owed) {
                    Some(guard) => {
                        st = guard;
                        continue;
                    }
                    None => return,
                }
            }
            Step::Accept => {}
        }
        st.pool.accepting += 1;
        owed.accepting = true;
        drop(st);
        let received = receive_batch(workers, socket, &mut incoming, &mut ready);
        st = workers.lock();
        st.pool.accepting -= 1;
        owed.accepting = false;
        if !received {
            continue;
        }
        st.pool.batches += 1;
        let batch = st.pool.batches;
        if incoming.expect_long(ready.len()) {
            become_busy(shared, workers, st, owed);
        } else {
            st.pool.active += 1;
            owed.active = true;
            st.pool.receiver_busy_since = Some((Instant::now(), batch));
            let wake = std::mem::take(&mut st.pool.supervisor_asleep);
            drop(st);
            if wake {
                workers.control.notify_all();
            }
        }
        replies = serve_batch(shared, workers, socket, &mut incoming, &ready, replies);
        st = finish(workers, owed);
        if st.pool.receiver_busy_since.is_some_and(|(_, b)| b == batch) {
            st.pool.receiver_busy_since = None;
        }
    }
}

/// Serves the datagrams of one batch (`ready`, as `receive_batch` listed
/// them), one after the other, then sends their replies together. Returns
/// the replies' buffer for the next batch.
///
/// A batch received is served whole, also once shutdown has begun: each
/// datagram is a request that reached the server (a batch is short, and
/// the drain waits for it as for any handler). A reply that could not
/// be sent turns its datagram's outcome into a handler error, reported as
/// the handler's own would have been.
fn serve_batch<H: Handler>(
    shared: &Shared<H>,
    workers: &Workers,
    socket: &DatagramSocket,
    incoming: &mut Incoming,
    ready: &[(usize, usize, Addr)],
    mut out: Replies,
) -> Replies {
    let core = &*shared.core;
    let counters = &core.counters;
    let started = Instant::now();
    let mut arena = std::mem::take(&mut incoming.arena);
    // Which datagrams' handlers returned `Ok`, by their place in `ready`.
    let mut ok = [false; SLOTS];
    let mut served = 0;
    for (k, (start, len, peer)) in ready.iter().enumerate().take(SLOTS) {
        out.begin(k);
        let datagram = Datagram::new(peer.clone(), arena, *start, *len, out);
        let mut conn = Connection::from_datagram(datagram, core.local_addr.clone());
        conn.set_push(&workers.push);
        ok[k] = call_handler(core, &shared.handler, &mut conn);
        served += 1;
        match conn.into_datagram() {
            Some(d) => {
                let unsent;
                (arena, out, unsent) = d.into_parts();
                if let (Some(error), true) = (unsent, ok[k]) {
                    ok[k] = false;
                    bump(&counters.handler_errors);
                    report(
                        core,
                        &Failure::Error {
                            peer,
                            error: &error,
                        },
                    );
                }
            }
            // Never: the connection was made of a datagram. The next
            // receive makes a new arena.
            None => return Replies::new(socket.clone()),
        }
    }
    incoming.arena = arena;
    out.finish();
    incoming.adapt(served, started.elapsed());
    let mut completed = ok.iter().filter(|&&o| o).count() as u64;
    for (k, error) in out.failures() {
        let Some(flag) = ok.get_mut(k).filter(|o| **o) else {
            continue;
        };
        // Counted once per datagram, however many of its replies failed.
        *flag = false;
        completed -= 1;
        bump(&counters.handler_errors);
        let failure = Failure::Error {
            peer: &ready[k].2,
            error: &error,
        };
        report(core, &failure);
    }
    add(&counters.completed, completed);
    out
}
