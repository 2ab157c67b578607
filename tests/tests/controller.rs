//! Shard controller scenarios: three controller replicas in the multi-group simulator, called
//! through clerks that retry against whichever replica leads
//!
//! Ported from the classic shard controller tests (basic join/leave, historical queries while
//! replicas are shut down in turn, moves, concurrent clients, multi-group joins and leaves,
//! minimal transfers, the latest configuration surviving a leader change), plus a lossy-network
//! variant. The minimal-transfer property is stated directly and checked over the whole
//! history of every run: after a join, shards move only to the new groups; after a leave, only
//! away from the leaving ones; and no balanced assignment moves fewer shards.
//!
//! Time bounds are multiples of [`ELECTION_TIMEOUT`] and [`HEARTBEAT`].

use std::collections::BTreeMap;

use shale_core::controller::{
    Configuration, ControllerCommand, ControllerError, GroupId, UNASSIGNED,
};
use shale_core::raft::NodeId;
use shale_core::time::Duration;
use shale_sim::multi::{CLERK_POLL, CONTROLLER, Clerk, MultiConfig, MultiSim};
use shale_sim::{NetworkConfig, SimError};
use shale_tests::{ELECTION_TIMEOUT, HEARTBEAT, ensure, for_each_seed, raft_config};

/// Shards, as in the classic tests
const SHARDS: u32 = 10;
/// The controller replicas
const REPLICAS: [NodeId; 3] = [1, 2, 3];

/// Time one clerk call may take (it may have to wait out an election or two)
fn call_budget() -> Duration {
    ELECTION_TIMEOUT.saturating_mul(20)
}

/// Three nodes, all hosting the controller
fn cluster(seed: u64, network: NetworkConfig) -> MultiSim {
    let mut config = MultiConfig::new(seed, REPLICAS.len());
    config.raft = raft_config();
    config.network = network;
    MultiSim::with_controller(config, &REPLICAS, SHARDS)
}

/// A controller call that must succeed
fn call(sim: &mut MultiSim, command: ControllerCommand) -> Result<Configuration, SimError> {
    let what = format!("{command:?}");
    sim.controller_call(command, call_budget())?
        .map_err(|e| sim.error(format!("{what} was refused: {e}")))
}

fn join(groups: &[(GroupId, Vec<NodeId>)]) -> ControllerCommand {
    ControllerCommand::Join(groups.to_vec())
}

fn query(sim: &mut MultiSim) -> Result<Configuration, SimError> {
    call(sim, ControllerCommand::Query(None))
}

/// Shards per group of `groups` in `config`
fn counts(config: &Configuration, groups: impl Iterator<Item = GroupId>) -> Vec<usize> {
    groups.map(|g| config.shards_of(g).len()).collect()
}

/// The classic `check`: exactly `groups` with their replica lists, every shard owned by one of
/// them (or by nobody when there are none), and at most one shard between the largest and the
/// smallest group
fn check(
    sim: &MultiSim,
    config: &Configuration,
    groups: &BTreeMap<GroupId, Vec<NodeId>>,
) -> Result<(), SimError> {
    ensure(sim, &config.groups == groups, || {
        format!(
            "configuration {} has groups {:?}, expected {groups:?}",
            config.num, config.groups
        )
    })?;
    if groups.is_empty() {
        return ensure(sim, config.shards.iter().all(|&g| g == UNASSIGNED), || {
            format!("no groups, yet shards are owned: {:?}", config.shards)
        });
    }
    ensure(
        sim,
        config.shards.iter().all(|g| groups.contains_key(g)),
        || format!("a shard has no live owner: {:?}", config.shards),
    )?;
    let c = counts(config, groups.keys().copied());
    let (min, max) = (c.iter().min().unwrap(), c.iter().max().unwrap());
    ensure(sim, max - min <= 1, || {
        format!(
            "configuration {} unbalanced: {:?} over {:?}",
            config.num,
            config.shards,
            groups.keys()
        )
    })
}

/// The fewest shards any balanced assignment over `groups` must move away from `before`:
/// every group keeps at most `floor` shards, and `extra` of them one more; the best choice
/// gives the extra places to groups holding more than `floor`
fn min_moves(before: &[GroupId], groups: &[GroupId]) -> usize {
    let (n, k) = (before.len(), groups.len());
    if k == 0 {
        return before.iter().filter(|&&g| g != UNASSIGNED).count();
    }
    let (floor, extra) = (n / k, n % k);
    let held: Vec<usize> = groups
        .iter()
        .map(|g| before.iter().filter(|s| *s == g).count())
        .collect();
    let over = held.iter().filter(|&&h| h > floor).count();
    let kept: usize = held.iter().map(|&h| h.min(floor)).sum::<usize>() + extra.min(over);
    if k <= 12 {
        assert_eq!(
            kept,
            brute_force_kept(&held, floor, extra),
            "the oracles disagree"
        );
    }
    n - kept
}

/// The most shards a balanced assignment can leave in place, by brute force over every choice
/// of the groups that keep the extra shard (as in the core's balance tests)
fn brute_force_kept(held: &[usize], floor: usize, extra: usize) -> usize {
    let k = held.len();
    (0u32..(1 << k))
        .filter(|mask| mask.count_ones() as usize == extra)
        .map(|mask| {
            (0..k)
                .map(|i| held[i].min(floor + usize::from(mask & (1 << i) != 0)))
                .sum()
        })
        .max()
        .unwrap_or(0)
}

/// Checks every pair of consecutive configurations in the history every replica holds: all
/// replicas hold the same history; a join moves shards only to the new groups, a leave only
/// away from the leaving ones, both as few as a balanced assignment allows; a move changes
/// exactly one shard
fn check_history(sim: &MultiSim) -> Result<(), SimError> {
    let up: Vec<NodeId> = REPLICAS
        .iter()
        .copied()
        .filter(|&id| sim.is_up(id))
        .collect();
    let first = sim.controller(up[0]).expect("running");
    let latest = first.latest().num;
    for &id in &up[1..] {
        let other = sim.controller(id).expect("running");
        let common = latest.min(other.latest().num);
        for num in 0..=common {
            ensure(sim, other.config(num) == first.config(num), || {
                format!(
                    "replicas {} and {id} disagree on configuration {num}",
                    up[0]
                )
            })?;
        }
    }
    for num in 1..=latest {
        let (a, b) = (first.config(num - 1).unwrap(), first.config(num).unwrap());
        let moved: Vec<usize> = (0..a.shards.len())
            .filter(|&s| a.shards[s] != b.shards[s])
            .collect();
        let added: Vec<GroupId> = b
            .groups
            .keys()
            .filter(|g| !a.groups.contains_key(g))
            .copied()
            .collect();
        let removed: Vec<GroupId> = a
            .groups
            .keys()
            .filter(|g| !b.groups.contains_key(g))
            .copied()
            .collect();
        let context = || {
            format!(
                "configuration {} -> {num}: {:?} -> {:?}",
                num - 1,
                a.shards,
                b.shards
            )
        };
        if added.is_empty() && removed.is_empty() {
            ensure(sim, moved.len() == 1, || {
                format!("a move changed {} shards ({})", moved.len(), context())
            })?;
            continue;
        }
        ensure(sim, added.is_empty() || removed.is_empty(), || {
            format!("join and leave at once ({})", context())
        })?;
        for &s in &moved {
            let ok = if added.is_empty() {
                removed.contains(&a.shards[s]) || a.shards[s] == UNASSIGNED
            } else {
                added.contains(&b.shards[s])
            };
            ensure(sim, ok, || {
                format!("shard {s} moved between surviving groups ({})", context())
            })?;
        }
        let groups: Vec<GroupId> = b.groups.keys().copied().collect();
        let min = min_moves(&a.shards, &groups);
        ensure(sim, moved.len() == min, || {
            format!(
                "{} shards moved where {min} suffice ({})",
                moved.len(),
                context()
            )
        })?;
    }
    Ok(())
}

/// Basic join and leave: balance and exact groups after each, replica lists unchanged
fn basic_join_leave(sim: &mut MultiSim) -> Result<Vec<Configuration>, SimError> {
    let mut recorded = vec![query(sim)?];
    let mut groups = BTreeMap::new();
    check(sim, &recorded[0], &groups)?;
    for (gid, replicas) in [(1, vec![11, 12, 13]), (2, vec![21, 22, 23])] {
        let c = call(sim, join(&[(gid, replicas.clone())]))?;
        groups.insert(gid, replicas);
        check(sim, &c, &groups)?;
        recorded.push(c);
    }
    let c = call(sim, ControllerCommand::Leave(vec![1]))?;
    groups.remove(&1);
    check(sim, &c, &groups)?;
    recorded.push(c);
    expect_refusal(
        sim,
        ControllerCommand::Leave(vec![2]),
        ControllerError::NoGroupLeft,
    )?;
    let nums: Vec<u64> = recorded.iter().map(|c| c.num).collect();
    ensure(sim, nums == [0, 1, 2, 3], || {
        format!("configuration numbers {nums:?}")
    })?;
    Ok(recorded)
}

/// Runs `command`, which the controller must refuse with `error` (a shard map with data
/// but no group would leave the shards without an owner)
fn expect_refusal(
    sim: &mut MultiSim,
    command: ControllerCommand,
    error: ControllerError,
) -> Result<(), SimError> {
    let answer = sim.controller_call(command.clone(), call_budget())?;
    ensure(sim, answer == Err(error), || {
        format!("{command:?} answered {answer:?}, expected the refusal {error:?}")
    })
}

#[test]
fn basic_join_leave_and_historical_queries() {
    for_each_seed("basic_join_leave_and_historical_queries", |seed| {
        let mut sim = cluster(seed, NetworkConfig::reliable());
        let recorded = basic_join_leave(&mut sim)?;
        // Shut each replica down in turn: the others still answer every historical query, and
        // every running replica holds the recorded history.
        for id in REPLICAS {
            sim.crash(id);
            for c in &recorded {
                let answer = call(&mut sim, ControllerCommand::Query(Some(c.num)))?;
                ensure(&sim, &answer == c, || {
                    format!(
                        "with node {id} down, Query({}) gave {answer:?}, recorded {c:?}",
                        c.num
                    )
                })?;
                for other in REPLICAS.iter().filter(|&&o| o != id) {
                    let held = sim.controller(*other).and_then(|s| s.config(c.num));
                    ensure(&sim, held == Some(c), || {
                        format!("replica {other} holds {held:?} as configuration {}", c.num)
                    })?;
                }
            }
            sim.restart(id);
        }
        let refused = sim.controller_call(ControllerCommand::Query(Some(99)), call_budget())?;
        ensure(
            &sim,
            matches!(refused, Err(ControllerError::UnknownConfig { num: 99, .. })),
            || format!("Query(99) gave {refused:?}"),
        )?;
        sim.run_for(HEARTBEAT.saturating_mul(20));
        check_history(&sim)
    });
}

#[test]
fn basic_join_leave_on_a_lossy_network() {
    for_each_seed("basic_join_leave_on_a_lossy_network", |seed| {
        let mut sim = cluster(seed, NetworkConfig::unreliable());
        basic_join_leave(&mut sim)?;
        // Once more, with repeated joins and leaves whose replies may be lost (group 2, which
        // could not leave as the last group, stays).
        let mut groups = BTreeMap::new();
        groups.insert(2, vec![21, 22, 23]);
        for round in 0..3 {
            let gid = 100 + round;
            let c = call(&mut sim, join(&[(gid, vec![gid])]))?;
            groups.insert(gid, vec![gid]);
            check(&sim, &c, &groups)?;
        }
        for gid in [101, 100] {
            let c = call(&mut sim, ControllerCommand::Leave(vec![gid]))?;
            groups.remove(&gid);
            check(&sim, &c, &groups)?;
        }
        let latest = query(&mut sim)?;
        check(&sim, &latest, &groups)?;
        sim.run_for(ELECTION_TIMEOUT.saturating_mul(4));
        check_history(&sim)
    });
}

#[test]
fn moves_make_new_configurations_only_when_they_change_something() {
    for_each_seed(
        "moves_make_new_configurations_only_when_they_change_something",
        |seed| {
            let mut sim = cluster(seed, NetworkConfig::reliable());
            call(&mut sim, join(&[(503, vec![1, 2, 3])]))?;
            call(&mut sim, join(&[(504, vec![4, 5, 6])]))?;
            let mut previous = query(&mut sim)?;
            for shard in 0..SHARDS {
                let gid = if shard < SHARDS / 2 { 503 } else { 504 };
                let c = call(&mut sim, ControllerCommand::Move { shard, gid })?;
                let changed = previous.owner(shard) != gid;
                let expected = previous.num + u64::from(changed);
                ensure(&sim, c.num == expected && c.owner(shard) == gid, || {
                    format!("Move({shard} -> {gid}) after {previous:?} gave {c:?}")
                })?;
                previous = c;
            }
            let latest = query(&mut sim)?;
            for shard in 0..SHARDS {
                let want = if shard < SHARDS / 2 { 503 } else { 504 };
                ensure(&sim, latest.owner(shard) == want, || {
                    format!(
                        "shard {shard} ended on {}, moved to {want}",
                        latest.owner(shard)
                    )
                })?;
            }
            let refused =
                sim.controller_call(ControllerCommand::Move { shard: 0, gid: 9 }, call_budget())?;
            ensure(
                &sim,
                refused == Err(ControllerError::UnknownGroup(9)),
                || format!("{refused:?}"),
            )?;
            let last = call(&mut sim, ControllerCommand::Leave(vec![503]))?;
            expect_refusal(
                &mut sim,
                ControllerCommand::Leave(vec![504]),
                ControllerError::NoGroupLeft,
            )?;
            let mut only = BTreeMap::new();
            only.insert(504, vec![4, 5, 6]);
            check(&sim, &last, &only)?;
            check_history(&sim)
        },
    );
}

/// Runs `clients` clerks, each doing its own list of commands in order, concurrently; every
/// command must succeed
fn run_clients(sim: &mut MultiSim, scripts: Vec<Vec<ControllerCommand>>) -> Result<(), SimError> {
    let mut clerks: Vec<(Clerk, std::vec::IntoIter<ControllerCommand>, Option<String>)> = scripts
        .into_iter()
        .map(|s| (Clerk::new(sim), s.into_iter(), None))
        .collect();
    let deadline = sim.now() + call_budget().saturating_mul(3);
    loop {
        let mut busy = false;
        for (clerk, script, current) in &mut clerks {
            if clerk.is_idle() {
                match script.next() {
                    Some(command) => {
                        *current = Some(format!("{command:?}"));
                        clerk.start(command);
                    }
                    None => continue,
                }
            }
            busy = true;
            if let Some(Err(e)) = clerk.poll(sim) {
                return Err(sim.error(format!(
                    "{} was refused: {e}",
                    current.take().unwrap_or_default()
                )));
            }
        }
        if !busy {
            return Ok(());
        }
        if sim.now() >= deadline {
            return Err(sim.error("concurrent clients did not finish".into()));
        }
        sim.run_for(CLERK_POLL);
    }
}

/// Joins `gids` one by one, then makes them leave one by one (minimal transfers are checked
/// over the history afterwards)
fn join_then_leave_one_by_one(sim: &mut MultiSim, gids: &[GroupId]) -> Result<(), SimError> {
    for &gid in gids {
        call(sim, join(&[(gid, vec![gid % 5 + 1])]))?;
    }
    for &gid in gids {
        call(sim, ControllerCommand::Leave(vec![gid]))?;
    }
    Ok(())
}

#[test]
fn concurrent_clients_join_and_leave_then_minimal_transfers() {
    for_each_seed(
        "concurrent_clients_join_and_leave_then_minimal_transfers",
        |seed| {
            let mut sim = cluster(seed, NetworkConfig::reliable());
            let scripts = (100..110u64)
                .map(|gid| {
                    vec![
                        join(&[(gid + 1000, vec![gid + 1])]),
                        join(&[(gid, vec![gid + 1])]),
                        ControllerCommand::Leave(vec![gid + 1000]),
                    ]
                })
                .collect();
            run_clients(&mut sim, scripts)?;
            let expected: BTreeMap<GroupId, Vec<NodeId>> =
                (100..110).map(|g| (g, vec![g + 1])).collect();
            let latest = query(&mut sim)?;
            check(&sim, &latest, &expected)?;
            join_then_leave_one_by_one(&mut sim, &[190, 191, 192, 193, 194])?;
            let latest = query(&mut sim)?;
            check(&sim, &latest, &expected)?;
            check_history(&sim)
        },
    );
}

#[test]
fn multi_group_joins_and_leaves() {
    for_each_seed("multi_group_joins_and_leaves", |seed| {
        let mut sim = cluster(seed, NetworkConfig::reliable());
        // Basic: several groups in one Join, several in one Leave.
        let both = [(1, vec![11, 12, 13]), (2, vec![21, 22, 23])];
        let c = call(&mut sim, join(&both))?;
        check(&sim, &c, &both.iter().cloned().collect())?;
        let c = call(&mut sim, join(&[(3, vec![31])]))?;
        let mut groups: BTreeMap<GroupId, Vec<NodeId>> = both.iter().cloned().collect();
        groups.insert(3, vec![31]);
        check(&sim, &c, &groups)?;
        let c = call(&mut sim, ControllerCommand::Leave(vec![1, 3]))?;
        groups.retain(|&g, _| g == 2);
        check(&sim, &c, &groups)?;
        expect_refusal(
            &mut sim,
            ControllerCommand::Leave(vec![2]),
            ControllerError::NoGroupLeft,
        )?;
        let refused = sim.controller_call(join(&[(4, vec![4]), (4, vec![5])]), call_budget())?;
        ensure(&sim, refused == Err(ControllerError::Duplicate(4)), || {
            format!("{refused:?}")
        })?;

        // Ten clients, each joining three groups at once and then leaving two of them at once.
        let scripts = (1000..1010u64)
            .map(|gid| {
                vec![
                    join(&[
                        (gid, vec![1, 2, 3]),
                        (gid + 1000, vec![4]),
                        (gid + 2000, vec![5]),
                    ]),
                    ControllerCommand::Leave(vec![gid + 1000, gid + 2000]),
                ]
            })
            .collect();
        run_clients(&mut sim, scripts)?;
        // Group 2 stayed: the last group cannot leave.
        let expected: BTreeMap<GroupId, Vec<NodeId>> = (1000..1010)
            .map(|g| (g, vec![1, 2, 3]))
            .chain([(2, vec![21, 22, 23])])
            .collect();
        let latest = query(&mut sim)?;
        check(&sim, &latest, &expected)?;

        // Minimal transfers after a multi-join and a multi-leave.
        let new: Vec<(GroupId, Vec<NodeId>)> = (1..=5).map(|i| (9000 + i, vec![i])).collect();
        call(&mut sim, join(&new))?;
        call(
            &mut sim,
            ControllerCommand::Leave(new.iter().map(|(g, _)| *g).collect()),
        )?;
        let latest = query(&mut sim)?;
        check(&sim, &latest, &expected)?;
        check_history(&sim)
    });
}

#[test]
fn the_latest_configuration_survives_a_leader_change() {
    for_each_seed(
        "the_latest_configuration_survives_a_leader_change",
        |seed| {
            let mut sim = cluster(seed, NetworkConfig::reliable());
            let mut last = None;
            for gid in 1..=6 {
                last = Some(call(&mut sim, join(&[(gid, vec![gid])]))?);
            }
            call(&mut sim, ControllerCommand::Leave(vec![2, 5]))?;
            let last_seen = query(&mut sim)?;
            ensure(
                &sim,
                last.is_some_and(|l| last_seen.num == l.num + 1),
                || "numbering".into(),
            )?;
            let old = sim
                .leader_of(CONTROLLER)
                .ok_or_else(|| sim.error("no controller leader".into()))?;
            sim.crash(old);
            // A new leader within three of the longest election timeouts.
            let new = sim.wait_for_leader(CONTROLLER, ELECTION_TIMEOUT.saturating_mul(6))?;
            ensure(&sim, new != old, || "the crashed node still leads".into())?;
            let latest = query(&mut sim)?;
            ensure(&sim, latest == last_seen, || {
                format!(
                    "after the leader change the latest is {latest:?}, the old leader said {last_seen:?}"
                )
            })?;
            let held = sim.controller(new).map(|c| c.latest().clone());
            ensure(&sim, held.as_ref() == Some(&last_seen), || {
                format!("new leader holds {held:?}")
            })?;
            sim.restart(old);
            sim.run_for(ELECTION_TIMEOUT.saturating_mul(4));
            check_history(&sim)
        },
    );
}
