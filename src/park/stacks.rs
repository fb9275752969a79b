//! The handlers' stacks under `park_idle`: made with a guard page, kept
//! for reuse when a connection ends, and counted against the system's
//! limit on memory maps.

use std::io;

use corosensei::stack::{DefaultStack, Stack};

use crate::Error;

/// Stacks kept for reuse by one loop. A reused stack costs no system call,
/// and the pages its last handler touched are already resident.
const KEEP: usize = 64;

/// Memory maps each stack takes: the stack and its guard page.
const MAPS_PER_STACK: usize = 2;

/// Memory maps left for everything else in the process: libraries, thread
/// stacks, the allocator's arenas.
const MAPS_RESERVED: usize = 4096;

/// Memory maps of one helper thread of `offload`: its stack and guard
/// page, and its alternate signal stack and guard page.
const MAPS_PER_THREAD: usize = 4;

/// One loop's stacks.
pub(crate) struct Stacks {
    free: Vec<DefaultStack>,
    size: usize,
}

impl Stacks {
    pub(crate) fn new(size: usize) -> Self {
        Stacks {
            free: Vec::new(),
            size,
        }
    }

    /// A stack for a new connection: a kept one, or a new mapping.
    pub(crate) fn take(&mut self) -> io::Result<DefaultStack> {
        match self.free.pop() {
            Some(stack) => Ok(stack),
            None => DefaultStack::new(self.size),
        }
    }

    /// Keeps a finished connection's stack for the next one.
    pub(crate) fn give_back(&mut self, stack: DefaultStack) {
        if self.free.len() < KEEP {
            self.free.push(stack);
        }
    }
}

/// Where `stack`'s mapping starts: at its guard page, below the stack.
pub(crate) fn mapping_start(stack: &DefaultStack) -> usize {
    stack.limit().get()
}

/// The system's limit on memory maps per process (`vm.max_map_count`).
fn max_map_count() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The `max_connections` a `park_idle` server works with: as set, if the
/// memory-map limit allows it, otherwise an error naming the sysctl;
/// unset, what the limit allows. The maps of the stacks each of `loops`
/// keeps for reuse, and of up to `helpers` offload threads, come first.
pub(crate) fn connection_cap(
    max_connections: Option<usize>,
    loops: usize,
    helpers: usize,
) -> Result<usize, Error> {
    let Some(maps) = max_map_count() else {
        return Ok(max_connections.unwrap_or(usize::MAX));
    };
    let kept = loops.saturating_mul(KEEP * MAPS_PER_STACK);
    let threads = helpers.saturating_mul(MAPS_PER_THREAD);
    let cap = maps
        .saturating_sub(MAPS_RESERVED)
        .saturating_sub(kept)
        .saturating_sub(threads)
        / MAPS_PER_STACK;
    match max_connections {
        None => Ok(cap.max(1)),
        Some(n) if n <= cap => Ok(n),
        Some(n) => Err(Error::InvalidSetting {
            setting: "max_connections",
            reason: format!(
                "{n} connections under park_idle need {} memory maps (a stack and its guard \
                 page each), but vm.max_map_count is {maps}: with the process's other maps at \
                 most {cap} connections fit; lower max_connections or raise the limit \
                 (sysctl -w vm.max_map_count={})",
                n.saturating_mul(MAPS_PER_STACK),
                n.saturating_mul(MAPS_PER_STACK)
                    .saturating_add(maps - cap * MAPS_PER_STACK)
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_map_limit_caps_connections_or_explains_itself() {
        let Some(maps) = max_map_count() else { return };
        let cap = connection_cap(None, 2, 16).unwrap();
        let others = MAPS_RESERVED + 2 * KEEP * MAPS_PER_STACK + 16 * MAPS_PER_THREAD;
        assert_eq!(cap, (maps - others) / MAPS_PER_STACK);
        assert_eq!(connection_cap(Some(10), 2, 16).unwrap(), 10);
        let err = connection_cap(Some(cap + 1), 2, 16)
            .unwrap_err()
            .to_string();
        assert!(err.contains("vm.max_map_count"), "{err}");
        // "As many as can be": an error to read, not an overflow.
        let err = connection_cap(Some(usize::MAX), 2, 16).unwrap_err();
        assert!(err.to_string().contains("vm.max_map_count"), "{err}");
    }

    #[test]
    fn stacks_are_reused() {
        let mut stacks = Stacks::new(128 * 1024);
        let a = stacks.take().unwrap();
        let at = mapping_start(&a);
        stacks.give_back(a);
        assert_eq!(mapping_start(&stacks.take().unwrap()), at);
    }
}
