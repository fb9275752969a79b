//! The worker pool: named threads that grow and retire, the hand-off queue's
//! bookkeeping, admission limits, and panic isolation around the handler.

use std::io::Write;
use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::thread;

use crate::accept;
use crate::connection::{Connection, Datagram};
use crate::failure::{panic_message, Failure};
use crate::shared::{Accepted, Core, PoolState, Shared};
use crate::slot::Slot;
use crate::stats::bump;
use crate::stream::Stream;
use crate::{Addr, Error, Handler, ProxyProtocol, Transport};

/// How a worker's loop ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Shutdown began.
    Stopped,
    /// A thread above `workers` was idle for `worker_idle_timeout`; it has
    /// already taken itself off the thread count.
    Retired,
}

/// Starts one worker thread. Counted in `st.threads` before it runs, so
/// that two threads deciding to grow the pool at once cannot overshoot.
pub(crate) fn spawn_worker<H: Handler>(
    shared: &Arc<Shared<H>>,
    st: &mut PoolState,
) -> Result<(), Error> {
    let core = &shared.core;
    let name = format!("{}-{}", core.settings.thread_name, st.next_thread);
    st.next_thread += 1;
    let slot = Arc::new(Slot::default());
    let mut builder = thread::Builder::new().name(name.clone());
    if let Some(size) = core.settings.stack_size {
        builder = builder.stack_size(size);
    }
    let worker = Arc::clone(shared);
    let worker_slot = Arc::clone(&slot);
    st.threads += 1;
    core.slots
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(slot);
    let spawned = builder.spawn(move || {
        let mut guard = ThreadGuard {
            core: &worker.core,
            slot: &worker_slot,
            counted: true,
        };
        let exit = match worker.core.settings.transport {
            Transport::Stream => accept::stream_worker(&worker, &worker_slot),
            Transport::Datagram => accept::datagram_worker(&worker, &worker_slot),
        };
        guard.counted = exit != Exit::Retired;
    });
    spawned.map(drop).map_err(|source| {
        st.threads -= 1;
        forget_slot(core, None);
        Error::Spawn { name, source }
    })
}

/// Grows the pool when the last free worker has just taken work and nobody
/// is left accepting; wakes an idle worker or the queue-filling run thread
/// otherwise. Called with the lock held, whenever a worker becomes busy.
pub(crate) fn ensure_acceptor<H: Handler>(shared: &Arc<Shared<H>>, st: &mut PoolState) {
    let core = &shared.core;
    let settings = &core.settings;
    if st.stopping || st.accepting > 0 || st.dispatcher_accepting {
        return;
    }
    if st.held >= settings.max_connections() && settings.transport == Transport::Stream {
        return;
    }
    if st.idle > 0 {
        core.work.notify_one();
    } else if st.threads < settings.max_workers() {
        if let Err(e) = spawn_worker(shared, st) {
            // The pool keeps serving with the threads it has.
            let cause = e.io_error().map_or(String::new(), |s| format!(": {s}"));
            crate::log_or_eprint(
                log::Level::Warn,
                &format!("cannot grow the worker pool: {e}{cause}"),
            );
        }
    } else if settings.queue > 0 && st.queue.len() < settings.queue {
        core.control.notify_one();
    }
}

/// Waits for something to do. Threads above `workers` retire after
/// `worker_idle_timeout` without work; `None` then.
pub(crate) fn wait_for_work<'a>(
    core: &'a Core,
    mut st: MutexGuard<'a, PoolState>,
) -> Option<MutexGuard<'a, PoolState>> {
    let settings = &core.settings;
    st.idle += 1;
    if st.threads > settings.workers {
        let (mut st, waited) = core
            .work
            .wait_timeout(st, settings.worker_idle_timeout)
            .unwrap_or_else(|e| e.into_inner());
        st.idle -= 1;
        if waited.timed_out() && st.threads > settings.workers && st.queue.is_empty() {
            st.threads -= 1;
            core.control.notify_all();
            return None;
        }
        Some(st)
    } else {
        let mut st = core.work.wait(st).unwrap_or_else(|e| e.into_inner());
        st.idle -= 1;
        Some(st)
    }
}

/// Checks a newly accepted connection against `max_per_source`, counting it
/// in when admitted. With the lock held.
pub(crate) fn admit(core: &Core, st: &mut PoolState, job: &Accepted) -> bool {
    if core.settings.proxy_protocol.is_some() {
        return true; // counted once the PROXY header names the client
    }
    count_source(core, st, &job.peer).is_ok()
}

/// Counts a connection from `peer` against `max_per_source`: the IP it was
/// counted under (`None` when there is no limit, or no IP to count by, as
/// for Unix-domain peers), or `Err` when that source is at its limit.
fn count_source(core: &Core, st: &mut PoolState, peer: &Addr) -> Result<Option<IpAddr>, ()> {
    let (Some(limit), Some(ip)) = (core.settings.max_per_source, peer.canonical_ip()) else {
        return Ok(None);
    };
    let count = st.per_source.entry(ip).or_insert(0);
    if *count >= limit {
        return Err(());
    }
    *count += 1;
    Ok(Some(ip))
}

/// Takes a connection that is no longer held off the books. With the lock held.
pub(crate) fn release(core: &Core, st: &mut PoolState, ip: Option<IpAddr>) {
    st.held -= 1;
    if let (Some(_), Some(ip)) = (core.settings.max_per_source, ip) {
        if let Some(count) = st.per_source.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                st.per_source.remove(&ip);
            }
        }
    }
}

/// Closes a connection refused by `max_per_source`, after writing the busy
/// message if one is set. Never blocks: the message goes out only if it
/// fits in the socket's send buffer, as it always does on a new connection.
pub(crate) fn reject(core: &Core, job: Accepted) {
    bump(&core.counters.rejected_per_source);
    write_busy(core, &job.stream);
}

/// Writes the busy message, if any, without blocking.
fn write_busy(core: &Core, stream: &Stream) {
    if let Some(msg) = &core.settings.busy_message {
        if stream.set_nonblocking(true).is_ok() {
            let _ = { stream }.write(msg);
        }
    }
}

/// Serves a held connection on this worker: counts it active, makes sure
/// somebody keeps accepting, runs the handler without the lock, and takes
/// it off the books. Returns the lock again.
pub(crate) fn serve_held<'a, H: Handler>(
    shared: &'a Arc<Shared<H>>,
    slot: &Arc<Slot>,
    mut st: MutexGuard<'a, PoolState>,
    job: Accepted,
) -> MutexGuard<'a, PoolState> {
    let core = &shared.core;
    st.active += 1;
    ensure_acceptor(shared, &mut st);
    drop(st);
    // Counted per source at accept, unless the real source comes later,
    // in a PROXY header.
    let counted_at_accept = match core.settings.proxy_protocol {
        None => job.peer.canonical_ip(),
        Some(_) => None,
    };
    let counted_here = serve_stream(shared, slot, job);
    let mut st = core.lock();
    st.active -= 1;
    release(core, &mut st, counted_at_accept.or(counted_here));
    if st.stopping && st.active == 0 {
        core.control.notify_all();
    }
    st
}

/// Serves one connection: options, the PROXY header if expected, the
/// handler. Returns the source IP it counted against `max_per_source`
/// itself (only with the PROXY protocol, where the source is known late).
fn serve_stream<H: Handler>(shared: &Shared<H>, slot: &Arc<Slot>, job: Accepted) -> Option<IpAddr> {
    let core = &shared.core;
    let settings = &core.settings;
    let Accepted { stream, peer } = job;
    // Failures here mean the peer is already gone; the handler will see it.
    if !core.inherits_options {
        if settings.nodelay {
            let _ = stream.set_nodelay(true);
        }
        let _ = stream.set_write_timeout(settings.write_timeout);
    }
    let (peer, proxy, counted) = match &settings.proxy_protocol {
        None => {
            if !core.inherits_options {
                let _ = stream.set_read_timeout(settings.read_timeout);
            }
            (peer, None, None)
        }
        Some(pp) => {
            let (client, counted) = proxied_client(core, pp, &stream, &peer)?;
            (client, Some(peer), counted)
        }
    };
    let deadline = settings
        .connection_timeout
        .map_or(0, |t| core.now_ms() + t.as_millis() as u64);
    slot.install(stream, deadline);
    if deadline != 0 && core.watchdog_idle.load(Ordering::SeqCst) {
        let _st = core.lock();
        core.timer.notify_all();
    }
    let local = core.local_addr.clone();
    let mut conn = Connection::stream(Arc::clone(slot), peer, local, settings.write_timeout);
    conn.set_proxy(proxy);
    run_handler(shared, &mut conn);
    drop(conn);
    slot.remove();
    counted
}

/// Checks that a connection comes from a trusted proxy and reads its PROXY
/// header: the client it speaks for, and the source IP counted against
/// `max_per_source`. `None` when the connection must be closed unserved
/// (it is counted, and closed when the caller drops it).
fn proxied_client(
    core: &Core,
    pp: &ProxyProtocol,
    stream: &Stream,
    proxy: &Addr,
) -> Option<(Addr, Option<IpAddr>)> {
    let counters = &core.counters;
    if !proxy.ip().is_some_and(|ip| pp.trusts(ip)) {
        bump(&counters.proxy_refused);
        log::debug!("refused {proxy}: not a trusted proxy");
        return None;
    }
    let header = match pp.read(stream, core.settings.read_timeout) {
        Ok(header) => header,
        Err(e) => {
            bump(&counters.proxy_errors);
            log::debug!("closed {proxy}: bad PROXY header: {e}");
            return None;
        }
    };
    let client = header.source().map_or_else(|| proxy.clone(), Addr::Inet);
    let counted = count_source(core, &mut core.lock(), &client);
    match counted {
        Ok(ip) => Some((client, ip)),
        Err(()) => {
            bump(&counters.rejected_per_source);
            write_busy(core, stream);
            None
        }
    }
}

/// Runs the handler for one received datagram; gives the buffer back.
pub(crate) fn serve_datagram<H: Handler>(shared: &Shared<H>, datagram: Datagram) -> Vec<u8> {
    let mut conn = Connection::from_datagram(datagram, shared.core.local_addr.clone());
    run_handler(shared, &mut conn);
    conn.into_buffer().unwrap_or_default()
}

/// Calls the handler with panics caught: a panic costs this one connection,
/// never the worker. Counts the outcome and reports failures to the hook.
fn run_handler<H: Handler>(shared: &Shared<H>, conn: &mut Connection) {
    let core = &shared.core;
    let counters = &core.counters;
    match catch_unwind(AssertUnwindSafe(|| shared.handler.handle(conn))) {
        Ok(Ok(())) => bump(&counters.completed),
        Ok(Err(error)) => {
            bump(&counters.handler_errors);
            let peer = conn.peer_addr();
            report(
                core,
                &Failure::Error {
                    peer: &peer,
                    error: &error,
                },
            );
        }
        Err(payload) => {
            bump(&counters.panics);
            let peer = conn.peer_addr();
            let message = panic_message(&*payload);
            report(
                core,
                &Failure::Panic {
                    peer: &peer,
                    message,
                },
            );
        }
    }
}

/// Calls the user's hook; a hook that panics must not take the worker down.
fn report(core: &Core, failure: &Failure<'_>) {
    let _ = catch_unwind(AssertUnwindSafe(|| (core.on_error)(failure)));
}

/// Forgets a slot (the one given, or the last one registered).
fn forget_slot(core: &Core, slot: Option<&Arc<Slot>>) {
    let mut slots = core.slots.lock().unwrap_or_else(|e| e.into_inner());
    match slot {
        Some(s) => slots.retain(|x| !Arc::ptr_eq(x, s)),
        None => {
            slots.pop();
        }
    }
}

/// Keeps the books right however a worker thread ends, even by a panic in
/// the library itself: off the thread count, slot forgotten, run thread told.
struct ThreadGuard<'a> {
    core: &'a Core,
    slot: &'a Arc<Slot>,
    /// Still on the thread count (a retired thread took itself off).
    counted: bool,
}

impl Drop for ThreadGuard<'_> {
    fn drop(&mut self) {
        forget_slot(self.core, Some(self.slot));
        let mut st = self.core.lock();
        if self.counted {
            st.threads -= 1;
        }
        drop(st);
        self.core.control.notify_all();
    }
}
