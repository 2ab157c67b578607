//! Hashes, sets and lists: Redis's collection types, stored as one value per key
//!
//! A collection is a stored value ([`value`](super::value)) whose type is [`TYPE_HASH`],
//! [`TYPE_SET`] or [`TYPE_LIST`] and whose payload lists its items ([`codec`]). Each
//! operation decodes the items it needs, and a write encodes the collection again: the work
//! is in proportion to the collection's size, which
//! [`KvLimits::max_collection_items`](super::KvLimits::max_collection_items) and
//! `max_value_bytes` bound. A collection left empty is deleted, as in Redis; an operation on a
//! key of another type fails with [`KvError::WrongType`].
//!
//! Collections travel with their shard and appear in snapshots as any value does. Random
//! choices (`SPOP`) draw from a generator seeded by the request's stamp, client and sequence
//! number, so every replica makes the same one.
//!
//! ```
//! use shale_core::shard::data::{CollectionOp, DataReply, HashOp};
//! use shale_core::shard::{KvLimits, KvOp, KvResult, MemStore, apply_op};
//!
//! let mut store = MemStore::default();
//! let hset = KvOp::Collection {
//!     key: b"h".to_vec(),
//!     op: CollectionOp::Hash(HashOp::Set { pairs: vec![(b"f".to_vec(), b"v".to_vec())], only_new: false }),
//! };
//! let limits = KvLimits::default();
//! assert_eq!(apply_op(&mut store, &hset, &limits, 0), Ok(KvResult::Reply(DataReply::Int(1))));
//! ```

pub mod codec;
mod hash;
pub(crate) mod list;
pub(crate) mod set;

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::ops::{Bytes, KvError, KvLimits};
use super::store::ShardStore;
use super::value::{StoredValue, TYPE_STRING, encode, live};

pub use hash::HashOp;
pub use list::ListOp;
pub use set::{Combine, SetOp};

/// The type bits of a hash
pub const TYPE_HASH: u8 = 1;
/// The type bits of a set
pub const TYPE_SET: u8 = 2;
/// The type bits of a list
pub const TYPE_LIST: u8 = 3;

/// The name `TYPE` answers for a stored type
pub fn type_name(kind: u8) -> &'static str {
    match kind {
        TYPE_STRING => "string",
        TYPE_HASH => "hash",
        TYPE_SET => "set",
        TYPE_LIST => "list",
        _ => "none",
    }
}

/// An operation on one collection
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CollectionOp {
    /// On a hash
    Hash(HashOp),
    /// On a set
    Set(SetOp),
    /// On a list
    List(ListOp),
}

impl CollectionOp {
    /// Whether it only reads
    pub fn is_read(&self) -> bool {
        match self {
            CollectionOp::Hash(op) => op.is_read(),
            CollectionOp::Set(op) => op.is_read(),
            CollectionOp::List(op) => op.is_read(),
        }
    }
}

/// A reply shaped as Redis shapes it
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataReply {
    /// `OK`
    Ok,
    /// A status such as a type name
    Status(Bytes),
    /// Nothing (a nil bulk string)
    Nil,
    /// A nil array (`LPOP key count` on a missing key)
    NilArray,
    /// An integer
    Int(i64),
    /// A bulk string
    Bulk(Bytes),
    /// An array
    Array(Vec<DataReply>),
}

impl DataReply {
    fn bulks<'a>(items: impl IntoIterator<Item = &'a [u8]>) -> DataReply {
        DataReply::Array(
            items
                .into_iter()
                .map(|i| DataReply::Bulk(i.to_vec()))
                .collect(),
        )
    }
}

/// A collection's items and its expiry (Unix milliseconds, `None`: never)
pub(crate) type Collection = (Vec<Bytes>, Option<u64>);

/// What an operation on a collection sees: the store, the limits, the time and a seed
pub(crate) struct Ctx<'a, S> {
    pub(crate) store: &'a mut S,
    pub(crate) limits: &'a KvLimits,
    pub(crate) now_ms: u64,
    pub(crate) seed: u64,
}

impl<S: ShardStore> Ctx<'_, S> {
    /// The live collection of type `kind` at `key`: its items and expiry (`None`: absent);
    /// [`KvError::WrongType`] for a value of another type
    pub(crate) fn items(&self, key: &[u8], kind: u8) -> Result<Option<Collection>, KvError> {
        match live(self.store.get(key), self.now_ms) {
            None => Ok(None),
            Some(v) if v.kind != kind => Err(KvError::WrongType),
            Some(v) => Ok(Some((
                codec::decode_items(v.payload)
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect(),
                v.expires_at_ms,
            ))),
        }
    }

    /// Stores `items` as `key`'s collection of type `kind` (deleting the key when there are
    /// none), within the limits; `entries` is the collection's size in Redis's terms
    /// (fields of a hash, members, elements)
    pub(crate) fn save(
        &mut self,
        key: &[u8],
        kind: u8,
        items: &[Bytes],
        entries: usize,
        expires_at_ms: Option<u64>,
    ) -> Result<(), KvError> {
        if items.is_empty() {
            self.store.remove(key);
            return Ok(());
        }
        self.check(items, entries)?;
        let payload = codec::encode_items(items.iter().map(Vec::as_slice));
        self.store
            .insert(key.to_vec(), encode(kind, &payload, expires_at_ms));
        Ok(())
    }

    /// Whether a collection of `items` (`entries` in Redis's terms) fits the limits
    pub(crate) fn check(&self, items: &[Bytes], entries: usize) -> Result<(), KvError> {
        if entries > self.limits.max_collection_items as usize {
            return Err(KvError::TooManyItems {
                max_items: self.limits.max_collection_items,
            });
        }
        let bytes: usize = items.iter().map(|i| i.len() + 10).sum();
        if bytes > self.limits.max_value_bytes as usize {
            let exact = codec::encode_items(items.iter().map(Vec::as_slice)).len();
            if exact > self.limits.max_value_bytes as usize {
                return Err(KvError::ValueTooLarge {
                    size_bytes: exact as u64,
                    max_bytes: self.limits.max_value_bytes,
                });
            }
        }
        Ok(())
    }

    /// A generator for this operation's random choices
    pub(crate) fn rng(&self) -> crate::rng::Rng {
        crate::rng::Rng::new(self.seed)
    }
}

/// Applies `op` to the collection at `key`
pub(crate) fn apply<S: ShardStore>(
    ctx: &mut Ctx<'_, S>,
    key: &[u8],
    op: &CollectionOp,
) -> Result<DataReply, KvError> {
    match op {
        CollectionOp::Hash(op) => hash::apply(ctx, key, op),
        CollectionOp::Set(op) => set::apply(ctx, key, op),
        CollectionOp::List(op) => list::apply(ctx, key, op),
    }
}

/// The type of the live value at `key`, as `TYPE` names it
pub(crate) fn type_of<S: ShardStore>(store: &S, key: &[u8], now_ms: u64) -> &'static str {
    live(store.get(key), now_ms).map_or("none", |v: StoredValue<'_>| type_name(v.kind))
}

/// Whether `text` matches the glob `pattern` (`*`, `?`, `[...]` with ranges and `^`, `\`
/// escapes), as Redis's `MATCH` and `KEYS` do
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((b'[', rest)) => {
            let Some((&c, text_rest)) = text.split_first() else {
                return false;
            };
            let (negate, mut p) = match rest.split_first() {
                Some((b'^', r)) => (true, r),
                _ => (false, rest),
            };
            let mut matched = false;
            loop {
                match p {
                    [] => return false, // no closing bracket: no match
                    [b']', tail @ ..] => {
                        p = tail;
                        break;
                    }
                    [b'\\', e, tail @ ..] => {
                        matched |= *e == c;
                        p = tail;
                    }
                    [a, b'-', b, tail @ ..] if *b != b']' => {
                        let (lo, hi) = if a <= b { (*a, *b) } else { (*b, *a) };
                        matched |= (lo..=hi).contains(&c);
                        p = tail;
                    }
                    [a, tail @ ..] => {
                        matched |= *a == c;
                        p = tail;
                    }
                }
            }
            matched != negate && glob_match(p, text_rest)
        }
        Some((b'\\', rest)) if !rest.is_empty() => {
            text.first() == Some(&rest[0]) && glob_match(&rest[1..], &text[1..])
        }
        Some((&c, rest)) => text.first() == Some(&c) && glob_match(rest, &text[1..]),
    }
}

/// `start..=stop` with negative positions counted from the end, clamped to `len`; `None`
/// when empty
pub(crate) fn index_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    (start <= stop && start < len && stop >= 0).then_some((start as usize, stop as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_as_redis_does() {
        assert!(glob_match(b"h*llo", b"heeello"));
        assert!(glob_match(b"h?llo", b"hallo"));
        assert!(!glob_match(b"h?llo", b"hllo"));
        assert!(glob_match(b"h[ae]llo", b"hello"));
        assert!(!glob_match(b"h[^e]llo", b"hello"));
        assert!(glob_match(b"h[a-b]llo", b"hbllo"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"a\\*", b"a*"));
        assert!(!glob_match(b"a\\*", b"ab"));
        assert!(!glob_match(b"[abc", b"a"));
    }

    #[test]
    fn ranges_count_from_either_end() {
        assert_eq!(index_range(0, -1, 3), Some((0, 2)));
        assert_eq!(index_range(-2, 10, 3), Some((1, 2)));
        assert_eq!(index_range(2, 1, 3), None);
        assert_eq!(index_range(5, 10, 3), None);
        assert_eq!(index_range(0, -1, 0), None);
        assert_eq!(index_range(-10, -5, 3), None);
    }
}
