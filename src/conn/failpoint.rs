//! Points where a test stops one thread, to run another in between: races
//! that a real machine hits in microseconds, made certain. Compiled for
//! the crate's unit tests only.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

#[derive(Default)]
struct State {
    /// Stop the next thread whose name starts with this.
    armed: Option<&'static str>,
    stopped: bool,
    released: bool,
}

/// One point in the code.
pub(crate) struct Point {
    state: Mutex<State>,
    changed: Condvar,
}

/// After a push's first write, before it looks at its queue again.
pub(crate) static AFTER_PUSH_WRITE: Point = Point::new();
/// As a connection ends, before its queue is dropped.
pub(crate) static BEFORE_END: Point = Point::new();

const WAIT: Duration = Duration::from_secs(5);

impl Point {
    const fn new() -> Point {
        Point {
            state: Mutex::new(State {
                armed: None,
                stopped: false,
                released: false,
            }),
            changed: Condvar::new(),
        }
    }

    /// The code reaches the point: a thread it is armed for stops until
    /// released (at most a few seconds, so that a broken test fails
    /// rather than hangs).
    pub(crate) fn reach(&self) {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        let mut st = self.state.lock().unwrap();
        match st.armed {
            Some(prefix) if name.starts_with(prefix) => st.armed = None,
            _ => return,
        }
        st.stopped = true;
        self.changed.notify_all();
        let (st, _) = self
            .changed
            .wait_timeout_while(st, WAIT, |st| !st.released)
            .unwrap();
        drop(st);
    }

    /// Stops the next thread named `prefix...` that reaches the point.
    pub(crate) fn arm(&self, prefix: &'static str) {
        *self.state.lock().unwrap() = State {
            armed: Some(prefix),
            ..State::default()
        };
    }

    /// Waits until the armed thread has stopped here; false if none did.
    pub(crate) fn wait_stopped(&self) -> bool {
        let st = self.state.lock().unwrap();
        let (st, _) = self
            .changed
            .wait_timeout_while(st, WAIT, |st| !st.stopped)
            .unwrap();
        st.stopped
    }

    /// Lets the stopped thread go on.
    pub(crate) fn release(&self) {
        self.state.lock().unwrap().released = true;
        self.changed.notify_all();
    }
}
