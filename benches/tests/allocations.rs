//! Guards the allocation budget of the replicate path (see `allocations_per_entry`)

use shale_benches::{CountingAllocator, allocations_per_entry};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

/// Keep this the only test in this binary: the allocation counter is process-wide, so a test
/// running beside it would add its own allocations.
#[test]
fn allocations_per_committed_entry_stay_bounded() {
    // (batch, payload bytes, bound). Measured: 5.0 at batch 1 (the leader's write, one append
    // per follower, one write per follower, one empty append carrying the commit), 0.31 at
    // batch 16 and 0.020 at batch 256 (about 5 per round), the same for both payload sizes
    // because payloads are shared, never copied. The bounds leave room for a couple of extra
    // allocations per round, but any per-entry allocation (a copied payload, a cloned message)
    // fails them at every batch size.
    for (batch, len, bound) in [
        (1, 16, 7.0),
        (16, 16, 0.75),
        (256, 16, 0.1),
        (256, 1024, 0.1),
    ] {
        let per_entry = allocations_per_entry(batch, len).expect("counting allocator registered");
        assert!(
            per_entry < bound,
            "batch {batch}, {len} B: {per_entry:.2} allocations per entry, budget {bound}"
        );
    }
}
