//! Deadlines from durations that may be as large as `Duration::MAX`.

use std::time::{Duration, Instant};

/// How far off a deadline may be: a century is as good as never for a
/// connection, and far inside what `Instant` can hold on any platform.
pub(crate) const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// `now + timeout`, but at most [`FAR_FUTURE`] away, so that it cannot
/// overflow: `Instant + Duration` panics past what `Instant` can hold, and
/// a setting of `Duration::MAX` means no limit, never a panic.
pub(crate) fn deadline_after(now: Instant, timeout: Duration) -> Instant {
    let mut wait = timeout.min(FAR_FUTURE);
    loop {
        if let Some(deadline) = now.checked_add(wait) {
            return deadline;
        }
        // Only where `Instant` cannot hold even a century from now; halving
        // ends in zero, which always fits.
        wait /= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_saturate_instead_of_overflowing() {
        let now = Instant::now();
        let five = Duration::from_secs(5);
        assert_eq!(deadline_after(now, five), now + five);
        assert_eq!(deadline_after(now, FAR_FUTURE), now + FAR_FUTURE);
        assert_eq!(deadline_after(now, Duration::MAX), now + FAR_FUTURE);
    }
}
