//! The counting global allocator of the `count-allocations` bench build: the system allocator,
//! plus a count of every allocation made on a delivery worker thread (kept by
//! `engine::alloc_count`, served as `corecast_delivery_allocations_total` on `/metrics`). It
//! shows whether the delivery hot path allocates per request (docs/capacity.md, "Allocations
//! per request").
//!
//! `CORECAST_ALLOC_BACKTRACE=N` also prints a backtrace to stderr for every Nth allocation on a
//! delivery thread, to find the allocation sites when the count is not zero.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// The system allocator, counting delivery-thread allocations.
#[derive(Debug)]
pub struct CountingAllocator;

static BACKTRACE_EVERY: AtomicU64 = AtomicU64::new(0);
static SEEN_FOR_BACKTRACE: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // Set while this thread prints a backtrace: those allocations are not sampled again.
    static IN_BACKTRACE: Cell<bool> = const { Cell::new(false) };
}

/// Reads `CORECAST_ALLOC_BACKTRACE` (call once, before the delivery threads start).
pub fn configure_from_env() {
    if let Some(every) = std::env::var("CORECAST_ALLOC_BACKTRACE")
        .ok()
        .and_then(|text| text.parse::<u64>().ok())
    {
        BACKTRACE_EVERY.store(every, Ordering::Relaxed);
    }
}

fn record() {
    let every = BACKTRACE_EVERY.load(Ordering::Relaxed);
    if every == 0 {
        engine::alloc_count::record_allocation();
        return;
    }
    // The backtrace's own allocations (symbolisation makes many) are neither counted nor sampled.
    if IN_BACKTRACE.try_with(Cell::get).unwrap_or(true) {
        return;
    }
    engine::alloc_count::record_allocation();
    let Some(worker) = engine::alloc_count::current_delivery_worker() else {
        return;
    };
    if !SEEN_FOR_BACKTRACE
        .fetch_add(1, Ordering::Relaxed)
        .is_multiple_of(every)
    {
        return;
    }
    IN_BACKTRACE.with(|flag| flag.set(true));
    let trace = std::backtrace::Backtrace::force_capture();
    eprintln!("allocation on delivery worker {worker}:\n{trace}");
    IN_BACKTRACE.with(|flag| flag.set(false));
}

// SAFETY: every method forwards to `System` with the caller's own arguments, so `System`'s
// guarantees hold unchanged; `record` only touches atomics and const thread-locals (and, when
// sampling, allocates re-entrantly behind a guard that stops recursion).
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record();
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds the rest.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
