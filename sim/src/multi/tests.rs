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
    assert_eq!(states[0].served_keys(), count, "every key put is held");
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

/// A follower that installed a snapshot from its leader serves nothing from its old state
/// while the snapshot is being restored: a linearizable read through it waits for the restore
/// (it raised its applied index to the snapshot's at once, so a read index at or below it
/// would otherwise be answered from the state before the snapshot)
#[test]
fn a_follower_restoring_a_snapshot_serves_no_read_from_its_old_state() {
    let mut config = MultiConfig::new(4, 4);
    config.raft.snapshot_threshold_bytes = 400;
    config.raft.snapshot_trailing_bytes = 0;
    config.raft.snapshot_chunk_bytes = 128;
    // Restoring takes seconds: a long window for a stale read.
    config.worker_per_mib = Some(Duration::from_secs(1_000));
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
    let mut client = KvClient::new(&mut sim, SHARDS);
    let put = |value: &str| KvOp::Put {
        key: b"k".to_vec(),
        value: value.as_bytes().to_vec(),
    };
    assert_eq!(kv(&mut sim, &mut client, put("old")), KvResult::Done);
    sim.run_for(Duration::from_secs(1));
    let leader = sim.leader_of(100).unwrap();
    let lagging = [2, 3, 4].into_iter().find(|&n| n != leader).unwrap();
    sim.disconnect(lagging);
    for i in 0..40 {
        let filler = KvOp::Put {
            key: format!("filler-{i}").into_bytes(),
            value: vec![b'f'; 64],
        };
        assert_eq!(kv(&mut sim, &mut client, filler), KvResult::Done);
    }
    assert_eq!(kv(&mut sim, &mut client, put("new")), KvResult::Done);
    // The leader snapshots everything it applied (nothing comes after the snapshot, so a
    // read index can equal its index), and once it has compacted what the lagging replica
    // misses, only that snapshot helps.
    sim.run_for(Duration::from_secs(1));
    let now = sim.local_time(leader);
    let host = sim.nodes[(leader - 1) as usize].host.as_mut().unwrap();
    let asked = host.group_admin(now, &shale_core::node::GroupAdmin::Snapshot { gid: 100 });
    assert!(asked.is_ok(), "{asked:?}");
    sim.after_event(leader);
    let commit = sim.raft(100, leader).unwrap().commit_index();
    sim.run_until(
        BUDGET.saturating_mul(3),
        "the leader to compact its log",
        |s| {
            s.raft(100, leader)
                .is_some_and(|r| r.snapshot().is_some_and(|m| m.last.index == commit))
        },
    )
    .unwrap();
    sim.connect(lagging);
    sim.run_until(
        BUDGET.saturating_mul(3),
        "the lagging replica to install a snapshot",
        |s| {
            s.replica(100, lagging)
                .is_some_and(|r| r.restore_wanted().is_some())
        },
    )
    .unwrap();
    // A read sent straight to the restoring follower.
    let addr = CLIENT_BASE + 999;
    let token = 424_242;
    let get = AppMessage::Client {
        gid: 100,
        token,
        request: shale_core::shard::ClientRequest {
            stamp_ms: 0,
            client: 999,
            seq: 1,
            op: KvOp::Get { key: b"k".to_vec() },
        },
    };
    sim.send_app(addr, lagging, &get);
    let end = sim.now() + Duration::from_secs(60);
    let answer = loop {
        let inbox = sim.take_inbox(addr);
        if let Some(outcome) = inbox.into_iter().find_map(|m| match m {
            AppMessage::Reply { token: t, outcome } if t == token => Some(outcome),
            _ => None,
        }) {
            break outcome;
        }
        assert!(sim.now() < end, "no answer");
        sim.run_for(CLERK_POLL);
    };
    match answer {
        Ok(KvResult::Value(v)) => assert_eq!(v.as_deref(), Some(&b"new"[..]), "a stale read"),
        other => assert!(
            matches!(other, Err(shale_core::group::GroupError::Retry)),
            "{other:?}"
        ),
    }
}
