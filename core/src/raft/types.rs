//! The nouns of Raft: node ids, terms, indexes, log entries and the hard state

use alloc::sync::Arc;
use core::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A node's identity within a Raft group; chosen by the operator, never zero by convention
pub type NodeId = u64;
/// A Raft term (election epoch)
pub type Term = u64;
/// A position in the replicated log; the first entry has index 1, index 0 means "nothing"
pub type Index = u64;

/// An entry's position and the term it was created in; identifies the entry uniquely
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct LogId {
    /// Term the entry was created in
    pub term: Term,
    /// Position in the log
    pub index: Index,
}

impl LogId {
    /// The log id at `index` in `term`
    pub const fn new(term: Term, index: Index) -> Self {
        LogId { term, index }
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.term, self.index)
    }
}

/// An immutable, cheaply cloned byte string (reference counted)
///
/// Entries travel from the log to messages, to persistence and to the state machine; sharing
/// the bytes means the replicate path never copies a payload.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Payload(Arc<[u8]>);

impl Payload {
    /// The bytes
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `true` when there are no bytes
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&[u8]> for Payload {
    fn from(bytes: &[u8]) -> Self {
        Payload(Arc::from(bytes))
    }
}

impl<const N: usize> From<&[u8; N]> for Payload {
    fn from(bytes: &[u8; N]) -> Self {
        Payload(Arc::from(&bytes[..]))
    }
}

impl From<alloc::vec::Vec<u8>> for Payload {
    fn from(bytes: alloc::vec::Vec<u8>) -> Self {
        Payload(Arc::from(bytes))
    }
}

impl From<&str> for Payload {
    fn from(s: &str) -> Self {
        Payload::from(s.as_bytes())
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match core::str::from_utf8(&self.0) {
            Ok(s) if s.len() <= 32 => write!(f, "{s:?}"),
            _ => write!(f, "<{} bytes>", self.0.len()),
        }
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl<'de> serde::de::Visitor<'de> for BytesVisitor {
            type Value = Payload;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Payload, E> {
                Ok(Payload::from(v))
            }
            fn visit_byte_buf<E: serde::de::Error>(
                self,
                v: alloc::vec::Vec<u8>,
            ) -> Result<Payload, E> {
                Ok(Payload::from(v))
            }
        }
        deserializer.deserialize_bytes(BytesVisitor)
    }
}

/// What an entry carries
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryKind {
    /// Appended by a new leader to commit everything before it (Raft paper §8); no payload
    Noop,
    /// An application command; the payload is opaque to Raft
    Command,
    /// A new membership (the payload is the encoded [`super::Membership`]); it takes effect
    /// on each node as soon as it is in that node's log
    Membership,
}

/// One log entry
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Term the entry was created in
    pub term: Term,
    /// Position in the log
    pub index: Index,
    /// What the entry carries
    pub kind: EntryKind,
    /// The command bytes (empty for [`EntryKind::Noop`])
    pub data: Payload,
}

/// Bytes an entry is charged for beyond its payload (ids and framing), for byte limits
pub const ENTRY_OVERHEAD_BYTES: usize = 24;

impl Entry {
    /// The entry's log id
    pub fn log_id(&self) -> LogId {
        LogId::new(self.term, self.index)
    }

    /// Bytes this entry counts for against byte limits: payload plus a fixed overhead
    pub fn size_bytes(&self) -> usize {
        self.data.len() + ENTRY_OVERHEAD_BYTES
    }
}

/// The state that must be durable before any message that depends on it is sent
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen
    pub term: Term,
    /// The candidate this node voted for in `term`, if any
    pub vote: Option<NodeId>,
}

/// A node's role in its group
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one)
    Follower,
    /// Asks whether it could win an election before disturbing anyone (pre-vote, thesis §9.6)
    PreCandidate,
    /// Campaigns for leadership in a new term
    Candidate,
    /// Leads the group for its term
    Leader,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Follower => "follower",
            Role::PreCandidate => "pre-candidate",
            Role::Candidate => "candidate",
            Role::Leader => "leader",
        })
    }
}
