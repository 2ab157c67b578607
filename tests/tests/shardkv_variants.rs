//! More sharded KV scenarios under faults: users appending while shards move between every
//! pair of groups and groups restart, repeated configuration changes around full-cluster
//! restarts, and joins and leaves on an unreliable network checked key by key and append by
//! append
//!
//! Ported in our own words from the remaining concurrent and unreliable variants of the classic
//! sharded KV tests (see `shardkv_faults.rs` for the first of each). Same cluster as
//! `shardkv.rs`: three controller replicas and groups 100, 101 and 102 of three replicas each,
//! 10 shards. Time bounds are multiples of [`ELECTION_TIMEOUT`].

use std::collections::BTreeMap;

use shale_core::controller::GroupId;
use shale_core::time::Duration;
use shale_sim::multi::{KvWorkload, ShardedCluster, Workload};
use shale_sim::{NetworkConfig, SimError};
use shale_tests::{ELECTION_TIMEOUT, ensure, for_each_seed, sharded_config};

/// Time the users' last operations get to finish once the scenario is over
fn drain_budget() -> Duration {
    ELECTION_TIMEOUT.saturating_mul(40)
}

/// One configuration change: `true` joins the group, `false` has it leave
type Change = (bool, GroupId);

/// Applies `changes` in order, each in its own configuration
fn reconfigure(c: &mut ShardedCluster, changes: &[Change]) -> Result<(), SimError> {
    for &(join, gid) in changes {
        if join {
            c.join(&[gid])?;
        } else {
            c.leave(&[gid])?;
        }
    }
    Ok(())
}

/// Runs the users for a random `0..max_ms` milliseconds drawn from the fault rng
fn random_gap(c: &mut ShardedCluster, users: &mut KvWorkload, max_ms: u64) -> Result<(), SimError> {
    let ms = c.sim.fault_rng().range(0, max_ms);
    users.run_for(c, Duration::from_millis(ms))
}

/// Stops the users, lets their operations finish, requires at least `minimum` of them and
/// then every user's appends, each once, in order
fn finish_appends(
    c: &mut ShardedCluster,
    users: &mut KvWorkload,
    minimum: u64,
) -> Result<(), SimError> {
    users.drain(c, drain_budget())?;
    ensure(&c.sim, users.completed >= minimum, || {
        format!("only {} appends completed", users.completed)
    })?;
    users.check_appends(c)
}

#[test]
fn concurrent_two_sources() {
    for_each_seed("concurrent_two_sources", |seed| {
        let mut c = ShardedCluster::new(sharded_config(seed));
        for gid in [101, 100, 102] {
            c.join(&[gid])?;
        }
        let mut users = KvWorkload::new(&mut c, 10, Workload::OwnKeyAppends, None);
        users.think = Duration::from_millis(50);
        let pause = ELECTION_TIMEOUT.saturating_mul(6);
        users.run_for(&mut c, pause)?;
        // Everything gathers at 101 (fetched from two sources at once), spreads from 101 to
        // 100 and 102, then gathers at 101 again.
        let rounds: [&[Change]; 3] = [
            &[(false, 100), (false, 102)],
            &[(true, 100), (true, 102), (false, 101)],
            &[(true, 101), (false, 100), (false, 102)],
        ];
        for changes in rounds {
            reconfigure(&mut c, changes)?;
            users.run_for(&mut c, pause)?;
        }
        // The owner and a group that just handed its shards over go down together and must
        // pick up where their disks left off.
        c.shutdown_group(101);
        c.shutdown_group(102);
        users.run_for(&mut c, ELECTION_TIMEOUT.saturating_mul(2))?;
        c.start_group(101);
        c.start_group(102);
        users.run_for(&mut c, ELECTION_TIMEOUT.saturating_mul(4))?;
        finish_appends(&mut c, &mut users, 100)
    });
}

#[test]
fn concurrent_full_restarts() {
    for_each_seed("concurrent_full_restarts", |seed| {
        let mut config = sharded_config(seed);
        config.raft.snapshot_threshold_bytes = 1024;
        config.raft.snapshot_trailing_bytes = 0;
        let mut c = ShardedCluster::new(config);
        c.join(&[100])?;
        let mut users = KvWorkload::new(&mut c, 10, Workload::OwnKeyAppends, None);
        users.think = Duration::ZERO;
        let end = c.sim.now() + ELECTION_TIMEOUT.saturating_mul(24);
        let mut loops = 0;
        while c.sim.now() < end {
            reconfigure(&mut c, &[(true, 102), (true, 101)])?;
            random_gap(&mut c, &mut users, 900)?;
            // Every replica of every group goes down and comes straight back from its disks,
            // usually with a migration half done.
            for gid in [100, 101, 102] {
                c.shutdown_group(gid);
            }
            for gid in [100, 101, 102] {
                c.start_group(gid);
            }
            random_gap(&mut c, &mut users, 900)?;
            reconfigure(&mut c, &[(false, 101), (false, 102)])?;
            random_gap(&mut c, &mut users, 900)?;
            loops += 1;
        }
        ensure(&c.sim, loops >= 2, || format!("only {loops} loops ran"))?;
        users.run_for(&mut c, Duration::from_secs(1))?;
        finish_appends(&mut c, &mut users, 50)
    });
}

/// The expected value of every key
type Expected = BTreeMap<Vec<u8>, Vec<u8>>;

/// Every key reads as expected; then each gets one more append (suffix `+round`)
fn check_then_append(
    c: &mut ShardedCluster,
    expected: &mut Expected,
    round: u32,
) -> Result<(), SimError> {
    for (key, value) in expected.iter_mut() {
        let got = c.get(key)?;
        ensure(&c.sim, got.as_ref() == Some(value), || {
            format!("round {round}: key {key:?} holds {got:?}, expected {value:?}")
        })?;
        let suffix = format!("+{round}").into_bytes();
        c.append(key, &suffix)?;
        value.extend(suffix);
    }
    Ok(())
}

/// The unreliable scenarios' config: lossy, reordering network and small snapshots
fn unreliable_config(seed: u64) -> shale_sim::multi::ShardedConfig {
    let mut config = sharded_config(seed);
    config.network = NetworkConfig::unreliable();
    config.raft.snapshot_threshold_bytes = 1024;
    config.raft.snapshot_trailing_bytes = 256;
    config
}

#[test]
fn unreliable_checks() {
    for_each_seed("unreliable_checks", |seed| {
        let mut c = ShardedCluster::new(unreliable_config(seed));
        c.join(&[100])?;
        let mut expected = Expected::new();
        for (i, key) in c.key_per_shard().into_iter().enumerate() {
            let value = format!("v{i}-{seed}").into_bytes();
            c.put(&key, &value)?;
            expected.insert(key, value);
        }
        reconfigure(&mut c, &[(true, 101), (true, 102), (false, 100)])?;
        for round in 0..2 {
            check_then_append(&mut c, &mut expected, round)?;
        }
        reconfigure(&mut c, &[(true, 100), (false, 101)])?;
        for round in 2..4 {
            check_then_append(&mut c, &mut expected, round)?;
        }
        // The last appends must be there too.
        for (key, value) in &expected {
            let got = c.get(key)?;
            ensure(&c.sim, got.as_ref() == Some(value), || {
                format!("key {key:?} holds {got:?}, expected {value:?}")
            })?;
        }
        Ok(())
    });
}

#[test]
fn unreliable_appends() {
    for_each_seed("unreliable_appends", |seed| {
        let mut c = ShardedCluster::new(unreliable_config(seed));
        c.join(&[100])?;
        let mut users = KvWorkload::new(&mut c, 10, Workload::OwnKeyAppends, None);
        let interval = ELECTION_TIMEOUT;
        for change in [
            (true, 101),
            (true, 102),
            (false, 100),
            (false, 101),
            (true, 101),
            (true, 100),
        ] {
            users.run_for(&mut c, interval)?;
            reconfigure(&mut c, &[change])?;
        }
        users.run_for(&mut c, Duration::from_secs(1))?;
        finish_appends(&mut c, &mut users, 30)
    });
}
