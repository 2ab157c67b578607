//! Membership liveness: a group in the middle of a change always finishes it and elects
//! leaders (regression tests for two bugs found by the simulator)
//!
//! - [`joint_change_to_fresh_voters_survives_leader_crash`]: nodes used to drop vote
//!   requests from nodes that were not voters of *their own* configuration, so a brand-new
//!   node (knowing no voters) or a lagging voter (with a stale configuration) never voted for
//!   the new voters of a pending configuration; if its vote was needed, no leader could be
//!   elected. Votes are now judged on the candidate's log alone.
//! - [`joint_config_compacted_into_snapshot_is_left`]: a leader used to leave a committed
//!   joint configuration only if the joint entry was still in its in-memory log, so a leader
//!   whose log was compacted past it stayed joint for ever and refused every later change.
//!   A configuration held only by the snapshot now counts as committed.

mod common;

use common::{Load, agree, elect, finish, retry};
use shale_core::raft::{ENTRY_OVERHEAD_BYTES, Membership, NodeId};
use shale_sim::{Sim, SimConfig};
use shale_tests::{ELECTION_TIMEOUT, HEARTBEAT, ensure, for_each_seed, raft_config};

/// `ids` without `id`
fn without(ids: &[NodeId], id: NodeId) -> Vec<NodeId> {
    ids.iter().copied().filter(|&x| x != id).collect()
}

/// Voters {1,2,3} are replaced by {L,4,5}, 4 and 5 brand-new and cut off, and the leader L
/// crashes once the other old voters hold the (uncommitted) joint entry. After healing and
/// restarting, the joint configuration needs two votes of {L,4,5}, but 4 and 5 know no voters
/// and drop every vote request: no leader, ever. (Raft would have 4 and 5 grant their votes,
/// since their logs are empty; the thesis' defence against disruptive servers is the leader
/// lease, which the core already has.)
#[test]

fn joint_change_to_fresh_voters_survives_leader_crash() {
    for_each_seed(
        "joint_change_to_fresh_voters_survives_leader_crash",
        |seed| {
            let mut sim = shale_tests::sim(seed, 3);
            let mut load = Load::default();
            let leader = sim.wait_for_leader(elect())?;
            load.commit_one(&mut sim, agree())?;
            let (a, b) = (sim.add_node(), sim.add_node());
            sim.disconnect(a);
            sim.disconnect(b);
            let target = [leader, a, b];
            retry(&mut sim, &mut load, agree(), "the change", |s| {
                s.change_membership(leader, &target, &[])
            })?;
            let old = without(&[1, 2, 3], leader);
            sim.run_until(agree(), "the old voters to hold the joint entry", |s| {
                old.iter()
                    .all(|&o| s.membership(o).is_some_and(Membership::is_joint))
            })?;
            sim.crash(leader);
            sim.heal();
            load.run_for(&mut sim, ELECTION_TIMEOUT);
            sim.restart(leader);
            load.run_until(&mut sim, elect(), "a leader", |s| s.leader().is_some())?;
            finish(&mut sim, &mut load, &target, &[])
        },
    );
}

/// Node 4 is promoted; the leader commits the joint entry and appends the leave entry, which
/// never reaches anyone: the leader's links are cut at once, then only its heartbeats get
/// through, so the others learn that the joint entry committed, apply it, snapshot and compact
/// it away. The leader is cut off for good; the others elect a new leader, whose log holds no
/// configuration entry any more: it never leaves the joint configuration.
#[test]

fn joint_config_compacted_into_snapshot_is_left() {
    for_each_seed("joint_config_compacted_into_snapshot_is_left", |seed| {
        let mut config = SimConfig::new(seed, 3);
        config.raft = raft_config();
        config.raft.snapshot_threshold_bytes = ENTRY_OVERHEAD_BYTES;
        config.raft.snapshot_trailing_bytes = 0;
        let mut sim = Sim::new(config);
        let mut load = Load::default();
        let leader = sim.wait_for_leader(elect())?;
        load.commit_one(&mut sim, agree())?;
        let learner = retry(&mut sim, &mut load, agree(), "adding", Sim::add_learner)?;
        let added = Membership::with_learners(&[1, 2, 3], &[learner]);
        load.run_until(&mut sim, agree(), "the learner to catch up", |s| {
            s.settled_membership().as_ref() == Some(&added)
                && s.caught_up_learners().contains(&learner)
        })?;
        sim.run_for(HEARTBEAT.saturating_mul(4));
        let joint = retry(&mut sim, &mut load, agree(), "promoting", |s| {
            s.promote(learner)
        })?;
        sim.run_until(agree(), "the joint entry to commit", |s| {
            s.node(leader)
                .is_some_and(|r| r.commit_index() >= joint.index)
        })?;
        let others = without(&sim.ids(), leader);
        for &o in &others {
            sim.set_link(leader, o, false);
        }
        sim.run_for(HEARTBEAT);
        for &o in &others {
            sim.set_link(o, leader, false);
            sim.set_link(leader, o, true);
        }
        sim.run_until(ELECTION_TIMEOUT, "the others to learn the commit", |s| {
            others
                .iter()
                .all(|&o| s.node(o).is_some_and(|r| r.commit_index() >= joint.index))
        })?;
        sim.disconnect(leader);
        let compacted = others.iter().all(|&o| {
            sim.node(o)
                .is_some_and(|r| r.first_index() > joint.index && r.last_index() == joint.index)
        });
        ensure(&sim, compacted, || {
            "the others did not compact the joint entry away: the scenario missed".into()
        })?;
        load.run_until(&mut sim, elect(), "a new leader", |s| {
            s.leader_among(&others).is_some()
        })?;
        load.run_for(&mut sim, ELECTION_TIMEOUT);
        let new = sim.leader().unwrap_or(0);
        let held = sim.membership(new).cloned();
        ensure(&sim, held.as_ref().is_some_and(|m| !m.is_joint()), || {
            format!("leader {new} is still in the joint configuration {held:?}")
        })?;
        finish(&mut sim, &mut load, &[1, 2, 3, learner], &[])
    });
}
