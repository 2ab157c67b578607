//! The sans-IO node host driven by hand, with virtual time: a one-node cluster serves
//! operations through its front-door sessions, and an operation that no leader can serve is
//! given up on at its deadline

use std::collections::BTreeMap;

use shale_core::controller::ShardController;
use shale_core::group::{AppMessage, DriverConfig, GroupDriver, GroupState};
use shale_core::node::{
    CONTROLLER_GROUP, GroupAdmin, Host, HostConfig, HostOutput, HostedReplica, OpId, WalDone, WalOp,
};
use shale_core::raft::{Config, Raft, Recovered};
use shale_core::rsm::Replica;
use shale_core::shard::{KvOp, KvResult, ShardCursor, ShardLimits};
use shale_core::time::{Duration, Instant};

const SHARDS: u32 = 8;

fn host(voters: &[u64]) -> Host {
    host_with(voters, None)
}

/// [`host`], giving the new cluster `max_moves` moves per configuration with its first join
fn host_with(voters: &[u64], max_moves: Option<u32>) -> Host {
    let raft = |gid: u64| {
        Raft::new(
            Config::new(1, 7 + gid),
            voters,
            Recovered::default(),
            Instant::ZERO,
        )
        .unwrap()
    };
    let mut replicas = BTreeMap::new();
    replicas.insert(
        CONTROLLER_GROUP,
        HostedReplica::Controller(Box::new(Replica::new(
            raft(CONTROLLER_GROUP),
            ShardController::new(SHARDS),
        ))),
    );
    let state = GroupState::new(1, SHARDS, ShardLimits::default());
    replicas.insert(
        1,
        HostedReplica::Group(Box::new(GroupDriver::new(
            Replica::new(raft(1), state),
            DriverConfig::default(),
            Instant::ZERO,
        ))),
    );
    let mut config = HostConfig::new(1, voters.to_vec(), SHARDS);
    config.bootstrap_groups = vec![(1, voters.to_vec())];
    config.bootstrap_max_moves_per_config = max_moves;
    Host::new(config, replicas, Instant::ZERO)
}

/// Node 1 hosting only replica group 1 (a lone voter), told of `controller_voters`
fn group_only_host(controller_voters: Vec<u64>) -> Host {
    let raft = Raft::new(Config::new(1, 3), &[1], Recovered::default(), Instant::ZERO).unwrap();
    let state = GroupState::new(1, SHARDS, ShardLimits::default());
    let mut replicas = BTreeMap::new();
    replicas.insert(
        1,
        HostedReplica::Group(Box::new(GroupDriver::new(
            Replica::new(raft, state),
            DriverConfig::default(),
            Instant::ZERO,
        ))),
    );
    Host::new(
        HostConfig::new(1, controller_voters, SHARDS),
        replicas,
        Instant::ZERO,
    )
}

/// Runs the host for `duration` in 10 ms steps with a disk that persists at once; returns
/// the finished operations with the time they finished
fn run(host: &mut Host, now: &mut Instant, duration: Duration) -> Vec<(Instant, HostOutput)> {
    let end = *now + duration;
    let mut finished = Vec::new();
    while *now < end {
        *now += Duration::from_millis(10);
        host.handle_timeout(*now);
        loop {
            host.flush(*now);
            let mut more = false;
            while let Some(output) = host.poll_output() {
                match output {
                    HostOutput::Wal {
                        gid,
                        op: WalOp::Write(write),
                    } => {
                        more = true;
                        host.handle_wal(*now, WalDone::Persisted { gid, id: write.id });
                    }
                    HostOutput::Wal { .. } | HostOutput::Raft { .. } | HostOutput::App { .. } => {}
                    done => finished.push((*now, done)),
                }
            }
            if !more {
                break;
            }
        }
    }
    finished
}

fn result_of(finished: &[(Instant, HostOutput)], id: OpId) -> Option<&HostOutput> {
    finished.iter().map(|(_, o)| o).find(|o| match o {
        HostOutput::Done { op, .. } | HostOutput::TimedOut { op } => *op == id,
        _ => false,
    })
}

#[test]
fn a_one_node_cluster_bootstraps_and_serves_its_sessions() {
    let mut host = host(&[1]);
    let mut now = Instant::ZERO;
    let session = host.open_session(1 << 20);
    let put = host
        .start_op(
            now,
            session,
            KvOp::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            },
        )
        .unwrap();
    let finished = run(&mut host, &mut now, Duration::from_secs(5));
    assert!(
        matches!(
            result_of(&finished, put),
            Some(HostOutput::Done {
                result: Ok(KvResult::Done),
                ..
            })
        ),
        "{finished:?}"
    );
    assert_eq!(host.local_config().map(|c| c.num), Some(1));
    let get = host
        .start_op(now, session, KvOp::Get { key: b"k".to_vec() })
        .unwrap();
    let finished = run(&mut host, &mut now, Duration::from_secs(1));
    assert!(
        matches!(
            result_of(&finished, get),
            Some(HostOutput::Done { result: Ok(KvResult::Value(Some(v))), .. }) if v == b"v"
        ),
        "{finished:?}"
    );
}

#[test]
fn an_operation_without_a_leader_times_out_at_its_deadline() {
    // Two voters that never hear from each other: no leader, no configuration.
    let mut host = host(&[1, 2]);
    let mut now = Instant::ZERO;
    let session = host.open_session(1 << 20);
    let get = host
        .start_op(now, session, KvOp::Get { key: b"k".to_vec() })
        .unwrap();
    let started = now;
    let finished = run(&mut host, &mut now, Duration::from_secs(12));
    let at = finished
        .iter()
        .find(|(_, o)| matches!(o, HostOutput::TimedOut { op } if *op == get))
        .map(|(t, _)| *t)
        .expect("timed out");
    let waited = at.saturating_since(started);
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_millis(10_100),
        "gave up after {waited:?}"
    );
    // The session takes the next operation.
    assert!(
        host.start_op(now, session, KvOp::Get { key: b"k".to_vec() })
            .is_ok()
    );
}

#[test]
fn an_operator_snapshot_is_taken_and_stored_on_request() {
    let mut host = host(&[1]);
    let mut now = Instant::ZERO;
    let session = host.open_session(1 << 20);
    let put = KvOp::Put {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
    };
    host.start_op(now, session, put).unwrap();
    run(&mut host, &mut now, Duration::from_secs(5));
    let asked = host.group_admin(now, &GroupAdmin::Snapshot { gid: 1 });
    assert!(asked.is_ok(), "{asked:?}");
    // The next flush hands the snapshot to storage.
    host.flush(now);
    let mut saved = None;
    while let Some(output) = host.poll_output() {
        if let HostOutput::Wal {
            gid: 1,
            op: WalOp::SaveSnapshot { meta, encoder },
        } = output
        {
            saved = Some((
                meta.last.index,
                shale_core::rsm::encode_to_vec(encoder, 1024),
            ));
        }
    }
    let (index, bytes) = saved.expect("a snapshot to store");
    assert_eq!(
        host.replicas()[&1].raft().snapshot(),
        None,
        "not the group's snapshot before storage says it is durable"
    );
    let size_bytes = Some(bytes.len() as u64);
    host.handle_wal(
        now,
        WalDone::SnapshotSaved {
            gid: 1,
            index,
            size_bytes,
        },
    );
    assert_eq!(
        host.replicas()[&1].raft().snapshot().map(|m| m.last.index),
        Some(index)
    );
    // Nothing new was applied: a second request is refused.
    assert!(
        host.group_admin(now, &GroupAdmin::Snapshot { gid: 1 })
            .is_err()
    );
}

#[test]
fn a_host_without_controller_voters_keeps_running() {
    // A replica group alone on its node, told of no controller: its leader's queries for a
    // configuration have nowhere to go, and nothing panics.
    let mut host = group_only_host(Vec::new());
    let mut now = Instant::ZERO;
    let session = host.open_session(1 << 20);
    let op = host
        .start_op(now, session, KvOp::Get { key: b"k".to_vec() })
        .unwrap();
    let finished = run(&mut host, &mut now, Duration::from_secs(12));
    assert!(matches!(
        result_of(&finished, op),
        Some(HostOutput::TimedOut { .. })
    ));
    assert_eq!(
        host.replicas()[&1].raft().role(),
        shale_core::raft::Role::Leader
    );
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use shale_core::controller::Configuration;
    use shale_core::group::AppMessage;
    use shale_core::shard::{ClientRequest, ShardState};

    /// Application messages a confused or hostile peer could send: wrong groups, shards far
    /// out of range, configurations of the wrong shape, stale or future numbers
    fn message() -> impl Strategy<Value = AppMessage> {
        let gid = prop_oneof![Just(0u64), Just(1), Just(2), any::<u64>()];
        let shard = prop_oneof![0u32..16, any::<u32>()];
        let num = prop_oneof![0u64..4, any::<u64>()];
        let config = (
            num.clone(),
            prop::collection::vec(prop_oneof![0u64..3, any::<u64>()], 0..20),
        )
            .prop_map(|(num, shards)| Configuration {
                num,
                shards,
                groups: [(1, vec![1]), (2, vec![2, 3])].into_iter().collect(),
            });
        prop_oneof![
            (gid.clone(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
                |(gid, token, client, seq)| AppMessage::Client {
                    gid,
                    token,
                    request: ClientRequest {
                        stamp_ms: 0,
                        client,
                        seq,
                        op: KvOp::Put {
                            key: b"k".to_vec(),
                            value: b"v".to_vec()
                        },
                    },
                }
            ),
            (prop::option::of(num.clone()), prop::option::of(gid.clone()))
                .prop_map(|(num, for_gid)| AppMessage::Query { num, for_gid }),
            (prop::option::of(gid.clone()), config)
                .prop_map(|(for_gid, config)| AppMessage::Config { for_gid, config }),
            (gid.clone(), gid.clone(), shard.clone(), num.clone()).prop_map(
                |(gid, requester, shard, num)| AppMessage::Fetch {
                    gid,
                    requester,
                    shard,
                    num,
                    from: ShardCursor::START,
                    max_bytes: 1 << 20,
                }
            ),
            (gid.clone(), gid.clone(), shard.clone(), num.clone()).prop_map(
                |(gid, by, shard, num)| AppMessage::Fetched {
                    gid,
                    by,
                    shard,
                    num,
                    chunk: ShardState::default().chunk(&ShardCursor::START, 1024),
                }
            ),
            (gid.clone(), gid.clone(), shard.clone(), num.clone()).prop_map(
                |(gid, requester, shard, num)| AppMessage::Delete {
                    gid,
                    requester,
                    shard,
                    num
                }
            ),
            (gid.clone(), gid, shard, num).prop_map(|(gid, by, shard, num)| {
                AppMessage::Deleted {
                    gid,
                    by,
                    shard,
                    num,
                }
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever peers send, the host keeps running and still serves its clients
        #[test]
        fn arbitrary_application_messages_never_panic(
            messages in prop::collection::vec((1u64..5, message()), 1..40)
        ) {
            let mut host = host(&[1]);
            let mut now = Instant::ZERO;
            run(&mut host, &mut now, Duration::from_secs(3));
            for (from, m) in messages {
                host.handle_app(now, from, m);
                run(&mut host, &mut now, Duration::from_millis(20));
            }
            let session = host.open_session(1 << 20);
            let op = host
                .start_op(now, session, KvOp::Get { key: b"k".to_vec() })
                .unwrap();
            let finished = run(&mut host, &mut now, Duration::from_secs(11));
            prop_assert!(result_of(&finished, op).is_some(), "the get never finished");
        }
    }
}

#[test]
fn a_retried_join_refused_as_already_joined_reports_the_configuration() {
    use shale_core::controller::{Configuration, ControllerCommand, ControllerError};
    use shale_core::group::AppMessage;
    // No local controller: admin commands go to node 2, whose answers the test writes.
    let mut host: Host = Host::new(
        HostConfig::new(1, vec![2], SHARDS),
        BTreeMap::new(),
        Instant::ZERO,
    );
    let mut now = Instant::ZERO;
    let join = ControllerCommand::Join(vec![(5, vec![1, 2, 3])]);
    let op = host.start_admin(now, join.clone());
    let mut sent = Vec::new();
    // The first attempt's answer is lost; the second is refused as already applied.
    for _ in 0..300 {
        now += Duration::from_millis(10);
        host.handle_timeout(now);
        host.flush(now);
        while let Some(out) = host.poll_output() {
            match out {
                HostOutput::App {
                    to: 2,
                    message: AppMessage::Admin { token, command },
                } => sent.push((token, command)),
                HostOutput::AdminDone { op: done, result } => {
                    assert_eq!(done, op);
                    let config = result.expect("the join took effect");
                    assert_eq!(config.num, 7);
                    assert_eq!(sent.len(), 3, "join, join again, then a query: {sent:?}");
                    assert_eq!(sent[2].1, ControllerCommand::Query(None));
                    return;
                }
                _ => {}
            }
        }
        if sent.len() == 2 && sent[1].1 == join {
            let token = sent[1].0;
            let refused = Some(Err(ControllerError::AlreadyJoined(5)));
            host.handle_app(
                now,
                2,
                AppMessage::AdminReply {
                    token,
                    result: refused,
                },
            );
            sent[1].1 = ControllerCommand::Query(Some(0)); // answered
        }
        if let Some((token, ControllerCommand::Query(None))) = sent.get(2).cloned() {
            let mut config = Configuration {
                num: 7,
                shards: vec![5; SHARDS as usize],
                groups: BTreeMap::new(),
            };
            config.groups.insert(5, vec![1, 2, 3]);
            host.handle_app(
                now,
                2,
                AppMessage::AdminReply {
                    token,
                    result: Some(Ok(config)),
                },
            );
        }
    }
    panic!("the admin command never finished: {sent:?}");
}

/// A node listed among the controller's voters whose own controller replica cannot answer (here
/// it hosts none, as after the replica was removed) asks the other voters for configurations
/// instead of only itself
#[test]
fn a_configuration_the_local_controller_lacks_is_asked_of_other_voters() {
    let mut host = group_only_host(vec![1, 2]);
    let mut now = Instant::ZERO;
    let mut asked_2 = 0;
    for _ in 0..300 {
        now += Duration::from_millis(10);
        host.handle_timeout(now);
        host.flush(now);
        while let Some(output) = host.poll_output() {
            match output {
                HostOutput::Wal {
                    gid,
                    op: WalOp::Write(write),
                } => host.handle_wal(now, WalDone::Persisted { gid, id: write.id }),
                HostOutput::App {
                    to: 2,
                    message: AppMessage::Query { .. },
                } => asked_2 += 1,
                _ => {}
            }
        }
    }
    assert!(
        asked_2 > 0,
        "the group's leader never asked node 2 for a configuration"
    );
}

/// A new cluster's controller takes its moves per configuration from its log, set before the
/// first join from the bootstrapping node's configuration
#[test]
fn a_new_cluster_logs_its_moves_per_configuration() {
    let mut host = host_with(&[1], Some(3));
    let mut now = Instant::ZERO;
    run(&mut host, &mut now, Duration::from_secs(3));
    assert_eq!(host.local_config().map(|c| c.num), Some(1), "joined");
    let controller = host.replicas()[&CONTROLLER_GROUP]
        .controller()
        .expect("a controller replica");
    assert_eq!(controller.max_moves_per_config(), 3);
}
