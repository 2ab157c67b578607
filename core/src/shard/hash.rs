//! Key to shard: a stable, documented hash
//!
//! The shard of a key is the 64-bit FNV-1a hash of the key, modulo the shard count. When the
//! key contains a hash tag (as in Redis Cluster: the bytes between the first `{` and the first
//! `}` after it, when there is at least one byte between them), only the tag is hashed, so
//! `{user:42}.name` and `{user:42}.email` live in the same shard. The function never changes:
//! data placement depends on it.

use crate::controller::ShardId;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0100_0000_01b3;

/// 64-bit FNV-1a of `bytes`
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME)
    })
}

/// The part of `key` that decides its shard: its hash tag if it has a non-empty one, else the
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

/// The shard holding `key` among `shard_count` shards (0 when there are none)
pub fn key_shard(key: &[u8], shard_count: u32) -> ShardId {
    if shard_count == 0 {
        return 0;
    }
    (fnv1a(hash_tag(key)) % u64::from(shard_count)) as ShardId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_and_tags_pin_keys_together() {
        // Pinned values: changing the hash would move every stored key.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(key_shard(b"hello", 64), (fnv1a(b"hello") % 64) as u32);
        assert_eq!(hash_tag(b"{user:42}.name"), b"user:42");
        assert_eq!(
            key_shard(b"{user:42}.name", 64),
            key_shard(b"{user:42}.email", 64)
        );
        assert_eq!(key_shard(b"{user:42}.name", 64), key_shard(b"user:42", 64));
        // No tag, or an empty one: the whole key counts.
        assert_eq!(hash_tag(b"{}x"), b"{}x");
        assert_eq!(hash_tag(b"a{b"), b"a{b");
        assert_eq!(hash_tag(b"x}{y}"), b"y");
        assert_eq!(key_shard(b"k", 0), 0);
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
