//! The key-value model: operations, their results, and the sequential specification
//!
//! [`KvInput`] and [`KvOutput`] are what a history records. [`KvInput::apply`] is the
//! sequential specification: what one key's value becomes and what the operation returns when
//! operations run one at a time. The search does not call it directly; it works on a compiled
//! form ([`KeyModel`]) where every value is interned to a small integer, so a step compares
//! integers instead of byte strings.

use std::collections::HashMap;
use std::fmt;

/// One operation on the store, as a client issued it; every operation touches exactly one key
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvInput {
    /// Read the key's value
    Get {
        /// The key
        key: Vec<u8>,
    },
    /// Set the key to `value`
    Put {
        /// The key
        key: Vec<u8>,
        /// The new value
        value: Vec<u8>,
    },
    /// Remove the key
    Delete {
        /// The key
        key: Vec<u8>,
    },
    /// Append `suffix` to the key's value; a missing key counts as empty
    Append {
        /// The key
        key: Vec<u8>,
        /// The bytes to append
        suffix: Vec<u8>,
    },
    /// Add `by` to the key's value read as a decimal 64-bit integer (missing counts as 0);
    /// fails, changing nothing, when the value is not one or the sum overflows
    Incr {
        /// The key
        key: Vec<u8>,
        /// The amount
        by: i64,
    },
    /// Set the key to `new` if its value is `expected` (`None`: the key is missing)
    Cas {
        /// The key
        key: Vec<u8>,
        /// The value the key must hold for the swap to happen
        expected: Option<Vec<u8>>,
        /// The value to store when it does
        new: Vec<u8>,
    },
}

/// What an operation returned
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvOutput {
    /// The result of a [`KvInput::Get`]: the value, or `None` if the key was missing
    Value(Option<Vec<u8>>),
    /// The result of a [`KvInput::Put`], [`KvInput::Delete`] or [`KvInput::Append`]
    Done,
    /// The result of a [`KvInput::Cas`]: whether the swap happened
    Cas(bool),
    /// The result of a [`KvInput::Delete`] that says whether the key was there (a
    /// [`KvOutput::Done`] for a delete does not say)
    Deleted(bool),
    /// The result of a [`KvInput::Incr`]: the new value, or `None` when it failed (not an
    /// integer, or overflow)
    Int(Option<i64>),
}

impl KvInput {
    /// `Get(key)`
    pub fn get(key: impl AsRef<[u8]>) -> Self {
        KvInput::Get {
            key: key.as_ref().to_vec(),
        }
    }

    /// `Put(key, value)`
    pub fn put(key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        KvInput::Put {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
        }
    }

    /// `Delete(key)`
    pub fn delete(key: impl AsRef<[u8]>) -> Self {
        KvInput::Delete {
            key: key.as_ref().to_vec(),
        }
    }

    /// `Append(key, suffix)`
    pub fn append(key: impl AsRef<[u8]>, suffix: impl AsRef<[u8]>) -> Self {
        KvInput::Append {
            key: key.as_ref().to_vec(),
            suffix: suffix.as_ref().to_vec(),
        }
    }

    /// `Incr(key, by)`
    pub fn incr(key: impl AsRef<[u8]>, by: i64) -> Self {
        KvInput::Incr {
            key: key.as_ref().to_vec(),
            by,
        }
    }

    /// `Cas(key, expected, new)`; `expected: None` means "only if the key is missing"
    pub fn cas(key: impl AsRef<[u8]>, expected: Option<&[u8]>, new: impl AsRef<[u8]>) -> Self {
        KvInput::Cas {
            key: key.as_ref().to_vec(),
            expected: expected.map(<[u8]>::to_vec),
            new: new.as_ref().to_vec(),
        }
    }

    /// The one key this operation touches
    pub fn key(&self) -> &[u8] {
        match self {
            KvInput::Get { key }
            | KvInput::Put { key, .. }
            | KvInput::Delete { key }
            | KvInput::Append { key, .. }
            | KvInput::Incr { key, .. }
            | KvInput::Cas { key, .. } => key,
        }
    }

    /// The sequential specification: run this operation on `value` (the key's current value,
    /// `None` when missing), update it, and return what the operation returns
    pub fn apply(&self, value: &mut Option<Vec<u8>>) -> KvOutput {
        match self {
            KvInput::Get { .. } => KvOutput::Value(value.clone()),
            KvInput::Put { value: new, .. } => {
                *value = Some(new.clone());
                KvOutput::Done
            }
            KvInput::Delete { .. } => KvOutput::Deleted(value.take().is_some()),
            KvInput::Incr { by, .. } => {
                let sum = incremented(value.as_deref(), *by);
                if let Some(n) = sum {
                    *value = Some(n.to_string().into_bytes());
                }
                KvOutput::Int(sum)
            }
            KvInput::Append { suffix, .. } => {
                value.get_or_insert_with(Vec::new).extend_from_slice(suffix);
                KvOutput::Done
            }
            KvInput::Cas { expected, new, .. } => {
                let swap = value == expected;
                if swap {
                    *value = Some(new.clone());
                }
                KvOutput::Cas(swap)
            }
        }
    }

    /// Whether `output` is the kind of result this operation returns (a value for a get, a
    /// boolean for a compare-and-swap, [`KvOutput::Done`] otherwise)
    pub fn accepts(&self, output: &KvOutput) -> bool {
        matches!(
            (self, output),
            (KvInput::Get { .. }, KvOutput::Value(_))
                | (KvInput::Cas { .. }, KvOutput::Cas(_))
                | (KvInput::Delete { .. }, KvOutput::Deleted(_))
                | (KvInput::Incr { .. }, KvOutput::Int(_))
                | (
                    KvInput::Put { .. } | KvInput::Delete { .. } | KvInput::Append { .. },
                    KvOutput::Done
                )
        )
    }
}

impl KvOutput {
    /// What a get of a missing key returns
    pub const MISSING: KvOutput = KvOutput::Value(None);

    /// What a get of a present key returns: `Value(Some(value))`
    pub fn value(value: impl AsRef<[u8]>) -> Self {
        KvOutput::Value(Some(value.as_ref().to_vec()))
    }
}

/// What an increment by `by` of `value` gives: `None` when the value is not a decimal 64-bit
/// integer (a missing key counts as 0) or the sum overflows
fn incremented(value: Option<&[u8]>, by: i64) -> Option<i64> {
    let current = match value {
        None => 0,
        Some(v) => std::str::from_utf8(v).ok()?.parse::<i64>().ok()?,
    };
    current.checked_add(by)
}

/// Writes bytes as a quoted, escaped string: `"abc"`, `"\xff"`
pub(crate) struct Bytes<'a>(pub &'a [u8]);

impl fmt::Display for Bytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0.escape_ascii())
    }
}

/// Writes a possibly missing value: `"abc"` or `<missing>`
pub(crate) struct MaybeBytes<'a>(pub Option<&'a [u8]>);

impl fmt::Display for MaybeBytes<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(bytes) => Bytes(bytes).fmt(f),
            None => f.write_str("<missing>"),
        }
    }
}

impl fmt::Display for KvInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvInput::Get { key } => write!(f, "get({})", Bytes(key)),
            KvInput::Put { key, value } => write!(f, "put({}, {})", Bytes(key), Bytes(value)),
            KvInput::Delete { key } => write!(f, "delete({})", Bytes(key)),
            KvInput::Incr { key, by } => write!(f, "incr({}, {by})", Bytes(key)),
            KvInput::Append { key, suffix } => {
                write!(f, "append({}, {})", Bytes(key), Bytes(suffix))
            }
            KvInput::Cas { key, expected, new } => write!(
                f,
                "cas({}, {} -> {})",
                Bytes(key),
                MaybeBytes(expected.as_deref()),
                Bytes(new)
            ),
        }
    }
}

impl fmt::Display for KvOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvOutput::Value(value) => MaybeBytes(value.as_deref()).fmt(f),
            KvOutput::Done => f.write_str("ok"),
            KvOutput::Cas(swapped) => write!(f, "{swapped}"),
            KvOutput::Deleted(existed) => write!(f, "deleted: {existed}"),
            KvOutput::Int(Some(n)) => write!(f, "{n}"),
            KvOutput::Int(None) => f.write_str("not an integer or overflow"),
        }
    }
}

/// An interned value of one key (`None`, the missing key, is always id 0)
pub(crate) type StateId = u32;

/// One operation compiled against a [`KeyModel`]
#[derive(Clone, Debug)]
pub(crate) enum Step {
    /// A get that returned the value with this id
    Read(StateId),
    /// A put or delete: the value becomes this one whatever it was
    Write(StateId),
    /// An append; the result depends on the value, so it goes through a cache
    Append(Vec<u8>),
    /// A compare-and-swap; `outcome` is `None` when the operation's result is unknown
    Cas {
        expected: StateId,
        new: StateId,
        outcome: Option<bool>,
    },
    /// An operation whose result is unknown and that cannot change the value (a get)
    Nothing,
    /// A delete that said whether the key was there (`None`: unknown)
    Delete(Option<bool>),
    /// An increment; `outcome` is `None` when its result is unknown
    Incr {
        by: i64,
        outcome: Option<Option<i64>>,
    },
}

/// The compiled model of one key: every value seen is interned to a [`StateId`]
#[derive(Debug)]
pub(crate) struct KeyModel {
    values: Vec<Option<Vec<u8>>>,
    ids: HashMap<Option<Vec<u8>>, StateId>,
    /// `(value, index of the append step) -> value after the append`
    appended: HashMap<(StateId, u32), StateId>,
}

impl KeyModel {
    /// A model whose only value so far is the missing key (id 0, the initial state)
    pub(crate) fn new() -> Self {
        let mut model = KeyModel {
            values: Vec::new(),
            ids: HashMap::new(),
            appended: HashMap::new(),
        };
        model.intern(None);
        model
    }

    /// The id of a value, assigning a new one the first time
    pub(crate) fn intern(&mut self, value: Option<Vec<u8>>) -> StateId {
        if let Some(&id) = self.ids.get(&value) {
            return id;
        }
        let id = StateId::try_from(self.values.len()).expect("fewer than 2^32 distinct values");
        self.values.push(value.clone());
        self.ids.insert(value, id);
        id
    }

    /// The value behind an id
    pub(crate) fn value(&self, id: StateId) -> Option<&[u8]> {
        self.values[id as usize].as_deref()
    }

    /// Compile an operation; `output` is `None` when its result is unknown
    pub(crate) fn compile(&mut self, input: &KvInput, output: Option<&KvOutput>) -> Step {
        match (input, output) {
            (KvInput::Get { .. }, None) => Step::Nothing,
            (KvInput::Get { .. }, Some(KvOutput::Value(value))) => {
                Step::Read(self.intern(value.clone()))
            }
            (KvInput::Put { value, .. }, _) => Step::Write(self.intern(Some(value.clone()))),
            (KvInput::Delete { .. }, Some(KvOutput::Deleted(existed))) => {
                Step::Delete(Some(*existed))
            }
            (KvInput::Delete { .. }, _) => Step::Delete(None),
            (KvInput::Incr { by, .. }, output) => Step::Incr {
                by: *by,
                outcome: match output {
                    Some(KvOutput::Int(result)) => Some(*result),
                    _ => None,
                },
            },
            (KvInput::Append { suffix, .. }, _) => Step::Append(suffix.clone()),
            (KvInput::Cas { expected, new, .. }, output) => Step::Cas {
                expected: self.intern(expected.clone()),
                new: self.intern(Some(new.clone())),
                outcome: match output {
                    Some(KvOutput::Cas(swapped)) => Some(*swapped),
                    _ => None,
                },
            },
            (KvInput::Get { .. }, Some(_)) => unreachable!("output kinds are validated first"),
        }
    }

    /// Run step number `index` from value `state`: the new value, or `None` if the operation
    /// could not have returned what it did from that value
    pub(crate) fn step(&mut self, state: StateId, index: u32, step: &Step) -> Option<StateId> {
        match *step {
            Step::Read(seen) => (seen == state).then_some(state),
            Step::Write(to) => Some(to),
            Step::Nothing => Some(state),
            Step::Delete(existed) => match existed {
                Some(said) if said != (state != 0) => None,
                _ => Some(0),
            },
            Step::Incr { by, outcome } => {
                let sum = incremented(self.value(state), by);
                match outcome {
                    Some(said) if said != sum => None,
                    _ => Some(match sum {
                        Some(n) => self.intern(Some(n.to_string().into_bytes())),
                        None => state,
                    }),
                }
            }
            Step::Cas {
                expected,
                new,
                outcome,
            } => {
                let swaps = expected == state;
                match outcome {
                    Some(swapped) if swapped != swaps => None,
                    _ => Some(if swaps { new } else { state }),
                }
            }
            Step::Append(ref suffix) => {
                if let Some(&to) = self.appended.get(&(state, index)) {
                    return Some(to);
                }
                let mut value = self.values[state as usize].clone().unwrap_or_default();
                value.extend_from_slice(suffix);
                let to = self.intern(Some(value));
                self.appended.insert((state, index), to);
                Some(to)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_follows_the_specification() {
        let mut value = None;
        assert_eq!(KvInput::get("k").apply(&mut value), KvOutput::MISSING);
        assert_eq!(KvInput::append("k", "a").apply(&mut value), KvOutput::Done);
        assert_eq!(KvInput::append("k", "b").apply(&mut value), KvOutput::Done);
        assert_eq!(KvInput::get("k").apply(&mut value), KvOutput::value("ab"));
        let cas_missing = KvInput::cas("k", None, "x");
        assert_eq!(cas_missing.apply(&mut value), KvOutput::Cas(false));
        let cas_ab = KvInput::cas("k", Some(b"ab"), "x");
        assert_eq!(cas_ab.apply(&mut value), KvOutput::Cas(true));
        assert_eq!(value.as_deref(), Some(&b"x"[..]));
        assert_eq!(
            KvInput::delete("k").apply(&mut value),
            KvOutput::Deleted(true)
        );
        assert_eq!(cas_missing.apply(&mut value), KvOutput::Cas(true));
        assert_eq!(KvInput::put("k", "p").apply(&mut value), KvOutput::Done);
        assert_eq!(value.as_deref(), Some(&b"p"[..]));
    }

    #[test]
    fn compiled_steps_agree_with_apply() {
        let mut model = KeyModel::new();
        let append = model.compile(&KvInput::append("k", "a"), Some(&KvOutput::Done));
        let read_a = model.compile(&KvInput::get("k"), Some(&KvOutput::value("a")));
        let read_none = model.compile(&KvInput::get("k"), Some(&KvOutput::MISSING));
        let cas = model.compile(
            &KvInput::cas("k", Some(b"a"), "b"),
            Some(&KvOutput::Cas(true)),
        );
        let cas_unknown = model.compile(&KvInput::cas("k", Some(b"a"), "b"), None);
        assert_eq!(model.step(0, 0, &read_none), Some(0));
        let a = model.step(0, 0, &append).unwrap();
        assert_eq!(model.value(a), Some(&b"a"[..]));
        assert_eq!(model.step(a, 1, &read_a), Some(a));
        assert_eq!(model.step(0, 1, &read_a), None);
        let b = model.step(a, 2, &cas).unwrap();
        assert_eq!(model.value(b), Some(&b"b"[..]));
        assert_eq!(model.step(0, 2, &cas), None);
        assert_eq!(model.step(0, 3, &cas_unknown), Some(0));
        assert_eq!(model.step(a, 3, &cas_unknown), Some(b));
    }

    #[test]
    fn display_is_readable() {
        let cas = KvInput::cas("k", None, [0xff]);
        assert_eq!(cas.to_string(), "cas(\"k\", <missing> -> \"\\xff\")");
        assert_eq!(KvOutput::value("v").to_string(), "\"v\"");
        assert_eq!(KvOutput::Cas(false).to_string(), "false");
        assert!(KvInput::get("k").accepts(&KvOutput::MISSING));
        assert!(!KvInput::put("k", "v").accepts(&KvOutput::MISSING));
    }
}
