//! Allocations per chunk, not per item: a counting allocator around a no-op batch.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use perf_batch::{BatchProcessor, RetryPolicy};

/// Counts allocations made on threads that switched counting on.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = COUNTING.try_with(|on| {
            if on.get() {
                let _ = COUNT.try_with(|c| c.set(c.get() + 1));
            }
        });
        // SAFETY: the caller upholds `alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn allocations_for(items: u64) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let p: BatchProcessor<()> = BatchProcessor::new()
        .max_concurrency(64)
        .chunk_size(1000)
        .retry(RetryPolicy::none());
    COUNT.with(|c| c.set(0));
    COUNTING.with(|on| on.set(true));
    let r = rt.block_on(p.run(0..items, |i| async move { Ok::<_, ()>(i) }));
    COUNTING.with(|on| on.set(false));
    assert_eq!(r.results.len() as u64, items);
    COUNT.with(Cell::get)
}

#[test]
fn allocations_grow_with_chunks_not_items() {
    let small = allocations_for(1_000);
    let large = allocations_for(200_000);
    eprintln!("allocations: {small} for 1k items, {large} for 200k items");
    // 199 more chunks of 1000 items cost fewer allocations than chunks (vector growth is
    // logarithmic); one per item would be 199 000.
    assert!(
        large - small < 200,
        "{small} allocations for 1k items, {large} for 200k"
    );
}
