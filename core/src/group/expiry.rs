//! Expired keys removed in bounded batches: the leader walks its shards a few keys per poll
//!
//! A key whose time has come is already absent to every read and write (they compare its
//! expiry with their own time); this only frees its memory. Every
//! [`poll_interval`](super::DriverConfig::poll_interval) the leader looks at up to
//! [`expiry_sweep_keys`](super::DriverConfig::expiry_sweep_keys) keys from where it stopped
//! last time (a cursor through the served shards, in key order, starting over at the end)
//! and proposes [`GroupCommand::DeleteExpired`] with the expired ones and its clock; each
//! replica removes those still expired at that time. A walk over a shard of `n` keys takes
//! `n / expiry_sweep_keys` polls, and no poll does more than that bounded work.

use alloc::vec::Vec;

use super::driver::{GroupDriver, GroupMachine};
use super::state::{GroupCommand, GroupState};
use crate::controller::ShardId;
use crate::shard::value::StoredValue;
use crate::shard::{Bytes, ShardStore};
use crate::time::Instant;

/// Where the walk for expired keys goes on from: a shard and the last key looked at in it
/// (`None`: from its first key)
pub(super) type SweepCursor = (ShardId, Option<Bytes>);

impl<M: GroupMachine> GroupDriver<M> {
    /// Looks at the next keys for expired ones and proposes their removal (the leader, at
    /// each poll; see the module docs)
    pub(super) fn sweep_expired(&mut self, now: Instant) {
        let budget = self.config.expiry_sweep_keys;
        if budget == 0 || self.wall_ms() == 0 {
            return;
        }
        let now_ms = self.wall_ms();
        let state: &GroupState = self.replica.state().borrow();
        let served: Vec<ShardId> = state
            .shards
            .keys()
            .copied()
            .filter(|&s| state.serves(s))
            .collect();
        let Some(&first) = served.first() else {
            return;
        };
        let before = self.sweep_cursor.clone();
        let (mut shard, mut after) = self.sweep_cursor.take().unwrap_or((first, None));
        // A batch's keys take at most about a hand-over chunk of the log entry.
        let max_bytes = self.config.handover_chunk_bytes;
        let mut batch_bytes = 0usize;
        if !served.contains(&shard) {
            (shard, after) = (
                served.iter().copied().find(|&s| s > shard).unwrap_or(first),
                None,
            );
        }
        let mut looked = 0;
        let mut found: Vec<(ShardId, Vec<Bytes>)> = Vec::new();
        // At most one pass over the served shards per poll, even with few keys.
        for _ in 0..served.len() {
            let Some(slot) = state.shards.get(&shard) else {
                break;
            };
            let mut expired = Vec::new();
            let mut last = None;
            for (key, value) in slot
                .state
                .kv
                .range_from(after.as_deref())
                .take(budget - looked)
            {
                looked += 1;
                if !StoredValue::decode(value).live_at(now_ms) {
                    batch_bytes += key.len();
                    expired.push(key.to_vec());
                }
                last = Some(key);
                if batch_bytes >= max_bytes {
                    looked = budget; // full: go on from here next poll
                    break;
                }
            }
            if !expired.is_empty() {
                found.push((shard, expired));
            }
            if looked >= budget {
                after = last.map(<[u8]>::to_vec);
                break;
            }
            // This shard is done: the next one from its start.
            shard = served.iter().copied().find(|&s| s > shard).unwrap_or(first);
            after = None;
        }
        self.sweep_cursor = Some((shard, after));
        for (shard, keys) in found {
            let command = GroupCommand::DeleteExpired {
                shard,
                now_ms,
                keys,
            };
            if !self.propose_own(now, &command) {
                // Refused (busy, a transfer): the same keys are looked at again next poll.
                self.sweep_cursor = before;
                return;
            }
        }
    }
}
