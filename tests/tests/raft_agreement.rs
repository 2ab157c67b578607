//! Log agreement scenarios, after the classic Raft lab tests: basic agreement, byte and
//! message budgets, follower and leader failures, agreement without a quorum, concurrent
//! proposals, a stale leader rejoining, and fast backtracking over long divergent logs
//!
//! Two differences from the lab shape the expected indexes: every new leader appends a no-op
//! entry of its term before any command (so the first command of the first term lands at
//! index 2, not 1), and message counters count requests and answers separately.

use shale_core::raft::{EntryKind, LogId, NodeId, Term};
use shale_core::time::Duration;
use shale_sim::{NetworkConfig, Sim, SimError};
use shale_tests::{ELECTION_TIMEOUT, HEARTBEAT, ensure, for_each_seed};

/// Three nodes, three commands: nothing is applied at an index before it is proposed, and the
/// commands take consecutive indexes right after the leader's no-op.
#[test]
fn basic_agree() {
    for_each_seed("basic_agree", |seed| {
        let mut sim = shale_tests::sim(seed, 3);
        sim.wait_for_leader(et(5))?;
        // Index 1 holds the leader's no-op, so the commands go to 2, 3 and 4.
        for (i, expected) in (2..=4).enumerate() {
            let (n, _) = sim.n_committed(expected);
            ensure(&sim, n == 0, || {
                format!("{n} nodes applied index {expected} before anything was proposed there")
            })?;
            let index = sim.one(&cmd(100 + i as u64), 3, false, ONE_BUDGET)?;
            ensure(&sim, index == expected, || {
                format!("command {i} landed at index {index}, expected {expected}")
            })?;
        }
        let (n, noop) = sim.n_committed(1);
        ensure(
            &sim,
            n == 3 && noop.as_ref().is_some_and(|e| e.kind == EntryKind::Noop),
            || {
                format!(
                    "index 1 should be the leader's no-op on all 3 nodes, found {noop:?} on {n}"
                )
            },
        )
    });
}

/// Ten 5000-byte commands reach each follower about once: the bytes sent stay below
/// nodes × payload + 50 000 and above followers × payload.
#[test]
fn rpc_byte_bound() {
    for_each_seed("rpc_byte_bound", |seed| {
        let mut sim = shale_tests::sim(seed, 3);
        sim.wait_for_leader(et(5))?;
        sim.one(b"warm-up", 3, false, ONE_BUDGET)?;
        let before = sim.network_stats().sent_bytes;
        let mut payload = 0;
        for _ in 0..10 {
            let data = random_bytes(&mut sim, 5000);
            payload += data.len() as u64;
            sim.one(&data, 3, false, ONE_BUDGET)?;
        }
        let sent = sim.network_stats().sent_bytes - before;
        let (low, high) = (2 * payload, 3 * payload + 50_000);
        ensure(&sim, (low..=high).contains(&sent), || {
            format!(
                "{payload} bytes of commands cost {sent} bytes on the wire, expected {low}..={high}"
            )
        })
    });
}

/// Three nodes: with one follower gone the other two still commit; with both gone the leader
/// accepts a proposal that never commits.
#[test]
fn follower_failure() {
    for_each_seed("follower_failure", |seed| {
        let mut sim = shale_tests::sim(seed, 3);
        sim.wait_for_leader(et(5))?;
        sim.one(b"101", 3, false, ONE_BUDGET)?;
        let leader1 = sim.wait_for_leader(LEADER_BUDGET)?;
        sim.disconnect(next_node(&sim, leader1, 1));
        sim.one(b"102", 2, false, ONE_BUDGET)?;
        sim.run_for(et(2));
        sim.one(b"103", 2, false, ONE_BUDGET)?;

        let leader2 = sim.wait_for_leader(LEADER_BUDGET)?;
        for k in 1..=2 {
            let follower = next_node(&sim, leader2, k);
            sim.disconnect(follower);
        }
        // No-op at 1, then 101..103 at 2..4: the next proposal goes to index 5.
        let id = propose(&mut sim, leader2, b"104")?;
        ensure(&sim, id.index == 5, || {
            format!("104 went to {id}, expected index 5")
        })?;
        sim.run_for(et(4));
        expect_uncommitted(&sim, id.index)
    });
}

/// Three nodes: the leader goes and the other two carry on; then the second leader goes and
/// nothing proposed anywhere commits.
#[test]
fn leader_failure() {
    for_each_seed("leader_failure", |seed| {
        let mut sim = shale_tests::sim(seed, 3);
        sim.wait_for_leader(et(5))?;
        sim.one(b"101", 3, false, ONE_BUDGET)?;
        let leader1 = sim.wait_for_leader(LEADER_BUDGET)?;
        sim.disconnect(leader1);
        sim.one(b"102", 2, false, ONE_BUDGET)?;
        sim.run_for(et(2));
        let last = sim.one(b"103", 2, false, ONE_BUDGET)?;

        let leader2 = sim.wait_for_leader(LEADER_BUDGET)?;
        sim.disconnect(leader2);
        // Every node is cut off now; offer 104 to all of them.
        let accepted: Vec<LogId> = sim
            .ids()
            .into_iter()
            .filter_map(|id| sim.propose(id, b"104").ok())
            .collect();
        sim.run_for(et(4));
        expect_uncommitted(&sim, last + 1)?;
        for id in accepted {
            expect_uncommitted(&sim, id.index)?;
        }
        Ok(())
    });
}

/// Three nodes: a follower misses four commands, comes back and catches up.
#[test]
fn fail_agree() {
    for_each_seed("fail_agree", |seed| {
        let mut sim = shale_tests::sim(seed, 3);
        sim.wait_for_leader(et(5))?;
        sim.one(b"101", 3, false, ONE_BUDGET)?;
        let leader = sim.wait_for_leader(LEADER_BUDGET)?;
        let follower = next_node(&sim, leader, 1);
        sim.disconnect(follower);
        sim.one(b"102", 2, false, ONE_BUDGET)?;
        sim.one(b"103", 2, false, ONE_BUDGET)?;
        sim.run_for(et(2));
        sim.one(b"104", 2, false, ONE_BUDGET)?;
        sim.one(b"105", 2, false, ONE_BUDGET)?;

        sim.connect(follower);
        sim.one(b"106", 3, true, ONE_BUDGET)?;
        sim.run_for(et(2));
        let last = sim.one(b"107", 3, true, ONE_BUDGET)?;
        let caught_up = sim.applied(follower).len() as u64;
        ensure(&sim, caught_up >= last, || {
            format!("rejoined follower {follower} applied {caught_up} entries, expected {last}")
        })
    });
}

/// Five nodes, three followers cut off: the leader takes a proposal that cannot commit; once
/// they are back, agreement resumes.
#[test]
fn fail_no_agree() {
    for_each_seed("fail_no_agree", |seed| {
        let mut sim = shale_tests::sim(seed, 5);
        sim.wait_for_leader(et(5))?;
        sim.one(b"10", 5, false, ONE_BUDGET)?;
        let leader = sim.wait_for_leader(LEADER_BUDGET)?;
        let cut: Vec<NodeId> = (1..=3).map(|k| next_node(&sim, leader, k)).collect();
        for &id in &cut {
            sim.disconnect(id);
        }
        // No-op at 1, 10 at 2: the proposal goes to index 3.
        let id = propose(&mut sim, leader, b"20")?;
        ensure(&sim, id.index == 3, || {
            format!("20 went to {id}, expected index 3")
        })?;
        sim.run_for(et(4));
        expect_uncommitted(&sim, id.index)?;

        for &id in &cut {
            sim.connect(id);
        }
        // If the old leader wins again, its log keeps 20 at 3, its no-op goes to 4 and 30 to 5;
        // if another node wins, its no-op overwrites index 3 and 30 goes to 4.
        let leader2 = sim.wait_for_leader(LEADER_BUDGET)?;
        let id2 = propose(&mut sim, leader2, b"30")?;
        ensure(&sim, (4..=5).contains(&id2.index), || {
            format!("30 went to {id2}, expected index 4 or 5")
        })?;
        sim.one(b"1000", 5, true, ONE_BUDGET)?;
        Ok(())
    });
}

/// Three nodes: five proposals in a row on the leader, interleaved with message deliveries,
/// all commit at the indexes they were given, unless the term changes (then try again, up to
/// five times).
#[test]
fn concurrent_proposals() {
    for_each_seed("concurrent_proposals", |seed| {
        let mut sim = shale_tests::sim(seed, 3);
        sim.wait_for_leader(et(5))?;
        'attempt: for attempt in 0..5 {
            if attempt > 0 {
                sim.run_for(et(6));
            }
            let leader = sim.wait_for_leader(LEADER_BUDGET)?;
            let term = term_of(&sim, leader)?;
            let mut proposed = Vec::new();
            for i in 0..5 {
                let data = cmd(100 + i);
                match sim.propose(leader, &data) {
                    Ok(id) if id.term == term => proposed.push((id, data)),
                    _ => continue 'attempt,
                }
                let steps = sim.workload_rng().below(4);
                for _ in 0..steps {
                    sim.step();
                }
            }
            let ids: Vec<LogId> = proposed.iter().map(|(id, _)| *id).collect();
            sim.run_until(ONE_BUDGET, "the proposals to commit", |s| {
                term_moved(s, term) || ids.iter().all(|id| s.n_committed(id.index).0 == 3)
            })?;
            if term_moved(&sim, term) {
                continue;
            }
            for (id, data) in &proposed {
                let (n, entry) = sim.n_committed(id.index);
                let ok = entry
                    .as_ref()
                    .is_some_and(|e| e.log_id() == *id && e.data.as_bytes() == &data[..]);
                ensure(&sim, n == 3 && ok, || {
                    format!("proposal {id} ({data:?}): {n} nodes applied {entry:?}")
                })?;
            }
            return Ok(());
        }
        Err(sim.error("the term changed in all five attempts".into()))
    });
}

/// Three nodes: a leader cut off with three uncommitted entries rejoins after a newer leader
/// committed over them; its conflicting tail is overwritten.
#[test]
fn rejoin() {
    for_each_seed("rejoin", |seed| {
        let mut sim = shale_tests::sim(seed, 3);
        sim.wait_for_leader(et(5))?;
        sim.one(b"101", 3, true, ONE_BUDGET)?;
        let leader1 = sim.wait_for_leader(LEADER_BUDGET)?;
        sim.disconnect(leader1);
        let mut stale = Vec::new();
        for data in [b"102", b"103", b"104"] {
            stale.push(propose(&mut sim, leader1, data)?);
        }
        sim.one(b"103", 2, true, ONE_BUDGET)?;

        let leader2 = sim.wait_for_leader(LEADER_BUDGET)?;
        sim.disconnect(leader2);
        sim.connect(leader1);
        sim.one(b"104", 2, true, ONE_BUDGET)?;
        for id in &stale {
            let now = sim
                .node(leader1)
                .and_then(|r| r.entry(id.index))
                .map(|e| e.log_id());
            ensure(&sim, now != Some(*id), || {
                format!("old leader {leader1} still holds its uncommitted entry {id}")
            })?;
        }

        sim.connect(leader2);
        sim.one(b"105", 3, true, ONE_BUDGET)?;
        Ok(())
    });
}

/// Five nodes: two rounds of a leader and a follower cut off with 50 uncommitted entries
/// each, while the others commit 50; when the stale nodes return, the new leader must walk
/// back over 50 divergent entries quickly enough for every `one()` to meet its budget.
#[test]
fn backup() {
    for_each_seed("backup", |seed| {
        let mut sim = shale_tests::sim(seed, 5);
        sim.wait_for_leader(et(5))?;
        let value = random_bytes(&mut sim, 8);
        sim.one(&value, 5, true, ONE_BUDGET)?;

        // Leader 1 and one follower alone: 50 entries that cannot commit.
        let leader1 = sim.wait_for_leader(LEADER_BUDGET)?;
        let ring: Vec<NodeId> = (0..5).map(|k| next_node(&sim, leader1, k)).collect();
        only_group(&mut sim, &ring[..2]);
        for _ in 0..50 {
            let value = random_bytes(&mut sim, 8);
            propose(&mut sim, leader1, &value)?;
        }
        sim.run_for(half(ELECTION_TIMEOUT));

        // The other three elect a leader and commit 50.
        only_group(&mut sim, &ring[2..]);
        for _ in 0..50 {
            let value = random_bytes(&mut sim, 8);
            sim.one(&value, 3, true, ONE_BUDGET)?;
        }

        // Leader 2 and one follower alone: 50 more that cannot commit.
        let leader2 = sim.wait_for_leader(LEADER_BUDGET)?;
        let other = if leader2 == ring[2] { ring[3] } else { ring[2] };
        sim.disconnect(other);
        for _ in 0..50 {
            let value = random_bytes(&mut sim, 8);
            propose(&mut sim, leader2, &value)?;
        }
        sim.run_for(half(ELECTION_TIMEOUT));

        // The first pair plus `other` (which holds the 50 committed ones) commit 50.
        only_group(&mut sim, &[ring[0], ring[1], other]);
        for _ in 0..50 {
            let value = random_bytes(&mut sim, 8);
            sim.one(&value, 3, true, ONE_BUDGET)?;
        }

        // Everyone: the second pair walks back over its 50 divergent entries too. One entry
        // per round trip would cost each of them at least 50 rejected appends and 50 answers,
        // 200 messages; the conflict hint skips a whole divergent term per round trip (about
        // 20-30 messages in all, heartbeats included).
        sim.heal();
        let value = random_bytes(&mut sim, 8);
        let before = sim.network_stats().sent;
        sim.one(&value, 5, true, ONE_BUDGET)?;
        let sent = sim.network_stats().sent - before;
        ensure(&sim, sent <= 100, || {
            format!("bringing back two stale nodes took {sent} messages, expected at most 100")
        })
    });
}

/// Three nodes: one plus ten commands proposed back to back in one term, then an idle second,
/// each stay within a message bound (every message sent by any node counts, requests and
/// answers alike).
///
/// Replicating the commands, from a quiet cluster until it is quiet again (nothing in flight,
/// the leader knows both followers hold everything), costs at most:
/// - 11 appends per follower carrying the entries: each proposal sends its entry at once
///   (the followers are in the replicate state, the window of 64 is never full);
/// - 11 empty appends per follower carrying only a higher commit index: the leader tells a
///   follower about each commit advance it has not yet heard of, and the commit index can
///   advance at most once per new entry;
/// - one answer per append: 2 × 2 × (11 + 11) = 88 messages in all;
/// - heartbeats: per heartbeat interval begun, one heartbeat and one answer per follower.
///
/// So the bound is 88 + 4 × (⌊elapsed / HEARTBEAT⌋ + 1); the lab's bound is 42 round trips
/// (84 messages) with heartbeats included. An idle second is 20 heartbeat intervals: 2
/// messages per follower per heartbeat, 80, plus one more round for the window's edges.
#[test]
fn message_count() {
    message_count_on("message_count", None);
}

/// The same bound on a network that never reorders: every message takes exactly 3 ms, so
/// acknowledgements arrive one by one and each commit advance is announced separately
#[test]
fn message_count_in_order_network() {
    let in_order = NetworkConfig {
        delay_min: Duration::from_millis(3),
        delay_max: Duration::from_millis(3),
        ..NetworkConfig::reliable()
    };
    message_count_on("message_count_in_order_network", Some(in_order));
}

fn message_count_on(name: &str, network: Option<NetworkConfig>) {
    for_each_seed(name, |seed| {
        let mut sim = shale_tests::sim(seed, 3);
        if let Some(network) = network.clone() {
            sim.set_network(network);
        }
        sim.wait_for_leader(et(5))?;
        'attempt: for attempt in 0..5 {
            if attempt > 0 {
                sim.run_for(et(6));
            }
            let leader = sim.wait_for_leader(LEADER_BUDGET)?;
            let term = term_of(&sim, leader)?;
            sim.run_until(ONE_BUDGET, "a quiet cluster", |s| quiet(s, leader))?;
            let before = sim.network_stats().sent;
            let start = sim.now();
            let mut ids = Vec::new();
            for i in 0..11 {
                match sim.propose(leader, &cmd(i)) {
                    Ok(id) if id.term == term => ids.push(id),
                    _ => continue 'attempt,
                }
            }
            sim.run_until(ONE_BUDGET, "the commands to commit", |s| {
                term_moved(s, term)
                    || (ids.iter().all(|id| s.n_committed(id.index).0 == 3) && quiet(s, leader))
            })?;
            if term_moved(&sim, term) {
                continue;
            }
            let sent = sim.network_stats().sent - before;
            let elapsed = sim.now().saturating_since(start);
            let rounds = elapsed.as_micros() / HEARTBEAT.as_micros() + 1;
            let bound = 88 + 4 * rounds;
            ensure(&sim, sent <= bound, || {
                format!("11 commands took {sent} messages in {elapsed}, expected at most {bound}")
            })?;

            let before = sim.network_stats().sent;
            sim.run_for(HEARTBEAT.saturating_mul(20));
            let idle = sim.network_stats().sent - before;
            let bound = 2 * 2 * 20 + 4;
            return ensure(&sim, idle <= bound, || {
                format!("an idle second took {idle} messages, expected at most {bound}")
            });
        }
        Err(sim.error("the term changed in all five attempts".into()))
    });
}

/// Budget for electing a leader after a failure: the followers' lease (1 ET), their timeout
/// (up to 2 ET) and room for a split vote or two, as the lab's ~5 s `checkOneLeader` window
const LEADER_BUDGET: Duration = ELECTION_TIMEOUT.saturating_mul(10);

/// Budget of one `one()`: the lab's 10 s (with retries) for a 1 s election allowance; ours is
/// 2 ET, so 20 ET
const ONE_BUDGET: Duration = ELECTION_TIMEOUT.saturating_mul(20);

/// `n` election timeouts
fn et(n: u64) -> Duration {
    ELECTION_TIMEOUT.saturating_mul(n)
}

/// Half of `d`
fn half(d: Duration) -> Duration {
    Duration::from_micros(d.as_micros() / 2)
}

/// A distinct, readable command
fn cmd(n: u64) -> Vec<u8> {
    n.to_string().into_bytes()
}

/// `len` bytes from the workload stream
fn random_bytes(sim: &mut Sim, len: usize) -> Vec<u8> {
    let rng = sim.workload_rng();
    (0..len).map(|_| rng.below(256) as u8).collect()
}

/// The node `k` places after `id` in the ring of ids
fn next_node(sim: &Sim, id: NodeId, k: u64) -> NodeId {
    let n = sim.ids().len() as u64;
    (id - 1 + k) % n + 1
}

/// The term of running node `id`
fn term_of(sim: &Sim, id: NodeId) -> Result<Term, SimError> {
    sim.node(id)
        .map(|r| r.term())
        .ok_or_else(|| sim.error(format!("node {id} is not running")))
}

/// Whether a running node moved past `term`
fn term_moved(sim: &Sim, term: Term) -> bool {
    sim.ids()
        .into_iter()
        .filter_map(|id| sim.node(id))
        .any(|r| r.term() != term)
}

/// Nothing in flight, and the leader knows every follower holds its whole log
fn quiet(sim: &Sim, leader: NodeId) -> bool {
    let stats = sim.network_stats();
    let Some(raft) = sim.node(leader) else {
        return false;
    };
    stats.sent + stats.duplicated == stats.delivered + stats.dropped
        && sim.ids().into_iter().filter(|&id| id != leader).all(|id| {
            raft.progress(id)
                .is_some_and(|p| p.match_index == raft.last_index())
        })
}

/// Proposes on `id`, which must accept
fn propose(sim: &mut Sim, id: NodeId, data: &[u8]) -> Result<LogId, SimError> {
    sim.propose(id, data)
        .map_err(|e| sim.error(format!("leader {id} refused a proposal: {e:?}")))
}

/// No node applied anything at `index`
fn expect_uncommitted(sim: &Sim, index: u64) -> Result<(), SimError> {
    let (n, entry) = sim.n_committed(index);
    ensure(sim, n == 0, || {
        format!("{n} nodes applied {entry:?} at index {index} without a quorum")
    })
}

/// Leaves only `group` connected, to each other; every other node is cut off alone
fn only_group(sim: &mut Sim, group: &[NodeId]) {
    for id in sim.ids() {
        if !group.contains(&id) {
            sim.disconnect(id);
        }
    }
    for &id in group {
        sim.connect(id);
    }
}
