//! Counting heap allocations: [`CountingAllocator`] and [`allocations_per_entry`]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use shale_core::raft::Payload;

use crate::Cluster;

/// Heap allocations made in this process since it started, as counted by [`CountingAllocator`]
/// (always 0 when that allocator is not registered)
pub fn allocation_count() -> u64 {
    ALLOCATIONS.load(Ordering::Relaxed)
}

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting every `alloc`, `alloc_zeroed` and `realloc` call
///
/// Register it in a benchmark or test binary with
/// `#[global_allocator] static ALLOC: CountingAllocator = CountingAllocator;`, then read
/// [`allocation_count`]. Counting costs one relaxed atomic add per allocation.
#[derive(Clone, Copy, Debug, Default)]
pub struct CountingAllocator;

// `GlobalAlloc` is an unsafe trait, so implementing it needs `unsafe`; the workspace denies
// `unsafe_code`, and this allow covers this impl only. Every method forwards its arguments
// unchanged to `System`, whose contract is the same as ours, and only adds a counter.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by `System` through this wrapper with `layout`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `realloc`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Heap allocations per committed entry in steady state, for rounds of `batch` proposals of
/// `payload_len` bytes ([`Cluster::commit_batch`]); `None` unless [`CountingAllocator`] is the
/// global allocator
///
/// Counts everything the three nodes and the harness allocate (the harness itself allocates
/// nothing once warm). The payload is built once and shared, so the figure leaves out the one
/// allocation a caller makes to build each proposal's [`Payload`]. The cluster is warmed up
/// first so queues have their steady capacity; then at least 8192 entries are measured so the
/// occasional doubling of a log `Vec` weighs next to nothing.
pub fn allocations_per_entry(batch: usize, payload_len: usize) -> Option<f64> {
    let probe = allocation_count();
    drop(std::hint::black_box(Box::new(0u64)));
    if allocation_count() == probe {
        return None;
    }
    let payload = Payload::from(vec![0xA5; payload_len]);
    let mut cluster = Cluster::new();
    let rounds = (8192 / batch).max(32);
    for _ in 0..rounds.min(256) {
        cluster.commit_batch(batch, &payload);
    }
    let before = allocation_count();
    let first = cluster.leader().commit_index();
    for _ in 0..rounds {
        cluster.commit_batch(batch, &payload);
    }
    let allocations = allocation_count() - before;
    let committed = cluster.leader().commit_index() - first;
    Some(allocations as f64 / committed as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_needs_the_allocator_registered() {
        // This test binary uses the system allocator directly.
        assert_eq!(allocations_per_entry(1, 16), None);
    }
}
