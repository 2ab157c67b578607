//! The replicated state of one replica group: its configuration, its shards and their
//! hand-over status
//!
//! Every replica applies the same [`GroupCommand`]s in log order, so every replica holds the
//! same state. The group moves through configurations one at a time, and only once every shard
//! has settled. A shard it gains becomes [`ShardStatus::Pulling`] until the data arrives from
//! its previous owner (fenced by the configuration number); a shard it loses becomes
//! [`ShardStatus::Handing`], still served until the new owner starts pulling it, then
//! [`ShardStatus::Offering`], kept but not served until the new owner confirms it has it.
//! Keys are served only from shards the group owns in its current configuration and holds.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use crate::controller::{Configuration, GroupId, ShardId, UNASSIGNED};
use crate::shard::{
    Bytes, ClientRequest, KvError, KvOp, KvResult, ShardChunk, ShardCursor, ShardHeader,
    ShardLimits, ShardState, ShardStore, key_shard,
};

/// Where one shard held by this group stands
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ShardStatus {
    /// Owned and held: served
    Serving,
    /// Owned and held, and served; the previous owner has not yet confirmed deleting its copy
    ServingUntilDeleted {
        /// The group that held it before
        from: GroupId,
    },
    /// Owned in the current configuration, but its data is still to come from `from`
    Pulling {
        /// The previous owner
        from: GroupId,
    },
    /// No longer owned: kept for the new owner, who pulls it and then has it deleted
    Offering {
        /// The new owner
        to: GroupId,
    },
    /// No longer owned in the configuration, but still served here until the new owner
    /// starts pulling it (it may still be catching up with the configuration before); then
    /// [`ShardStatus::Offering`]
    Handing {
        /// The new owner
        to: GroupId,
    },
}

/// How far the pull of a shard has come (for a [`ShardStatus::Pulling`] shard)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullProgress {
    /// Where the next chunk starts
    pub next: ShardCursor,
    /// Keys received so far
    pub keys: u64,
    /// Bytes of keys and values received so far
    pub bytes: u64,
    /// What the previous owner holds in all, once its first chunk arrived
    pub total: Option<ShardHeader>,
    /// Keys beyond `next` that arrived ahead of their chunk, asked for by clients (see
    /// `arrival`): served already, and skipped when their chunk comes
    pub ahead: BTreeSet<Bytes>,
}

impl Default for PullProgress {
    fn default() -> Self {
        PullProgress {
            next: ShardCursor::START,
            keys: 0,
            bytes: 0,
            total: None,
            ahead: BTreeSet::new(),
        }
    }
}

/// A shard this group holds (or awaits), with its data
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardSlot {
    /// Where it stands
    pub status: ShardStatus,
    /// Its data and sessions (while pulling: what arrived so far, not served)
    pub state: ShardState,
    /// How far the pull has come (meaningful while pulling)
    pub pull: PullProgress,
}

impl ShardSlot {
    fn new(status: ShardStatus) -> Self {
        ShardSlot {
            status,
            state: ShardState::default(),
            pull: PullProgress::default(),
        }
    }
}

/// A command in a replica group's log
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupCommand {
    /// A client's request
    Client(ClientRequest),
    /// Move to the next configuration
    Reconfigure(Configuration),
    /// A chunk of `shard` as of configuration `num`, pulled from its previous owner; the
    /// last one completes the pull
    InstallChunk {
        /// The shard
        shard: ShardId,
        /// The configuration in which this group gained it
        num: u64,
        /// The piece of its data and sessions
        chunk: ShardChunk,
    },
    /// The new owner of `shard` (gained in configuration `num`) has it: drop our copy
    DeleteShard {
        /// The shard
        shard: ShardId,
        /// The configuration in which the new owner gained it
        num: u64,
    },
    /// The previous owner of `shard` confirmed it deleted its copy (configuration `num`)
    DeleteConfirmed {
        /// The shard
        shard: ShardId,
        /// The configuration in which this group gained it
        num: u64,
    },
    /// Keys of `shard` (being pulled, gained in configuration `num`) fetched from the
    /// previous owner ahead of their chunk, with their values (`None`: absent there)
    InstallKeys {
        /// The shard
        shard: ShardId,
        /// The configuration in which this group gained it
        num: u64,
        /// The keys and their values at the previous owner
        entries: Vec<(Bytes, Option<Bytes>)>,
    },
    /// The new owner of `shard` (gained in configuration `num`) started pulling it: stop
    /// serving it, and hand it over as it is from here on
    StartHandOff {
        /// The shard
        shard: ShardId,
        /// The configuration in which the new owner gained it
        num: u64,
    },
    /// Keys of `shard` the leader found expired at `now_ms` (its clock): each is removed if
    /// it is still expired at that time here (a write since may have given it a new life)
    DeleteExpired {
        /// The shard
        shard: ShardId,
        /// The leader's clock when it looked, Unix milliseconds
        now_ms: u64,
        /// The keys
        keys: Vec<Bytes>,
    },
}

/// Why a group refused a client's request
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GroupError {
    /// This group does not serve the key's shard at its configuration `config_num`: the
    /// client should fetch a newer configuration and route again
    WrongGroup {
        /// This group's configuration number
        config_num: u64,
    },
    /// The shard is this group's, but its data has not arrived yet: retry shortly
    ShardMoving {
        /// This group's configuration number
        config_num: u64,
    },
    /// The operation itself failed
    Kv(KvError),
    /// This replica could not finish the request (leadership changed, or its answer was lost):
    /// it may or may not have been applied; retry, on the leader, with the same sequence number
    Retry,
    /// The shard is this group's from configuration `config_num`, but its previous owner
    /// `from` has not handed anything over yet: it may still be serving the shard in the
    /// configuration before (a group that has not moved on); try it there, or here shortly
    ShardPending {
        /// This group's configuration number
        config_num: u64,
        /// The previous owner
        from: GroupId,
    },
}

/// The result of applying a [`GroupCommand::Client`]
pub type ClientOutcome = Result<KvResult, GroupError>;

/// Keys and bytes this group received by hand-over, over its whole life
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverTotals {
    /// Keys received
    pub keys: u64,
    /// Bytes of keys and values received
    pub bytes: u64,
    /// Chunks received
    pub chunks: u64,
}

/// Which way a shard is moving
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoverDirection {
    /// Pulled in from this group
    In {
        /// The previous owner
        from: GroupId,
    },
    /// Offered to this group, kept until it has the shard
    Out {
        /// The new owner
        to: GroupId,
    },
}

/// A shard moving into or out of this group, and how far it has come
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handover {
    /// The shard
    pub shard: ShardId,
    /// Which way
    pub direction: HandoverDirection,
    /// Keys moved so far (for a shard moving out: the keys it holds)
    pub keys: u64,
    /// Bytes moved so far (for a shard moving out: the bytes it holds)
    pub bytes: u64,
    /// The keys and bytes to move in all, once known
    pub total: Option<(u64, u64)>,
}

/// One replica group's replicated state
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupState {
    /// This group's id
    pub gid: GroupId,
    /// The configuration the group is in
    pub config: Configuration,
    /// The configuration before it (where gained shards come from)
    pub previous: Configuration,
    /// Shards held or awaited
    pub shards: BTreeMap<ShardId, ShardSlot>,
    /// Limits on keys, values and sessions
    pub limits: ShardLimits,
    /// What hand-overs brought in so far
    pub received: HandoverTotals,
    /// Shards let go of (deleted after a hand-over, or with nowhere to go), for the runtime
    /// to drop off its loop; not part of the replicated state
    pub(crate) released: Vec<ShardState>,
}

impl GroupState {
    /// A group `gid` in configuration 0 (owning nothing) for `shard_count` shards
    pub fn new(gid: GroupId, shard_count: u32, limits: ShardLimits) -> Self {
        let initial = Configuration {
            num: 0,
            shards: alloc::vec![UNASSIGNED; shard_count as usize],
            groups: BTreeMap::new(),
        };
        GroupState {
            gid,
            config: initial.clone(),
            previous: initial,
            shards: BTreeMap::new(),
            limits,
            received: HandoverTotals::default(),
            released: Vec::new(),
        }
    }

    /// Whether every shard has settled, so the group may move to the next configuration
    pub fn settled(&self) -> bool {
        self.shards
            .values()
            .all(|s| s.status == ShardStatus::Serving)
    }

    /// Whether `shard` is served here now
    pub fn serves(&self, shard: ShardId) -> bool {
        self.shards.get(&shard).is_some_and(|s| match s.status {
            ShardStatus::Serving | ShardStatus::ServingUntilDeleted { .. } => {
                self.config.owner(shard) == self.gid
            }
            ShardStatus::Handing { .. } => true,
            ShardStatus::Pulling { .. } | ShardStatus::Offering { .. } => false,
        })
    }

    /// Whether an operation on `key` may be served here now (the check a linearizable read
    /// repeats once the read index is applied): its shard is served, or being pulled and the
    /// key has arrived (see [`PullProgress::has_arrived`])
    pub fn check_key(&self, key: &[u8]) -> Result<ShardId, GroupError> {
        self.check_keys(&[key])
    }

    /// The shard of every key `op` touches, if this group serves it; several keys must all
    /// be in one shard
    pub fn check_op(&self, op: &KvOp) -> Result<ShardId, GroupError> {
        self.check_keys(&op.keys())
    }

    fn check_keys(&self, keys: &[&[u8]]) -> Result<ShardId, GroupError> {
        let Some(first) = keys.first() else {
            // No key, no shard: nothing to check it against (or to apply it to).
            return Err(GroupError::Kv(KvError::CrossShard));
        };
        let shards = self.config.shards.len() as u32;
        let shard = key_shard(first, shards);
        let config_num = self.config.num;
        let handing = self
            .shards
            .get(&shard)
            .is_some_and(|s| matches!(s.status, ShardStatus::Handing { .. }));
        if self.config.owner(shard) != self.gid && !handing {
            return Err(GroupError::WrongGroup { config_num });
        }
        if keys.iter().any(|k| key_shard(k, shards) != shard) {
            return Err(GroupError::Kv(KvError::CrossShard));
        }
        if self.serves(shard) || self.arrived(shard, keys) {
            return Ok(shard);
        }
        match self.shards.get(&shard) {
            Some(slot) if matches!(slot.pull.next, ShardCursor::Sessions(_)) => {
                if let ShardStatus::Pulling { from } = slot.status {
                    return Err(GroupError::ShardPending { config_num, from });
                }
                Err(GroupError::ShardMoving { config_num })
            }
            _ => Err(GroupError::ShardMoving { config_num }),
        }
    }

    /// Applies one command from the log; client requests get their outcome
    pub fn apply(&mut self, command: &GroupCommand) -> Option<ClientOutcome> {
        match command {
            GroupCommand::Client(request) => Some(self.apply_client(request)),
            GroupCommand::Reconfigure(next) => {
                self.reconfigure(next);
                None
            }
            GroupCommand::InstallChunk { shard, num, chunk } => {
                self.install_chunk(*shard, *num, chunk.clone());
                None
            }
            GroupCommand::DeleteShard { shard, num } => {
                // Our copy was offered in configuration `num` (we moved there and lost it).
                if *num == self.config.num
                    && self
                        .shards
                        .get(shard)
                        .is_some_and(|s| matches!(s.status, ShardStatus::Offering { .. }))
                    && let Some(slot) = self.shards.remove(shard)
                {
                    self.released.push(slot.state);
                }
                None
            }
            GroupCommand::StartHandOff { shard, num } => {
                if *num == self.config.num
                    && let Some(slot) = self.shards.get_mut(shard)
                    && let ShardStatus::Handing { to } = slot.status
                {
                    slot.status = ShardStatus::Offering { to };
                }
                None
            }
            GroupCommand::InstallKeys {
                shard,
                num,
                entries,
            } => {
                self.install_keys(*shard, *num, entries);
                None
            }
            GroupCommand::DeleteExpired {
                shard,
                now_ms,
                keys,
            } => {
                if self.serves(*shard)
                    && let Some(slot) = self.shards.get_mut(shard)
                {
                    let at = slot.state.sessions.advance_time(*now_ms);
                    for key in keys {
                        let expired = slot.state.kv.get(key).is_some_and(|v| {
                            !crate::shard::value::StoredValue::decode(v).live_at(at)
                        });
                        if expired {
                            slot.state.kv.remove(key);
                        }
                    }
                }
                None
            }
            GroupCommand::DeleteConfirmed { shard, num } => {
                if *num == self.config.num
                    && let Some(slot) = self.shards.get_mut(shard)
                    && matches!(slot.status, ShardStatus::ServingUntilDeleted { .. })
                {
                    slot.status = ShardStatus::Serving;
                }
                None
            }
        }
    }

    /// Adds a pulled chunk to `shard` if it is the one the pull waits for
    fn install_chunk(&mut self, shard: ShardId, num: u64, chunk: ShardChunk) {
        if num == self.config.num
            && let Some(slot) = self.shards.get_mut(&shard)
            && let ShardStatus::Pulling { from } = slot.status
            && slot.pull.next == chunk.from
        {
            let (keys, bytes) = (chunk.entries.len() as u64, chunk.data_bytes());
            slot.pull.keys += keys;
            slot.pull.bytes += bytes;
            self.received.keys += keys;
            self.received.bytes += bytes;
            self.received.chunks += 1;
            if chunk.header.is_some() {
                slot.pull.total = chunk.header.clone();
            }
            let next = chunk.next.clone();
            slot.state.apply_chunk_except(chunk, &slot.pull.ahead);
            match next {
                Some(next) => {
                    slot.pull.next = next;
                    slot.pull.forget_covered();
                }
                None => {
                    slot.status = ShardStatus::ServingUntilDeleted { from };
                    slot.pull = PullProgress::default();
                }
            }
        }
    }

    fn apply_client(&mut self, request: &ClientRequest) -> ClientOutcome {
        let shard = self.check_op(&request.op)?;
        let limits = self.limits;
        let slot = self.shards.get_mut(&shard).ok_or(GroupError::WrongGroup {
            config_num: self.config.num,
        })?;
        let outcome = slot.state.apply(request, &limits).map_err(GroupError::Kv);
        for kv in slot.state.flushed.drain(..) {
            self.released.push(ShardState {
                kv,
                ..ShardState::default()
            });
        }
        outcome
    }

    /// Moves to `next` if it is the configuration after the current one and every shard has
    /// settled; anything else is a stale or early command and is ignored
    fn reconfigure(&mut self, next: &Configuration) {
        if next.num != self.config.num + 1
            || !self.settled()
            || next.shards.len() != self.config.shards.len()
        {
            return;
        }
        let shard_count = next.shards.len() as ShardId;
        for shard in 0..shard_count {
            let (was, now) = (self.config.owner(shard), next.owner(shard));
            if was == now {
                continue;
            }
            if now == self.gid {
                // Gained: from nobody (the first configuration) it starts empty and served.
                let status = if was == UNASSIGNED {
                    ShardStatus::Serving
                } else {
                    ShardStatus::Pulling { from: was }
                };
                self.shards.insert(shard, ShardSlot::new(status));
            } else if was == self.gid && now == UNASSIGNED {
                // Every group left: the data has nowhere to go.
                if let Some(slot) = self.shards.remove(&shard) {
                    self.released.push(slot.state);
                }
            } else if was == self.gid
                && let Some(slot) = self.shards.get_mut(&shard)
            {
                slot.status = ShardStatus::Handing { to: now };
            }
        }
        self.previous = core::mem::replace(&mut self.config, next.clone());
    }

    /// Shards still to pull, as (shard, previous owner)
    pub fn pulls(&self) -> Vec<(ShardId, GroupId)> {
        self.shards
            .iter()
            .filter_map(|(&s, slot)| match slot.status {
                ShardStatus::Pulling { from } => Some((s, from)),
                _ => None,
            })
            .collect()
    }

    /// Shards whose previous owner must still delete its copy, as (shard, previous owner)
    pub fn deletes_owed(&self) -> Vec<(ShardId, GroupId)> {
        self.shards
            .iter()
            .filter_map(|(&s, slot)| match slot.status {
                ShardStatus::ServingUntilDeleted { from } => Some((s, from)),
                _ => None,
            })
            .collect()
    }

    /// The previous owner's side of a pull: the shard's data if this group has moved to
    /// configuration `num` and offers it (stopped serving it: see
    /// [`GroupCommand::StartHandOff`]); `None` means "not yet" (or "already handed over")
    pub fn offer(&self, shard: ShardId, num: u64) -> Option<&ShardState> {
        if self.config.num != num {
            return None;
        }
        let slot = self.shards.get(&shard)?;
        matches!(slot.status, ShardStatus::Offering { .. }).then_some(&slot.state)
    }

    /// The replicas of group `gid` in the previous configuration (the one shards move from;
    /// empty if it was not in it)
    pub fn previous_replicas(&self, gid: GroupId) -> Vec<crate::raft::NodeId> {
        self.previous.groups.get(&gid).cloned().unwrap_or_default()
    }

    /// The group this group hands `shard` to in configuration `num`, if it is handing it over
    /// or offering it there: only that group may fetch it or have it deleted
    pub fn hands_to(&self, shard: ShardId, num: u64) -> Option<GroupId> {
        if self.config.num != num {
            return None;
        }
        match self.shards.get(&shard)?.status {
            ShardStatus::Offering { to } | ShardStatus::Handing { to } => Some(to),
            _ => None,
        }
    }

    /// The previous owner's side of a delete: whether our copy from configuration `num` is gone
    /// (we moved past `num`, or never had it, or deleted it)
    pub fn deleted(&self, shard: ShardId, num: u64) -> bool {
        self.config.num > num
            || (self.config.num == num
                && !self.shards.get(&shard).is_some_and(|s| {
                    matches!(
                        s.status,
                        ShardStatus::Offering { .. } | ShardStatus::Handing { .. }
                    )
                }))
    }

    /// Bytes of keys and values held, over every shard (including shards offered away)
    pub fn data_bytes(&self) -> u64 {
        self.shards.values().map(|s| s.state.data_bytes()).sum()
    }

    /// Keys in the shards this group serves (not those it offers away or still pulls)
    pub fn served_keys(&self) -> u64 {
        self.shards
            .values()
            .filter(|s| {
                matches!(
                    s.status,
                    ShardStatus::Serving | ShardStatus::ServingUntilDeleted { .. }
                )
            })
            .map(|s| s.state.kv.len())
            .sum()
    }

    /// Every shard moving into or out of this group, and how far it has come
    pub fn handovers(&self) -> Vec<Handover> {
        self.shards
            .iter()
            .filter_map(|(&shard, slot)| match slot.status {
                ShardStatus::Pulling { from } => Some(Handover {
                    shard,
                    direction: HandoverDirection::In { from },
                    keys: slot.pull.keys,
                    bytes: slot.pull.bytes,
                    total: slot.pull.total.as_ref().map(|t| (t.keys, t.bytes)),
                }),
                ShardStatus::Offering { to } | ShardStatus::Handing { to } => Some(Handover {
                    shard,
                    direction: HandoverDirection::Out { to },
                    keys: slot.state.kv.len(),
                    bytes: slot.state.kv.data_bytes(),
                    total: Some((slot.state.kv.len(), slot.state.kv.data_bytes())),
                }),
                _ => None,
            })
            .collect()
    }

    /// A copy that shares every shard's data with this state (O(shards)): a frozen view, for
    /// work that reads all of it off the node's loop (snapshots, [`digest`](Self::digest))
    pub fn view(&self) -> GroupState {
        GroupState {
            gid: self.gid,
            config: self.config.clone(),
            previous: self.previous.clone(),
            shards: self.shards.clone(),
            limits: self.limits,
            received: self.received,
            released: Vec::new(),
        }
    }
}

impl crate::rsm::StateMachine for GroupState {
    type Command = GroupCommand;
    type Output = Option<ClientOutcome>;

    fn apply(&mut self, _index: crate::raft::Index, command: GroupCommand) -> Self::Output {
        match command {
            // A chunk is moved in, not copied.
            GroupCommand::InstallChunk { shard, num, chunk } => {
                self.install_chunk(shard, num, chunk);
                None
            }
            command => GroupState::apply(self, &command),
        }
    }

    fn snapshot(&self) -> alloc::boxed::Box<dyn crate::rsm::SnapshotEncoder> {
        alloc::boxed::Box::new(super::snapshot::GroupSnapshotEncoder::new(self.view()))
    }

    fn restorer(&self) -> alloc::boxed::Box<dyn crate::rsm::SnapshotDecoder> {
        alloc::boxed::Box::new(super::snapshot::GroupSnapshotDecoder::default())
    }

    fn poll_release(&mut self) -> Option<crate::rsm::Release> {
        self.released.pop().map(crate::rsm::Release::new)
    }
}
