//! Key to slot to shard: the Redis Cluster key slots, in contiguous ranges per shard
//!
//! A key's slot is CRC16-XMODEM of the key, modulo [`SLOT_COUNT`] (16384), as the Redis Cluster
//! specification defines it. When the key contains a hash tag (the bytes between the first `{`
//! and the first `}` after it, when there is at least one byte between them) only the tag is
//! hashed, so `{user:42}.name` and `{user:42}.email` share a slot. Each shard owns a contiguous
//! range of slots: slot `s` of `n` shards belongs to shard `s * n / 16384`
//! ([`shard_slots`] gives a shard's range). Data placement depends on these functions: they
//! never change within a data format.
//!
//! ```
//! use shale_core::shard::{key_shard, key_slot, shard_slots};
//!
//! assert_eq!(key_slot(b"foo"), 12182);
//! assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"{user1000}.followers"));
//! let shard = key_shard(b"foo", 16);
//! assert!(shard_slots(shard, 16).contains(&12182));
//! ```

use core::ops::Range;

use crate::controller::ShardId;

/// Number of key slots (the Redis Cluster specification's)
pub const SLOT_COUNT: u16 = 16384;

/// Most shards a cluster may have: one slot each at the least
pub const MAX_SHARDS: u32 = SLOT_COUNT as u32;

/// CRC16-XMODEM (polynomial 0x1021, initial value 0, no reflection) by byte
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC16-XMODEM of `bytes`: the checksum Redis Cluster hashes keys with
pub fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &b| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ b)]
    })
}

/// The part of `key` that decides its slot: its hash tag if it has a non-empty one, else the
/// whole key
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{')
        && let Some(len) = key[open + 1..].iter().position(|&b| b == b'}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// The Redis Cluster slot of `key`, `0..16384`
pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOT_COUNT
}

/// The shard owning `slot` among `shard_count` shards (0 when there are none)
pub fn slot_shard(slot: u16, shard_count: u32) -> ShardId {
    if shard_count == 0 {
        return 0;
    }
    let shards = u64::from(shard_count.min(MAX_SHARDS));
    (u64::from(slot % SLOT_COUNT) * shards / u64::from(SLOT_COUNT)) as ShardId
}

/// The slots `shard` owns among `shard_count` shards: a contiguous range (empty for a shard
/// that does not exist)
pub fn shard_slots(shard: ShardId, shard_count: u32) -> Range<u16> {
    let n = u64::from(shard_count.min(MAX_SHARDS));
    if u64::from(shard) >= n {
        return 0..0;
    }
    // The first slot s with s * n / 16384 >= k is ceil(k * 16384 / n).
    let first = |k: u64| (k * u64::from(SLOT_COUNT)).div_ceil(n) as u16;
    let end = if u64::from(shard) + 1 == n {
        SLOT_COUNT
    } else {
        first(u64::from(shard) + 1)
    };
    first(u64::from(shard))..end
}

/// The shard holding `key` among `shard_count` shards (0 when there are none)
pub fn key_shard(key: &[u8], shard_count: u32) -> ShardId {
    slot_shard(key_slot(key), shard_count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_redis_cluster_specification() {
        // Pinned values: changing them would move every stored key.
        assert_eq!(crc16(b"123456789"), 0x31c3);
        assert_eq!(crc16(b""), 0);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"hello"), 866);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        // No tag, or an empty one: the whole key counts.
        assert_eq!(hash_tag(b"{}x"), b"{}x");
        assert_eq!(hash_tag(b"a{b"), b"a{b");
        assert_eq!(hash_tag(b"x}{y}"), b"y");
        assert_eq!(hash_tag(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(key_shard(b"k", 0), 0);
    }

    #[test]
    fn each_shard_owns_a_contiguous_range_and_the_ranges_cover_every_slot() {
        for n in [1u32, 2, 3, 7, 10, 16, 1000, 16383, 16384, 20000] {
            let mut next = 0u32;
            let shards = n.min(MAX_SHARDS);
            for shard in 0..shards {
                let range = shard_slots(shard, n);
                assert_eq!(u32::from(range.start), next, "{n} shards: shard {shard}");
                assert!(!range.is_empty(), "{n} shards: shard {shard} owns no slot");
                for slot in [range.start, range.end - 1] {
                    assert_eq!(slot_shard(slot, n), shard, "{n} shards: slot {slot}");
                }
                next = u32::from(range.end);
            }
            assert_eq!(next, u32::from(SLOT_COUNT), "{n} shards cover every slot");
            assert!(shard_slots(shards, n).is_empty());
        }
        assert_eq!(shard_slots(0, 16), 0..1024);
        assert_eq!(shard_slots(15, 16), 15360..16384);
    }

    #[test]
    fn keys_spread_over_shards() {
        let mut seen = [0u32; 16];
        for i in 0..1600u32 {
            let key = alloc::format!("key:{i}");
            seen[key_shard(key.as_bytes(), 16) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 60 && n < 140), "{seen:?}");
    }
}
