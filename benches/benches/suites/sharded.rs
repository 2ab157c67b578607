//! Operations per virtual second of the simulated sharded cluster, by number of replica groups
//!
//! One iteration is one whole [`scaling_run`]: a [`ShardedCluster`] (the controller on nodes
//! 1-3, each replica group on three dedicated nodes) over [`SHARDS`] shards, every group joined
//! in one configuration change so the shards spread evenly, settled; then [`USERS`]
//! closed-loop [`KvWorkload`] users with no think time run the simulator's random mix (50%
//! appends, 5% puts, 45% linearizable reads through ReadIndex) over one key per shard, for
//! [`WARM_UP`] and then [`MEASURED`] of virtual time. Each node is one CPU spending
//! [`CPU_PER_EVENT`] on every event it handles (see `shale_sim::multi`, "CPU model"): without
//! that the simulator has no capacity limit and the load would only measure latency.
//!
//! - `sharded/groups/{n}`: criterion times the wall clock of one whole simulated run (build,
//!   settle, warm-up, measured second). The figure that matters, operations per *virtual*
//!   second by number of groups, is printed as a table once, before the first of these
//!   benchmarks the filter selects (so a filter leaving them out costs nothing). No criterion
//!   throughput is set: it would divide by wall time and read as simulator speed, not as the
//!   cluster's throughput.

use std::hint::black_box;
use std::sync::Once;
use std::time::Instant as WallInstant;

use criterion::{BenchmarkId, Criterion};
use shale_core::controller::GroupId;
use shale_core::time::Duration;
use shale_sim::multi::{KvWorkload, ShardedCluster, ShardedConfig, Workload};

/// Replica groups compared
pub const GROUPS: [usize; 3] = [1, 2, 4];

/// Shards of the cluster
pub const SHARDS: u32 = 64;

/// Closed-loop users (one operation at a time each, no think time)
pub const USERS: usize = 256;

/// CPU time a node spends per event
pub const CPU_PER_EVENT: Duration = Duration::from_micros(100);

/// Virtual time the load runs before it is measured
pub const WARM_UP: Duration = Duration::from_millis(200);

/// Virtual time the load is measured over
pub const MEASURED: Duration = Duration::from_secs(1);

/// The seed of every run
pub const SEED: u64 = 1;

/// What one [`scaling_run`] measured
#[derive(Clone, Copy, Debug)]
pub struct ScalingRun {
    /// Operations completed within the measured stretch
    pub ops: u64,
    /// The measured stretch of virtual time
    pub measured: Duration,
}

impl ScalingRun {
    /// Operations completed per virtual second
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 * 1e6 / self.measured.as_micros() as f64
    }
}

/// Builds a cluster of `groups` replica groups under the CPU model, runs the closed-loop
/// load for [`WARM_UP`] and then `measured` of virtual time, and counts the operations
/// completed in the measured stretch
///
/// # Panics
///
/// If the cluster does not settle or an operation is answered unexpectedly.
pub fn scaling_run(groups: usize, measured: Duration) -> ScalingRun {
    let mut config = ShardedConfig::new(SEED);
    config.shards = SHARDS;
    config.gids = (0..groups).map(|i| 100 + i as GroupId).collect();
    config.cpu_per_event = Some(CPU_PER_EVENT);
    let mut cluster = ShardedCluster::new(config);
    let gids = cluster.config.gids.clone();
    cluster.join(&gids).expect("the groups join");
    cluster
        .settle(Duration::from_secs(20))
        .expect("the configuration settles");
    let keys = cluster.key_per_shard();
    let mut load = KvWorkload::new(&mut cluster, USERS, Workload::Random(keys), None);
    load.think = Duration::ZERO;
    load.run_for(&mut cluster, WARM_UP).expect("warm-up");
    let before = load.completed;
    load.run_for(&mut cluster, measured).expect("measured load");
    ScalingRun {
        ops: load.completed - before,
        measured,
    }
}

/// Runs every group count once and prints the table of operations per virtual second
fn print_table() {
    eprintln!();
    eprintln!(
        "Sharded cluster: {SHARDS} shards, {USERS} closed-loop users, {} us CPU per event, \
         ops completed in {} ms of virtual time:",
        CPU_PER_EVENT.as_micros(),
        MEASURED.as_millis()
    );
    eprintln!(
        "{:>6} | {:>8} | {:>13} | {:>12}",
        "groups", "ops", "ops/virtual s", "wall ms/run"
    );
    eprintln!("{:-<6}-+-{:-<8}-+-{:-<13}-+-{:-<12}", "", "", "", "");
    for groups in GROUPS {
        let started = WallInstant::now();
        let run = scaling_run(groups, MEASURED);
        let wall = started.elapsed();
        eprintln!(
            "{groups:>6} | {:>8} | {:>13.0} | {:>12.0}",
            run.ops,
            run.ops_per_sec(),
            wall.as_secs_f64() * 1e3
        );
    }
    eprintln!();
}

/// `sharded/groups/{n}`: see the module documentation; the table is printed once, by the
/// first of these benchmarks the filter selects
pub fn scaling(c: &mut Criterion) {
    static TABLE: Once = Once::new();
    let mut group = c.benchmark_group("sharded");
    group.sample_size(10);
    for groups in GROUPS {
        group.bench_with_input(BenchmarkId::new("groups", groups), &groups, |b, &groups| {
            TABLE.call_once(print_table);
            b.iter(|| black_box(scaling_run(groups, MEASURED).ops));
        });
    }
    group.finish();
}
