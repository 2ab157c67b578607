//! Leadership transfer scenarios: the leader brings the target up to date and sends it
//! TimeoutNow; meanwhile it refuses proposals (for at most an election timeout); a transfer
//! to a node that is not another voter is refused, and one that cannot succeed is abandoned at
//! its deadline with the group still led
//!
//! Proposals run throughout (every [`common::PERIOD`]); every scenario ends with
//! [`common::finish`]: healed and restarted, the membership is what it should be on every
//! member, and every value seen committed is in every member's applied state. Time bounds are
//! multiples of [`ELECTION_TIMEOUT`] and [`HEARTBEAT`].

mod common;

use common::{Load, agree, elect, finish, retry};
use shale_core::raft::{Membership, NodeId, ProposeError, Role, Term, TransferError};
use shale_core::time::Duration;
use shale_sim::{NetworkConfig, Sim, SimConfig, SimError};
use shale_tests::{ELECTION_TIMEOUT, HEARTBEAT, ensure, for_each_seed, raft_config};

/// A group of `n` voters, on an unreliable network if asked, with a leader and a few values
/// committed
fn started(seed: u64, n: usize, unreliable: bool) -> Result<(Sim, Load, NodeId), SimError> {
    let mut config = SimConfig::new(seed, n);
    config.raft = raft_config();
    if unreliable {
        config.network = NetworkConfig::unreliable();
    }
    let mut sim = Sim::new(config);
    let mut load = Load::default();
    sim.wait_for_leader(elect())?;
    for _ in 0..5 {
        load.commit_one(&mut sim, agree())?;
    }
    let leader = sim.leader().ok_or_else(|| sim.error("no leader".into()))?;
    Ok((sim, load, leader))
}

/// A random voter of `1..=n` other than `id` (from the workload stream)
fn pick_other(sim: &mut Sim, id: NodeId, n: u64) -> NodeId {
    let k = 1 + sim.workload_rng().below(n - 1);
    (id - 1 + k) % n + 1
}

/// The term node `id` is in (0 while crashed)
fn term(sim: &Sim, id: NodeId) -> Term {
    sim.node(id).map_or(0, |r| r.term())
}

/// Transfer to a lagging voter: the leader brings it up to date, it wins the next term, and
/// the old leader refuses proposals (as transferring) for at most an election timeout
#[test]
fn transfer_succeeds() {
    for_each_seed("transfer_succeeds", |seed| {
        let (mut sim, mut load, leader) = started(seed, 3, false)?;
        let target = pick_other(&mut sim, leader, 3);
        sim.disconnect(target);
        for _ in 0..10 {
            load.commit_one(&mut sim, agree())?;
        }
        sim.connect(target);
        let (behind, commit) = (
            sim.node(target).map_or(0, |r| r.last_index()),
            sim.node(leader).map_or(0, |r| r.commit_index()),
        );
        ensure(&sim, behind < commit, || {
            format!("target holds {behind} of {commit}: not lagging")
        })?;
        let (at, from_term) = (sim.now(), term(&sim, leader));
        let result = sim.transfer_leader(leader, target);
        ensure(&sim, result.is_ok(), || {
            format!("transfer refused: {result:?}")
        })?;
        let refused = sim.propose(leader, b"during");
        ensure(
            &sim,
            refused == Err(ProposeError::Transferring { target }),
            || format!("a proposal during the transfer: {refused:?}"),
        )?;
        load.run_until(&mut sim, ELECTION_TIMEOUT, "the target to win", |s| {
            s.leader() == Some(target)
        })?;
        ensure(&sim, term(&sim, target) == from_term + 1, || {
            format!("won term {}, not {}", term(&sim, target), from_term + 1)
        })?;
        let last_refusal = load
            .refused
            .iter()
            .filter(|(when, node, _)| *when >= at && *node == leader)
            .map(|(when, _, e)| (when.saturating_since(at), *e))
            .inspect(|(_, e)| assert!(matches!(e, ProposeError::Transferring { .. }), "{e:?}"))
            .map(|(after, _)| after)
            .max()
            .unwrap_or(Duration::ZERO);
        ensure(&sim, last_refusal <= ELECTION_TIMEOUT, || {
            format!("proposals refused for {last_refusal}")
        })?;
        load.run_for(&mut sim, HEARTBEAT.saturating_mul(4));
        let gap = load.max_gap_since(at);
        ensure(&sim, gap <= ELECTION_TIMEOUT + HEARTBEAT, || {
            format!("no value committed for {gap} around the transfer")
        })?;
        let old = sim.node(leader).map(|r| (r.role(), r.leader_hint()));
        ensure(&sim, old == Some((Role::Follower, Some(target))), || {
            format!("the old leader is {old:?}")
        })?;
        finish(&mut sim, &mut load, &[1, 2, 3], &[])
    });
}

/// A transfer to a learner, an unknown node, itself or a removed voter is refused as not a
/// voter, and a follower refuses as not the leader; none of it stops proposals
#[test]
fn transfer_to_non_voter_refused() {
    for_each_seed("transfer_to_non_voter_refused", |seed| {
        let (mut sim, mut load, leader) = started(seed, 3, false)?;
        let learner = retry(
            &mut sim,
            &mut load,
            agree(),
            "adding a learner",
            Sim::add_learner,
        )?;
        let added = Membership::with_learners(&[1, 2, 3], &[learner]);
        load.run_until(&mut sim, agree(), "the learner to be added", |s| {
            s.settled_membership().as_ref() == Some(&added)
        })?;
        for to in [learner, 99, leader] {
            let result = sim.transfer_leader(leader, to);
            ensure(
                &sim,
                result == Err(TransferError::NotAVoter { target: to }),
                || format!("a transfer to {to}: {result:?}"),
            )?;
        }
        let follower = pick_other(&mut sim, leader, 3);
        let result = sim.transfer_leader(follower, leader);
        let hint = Some(leader);
        ensure(
            &sim,
            result == Err(TransferError::NotLeader { hint }),
            || format!("a transfer asked of follower {follower}: {result:?}"),
        )?;
        let transfer = sim.node(leader).and_then(|r| r.transfer_target());
        let proposed = sim.propose(leader, b"after refusals");
        ensure(&sim, transfer.is_none() && proposed.is_ok(), || {
            format!("after the refusals: transfer {transfer:?}, proposal {proposed:?}")
        })?;
        retry(&mut sim, &mut load, agree(), "removing", |s| {
            s.remove_member(follower)
        })?;
        let voters: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&i| i != follower).collect();
        let removed = Membership::with_learners(&voters, &[learner]);
        load.run_until(&mut sim, agree(), "the removal", |s| {
            s.settled_membership().as_ref() == Some(&removed)
        })?;
        let now_leader = sim.leader().ok_or_else(|| sim.error("no leader".into()))?;
        let result = sim.transfer_leader(now_leader, follower);
        let target = follower;
        ensure(
            &sim,
            result == Err(TransferError::NotAVoter { target }),
            || format!("a transfer to removed node {follower}: {result:?}"),
        )?;
        finish(&mut sim, &mut load, &voters, &[learner])
    });
}

/// A transfer to a cut-off voter is abandoned an election timeout later: proposals are
/// accepted again and the same leader leads in the same term
#[test]
fn transfer_to_partitioned_target_aborts() {
    for_each_seed("transfer_to_partitioned_target_aborts", |seed| {
        let (mut sim, mut load, leader) = started(seed, 3, false)?;
        let target = pick_other(&mut sim, leader, 3);
        sim.disconnect(target);
        load.run_for(&mut sim, HEARTBEAT.saturating_mul(2));
        let (at, from_term) = (sim.now(), term(&sim, leader));
        let result = sim.transfer_leader(leader, target);
        ensure(&sim, result.is_ok(), || {
            format!("transfer refused: {result:?}")
        })?;
        let step = Duration::from_millis(5);
        let resumed = loop {
            let waited = sim.now().saturating_since(at);
            if waited > ELECTION_TIMEOUT + HEARTBEAT {
                return Err(sim.error(format!("proposals still refused after {waited}")));
            }
            match sim.propose(leader, b"probe") {
                Ok(_) => break waited,
                Err(ProposeError::Transferring { target: t }) if t == target => {}
                Err(e) => return Err(sim.error(format!("proposal refused: {e:?}"))),
            }
            sim.run_for(step);
        };
        ensure(&sim, resumed >= ELECTION_TIMEOUT, || {
            format!("the transfer ended after {resumed}, before its deadline")
        })?;
        load.run_for(&mut sim, HEARTBEAT.saturating_mul(4));
        ensure(&sim, sim.leader() == Some(leader), || {
            format!("leadership moved to {:?}", sim.leader())
        })?;
        ensure(&sim, term(&sim, leader) == from_term, || {
            format!("the term moved from {from_term} to {}", term(&sim, leader))
        })?;
        sim.connect(target);
        finish(&mut sim, &mut load, &[1, 2, 3], &[])
    });
}

/// The target campaigns on TimeoutNow but cannot win: it crashes, its incoming links fail (it
/// never hears the votes), or its outgoing links fail (no one hears it); the transfer ends by
/// its deadline and the group has a leader afterwards
#[test]
fn transfer_target_fails_to_win() {
    for_each_seed("transfer_target_fails_to_win", |seed| {
        let (mut sim, mut load, leader) = started(seed, 3, false)?;
        let target = pick_other(&mut sim, leader, 3);
        let others: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&i| i != target).collect();
        let at = sim.now();
        let result = sim.transfer_leader(leader, target);
        ensure(&sim, result.is_ok(), || {
            format!("transfer refused: {result:?}")
        })?;
        sim.run_until(ELECTION_TIMEOUT, "the target to campaign", |s| {
            s.node(target).is_some_and(|r| r.role() == Role::Candidate)
        })?;
        match seed % 3 {
            0 => sim.crash(target),
            1 => others.iter().for_each(|&o| sim.set_link(o, target, false)),
            _ => others.iter().for_each(|&o| sim.set_link(target, o, false)),
        }
        let elapsed = sim.now().saturating_since(at).as_micros();
        let left = ELECTION_TIMEOUT.as_micros().saturating_sub(elapsed);
        load.run_for(&mut sim, Duration::from_micros(left + 1_000));
        let transfer = sim.node(leader).and_then(|r| r.transfer_target());
        ensure(&sim, transfer.is_none(), || {
            format!("the transfer to {transfer:?} outlived its deadline")
        })?;
        load.run_until(&mut sim, elect(), "a leader", |s| {
            s.leader_among(&others).is_some()
        })?;
        load.commit_one(&mut sim, agree())?;
        finish(&mut sim, &mut load, &[1, 2, 3], &[])
    });
}

/// Five nodes on an unreliable network hand leadership around the ring ten times while
/// proposals run; most transfers succeed and nothing committed is lost
#[test]
fn transfers_under_load() {
    for_each_seed("transfers_under_load", |seed| {
        let (mut sim, mut load, _) = started(seed, 5, true)?;
        let mut won = 0;
        for _ in 0..10 {
            load.run_until(&mut sim, elect(), "a leader", |s| s.leader().is_some())?;
            let leader = sim.leader().expect("a leader");
            let to = leader % 5 + 1;
            if sim.transfer_leader(leader, to).is_ok()
                && load
                    .run_until(&mut sim, ELECTION_TIMEOUT, "the transfer", |s| {
                        s.leader() == Some(to)
                    })
                    .is_ok()
            {
                won += 1;
            }
            load.run_for(&mut sim, ELECTION_TIMEOUT);
        }
        ensure(&sim, won >= 3, || format!("only {won} of 10 transfers won"))?;
        finish(&mut sim, &mut load, &[1, 2, 3, 4, 5], &[])
    });
}
