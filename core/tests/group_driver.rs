//! The hand-over protocol end to end, with two single-replica groups and a controller wired by
//! hand: shards move with their data and sessions, each group serves only what it owns, and the
//! previous owner's copy is deleted

use shale_core::controller::{Configuration, ControllerCommand, GroupId, ShardController};
use shale_core::group::{
    ClientReply, DriverConfig, GroupDriver, GroupError, GroupRequest, GroupState,
};
use shale_core::raft::{Config, Raft, Recovered, Role};
use shale_core::rsm::Replica;
use shale_core::shard::{ClientRequest, KvOp, KvResult, ShardCursor, ShardLimits, key_shard};
use shale_core::time::{Duration, Instant};

const SHARDS: u32 = 8;

fn group(gid: GroupId, now: Instant) -> GroupDriver {
    let mut c = Config::new(gid, gid);
    c.election_timeout_max = c.election_timeout_min;
    // As the nodes set it: the largest value fits in one entry, as a command and in a chunk.
    c.max_entry_bytes = DriverConfig::default().max_entry_bytes(&ShardLimits::default());
    let raft = Raft::new(c, &[gid], Recovered::default(), now).unwrap();
    let replica = Replica::new(raft, GroupState::new(gid, SHARDS, ShardLimits::default()));
    GroupDriver::new(replica, DriverConfig::default(), now)
}

/// Persists at once (a lone voter sends no messages) and applies
fn settle(g: &mut GroupDriver, now: Instant) {
    loop {
        let raft = g.replica_mut().raft_mut();
        let mut busy = false;
        while let Some(w) = raft.poll_write() {
            raft.handle_persisted(now, w.id);
            busy = true;
        }
        while raft.poll_message().is_some() {}
        g.process();
        if !busy {
            return;
        }
    }
}

struct World {
    now: Instant,
    ctl: ShardController,
    groups: Vec<GroupDriver>,
}

impl World {
    fn new() -> World {
        let now = Instant::ZERO;
        let mut groups = vec![group(1, now), group(2, now)];
        let mut now = now;
        for g in &mut groups {
            now = now.max(g.replica().raft().poll_timeout().unwrap());
        }
        for g in &mut groups {
            g.replica_mut().raft_mut().handle_timeout(now).unwrap();
            settle(g, now);
            assert_eq!(g.replica().raft().role(), Role::Leader);
        }
        World {
            now,
            ctl: ShardController::new(SHARDS),
            groups,
        }
    }

    /// Runs protocol rounds: every group's requests are routed to their target and answered
    fn rounds(&mut self, n: usize) {
        for _ in 0..n {
            self.now += Duration::from_millis(100);
            let now = self.now;
            for i in 0..self.groups.len() {
                self.groups[i].handle_timeout(now);
                while let Some(request) = self.groups[i].poll_request() {
                    match request {
                        GroupRequest::QueryConfig { num } => {
                            if let Some(c) = self.ctl.config(num) {
                                self.groups[i].handle_config(now, c.clone());
                            }
                        }
                        GroupRequest::FetchShard {
                            from,
                            shard,
                            num,
                            cursor,
                            max_bytes,
                            ..
                        } => {
                            let j = (from - 1) as usize;
                            let requester = i as GroupId + 1;
                            let answer = self.groups[j].fetch(
                                now,
                                requester,
                                shard,
                                num,
                                &cursor,
                                max_bytes as usize,
                            );
                            // A hand-over that starts sends its first chunk by itself.
                            settle(&mut self.groups[j], now);
                            while let Some(r) = self.groups[j].poll_request() {
                                if let GroupRequest::SendChunk {
                                    shard, num, chunk, ..
                                } = r
                                {
                                    self.groups[i].handle_fetched(now, shard, num, chunk);
                                }
                            }
                            if let Some(chunk) = answer {
                                self.groups[i].handle_fetched(now, shard, num, chunk);
                            }
                        }
                        GroupRequest::SendChunk {
                            to,
                            shard,
                            num,
                            chunk,
                            ..
                        } => {
                            self.groups[(to - 1) as usize].handle_fetched(now, shard, num, chunk);
                        }
                        GroupRequest::FetchKeys {
                            from,
                            shard,
                            num,
                            keys,
                            ..
                        } => {
                            let answer = self.groups[(from - 1) as usize]
                                .state()
                                .offer_keys(shard, num, &keys);
                            if let Some(entries) = answer {
                                self.groups[i].handle_keys_fetched(now, shard, num, entries);
                            }
                        }
                        GroupRequest::DeleteShard { at, shard, num, .. } => {
                            let j = (at - 1) as usize;
                            let requester = i as GroupId + 1;
                            let deleted = self.groups[j].delete(now, requester, shard, num);
                            settle(&mut self.groups[j], now);
                            if deleted {
                                self.groups[i].handle_deleted(now, shard, num);
                            }
                        }
                    }
                    settle(&mut self.groups[i], now);
                }
                settle(&mut self.groups[i], now);
            }
        }
    }

    fn call(&mut self, gid: GroupId, token: u64, request: ClientRequest) -> ClientReply {
        let now = self.now;
        let g = &mut self.groups[(gid - 1) as usize];
        g.handle_client(now, token, request).unwrap();
        settle(g, now);
        g.poll_reply().expect("a lone voter answers at once")
    }
}

/// Group 1 holds every shard (configuration 1); the controller then makes configuration 2,
/// where group 2 joins and gains `moving` (neither group has been told yet)
fn second_group_joins() -> (World, Configuration, u32) {
    let mut w = World::new();
    w.ctl
        .apply(&ControllerCommand::Join(vec![(1, vec![1])]))
        .unwrap();
    w.rounds(3);
    let c2 = w
        .ctl
        .apply(&ControllerCommand::Join(vec![(2, vec![2])]))
        .unwrap();
    let moving = (0..SHARDS).find(|&s| c2.owner(s) == 2).unwrap();
    (w, c2, moving)
}

fn key_in(shard: u32) -> Vec<u8> {
    (0..)
        .map(|i| format!("key{i}").into_bytes())
        .find(|k| key_shard(k, SHARDS) == shard)
        .unwrap()
}

fn append(seq: u64, key: &[u8], value: &str) -> ClientRequest {
    ClientRequest {
        stamp_ms: 0,
        client: 7,
        seq,
        op: KvOp::Append {
            key: key.to_vec(),
            value: value.as_bytes().to_vec(),
        },
    }
}

fn get(seq: u64, key: &[u8]) -> ClientRequest {
    ClientRequest {
        stamp_ms: 0,
        client: 7,
        seq,
        op: KvOp::Get { key: key.to_vec() },
    }
}

#[test]
fn shards_move_between_groups_and_old_copies_are_deleted() {
    let mut w = World::new();
    w.ctl
        .apply(&ControllerCommand::Join(vec![(1, vec![1])]))
        .unwrap();
    w.rounds(3);
    assert_eq!(w.groups[0].state().config.num, 1);
    let moving_shard = {
        let c2 = w
            .ctl
            .clone()
            .apply(&ControllerCommand::Join(vec![(2, vec![2])]))
            .unwrap();
        (0..SHARDS).find(|&s| c2.owner(s) == 2).unwrap()
    };
    let key = key_in(moving_shard);
    assert_eq!(
        w.call(1, 1, append(1, &key, "a")).outcome,
        Ok(KvResult::Length(1))
    );

    w.ctl
        .apply(&ControllerCommand::Join(vec![(2, vec![2])]))
        .unwrap();
    w.rounds(6);
    for g in &w.groups {
        assert_eq!(
            g.state().config.num,
            2,
            "group {} did not reach configuration 2",
            g.state().gid
        );
        assert!(
            g.state().settled(),
            "group {} has not settled",
            g.state().gid
        );
    }
    // Group 1 no longer serves the moved key, and holds nothing of it.
    assert_eq!(
        w.call(1, 2, get(2, &key)).outcome,
        Err(GroupError::WrongGroup { config_num: 2 })
    );
    assert!(!w.groups[0].state().shards.contains_key(&moving_shard));
    // Group 2 serves it, with the data and the session: a retried append is not applied twice.
    assert_eq!(
        w.call(2, 3, append(1, &key, "a")).outcome,
        Ok(KvResult::Length(1))
    );
    assert_eq!(
        w.call(2, 4, get(2, &key)).outcome,
        Ok(KvResult::Value(Some(b"a".to_vec())))
    );
    // Every shard is now served by exactly one group.
    for shard in 0..SHARDS {
        let servers = w.groups.iter().filter(|g| g.state().serves(shard)).count();
        assert_eq!(servers, 1, "shard {shard} served by {servers} groups");
    }
    // Leaving group 1 hands everything to group 2.
    w.ctl.apply(&ControllerCommand::Leave(vec![1])).unwrap();
    w.rounds(8);
    assert!(
        w.groups[0].state().shards.is_empty(),
        "the left group keeps no data"
    );
    assert_eq!(w.groups[1].state().shards.len(), SHARDS as usize);
}

/// Only the group a shard is handed to may fetch it or have the old copy deleted: another
/// group (one whose configurations disagree, say) gets nothing and deletes nothing
#[test]
fn a_shard_is_handed_only_to_its_new_owner() {
    let (mut w, c2, moving) = second_group_joins();
    // Group 1 takes configuration 2 (the shard is Handing to 2); group 2 has not asked yet.
    let now = w.now + Duration::from_millis(100);
    w.groups[0].handle_config(now, c2.clone());
    settle(&mut w.groups[0], now);
    assert_eq!(w.groups[0].state().hands_to(moving, c2.num), Some(2));
    let stranger = 3;
    let fetched = w.groups[0].fetch(now, stranger, moving, c2.num, &ShardCursor::START, 1 << 20);
    settle(&mut w.groups[0], now);
    assert!(fetched.is_none());
    assert!(
        w.groups[0].poll_request().is_none(),
        "no hand-over started for a group the shard is not handed to"
    );
    assert!(!w.groups[0].delete(now, stranger, moving, c2.num));
    settle(&mut w.groups[0], now);
    assert_eq!(
        w.groups[0].state().hands_to(moving, c2.num),
        Some(2),
        "the copy is still handed to group 2"
    );
    // The real new owner still gets it.
    w.rounds(6);
    assert!(w.groups[1].state().serves(moving));
}

/// Keys fetched ahead are logged in entries Raft takes: many large values fetched at once (a
/// multi-key command on a shard being pulled) are split over several `InstallKeys` entries
/// instead of one over the entry limit, which Raft would refuse every time
#[test]
fn keys_fetched_ahead_are_logged_in_entries_that_fit() {
    let (mut w, c2, moving) = second_group_joins();
    let now = w.now + Duration::from_millis(100);
    w.groups[1].handle_config(now, c2.clone());
    settle(&mut w.groups[1], now);
    let keys: Vec<Vec<u8>> = (0..)
        .map(|i| format!("big{i}").into_bytes())
        .filter(|k| key_shard(k, SHARDS) == moving)
        .take(12)
        .collect();
    // 12 values of 512 KiB: 6 MiB, several times the largest entry
    let entries: Vec<(Vec<u8>, Option<Vec<u8>>)> = keys
        .iter()
        .map(|k| (k.clone(), Some(vec![7u8; 512 << 10])))
        .collect();
    let failures = w.groups[1].propose_failures();
    let before = w.groups[1].replica().raft().last_index();
    w.groups[1].handle_keys_fetched(now, moving, c2.num, entries);
    settle(&mut w.groups[1], now);
    let raft = w.groups[1].replica().raft();
    assert_eq!(
        w.groups[1].propose_failures(),
        failures,
        "an InstallKeys entry was refused"
    );
    // At most a chunk's budget and one value each: five entries or more, all committed.
    assert!(
        raft.last_index() >= before + 5,
        "{} entries logged",
        raft.last_index() - before
    );
    assert_eq!(raft.commit_index(), raft.last_index());
}
