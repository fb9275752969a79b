//! What `shutdown_on_signals` leaves behind once every server that asked
//! for it has stopped: nothing that changes what SIGINT and SIGTERM do.
//!
//! signal-hook never uninstalls the process-wide handler it installs: once
//! the last action for a signal is unregistered, the handler stays and the
//! signal is silently discarded, so the first Ctrl-C after the server
//! stopped would do nothing. So, once per process, a conditional default
//! action is registered for both signals, armed whenever no server is
//! listening for them: the signal then does what it does by default
//! (ends the process), as if `shutdown_on_signals` had never been called.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, OnceLock};

use signal_hook::consts::{SIGINT, SIGTERM};

/// Servers listening for the signals right now.
static LISTENING: Mutex<usize> = Mutex::new(0);
/// Set while none is: the default action then runs.
static DEFAULT: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// A server starts listening for the signals.
pub(crate) fn begin() -> io::Result<()> {
    let mut listening = LISTENING.lock().unwrap_or_else(|e| e.into_inner());
    let armed = match DEFAULT.get() {
        Some(armed) => Arc::clone(armed),
        None => {
            let armed = Arc::new(AtomicBool::new(false));
            for signal in [SIGINT, SIGTERM] {
                signal_hook::flag::register_conditional_default(signal, Arc::clone(&armed))?;
            }
            Arc::clone(DEFAULT.get_or_init(|| armed))
        }
    };
    *listening += 1;
    armed.store(false, SeqCst);
    Ok(())
}

/// A server stops listening for the signals.
pub(crate) fn end() {
    let mut listening = LISTENING.lock().unwrap_or_else(|e| e.into_inner());
    *listening = listening.saturating_sub(1);
    if *listening == 0 {
        if let Some(armed) = DEFAULT.get() {
            armed.store(true, SeqCst);
        }
    }
}
