//! Sharded KV at scale: shards of megabytes move between replica groups while the simulator
//! charges each node's loop CPU time per event and per byte it handles, so a design that does
//! work proportional to the data on the loop delays heartbeats and shows up as elections
//!
//! Each scenario loads every shard with hundreds of keys of kilobytes, then changes the
//! configuration. Fault-free variants must move every shard with no election at all; faulty
//! variants (a lossy network, crashes of either side's leader in the middle of a transfer)
//! must lose nothing acknowledged and keep every client history linearizable. These run
//! [`SEEDS`] seeds by default (`SHALE_SEEDS=N` for more).

use std::collections::BTreeMap;

use shale_core::controller::GroupId;
use shale_core::group::{GroupState, ShardStatus};
use shale_core::time::Duration;
use shale_sim::multi::{KvWorkload, ShardedCluster, ShardedConfig, Workload};
use shale_sim::{NetworkConfig, SimError};
use shale_tests::{ensure, for_seeds, seeds_or, sharded_config};

/// Seeds each scenario runs by default
const SEEDS: u64 = 4;
/// Keys written to every shard
const KEYS_PER_SHARD: usize = 300;
/// Bytes of every value
const VALUE_BYTES: usize = 8 * 1024;

type Data = BTreeMap<Vec<u8>, Vec<u8>>;

/// Groups 100, 101 and 102 over 10 shards of about 2.4 MiB each, values up to 64 KiB, and a
/// CPU model: 20 us per event and 10 ms per MiB handled (a loop that touched a whole shard in
/// one step would stall for about 25 ms per shard, and a snapshot of a group for hundreds)
fn scale_config(seed: u64) -> ShardedConfig {
    let mut config = sharded_config(seed);
    config.limits.kv.max_value_bytes = 64 * 1024;
    config.cpu_per_event = Some(Duration::from_micros(20));
    config.cpu_per_mib = Some(Duration::from_millis(10));
    config.call_budget = Duration::from_secs(60);
    // As the program's nodes do: followers a few chunks behind catch up from the log, and a
    // join or leave moves one shard with data per configuration.
    config.raft.catch_up_log_bytes = 64 << 20;
    config.raft.snapshot_log_percent = 50;
    config.max_moves_per_config = 1;
    config
}

/// A cluster with `joined` in and every shard loaded; the data written
fn loaded(config: ShardedConfig, joined: &[GroupId]) -> Result<(ShardedCluster, Data), SimError> {
    let mut c = ShardedCluster::new(config);
    c.join(joined)?;
    let expected = c.load(KEYS_PER_SHARD, VALUE_BYTES, 256 * 1024, 8)?;
    c.settle(Duration::from_secs(30))?;
    Ok((c, expected))
}

/// Keys every group received by hand-over, as its first running replica applied them
fn received(c: &ShardedCluster) -> u64 {
    c.groups
        .iter()
        .filter_map(|(&gid, ids)| ids.iter().find_map(|&id| c.state(gid, id)))
        .map(|s: &GroupState| s.received.keys)
        .sum()
}

/// Shards whose owner differs between the two configurations
fn moved_shards(c: &ShardedCluster, before: u64) -> Result<u64, SimError> {
    let latest = c.controller_latest().cloned();
    let first = (1..=3).find_map(|id| {
        c.sim
            .controller(id)
            .and_then(|ctl| ctl.config(before).cloned())
    });
    match (first, latest) {
        (Some(a), Some(b)) => Ok(a
            .shards
            .iter()
            .zip(&b.shards)
            .filter(|(x, y)| x != y)
            .count() as u64),
        _ => Err(c
            .sim
            .error("no controller replica knows the configurations".into())),
    }
}

/// No group (nor the controller) had an election between `before` and now
fn no_election(c: &ShardedCluster, before: &BTreeMap<GroupId, u64>) -> Result<(), SimError> {
    let after = c.terms();
    ensure(&c.sim, *before == after, || {
        format!("elections during the moves: terms {before:?} became {after:?}")
    })
}

/// The configuration number now
fn config_num(c: &ShardedCluster) -> u64 {
    c.controller_latest().map_or(0, |c| c.num)
}

#[test]
fn large_shards_move_to_a_joining_group_with_no_election() {
    let name = "large_shards_move_to_a_joining_group_with_no_election";
    for_seeds(name, seeds_or(SEEDS), |seed| {
        let (mut c, expected) = loaded(scale_config(seed), &[100])?;
        let (terms, num) = (c.terms(), config_num(&c));
        c.join(&[101])?;
        c.settle(Duration::from_secs(120))?;
        no_election(&c, &terms)?;
        // Each moved key arrived once: a transfer that restarted would count keys twice.
        let moved = moved_shards(&c, num)? * KEYS_PER_SHARD as u64;
        let got = received(&c);
        ensure(&c.sim, got == moved && moved > 0, || {
            format!("groups received {got} keys by hand-over, {moved} moved")
        })?;
        c.check_data(&expected)
    });
}

#[test]
fn large_shards_move_when_a_group_leaves_with_no_election() {
    let name = "large_shards_move_when_a_group_leaves_with_no_election";
    for_seeds(name, seeds_or(SEEDS), |seed| {
        let (mut c, expected) = loaded(scale_config(seed), &[100, 101, 102])?;
        let terms = c.terms();
        c.leave(&[101])?;
        c.settle(Duration::from_secs(120))?;
        c.leave(&[102])?;
        c.settle(Duration::from_secs(120))?;
        no_election(&c, &terms)?;
        c.check_data(&expected)
    });
}

#[test]
fn ten_moves_under_client_load_with_no_election_and_a_linearizable_history() {
    let name = "ten_moves_under_client_load_with_no_election_and_a_linearizable_history";
    for_seeds(name, seeds_or(SEEDS), |seed| {
        let (mut c, expected) = loaded(scale_config(seed), &[100, 101, 102])?;
        let keys = c.key_per_shard();
        let mut users = KvWorkload::new(&mut c, 8, Workload::Random(keys), None);
        users.think = Duration::from_millis(5);
        let terms = c.terms();
        let gids: Vec<GroupId> = c.groups.keys().copied().collect();
        for _ in 0..10 {
            users.run_for(&mut c, Duration::from_millis(300))?;
            let shard = c.sim.fault_rng().range(0, u64::from(c.config.shards)) as u32;
            let owner = c.controller_latest().map_or(0, |cfg| cfg.owner(shard));
            let others: Vec<GroupId> = gids.iter().copied().filter(|&g| g != owner).collect();
            let to = others[c.sim.fault_rng().range(0, others.len() as u64) as usize];
            c.move_shard(shard, to)?;
        }
        users.run_for(&mut c, Duration::from_secs(1))?;
        users.drain(&mut c, Duration::from_secs(30))?;
        c.settle(Duration::from_secs(120))?;
        no_election(&c, &terms)?;
        ensure(&c.sim, users.completed > 100, || {
            format!("only {} operations completed", users.completed)
        })?;
        // Moving shards stay served (keys arrived, or fetched ahead of their chunk).
        let worst = users.max_latency;
        ensure(&c.sim, worst < Duration::from_millis(500), || {
            format!("an operation waited {worst} while shards moved")
        })?;
        users.check_linearizable(&c)?;
        c.check_data(&expected)
    });
}

/// Runs until some running replica of `gid` is part-way through pulling a shard
fn until_mid_transfer(c: &mut ShardedCluster, gid: GroupId) -> Result<(), SimError> {
    let ids = c.groups[&gid].clone();
    c.sim
        .run_until(Duration::from_secs(60), "a transfer under way", |s| {
            ids.iter().any(|&id| {
                s.machine::<GroupState>(gid, id).is_some_and(|g| {
                    g.shards.values().any(|slot| {
                        matches!(slot.status, ShardStatus::Pulling { .. })
                            && slot.pull.keys > 0
                            && slot
                                .pull
                                .total
                                .as_ref()
                                .is_some_and(|t| slot.pull.keys < t.keys)
                    })
                })
            })
        })
}

#[test]
fn a_transfer_resumes_after_either_sides_leader_crashes_mid_way() {
    let name = "a_transfer_resumes_after_either_sides_leader_crashes_mid_way";
    for_seeds(name, seeds_or(SEEDS), |seed| {
        let (mut c, expected) = loaded(scale_config(seed), &[100])?;
        let num = config_num(&c);
        c.join(&[101])?;
        // Both sides' leaders die part-way through a shard; each group elects another, which
        // must pick the transfer up where it stood.
        until_mid_transfer(&mut c, 101)?;
        let receiver = c
            .sim
            .leader_of(101)
            .ok_or_else(|| c.sim.error("no leader".into()))?;
        let sender = c
            .sim
            .leader_of(100)
            .ok_or_else(|| c.sim.error("no leader".into()))?;
        c.sim.crash(receiver);
        c.sim.crash(sender);
        c.sim.run_for(Duration::from_secs(3));
        c.sim.restart(receiver);
        c.sim.restart(sender);
        c.settle(Duration::from_secs(180))?;
        // Resumed, not restarted: every moved key arrived exactly once.
        let moved = moved_shards(&c, num)? * KEYS_PER_SHARD as u64;
        let got = received(&c);
        ensure(&c.sim, got == moved, || {
            format!("groups received {got} keys by hand-over, {moved} moved")
        })?;
        c.check_data(&expected)
    });
}

#[test]
fn moves_on_a_lossy_network_with_crashes_lose_nothing_acknowledged() {
    let name = "moves_on_a_lossy_network_with_crashes_lose_nothing_acknowledged";
    for_seeds(name, seeds_or(SEEDS), |seed| {
        let (mut c, expected) = loaded(scale_config(seed), &[100])?;
        let keys = c.key_per_shard();
        let mut users = KvWorkload::new(
            &mut c,
            6,
            Workload::Random(keys),
            Some(Duration::from_secs(5)),
        );
        users.think = Duration::from_millis(10);
        c.sim.set_network(NetworkConfig::unreliable());
        c.join(&[101])?;
        for round in 0..4 {
            users.run_for(&mut c, Duration::from_millis(700))?;
            // Crash a random node of a random group, and bring it back a little later.
            let gid = if round % 2 == 0 { 100 } else { 101 };
            let ids = c.groups[&gid].clone();
            let victim = ids[c.sim.fault_rng().range(0, ids.len() as u64) as usize];
            c.sim.crash(victim);
            users.run_for(&mut c, Duration::from_millis(700))?;
            c.sim.restart(victim);
            if round == 1 {
                c.join(&[102])?;
            }
        }
        c.sim.set_network(NetworkConfig::reliable());
        users.run_for(&mut c, Duration::from_secs(1))?;
        c.settle(Duration::from_secs(180))?;
        users.drain(&mut c, Duration::from_secs(60))?;
        users.check_linearizable(&c)?;
        c.check_data(&expected)
    });
}
