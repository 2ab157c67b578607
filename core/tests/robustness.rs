//! Nothing a peer sends can panic a node or break its basic invariants
//!
//! Arbitrary messages (random kinds, terms, indexes, entries and senders, including unknown
//! nodes and absurd values) are thrown at a node interleaved with timeouts and persistence.

use proptest::prelude::*;
use shale_core::raft::{
    AppendOutcome, Config, Entry, EntryKind, LogId, Message, Raft, ReadConsistency, Recovered, Role,
};
use shale_core::time::{Duration, Instant};

fn small_or_extreme() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..8, Just(u64::MAX), Just(u64::MAX - 1), any::<u64>()]
}

fn log_id() -> impl Strategy<Value = LogId> {
    (small_or_extreme(), small_or_extreme()).prop_map(|(t, i)| LogId::new(t, i))
}

fn entries() -> impl Strategy<Value = Vec<Entry>> {
    proptest::collection::vec(
        (small_or_extreme(), small_or_extreme(), any::<bool>()),
        0..4,
    )
    .prop_map(|v| {
        v.into_iter()
            .map(|(term, index, noop)| Entry {
                term,
                index,
                kind: if noop {
                    EntryKind::Noop
                } else {
                    EntryKind::Command
                },
                data: b"x".into(),
            })
            .collect()
    })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (small_or_extreme(), log_id())
            .prop_map(|(term, last_log)| Message::PreVote { term, last_log }),
        (small_or_extreme(), any::<bool>())
            .prop_map(|(term, granted)| Message::PreVoteResponse { term, granted }),
        (small_or_extreme(), log_id()).prop_map(|(term, last_log)| Message::Vote {
            term,
            last_log,
            transfer: term % 2 == 0
        }),
        (small_or_extreme(), any::<bool>())
            .prop_map(|(term, granted)| Message::VoteResponse { term, granted }),
        (small_or_extreme(), log_id(), entries(), small_or_extreme()).prop_map(
            |(term, prev, entries, commit)| Message::Append {
                term,
                prev,
                entries,
                commit
            }
        ),
        (small_or_extreme(), small_or_extreme()).prop_map(|(term, m)| Message::AppendResponse {
            term,
            outcome: AppendOutcome::Accepted { match_index: m }
        }),
        (small_or_extreme(), small_or_extreme(), log_id()).prop_map(|(term, r, hint)| {
            Message::AppendResponse {
                term,
                outcome: AppendOutcome::Rejected {
                    rejected_prev: r,
                    hint,
                },
            }
        }),
        (small_or_extreme(), small_or_extreme(), small_or_extreme()).prop_map(
            |(term, commit, round)| Message::Heartbeat {
                term,
                commit,
                round
            }
        ),
        (small_or_extreme(), small_or_extreme())
            .prop_map(|(term, round)| Message::HeartbeatResponse { term, round }),
        (small_or_extreme(), small_or_extreme())
            .prop_map(|(term, ctx)| Message::ReadIndex { term, ctx }),
        (
            small_or_extreme(),
            small_or_extreme(),
            proptest::option::of(small_or_extreme())
        )
            .prop_map(|(term, ctx, index)| Message::ReadIndexResponse { term, ctx, index }),
        small_or_extreme().prop_map(|term| Message::TimeoutNow { term }),
    ]
}

#[derive(Debug, Clone)]
enum Input {
    Message(u64, Message),
    Timeout,
    Persist,
    Propose,
    Read(bool),
    Transfer(u64),
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        6 => (prop_oneof![1u64..5, Just(0), Just(99), Just(u64::MAX)], message()).prop_map(|(f, m)| Input::Message(f, m)),
        2 => Just(Input::Timeout),
        2 => Just(Input::Persist),
        1 => Just(Input::Propose),
        1 => any::<bool>().prop_map(Input::Read),
        1 => (0u64..5).prop_map(Input::Transfer),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]
    #[test]
    fn arbitrary_inputs_never_panic(inputs in proptest::collection::vec(input(), 1..60)) {
        let mut now = Instant::ZERO;
        let mut node = Raft::new(Config::new(1, 7), &[1, 2, 3], Recovered::default(), now).unwrap();
        for input in inputs {
            now += Duration::from_millis(37);
            match input {
                Input::Message(from, m) => { let _ = node.handle_message(now, from, m); }
                Input::Timeout => { let _ = node.handle_timeout(now); }
                Input::Persist => {
                    while let Some(w) = node.poll_write() {
                        node.handle_persisted(now, w.id);
                    }
                }
                Input::Propose => { let _ = node.propose(now, b"cmd"); }
                Input::Read(linear) => {
                    let consistency = if linear { ReadConsistency::Linearizable } else { ReadConsistency::Serializable };
                    let _ = node.read(now, 7, consistency);
                }
                Input::Transfer(to) => { let _ = node.transfer_leader(now, to); }
            }
            while node.poll_message().is_some() {}
            while let Some(read) = node.poll_read() {
                if let Ok(index) = read.result {
                    prop_assert!(index <= node.last_index().max(node.commit_index()) || read.ctx == 7);
                }
            }
            while let Some(e) = node.poll_apply() {
                prop_assert!(e.index <= node.commit_index());
            }
            prop_assert!(node.commit_index() <= node.last_index(), "commit beyond the log");
            prop_assert!(node.applied_index() <= node.commit_index());
            prop_assert!(node.durable_index() <= node.last_index());
            if node.role() == Role::Leader {
                prop_assert_eq!(node.leader_hint(), Some(1));
            }
        }
    }
}
