//! The parked engine (`park_idle`): event loops that serve many
//! connections each, a handler per connection on a small stack of its own,
//! parked off the thread whenever its socket would block.
//!
//! * `event_loop.rs`: one loop thread: poll, resume, park, start and end
//!   a connection; `accepting.rs`, `deadlines.rs` and `stopping.rs`: its
//!   accepting, its timers, and its shutdown and stall reports.
//! * `task.rs`: what runs inside a connection's coroutine.
//! * `helpers.rs`: the helper threads `offload` runs on.
//! * `stacks.rs`: the handlers' stacks, reused, and the memory-map limit.
//!
//! The parking point itself, the parked stream and `offload` are in
//! `sys/parking.rs`, with the `unsafe` they need.

mod accepting;
mod deadlines;
pub(crate) mod event_loop;
pub(crate) mod helpers;
pub(crate) mod stacks;
mod stopping;
pub(crate) mod task;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Instant;

use crate::core::Shared;
use crate::deadline::{deadline_after, FAR_FUTURE};
use crate::shutdown::{self, ShutdownReport, EXIT_GRACE};
use crate::{Error, Handler};

pub(crate) use stacks::connection_cap;

use event_loop::EventLoop;
use helpers::Helpers;

/// Loop threads still running, and a way to wait for none.
#[derive(Default)]
struct Running {
    count: Mutex<usize>,
    cv: Condvar,
}

impl Running {
    fn leave(&self) {
        let mut n = self.count.lock().unwrap_or_else(|e| e.into_inner());
        *n -= 1;
        self.cv.notify_all();
    }
}

/// Counts a loop thread out however it ends.
struct Leave(Arc<Running>);

impl Drop for Leave {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// Serves on `workers` event loops until shutdown, then drains them and
/// reports, as the thread mode's `run` does.
pub(crate) fn run<H: Handler>(shared: &Arc<Shared<H>>) -> Result<ShutdownReport, Error> {
    let core = &*shared.core;
    let settings = &core.settings;
    if let Err(source) = core.listener.sock_ref().set_nonblocking(true) {
        return Err(Error::SetOption {
            option: "O_NONBLOCK",
            addr: core.local_addr.clone(),
            source,
        });
    }
    let helpers = Helpers::new(Arc::clone(&shared.core));
    let running = Arc::new(Running::default());
    let mut started = Ok(());
    for id in 0..settings.workers() {
        let name = format!("{}-{id}", settings.thread_name);
        let poll = match EventLoop::<H>::poll() {
            Ok(poll) => poll,
            Err(source) => {
                started = Err(Error::Spawn { name, source });
                break;
            }
        };
        *running.count.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let leave = Leave(Arc::clone(&running));
        let (shared, helpers) = (Arc::clone(shared), Arc::clone(&helpers));
        // A loop's coroutines never leave its thread, so it is made there.
        let spawned = thread::Builder::new().name(name.clone()).spawn(move || {
            let _leave = leave;
            match EventLoop::new(Arc::clone(&shared), helpers, poll) {
                Ok(event_loop) => event_loop.run(),
                Err(e) => {
                    let msg = format!("cannot start an event loop: {e}; shutting down");
                    crate::report::log_or_eprint(log::Level::Error, &msg);
                    shared.core.begin_shutdown();
                }
            }
        });
        if let Err(source) = spawned {
            started = Err(Error::Spawn { name, source });
            break;
        }
    }
    if started.is_ok() {
        crate::report::log_or_eprint(
            log::Level::Info,
            &format!(
                "serving {} ({}) on {} event loops (park_idle)",
                core.local_addr,
                settings.transport,
                settings.workers()
            ),
        );
        let forever = deadline_after(Instant::now(), FAR_FUTURE);
        drop(core.wait_until(&core.control, forever, |st| st.pool.stopping));
    } else {
        core.begin_shutdown();
    }
    let leave_by = deadline_after(
        deadline_after(Instant::now(), settings.shutdown_timeout),
        EXIT_GRACE,
    );
    let mut left = running.count.lock().unwrap_or_else(|e| e.into_inner());
    while *left > 0 {
        let wait = leave_by.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            break;
        }
        left = running
            .cv
            .wait_timeout(left, wait)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    drop(left);
    // The same deadline for the helpers: a helper stuck in an offloaded
    // call is left behind, as a stuck worker is in the thread mode, rather
    // than given a grace of its own.
    helpers.stop(leave_by.saturating_duration_since(Instant::now()));
    if core.passed {
        // Whoever serves the passed socket next may expect it blocking.
        let _ = core.listener.sock_ref().set_nonblocking(false);
    }
    started?;
    // The loops counted what they cut.
    let forced = core.counters.forced_at_shutdown.load(Relaxed) as usize;
    Ok(shutdown::report(core, core.lock().active_at_stop, forced))
}
