//! A full hand-over between two groups, step by step, with the refusals along the way

use alloc::vec;
use alloc::vec::Vec;

use super::*;
use crate::controller::{Configuration, ControllerCommand, ShardController};
use crate::shard::{
    ClientRequest, KvError, KvOp, KvResult, ShardCursor, ShardLimits, ShardState, ShardStore,
    key_shard,
};

/// A key that lands in `shard` of 4
fn key_in(shard: u32) -> Vec<u8> {
    (0..)
        .map(|i| alloc::format!("k{i}").into_bytes())
        .find(|k| key_shard(k, 4) == shard)
        .unwrap()
}

fn append(client: u64, seq: u64, key: &[u8], value: &str) -> GroupCommand {
    GroupCommand::Client(ClientRequest {
        stamp_ms: 0,
        client,
        seq,
        op: KvOp::Append {
            key: key.to_vec(),
            value: value.as_bytes().to_vec(),
        },
    })
}

fn configs() -> (Configuration, Configuration) {
    let mut ctl = ShardController::new(4);
    let c1 = ctl
        .apply(&ControllerCommand::Join(vec![(1, vec![1])]))
        .unwrap();
    let c2 = ctl
        .apply(&ControllerCommand::Join(vec![(2, vec![2])]))
        .unwrap();
    (c1, c2)
}

#[test]
fn shards_move_with_their_sessions_and_are_served_only_where_they_belong() {
    let (c1, c2) = configs();
    let limits = ShardLimits::default();
    let (mut g1, mut g2) = (GroupState::new(1, 4, limits), GroupState::new(2, 4, limits));
    g1.apply(&GroupCommand::Reconfigure(c1.clone()));
    g2.apply(&GroupCommand::Reconfigure(c1.clone()));
    let moving = key_in(3);
    let staying = key_in(0);
    assert_eq!(c2.owner(3), 2);
    assert_eq!(c2.owner(0), 1);
    // Client 9 appends to a key that will move; the answer is lost, so it will retry.
    assert_eq!(
        g1.apply(&append(9, 1, &moving, "a")),
        Some(Ok(KvResult::Length(1)))
    );
    assert_eq!(
        g2.apply(&append(9, 1, &moving, "a")),
        Some(Err(GroupError::WrongGroup { config_num: 1 })),
        "group 2 owns nothing in configuration 1"
    );

    // Both move to configuration 2: shard 3 is handed over by 1 and pulled by 2. Group 1
    // serves it until group 2 starts pulling (the retry is answered from the session).
    g1.apply(&GroupCommand::Reconfigure(c2.clone()));
    g2.apply(&GroupCommand::Reconfigure(c2.clone()));
    assert_eq!(
        g1.apply(&append(9, 1, &moving, "a")),
        Some(Ok(KvResult::Length(1)))
    );
    assert!(g1.offer(3, 2).is_none(), "not handed over yet");
    g1.apply(&GroupCommand::StartHandOff { shard: 3, num: 2 });
    assert_eq!(
        g1.apply(&append(9, 1, &moving, "a")),
        Some(Err(GroupError::WrongGroup { config_num: 2 }))
    );
    assert_eq!(
        g2.apply(&append(9, 1, &moving, "a")),
        Some(Err(GroupError::ShardPending {
            config_num: 2,
            from: 1
        }))
    );
    assert_eq!(
        g1.apply(&append(5, 1, &staying, "s")),
        Some(Ok(KvResult::Length(1))),
        "unaffected shards stay served"
    );
    assert!(!g1.settled() && !g2.settled());
    // Not ready before the owner reached configuration 2.
    assert!(g1.offer(3, 3).is_none());

    let chunk = g1
        .offer(3, 2)
        .expect("offered")
        .chunk(&ShardCursor::START, usize::MAX);
    assert!(
        chunk.next.is_none(),
        "one chunk holds the whole small shard"
    );
    g2.apply(&GroupCommand::InstallChunk {
        shard: 3,
        num: 2,
        chunk: chunk.clone(),
    });
    // The retry is answered from the session that travelled with the shard: not applied twice.
    assert_eq!(
        g2.apply(&append(9, 1, &moving, "a")),
        Some(Ok(KvResult::Length(1)))
    );
    assert_eq!(
        g2.apply(&append(9, 2, &moving, "b")),
        Some(Ok(KvResult::Length(2)))
    );
    // A duplicate install is ignored (it would roll the shard back).
    g2.apply(&GroupCommand::InstallChunk {
        shard: 3,
        num: 2,
        chunk,
    });
    assert_eq!(
        g2.apply(&append(9, 3, &moving, "c")),
        Some(Ok(KvResult::Length(3)))
    );

    // Shard 2 moves too.
    g1.apply(&GroupCommand::StartHandOff { shard: 2, num: 2 });
    assert_eq!(g2.pulls(), vec![(2, 1)]);
    let other = g1
        .offer(2, 2)
        .expect("offered")
        .chunk(&ShardCursor::START, usize::MAX);
    g2.apply(&GroupCommand::InstallChunk {
        shard: 2,
        num: 2,
        chunk: other,
    });
    g1.apply(&GroupCommand::DeleteShard { shard: 2, num: 2 });
    g2.apply(&GroupCommand::DeleteConfirmed { shard: 2, num: 2 });
    // Group 2 cannot move on until the previous owner deleted its copy of shard 3.
    assert_eq!(g2.deletes_owed(), vec![(3, 1)]);
    assert!(!g1.deleted(3, 2));
    g1.apply(&GroupCommand::DeleteShard { shard: 3, num: 2 });
    assert!(g1.deleted(3, 2));
    assert!(g1.settled());
    g2.apply(&GroupCommand::DeleteConfirmed { shard: 3, num: 2 });
    assert!(g2.settled());
    assert!(!g1.shards.contains_key(&3), "the old owner's data is gone");
}

#[test]
fn configurations_are_taken_one_at_a_time_and_only_when_settled() {
    let (c1, c2) = configs();
    let mut g2 = GroupState::new(2, 4, ShardLimits::default());
    g2.apply(&GroupCommand::Reconfigure(c2.clone()));
    assert_eq!(g2.config.num, 0, "configuration 2 cannot follow 0");
    g2.apply(&GroupCommand::Reconfigure(c1.clone()));
    g2.apply(&GroupCommand::Reconfigure(c2.clone()));
    assert_eq!(g2.config.num, 2);
    let mut c3 = c2.clone();
    c3.num = 3;
    g2.apply(&GroupCommand::Reconfigure(c3));
    assert_eq!(g2.config.num, 2, "shards still pulling: not settled");
    // A stale install for another configuration number is ignored.
    g2.apply(&GroupCommand::InstallChunk {
        shard: 3,
        num: 1,
        chunk: ShardState::default().chunk(&ShardCursor::START, usize::MAX),
    });
    assert_eq!(g2.pulls().len(), 2);
}

#[test]
fn expired_sessions_refuse_after_a_move_too() {
    let (c1, _) = configs();
    let mut limits = ShardLimits::default();
    limits.sessions.max_sessions = 1;
    let mut g1 = GroupState::new(1, 4, limits);
    g1.apply(&GroupCommand::Reconfigure(c1));
    let key = key_in(1);
    g1.apply(&append(1, 1, &key, "x"));
    g1.apply(&append(2, 1, &key, "y"));
    assert_eq!(
        g1.apply(&append(1, 1, &key, "x")),
        Some(Err(GroupError::Kv(KvError::SessionExpired)))
    );
}

#[test]
fn a_multi_key_operation_must_stay_in_one_shard() {
    let (c1, _) = configs();
    let mut g = GroupState::new(1, 4, ShardLimits::default());
    g.apply(&GroupCommand::Reconfigure(c1));
    let (a, b) = (key_in(0), key_in(1));
    let mut a2 = key_in(0);
    a2.push(b'x');
    while key_shard(&a2, 4) != 0 {
        a2.push(b'x');
    }
    let request = |seq, pairs: Vec<(Vec<u8>, Vec<u8>)>| {
        GroupCommand::Client(ClientRequest {
            stamp_ms: 0,
            client: 1,
            seq,
            op: KvOp::MultiSet { pairs },
        })
    };
    let across = request(1, vec![(a.clone(), b"1".to_vec()), (b, b"2".to_vec())]);
    assert_eq!(
        g.apply(&across),
        Some(Err(GroupError::Kv(KvError::CrossShard)))
    );
    let within = request(
        2,
        vec![(a.clone(), b"1".to_vec()), (a2.clone(), b"2".to_vec())],
    );
    assert_eq!(g.apply(&within), Some(Ok(KvResult::Done)));
    let get = KvOp::MultiGet { keys: vec![a2, a] };
    assert_eq!(g.check_op(&get), Ok(0));
    // No key names no shard: refused, never applied to some shard's sessions.
    let none = KvOp::MultiGet { keys: Vec::new() };
    assert_eq!(g.check_op(&none), Err(GroupError::Kv(KvError::CrossShard)));
    assert_eq!(
        g.apply(&request(3, Vec::new())),
        Some(Err(GroupError::Kv(KvError::CrossShard)))
    );
}

#[test]
fn a_shard_moves_in_chunks_only_in_order_and_is_served_only_once_complete() {
    let (c1, c2) = configs();
    let limits = ShardLimits::default();
    let (mut g1, mut g2) = (GroupState::new(1, 4, limits), GroupState::new(2, 4, limits));
    g1.apply(&GroupCommand::Reconfigure(c1.clone()));
    g2.apply(&GroupCommand::Reconfigure(c1.clone()));
    let keys: Vec<Vec<u8>> = (0..)
        .map(|i| alloc::format!("m{i}").into_bytes())
        .filter(|k| key_shard(k, 4) == 3)
        .take(200)
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let client = 10 + (i as u64 % 3);
        g1.apply(&append(client, 1 + i as u64 / 3, key, "0123456789"));
    }
    g1.apply(&GroupCommand::Reconfigure(c2.clone()));
    g2.apply(&GroupCommand::Reconfigure(c2.clone()));
    g1.apply(&GroupCommand::StartHandOff { shard: 3, num: 2 });
    let offered = g1.offer(3, 2).expect("offered").clone();
    let mut cursor = Some(ShardCursor::START);
    let mut chunks = Vec::new();
    while let Some(from) = cursor {
        let chunk = offered.chunk(&from, 300);
        cursor = chunk.next.clone();
        chunks.push(chunk);
    }
    assert!(chunks.len() > 5);
    // A chunk out of order is ignored; so is a repeat of one already applied.
    g2.apply(&GroupCommand::InstallChunk {
        shard: 3,
        num: 2,
        chunk: chunks[1].clone(),
    });
    assert_eq!(g2.shards[&3].pull.keys, 0);
    for (i, chunk) in chunks.iter().enumerate() {
        g2.apply(&GroupCommand::InstallChunk {
            shard: 3,
            num: 2,
            chunk: chunk.clone(),
        });
        if i == 0 {
            g2.apply(&GroupCommand::InstallChunk {
                shard: 3,
                num: 2,
                chunk: chunk.clone(),
            });
        }
        let last = i + 1 == chunks.len();
        assert_eq!(g2.serves(3), last, "served only once every chunk is in");
        if !last {
            let h = g2.handovers();
            assert_eq!(h.len(), 2, "shards 2 and 3 are coming in");
            let h3 = h.iter().find(|h| h.shard == 3).unwrap();
            assert_eq!(h3.total.map(|t| t.0), Some(200));
        }
    }
    assert_eq!(
        g2.shards[&3].state, offered,
        "data and sessions arrived whole"
    );
    assert_eq!(g2.received.keys, 200);
    // Client 10's last request was its append to key 198 (sequence 67).
    assert_eq!(
        g2.apply(&append(10, 67, &keys[198], "again")),
        Some(Ok(KvResult::Length(10))),
        "a retry is answered from the session that moved with the shard"
    );
}

#[test]
fn a_shard_being_pulled_serves_the_keys_that_arrived_and_keys_fetched_ahead() {
    let (c1, c2) = configs();
    let limits = ShardLimits::default();
    let (mut g1, mut g2) = (GroupState::new(1, 4, limits), GroupState::new(2, 4, limits));
    g1.apply(&GroupCommand::Reconfigure(c1.clone()));
    g2.apply(&GroupCommand::Reconfigure(c1.clone()));
    let mut keys: Vec<Vec<u8>> = (0..)
        .map(|i| alloc::format!("p{i:03}").into_bytes())
        .filter(|k| key_shard(k, 4) == 3)
        .take(60)
        .collect();
    keys.sort();
    for (i, key) in keys.iter().enumerate() {
        g1.apply(&append(7, 1 + i as u64, key, "old"));
    }
    g1.apply(&GroupCommand::Reconfigure(c2.clone()));
    g2.apply(&GroupCommand::Reconfigure(c2.clone()));
    g1.apply(&GroupCommand::StartHandOff { shard: 3, num: 2 });
    let offered = g1.offer(3, 2).unwrap().clone();
    let get = |k: &[u8]| KvOp::Get { key: k.to_vec() };
    assert_eq!(
        g2.check_op(&get(&keys[0])),
        Err(GroupError::ShardPending {
            config_num: 2,
            from: 1
        }),
        "nothing handed over yet: the previous owner may still serve it"
    );
    // The first chunk: the sessions and the first keys.
    let first = offered.chunk(&ShardCursor::START, 300);
    let next = first.next.clone().unwrap();
    g2.apply(&GroupCommand::InstallChunk {
        shard: 3,
        num: 2,
        chunk: first,
    });
    let (early, late) = (&keys[0], &keys[50]);
    assert_eq!(g2.check_op(&get(early)), Ok(3), "an arrived key is served");
    assert!(
        g2.check_op(&get(late)).is_err(),
        "a key beyond the cursor waits"
    );
    assert_eq!(g2.keys_to_fetch(&get(late)), (3, vec![late.clone()]));
    assert_eq!(g2.keys_to_fetch(&get(early)), (3, vec![]));
    // Writes to arrived keys are applied at once, with the sessions that came first.
    assert_eq!(
        g2.apply(&append(7, 100, early, "+new")),
        Some(Ok(KvResult::Length(7)))
    );
    // A late key fetched ahead is served, written, and left alone by its chunk.
    let entries = g1
        .offer_keys(3, 2, &[late.clone(), b"absent".to_vec()])
        .unwrap();
    g2.apply(&GroupCommand::InstallKeys {
        shard: 3,
        num: 2,
        entries,
    });
    assert_eq!(g2.check_op(&get(late)), Ok(3));
    assert_eq!(
        g2.apply(&append(7, 101, late, "+new")),
        Some(Ok(KvResult::Length(7)))
    );
    let mut cursor = Some(next);
    while let Some(from) = cursor {
        let chunk = offered.chunk(&from, 300);
        cursor = chunk.next.clone();
        g2.apply(&GroupCommand::InstallChunk {
            shard: 3,
            num: 2,
            chunk,
        });
    }
    assert!(g2.serves(3));
    let read = |g: &GroupState, k: &[u8]| {
        g.shards[&3]
            .state
            .kv
            .get(k)
            .map(|v| crate::shard::value::StoredValue::decode(v).payload.to_vec())
    };
    assert_eq!(
        read(&g2, late),
        Some(b"old+new".to_vec()),
        "the chunk kept the newer value"
    );
    assert_eq!(read(&g2, early), Some(b"old+new".to_vec()));
    assert_eq!(read(&g2, &keys[30]), Some(b"old".to_vec()));
    assert!(
        g2.shards[&3].pull.ahead.is_empty(),
        "nothing is kept once complete"
    );
}
