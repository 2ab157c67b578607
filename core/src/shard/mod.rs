//! The sharded key-value state machine: keys hashed to shards, operations, and exactly-once
//! sessions per shard
//!
//! A replica group applies [`ClientRequest`]s to the [`ShardState`] of the shard that owns the
//! key ([`key_shard`]). Each shard carries its data and its session table, so both travel
//! together when the shard moves to another group.
//!
//! ```
//! use shale_core::shard::{ClientRequest, KvError, KvOp, KvResult, ShardLimits, ShardState};
//!
//! let mut shard = ShardState::default();
//! let limits = ShardLimits::default();
//! let put = ClientRequest { stamp_ms: 0, client: 1, seq: 1, op: KvOp::Append { key: b"k".to_vec(), value: b"ab".to_vec() } };
//! assert_eq!(shard.apply(&put, &limits), Ok(KvResult::Length(2)));
//! // The same request retried is answered, not applied again.
//! assert_eq!(shard.apply(&put, &limits), Ok(KvResult::Length(2)));
//! let get = ClientRequest { stamp_ms: 0, client: 1, seq: 2, op: KvOp::Get { key: b"k".to_vec() } };
//! assert_eq!(shard.apply(&get, &limits), Ok(KvResult::Value(Some(b"ab".to_vec()))));
//! ```

pub mod data;
mod hash;
mod ops;
mod session;
mod store;
mod transfer;
pub mod value;

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

pub use hash::{
    MAX_SHARDS, SLOT_COUNT, crc16, hash_tag, key_shard, key_slot, shard_slots, slot_shard,
};
pub use ops::{
    Bytes, ExpireCondition, Expiry, KvError, KvLimits, KvOp, KvResult, SCAN_COUNT_MAX,
    SetCondition, apply_op, apply_op_seeded,
};
pub use session::{
    Admission, CLIENT_ISSUER_BITS, ClientId, ExpiryWatermarks, Session, SessionLimits,
    SessionTable, client_issuer,
};
pub use store::{MemStore, MemStoreBuilder, ShardStore, StoreBuilder};
pub use transfer::{ShardBuilder, ShardChunk, ShardCursor, ShardHeader};

/// The shard count a cluster gets unless it chooses another at creation
pub const DEFAULT_SHARD_COUNT: u32 = 64;

/// One client request: `seq` increases with every new request of `client`
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClientRequest {
    /// The client's session id
    pub client: ClientId,
    /// The request's sequence number within the session
    pub seq: u64,
    /// The operation
    pub op: KvOp,
    /// When the group's leader proposed it, Unix milliseconds by the leader's clock (set by
    /// the leader, whatever the sender put there): the time that decides expiry when it is
    /// applied, on every replica alike
    pub stamp_ms: u64,
}

/// The limits a shard enforces
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardLimits {
    /// Key and value sizes
    pub kv: KvLimits,
    /// Session table bounds
    pub sessions: SessionLimits,
}

/// The shard store this build keeps shards in (see [`ShardStore`])
pub type Store = MemStore;

/// One shard: its data and its clients' sessions; a clone is an O(1) point-in-time view
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardState {
    /// The data
    pub kv: Store,
    /// The sessions of clients that wrote to this shard
    pub sessions: SessionTable,
    /// Data a `FLUSHALL` replaced, to drop off the node's loop; the group takes it right after
    /// the request applies, so it is empty whenever the state is encoded or compared
    pub flushed: Vec<Store>,
}

impl ShardState {
    /// Applies `request` exactly once; a retry of the last request gets its recorded result
    pub fn apply(
        &mut self,
        request: &ClientRequest,
        limits: &ShardLimits,
    ) -> Result<KvResult, KvError> {
        match self.sessions.admit(request.client, request.seq) {
            Admission::Duplicate(result) => result,
            Admission::Stale => Err(KvError::StaleRequest),
            Admission::Expired => Err(KvError::SessionExpired),
            Admission::Apply => {
                // The shard's time: the latest stamp it has seen, so expiry never goes back
                // when leadership moves to a node whose clock is behind.
                let at = self.sessions.advance_time(request.stamp_ms);
                let result = if matches!(request.op, KvOp::Flush { .. }) {
                    // The old data is handed to whoever drains `flushed` (the group sends it
                    // off the node's loop: dropping it takes time in proportion to its size).
                    self.flushed.push(core::mem::take(&mut self.kv));
                    Ok(KvResult::Done)
                } else {
                    // Random choices (SPOP) are the same on every replica: seeded by the
                    // request.
                    let seed = request.stamp_ms
                        ^ request.client.rotate_left(17)
                        ^ request.seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                    apply_op_seeded(&mut self.kv, &request.op, &limits.kv, at, seed)
                };
                self.sessions.record(
                    request.client,
                    request.seq,
                    result.clone(),
                    &limits.sessions,
                );
                result
            }
        }
    }

    /// Bytes of keys and values held
    pub fn data_bytes(&self) -> u64 {
        self.kv.data_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(seq: u64, stamp_ms: u64, op: KvOp) -> ClientRequest {
        ClientRequest {
            client: 1,
            seq,
            op,
            stamp_ms,
        }
    }

    /// Leadership moved to a node whose clock is behind: its stamps are earlier than those
    /// already applied, and a key the shard already saw expire must stay expired (found by
    /// review: each entry was applied at its own stamp)
    #[test]
    fn a_shard_applies_at_the_latest_stamp_it_has_seen() {
        let mut shard = ShardState::default();
        let limits = ShardLimits::default();
        let set = KvOp::Set {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            condition: SetCondition::Always,
            expiry: Expiry::In(100),
        };
        let get = || KvOp::Get { key: b"k".to_vec() };
        assert!(shard.apply(&request(1, 1_000, set), &limits).is_ok());
        assert_eq!(
            shard.apply(&request(2, 2_000, get()), &limits),
            Ok(KvResult::Value(None)),
            "expired at 1,100"
        );
        assert_eq!(
            shard.apply(&request(3, 1_050, get()), &limits),
            Ok(KvResult::Value(None)),
            "a slower leader's stamp brought an expired key back"
        );
        assert_eq!(shard.sessions.time_ms(), 2_000);
        // The time travels with the shard.
        let mut copy = ShardState::default();
        copy.apply_chunk(shard.chunk(&ShardCursor::START, usize::MAX));
        assert_eq!(copy.sessions.time_ms(), 2_000);
    }
}
