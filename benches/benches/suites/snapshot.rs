//! Snapshot install throughput: bytes per second through the chunk path
//!
//! Untimed setup, per iteration ([`Cluster::with_lagging_follower`]): a fresh cluster, node
//! [`LAGGING`] cut off while the leader commits a few entries, is asked for a snapshot
//! (`SnapshotTask::Take`), reports one of the chosen size (`handle_snapshot_taken`) and
//! compacts its whole log; node 3 is then reconnected. Timed ([`Cluster::install_snapshot`]):
//! one heartbeat round lets the leader find the follower behind its log; then, one chunk in
//! flight at a time, the leader's runtime answers each `ReadChunk` by copying the slice out of
//! the in-memory snapshot, the leader sends it, the follower passes it on in a write, its
//! runtime appends it to the snapshot being received (a second copy) and acknowledges it; the
//! last chunk installs the snapshot, the follower restores it, and the leader's progress for
//! it leaves the snapshot state. Dropping the cluster is not timed.
//!
//! Criterion reports bytes per second of snapshot moved, one snapshot per iteration.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use shale_benches::{Cluster, LAGGING};
use shale_core::raft::Payload;

/// Snapshot sizes, in bytes: 1 MiB and 16 MiB
pub const SIZES: [usize; 2] = [1 << 20, 16 << 20];

/// `snapshot_chunk_bytes` settings: 64 KiB and 1 MiB (the default)
pub const CHUNKS: [usize; 2] = [64 << 10, 1 << 20];

/// `snapshot_install/{size}/{chunk}`: one whole snapshot moved to a lagging follower
pub fn install(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_install");
    // An iteration takes milliseconds and a fresh cluster: few, equal samples.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    for size in SIZES {
        let data = Payload::from(vec![0xC3; size]);
        group.throughput(Throughput::Bytes(size as u64));
        for chunk in CHUNKS {
            let id = BenchmarkId::new(
                format!("{}MiB", size >> 20),
                format!("chunk_{}KiB", chunk >> 10),
            );
            group.bench_with_input(id, &chunk, |b, &chunk| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let (mut cluster, meta) = Cluster::with_lagging_follower(chunk, &data);
                        let start = Instant::now();
                        let index = cluster.install_snapshot(LAGGING);
                        total += start.elapsed();
                        assert_eq!(black_box(index), meta.last.index);
                    }
                    total
                });
            });
        }
    }
    group.finish();
}
