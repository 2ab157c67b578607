//! The multi-group simulator itself: determinism, snapshots of groups sharing nodes, crashes
//! of whole nodes, and clerks on a lossy network

use shale_core::controller::ControllerCommand;
use shale_core::group::GroupState;
use shale_core::shard::{KvOp, KvResult, ShardLimits};
use shale_core::time::Duration;

use super::*;
use crate::NetworkConfig;

const BUDGET: Duration = Duration::from_secs(20);
const SHARDS: u32 = 10;

/// The controller on nodes 1-3 and replica group 100 on nodes 2-4 (sharing nodes 2 and 3),
/// both snapshotting often; group 100 has joined
fn shared_nodes(seed: u64) -> MultiSim {
    let mut config = MultiConfig::new(seed, 4);
    config.raft.snapshot_threshold_bytes = 400;
    config.raft.snapshot_trailing_bytes = 0;
    config.raft.snapshot_chunk_bytes = 128;
    let mut sim = MultiSim::with_controller(config, &[1, 2, 3], SHARDS);
    let spec = MachineSpec::Group {
        gid: 100,
        shards: SHARDS,
        limits: ShardLimits::default(),
    };
    sim.add_group(100, &[2, 3, 4], spec);
    sim.controller_call(ControllerCommand::Join(vec![(100, vec![2, 3, 4])]), BUDGET)
        .unwrap()
        .unwrap();
    sim
}

/// Runs `op` through `client` until it is done
fn kv(sim: &mut MultiSim, client: &mut KvClient, op: KvOp) -> KvResult {
    client.start(sim, op);
    let end = sim.now() + BUDGET;
    loop {
        if let Some(result) = client.poll(sim) {
            return result.unwrap();
        }
        assert!(sim.now() < end, "no answer within {BUDGET}");
        sim.run_for(CLERK_POLL);
    }
}

/// Puts `count` keys and queries the controller as often while crashing and restarting
/// nodes; returns the trace hash
fn workload(seed: u64, count: u64) -> u64 {
    let mut sim = shared_nodes(seed);
    let mut client = KvClient::new(&mut sim, SHARDS);
    for i in 1..=count {
        if i % 7 == 0 {
            let victim = sim.fault_rng().range(1, 5);
            sim.crash(victim);
            sim.run_for(Duration::from_millis(300));
            sim.restart(victim);
        }
        let latest = sim
            .controller_call(ControllerCommand::Query(None), BUDGET)
            .unwrap()
            .unwrap();
        assert_eq!(latest.num, 1);
        let put = KvOp::Put {
            key: format!("key-{i}").into_bytes(),
            value: format!("value-{i}").into_bytes(),
        };
        assert_eq!(kv(&mut sim, &mut client, put), KvResult::Done);
    }
    sim.run_for(Duration::from_secs(3));
    let states: Vec<_> = [2, 3, 4]
        .iter()
        .map(|&id| sim.machine::<GroupState>(100, id).unwrap().clone())
        .collect();
    assert!(states.iter().all(|s| s == &states[0]), "replicas differ");
    assert_eq!(
        states[0].served_keys() as u64,
        count,
        "every key put is held"
    );
    for (gid, voters) in [(CONTROLLER, [1, 2, 3]), (100, [2, 3, 4])] {
        let taken: u64 = voters
            .iter()
            .map(|&id| sim.snapshot_counts(gid, id).0)
            .sum();
        assert!(taken > 0, "g{gid} never snapshotted");
    }
    sim.trace_hash()
}

#[test]
fn groups_share_nodes_snapshot_and_survive_crashes() {
    for seed in 0..5 {
        workload(seed, 30);
    }
}

#[test]
fn a_seed_replays_identically() {
    assert_eq!(workload(11, 15), workload(11, 15));
    assert_ne!(workload(11, 15), workload(12, 15));
}

#[test]
fn a_lagging_replica_catches_up_by_snapshot() {
    let mut config = MultiConfig::new(3, 3);
    config.raft.snapshot_threshold_bytes = 400;
    config.raft.snapshot_trailing_bytes = 0;
    config.raft.snapshot_chunk_bytes = 128;
    let mut sim = MultiSim::with_controller(config, &[1, 2, 3], SHARDS);
    sim.disconnect(3);
    for gid in 1..=20 {
        sim.controller_call(ControllerCommand::Join(vec![(gid, vec![1])]), BUDGET)
            .unwrap()
            .unwrap();
    }
    sim.connect(3);
    sim.run_until(BUDGET, "node 3 to catch up", |s| {
        s.controller(3).is_some_and(|c| c.latest().num == 20)
    })
    .unwrap();
    assert!(
        sim.snapshot_counts(CONTROLLER, 3).1 > 0,
        "node 3 installed no snapshot"
    );
    assert!(sim.checker(CONTROLLER).unwrap().commit_index() > 20);
}

#[test]
fn clerks_get_answers_on_a_lossy_network() {
    let (mut attempts, mut duplicates) = (0, 0);
    for seed in 0..20 {
        let mut config = MultiConfig::new(seed, 3);
        config.network = NetworkConfig::unreliable();
        let mut sim = MultiSim::with_controller(config, &[1, 2, 3], SHARDS);
        let mut clerk = Clerk::new(&mut sim);
        for gid in 1..=10 {
            let join = ControllerCommand::Join(vec![(gid, vec![gid])]);
            let c = clerk.call(&mut sim, join, BUDGET).unwrap().unwrap();
            assert!(c.groups.contains_key(&gid));
        }
        attempts += clerk.attempts();
        duplicates += clerk.duplicates();
        let latest = sim
            .controller_call(ControllerCommand::Query(None), BUDGET)
            .unwrap()
            .unwrap();
        assert_eq!(latest.groups.len(), 10, "seed {seed}");
        assert!(sim.network_stats().dropped > 0);
    }
    // Lost requests and replies made clerks retry, and some retries found their join applied.
    assert!(attempts > 200, "{attempts} attempts");
    assert!(duplicates > 0, "no retried join was a duplicate");
}

#[test]
fn a_sharded_seed_replays_identically() {
    let (a, b) = (run_sharded_seed(5).unwrap(), run_sharded_seed(5).unwrap());
    assert_eq!(a, b);
    assert!(a.client_ops > 0);
}
