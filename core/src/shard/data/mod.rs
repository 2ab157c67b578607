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
mod zset;

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::ops::{Bytes, KvError, KvLimits};
use super::store::ShardStore;
use super::value::{StoredValue, TYPE_STRING, encode, live};

pub use hash::HashOp;
pub use list::ListOp;
pub use set::{Combine, SetOp};
pub use zset::{AddFlags, LexBound, RangeBy, ScoreBound, ZSetOp};

/// The type bits of a hash
pub const TYPE_HASH: u8 = 1;
/// The type bits of a set
pub const TYPE_SET: u8 = 2;
/// The type bits of a list
pub const TYPE_LIST: u8 = 3;
/// The type bits of a sorted set
pub const TYPE_ZSET: u8 = 4;

/// The name `TYPE` answers for a stored type
pub fn type_name(kind: u8) -> &'static str {
    match kind {
        TYPE_STRING => "string",
        TYPE_HASH => "hash",
        TYPE_SET => "set",
        TYPE_LIST => "list",
        TYPE_ZSET => "zset",
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
    /// On a sorted set
    ZSet(ZSetOp),
}

impl CollectionOp {
    /// Whether it only reads
    pub fn is_read(&self) -> bool {
        match self {
            CollectionOp::Hash(op) => op.is_read(),
            CollectionOp::Set(op) => op.is_read(),
            CollectionOp::List(op) => op.is_read(),
            CollectionOp::ZSet(op) => op.is_read(),
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
    /// What a pop answers: the one value (nil when none) without a count, an array with one
    fn popped(values: Vec<Bytes>, counted: bool) -> DataReply {
        if counted {
            DataReply::bulks(values.iter().map(Vec::as_slice))
        } else {
            values
                .into_iter()
                .next()
                .map_or(DataReply::Nil, DataReply::Bulk)
        }
    }

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
        CollectionOp::ZSet(op) => zset::apply(ctx, key, op),
    }
}

/// The type of the live value at `key`, as `TYPE` names it
pub(crate) fn type_of<S: ShardStore>(store: &S, key: &[u8], now_ms: u64) -> &'static str {
    live(store.get(key), now_ms).map_or("none", |v: StoredValue<'_>| type_name(v.kind))
}

/// The longest `MATCH` pattern accepted, in bytes: matching costs up to the pattern's length
/// times the text's
pub const GLOB_PATTERN_MAX_BYTES: usize = 1024;

/// Whether `text` matches the glob `pattern` (`*`, `?`, `[...]` with ranges and `^`, `\`
/// escapes), as Redis's `MATCH` and `KEYS` do. Iterative, in at most
/// `pattern.len() * text.len()` steps whatever the pattern (a star only backtracks to the
/// last star), and without recursion
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last star: its pattern position and the text it covers to
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() {
            let step = match pattern[p] {
                b'*' => {
                    while p < pattern.len() && pattern[p] == b'*' {
                        p += 1;
                    }
                    if p == pattern.len() {
                        return true;
                    }
                    star = Some((p, t));
                    continue;
                }
                b'?' => Some(p + 1),
                b'[' => match class(pattern, p + 1, text[t]) {
                    Some((true, next)) => Some(next),
                    _ => None,
                },
                b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == text[t]).then_some(p + 2),
                c => (c == text[t]).then_some(p + 1),
            };
            if let Some(next) = step {
                p = next;
                t += 1;
                continue;
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Whether `c` is in the class that starts at `pattern[at]` (after `[`), and where the
/// pattern goes on after its `]`; `None` when the class is not closed
fn class(pattern: &[u8], at: usize, c: u8) -> Option<(bool, usize)> {
    let mut p = at;
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut matched = false;
    loop {
        match pattern.get(p..)? {
            [] => return None,
            [b']', ..] => return Some((matched != negate, p + 1)),
            [b'\\', e, ..] => {
                matched |= *e == c;
                p += 2;
            }
            [a, b'-', b, ..] if *b != b']' => {
                let (lo, hi) = if a <= b { (*a, *b) } else { (*b, *a) };
                matched |= (lo..=hi).contains(&c);
                p += 3;
            }
            [a, ..] => {
                matched |= *a == c;
                p += 1;
            }
        }
    }
}

/// A random-pick count (`SRANDMEMBER`, `HRANDFIELD`) within the collection limit either way
pub(crate) fn check_count<S>(ctx: &Ctx<'_, S>, count: Option<i64>) -> Result<(), KvError> {
    match count {
        Some(c) if c.unsigned_abs() > u64::from(ctx.limits.max_collection_items) => {
            Err(KvError::TooManyItems {
                max_items: ctx.limits.max_collection_items,
            })
        }
        _ => Ok(()),
    }
}

/// A `MATCH` pattern no longer than [`GLOB_PATTERN_MAX_BYTES`]
pub(crate) fn check_pattern(pattern: Option<&[u8]>) -> Result<(), KvError> {
    match pattern {
        Some(p) if p.len() > GLOB_PATTERN_MAX_BYTES => Err(KvError::PatternTooLong {
            max_bytes: GLOB_PATTERN_MAX_BYTES as u32,
        }),
        _ => Ok(()),
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
        assert!(glob_match(b"*b*", b"aabaa"));
        assert!(!glob_match(b"a*", b""));
        assert!(glob_match(b"", b""));
        assert!(glob_match(b"a*b?c", b"axxbyc"));
        assert!(!glob_match(b"a*b?c", b"axxbc"));
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

#[cfg(test)]
mod hostile_input_tests {
    use super::*;
    use crate::shard::{KvOp, KvResult, MemStore, apply_op};

    fn op(key: &str, op: CollectionOp) -> KvOp {
        KvOp::Collection {
            key: key.as_bytes().to_vec(),
            op,
        }
    }

    /// Found by review: these panicked, hung or took minutes on every replica
    #[test]
    fn hostile_counts_patterns_and_sizes_are_refused_or_cheap() {
        let mut store = MemStore::default();
        let limits = KvLimits {
            max_collection_items: 1_000,
            ..KvLimits::default()
        };
        let add = op(
            "s",
            CollectionOp::Set(SetOp::Add {
                members: alloc::vec![b"a".to_vec(), b"b".to_vec()],
            }),
        );
        apply_op(&mut store, &add, &limits, 0).unwrap();
        // A count of -2^63 + 1: refused, not 2^63 picks.
        let rand = op(
            "s",
            CollectionOp::Set(SetOp::RandMember {
                count: Some(-i64::MAX),
            }),
        );
        assert!(apply_op(&mut store, &rand, &limits, 0).is_err());
        // A pattern of many stars against a long member: answered at once.
        let long = alloc::vec![b'a'; 60];
        let add_long = op(
            "s",
            CollectionOp::Set(SetOp::Add {
                members: alloc::vec![long],
            }),
        );
        apply_op(&mut store, &add_long, &limits, 0).unwrap();
        let pattern = b"*a".repeat(50).into_iter().chain(*b"b").collect();
        let scan = op(
            "s",
            CollectionOp::Set(SetOp::Scan {
                pattern: Some(pattern),
            }),
        );
        assert!(matches!(
            apply_op(&mut store, &scan, &limits, 0),
            Ok(KvResult::Reply(_))
        ));
        assert!(glob_match(&alloc::vec![b'*'; 100_000], b"x"));
        // Far more members than a set may hold: refused before any work per member.
        let many: Vec<Bytes> = (0..200_000u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let flood = op("t", CollectionOp::Set(SetOp::Add { members: many }));
        assert!(matches!(
            apply_op(&mut store, &flood, &limits, 0),
            Err(KvError::TooManyItems { .. })
        ));
        // A store that fails keeps its destination.
        let big: Vec<Bytes> = (0..600u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let big2: Vec<Bytes> = (600..1_200u32).map(|i| i.to_le_bytes().to_vec()).collect();
        for (k, m) in [("{x}1", big), ("{x}2", big2)] {
            apply_op(
                &mut store,
                &op(k, CollectionOp::Set(SetOp::Add { members: m })),
                &limits,
                0,
            )
            .unwrap();
        }
        apply_op(
            &mut store,
            &op(
                "{x}d",
                CollectionOp::Set(SetOp::Add {
                    members: alloc::vec![b"keep".to_vec()],
                }),
            ),
            &limits,
            0,
        )
        .unwrap();
        let union = KvOp::SetCombine {
            keys: alloc::vec![b"{x}1".to_vec(), b"{x}2".to_vec()],
            how: Combine::Union,
            store: Some(b"{x}d".to_vec()),
        };
        assert!(apply_op(&mut store, &union, &limits, 0).is_err());
        assert!(
            store.get(b"{x}d").is_some(),
            "the destination was destroyed"
        );
        // A damaged list (a header and no items) moves nothing instead of panicking.
        store.insert(b"{l}a".to_vec(), alloc::vec![TYPE_LIST, 0xff]);
        let lmove = KvOp::ListMove {
            from: b"{l}a".to_vec(),
            to: b"{l}b".to_vec(),
            from_left: true,
            to_left: true,
        };
        assert_eq!(
            apply_op(&mut store, &lmove, &limits, 0),
            Ok(KvResult::Reply(DataReply::Nil))
        );
    }
}
