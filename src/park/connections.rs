//! A loop's connections as they come and go: starting one (its stack,
//! its coroutine, its deadline) and finishing it (its books given back,
//! its stack kept for the next).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use corosensei::Coroutine;

use crate::admission::Admitted;
use crate::conn::link::Link;
use crate::conn::parked::Wake;
use crate::deadline::deadline_after;
use crate::net::stream::Stream;
use crate::park::event_loop::{EventLoop, Task, Wait};
use crate::park::stacks;
use crate::park::task::{self, Done};
use crate::report::{log_or_eprint, with_skipped};
use crate::{Addr, Handler};

impl<H: Handler> EventLoop<H> {
    /// Registers a connection and runs its handler until it first parks.
    pub(super) fn start(&mut self, stream: Stream, peer: Addr, admitted: Admitted) {
        let core = Arc::clone(&self.shared.core);
        let key = self.free_keys.pop().unwrap_or(self.tasks.len());
        let stack = match self.stacks.take() {
            Ok(stack) => stack,
            Err(e) => {
                self.free_keys.push(key);
                core.books().release(admitted);
                if let Some(skipped) = core.logs.spawn_errors.admit() {
                    let msg = format!("cannot serve {peer}: {e}; the connection was closed");
                    log_or_eprint(log::Level::Warn, &with_skipped(msg, skipped));
                }
                return;
            }
        };
        let link = Link::new(stream);
        let stack_start = stacks::mapping_start(&stack);
        let body = task::body(
            Arc::clone(&self.shared),
            Arc::clone(&self.loops.push),
            Arc::clone(&link),
            peer.clone(),
            admitted,
        );
        self.generation = self.generation.wrapping_add(1);
        self.gauges.set_peer(key, Some(peer.clone()));
        let task = Task {
            coro: Coroutine::with_stack(stack, body),
            stack_start,
            generation: self.generation,
            link,
            peer,
            wait: Wait::Nothing,
            io_deadline: None,
            conn_deadline: core
                .settings
                .connection_timeout
                .map(|t| deadline_after(Instant::now(), t)),
            timer_at: None,
            cut: false,
            interest: None,
        };
        if key == self.tasks.len() {
            self.tasks.push(Some(task));
        } else {
            self.tasks[key] = Some(task);
        }
        self.live += 1;
        self.gauges.live.store(self.live as u64, Relaxed);
        self.arm(key);
        self.resume(key, Wake::Ready);
    }

    /// A handler returned: release its books, keep its stack, close it.
    pub(super) fn finish(&mut self, key: usize, done: Done) {
        let Some(task) = self.tasks.get_mut(key).and_then(Option::take) else {
            return;
        };
        self.free_keys.push(key);
        self.live -= 1;
        self.gauges.live.store(self.live as u64, Relaxed);
        self.gauges.set_peer(key, None);
        let room_wanted = {
            let mut books = self.shared.core.books();
            done.release(&mut books);
            std::mem::take(&mut books.room_wanted)
        };
        if room_wanted {
            self.accept_more = true;
        }
        // The coroutine has returned, so its stack is free to reuse.
        self.stacks.give_back(task.coro.into_stack());
        self.compact_timers();
        // Dropping the last handle closes the socket, which also takes it
        // out of the poll.
        drop(task.link);
    }
}
