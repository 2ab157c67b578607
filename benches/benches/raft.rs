//! Criterion benchmarks of raw Raft consensus steps on an in-memory 3-node cluster
//!
//! Run with `cargo bench -p shale-benches` (add `-- commit` or `-- leader_step` to filter).
//! Suites:
//!
//! - [`suites::allocations`]: heap allocations per committed entry, printed as a table before
//!   the timed benchmarks (counted, not timed);
//! - [`suites::throughput`]: committed entries per second by batch size and payload size, and
//!   the same on logs that never reallocate (`commit_reserved`, a diagnostic);
//! - [`suites::leader_step`]: the cost of one leader step (one append response handled);
//! - [`suites::snapshot`]: bytes per second moving a whole snapshot to a lagging follower
//!   through the chunk path, by snapshot size and chunk size (`-- snapshot_install`);
//! - [`suites::read_index`]: linearizable leader reads per second, batched behind one
//!   heartbeat round, and the same from a lease (`-- reads`);
//! - [`suites::sharded`]: operations per virtual second of the simulated sharded cluster with
//!   1, 2 and 4 replica groups under a CPU model, printed as a table; criterion times the
//!   wall clock of one simulated run (`-- sharded`);
//! - [`suites::wal`]: durable WAL appends per second through group commit with 1 and 64
//!   writers, beside the disk's own fsync rate measured in the same run, printed as a table;
//!   criterion times one group-commit round trip (`-- wal`). Unlike the others, this suite
//!   does real file IO.
//! - [`suites::store`]: `shale_core::store::PersistentMap` against `BTreeMap` and
//!   `rpds::RedBlackTreeMapSync` at 1,000,000 entries: apply, get, views (clone and the
//!   copy-on-write after it), iteration, bulk build (`-- store`).
//!
//! The harness is [`shale_benches::Cluster`]: messages moved in memory, synchronous
//! persistence, no IO, one thread (the `sharded` suite runs `shale_sim`'s multi-group
//! simulator instead, and the `wal` suite writes to disk).

mod suites;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use shale_benches::CountingAllocator;

/// Counts allocations for the allocation table; one relaxed atomic add per allocation is
/// also paid in the timed benchmarks, as a constant, small overhead
#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

/// Short settings, so a full run takes a few minutes
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! {
    name = raft;
    config = config();
    targets = suites::allocations::table, suites::throughput::commit, suites::throughput::commit_reserved, suites::leader_step::append_response, suites::snapshot::install, suites::read_index::reads, suites::sharded::scaling, suites::wal::group_commit, suites::store::store, suites::store::bulk_build
}
criterion_main!(raft);
