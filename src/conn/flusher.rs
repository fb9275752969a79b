//! The thread that writes outboxes whose clients read slowly: when a push
//! finds a socket full, what is left waits here for the socket to take
//! more, so that no sender blocks and no handler is woken for it.
//!
//! One per server, started the first time a socket is full, with a poll
//! of its own (a socket may be in more than one). Each outbox waiting is
//! registered for writability, edge-triggered: registering looks at the
//! socket at once, so room that came before the registration is not
//! missed.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};

use crate::conn::outbox_core::OutboxCore;

const WAKER: Token = Token(usize::MAX);

#[derive(Default)]
struct State {
    /// The running thread's registry and waker, once started.
    started: Option<(Arc<Registry>, Arc<Waker>)>,
    /// Outboxes waiting for room, by key.
    waiting: HashMap<usize, Weak<OutboxCore>>,
    /// Every stream connection's outbox until its connection ends, by key:
    /// what a shutdown finds still queued when it is done is lost.
    live: HashMap<usize, Weak<OutboxCore>>,
    stopped: bool,
}

/// See the module documentation.
pub(crate) struct Flusher {
    thread_name: String,
    state: Mutex<State>,
    next_key: AtomicUsize,
}

impl std::fmt::Debug for Flusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flusher")
            .field("thread_name", &self.thread_name)
            .finish_non_exhaustive()
    }
}

impl Flusher {
    /// `thread_name`: the server's; the thread is `NAME-outbox`.
    pub(crate) fn new(thread_name: &str) -> Arc<Self> {
        Arc::new(Flusher {
            thread_name: format!("{thread_name}-outbox"),
            state: Mutex::default(),
            next_key: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Only the map and the flags change under it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A key for a new outbox.
    pub(crate) fn new_key(&self) -> usize {
        // Wrapping is fine: a key is only looked up while its outbox lives,
        // and 2^64 outboxes do not live at once.
        self.next_key.fetch_add(1, Relaxed) % (usize::MAX - 1)
    }

    /// Has `outbox` written (`OutboxCore::on_writable`) once its socket
    /// `fd` can take more. The caller holds the socket open.
    pub(crate) fn wait_writable(
        self: &Arc<Self>,
        outbox: &Arc<OutboxCore>,
        fd: RawFd,
    ) -> io::Result<()> {
        let registry = {
            let mut st = self.lock();
            if st.stopped {
                return Err(io::Error::other("the server has stopped"));
            }
            let registry = match &st.started {
                Some((registry, _)) => Arc::clone(registry),
                None => {
                    let started = self.start()?;
                    let registry = Arc::clone(&started.0);
                    st.started = Some(started);
                    registry
                }
            };
            st.waiting.insert(outbox.key(), Arc::downgrade(outbox));
            registry
        };
        let token = Token(outbox.key());
        match registry.register(&mut SourceFd(&fd), token, Interest::WRITABLE) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                registry.reregister(&mut SourceFd(&fd), token, Interest::WRITABLE)
            }
            done => done,
        }
    }

    /// Starts the thread; its registry and waker.
    fn start(self: &Arc<Self>) -> io::Result<(Arc<Registry>, Arc<Waker>)> {
        let mut poll = Poll::new()?;
        let registry = Arc::new(poll.registry().try_clone()?);
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let me = Arc::clone(self);
        thread::Builder::new()
            .name(self.thread_name.clone())
            .spawn(move || me.run(&mut poll))?;
        Ok((registry, waker))
    }

    fn run(&self, poll: &mut Poll) {
        let mut events = Events::with_capacity(256);
        loop {
            if let Err(e) = poll.poll(&mut events, None) {
                if e.kind() != io::ErrorKind::Interrupted {
                    crate::report::log_or_eprint(
                        log::Level::Error,
                        &format!("the outbox thread's poll failed: {e}"),
                    );
                    return;
                }
                continue;
            }
            for event in events.iter() {
                if event.token() == WAKER {
                    if self.lock().stopped {
                        return;
                    }
                    continue;
                }
                let outbox = self
                    .lock()
                    .waiting
                    .get(&event.token().0)
                    .and_then(Weak::upgrade);
                if let Some(outbox) = outbox {
                    outbox.on_writable();
                }
            }
        }
    }

    /// An outbox whose connection has ended: nothing more to write.
    /// (Closing its socket takes it out of the poll.)
    pub(crate) fn forget(&self, key: usize) {
        let mut st = self.lock();
        st.waiting.remove(&key);
        st.live.remove(&key);
    }

    /// Counts a stream connection's outbox among the live ones, until
    /// [`forget`](Self::forget).
    pub(crate) fn track(&self, outbox: &Arc<OutboxCore>) {
        self.lock()
            .live
            .insert(outbox.key(), Arc::downgrade(outbox));
    }

    /// The server is done: what is still queued for a connection will
    /// never be written (its socket was cut, or its handler is past the
    /// shutdown's deadline). Ends every outbox still live, so that its
    /// bytes are counted as dropped now, for the shutdown's report, rather
    /// than whenever its handler's thread gets to it (a handler cut in the
    /// middle of writing what was queued, say, on a busy machine).
    pub(crate) fn end_all(&self) {
        let live: Vec<_> = self.lock().live.values().cloned().collect();
        for outbox in live.iter().filter_map(Weak::upgrade) {
            outbox.end_queue();
        }
    }

    /// Whether the server has stopped.
    pub(crate) fn stopped(&self) -> bool {
        self.lock().stopped
    }

    /// The server has stopped: the thread ends.
    pub(crate) fn stop(&self) {
        let mut st = self.lock();
        st.stopped = true;
        st.waiting.clear();
        st.live.clear();
        if let Some((_, waker)) = &st.started {
            // A thread that cannot be woken ends with the process.
            let _ = waker.wake();
        }
    }
}
