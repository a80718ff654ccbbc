//! A global allocator that counts the calls made on one thread while it is armed: how the tests prove that code
//! meant for the audio thread never allocates or frees.
//!
//! A test binary installs it with
//! `#[global_allocator] static ALLOCATOR: CountingAllocator = CountingAllocator;` and wraps audio-thread work in
//! [`allocator_calls_during`]. Counting is per thread, so tests running in parallel neither arm nor fill each
//! other's counts.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    // `const` initialisers and `Copy` types without `Drop`: reading them never allocates or registers a destructor,
    // so the allocator itself can consult them.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static CALLS: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, counting what happens on an armed thread.
pub struct CountingAllocator;

impl CountingAllocator {
    fn count() {
        if ARMED.try_with(Cell::get).unwrap_or(false) {
            let _ = CALLS.try_with(|calls| calls.set(calls.get() + 1));
        }
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the counting only touches const thread-locals, which do
// not allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::count();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::count();
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Runs `f` with this thread's allocator calls counted; returns its result and the number of calls (allocations,
/// reallocations and frees). Only meaningful in a binary that installed [`CountingAllocator`].
pub fn allocator_calls_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let before = CALLS.with(Cell::get);
    ARMED.with(|armed| armed.set(true));
    let result = f();
    ARMED.with(|armed| armed.set(false));
    (result, CALLS.with(Cell::get) - before)
}
