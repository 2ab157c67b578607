//! Committed entries per second on a 3-node cluster held in one thread
//!
//! One iteration is one [`Cluster::commit_batch`] round: `batch` proposals on the leader,
//! then drain the leader and deliver messages (draining each receiver) until the leader has
//! committed all of them. Criterion reports elements per second, one element per entry.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use shale_benches::Cluster;
use shale_core::raft::Payload;

use super::{BATCHES, PAYLOADS};

/// `commit/{payload}B/{batch}`: one round of `batch` proposals committed on the leader
///
/// The cluster lives across iterations (steady state); it is replaced, outside the timed
/// stretches, whenever its logs reach [`Cluster::REBUILD_AFTER`] entries.
pub fn commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit");
    for len in PAYLOADS {
        let payload = Payload::from(vec![0x5A; len]);
        for batch in BATCHES {
            group.throughput(Throughput::Elements(batch as u64));
            let id = BenchmarkId::new(format!("{len}B"), batch);
            group.bench_with_input(id, &batch, |b, &batch| {
                let mut cluster = Cluster::new();
                b.iter_custom(|iters| rounds(&mut cluster, iters, batch, &payload, Cluster::new));
            });
        }
    }
    group.finish();
}

/// `commit_reserved/16B/{batch}`: as [`commit`], on logs that never reallocate
/// ([`Cluster::with_log_capacity`]); the gap to `commit/16B/{batch}` is what growing the log
/// `Vec` by doubling costs
pub fn commit_reserved(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit_reserved");
    let payload = Payload::from(&[0x5A; 16]);
    let fresh = || Cluster::with_log_capacity(Cluster::REBUILD_AFTER as usize + 1024);
    for batch in BATCHES {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_with_input(BenchmarkId::new("16B", batch), &batch, |b, &batch| {
            let mut cluster = fresh();
            b.iter_custom(|iters| rounds(&mut cluster, iters, batch, &payload, fresh));
        });
    }
    group.finish();
}

/// Runs `iters` rounds of `batch` proposals on `cluster` and returns the time they took,
/// replacing the cluster with `fresh()` (untimed) whenever its logs are full
fn rounds(
    cluster: &mut Cluster,
    iters: u64,
    batch: usize,
    payload: &Payload,
    fresh: impl Fn() -> Cluster,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        if cluster.needs_rebuild() {
            *cluster = fresh();
        }
        let room = Cluster::REBUILD_AFTER - cluster.leader().last_index();
        let rounds = left.min(room / batch as u64 + 1);
        let start = Instant::now();
        for _ in 0..rounds {
            black_box(cluster.commit_batch(batch, payload));
        }
        total += start.elapsed();
        left -= rounds;
    }
    total
}
