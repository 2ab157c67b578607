//! Digests of a group's state, to compare replicas: one for the group's own fields, one per
//! shard (its status, pull progress, sessions and keys with their values)
//!
//! Two replicas that applied the same log prefix have the same digests; a difference means
//! they diverged (or a bug made apply depend on something outside the log). A digest reads
//! every byte of the state, so compute it from a [`GroupState::view`] on a thread of its own,
//! never on a node's loop.
//!
//! ```
//! use shale_core::group::GroupState;
//! use shale_core::shard::ShardLimits;
//!
//! let a = GroupState::new(1, 4, ShardLimits::default());
//! let b = GroupState::new(1, 4, ShardLimits::default());
//! assert_eq!(a.view().digest(), b.view().digest());
//! ```

use alloc::vec::Vec;

use serde::Serialize;

use super::state::{GroupState, ShardStatus};
use crate::controller::ShardId;
use crate::shard::{ShardCursor, ShardStore};

/// Bytes of shard contents hashed per chunk while digesting
const DIGEST_CHUNK_BYTES: usize = 256 << 10;

/// 64-bit FNV-1a over everything written to it
#[derive(Clone, Copy, Debug)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv64 {
    /// Hashes `bytes` in
    pub fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Hashes the postcard encoding of `value` in
    pub fn write_encoded(&mut self, value: &impl Serialize) {
        self.write(&postcard::to_allocvec(value).unwrap_or_default());
    }

    /// The digest so far
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// One shard's digest on one replica
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardDigest {
    /// The shard
    pub shard: ShardId,
    /// Where it stands on this replica
    pub status: ShardStatus,
    /// Keys it holds
    pub keys: u64,
    /// FNV-1a of its status, pull progress and contents in transfer order
    pub digest: u64,
}

/// A group's digests on one replica
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDigest {
    /// FNV-1a of the group's id, configurations and hand-over totals
    pub header: u64,
    /// Every shard slot the group holds, by shard
    pub shards: Vec<ShardDigest>,
}

impl GroupState {
    /// The digests of this state (reads all of it: take a [`view`](Self::view) and call this
    /// off the node's loop)
    pub fn digest(&self) -> GroupDigest {
        let mut header = Fnv64::default();
        // Not the limits: they come from each node's configuration, not from the log.
        header.write_encoded(&(self.gid, &self.config, &self.previous, &self.received));
        let shards = self
            .shards
            .iter()
            .map(|(&shard, slot)| {
                let mut h = Fnv64::default();
                h.write_encoded(&(slot.status, &slot.pull));
                let mut cursor = Some(ShardCursor::START);
                while let Some(at) = cursor {
                    let chunk = slot.state.chunk(&at, DIGEST_CHUNK_BYTES);
                    h.write_encoded(&chunk);
                    cursor = chunk.next;
                }
                ShardDigest {
                    shard,
                    status: slot.status,
                    keys: slot.state.kv.len(),
                    digest: h.finish(),
                }
            })
            .collect();
        GroupDigest {
            header: header.finish(),
            shards,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::controller::{ControllerCommand, ShardController};
    use crate::group::{GroupCommand, GroupState};
    use crate::shard::{ClientRequest, KvOp, ShardLimits};

    fn owning_all(gid: u64) -> GroupState {
        let mut g = GroupState::new(gid, 4, ShardLimits::default());
        let mut ctl = ShardController::new(4);
        let config = ctl
            .apply(&ControllerCommand::Join(alloc::vec![(gid, alloc::vec![1])]))
            .unwrap();
        g.apply(&GroupCommand::Reconfigure(config));
        g
    }

    #[test]
    fn a_different_value_changes_exactly_its_shards_digest() {
        let (mut a, mut b) = (owning_all(1), owning_all(1));
        let put = |g: &mut GroupState, key: &str, value: &str| {
            g.apply(&GroupCommand::Client(ClientRequest {
                stamp_ms: 0,
                client: 7,
                seq: 1,
                op: KvOp::Put {
                    key: key.as_bytes().into(),
                    value: value.as_bytes().into(),
                },
            }));
        };
        put(&mut a, "k", "one");
        put(&mut b, "k", "one");
        assert_eq!(a.digest(), b.digest());
        let mut c = owning_all(1);
        put(&mut c, "k", "two");
        let (da, dc) = (a.digest(), c.digest());
        let shard = crate::shard::key_shard(b"k", 4);
        for (x, y) in da.shards.iter().zip(&dc.shards) {
            assert_eq!(x.digest == y.digest, x.shard != shard, "shard {}", x.shard);
        }
        assert_eq!(da.header, dc.header);
    }
}
