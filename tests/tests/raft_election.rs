//! Leader election scenarios, after the classic Raft lab tests (initial election, re-election,
//! many elections, message count of an election)
//!
//! Our nodes use pre-vote and check-quorum: an isolated node never raises its term, a follower
//! that heard from a live leader within an election timeout ignores vote requests, and a leader
//! that loses its quorum steps down within two election timeouts. The scenarios rely on that.
//!
//! Time bounds are multiples of [`ELECTION_TIMEOUT`] (the lower bound of the randomized
//! timeout; the upper bound is twice it).

use shale_core::raft::{NodeId, Term};
use shale_core::time::Duration;
use shale_sim::{Sim, SimError};
use shale_tests::{ELECTION_TIMEOUT, HEARTBEAT, ensure, for_each_seed};

/// Three nodes, no faults: a leader appears, everyone agrees on its term, and the term stays
/// put while nothing goes wrong.
#[test]
fn initial_election() {
    for_each_seed("initial_election", |seed| {
        let mut sim = shale_tests::sim(seed, 3);
        // The first timeout fires within 2 ET; one split round costs another 2 ET at most.
        let leader = sim.wait_for_leader(et(5))?;
        sim.run_for(HEARTBEAT);
        let term = sim.check_terms()?;
        ensure(&sim, term >= 1, || {
            format!("term is {term} after an election")
        })?;

        // Two election timeouts without faults: no new election, still one leader.
        sim.run_for(et(2));
        let term_after = sim.check_terms()?;
        ensure(&sim, term_after == term, || {
            format!("term changed from {term} to {term_after} without any failure")
        })?;
        expect_single_leader(&sim, leader, term)
    });
}

/// Three nodes: the leader is cut off and replaced; it rejoins without disturbing the new
/// leader; with two of three gone no one leads; quorum back, leader back.
#[test]
fn re_election() {
    for_each_seed("re_election", |seed| {
        let mut sim = shale_tests::sim(seed, 3);
        let leader1 = sim.wait_for_leader(et(5))?;

        // The leader goes: the other two elect one of themselves.
        sim.disconnect(leader1);
        let leader2 = sim.wait_for_leader(LEADER_BUDGET)?;

        // The old leader comes back. Pre-vote and the leader lease keep it from forcing an
        // election: the new leader and its term survive two election timeouts.
        let term2 = term_of(&sim, leader2)?;
        sim.connect(leader1);
        sim.run_for(et(2));
        expect_single_leader(&sim, leader2, term2)?;
        let term = sim.check_terms()?;
        ensure(&sim, term == term2, || {
            format!("rejoining node {leader1} moved the term from {term2} to {term}")
        })?;

        // The leader and one follower go: the last node alone must not lead, and the cut-off
        // leader steps down by check-quorum within two election timeouts.
        let follower = other_than(&sim, &[leader2]);
        sim.disconnect(leader2);
        sim.disconnect(follower);
        sim.run_for(et(4));
        sim.check_no_leader()?;
        ensure(&sim, sim.leaders().is_empty(), || {
            format!(
                "without a quorum anywhere, nodes still claim to lead: {:?}",
                sim.leaders()
            )
        })?;

        // A quorum again: a leader again.
        sim.connect(follower);
        let leader3 = sim.wait_for_leader(LEADER_BUDGET)?;

        // Everyone back: still exactly one leader, and it is not disturbed.
        sim.connect(leader2);
        sim.run_for(et(2));
        let leader4 = sim.wait_for_leader(LEADER_BUDGET)?;
        let term4 = term_of(&sim, leader4)?;
        ensure(&sim, leader4 == leader3, || {
            format!("leader moved from {leader3} to {leader4} when node {leader2} rejoined")
        })?;
        sim.check_terms()?;
        expect_single_leader(&sim, leader4, term4)
    });
}

/// Seven nodes, ten rounds: each round cuts off three random nodes (repeats allowed, so one to
/// three distinct), and the at least four that remain must have a leader.
#[test]
fn many_elections() {
    for_each_seed("many_elections", |seed| {
        let mut sim = shale_tests::sim(seed, 7);
        sim.wait_for_leader(et(5))?;
        for round in 0..10 {
            let victims: Vec<NodeId> = (0..3)
                .map(|_| sim.fault_rng().below(7) as NodeId + 1)
                .collect();
            for &v in &victims {
                sim.disconnect(v);
            }
            let connected = sim.connected_nodes();
            sim.wait_for_leader(LEADER_BUDGET).map_err(|e| {
                sim.error(format!(
                    "round {round}: no leader among {connected:?} after cutting {victims:?}: {e}"
                ))
            })?;
            for &v in &victims {
                sim.connect(v);
            }
        }
        // All connected for a while: one leader that everyone follows.
        sim.run_for(et(4));
        let leader = sim.wait_for_leader(LEADER_BUDGET)?;
        sim.run_for(et(2));
        let term = sim.check_terms()?;
        expect_single_leader(&sim, leader, term)
    });
}

/// Three nodes: the initial election stays within a message bound.
///
/// A round in which all three nodes campaign at once costs at most 24 messages (each sends
/// two pre-votes and two votes, each answered once); a clean winning round costs 8 (two
/// pre-votes and two votes with their answers) plus the new leader's 2 no-op appends. One
/// contested round followed by a clean one is therefore 34; over 100 000 seeds that is the
/// observed maximum (95% of elections take 9 or 10).
#[test]
fn election_message_count() {
    for_each_seed("election_message_count", |seed| {
        let mut sim = shale_tests::sim(seed, 3);
        let leader = sim.wait_for_leader(et(5))?;
        let sent = sim.network_stats().sent;
        ensure(&sim, (1..=34).contains(&sent), || {
            format!(
                "electing node {leader} (term {:?}) took {sent} messages, expected 1..=34",
                sim.node(leader).map(|r| r.term())
            )
        })
    });
}

/// Budget for electing a leader after a failure: the followers' lease (1 ET), their timeout
/// (up to 2 ET) and room for a split vote or two, as the lab's ~5 s `checkOneLeader` window
const LEADER_BUDGET: Duration = ELECTION_TIMEOUT.saturating_mul(10);

/// `n` election timeouts
fn et(n: u64) -> Duration {
    ELECTION_TIMEOUT.saturating_mul(n)
}

/// The term of running node `id`
fn term_of(sim: &Sim, id: NodeId) -> Result<Term, SimError> {
    sim.node(id)
        .map(|r| r.term())
        .ok_or_else(|| sim.error(format!("node {id} is not running")))
}

/// Some node other than those in `not`
fn other_than(sim: &Sim, not: &[NodeId]) -> NodeId {
    sim.ids()
        .into_iter()
        .find(|id| !not.contains(id))
        .expect("the cluster has more nodes than excluded")
}

/// Exactly one node claims leadership anywhere, and it is `leader` in `term`
fn expect_single_leader(sim: &Sim, leader: NodeId, term: Term) -> Result<(), SimError> {
    let leaders = sim.leaders();
    ensure(sim, leaders == [(leader, term)], || {
        format!("expected node {leader} to be the only leader (term {term}), found {leaders:?}")
    })
}
