//! The key-value commands the simulated state machine understands, and how they are encoded in
//! log entries
//!
//! A command is [`KV_MAGIC`] followed by the postcard encoding of a [`KvOp`]. Anything else
//! (the opaque payloads most scenarios propose, no-ops, membership entries) is not a KV command:
//! [`KvOp::decode`] answers `None` and the state machine only folds it into its digest.
//!
//! [`KvOp::apply`] is the store's own implementation, written independently of the checker's
//! sequential specification ([`KvInput::apply`]), so a history checks one against the other.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::linearizability::{KvInput, KvOutput};

/// Bytes every encoded KV command starts with
pub const KV_MAGIC: &[u8] = b"\xffKV1";

/// One write to the store, as carried in a log entry
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    /// Set `key` to `value`
    Put {
        /// The key
        key: Vec<u8>,
        /// The new value
        value: Vec<u8>,
    },
    /// Append `suffix` to the value of `key` (a missing key counts as empty)
    Append {
        /// The key
        key: Vec<u8>,
        /// The bytes appended
        suffix: Vec<u8>,
    },
    /// Remove `key`
    Delete {
        /// The key
        key: Vec<u8>,
    },
    /// Set `key` to `new` if it holds `expected` (`None`: only if it is missing)
    Cas {
        /// The key
        key: Vec<u8>,
        /// The value the key must hold
        expected: Option<Vec<u8>>,
        /// The value stored when it does
        new: Vec<u8>,
    },
}

impl KvOp {
    /// The command as a log entry payload
    pub fn encode(&self) -> Vec<u8> {
        let mut out = KV_MAGIC.to_vec();
        let body = postcard::to_allocvec(self).expect("serializing a KV command cannot fail");
        out.extend_from_slice(&body);
        out
    }

    /// The command in `payload`, or `None` if the payload is not a KV command
    pub fn decode(payload: &[u8]) -> Option<KvOp> {
        let body = payload.strip_prefix(KV_MAGIC)?;
        match postcard::take_from_bytes::<KvOp>(body) {
            Ok((op, [])) => Some(op),
            _ => None,
        }
    }

    /// The operation as the linearizability checker records it
    pub fn to_input(&self) -> KvInput {
        match self {
            KvOp::Put { key, value } => KvInput::put(key, value),
            KvOp::Append { key, suffix } => KvInput::append(key, suffix),
            KvOp::Delete { key } => KvInput::delete(key),
            KvOp::Cas { key, expected, new } => KvInput::cas(key, expected.as_deref(), new),
        }
    }

    /// Runs the command on `map` and returns what the client is told
    pub fn apply(&self, map: &mut BTreeMap<Vec<u8>, Vec<u8>>) -> KvOutput {
        match self {
            KvOp::Put { key, value } => {
                map.insert(key.clone(), value.clone());
                KvOutput::Done
            }
            KvOp::Append { key, suffix } => {
                map.entry(key.clone())
                    .or_default()
                    .extend_from_slice(suffix);
                KvOutput::Done
            }
            KvOp::Delete { key } => KvOutput::Deleted(map.remove(key).is_some()),
            KvOp::Cas { key, expected, new } => {
                if map.get(key) == expected.as_ref() {
                    map.insert(key.clone(), new.clone());
                    KvOutput::Cas(true)
                } else {
                    KvOutput::Cas(false)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_other_payloads_are_opaque() {
        let ops = [
            KvOp::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            },
            KvOp::Append {
                key: b"k".to_vec(),
                suffix: b"+".to_vec(),
            },
            KvOp::Delete { key: b"k".to_vec() },
            KvOp::Cas {
                key: b"k".to_vec(),
                expected: None,
                new: b"n".to_vec(),
            },
        ];
        for op in &ops {
            assert_eq!(KvOp::decode(&op.encode()).as_ref(), Some(op));
            let mut truncated = op.encode();
            truncated.pop();
            assert_eq!(KvOp::decode(&truncated), None);
            let mut longer = op.encode();
            longer.push(0);
            assert_eq!(KvOp::decode(&longer), None);
        }
        for opaque in [
            &b""[..],
            b"hello",
            b"0000000123",
            b"\xffKV1",
            b"\xffKV1\x09",
        ] {
            assert_eq!(KvOp::decode(opaque), None);
        }
    }

    #[test]
    fn apply_matches_the_sequential_specification() {
        let mut map = BTreeMap::new();
        let mut model: Option<Vec<u8>> = None;
        let key = b"k".to_vec();
        let ops = [
            KvOp::Cas {
                key: key.clone(),
                expected: None,
                new: b"a".to_vec(),
            },
            KvOp::Append {
                key: key.clone(),
                suffix: b"b".to_vec(),
            },
            KvOp::Cas {
                key: key.clone(),
                expected: Some(b"a".to_vec()),
                new: b"x".to_vec(),
            },
            KvOp::Delete { key: key.clone() },
            KvOp::Append {
                key: key.clone(),
                suffix: b"c".to_vec(),
            },
            KvOp::Put {
                key: key.clone(),
                value: b"d".to_vec(),
            },
        ];
        for op in &ops {
            assert_eq!(op.apply(&mut map), op.to_input().apply(&mut model));
            assert_eq!(map.get(&key), model.as_ref());
        }
    }
}
