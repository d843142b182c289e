//! Allocation counts of the delivery worker threads, compiled only with the `count-allocations`
//! feature (the bench build of docs/capacity.md, "Allocations per request").
//!
//! The binary's counting global allocator calls [`record_allocation`] on every allocation;
//! only threads that called [`mark_delivery_worker`] are counted, each in its own slot, so the
//! control port can report allocations per worker next to its request count. The engine does
//! not know the allocator: this registry is all the two share.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Workers beyond this index are not counted (a box has far fewer delivery cores).
pub const MAX_COUNTED_WORKERS: usize = 256;

const NOT_A_WORKER: usize = usize::MAX;

static ALLOCATIONS: [AtomicU64; MAX_COUNTED_WORKERS] =
    [const { AtomicU64::new(0) }; MAX_COUNTED_WORKERS];

thread_local! {
    // Const-initialised and without a destructor, so reading it from inside the global
    // allocator never allocates (no lazy registration).
    static WORKER_INDEX: Cell<usize> = const { Cell::new(NOT_A_WORKER) };
}

/// Marks the calling thread as delivery worker `index`: its allocations count from now on.
pub fn mark_delivery_worker(index: usize) {
    WORKER_INDEX.with(|slot| slot.set(index));
}

/// The delivery worker index of the calling thread, if it is one.
pub fn current_delivery_worker() -> Option<usize> {
    WORKER_INDEX
        .try_with(Cell::get)
        .ok()
        .filter(|&index| index != NOT_A_WORKER)
}

/// Counts one allocation (alloc, alloc_zeroed or realloc) if the calling thread is a delivery
/// worker; a no-op on every other thread. Never allocates.
pub fn record_allocation() {
    if let Some(count) = current_delivery_worker().and_then(|index| ALLOCATIONS.get(index)) {
        count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Allocations made so far on delivery worker `index` (0 for an index never counted).
pub fn delivery_allocations(index: usize) -> u64 {
    ALLOCATIONS
        .get(index)
        .map_or(0, |count| count.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_marked_threads_in_their_own_slot() {
        // Slots are process-wide: use indexes no other test touches.
        let before = delivery_allocations(200);
        record_allocation(); // this thread is not a worker yet
        assert_eq!(delivery_allocations(200), before);
        std::thread::spawn(|| {
            mark_delivery_worker(200);
            assert_eq!(current_delivery_worker(), Some(200));
            record_allocation();
            record_allocation();
        })
        .join()
        .unwrap();
        assert_eq!(delivery_allocations(200), before + 2);
        assert_eq!(current_delivery_worker(), None);
        // Out of range indexes are ignored, not a panic.
        std::thread::spawn(|| {
            mark_delivery_worker(MAX_COUNTED_WORKERS + 5);
            record_allocation();
        })
        .join()
        .unwrap();
        assert_eq!(delivery_allocations(MAX_COUNTED_WORKERS + 5), 0);
    }
}
