//! A follower's membership is always the latest one in its log
//!
//! Raft adopts a membership entry as soon as it is in the log (thesis §4.1), so when a new
//! leader's append overwrites a membership entry, the overwritten membership must be dropped
//! with it, even when the new entry sits at the same index.

use proptest::prelude::*;
use shale_core::raft::{Config, Entry, EntryKind, LogId, Membership, Message, Raft, Recovered};
use shale_core::time::Instant;

const VOTERS: [u64; 5] = [1, 2, 3, 4, 5];

fn follower(id: u64) -> Raft {
    Raft::new(
        Config::new(id, 11),
        &VOTERS,
        Recovered::default(),
        Instant::ZERO,
    )
    .expect("valid config")
}

fn membership_entry(term: u64, index: u64, m: &Membership) -> Entry {
    Entry {
        term,
        index,
        kind: EntryKind::Membership,
        data: postcard::to_allocvec(m).expect("encodes").into(),
    }
}

fn entry(term: u64, index: u64, kind: EntryKind) -> Entry {
    Entry {
        term,
        index,
        kind,
        data: if kind == EntryKind::Noop {
            Vec::new().into()
        } else {
            b"cmd".to_vec().into()
        },
    }
}

fn append(node: &mut Raft, from: u64, term: u64, prev: LogId, entries: Vec<Entry>) {
    let message = Message::Append {
        term,
        prev,
        entries,
        commit: 0,
    };
    node.handle_message(Instant::ZERO, from, message)
        .expect("room in the outbox");
}

/// The membership the log says is in force: its last membership entry, or the first one
fn latest_in_log(node: &Raft) -> Membership {
    node.entries(1, node.last_index() + 1)
        .iter()
        .rev()
        .find(|e| e.kind == EntryKind::Membership)
        .map_or_else(
            || Membership::new(&VOTERS),
            |e| postcard::from_bytes(e.data.as_bytes()).expect("decodes"),
        )
}

#[test]
fn a_membership_overwritten_at_the_same_index_is_dropped() {
    let five = Membership::new(&VOTERS);
    let c1 = five.joint(&Membership::new(&[1, 2, 3, 4]));
    let c2 = five.joint(&Membership::new(&[1, 2, 3, 5]));
    let mut node2 = follower(2);
    // Leader 1 (term 2) reaches only node 2 with cmd@1 and C1@2.
    append(
        &mut node2,
        1,
        2,
        LogId::new(0, 0),
        vec![entry(2, 1, EntryKind::Command), membership_entry(2, 2, &c1)],
    );
    assert_eq!(node2.membership(), &c1);
    // Node 3 wins term 3 and sends its noop@1 and C2@2 in one batch.
    append(
        &mut node2,
        3,
        3,
        LogId::new(0, 0),
        vec![entry(3, 1, EntryKind::Noop), membership_entry(3, 2, &c2)],
    );
    assert_eq!(node2.term_at(2), Some(3), "the log holds C2@2");
    assert_eq!(
        node2.membership(),
        &c2,
        "the membership in force is the one in the log"
    );
}

#[test]
fn a_membership_truncated_without_replacement_is_dropped() {
    let five = Membership::new(&VOTERS);
    let c1 = five.joint(&Membership::new(&[1, 2, 3, 4]));
    let mut node2 = follower(2);
    append(
        &mut node2,
        1,
        2,
        LogId::new(0, 0),
        vec![entry(2, 1, EntryKind::Command), membership_entry(2, 2, &c1)],
    );
    append(
        &mut node2,
        3,
        3,
        LogId::new(0, 0),
        vec![
            entry(3, 1, EntryKind::Noop),
            entry(3, 2, EntryKind::Command),
        ],
    );
    assert_eq!(node2.membership(), &five);
}

/// One append of a random leader: its term, where it starts, and how many entries it carries
#[derive(Clone, Debug)]
struct RandomAppend {
    term: u64,
    prev_index: u64,
    len: u64,
}

fn random_append() -> impl Strategy<Value = RandomAppend> {
    (1u64..6, 0u64..6, 0u64..5).prop_map(|(term, prev_index, len)| RandomAppend {
        term,
        prev_index,
        len,
    })
}

/// The entry the leader of `term` holds at `index`: one leader per term, so a (term, index)
/// always names the same entry, as Raft guarantees
fn leaders_entry(term: u64, index: u64) -> Entry {
    let targets = [
        Membership::new(&[1, 2, 3, 4]),
        Membership::new(&[1, 2, 3, 5]),
        Membership::new(&[2, 3, 4, 5]),
    ];
    match (term * 7 + index * 3) % 5 {
        0 | 1 => entry(term, index, EntryKind::Command),
        2 => entry(term, index, EntryKind::Noop),
        k => {
            let t = &targets[((term + index + k) % 3) as usize];
            membership_entry(term, index, &Membership::new(&VOTERS).joint(t))
        }
    }
}

proptest! {
    /// Appends of competing leaders in any order (older terms' appends are refused, as they
    /// must be): after each one, the membership in force is the latest in the log
    #[test]
    fn the_membership_in_force_is_always_the_latest_in_the_log(
        appends in proptest::collection::vec(random_append(), 1..30)
    ) {
        let mut node = follower(2);
        for a in appends {
            let Some(prev_term) = node.term_at(a.prev_index) else {
                continue;
            };
            let prev_term = if a.prev_index == 0 { 0 } else { prev_term };
            if a.term < node.term() || prev_term > a.term {
                continue;
            }
            let entries = (a.prev_index + 1..=a.prev_index + a.len)
                .map(|index| leaders_entry(a.term, index))
                .collect();
            append(&mut node, 1, a.term, LogId::new(prev_term, a.prev_index), entries);
            prop_assert_eq!(node.membership(), &latest_in_log(&node));
        }
    }
}
