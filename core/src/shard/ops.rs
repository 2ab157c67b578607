//! Key-value operations, their results, and the limits they are checked against

use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

use super::store::ShardStore;

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
    },
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
            KvOp::MultiSet { pairs } => pairs.first().map_or(&[][..], |(k, _)| k),
            KvOp::MultiGet { keys } => keys.first().map_or(&[][..], |k| k),
            KvOp::Get { key }
            | KvOp::Put { key, .. }
            | KvOp::Delete { key }
            | KvOp::Append { key, .. }
            | KvOp::Incr { key, .. }
            | KvOp::Cas { key, .. }
            | KvOp::Set { key, .. } => key,
        }
    }

    /// Every key the operation touches
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            KvOp::MultiSet { pairs } => pairs.iter().map(|(k, _)| k.as_slice()).collect(),
            KvOp::MultiGet { keys } => keys.iter().map(Vec::as_slice).collect(),
            other => alloc::vec![other.key()],
        }
    }

    /// Whether the operation only reads
    pub fn is_read(&self) -> bool {
        matches!(self, KvOp::Get { .. } | KvOp::MultiGet { .. })
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
        }
    }
}

impl core::error::Error for KvError {}

/// Limits on what a store accepts, in bytes
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvLimits {
    /// Longest key
    pub max_key_bytes: u32,
    /// Longest value
    pub max_value_bytes: u32,
}

impl Default for KvLimits {
    fn default() -> Self {
        KvLimits {
            max_key_bytes: 64 * 1024,
            max_value_bytes: 1024 * 1024,
        }
    }
}

/// Applies `op` to `store` within `limits`
pub fn apply_op<S: ShardStore>(
    store: &mut S,
    op: &KvOp,
    limits: &KvLimits,
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
    let read = |store: &S, key: &[u8]| store.get(key).map(<[u8]>::to_vec);
    match op {
        KvOp::Get { key } => Ok(KvResult::Value(read(store, key))),
        KvOp::Put { key, value } => {
            check_value(value.len())?;
            store.insert(key.clone(), value.clone());
            Ok(KvResult::Done)
        }
        KvOp::Delete { key } => Ok(KvResult::Deleted(store.remove(key).is_some())),
        KvOp::Append { key, value } => {
            let current = store.get(key).map_or(0, <[u8]>::len);
            check_value(current + value.len())?;
            Ok(KvResult::Length(store.append(key, value) as u64))
        }
        KvOp::Incr { key, by } => {
            let current = match store.get(key) {
                None => 0,
                Some(v) => parse_i64(v).ok_or(KvError::NotAnInteger)?,
            };
            let next = current.checked_add(*by).ok_or(KvError::Overflow)?;
            store.insert(key.clone(), alloc::format!("{next}").into_bytes());
            Ok(KvResult::Integer(next))
        }
        KvOp::Cas { key, expected, new } => {
            check_value(new.len())?;
            let previous = read(store, key);
            let swapped = previous == *expected;
            if swapped {
                store.insert(key.clone(), new.clone());
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
                store.insert(key.clone(), value.clone());
            }
            Ok(KvResult::Done)
        }
        KvOp::MultiGet { keys } => {
            if keys.is_empty() {
                return Err(KvError::CrossShard);
            }
            Ok(KvResult::Values(
                keys.iter().map(|k| read(store, k)).collect(),
            ))
        }
        KvOp::Set {
            key,
            value,
            condition,
        } => {
            check_value(value.len())?;
            let previous = read(store, key);
            let written = match condition {
                SetCondition::Always => true,
                SetCondition::IfAbsent => previous.is_none(),
                SetCondition::IfPresent => previous.is_some(),
            };
            if written {
                store.insert(key.clone(), value.clone());
            }
            Ok(KvResult::Set { written, previous })
        }
    }
}

/// A decimal signed 64-bit integer, as Redis accepts them (no spaces, no `+`, no leading zeros
/// except "0" itself)
fn parse_i64(bytes: &[u8]) -> Option<i64> {
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
        };
        let set = KvOp::MultiSet {
            pairs: vec![(k("a"), k("1")), (k("b"), k("2"))],
        };
        assert_eq!(apply_op(&mut store, &set, &l), Ok(KvResult::Done));
        let too_big = KvOp::MultiSet {
            pairs: vec![(k("a"), k("9")), (k("c"), k("12345"))],
        };
        assert!(matches!(
            apply_op(&mut store, &too_big, &l),
            Err(KvError::ValueTooLarge { .. })
        ));
        let get = KvOp::MultiGet {
            keys: vec![k("b"), k("c"), k("a")],
        };
        assert_eq!(
            apply_op(&mut store, &get, &l),
            Ok(KvResult::Values(vec![Some(k("2")), None, Some(k("1"))])),
            "the failed MultiSet wrote nothing"
        );
        let long_key = KvOp::MultiGet {
            keys: vec![k("a"), k("123456789")],
        };
        assert!(matches!(
            apply_op(&mut store, &long_key, &l),
            Err(KvError::KeyTooLarge { .. })
        ));
        let empty = KvOp::MultiSet { pairs: vec![] };
        assert_eq!(apply_op(&mut store, &empty, &l), Err(KvError::CrossShard));
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
            };
            apply_op(&mut store, &op, &l)
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
        };
        let op = KvOp::Set {
            key: k("s"),
            value: k("too long"),
            condition: SetCondition::Always,
        };
        assert!(matches!(
            apply_op(&mut MemStore::default(), &op, &big),
            Err(KvError::ValueTooLarge { .. })
        ));
    }

    #[test]
    fn every_operation_and_its_result() {
        let mut store = MemStore::default();
        let l = KvLimits::default();
        let mut run = |op: KvOp| apply_op(&mut store, &op, &l);
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
        };
        assert_eq!(
            apply_op(
                &mut store,
                &KvOp::Put {
                    key: k("toolong"),
                    value: k("v")
                },
                &l
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
                &l
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
        )
        .unwrap();
        assert_eq!(
            apply_op(
                &mut store,
                &KvOp::Append {
                    key: k("k"),
                    value: k("def")
                },
                &l
            ),
            Err(KvError::ValueTooLarge {
                size_bytes: 6,
                max_bytes: 5
            })
        );
        assert_eq!(store.get(b"k"), Some(&b"abc"[..]));
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
}
