//! Sharded KV scenarios under faults: concurrent users while groups join, leave and restart,
//! an unreliable network checked for linearizability, migrations stuck behind a group that is
//! down (which must not block what can be served), and a user-level run with every fault kind
//!
//! Ported in our own words from the classic sharded KV tests (concurrent, unreliable and the
//! two availability challenges). Same cluster as `shardkv.rs`: three controller replicas and
//! groups 100, 101 and 102 of three replicas each, 10 shards. Time bounds are multiples of
//! [`ELECTION_TIMEOUT`].

use shale_core::controller::{Configuration, GroupId};
use shale_core::shard::{KvOp, KvResult};
use shale_core::time::Duration;
use shale_sim::multi::{KvWorkload, ShardedCluster, Workload, run_sharded_seed};
use shale_sim::{NetworkConfig, SimError};
use shale_tests::{ELECTION_TIMEOUT, ensure, for_each_seed, seeds, sharded_config};

/// How long a stuck migration is given before availability is checked
fn grace() -> Duration {
    ELECTION_TIMEOUT.saturating_mul(2)
}

/// Time a call that must be served may take
fn serve_budget() -> Duration {
    ELECTION_TIMEOUT.saturating_mul(10)
}

/// Runs the users for a random 100-500 ms
fn gap(c: &mut ShardedCluster, users: &mut KvWorkload) -> Result<(), SimError> {
    let ms = c.sim.fault_rng().range(100, 500);
    users.run_for(c, Duration::from_millis(ms))
}

#[test]
fn concurrent() {
    for_each_seed("concurrent", |seed| concurrent_scenario(seed, false));
}

#[test]
fn concurrent_on_shared_nodes() {
    for_each_seed("concurrent_on_shared_nodes", |seed| {
        concurrent_scenario(seed, true)
    });
}

/// Joins, leaves and a restart of every group under appending users (`shared`: every group
/// on the same three nodes, as `shale up` places them)
fn concurrent_scenario(seed: u64, shared: bool) -> Result<(), SimError> {
    {
        let mut config = sharded_config(seed);
        config.shared_nodes = shared;
        config.raft.snapshot_threshold_bytes = 4096;
        config.raft.snapshot_trailing_bytes = 0;
        let mut c = ShardedCluster::new(config);
        c.join(&[100])?;
        let mut users = KvWorkload::new(&mut c, 10, Workload::OwnKeyAppends, None);
        gap(&mut c, &mut users)?;
        c.join(&[101])?;
        gap(&mut c, &mut users)?;
        c.join(&[102])?;
        gap(&mut c, &mut users)?;
        c.leave(&[100])?;
        gap(&mut c, &mut users)?;
        for gid in [100, 101, 102] {
            c.shutdown_group(gid);
        }
        // On shared nodes the controller went down with the groups: the leave waits for the
        // restart. On nodes of their own, the groups are down while the configuration moves.
        if !shared {
            c.leave(&[102])?;
            gap(&mut c, &mut users)?;
        }
        for gid in [100, 101, 102] {
            c.start_group(gid);
        }
        if shared {
            c.leave(&[102])?;
        }
        gap(&mut c, &mut users)?;
        c.join(&[100])?;
        gap(&mut c, &mut users)?;
        c.leave(&[101])?;
        gap(&mut c, &mut users)?;
        c.join(&[101])?;
        users.run_for(&mut c, Duration::from_secs(1))?;
        users.drain(&mut c, ELECTION_TIMEOUT.saturating_mul(40))?;
        ensure(&c.sim, users.completed > 50, || {
            format!("only {} appends completed", users.completed)
        })?;
        users.check_appends(&mut c)
    }
}

#[test]
fn unreliable() {
    for_each_seed("unreliable", |seed| unreliable_scenario(seed, false));
}

#[test]
fn unreliable_on_shared_nodes() {
    for_each_seed("unreliable_on_shared_nodes", |seed| {
        unreliable_scenario(seed, true)
    });
}

/// Joins and leaves on a lossy network under random users, checked linearizable
fn unreliable_scenario(seed: u64, shared: bool) -> Result<(), SimError> {
    {
        let mut config = sharded_config(seed);
        config.shared_nodes = shared;
        config.network = NetworkConfig::unreliable();
        config.raft.snapshot_threshold_bytes = 4096;
        config.raft.snapshot_trailing_bytes = 512;
        let mut c = ShardedCluster::new(config);
        let keys = c.key_per_shard();
        c.join(&[100])?;
        let give_up = ELECTION_TIMEOUT.saturating_mul(6);
        let mut users = KvWorkload::new(&mut c, 10, Workload::Random(keys), Some(give_up));
        let half = ELECTION_TIMEOUT;
        for (join, gid) in [
            (true, 101),
            (true, 102),
            (false, 100),
            (false, 101),
            (true, 101),
            (true, 100),
        ] {
            users.run_for(&mut c, half)?;
            if join {
                c.join(&[gid])?;
            } else {
                c.leave(&[gid])?;
            }
        }
        users.run_for(&mut c, Duration::from_secs(1))?;
        users.drain(&mut c, ELECTION_TIMEOUT.saturating_mul(20))?;
        ensure(&c.sim, users.completed >= 30, || {
            format!("only {} operations completed", users.completed)
        })?;
        users.check_linearizable(&c)
    }
}

/// The keys (one per shard) that `gid` owns in `config`
fn keys_of(c: &ShardedCluster, config: &Configuration, gid: GroupId) -> Vec<Vec<u8>> {
    c.key_per_shard()
        .into_iter()
        .filter(|k| config.owner(c.shard_of(k)) == gid)
        .collect()
}

/// Whether some running replica of group 101 still waits for a shard from group 100 (the
/// migration really is stuck)
fn stuck(c: &ShardedCluster) -> bool {
    c.groups[&101]
        .iter()
        .filter_map(|&id| c.state(101, id))
        .any(|s| s.pulls().iter().any(|&(_, from)| from == 100))
}

/// Every key in `keys` can be read as `value` and written, each call within the budget
fn served(
    c: &mut ShardedCluster,
    keys: &[Vec<u8>],
    value: &[u8],
    write: &[u8],
) -> Result<(), SimError> {
    for key in keys {
        let mut client = c.client();
        let got = c.try_call(&mut client, KvOp::Get { key: key.clone() }, serve_budget());
        ensure(
            &c.sim,
            got == Some(Ok(KvResult::Value(Some(value.to_vec())))),
            || format!("key {key:?} answered {got:?}, expected {value:?}"),
        )?;
        let put = KvOp::Put {
            key: key.clone(),
            value: write.to_vec(),
        };
        let got = c.try_call(&mut client, put, serve_budget());
        ensure(&c.sim, got == Some(Ok(KvResult::Done)), || {
            format!("put to {key:?} answered {got:?}")
        })?;
    }
    Ok(())
}

#[test]
fn unaffected() {
    for_each_seed("unaffected", |seed| {
        let mut config = sharded_config(seed);
        config.network = NetworkConfig::unreliable();
        let mut c = ShardedCluster::new(config);
        c.join(&[100])?;
        for key in c.key_per_shard() {
            c.put(&key, b"100")?;
        }
        let config = c.join(&[101])?;
        c.settle(ELECTION_TIMEOUT.saturating_mul(40))?;
        let own = keys_of(&c, &config, 101);
        for key in &own {
            c.put(key, b"101")?;
        }
        // Group 100 goes down and leaves: 101 can never fetch its shards, yet keeps serving
        // the ones it already had.
        c.shutdown_group(100);
        c.leave(&[100])?;
        c.sim.run_for(grace());
        served(&mut c, &own, b"101", b"101-again")?;
        ensure(&c.sim, stuck(&c), || {
            format!("group 101 is not waiting for group 100\n{}", c.describe())
        })
    });
}

#[test]
fn partial() {
    for_each_seed("partial", |seed| {
        let mut config = sharded_config(seed);
        config.network = NetworkConfig::unreliable();
        let mut c = ShardedCluster::new(config);
        let before = c.join(&[100, 101, 102])?;
        for key in c.key_per_shard() {
            c.put(&key, b"v")?;
        }
        c.settle(ELECTION_TIMEOUT.saturating_mul(40))?;
        // 100 goes down; 100 and 102 leave. 101 gets 102's shards but never 100's, and must
        // serve what it got (and what it had) meanwhile.
        c.shutdown_group(100);
        c.leave(&[100, 102])?;
        c.sim.run_for(grace());
        let mut reachable = keys_of(&c, &before, 102);
        reachable.extend(keys_of(&c, &before, 101));
        served(&mut c, &reachable, b"v", b"w")?;
        ensure(&c.sim, stuck(&c), || {
            format!("group 101 is not waiting for group 100\n{}", c.describe())
        })
    });
}

#[test]
fn cluster_with_every_fault() {
    for seed in seeds().into_iter().take(3) {
        match run_sharded_seed(seed) {
            Ok(report) => assert!(report.client_ops > 100, "seed {seed}: {report:?}"),
            Err(e) => {
                panic!("{e}\nreplay: cargo run -p shale-sim --release -- --sharded --seed {seed}")
            }
        }
    }
}
