//! A logger that keeps every record logged in the test process, for tests
//! of what the server logs and at which level. One logger per process: a
//! test that captures holds `one_at_a_time()` while it does.

use std::sync::Mutex;

/// Every record logged in this process, as (level, message).
pub static RECORDS: Mutex<Vec<(log::Level, String)>> = Mutex::new(Vec::new());

pub struct Capture;

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        let line = record.args().to_string();
        RECORDS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((record.level(), line));
    }
    fn flush(&self) {}
}

/// Installs the capturing logger (once) and empties what it holds.
pub fn capture() {
    static LOGGER: Capture = Capture;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
    RECORDS.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// The captured records that mention `what`, with their levels.
pub fn records_with(what: &str) -> Vec<(log::Level, String)> {
    let records = RECORDS.lock().unwrap_or_else(|e| e.into_inner());
    records
        .iter()
        .filter(|(_, line)| line.contains(what))
        .cloned()
        .collect()
}

/// Nothing was logged at `warn` or above, by any crate.
pub fn assert_no_warnings() {
    let records = RECORDS.lock().unwrap_or_else(|e| e.into_inner());
    let warnings: Vec<_> = records
        .iter()
        .filter(|(level, _)| *level <= log::Level::Warn)
        .collect();
    assert!(warnings.is_empty(), "{warnings:?}");
}
