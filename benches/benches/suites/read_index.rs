//! Linearizable reads per second on the leader, batched behind one heartbeat round
//!
//! One iteration is one [`Cluster::read_batch`] round: `n` `read` calls on the leader with
//! distinct contexts, then drain the leader (which starts one heartbeat round for all of them)
//! and deliver messages (draining each receiver) until all `n` `ReadState`s came out of
//! `poll_read`; the first follower's answer confirms the round (a quorum of 2 of 3), the
//! other's stays queued and goes first in the next round. The cluster lives across iterations.
//!
//! - `reads/read_index/{n}`: ReadIndex, one heartbeat round per batch;
//! - `reads/lease/1000`: the same calls with `lease_reads` on and the lease held (the clock is
//!   frozen, so it never lapses): answered in `read` itself, no message at all.
//!
//! Criterion reports elements per second, one element per read.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use shale_benches::Cluster;

/// Reads per batch
pub const READ_BATCHES: [usize; 2] = [1, 1000];

/// Reads per batch for the lease comparison
pub const LEASE_BATCH: usize = 1000;

/// `reads/read_index/{n}` and `reads/lease/1000`: see the module documentation
pub fn reads(c: &mut Criterion) {
    let mut group = c.benchmark_group("reads");
    for n in READ_BATCHES {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("read_index", n), &n, |b, &n| {
            let mut cluster = Cluster::new();
            b.iter(|| black_box(cluster.read_batch(n).len()));
        });
    }
    group.throughput(Throughput::Elements(LEASE_BATCH as u64));
    group.bench_with_input(
        BenchmarkId::new("lease", LEASE_BATCH),
        &LEASE_BATCH,
        |b, &n| {
            let mut cluster = Cluster::with_lease();
            b.iter(|| black_box(cluster.read_batch(n).len()));
        },
    );
    group.finish();
}
