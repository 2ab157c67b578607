//! Limits hold: uncommitted bytes, outbox capacity, reads that never get an answer
//!
//! Regression tests for findings of the core review: each fails on the code before its fix.

use shale_core::raft::{
    Config, ConfigError, Entry, EntryKind, HardState, Outgoing, ProposeError, Raft,
    ReadConsistency, ReadError, Recovered, Role,
};
use shale_core::time::{Duration, Instant};

/// Drains a node: writes persisted at once, messages returned
fn drain(node: &mut Raft, now: Instant) -> Vec<Outgoing> {
    while let Some(w) = node.poll_write() {
        node.handle_persisted(now, w.id);
    }
    let mut out = Vec::new();
    while let Some(m) = node.poll_message() {
        out.push(m);
    }
    while node.poll_apply().is_some() {}
    out
}

/// Delivers every message among `nodes` until quiet; messages to ids in `cut` are dropped
fn settle(nodes: &mut [Raft], now: Instant, cut: &[u64]) {
    let mut queue: Vec<Outgoing> = Vec::new();
    for n in nodes.iter_mut() {
        queue.extend(drain(n, now));
    }
    while let Some(m) = queue.pop() {
        if cut.contains(&m.to) || cut.contains(&m.from) {
            continue;
        }
        let i = (m.to - 1) as usize;
        nodes[i].handle_message(now, m.from, m.message).unwrap();
        queue.extend(drain(&mut nodes[i], now));
    }
}

fn config(id: u64) -> Config {
    let mut c = Config::new(id, id);
    c.election_timeout_max = c.election_timeout_min;
    c
}

fn elect(nodes: &mut [Raft], leader: usize, now: &mut Instant, cut: &[u64]) {
    *now = nodes[leader].poll_timeout().unwrap();
    nodes[leader].handle_timeout(*now).unwrap();
    settle(nodes, *now, cut);
    assert_eq!(nodes[leader].role(), Role::Leader);
}

#[test]
fn inherited_entries_do_not_release_uncommitted_budget() {
    // Node 1 holds 10 uncommitted entries of term 1, then leads term 2 with a 4 KiB budget.
    let inherited: Vec<Entry> = (1..=10)
        .map(|i| Entry {
            term: 1,
            index: i,
            kind: EntryKind::Command,
            data: vec![0u8; 1000].into(),
        })
        .collect();
    let mut now = Instant::ZERO;
    let mut nodes: Vec<Raft> = (1..=3)
        .map(|id| {
            let mut c = config(id);
            c.max_entry_bytes = 1000;
            c.max_uncommitted_bytes = 4096;
            let recovered = if id == 1 {
                Recovered {
                    hard_state: HardState {
                        term: 1,
                        vote: None,
                    },
                    entries: inherited.clone(),
                    ..Recovered::default()
                }
            } else {
                Recovered::default()
            };
            Raft::new(c, &[1, 2, 3], recovered, now).unwrap()
        })
        .collect();
    elect(&mut nodes, 0, &mut now, &[3]);
    // Fill the budget while node 2 is cut off, so nothing new commits.
    let mut accepted = 0;
    while nodes[0].propose(now, vec![1u8; 1000]).is_ok() {
        accepted += 1;
    }
    assert_eq!(accepted, 4, "4 KiB budget takes four 1000-byte commands");
    // Everything up to the last proposal commits: the budget is free again.
    settle(&mut nodes, now, &[3]);
    assert_eq!(nodes[0].commit_index(), nodes[0].last_index());
    assert_eq!(nodes[0].uncommitted_bytes(), 0);
    // Now commit only the inherited entries and the no-op: our own proposals stay counted.
    for _ in 0..4 {
        nodes[0].propose(now, vec![2u8; 1000]).unwrap();
    }
    assert_eq!(
        nodes[0].propose(now, vec![3u8; 1000]),
        Err(ProposeError::Busy)
    );
    assert!(nodes[0].uncommitted_bytes() >= 4000);
}

#[test]
fn an_outbox_too_small_for_the_group_is_refused() {
    let voters: Vec<u64> = (1..=64).collect();
    let mut c = config(1);
    c.max_outbox_msgs = 64;
    let err = Raft::new(c, &voters, Recovered::default(), Instant::ZERO).unwrap_err();
    assert_eq!(
        err,
        ConfigError {
            field: "max_outbox_msgs",
            reason: err.reason
        }
    );
}

#[test]
fn forwarded_reads_whose_answer_is_lost_time_out_and_free_their_slot() {
    let mut now = Instant::ZERO;
    let mut nodes: Vec<Raft> = (1..=3)
        .map(|id| {
            let mut c = config(id);
            c.max_pending_reads = 2;
            Raft::new(c, &[1, 2, 3], Recovered::default(), now).unwrap()
        })
        .collect();
    elect(&mut nodes, 0, &mut now, &[]);
    // Node 2 forwards two reads; both requests are lost.
    nodes[1]
        .read(now, 1, ReadConsistency::Linearizable)
        .unwrap();
    nodes[1]
        .read(now, 2, ReadConsistency::Linearizable)
        .unwrap();
    assert_eq!(
        nodes[1].read(now, 3, ReadConsistency::Linearizable),
        Err(ReadError::Busy)
    );
    drain(&mut nodes[1], now);
    // Heartbeats keep the leader alive; the reads give up after an election timeout.
    let end = now + Duration::from_millis(600);
    while now < end {
        now += Duration::from_millis(50);
        nodes[0].handle_timeout(now).unwrap();
        settle(&mut nodes, now, &[]);
        if nodes[1].poll_timeout().is_some_and(|t| t <= now) {
            nodes[1].handle_timeout(now).unwrap();
        }
    }
    let failed: Vec<_> = std::iter::from_fn(|| nodes[1].poll_read()).collect();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.iter().all(|r| r.result == Err(ReadError::TimedOut)));
    assert_eq!(
        nodes[1].role(),
        Role::Follower,
        "the leader stayed alive throughout"
    );
    nodes[1]
        .read(now, 3, ReadConsistency::Linearizable)
        .unwrap();
}

#[test]
fn the_in_memory_log_is_capped_until_a_snapshot_compacts_it() {
    // A lone voter commits at once, so only max_log_bytes stops it, until a snapshot compacts.
    let mut now = Instant::ZERO;
    let mut c = config(1);
    c.max_entry_bytes = 100;
    c.max_uncommitted_bytes = 1_000;
    c.snapshot_threshold_bytes = 1_000;
    c.snapshot_trailing_bytes = 0;
    c.max_log_bytes = 2_000;
    let mut node = Raft::new(c, &[1], Recovered::default(), now).unwrap();
    now = node.poll_timeout().unwrap();
    node.handle_timeout(now).unwrap();
    drain(&mut node, now);
    assert_eq!(node.role(), Role::Leader);
    let mut accepted = 0;
    loop {
        match node.propose(now, vec![7u8; 100]) {
            Ok(_) => accepted += 1,
            Err(ProposeError::Busy) => break,
            Err(e) => panic!("{e}"),
        }
        drain(&mut node, now);
    }
    assert!(
        node.log_bytes() <= 2_000,
        "log holds {} bytes",
        node.log_bytes()
    );
    assert!(accepted >= 10, "accepted {accepted}");
    // The application snapshots what it applied; the log shrinks and proposals flow again.
    let applied = node.applied_index();
    assert!(node.handle_snapshot_taken(now, applied, 64));
    drain(&mut node, now);
    assert_eq!(node.log_bytes(), 0);
    assert!(node.propose(now, vec![7u8; 100]).is_ok());
}
