//! Reporting a stack overflow in a parked handler in words.
//!
//! A handler under `park_idle` runs on a small stack of its own, with an
//! inaccessible guard page below it. Running past it raises `SIGSEGV`,
//! which would end the process with nothing but "Segmentation fault". So a
//! handler for `SIGSEGV` and `SIGBUS`, running on an alternate signal
//! stack, looks whether the faulting address lies just below the stack of
//! the handler the thread is running (each event loop records it before it
//! resumes a handler). If so it writes one line naming the setting to
//! raise and aborts. Any other fault is handed back to the action that was
//! there before (the standard library's own stack-overflow report, or the
//! default), by restoring it and returning so that the fault repeats.

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;

// The stack of the handler this thread runs now: `(start of its mapping,
// which is its guard page; size of the window below it that also counts as
// an overflow)`; `(0, 0)` between handlers.
thread_local! {
    static GUARD: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// How far below a stack's guard page a fault still counts as its
/// overflow. Rust probes large frames page by page, so the first fault is
/// in the guard page; the window only adds faults that land in unmapped
/// space just below it (a neighbouring stack there is mapped, and a frame
/// that skipped the guard page without probing would not fault at all).
const WINDOW: usize = 64 * 1024;

/// Size of the alternate signal stack given to a loop thread that has none.
const ALT_STACK: usize = 64 * 1024;

const MESSAGE: &[u8] = b"socketserver: stack overflow in a parked handler; raise \
    ServerBuilder::parked_stack_size (default 256 KiB) or move large buffers to the heap\n";

/// The actions for `SIGSEGV` and `SIGBUS` that were there before ours.
static PREVIOUS: [OnceLock<libc::sigaction>; 2] = [OnceLock::new(), OnceLock::new()];
static INSTALLED: OnceLock<bool> = OnceLock::new();
/// The page size, read once at install: `sysconf` is not async-signal-safe.
static PAGE: AtomicUsize = AtomicUsize::new(4096);

/// Marks the stack whose mapping starts at `start` (with its guard page)
/// as the one this thread now runs a handler on.
pub(crate) fn enter_stack(start: usize) {
    GUARD.with(|g| g.set((start, WINDOW)));
}

/// This thread runs no parked handler now.
pub(crate) fn leave_stack() {
    GUARD.with(|g| g.set((0, 0)));
}

/// Installs the fault handler once per process, and gives the calling
/// thread an alternate signal stack if it has none. Returns whether
/// overflows will be reported.
pub(crate) fn prepare_thread() -> bool {
    let installed = *INSTALLED.get_or_init(install);
    installed && ALT.with(|alt| alt.ensure())
}

fn install() -> bool {
    // SAFETY: `sysconf` with a valid name has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    PAGE.store(usize::try_from(page).unwrap_or(4096), Relaxed);
    for (i, sig) in [libc::SIGSEGV, libc::SIGBUS].into_iter().enumerate() {
        // SAFETY: `sigaction` is plain old data, for which all zeroes is a
        // valid value (an empty mask, no flags).
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) = on_fault;
        action.sa_sigaction = handler as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        // SAFETY: as above.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are to live, initialised `sigaction`s; the
        // handler installed is an `extern "C"` function with the
        // three-argument signature `SA_SIGINFO` asks for.
        if unsafe { libc::sigaction(sig, &action, &mut old) } != 0 {
            return false;
        }
        let _ = PREVIOUS[i].set(old);
    }
    true
}

extern "C" fn on_fault(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid `siginfo_t` to an `SA_SIGINFO`
    // handler; for SIGSEGV and SIGBUS `si_addr` is the faulting address.
    let addr = unsafe { (*info).si_addr() } as usize;
    // A `const` thread local with no destructor is a plain thread-local
    // slot: reading it is safe in a signal handler.
    let (start, window) = GUARD.with(|g| g.get());
    let guard_end = start.saturating_add(PAGE.load(Relaxed));
    if start != 0 && addr < guard_end && addr >= start.saturating_sub(window) {
        // SAFETY: `write` and `abort` are async-signal-safe; the buffer is
        // a static byte string of the length given.
        unsafe {
            libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len());
            libc::abort();
        }
    }
    let i = usize::from(sig == libc::SIGBUS);
    match PREVIOUS[i].get() {
        // SAFETY: `sigaction` is async-signal-safe; `prev` is the action
        // saved at install time. Returning re-runs the faulting
        // instruction, which now meets that action.
        Some(prev) => unsafe {
            libc::sigaction(sig, prev, ptr::null_mut());
        },
        // SAFETY: `signal` to the default action, as above.
        None => unsafe {
            libc::signal(sig, libc::SIG_DFL);
        },
    }
}

/// The alternate signal stack this module gave a thread, freed with it.
struct AltStack {
    base: Cell<*mut libc::c_void>,
}

thread_local! {
    static ALT: AltStack = const { AltStack { base: Cell::new(ptr::null_mut()) } };
}

impl AltStack {
    /// Makes sure the thread has an alternate signal stack (the standard
    /// library gives its threads one, but not every program runs that).
    fn ensure(&self) -> bool {
        if !self.base.get().is_null() {
            return true;
        }
        // SAFETY: `stack_t` is plain old data; all zeroes is valid.
        let mut current: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: a null new stack only queries the current one into
        // `current`, a live `stack_t`.
        if unsafe { libc::sigaltstack(ptr::null(), &mut current) } != 0 {
            return false;
        }
        if current.ss_flags & libc::SS_DISABLE == 0 {
            return true;
        }
        // SAFETY: an anonymous private mapping with no address hint; the
        // result is checked against MAP_FAILED before use.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                ALT_STACK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return false;
        }
        let stack = libc::stack_t {
            ss_sp: base,
            ss_flags: 0,
            ss_size: ALT_STACK,
        };
        // SAFETY: `stack` describes the mapping just made, which stays
        // mapped until this thread's `AltStack` is dropped, and that
        // disables the alternate stack first.
        if unsafe { libc::sigaltstack(&stack, ptr::null_mut()) } != 0 {
            // SAFETY: unmapping the mapping just made, never used.
            unsafe { libc::munmap(base, ALT_STACK) };
            return false;
        }
        self.base.set(base);
        true
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        let base = self.base.get();
        if base.is_null() {
            return;
        }
        let off = libc::stack_t {
            ss_sp: ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disabling this thread's alternate stack, then unmapping
        // the mapping `ensure` made for it; no signal handler can run on
        // it once it is disabled.
        unsafe {
            libc::sigaltstack(&off, ptr::null_mut());
            libc::munmap(base, ALT_STACK);
        }
    }
}
