//! Persistence scenarios: nodes crash and restart from their disks and the group must carry on
//!
//! Ports of the classic Raft lab persistence tests (Persist1, Persist2, Persist3) plus two checks
//! of our own crash model: a crash loses only writes that were not yet durable, and a restarted
//! node never goes back on its term or its vote. The simulator checks its safety invariants after
//! every event; these scenarios add the properties the classic tests assert.
//!
//! Time bounds are multiples of [`ELECTION_TIMEOUT`] and [`HEARTBEAT`]: an agreement gets twenty
//! election timeouts (ten of the longest ones, like the classic 10 s with 1 s elections), an
//! election gets ten.

use shale_core::raft::{HardState, Index, NodeId};
use shale_core::time::Duration;
use shale_sim::{DiskConfig, NetworkConfig, Sim, SimConfig, SimError, entry_hash};
use shale_tests::{ELECTION_TIMEOUT, HEARTBEAT, ensure, for_each_seed, raft_config, sim};

/// Time one `one()` agreement may take
fn agree() -> Duration {
    ELECTION_TIMEOUT.saturating_mul(20)
}

/// Time an election may take
fn elect() -> Duration {
    ELECTION_TIMEOUT.saturating_mul(10)
}

/// The node `k` places after `id` in a ring of `n` nodes (ids are `1..=n`)
fn after(id: NodeId, k: u64, n: usize) -> NodeId {
    (id - 1 + k) % n as NodeId + 1
}

/// Checks that every node applied each `(index, value)` of `expected`, at that index
fn all_applied(sim: &Sim, expected: &[(Index, &[u8])]) -> Result<(), SimError> {
    for id in sim.ids() {
        for &(index, value) in expected {
            let held = sim.applied(id).get(index as usize - 1);
            let data = held.map(|e| e.data.as_bytes());
            ensure(sim, data == Some(value), || {
                format!(
                    "node {id} applied {:?} at index {index}, expected {:?} (it applied {} entries)",
                    data.map(String::from_utf8_lossy),
                    String::from_utf8_lossy(value),
                    sim.applied(id).len()
                )
            })?;
        }
    }
    Ok(())
}

/// Persist1: whole-group restart, leader restarts, and a restarted node rejoining after a cut
#[test]
fn persist1() {
    for_each_seed("persist1", |seed| {
        let mut sim = sim(seed, 3);
        let mut done: Vec<(Index, &[u8])> = Vec::new();
        done.push((sim.one(b"11", 3, true, agree())?, b"11"));

        sim.restart_all();
        done.push((sim.one(b"12", 3, true, agree())?, b"12"));

        let leader1 = sim.wait_for_leader(elect())?;
        sim.restart(leader1);
        done.push((sim.one(b"13", 3, true, agree())?, b"13"));

        // The new leader is cut off while the other two commit; it restarts and rejoins.
        let leader2 = sim.wait_for_leader(elect())?;
        sim.disconnect(leader2);
        let i14 = sim.one(b"14", 2, true, agree())?;
        done.push((i14, b"14"));
        sim.restart(leader2);
        sim.connect(leader2);
        sim.run_until(agree(), "all 3 nodes to apply 14", |s| {
            s.n_committed(i14).0 == 3
        })?;

        // A follower is cut off, restarts and rejoins.
        let leader3 = sim.wait_for_leader(elect())?;
        let follower = after(leader3, 1, 3);
        sim.disconnect(follower);
        done.push((sim.one(b"15", 2, true, agree())?, b"15"));
        sim.restart(follower);
        sim.connect(follower);
        done.push((sim.one(b"16", 3, true, agree())?, b"16"));
        all_applied(&sim, &done)
    });
}

/// Persist2: a group of two stale restarted nodes and one up-to-date node must elect the
/// up-to-date one (vote restriction and persisted term/vote) and commit, five rounds over
#[test]
fn persist2() {
    for_each_seed("persist2", |seed| {
        const N: usize = 5;
        let mut sim = sim(seed, N);
        let mut done: Vec<(Index, Vec<u8>)> = Vec::new();
        let mut value = 10u64;
        let mut commit = |sim: &mut Sim, expected: usize| -> Result<(), SimError> {
            value += 1;
            let data = value.to_string().into_bytes();
            let index = sim.one(&data, expected, true, agree())?;
            done.push((index, data));
            Ok(())
        };
        for round in 0..5 {
            commit(&mut sim, N)?;
            let leader = sim.wait_for_leader(elect())?;
            let [l1, l2, l3, l4] = [1, 2, 3, 4].map(|k| after(leader, k, N));
            sim.disconnect(l1);
            sim.disconnect(l2);
            commit(&mut sim, N - 2)?;
            for id in [leader, l3, l4] {
                sim.disconnect(id);
            }
            // The two stale nodes restart and find each other: two of five cannot elect.
            for id in [l1, l2] {
                sim.restart(id);
                sim.connect(id);
            }
            sim.run_for(ELECTION_TIMEOUT.saturating_mul(2));
            let stray = sim.leader_among(&[l1, l2]);
            ensure(&sim, stray.is_none(), || {
                format!("round {round}: stale nodes {l1},{l2} elected {stray:?} without a quorum")
            })?;
            // The up-to-date node restarts and joins them: only it can win.
            sim.restart(l3);
            sim.connect(l3);
            let elected = sim.wait_for_leader_among(&[l1, l2, l3], elect())?;
            ensure(&sim, elected == l3, || {
                format!(
                    "round {round}: stale node {elected} won an election against up-to-date node {l3}"
                )
            })?;
            commit(&mut sim, N - 2)?;
            sim.connect(l4);
            sim.connect(leader);
        }
        commit(&mut sim, N)?;
        let expected: Vec<(Index, &[u8])> = done.iter().map(|(i, d)| (*i, &d[..])).collect();
        all_applied(&sim, &expected)
    });
}

/// Persist3: a restarted leader must recover from its own disk an entry that only it and one
/// crashed peer hold, and commit it with a third node that never saw it
#[test]
fn persist3() {
    for_each_seed("persist3", |seed| {
        let mut sim = sim(seed, 3);
        let i101 = sim.one(b"101", 3, false, agree())?;
        let a = sim.wait_for_leader(elect())?;
        let (b, c) = (after(a, 1, 3), after(a, 2, 3));
        sim.disconnect(c);
        let i102 = sim.one(b"102", 2, false, agree())?;
        sim.crash(a);
        sim.crash(b);
        sim.connect(c);
        sim.restart(a);
        let held = sim
            .node(a)
            .and_then(|r| r.entry(i102))
            .map(|e| e.data.clone());
        ensure(
            &sim,
            held.as_ref().is_some_and(|d| d.as_bytes() == b"102"),
            || format!("node {a} restarted without committed entry 102 at index {i102}: {held:?}"),
        )?;
        // C lacks 102, so A is the only node of the two that can win.
        let elected = sim.wait_for_leader_among(&[a, c], elect())?;
        ensure(&sim, elected == a, || {
            format!("node {c} won an election without committed entry {i102}; expected {a}")
        })?;
        let i103 = sim.one(b"103", 2, true, agree())?;
        sim.restart(b);
        let i104 = sim.one(b"104", 3, true, agree())?;
        all_applied(
            &sim,
            &[
                (i101, b"101"),
                (i102, b"102"),
                (i103, b"103"),
                (i104, b"104"),
            ],
        )
    });
}

/// Checks that every entry known committed is in the durable log of a majority of nodes
fn committed_on_majority_disks(sim: &Sim, when: &str) -> Result<(), SimError> {
    let majority = sim.ids().len() / 2 + 1;
    for (pos, &(term, hash)) in sim.checker().committed().iter().enumerate() {
        let index = pos as Index + 1;
        let holders: Vec<NodeId> = sim
            .ids()
            .into_iter()
            .filter(|&id| {
                sim.durable_log(id)
                    .get(pos)
                    .is_some_and(|e| e.index == index && e.term == term && entry_hash(e) == hash)
            })
            .collect();
        ensure(sim, holders.len() >= majority, || {
            format!(
                "{when}: committed entry {term}/{index} is durable only on {holders:?}, fewer than {majority}"
            )
        })?;
    }
    Ok(())
}

/// On a slow disk, crashes (of single nodes and of everyone at once) lose writes still in
/// flight, but never an entry that was committed: it is on a majority of disks
#[test]
fn crash_loses_only_unsynced() {
    for_each_seed("crash_loses_only_unsynced", |seed| {
        const N: usize = 5;
        let mut config = SimConfig::new(seed, N);
        config.raft = raft_config();
        config.disk = DiskConfig {
            latency_min: Duration::from_millis(5),
            latency_max: HEARTBEAT.saturating_mul(2),
            ..DiskConfig::default()
        };
        let mut sim = Sim::new(config);
        sim.wait_for_leader(elect())?;
        let (mut counter, mut crashes_with_pending) = (0u64, 0u64);
        for round in 0..30 {
            for _ in 0..sim.workload_rng().range(1, 6) {
                counter += 1;
                let _ = sim.propose_to_leader(format!("c{counter}").as_bytes());
                let pause = sim.workload_rng().below(HEARTBEAT.as_micros() / 5);
                sim.run_for(Duration::from_micros(pause));
            }
            let pause = sim.fault_rng().below(HEARTBEAT.as_micros() * 2);
            sim.run_for(Duration::from_micros(pause));
            let everyone = sim.fault_rng().chance(1, 5);
            let victims: Vec<NodeId> = if everyone {
                sim.ids()
            } else {
                let leader = sim.leader();
                let pick = sim.ids()[sim.fault_rng().below(N as u64) as usize];
                leader.into_iter().chain([pick]).collect()
            };
            for &id in &victims {
                if sim.node(id).is_some_and(|r| r.unpersisted_writes() > 0) {
                    crashes_with_pending += 1;
                }
                sim.crash(id);
            }
            committed_on_majority_disks(
                &sim,
                &format!("round {round}, after crashing {victims:?}"),
            )?;
            // Bring nodes back so that at most two are down, then let the group settle a bit.
            let down: Vec<NodeId> = sim.ids().into_iter().filter(|&id| !sim.is_up(id)).collect();
            for &id in down.iter().skip(2) {
                sim.restart(id);
            }
            let settle = sim.fault_rng().range(0, ELECTION_TIMEOUT.as_micros() * 2);
            sim.run_for(Duration::from_micros(settle));
            for &id in down.iter().take(2) {
                sim.restart(id);
            }
            committed_on_majority_disks(&sim, &format!("round {round}, after restarts"))?;
        }
        ensure(&sim, crashes_with_pending > 0, || {
            "no crash happened with a write in flight: the scenario tested nothing".into()
        })?;
        let before = sim.checker().committed().to_vec();
        sim.check_liveness_after_heal(agree())?;
        for id in sim.ids() {
            for (pos, &(term, hash)) in before.iter().enumerate() {
                let got = sim.applied(id).get(pos).map(|e| (e.term, entry_hash(e)));
                ensure(&sim, got == Some((term, hash)), || {
                    format!(
                        "node {id} applied {got:?} at index {} where {term}/{} was committed",
                        pos + 1,
                        pos + 1
                    )
                })?;
            }
        }
        Ok(())
    });
}

/// Votes on a slow disk: leaders are cut off again and again, and while the others elect a new
/// one (candidates racing on a network with spread-out delays), voters crash and restart at
/// once, losing writes in flight. A vote lost that way must never have been sent: the voter,
/// back with its old hard state, could vote again in the same term, and the simulator's
/// election-safety check (one leader per term) fails.
#[test]
fn votes_survive_crashes_during_elections() {
    for_each_seed("votes_survive_crashes_during_elections", |seed| {
        const N: usize = 5;
        let mut config = SimConfig::new(seed, N);
        config.raft = raft_config();
        config.disk = DiskConfig {
            latency_min: Duration::from_millis(5),
            latency_max: Duration::from_millis(40),
            torn_write_per_million: 0,
        };
        config.network = NetworkConfig {
            delay_min: Duration::from_millis(1),
            delay_max: Duration::from_millis(40),
            ..NetworkConfig::reliable()
        };
        let mut sim = Sim::new(config);
        sim.wait_for_leader(elect())?;
        let (mut crashes_with_pending, mut leaders) = (0u64, 0u64);
        for _ in 0..25 {
            let cut = sim.leader();
            if let Some(leader) = cut {
                sim.disconnect(leader);
            }
            // For three election timeouts, a node with a write in flight (a term or a vote,
            // mostly) crashes and restarts at once, now and then.
            let until = sim.now() + ELECTION_TIMEOUT.saturating_mul(3);
            while sim.now() < until {
                let pause = sim.fault_rng().range(500, 4_000);
                sim.run_for(Duration::from_micros(pause));
                for id in sim.ids() {
                    let pending = sim.node(id).is_some_and(|r| r.unpersisted_writes() > 0);
                    if Some(id) != cut && pending && sim.fault_rng().chance(1, 25) {
                        crashes_with_pending += 1;
                        sim.restart(id);
                    }
                }
            }
            leaders += u64::from(sim.leader().is_some_and(|l| Some(l) != cut));
            if let Some(leader) = cut {
                sim.connect(leader);
            }
            sim.run_for(ELECTION_TIMEOUT);
        }
        ensure(&sim, crashes_with_pending > 0 && leaders > 0, || {
            format!(
                "{crashes_with_pending} crashes with a write in flight, {leaders} new leaders: \
                 the scenario tested nothing"
            )
        })?;
        sim.check_liveness_after_heal(agree())
    });
}

/// For every node, the hard state it last held with no write in flight (so surely durable)
struct Settled {
    /// Per node (index = id - 1)
    hard_states: Vec<HardState>,
    /// Settled hard states that went back, as messages
    violations: Vec<String>,
}

impl Settled {
    /// Records the hard state of every node that has nothing in flight; a settled hard state
    /// must never go back (term) nor change its mind (vote within a term)
    fn observe(&mut self, sim: &Sim) {
        for id in sim.ids() {
            let Some(raft) = sim.node(id).filter(|r| r.unpersisted_writes() == 0) else {
                continue;
            };
            let (old, new) = (self.hard_states[id as usize - 1], raft.hard_state());
            if let Err(e) = follows(old, new) {
                self.violations
                    .push(format!("node {id} at {}: {e}", sim.now()));
            }
            self.hard_states[id as usize - 1] = new;
        }
    }
}

/// `Err` unless hard state `new` may follow `old`: a term never decreases and a vote cast in a
/// term is kept for that term
fn follows(old: HardState, new: HardState) -> Result<(), String> {
    let went_back = new.term < old.term;
    let changed_vote = new.term == old.term && old.vote.is_some() && new.vote != old.vote;
    if went_back || changed_vote {
        Err(format!("hard state {old:?} was followed by {new:?}"))
    } else {
        Ok(())
    }
}

/// Runs `duration`, letting `settled` watch every event
fn run_watching(sim: &mut Sim, duration: Duration, settled: &mut Settled) {
    // `run_until` with a condition that never holds runs the whole budget; its timeout is the
    // expected outcome.
    let _ = sim.run_until(duration, "the watch to end", |s| {
        settled.observe(s);
        false
    });
}

/// After a crash and restart, no node's term is lower than before and no vote is forgotten:
/// checked against what was surely durable at random crash points (often right as a new term
/// or vote is being written), and for equality when the whole group restarts at quiet points
#[test]
fn restart_keeps_term_and_vote() {
    for_each_seed("restart_keeps_term_and_vote", |seed| {
        const N: usize = 5;
        let mut config = SimConfig::new(seed, N);
        config.raft = raft_config();
        config.disk.latency_max = Duration::from_millis(20);
        let mut sim = Sim::new(config);
        let mut settled = Settled {
            hard_states: vec![HardState::default(); N],
            violations: Vec::new(),
        };
        let mut hunted = 0u64;
        for round in 0..40 {
            let _ = sim.propose_to_leader(format!("r{round}").as_bytes());
            let pause = sim.fault_rng().below(ELECTION_TIMEOUT.as_micros());
            run_watching(&mut sim, Duration::from_micros(pause), &mut settled);
            // Cut nodes off (often the leader) now and then so that elections keep bumping terms.
            let pick = sim.ids()[sim.fault_rng().below(N as u64) as usize];
            let cut = sim
                .leader()
                .filter(|_| sim.fault_rng().chance(1, 2))
                .unwrap_or(pick);
            let cut_off = sim
                .ids()
                .iter()
                .filter(|&&id| !sim.is_connected(id))
                .count();
            match sim.fault_rng().below(3) {
                0 if cut_off < 2 => sim.disconnect(cut),
                1 => sim.heal(),
                _ => {}
            }
            // Half the time, crash a node right while a new term or vote is on its way to disk.
            let mut in_flight_change = None;
            if sim.fault_rng().chance(1, 2) {
                let _ = sim.run_until(
                    ELECTION_TIMEOUT.saturating_mul(4),
                    "a term or vote in flight",
                    |s| {
                        settled.observe(s);
                        in_flight_change = s.ids().into_iter().find(|&id| {
                            s.node(id).is_some_and(|r| {
                                r.unpersisted_writes() > 0
                                    && r.hard_state() != settled.hard_states[id as usize - 1]
                            })
                        });
                        in_flight_change.is_some()
                    },
                );
            }
            hunted += u64::from(in_flight_change.is_some());
            let victim = in_flight_change.unwrap_or(pick);
            let Some(raft) = sim.node(victim) else {
                continue;
            };
            let (before, in_flight) = (raft.hard_state(), raft.unpersisted_writes());
            let durable = settled.hard_states[victim as usize - 1];
            sim.crash(victim);
            let down = sim.fault_rng().below(HEARTBEAT.as_micros() * 4);
            run_watching(&mut sim, Duration::from_micros(down), &mut settled);
            sim.restart(victim);
            let now = sim.node(victim).map(|r| r.hard_state()).unwrap_or_default();
            follows(durable, now).map_err(|e| {
                sim.error(format!(
                    "round {round}: node {victim} lost durable state: {e}"
                ))
            })?;
            ensure(&sim, in_flight > 0 || now == before, || {
                format!(
                    "round {round}: node {victim} had no write in flight at {before:?} but restarted at {now:?}"
                )
            })?;
            settled.hard_states[victim as usize - 1] = now;
            ensure(&sim, settled.violations.is_empty(), || {
                settled.violations.join("\n")
            })?;
        }
        ensure(&sim, hunted > 0, || {
            "no crash hit a term or vote in flight: the scenario tested little".into()
        })?;
        // Whole-group restarts at quiet points: every term and vote must survive as it was.
        sim.heal();
        for _ in 0..3 {
            sim.run_for(ELECTION_TIMEOUT);
            sim.run_until(elect(), "every write to be durable", |s| {
                s.ids()
                    .iter()
                    .all(|&id| s.node(id).is_some_and(|r| r.unpersisted_writes() == 0))
            })?;
            let before: Vec<HardState> = sim.ids().iter().map(|&id| hard_state(&sim, id)).collect();
            sim.restart_all();
            for id in sim.ids() {
                let (old, new) = (before[id as usize - 1], hard_state(&sim, id));
                ensure(&sim, new == old, || {
                    format!(
                        "node {id} was at {old:?} with nothing in flight, but restarted at {new:?}"
                    )
                })?;
            }
            sim.one(b"after restart", N, true, agree())?;
        }
        Ok(())
    });
}

/// The hard state of node `id` (default if crashed)
fn hard_state(sim: &Sim, id: NodeId) -> HardState {
    sim.node(id).map(|r| r.hard_state()).unwrap_or_default()
}
