//! The multi-group simulator itself: determinism, snapshots across groups sharing nodes,
//! crashes of whole nodes, and clerks on a lossy network

use shale_core::controller::{ControllerCommand, ShardController};
use shale_core::time::Duration;

use super::*;
use crate::NetworkConfig;

const BUDGET: Duration = Duration::from_secs(20);

/// Two controller groups sharing nodes 2 and 3, snapshotting often
fn two_groups(seed: u64) -> MultiSim {
    let mut config = MultiConfig::new(seed, 4);
    config.raft.snapshot_threshold_bytes = 400;
    config.raft.snapshot_trailing_bytes = 0;
    config.raft.snapshot_chunk_bytes = 128;
    let mut sim = MultiSim::with_controller(config, &[1, 2, 3], 10);
    sim.add_group(7, &[2, 3, 4], MachineSpec::Controller { shards: 4 });
    sim
}

fn join(gid: u64) -> HostedCommand {
    HostedCommand::Controller(ControllerCommand::Join(vec![(gid, vec![gid])]))
}

/// Joins `count` groups on both controllers while crashing and restarting nodes; returns the
/// trace hash
fn workload(seed: u64, count: u64) -> u64 {
    let mut sim = two_groups(seed);
    let mut other = Clerk::new(7);
    for gid in 1..=count {
        if gid % 7 == 0 {
            let victim = sim.fault_rng().range(1, 5);
            sim.crash(victim);
            sim.run_for(Duration::from_millis(300));
            sim.restart(victim);
        }
        sim.controller_call(ControllerCommand::Join(vec![(gid, vec![1])]), BUDGET)
            .unwrap()
            .unwrap();
        let out = other.call(&mut sim, join(gid), BUDGET).unwrap();
        assert!(matches!(out, HostedOutput::Controller(Ok(ref c)) if c.groups.contains_key(&gid)));
    }
    sim.run_for(Duration::from_secs(3));
    for (gid, voters) in [(CONTROLLER, [1, 2, 3]), (7, [2, 3, 4])] {
        let latest: Vec<_> = voters
            .iter()
            .map(|&id| {
                sim.machine::<ShardController>(gid, id)
                    .unwrap()
                    .latest()
                    .clone()
            })
            .collect();
        assert!(
            latest.iter().all(|c| c == &latest[0] && c.num == count),
            "g{gid}: {latest:?}"
        );
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
    let mut sim = two_groups(3);
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
        let mut sim = MultiSim::with_controller(config, &[1, 2, 3], 10);
        let mut clerk = Clerk::new(CONTROLLER);
        for gid in 1..=10 {
            let c = clerk.call(&mut sim, join(gid), BUDGET).unwrap();
            let c = c.into_controller().unwrap().unwrap();
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
