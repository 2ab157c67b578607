//! Membership change scenarios: learners join and are promoted once caught up, voters are
//! added, removed and replaced through joint configurations that the leader leaves by itself,
//! the leader removes itself, and crashes and partitions hit the change half way
//!
//! Proposals run throughout (every [`common::PERIOD`]); every scenario ends by healing,
//! restarting, waiting for the membership asked for to settle on every member, and checking
//! that every value seen committed is in every member's applied state ([`common::finish`]).
//! Time bounds are multiples of [`ELECTION_TIMEOUT`] and [`HEARTBEAT`].

mod common;

use common::{Load, agree, elect, finish, retry};
use shale_core::raft::{ChangeError, EntryKind, Index, Membership, NodeId, Raft, Role, Term};
use shale_sim::{Sim, SimConfig, SimError};
use shale_tests::{ELECTION_TIMEOUT, HEARTBEAT, ensure, for_each_seed, raft_config};

/// A group of `n` voters with `pre_vote` and `check_quorum` as given, a leader, and a few
/// values committed
fn started_with(
    seed: u64,
    n: usize,
    pre_vote: bool,
    check_quorum: bool,
) -> Result<(Sim, Load, NodeId), SimError> {
    let mut config = SimConfig::new(seed, n);
    config.raft = raft_config();
    config.raft.pre_vote = pre_vote;
    config.raft.check_quorum = check_quorum;
    let mut sim = Sim::new(config);
    let mut load = Load::default();
    sim.wait_for_leader(elect())?;
    for _ in 0..5 {
        load.commit_one(&mut sim, agree())?;
    }
    let leader = sim.leader().ok_or_else(|| sim.error("no leader".into()))?;
    Ok((sim, load, leader))
}

/// [`started_with`] pre-vote and check-quorum on
fn started(seed: u64, n: usize) -> Result<(Sim, Load, NodeId), SimError> {
    started_with(seed, n, true, true)
}

/// `ids` without `id`
fn without(ids: &[NodeId], id: NodeId) -> Vec<NodeId> {
    ids.iter().copied().filter(|&x| x != id).collect()
}

/// A random element of `ids` (from the workload stream)
fn pick(sim: &mut Sim, ids: &[NodeId]) -> NodeId {
    ids[sim.workload_rng().below(ids.len() as u64) as usize]
}

/// A random node other than `id`
fn pick_other(sim: &mut Sim, id: NodeId) -> NodeId {
    let others = without(&sim.ids(), id);
    pick(sim, &others)
}

/// The term node `id` is in (0 while crashed)
fn term(sim: &Sim, id: NodeId) -> Term {
    sim.node(id).map_or(0, |r| r.term())
}

/// Index of the last configuration entry `raft` holds in memory (0 if none)
pub fn last_config_index(raft: &Raft) -> Index {
    raft.entries(raft.first_index(), raft.last_index())
        .iter()
        .rev()
        .find(|e| e.kind == EntryKind::Membership)
        .map_or(0, |e| e.index)
}

/// Adds a brand-new node as a learner through whichever node leads, and waits until the
/// leader sees it caught up; returns its id
fn add_caught_up_learner(sim: &mut Sim, load: &mut Load) -> Result<NodeId, SimError> {
    let id = retry(sim, load, agree(), "adding a learner", Sim::add_learner)?;
    let mut campaigned = false;
    load.run_until(sim, agree(), "the learner to catch up", |s| {
        campaigned |= s.node(id).is_some_and(|r| r.role() != Role::Follower);
        let added = s.settled_membership().is_some_and(|m| m.is_learner(id));
        added && s.caught_up_learners().contains(&id)
    })?;
    ensure(sim, !campaigned, || format!("learner {id} campaigned"))?;
    Ok(id)
}

/// Add Voter: node 4 joins as a learner, catches up, and is promoted; the joint configuration
/// is entered and left without being asked, and proposals keep committing throughout
#[test]
fn add_voter_via_learner() {
    for_each_seed("add_voter_via_learner", |seed| {
        let (mut sim, mut load, _) = started(seed, 3)?;
        let start = sim.now();
        let id = add_caught_up_learner(&mut sim, &mut load)?;
        ensure(&sim, id == 4, || format!("the new node got id {id}"))?;
        let joint = retry(&mut sim, &mut load, agree(), "promoting 4", |s| {
            s.promote(4)
        })?;
        let leader = sim.leader().ok_or_else(|| sim.error("no leader".into()))?;
        let held = sim.membership(leader).cloned().unwrap_or_default();
        ensure(
            &sim,
            held.is_joint() && held.outgoing() == [1, 2, 3],
            || {
                format!(
                    "after the promotion the leader holds {held:?}, not the joint configuration"
                )
            },
        )?;
        let target = Membership::new(&[1, 2, 3, 4]);
        let mut joint_on = Vec::new();
        load.run_until(
            &mut sim,
            agree(),
            "the joint configuration to be left",
            |s| {
                for n in s.ids() {
                    if s.membership(n).is_some_and(Membership::is_joint) && !joint_on.contains(&n) {
                        joint_on.push(n);
                    }
                }
                s.settled_membership().as_ref() == Some(&target)
            },
        )?;
        ensure(&sim, joint_on.contains(&4), || {
            format!("only {joint_on:?} ever held the joint configuration")
        })?;
        let leave = sim.node(leader).map_or(0, last_config_index);
        ensure(&sim, leave > joint.index, || {
            format!("no configuration entry after the joint one at {joint}")
        })?;
        let before = load.committed();
        load.run_for(&mut sim, ELECTION_TIMEOUT.saturating_mul(2));
        let gap = load.max_gap_since(start);
        ensure(
            &sim,
            load.committed() > before && gap <= ELECTION_TIMEOUT,
            || format!("proposals stalled for {gap} during the change"),
        )?;
        ensure(&sim, sim.leader() == Some(leader), || {
            "the leader changed during the change".into()
        })?;
        finish(&mut sim, &mut load, &[1, 2, 3, 4], &[])
    });
}

/// Remove Voter: a follower of five is removed; it keeps running but never leads or disturbs
/// the group (same leader, same term)
#[test]
fn remove_voter() {
    for_each_seed("remove_voter", |seed| {
        let (mut sim, mut load, leader) = started(seed, 5)?;
        let victim = pick_other(&mut sim, leader);
        let from_term = term(&sim, leader);
        retry(&mut sim, &mut load, agree(), "removing", |s| {
            s.remove_member(victim)
        })?;
        let target = without(&sim.ids(), victim);
        let settled = Membership::new(&target);
        load.run_until(&mut sim, agree(), "the removal", |s| {
            s.settled_membership().as_ref() == Some(&settled)
        })?;
        load.run_for(&mut sim, ELECTION_TIMEOUT.saturating_mul(4));
        ensure(&sim, sim.leader() == Some(leader), || {
            format!("leadership moved from {leader} to {:?}", sim.leader())
        })?;
        ensure(&sim, term(&sim, leader) == from_term, || {
            format!("the term moved from {from_term} to {}", term(&sim, leader))
        })?;
        ensure(&sim, !sim.led_since(victim, from_term), || {
            format!("removed node {victim} led")
        })?;
        finish(&mut sim, &mut load, &target, &[])
    });
}

/// Replace: voters {1,2,3} become {1,2,4}, node 4 joining straight as a voter of the joint
/// configuration; node 3 never leads afterwards
#[test]
fn replace_node() {
    for_each_seed("replace_node", |seed| {
        let (mut sim, mut load, _) = started(seed, 3)?;
        let start = sim.now();
        let id = sim.add_node();
        ensure(&sim, id == 4, || format!("the new node got id {id}"))?;
        let mut changed_on = 0;
        let joint = retry(&mut sim, &mut load, agree(), "replacing 3 by 4", |s| {
            changed_on = s.leader().unwrap_or(1);
            s.change_membership(changed_on, &[1, 2, 4], &[])
        })?;
        // Removing the leader costs an election; otherwise proposals barely pause.
        let bound = if changed_on == 3 {
            elect()
        } else {
            ELECTION_TIMEOUT
        };
        let target = Membership::new(&[1, 2, 4]);
        load.run_until(&mut sim, agree(), "the replacement", |s| {
            s.settled_membership().as_ref() == Some(&target)
        })?;
        load.run_for(&mut sim, ELECTION_TIMEOUT.saturating_mul(4));
        ensure(&sim, !sim.led_since(3, joint.term + 1), || {
            "removed node 3 led".into()
        })?;
        let gap = load.max_gap_since(start);
        ensure(&sim, gap <= bound, || {
            format!("proposals stalled for {gap} (change made on {changed_on})")
        })?;
        finish(&mut sim, &mut load, &[1, 2, 4], &[])
    });
}

/// Remove Leader: the leader removes itself; it steps down only once the final configuration
/// commits, the others elect a leader, and it never leads again
#[test]
fn remove_leader() {
    for_each_seed("remove_leader", |seed| {
        let (mut sim, mut load, leader) = started(seed, 3)?;
        let others = without(&sim.ids(), leader);
        let joint = retry(&mut sim, &mut load, agree(), "removing the leader", |s| {
            s.change_membership(leader, &others, &[])
        })?;
        let mut at_step_down = None;
        load.run_until(&mut sim, agree(), "the leader to step down", |s| {
            let r = s.node(leader).expect("the leader runs");
            let down = r.role() != Role::Leader;
            if down {
                at_step_down = Some((
                    r.commit_index(),
                    last_config_index(r),
                    r.membership().clone(),
                ));
            }
            down
        })?;
        let (commit, config, held) = at_step_down.expect("stepped down");
        ensure(&sim, config > joint.index && commit >= config, || {
            format!("stepped down with commit {commit}, configuration entry {config}")
        })?;
        ensure(&sim, held == Membership::new(&others), || {
            format!("stepped down holding {held:?}")
        })?;
        let new = sim.wait_for_leader_among(&others, elect())?;
        load.run_for(&mut sim, ELECTION_TIMEOUT.saturating_mul(4));
        ensure(&sim, !sim.led_since(leader, joint.term + 1), || {
            format!("removed node {leader} led again (new leader {new})")
        })?;
        finish(&mut sim, &mut load, &others, &[])
    });
}

/// A learner catches up, is cut off, then promoted: the remaining majority of the new
/// configuration commits on its own; after healing the new voter catches up
#[test]
fn learner_promoted_while_partitioned() {
    for_each_seed("learner_promoted_while_partitioned", |seed| {
        let (mut sim, mut load, _) = started(seed, 3)?;
        let id = add_caught_up_learner(&mut sim, &mut load)?;
        // No proposals for a moment, so the learner holds everything committed.
        sim.run_until(agree(), "the learner to hold the whole log", |s| {
            let leader = s.leader().and_then(|l| s.node(l));
            leader.is_some_and(|r| {
                r.progress(id)
                    .is_some_and(|p| p.match_index == r.last_index())
            })
        })?;
        sim.disconnect(id);
        let result = sim.promote(id);
        ensure(&sim, result.is_ok(), || {
            format!("promotion refused: {result:?}")
        })?;
        let target = Membership::new(&[1, 2, 3, id]);
        load.run_until(&mut sim, agree(), "the promotion", |s| {
            s.settled_membership().as_ref() == Some(&target)
        })?;
        let (before, applied) = (load.committed(), sim.app(id).applied);
        load.run_for(&mut sim, ELECTION_TIMEOUT.saturating_mul(4));
        ensure(&sim, load.committed() >= before + 20, || {
            format!(
                "only {} values committed while {id} was cut off",
                load.committed() - before
            )
        })?;
        ensure(&sim, sim.app(id).applied == applied, || {
            "the cut-off node applied entries".into()
        })?;
        sim.connect(id);
        finish(&mut sim, &mut load, &[1, 2, 3, id], &[])
    });
}

/// A cut-off voter is removed; back, it cannot disturb the group (its vote requests are
/// ignored, whatever pre-vote and check-quorum say) and is not a member
#[test]
fn node_removed_while_partitioned() {
    for_each_seed("node_removed_while_partitioned", |seed| {
        let (pre_vote, check_quorum) = (seed % 2 == 0, seed % 4 < 2);
        let (mut sim, mut load, leader) = started_with(seed, 3, pre_vote, check_quorum)?;
        let victim = pick_other(&mut sim, leader);
        let cut_term = term(&sim, leader);
        sim.disconnect(victim);
        load.run_for(&mut sim, ELECTION_TIMEOUT.saturating_mul(2));
        retry(&mut sim, &mut load, agree(), "removing", |s| {
            s.remove_member(victim)
        })?;
        let target = without(&sim.ids(), victim);
        let settled = Membership::new(&target);
        load.run_until(&mut sim, agree(), "the removal", |s| {
            s.settled_membership().as_ref() == Some(&settled)
        })?;
        load.run_for(&mut sim, ELECTION_TIMEOUT.saturating_mul(3));
        let (now_leader, from_term) = (sim.leader(), term(&sim, leader));
        sim.connect(victim);
        load.run_for(&mut sim, ELECTION_TIMEOUT.saturating_mul(5));
        ensure(
            &sim,
            sim.leader() == now_leader && term(&sim, leader) == from_term,
            || {
                format!(
                    "the removed node disturbed the group: leader {now_leader:?} term {from_term} became {:?} term {}",
                    sim.leader(),
                    term(&sim, leader)
                )
            },
        )?;
        ensure(&sim, !sim.led_since(victim, cut_term), || {
            format!("{victim} led")
        })?;
        finish(&mut sim, &mut load, &target, &[])
    });
}

/// Crashes while the joint configuration is committed but not yet left: the leader alone, the
/// leader and a majority of the new voters, or a majority of the old voters; after restarting,
/// the group ends in the target configuration and loses nothing committed
#[test]
fn crash_during_joint_change() {
    for_each_seed("crash_during_joint_change", |seed| {
        let (mut sim, mut load, leader) = started(seed, 3)?;
        let (a, b) = (sim.add_node(), sim.add_node());
        let kept = pick(&mut sim, &[1, 2, 3]);
        let target = [kept, a, b];
        let joint = retry(&mut sim, &mut load, agree(), "the change", |s| {
            s.change_membership(leader, &target, &[])
        })?;
        load.run_until(&mut sim, agree(), "the joint entry to commit", |s| {
            s.node(leader)
                .is_some_and(|r| r.commit_index() >= joint.index)
        })?;
        let r = sim.node(leader).expect("the leader runs");
        let (held, commit, config) = (
            r.membership().clone(),
            r.commit_index(),
            last_config_index(r),
        );
        ensure(&sim, !held.is_joint() && config > commit, || {
            format!(
                "not between joint commit and leave: {held:?}, commit {commit}, config {config}"
            )
        })?;
        let mut victims = vec![leader];
        match sim.workload_rng().below(3) {
            0 => {}
            1 => {
                for id in target {
                    let down = target.iter().filter(|n| victims.contains(n)).count();
                    if down < 2 && !victims.contains(&id) {
                        victims.push(id);
                    }
                }
            }
            _ => victims.push(pick(&mut sim, &without(&[1, 2, 3], leader))),
        }
        for &v in &victims {
            sim.crash(v);
        }
        let delay = sim.workload_rng().below(3 * ELECTION_TIMEOUT.as_millis());
        load.run_for(&mut sim, shale_core::time::Duration::from_millis(delay));
        for &v in &victims {
            sim.restart(v);
        }
        finish(&mut sim, &mut load, &target, &[])
    });
}

/// A second change before the first (including the automatic leave) commits is refused as in
/// progress; a change on a follower or a learner is refused as not the leader
#[test]
fn change_refused_while_in_progress() {
    for_each_seed("change_refused_while_in_progress", |seed| {
        let (mut sim, mut load, leader) = started(seed, 3)?;
        let follower = pick_other(&mut sim, leader);
        load.run_for(&mut sim, HEARTBEAT.saturating_mul(2));
        let on_follower = sim.change_membership(follower, &[1, 2, 3], &[]);
        ensure(
            &sim,
            on_follower == Err(ChangeError::NotLeader { hint: Some(leader) }),
            || format!("a change on follower {follower}: {on_follower:?}"),
        )?;
        let id = sim.ids().len() as NodeId + 1;
        retry(&mut sim, &mut load, agree(), "adding a learner", |s| {
            s.change_membership(leader, &[1, 2, 3], &[id])
        })?;
        sim.add_node();
        let second = sim.change_membership(leader, &[1, 2, 3], &[]);
        ensure(&sim, second == Err(ChangeError::InProgress), || {
            format!("a second change while adding a learner: {second:?}")
        })?;
        let with_learner = Membership::with_learners(&[1, 2, 3], &[id]);
        load.run_until(&mut sim, agree(), "the learner to be added", |s| {
            s.settled_membership().as_ref() == Some(&with_learner)
        })?;
        let on_learner = sim.change_membership(id, &[1, 2, 3], &[]);
        ensure(
            &sim,
            matches!(on_learner, Err(ChangeError::NotLeader { .. })),
            || format!("a change on the learner: {on_learner:?}"),
        )?;
        let voters = without(&[1, 2, 3], follower);
        let joint = sim.change_membership(leader, &voters, &[id]);
        let Ok(joint) = joint else {
            return Err(sim.error(format!("removing {follower}: {joint:?}")));
        };
        let second = sim.change_membership(leader, &[1, 2, 3], &[id]);
        ensure(&sim, second == Err(ChangeError::InProgress), || {
            format!("a second change in the joint configuration: {second:?}")
        })?;
        load.run_until(&mut sim, agree(), "the joint entry to commit", |s| {
            s.node(leader)
                .is_some_and(|r| r.commit_index() >= joint.index)
        })?;
        let second = sim.change_membership(leader, &[1, 2, 3], &[id]);
        ensure(&sim, second == Err(ChangeError::InProgress), || {
            format!("a change before the automatic leave committed: {second:?}")
        })?;
        let removed = Membership::with_learners(&voters, &[id]);
        load.run_until(&mut sim, agree(), "the removal", |s| {
            s.settled_membership().as_ref() == Some(&removed)
        })?;
        let again = sim.change_membership(leader, &[1, 2, 3], &[id]);
        ensure(&sim, again.is_ok(), || {
            format!("a change once settled: {again:?}")
        })?;
        finish(&mut sim, &mut load, &[1, 2, 3], &[id])
    });
}

/// Whether node `id` leads and committed an entry of its own term
fn committed_own_term(s: &Sim, id: NodeId) -> bool {
    s.node(id)
        .is_some_and(|r| r.role() == Role::Leader && r.term_at(r.commit_index()) == Some(r.term()))
}

/// A brand-new leader refuses changes until its no-op commits: at the group's first
/// election, and after the leader crashes
#[test]
fn change_waits_for_own_term_commit() {
    for_each_seed("change_waits_for_own_term_commit", |seed| {
        let mut sim = shale_tests::sim(seed, 3);
        let mut load = Load::default();
        let first = sim.wait_for_leader(elect())?;
        let early = sim.change_membership(first, &[1, 2, 3], &[4]);
        ensure(&sim, early == Err(ChangeError::NotReady), || {
            format!("a change as soon as {first} won: {early:?}")
        })?;
        load.run_until(&mut sim, agree(), "the first no-op", |s| {
            committed_own_term(s, first)
        })?;
        let id = sim.ids().len() as NodeId + 1;
        let ok = sim.change_membership(first, &[1, 2, 3], &[id]);
        ensure(&sim, ok.is_ok(), || format!("a change once ready: {ok:?}"))?;
        sim.add_node();
        let added = Membership::with_learners(&[1, 2, 3], &[id]);
        load.run_until(&mut sim, agree(), "the learner to be added", |s| {
            s.settled_membership().as_ref() == Some(&added)
        })?;
        sim.crash(first);
        let others = without(&[1, 2, 3], first);
        load.run_until(&mut sim, elect(), "a new leader", |s| {
            s.leader_among(&others).is_some()
        })?;
        let second = sim.leader_among(&others).expect("a leader");
        let early = sim.change_membership(second, &others, &[id]);
        ensure(&sim, early == Err(ChangeError::NotReady), || {
            format!("a change as soon as {second} won: {early:?}")
        })?;
        load.run_until(&mut sim, agree(), "the new no-op", |s| {
            committed_own_term(s, second)
        })?;
        let ok = sim.change_membership(second, &others, &[id]);
        ensure(&sim, ok.is_ok(), || format!("a change once ready: {ok:?}"))?;
        finish(&mut sim, &mut load, &others, &[id])
    });
}

/// With two of three voters cut off, a leader and two caught-up learners commit nothing, the
/// learners never campaign, and check-quorum (which counts voters only) makes the leader step
/// down
#[test]
fn learner_never_counts() {
    for_each_seed("learner_never_counts", |seed| {
        let (mut sim, mut load, _) = started(seed, 3)?;
        let l1 = add_caught_up_learner(&mut sim, &mut load)?;
        let l2 = add_caught_up_learner(&mut sim, &mut load)?;
        let leader = sim.leader().ok_or_else(|| sim.error("no leader".into()))?;
        sim.run_for(HEARTBEAT.saturating_mul(4));
        let cut: Vec<NodeId> = without(&[1, 2, 3], leader);
        sim.partition(&[&[leader, l1, l2], &cut[..1], &cut[1..]]);
        let (committed, cut_at) = (sim.checker().commit_index(), sim.now());
        let mut campaigned = false;
        let mut led_until = cut_at;
        let watch = ELECTION_TIMEOUT.saturating_mul(4);
        load.run_until(&mut sim, watch, "the end of the watch", |s| {
            campaigned |= [l1, l2]
                .iter()
                .any(|&l| s.node(l).is_some_and(|r| r.role() != Role::Follower));
            if s.node(leader).is_some_and(|r| r.role() == Role::Leader) {
                led_until = s.now();
            }
            false
        })
        .ok();
        let now = sim.checker().commit_index();
        ensure(&sim, now == committed, || {
            format!(
                "{} entries committed without a majority of voters",
                now - committed
            )
        })?;
        ensure(&sim, !campaigned, || "a learner campaigned".into())?;
        let held = led_until.saturating_since(cut_at);
        ensure(&sim, held <= ELECTION_TIMEOUT.saturating_mul(2), || {
            format!("{leader} kept leading for {held} without a quorum of voters")
        })?;
        finish(&mut sim, &mut load, &[1, 2, 3], &[l1, l2])
    });
}
