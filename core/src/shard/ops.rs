//! Key-value operations, their results, and the limits they are checked against

use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

use super::data::{self, CollectionOp, Combine, Ctx, DataReply};
use super::store::ShardStore;
use super::value::{TYPE_STRING, encode, live, string_from};

/// Bytes, as keys and values are stored
pub type Bytes = Vec<u8>;

/// One operation on one key
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvOp {
    /// Read the value
    Get {
        /// The key
        key: Bytes,
    },
    /// Set the value
    Put {
        /// The key
        key: Bytes,
        /// The new value
        value: Bytes,
    },
    /// Remove the key
    Delete {
        /// The key
        key: Bytes,
    },
    /// Append to the value (an absent key counts as empty)
    Append {
        /// The key
        key: Bytes,
        /// The bytes to append
        value: Bytes,
    },
    /// Add `by` to the value read as a decimal signed 64-bit integer (absent counts as 0)
    Incr {
        /// The key
        key: Bytes,
        /// The amount (negative to decrement)
        by: i64,
    },
    /// Set the value to `new` only if it currently is `expected` (`None`: absent)
    Cas {
        /// The key
        key: Bytes,
        /// The value required now
        expected: Option<Bytes>,
        /// The value to set
        new: Bytes,
    },
    /// Set several keys at once, all or none; every key must be in the same shard
    MultiSet {
        /// The keys and their new values (at least one)
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// Read several keys at once; every key must be in the same shard
    MultiGet {
        /// The keys (at least one)
        keys: Vec<Bytes>,
    },
    /// Set the value if `condition` holds, answering the previous value (Redis `SET` with
    /// `NX`, `XX` and `GET`)
    Set {
        /// The key
        key: Bytes,
        /// The new value
        value: Bytes,
        /// When to write
        condition: SetCondition,
        /// The time to live it gets (`EX`, `PX`, `EXAT`, `PXAT`, `KEEPTTL`; none: cleared)
        expiry: Expiry,
    },
    /// Set when the key expires, if `condition` holds (`EXPIRE`, `PEXPIRE`, `EXPIREAT`,
    /// `PEXPIREAT`); a time not after the request's stamp deletes the key
    Expire {
        /// The key
        key: Bytes,
        /// The new expiry time ([`Expiry::In`] or [`Expiry::At`])
        expiry: Expiry,
        /// `NX`, `XX`, `GT` or `LT`
        condition: ExpireCondition,
    },
    /// Remove the key's time to live (`PERSIST`)
    Persist {
        /// The key
        key: Bytes,
    },
    /// Read the key's expiry (`TTL`, `PTTL`, `EXPIRETIME`, `PEXPIRETIME`)
    ReadExpiry {
        /// The key
        key: Bytes,
    },
    /// Read and remove the value (`GETDEL`)
    GetDel {
        /// The key
        key: Bytes,
    },
    /// Read the value and change its time to live (`GETEX`; [`Expiry::Keep`] changes
    /// nothing, [`Expiry::Clear`] is `PERSIST`)
    GetEx {
        /// The key
        key: Bytes,
        /// The change
        expiry: Expiry,
    },
    /// Overwrite the value from byte `offset` on, padding with zero bytes (`SETRANGE`)
    SetRange {
        /// The key
        key: Bytes,
        /// Where the new bytes go
        offset: u64,
        /// The new bytes
        value: Bytes,
    },
    /// The type of the key's value (`TYPE`)
    Type {
        /// The key
        key: Bytes,
    },
    /// An operation on the hash, set or list at `key` (see [`data`](super::data))
    Collection {
        /// The key
        key: Bytes,
        /// The operation
        op: CollectionOp,
    },
    /// `SINTER`, `SUNION`, `SDIFF` over `keys`, stored at `store` if given (every key in one
    /// shard)
    SetCombine {
        /// The sets
        keys: Vec<Bytes>,
        /// How they combine
        how: Combine,
        /// Where the result goes (the `STORE` forms)
        store: Option<Bytes>,
    },
    /// A transaction (`MULTI` ... `EXEC`): unless a `watched` key's stored value changed
    /// (its fingerprint differs), every operation applies, in order, as one; each answers
    /// on its own, errors included (as in Redis, an error does not undo the others). Every
    /// key in one shard.
    Multi {
        /// The operations
        ops: Vec<KvOp>,
        /// Keys and the fingerprint of their value when `WATCH` read it (`None`: absent)
        watched: Vec<(Bytes, Option<u64>)>,
    },
    /// The fingerprint of the key's live value (`WATCH`)
    Watch {
        /// The key
        key: Bytes,
    },
    /// Up to `count` keys of the shard `route` is in, in key order after `after` (`SCAN`,
    /// `KEYS`, `RANDOMKEY`, `CLUSTER GETKEYSINSLOT`): the live ones that match every filter
    Scan {
        /// A key of the shard to scan (it routes the operation; it need not exist)
        route: Bytes,
        /// Where the previous call stopped (`None`: from the first key)
        after: Option<Bytes>,
        /// Keys to look at, at most (capped at [`SCAN_COUNT_MAX`])
        count: u32,
        /// Only keys matching this glob (`MATCH`)
        pattern: Option<Bytes>,
        /// Only keys of this type (`TYPE`: `string`, `hash`, `set`, `list`)
        kind: Option<Bytes>,
        /// Only keys in this slot
        slot: Option<u16>,
    },
    /// Remove every key of the shard `route` is in (`FLUSHALL`, one shard at a time)
    Flush {
        /// A key of the shard to empty
        route: Bytes,
    },
    /// Rename `from` to `to`, keeping its expiry (`RENAME`; `RENAMENX` with `only_if_absent`)
    Rename {
        /// The key renamed
        from: Bytes,
        /// Its new name
        to: Bytes,
        /// Only if `to` does not exist
        only_if_absent: bool,
    },
    /// Copy `from`'s value and expiry to `to` (`COPY`, with `REPLACE` to overwrite)
    Copy {
        /// The source
        from: Bytes,
        /// The destination
        to: Bytes,
        /// Overwrite an existing destination
        replace: bool,
    },
    /// Set every key, only if none exists (`MSETNX`; every key in one shard)
    MultiSetIfNone {
        /// The keys and their values
        pairs: Vec<(Bytes, Bytes)>,
    },
    /// Add a float to the value (`INCRBYFLOAT`), the amount as the client wrote it
    IncrFloat {
        /// The key
        key: Bytes,
        /// The amount
        by: Bytes,
    },
    /// Move an element from one list to another (`LMOVE`, `RPOPLPUSH`; both in one shard)
    ListMove {
        /// The source
        from: Bytes,
        /// The destination
        to: Bytes,
        /// Pop the source's head (else its tail)
        from_left: bool,
        /// Push at the destination's head (else its tail)
        to_left: bool,
    },
}

/// The time to live a write gives its key
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Expiry {
    /// None: the key lives until deleted (a plain `SET` clears any time to live)
    #[default]
    Clear,
    /// Whatever it had (`KEEPTTL`)
    Keep,
    /// This many milliseconds after the request's stamp (`EX`, `PX`)
    In(u64),
    /// At this Unix time in milliseconds (`EXAT`, `PXAT`)
    At(u64),
}

impl Expiry {
    /// The expiry time this gives a key written at `now_ms` that had `current`
    pub fn resolve(self, now_ms: u64, current: Option<u64>) -> Option<u64> {
        match self {
            Expiry::Clear => None,
            Expiry::Keep => current,
            Expiry::In(ms) => Some(now_ms.saturating_add(ms)),
            Expiry::At(at) => Some(at),
        }
    }
}

/// When an [`KvOp::Expire`] applies
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpireCondition {
    /// Always
    #[default]
    Always,
    /// Only if the key has no expiry (`NX`)
    IfNone,
    /// Only if the key has one (`XX`)
    IfSome,
    /// Only if the new time is later (`GT`; no expiry counts as forever)
    IfLater,
    /// Only if the new time is earlier (`LT`; no expiry counts as forever)
    IfEarlier,
}

/// When a [`KvOp::Set`] writes
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SetCondition {
    /// Always
    Always,
    /// Only if the key is absent (`NX`)
    IfAbsent,
    /// Only if the key is present (`XX`)
    IfPresent,
}

impl KvOp {
    /// The key the operation touches (the first one for several keys; empty when none)
    pub fn key(&self) -> &[u8] {
        match self {
            KvOp::MultiSet { pairs } | KvOp::MultiSetIfNone { pairs } => {
                pairs.first().map_or(&[][..], |(k, _)| k)
            }
            KvOp::MultiGet { keys } => keys.first().map_or(&[][..], |k| k),
            KvOp::Get { key }
            | KvOp::Put { key, .. }
            | KvOp::Delete { key }
            | KvOp::Append { key, .. }
            | KvOp::Incr { key, .. }
            | KvOp::Cas { key, .. }
            | KvOp::Set { key, .. }
            | KvOp::Expire { key, .. }
            | KvOp::Persist { key }
            | KvOp::ReadExpiry { key }
            | KvOp::GetDel { key }
            | KvOp::GetEx { key, .. }
            | KvOp::SetRange { key, .. }
            | KvOp::Type { key }
            | KvOp::Watch { key }
            | KvOp::Scan { route: key, .. }
            | KvOp::Flush { route: key }
            | KvOp::Rename { from: key, .. }
            | KvOp::Copy { from: key, .. }
            | KvOp::IncrFloat { key, .. }
            | KvOp::Collection { key, .. }
            | KvOp::ListMove { from: key, .. } => key,
            KvOp::SetCombine { keys, store, .. } => store
                .as_deref()
                .or(keys.first().map(Vec::as_slice))
                .unwrap_or(&[]),
            KvOp::Multi { ops, watched } => ops
                .first()
                .map(KvOp::key)
                .or(watched.first().map(|(k, _)| k.as_slice()))
                .unwrap_or(&[]),
        }
    }

    /// Every key the operation touches
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            KvOp::MultiSet { pairs } | KvOp::MultiSetIfNone { pairs } => {
                pairs.iter().map(|(k, _)| k.as_slice()).collect()
            }
            KvOp::Rename { from, to, .. } | KvOp::Copy { from, to, .. } => {
                alloc::vec![from.as_slice(), to.as_slice()]
            }
            KvOp::MultiGet { keys } => keys.iter().map(Vec::as_slice).collect(),
            KvOp::SetCombine { keys, store, .. } => {
                store.iter().chain(keys.iter()).map(Vec::as_slice).collect()
            }
            KvOp::ListMove { from, to, .. } => alloc::vec![from.as_slice(), to.as_slice()],
            KvOp::Multi { ops, watched } => ops
                .iter()
                .flat_map(KvOp::keys)
                .chain(watched.iter().map(|(k, _)| k.as_slice()))
                .collect(),
            other => alloc::vec![other.key()],
        }
    }

    /// Whether the operation only reads
    pub fn is_read(&self) -> bool {
        match self {
            KvOp::Get { .. }
            | KvOp::MultiGet { .. }
            | KvOp::ReadExpiry { .. }
            | KvOp::Type { .. }
            | KvOp::Watch { .. }
            | KvOp::Scan { .. } => true,
            KvOp::Collection { op, .. } => op.is_read(),
            KvOp::SetCombine { store, .. } => store.is_none(),
            _ => false,
        }
    }
}

/// The outcome of an operation that was applied
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvResult {
    /// The value read (`None`: absent)
    Value(Option<Bytes>),
    /// A put was applied
    Done,
    /// Whether a delete removed something
    Deleted(bool),
    /// The value's length after an append
    Length(u64),
    /// The value after an increment
    Integer(i64),
    /// Whether a compare-and-swap swapped, and the value it found
    Swapped {
        /// The swap happened
        swapped: bool,
        /// The value before the operation
        previous: Option<Bytes>,
    },
    /// The values of a [`KvOp::MultiGet`], in the order of its keys (`None`: absent)
    Values(Vec<Option<Bytes>>),
    /// Whether the operation changed something ([`KvOp::Expire`], [`KvOp::Persist`])
    Flag(bool),
    /// A reply shaped as Redis shapes it (collections, `TYPE`)
    Reply(DataReply),
    /// Each operation's outcome of a [`KvOp::Multi`] (`None`: a watched key changed, nothing
    /// applied)
    Many(Option<Vec<Result<KvResult, KvError>>>),
    /// A value's fingerprint ([`KvOp::Watch`]; `None`: absent)
    Fingerprint(Option<u64>),
    /// What a [`KvOp::Scan`] found
    Scanned {
        /// The last key looked at, to go on from (`None`: the shard is done)
        next: Option<Bytes>,
        /// The keys that matched
        keys: Vec<Bytes>,
    },
    /// A key's expiry as of `now_ms` ([`KvOp::ReadExpiry`])
    Expiry {
        /// The key exists
        exists: bool,
        /// When it expires, in Unix milliseconds (`None`: never)
        expires_at_ms: Option<u64>,
        /// The time the answer was decided at, in Unix milliseconds
        now_ms: u64,
    },
    /// Whether a [`KvOp::Set`] wrote, and the value it found
    Set {
        /// The condition held and the value was written
        written: bool,
        /// The value before the operation
        previous: Option<Bytes>,
    },
}

/// Why an operation was not applied (the store is unchanged)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KvError {
    /// The key is longer than the limit
    KeyTooLarge {
        /// Its size in bytes
        size_bytes: u32,
        /// The limit in bytes
        max_bytes: u32,
    },
    /// The value (or the value after an append) would be longer than the limit
    ValueTooLarge {
        /// The size it would have, in bytes
        size_bytes: u64,
        /// The limit in bytes
        max_bytes: u32,
    },
    /// `Incr` on a value that is not a decimal 64-bit integer
    NotAnInteger,
    /// `Incr` would overflow a signed 64-bit integer
    Overflow,
    /// This client's session in the shard expired (or never existed): results of its earlier
    /// requests are forgotten, so it must start a new session rather than retry
    SessionExpired,
    /// An older request of the session than the last one applied; its answer is gone
    StaleRequest,
    /// A multi-key operation named keys of different shards, or no key at all
    CrossShard,
    /// The key holds a value of another type
    WrongType,
    /// A hash field's value is not an integer (`HINCRBY`)
    HashNotInteger,
    /// A hash field's value is not a float (`HINCRBYFLOAT`)
    HashNotFloat,
    /// The amount or the value is not a valid float
    NotAFloat,
    /// The result would be NaN or infinity
    NanOrInfinity,
    /// The key does not exist (`LSET`)
    NoSuchKey,
    /// The index is out of range (`LSET`)
    IndexOutOfRange,
    /// `COPY` of a key onto itself
    SameObject,
    /// The resulting score is not a number (`ZINCRBY` of infinities)
    NotANumber,
    /// A `MATCH` pattern longer than the limit
    PatternTooLong {
        /// The limit
        max_bytes: u32,
    },
    /// A collection would hold more items than the limit
    TooManyItems {
        /// The limit
        max_items: u32,
    },
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::KeyTooLarge {
                size_bytes,
                max_bytes,
            } => {
                write!(
                    f,
                    "key of {size_bytes} bytes exceeds the limit of {max_bytes} bytes"
                )
            }
            KvError::ValueTooLarge {
                size_bytes,
                max_bytes,
            } => {
                write!(
                    f,
                    "value of {size_bytes} bytes exceeds the limit of {max_bytes} bytes"
                )
            }
            KvError::NotAnInteger => f.write_str("value is not an integer or out of range"),
            KvError::Overflow => f.write_str("increment or decrement would overflow"),
            KvError::SessionExpired => {
                f.write_str("session expired: start a new session (the request may not be retried)")
            }
            KvError::StaleRequest => {
                f.write_str("stale request: a newer one of this session was applied")
            }
            KvError::CrossShard => {
                f.write_str("a multi-key operation must name keys of one shard, at least one")
            }
            KvError::WrongType => {
                f.write_str("Operation against a key holding the wrong kind of value")
            }
            KvError::HashNotInteger => f.write_str("hash value is not an integer"),
            KvError::HashNotFloat => f.write_str("hash value is not a float"),
            KvError::NotAFloat => f.write_str("value is not a valid float"),
            KvError::NanOrInfinity => f.write_str("increment would produce NaN or Infinity"),
            KvError::NoSuchKey => f.write_str("no such key"),
            KvError::IndexOutOfRange => f.write_str("index out of range"),
            KvError::SameObject => f.write_str("source and destination objects are the same"),
            KvError::NotANumber => f.write_str("resulting score is not a number (NaN)"),
            KvError::PatternTooLong { max_bytes } => {
                write!(f, "a MATCH pattern is at most {max_bytes} bytes")
            }
            KvError::TooManyItems { max_items } => {
                write!(f, "a collection holds at most {max_items} items")
            }
        }
    }
}

impl core::error::Error for KvError {}

/// Keys one [`KvOp::Scan`] looks at, at most, whatever count it asks for: a scan is served on
/// the node's loop, so each call stays small
pub const SCAN_COUNT_MAX: u32 = 10_000;

/// Limits on what a store accepts, in bytes
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvLimits {
    /// Longest key
    pub max_key_bytes: u32,
    /// Longest value (a collection's items count together)
    pub max_value_bytes: u32,
    /// Most fields of a hash, members of a set, elements of a list
    pub max_collection_items: u32,
}

impl Default for KvLimits {
    fn default() -> Self {
        KvLimits {
            max_key_bytes: 64 * 1024,
            max_value_bytes: 1024 * 1024,
            max_collection_items: 65_536,
        }
    }
}

/// Applies `op` to `store` within `limits`, at `now_ms` (the request's stamp, Unix
/// milliseconds): keys whose expiry is not after it are absent
pub fn apply_op<S: ShardStore>(
    store: &mut S,
    op: &KvOp,
    limits: &KvLimits,
    now_ms: u64,
) -> Result<KvResult, KvError> {
    apply_op_seeded(store, op, limits, now_ms, now_ms)
}

/// [`apply_op`] with `seed` for the operation's random choices (`SPOP`): replicas that apply
/// one request must pass the same seed
pub fn apply_op_seeded<S: ShardStore>(
    store: &mut S,
    op: &KvOp,
    limits: &KvLimits,
    now_ms: u64,
    seed: u64,
) -> Result<KvResult, KvError> {
    for key in op.keys() {
        if key.len() > limits.max_key_bytes as usize {
            return Err(KvError::KeyTooLarge {
                size_bytes: u32::try_from(key.len()).unwrap_or(u32::MAX),
                max_bytes: limits.max_key_bytes,
            });
        }
    }
    let check_value = |len: usize| {
        if len > limits.max_value_bytes as usize {
            Err(KvError::ValueTooLarge {
                size_bytes: len as u64,
                max_bytes: limits.max_value_bytes,
            })
        } else {
            Ok(())
        }
    };
    // The live value of a key of any type: its type, bytes and expiry
    let any = |store: &S, key: &[u8]| {
        live(store.get(key), now_ms).map(|v| (v.kind, v.payload.to_vec(), v.expires_at_ms))
    };
    // The live string at a key: its bytes and expiry; another type is an error
    let read = |store: &S, key: &[u8]| match any(store, key) {
        None => Ok(None),
        Some((kind, _, _)) if kind != TYPE_STRING => Err(KvError::WrongType),
        Some((_, payload, at)) => Ok(Some((payload, at))),
    };
    let value = |store: &S, key: &[u8]| read(store, key).map(|found| found.map(|(v, _)| v));
    // Writes `payload` as `key`'s value of type `kind` expiring at `at`; an expiry not after
    // now deletes
    let write_kind = |store: &mut S, key: &[u8], kind: u8, payload: Vec<u8>, at: Option<u64>| {
        if at.is_some_and(|at| at <= now_ms) {
            store.remove(key);
        } else if kind == TYPE_STRING {
            store.insert(key.to_vec(), string_from(payload, at));
        } else {
            store.insert(key.to_vec(), encode(kind, &payload, at));
        }
    };
    let write = |store: &mut S, key: &[u8], payload: Vec<u8>, at: Option<u64>| {
        write_kind(store, key, TYPE_STRING, payload, at);
    };
    fn ctx_of<'a, S>(store: &'a mut S, limits: &'a KvLimits, now_ms: u64, seed: u64) -> Ctx<'a, S> {
        Ctx {
            store,
            limits,
            now_ms,
            seed,
        }
    }
    match op {
        KvOp::Get { key } => Ok(KvResult::Value(value(store, key)?)),
        KvOp::Put { key, value } => {
            check_value(value.len())?;
            store.insert(key.clone(), string_from(value.clone(), None));
            Ok(KvResult::Done)
        }
        KvOp::Delete { key } => {
            let was_live = live(store.get(key), now_ms).is_some();
            store.remove(key);
            Ok(KvResult::Deleted(was_live))
        }
        KvOp::Append { key, value } => {
            let (mut current, at) = read(store, key)?.unwrap_or_default();
            check_value(current.len() + value.len())?;
            current.extend_from_slice(value);
            let len = current.len() as u64;
            write(store, key, current, at);
            Ok(KvResult::Length(len))
        }
        KvOp::Incr { key, by } => {
            let (current, at) = match read(store, key)? {
                None => (0, None),
                Some((v, at)) => (parse_i64(&v).ok_or(KvError::NotAnInteger)?, at),
            };
            let next = current.checked_add(*by).ok_or(KvError::Overflow)?;
            write(store, key, alloc::format!("{next}").into_bytes(), at);
            Ok(KvResult::Integer(next))
        }
        KvOp::Cas { key, expected, new } => {
            check_value(new.len())?;
            let previous = value(store, key)?;
            let swapped = previous == *expected;
            if swapped {
                write(store, key, new.clone(), None);
            }
            Ok(KvResult::Swapped { swapped, previous })
        }
        KvOp::MultiSet { pairs } => {
            if pairs.is_empty() {
                return Err(KvError::CrossShard);
            }
            // All or none: check every value before writing any.
            for (_, value) in pairs {
                check_value(value.len())?;
            }
            for (key, value) in pairs {
                store.insert(key.clone(), string_from(value.clone(), None));
            }
            Ok(KvResult::Done)
        }
        KvOp::MultiGet { keys } => {
            if keys.is_empty() {
                return Err(KvError::CrossShard);
            }
            // As in Redis, a key of another type reads as nil here.
            Ok(KvResult::Values(
                keys.iter()
                    .map(|k| value(store, k).ok().flatten())
                    .collect(),
            ))
        }
        KvOp::Set {
            key,
            value,
            condition,
            expiry,
        } => {
            check_value(value.len())?;
            // SET replaces a value of any type (one of another type has no previous string).
            let (exists, previous, current_at) = match any(store, key) {
                None => (false, None, None),
                Some((TYPE_STRING, v, at)) => (true, Some(v), at),
                Some((_, _, at)) => (true, None, at),
            };
            let written = match condition {
                SetCondition::Always => true,
                SetCondition::IfAbsent => !exists,
                SetCondition::IfPresent => exists,
            };
            if written {
                let at = expiry.resolve(now_ms, current_at);
                write(store, key, value.clone(), at);
            }
            Ok(KvResult::Set { written, previous })
        }
        KvOp::Expire {
            key,
            expiry,
            condition,
        } => {
            let Some((kind, payload, current)) = any(store, key) else {
                return Ok(KvResult::Flag(false));
            };
            let at = expiry.resolve(now_ms, current);
            let forever = u64::MAX;
            let holds = match condition {
                ExpireCondition::Always => true,
                ExpireCondition::IfNone => current.is_none(),
                ExpireCondition::IfSome => current.is_some(),
                ExpireCondition::IfLater => {
                    current.is_some() && at.unwrap_or(forever) > current.unwrap_or(forever)
                }
                ExpireCondition::IfEarlier => at.unwrap_or(forever) < current.unwrap_or(forever),
            };
            if holds {
                write_kind(store, key, kind, payload, at);
            }
            Ok(KvResult::Flag(holds))
        }
        KvOp::Persist { key } => match any(store, key) {
            Some((kind, payload, Some(_))) => {
                write_kind(store, key, kind, payload, None);
                Ok(KvResult::Flag(true))
            }
            _ => Ok(KvResult::Flag(false)),
        },
        KvOp::ReadExpiry { key } => {
            let found = any(store, key);
            Ok(KvResult::Expiry {
                exists: found.is_some(),
                expires_at_ms: found.and_then(|(_, _, at)| at),
                now_ms,
            })
        }
        KvOp::GetDel { key } => {
            let found = value(store, key)?;
            store.remove(key);
            Ok(KvResult::Value(found))
        }
        KvOp::GetEx { key, expiry } => {
            let found = read(store, key)?;
            if let Some((payload, current)) = &found
                && *expiry != Expiry::Keep
            {
                let at = expiry.resolve(now_ms, *current);
                write(store, key, payload.clone(), at);
            }
            Ok(KvResult::Value(found.map(|(v, _)| v)))
        }
        KvOp::SetRange { key, offset, value } => {
            let (mut current, at) = read(store, key)?.unwrap_or_default();
            if value.is_empty() {
                return Ok(KvResult::Length(current.len() as u64));
            }
            let end = offset.saturating_add(value.len() as u64);
            if end > u64::from(limits.max_value_bytes) {
                return Err(KvError::ValueTooLarge {
                    size_bytes: end,
                    max_bytes: limits.max_value_bytes,
                });
            }
            let (offset, end) = (*offset as usize, end as usize);
            if current.len() < end {
                current.resize(end, 0);
            }
            current[offset..end].copy_from_slice(value);
            let len = current.len() as u64;
            write(store, key, current, at);
            Ok(KvResult::Length(len))
        }
        KvOp::Type { key } => Ok(KvResult::Reply(DataReply::Status(
            data::type_of(store, key, now_ms).as_bytes().to_vec(),
        ))),
        KvOp::Collection { key, op } => {
            data::apply(&mut ctx_of(store, limits, now_ms, seed), key, op).map(KvResult::Reply)
        }
        KvOp::SetCombine {
            keys,
            how,
            store: dest,
        } => {
            if keys.is_empty() {
                return Err(KvError::CrossShard);
            }
            data::set::combine(
                &mut ctx_of(store, limits, now_ms, seed),
                keys,
                *how,
                dest.as_deref(),
            )
            .map(KvResult::Reply)
        }
        KvOp::ListMove {
            from,
            to,
            from_left,
            to_left,
        } => data::list::move_element(
            &mut ctx_of(store, limits, now_ms, seed),
            from,
            to,
            *from_left,
            *to_left,
        )
        .map(KvResult::Reply),
        KvOp::Watch { key } => Ok(KvResult::Fingerprint(fingerprint(store, key, now_ms))),
        KvOp::Scan {
            after,
            count,
            pattern,
            kind,
            slot,
            ..
        } => {
            data::check_pattern(pattern.as_deref())?;
            let count = (*count).clamp(1, SCAN_COUNT_MAX) as usize;
            let mut keys = Vec::new();
            let mut last = None;
            for (key, stored) in store.range_from(after.as_deref()).take(count) {
                last = Some(key);
                let Some(v) = live(Some(stored), now_ms) else {
                    continue;
                };
                let wanted = pattern.as_ref().is_none_or(|p| data::glob_match(p, key))
                    && kind
                        .as_ref()
                        .is_none_or(|t| data::type_name(v.kind).as_bytes() == t.as_slice())
                    && slot.is_none_or(|s| super::key_slot(key) == s);
                if wanted {
                    keys.push(key.to_vec());
                }
            }
            let more = last.is_some_and(|l| store.range_from(Some(l)).next().is_some());
            Ok(KvResult::Scanned {
                next: if more { last.map(<[u8]>::to_vec) } else { None },
                keys,
            })
        }
        // Emptied in ShardState::apply, which hands the old data off the node's loop; here
        // (a store without a shard around it) key by key.
        KvOp::Flush { .. } => {
            let all: Vec<Bytes> = store.range_from(None).map(|(k, _)| k.to_vec()).collect();
            for k in all {
                store.remove(&k);
            }
            Ok(KvResult::Done)
        }
        KvOp::Rename {
            from,
            to,
            only_if_absent,
        } => {
            let Some((kind, payload, at)) = any(store, from) else {
                return Err(KvError::NoSuchKey);
            };
            if *only_if_absent && any(store, to).is_some() {
                return Ok(KvResult::Flag(false));
            }
            if from != to {
                store.remove(from);
                write_kind(store, to, kind, payload, at);
            }
            Ok(KvResult::Flag(true))
        }
        KvOp::Copy { from, to, replace } => {
            if from == to {
                return Err(KvError::SameObject);
            }
            let Some((kind, payload, at)) = any(store, from) else {
                return Ok(KvResult::Flag(false));
            };
            if !replace && any(store, to).is_some() {
                return Ok(KvResult::Flag(false));
            }
            write_kind(store, to, kind, payload, at);
            Ok(KvResult::Flag(true))
        }
        KvOp::MultiSetIfNone { pairs } => {
            if pairs.is_empty() {
                return Err(KvError::CrossShard);
            }
            for (_, value) in pairs {
                check_value(value.len())?;
            }
            if pairs.iter().any(|(k, _)| any(store, k).is_some()) {
                return Ok(KvResult::Flag(false));
            }
            for (key, value) in pairs {
                store.insert(key.clone(), string_from(value.clone(), None));
            }
            Ok(KvResult::Flag(true))
        }
        KvOp::IncrFloat { key, by } => {
            // As Redis checks: the key's type, its value, then the amount.
            let (current, at) = match read(store, key)? {
                None => (0.0, None),
                Some((v, at)) => (parse_float(&v).ok_or(KvError::NotAFloat)?, at),
            };
            let by = parse_float(by).ok_or(KvError::NotAFloat)?;
            let next = current + by;
            if !next.is_finite() {
                return Err(KvError::NanOrInfinity);
            }
            let text = format_float(next).into_bytes();
            write(store, key, text.clone(), at);
            Ok(KvResult::Value(Some(text)))
        }
        KvOp::Multi { ops, watched } => {
            if watched
                .iter()
                .any(|(key, seen)| fingerprint(store, key, now_ms) != *seen)
            {
                return Ok(KvResult::Many(None));
            }
            let mut results = Vec::with_capacity(ops.len());
            for (i, op) in ops.iter().enumerate() {
                let seed = seed.wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                // One level of nesting (a multi-key command inside a transaction), no more.
                let nested_too_deep = matches!(op, KvOp::Multi { ops, .. }
                    if ops.iter().any(|o| matches!(o, KvOp::Multi { .. })));
                results.push(if nested_too_deep {
                    Err(KvError::CrossShard)
                } else {
                    apply_op_seeded(store, op, limits, now_ms, seed)
                });
            }
            Ok(KvResult::Many(Some(results)))
        }
    }
}

/// A decimal signed 64-bit integer, as Redis accepts them (no spaces, no `+`, no leading zeros
/// except "0" itself)
pub(crate) fn parse_i64(bytes: &[u8]) -> Option<i64> {
    let text = core::str::from_utf8(bytes).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && text != "-0";
    if !canonical {
        return None;
    }
    text.parse().ok()
}

/// The fingerprint of `key`'s live value (FNV-1a of its stored bytes), `None` when absent
fn fingerprint<S: ShardStore>(store: &S, key: &[u8], now_ms: u64) -> Option<u64> {
    let stored = store.get(key)?;
    live(Some(stored), now_ms)?;
    let mut hash = crate::group::Fnv64::default();
    hash.write(stored);
    Some(hash.finish())
}

/// A float as Redis accepts one: decimal or exponent notation, `inf`, `-inf` (not NaN)
pub(crate) fn parse_float(bytes: &[u8]) -> Option<f64> {
    let text = core::str::from_utf8(bytes).ok()?;
    if text.is_empty() || text.trim() != text {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    let v: f64 = match lower.as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ if lower.contains("inf") || lower.contains("nan") => return None,
        _ => text.parse().ok()?,
    };
    (!v.is_nan()).then_some(v)
}

/// A float as Redis writes one: the shortest text that reads back the same, integers
/// without a fraction
pub(crate) fn format_float(v: f64) -> alloc::string::String {
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    alloc::format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::MemStore;
    use alloc::vec;

    fn k(s: &str) -> Bytes {
        s.as_bytes().to_vec()
    }

    #[test]
    fn multi_set_is_all_or_none_and_multi_get_answers_in_key_order() {
        let mut store = MemStore::default();
        let l = KvLimits {
            max_key_bytes: 8,
            max_value_bytes: 4,
            max_collection_items: 8,
        };
        let set = KvOp::MultiSet {
            pairs: vec![(k("a"), k("1")), (k("b"), k("2"))],
        };
        assert_eq!(apply_op(&mut store, &set, &l, 0), Ok(KvResult::Done));
        let too_big = KvOp::MultiSet {
            pairs: vec![(k("a"), k("9")), (k("c"), k("12345"))],
        };
        assert!(matches!(
            apply_op(&mut store, &too_big, &l, 0),
            Err(KvError::ValueTooLarge { .. })
        ));
        let get = KvOp::MultiGet {
            keys: vec![k("b"), k("c"), k("a")],
        };
        assert_eq!(
            apply_op(&mut store, &get, &l, 0),
            Ok(KvResult::Values(vec![Some(k("2")), None, Some(k("1"))])),
            "the failed MultiSet wrote nothing"
        );
        let long_key = KvOp::MultiGet {
            keys: vec![k("a"), k("123456789")],
        };
        assert!(matches!(
            apply_op(&mut store, &long_key, &l, 0),
            Err(KvError::KeyTooLarge { .. })
        ));
        let empty = KvOp::MultiSet { pairs: vec![] };
        assert_eq!(
            apply_op(&mut store, &empty, &l, 0),
            Err(KvError::CrossShard)
        );
        assert!(get.is_read() && !set.is_read());
        assert_eq!(get.keys(), vec![&b"b"[..], b"c", b"a"]);
    }

    #[test]
    fn set_writes_only_when_its_condition_holds_and_answers_the_previous_value() {
        let mut store = MemStore::default();
        let l = KvLimits::default();
        let mut set = |value: &str, condition| {
            let op = KvOp::Set {
                key: k("s"),
                value: k(value),
                condition,
                expiry: Expiry::Clear,
            };
            apply_op(&mut store, &op, &l, 0)
        };
        let result = |written, previous: Option<&str>| {
            Ok(KvResult::Set {
                written,
                previous: previous.map(k),
            })
        };
        assert_eq!(set("a", SetCondition::IfPresent), result(false, None));
        assert_eq!(set("b", SetCondition::IfAbsent), result(true, None));
        assert_eq!(set("c", SetCondition::IfAbsent), result(false, Some("b")));
        assert_eq!(set("d", SetCondition::IfPresent), result(true, Some("b")));
        assert_eq!(set("e", SetCondition::Always), result(true, Some("d")));
        let big = KvLimits {
            max_key_bytes: 8,
            max_value_bytes: 1,
            max_collection_items: 8,
        };
        let op = KvOp::Set {
            key: k("s"),
            value: k("too long"),
            condition: SetCondition::Always,
            expiry: Expiry::Clear,
        };
        assert!(matches!(
            apply_op(&mut MemStore::default(), &op, &big, 0),
            Err(KvError::ValueTooLarge { .. })
        ));
    }

    #[test]
    fn every_operation_and_its_result() {
        let mut store = MemStore::default();
        let l = KvLimits::default();
        let mut run = |op: KvOp| apply_op(&mut store, &op, &l, 0);
        assert_eq!(run(KvOp::Get { key: k("a") }), Ok(KvResult::Value(None)));
        assert_eq!(
            run(KvOp::Put {
                key: k("a"),
                value: k("1")
            }),
            Ok(KvResult::Done)
        );
        assert_eq!(
            run(KvOp::Append {
                key: k("a"),
                value: k("23")
            }),
            Ok(KvResult::Length(3))
        );
        assert_eq!(
            run(KvOp::Incr {
                key: k("a"),
                by: -23
            }),
            Ok(KvResult::Integer(100))
        );
        assert_eq!(
            run(KvOp::Get { key: k("a") }),
            Ok(KvResult::Value(Some(k("100"))))
        );
        assert_eq!(
            run(KvOp::Cas {
                key: k("a"),
                expected: Some(k("99")),
                new: k("x")
            }),
            Ok(KvResult::Swapped {
                swapped: false,
                previous: Some(k("100"))
            })
        );
        assert_eq!(
            run(KvOp::Cas {
                key: k("a"),
                expected: Some(k("100")),
                new: k("x")
            }),
            Ok(KvResult::Swapped {
                swapped: true,
                previous: Some(k("100"))
            })
        );
        assert_eq!(
            run(KvOp::Incr { key: k("a"), by: 1 }),
            Err(KvError::NotAnInteger)
        );
        assert_eq!(
            run(KvOp::Delete { key: k("a") }),
            Ok(KvResult::Deleted(true))
        );
        assert_eq!(
            run(KvOp::Delete { key: k("a") }),
            Ok(KvResult::Deleted(false))
        );
        assert_eq!(
            run(KvOp::Cas {
                key: k("b"),
                expected: None,
                new: k("new")
            }),
            Ok(KvResult::Swapped {
                swapped: true,
                previous: None
            })
        );
        assert_eq!(
            run(KvOp::Incr {
                key: k("n"),
                by: i64::MAX
            }),
            Ok(KvResult::Integer(i64::MAX))
        );
        assert_eq!(
            run(KvOp::Incr { key: k("n"), by: 1 }),
            Err(KvError::Overflow)
        );
    }

    #[test]
    fn limits_are_enforced_and_leave_the_store_unchanged() {
        let mut store = MemStore::default();
        let l = KvLimits {
            max_key_bytes: 4,
            max_value_bytes: 5,
            max_collection_items: 8,
        };
        assert_eq!(
            apply_op(
                &mut store,
                &KvOp::Put {
                    key: k("toolong"),
                    value: k("v")
                },
                &l,
                0
            ),
            Err(KvError::KeyTooLarge {
                size_bytes: 7,
                max_bytes: 4
            })
        );
        assert_eq!(
            apply_op(
                &mut store,
                &KvOp::Put {
                    key: k("k"),
                    value: vec![0; 6]
                },
                &l,
                0
            ),
            Err(KvError::ValueTooLarge {
                size_bytes: 6,
                max_bytes: 5
            })
        );
        apply_op(
            &mut store,
            &KvOp::Put {
                key: k("k"),
                value: k("abc"),
            },
            &l,
            0,
        )
        .unwrap();
        assert_eq!(
            apply_op(
                &mut store,
                &KvOp::Append {
                    key: k("k"),
                    value: k("def")
                },
                &l,
                0
            ),
            Err(KvError::ValueTooLarge {
                size_bytes: 6,
                max_bytes: 5
            })
        );
        assert_eq!(
            store.get(b"k"),
            Some(&b"\0abc"[..]),
            "a string without expiry"
        );
    }

    #[test]
    fn integers_parse_like_redis() {
        for ok in [
            "0",
            "-1",
            "42",
            "9223372036854775807",
            "-9223372036854775808",
        ] {
            assert!(parse_i64(ok.as_bytes()).is_some(), "{ok}");
        }
        for bad in [
            "",
            "-",
            "+1",
            "01",
            "-0",
            " 1",
            "1 ",
            "1.0",
            "9223372036854775808",
            "x",
        ] {
            assert!(parse_i64(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    /// Expiry is decided by the time each operation is applied at: a key is there before its
    /// time and absent from it on, for reads and writes alike
    #[test]
    fn keys_expire_at_their_time_and_writes_keep_or_clear_it_as_redis_does() {
        let mut store = MemStore::default();
        let l = KvLimits::default();
        let mut at = |now: u64, op: KvOp| apply_op(&mut store, &op, &l, now).unwrap();
        let get = || KvOp::Get { key: k("k") };
        let set = |value: &str, expiry| KvOp::Set {
            key: k("k"),
            value: k(value),
            condition: SetCondition::Always,
            expiry,
        };
        at(1_000, set("v", Expiry::In(500)));
        assert_eq!(at(1_499, get()), KvResult::Value(Some(k("v"))));
        assert_eq!(at(1_500, get()), KvResult::Value(None), "expired at 1500");
        assert_eq!(
            at(1_500, KvOp::Incr { key: k("k"), by: 2 }),
            KvResult::Integer(2),
            "an expired key counts as absent"
        );
        // INCR keeps no expiry it did not have; SET ... KEEPTTL keeps one it had.
        at(2_000, set("1", Expiry::At(3_000)));
        assert_eq!(
            at(2_100, KvOp::Incr { key: k("k"), by: 1 }),
            KvResult::Integer(2)
        );
        at(2_200, set("x", Expiry::Keep));
        assert_eq!(
            at(2_300, KvOp::ReadExpiry { key: k("k") }),
            KvResult::Expiry {
                exists: true,
                expires_at_ms: Some(3_000),
                now_ms: 2_300
            }
        );
        // A plain SET clears it.
        at(2_400, set("y", Expiry::Clear));
        assert_eq!(
            at(9_000, KvOp::ReadExpiry { key: k("k") }),
            KvResult::Expiry {
                exists: true,
                expires_at_ms: None,
                now_ms: 9_000
            }
        );
        let expire = |expiry, condition| KvOp::Expire {
            key: k("k"),
            expiry,
            condition,
        };
        assert_eq!(
            at(9_000, expire(Expiry::In(100), ExpireCondition::IfSome)),
            KvResult::Flag(false)
        );
        assert_eq!(
            at(9_000, expire(Expiry::In(100), ExpireCondition::IfLater)),
            KvResult::Flag(false)
        );
        assert_eq!(
            at(9_000, expire(Expiry::In(100), ExpireCondition::IfNone)),
            KvResult::Flag(true)
        );
        assert_eq!(
            at(9_000, expire(Expiry::In(50), ExpireCondition::IfLater)),
            KvResult::Flag(false)
        );
        assert_eq!(
            at(9_000, expire(Expiry::In(50), ExpireCondition::IfEarlier)),
            KvResult::Flag(true)
        );
        assert_eq!(
            at(9_010, KvOp::Persist { key: k("k") }),
            KvResult::Flag(true)
        );
        assert_eq!(
            at(9_010, KvOp::Persist { key: k("k") }),
            KvResult::Flag(false)
        );
        // An expiry time already past deletes the key.
        assert_eq!(
            at(9_020, expire(Expiry::At(5), ExpireCondition::Always)),
            KvResult::Flag(true)
        );
        assert_eq!(at(9_020, get()), KvResult::Value(None));
        assert_eq!(
            at(9_020, KvOp::ReadExpiry { key: k("k") }),
            KvResult::Expiry {
                exists: false,
                expires_at_ms: None,
                now_ms: 9_020
            }
        );
        assert_eq!(
            at(9_020, expire(Expiry::In(5), ExpireCondition::Always)),
            KvResult::Flag(false)
        );
        // GETEX sets, GETDEL removes, APPEND and SETRANGE keep the expiry.
        at(10_000, set("ab", Expiry::Clear));
        assert_eq!(
            at(
                10_000,
                KvOp::GetEx {
                    key: k("k"),
                    expiry: Expiry::In(100)
                }
            ),
            KvResult::Value(Some(k("ab")))
        );
        assert_eq!(
            at(
                10_050,
                KvOp::Append {
                    key: k("k"),
                    value: k("c")
                }
            ),
            KvResult::Length(3)
        );
        assert_eq!(
            at(
                10_060,
                KvOp::SetRange {
                    key: k("k"),
                    offset: 5,
                    value: k("z")
                }
            ),
            KvResult::Length(6)
        );
        assert_eq!(
            at(10_070, get()),
            KvResult::Value(Some(b"abc\0\0z".to_vec()))
        );
        assert_eq!(
            at(10_100, get()),
            KvResult::Value(None),
            "APPEND and SETRANGE kept it"
        );
        assert_eq!(
            at(
                10_100,
                KvOp::Append {
                    key: k("k"),
                    value: k("n")
                }
            ),
            KvResult::Length(1)
        );
        assert_eq!(
            at(10_200, KvOp::GetDel { key: k("k") }),
            KvResult::Value(Some(k("n")))
        );
        assert_eq!(
            at(10_200, KvOp::GetDel { key: k("k") }),
            KvResult::Value(None)
        );
        assert_eq!(store.len(), 0, "nothing left behind");
    }
}
