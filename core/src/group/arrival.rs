//! Serving a shard while it is pulled: which keys have arrived, and keys fetched ahead
//!
//! Chunks arrive in key order, after the session table, so while a shard is pulled its keys
//! up to the pull's cursor are complete here: the previous owner stopped serving the shard
//! before it handed anything over, so what arrived is final, and from then on only this group
//! changes those keys. Operations on them are served at once, writes included. An operation on
//! a key beyond the cursor would otherwise wait for the whole shard; instead the group's
//! leader fetches that key alone from the previous owner and logs it
//! ([`GroupCommand::InstallKeys`](super::GroupCommand::InstallKeys)), after which it is
//! served like the others, and its chunk, when it comes, leaves it alone. A shard stays
//! unavailable only until its session table has arrived (its first chunk) and for the
//! round trip of a key fetched ahead.

use alloc::vec::Vec;

use super::state::{GroupState, PullProgress, ShardStatus};
use crate::controller::ShardId;
use crate::shard::{Bytes, KvOp, ShardCursor, ShardStore, key_shard};

impl PullProgress {
    /// Whether `key` has arrived: its chunk did, or it was fetched ahead
    pub fn has_arrived(&self, key: &[u8]) -> bool {
        match &self.next {
            ShardCursor::Sessions(_) => false,
            ShardCursor::Data(None) => self.ahead.contains(key),
            ShardCursor::Data(Some(last)) => key <= last.as_slice() || self.ahead.contains(key),
        }
    }

    /// Drops the keys fetched ahead that the chunks have now caught up with
    pub(crate) fn forget_covered(&mut self) {
        if let ShardCursor::Data(Some(last)) = &self.next {
            let last = last.clone();
            self.ahead.retain(|k| *k > last);
        }
    }
}

impl GroupState {
    /// Whether every one of `keys` (all of `shard`) has arrived in the pulled `shard`
    pub(crate) fn arrived(&self, shard: ShardId, keys: &[&[u8]]) -> bool {
        self.shards.get(&shard).is_some_and(|slot| {
            matches!(slot.status, ShardStatus::Pulling { .. })
                && keys.iter().all(|k| slot.pull.has_arrived(k))
        })
    }

    /// The keys of `op` to fetch ahead of their chunk: those of a shard being pulled whose
    /// session table has arrived and that have not arrived themselves (empty otherwise)
    pub fn keys_to_fetch(&self, op: &KvOp) -> (ShardId, Vec<Bytes>) {
        let shard = key_shard(op.key(), self.config.shards.len() as u32);
        let Some(slot) = self.shards.get(&shard) else {
            return (shard, Vec::new());
        };
        let pulling = matches!(slot.status, ShardStatus::Pulling { .. })
            && matches!(slot.pull.next, ShardCursor::Data(_));
        if !pulling || self.config.owner(shard) != self.gid {
            return (shard, Vec::new());
        }
        let keys = op
            .keys()
            .into_iter()
            .filter(|k| !slot.pull.has_arrived(k))
            .map(<[u8]>::to_vec)
            .collect();
        (shard, keys)
    }

    /// Takes keys fetched ahead of their chunk (the ones that have not arrived meanwhile)
    pub(crate) fn install_keys(
        &mut self,
        shard: ShardId,
        num: u64,
        entries: &[(Bytes, Option<Bytes>)],
    ) {
        if num != self.config.num {
            return;
        }
        let Some(slot) = self.shards.get_mut(&shard) else {
            return;
        };
        if !matches!(slot.status, ShardStatus::Pulling { .. })
            || !matches!(slot.pull.next, ShardCursor::Data(_))
        {
            return;
        }
        for (key, value) in entries {
            if slot.pull.has_arrived(key) {
                continue; // its chunk came first, or it was fetched twice: ours is as new
            }
            if let Some(value) = value {
                slot.state.kv.insert(key.clone(), value.clone());
            }
            slot.pull.ahead.insert(key.clone());
        }
    }

    /// The previous owner's side of a fetch ahead: the values of `keys` of `shard` as of
    /// configuration `num`, once this group offers it (`None`: not yet, or no longer)
    pub fn offer_keys(
        &self,
        shard: ShardId,
        num: u64,
        keys: &[Bytes],
    ) -> Option<Vec<(Bytes, Option<Bytes>)>> {
        let state = self.offer(shard, num)?;
        Some(
            keys.iter()
                .map(|k| (k.clone(), state.kv.get(k).map(<[u8]>::to_vec)))
                .collect(),
        )
    }
}
