//! Messages between the nodes of one Raft group
//!
//! Every message carries the sender's term. Entries in [`Message::Append`] are checked on
//! arrival (contiguous, terms in order); a message that breaks those rules is dropped as garbled.

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::snapshot::SnapshotMeta;
use super::types::{Entry, Index, LogId, Payload, Term};

/// A Raft message; the sender and receiver travel beside it (see [`super::Outgoing`])
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Would you vote for me in `term` (= the sender's term + 1)? Changes nothing on the receiver
    PreVote {
        /// The term the sender would campaign in
        term: Term,
        /// The sender's last log entry
        last_log: LogId,
    },
    /// Answer to [`Message::PreVote`]; `term` is the asked term when granted, else the
    /// responder's own term
    PreVoteResponse {
        /// See the variant doc
        term: Term,
        /// Whether the vote would be granted
        granted: bool,
    },
    /// Vote for me in `term`
    Vote {
        /// The candidate's term
        term: Term,
        /// The candidate's last log entry
        last_log: LogId,
        /// The old leader handed leadership over ([`Message::TimeoutNow`]): voters disregard
        /// their leader lease for this request
        transfer: bool,
    },
    /// Answer to [`Message::Vote`]
    VoteResponse {
        /// The responder's term
        term: Term,
        /// Whether the vote was granted
        granted: bool,
    },
    /// Leader to follower: append `entries` after `prev`, and learn the commit index
    Append {
        /// The leader's term
        term: Term,
        /// The entry just before `entries`, which the follower must already hold
        prev: LogId,
        /// Entries to append, contiguous from `prev.index + 1` (may be empty)
        entries: Vec<Entry>,
        /// The leader's commit index
        commit: Index,
    },
    /// Follower to leader: the outcome of an [`Message::Append`]
    AppendResponse {
        /// The follower's term
        term: Term,
        /// Accepted (with how far the logs now match) or rejected (with a hint)
        outcome: AppendOutcome,
    },
    /// Leader to follower: I am alive; you may commit up to `commit`
    Heartbeat {
        /// The leader's term
        term: Term,
        /// Commit index, never above what the follower is known to hold
        commit: Index,
        /// The leader's heartbeat round, echoed back; a round a quorum echoed confirms
        /// leadership for the reads waiting on it
        round: u64,
    },
    /// Follower to leader: heartbeat received
    HeartbeatResponse {
        /// The follower's term
        term: Term,
        /// The round of the heartbeat answered (0 when answering a stale leader)
        round: u64,
    },
    /// Follower to leader: confirm leadership and tell me the read index for my read `ctx`
    ReadIndex {
        /// The follower's term
        term: Term,
        /// The follower's identifier of the read
        ctx: u64,
    },
    /// Leader to follower: the read `ctx` may be served once `index` is applied (`None`: not
    /// possible here, retry elsewhere)
    ReadIndexResponse {
        /// The leader's term
        term: Term,
        /// The follower's identifier of the read
        ctx: u64,
        /// The read index, or `None` if refused
        index: Option<Index>,
    },
    /// Leader to its chosen successor: start an election now (leadership transfer)
    TimeoutNow {
        /// The leader's term
        term: Term,
    },
    /// Leader to follower: a chunk of a snapshot, for a follower behind the compacted log
    InstallSnapshot {
        /// The leader's term
        term: Term,
        /// The snapshot
        meta: SnapshotMeta,
        /// Where `data` starts in the snapshot, in bytes
        offset: u64,
        /// The chunk
        data: Payload,
        /// This is the last chunk
        done: bool,
    },
    /// Follower to leader: snapshot data received and durable up to `next_offset` (0: start
    /// again; at least the size, or 1 for an empty snapshot: installed)
    InstallSnapshotResponse {
        /// The follower's term
        term: Term,
        /// Last index of the snapshot
        index: Index,
        /// The next byte the follower expects
        next_offset: u64,
    },
}

/// The result of an append on the follower
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppendOutcome {
    /// The follower's log matches the leader's up to and including `match_index`, durably
    Accepted {
        /// Highest index known to match the leader's log
        match_index: Index,
    },
    /// The follower does not hold `rejected_prev`; `hint` is the last entry of its log at or
    /// below that index whose term is at most the leader's `prev` term, so the leader can skip a
    /// whole divergent term in one round trip
    Rejected {
        /// The `prev.index` of the rejected append
        rejected_prev: Index,
        /// Where the leader should look for the match
        hint: LogId,
    },
}

impl Message {
    /// The sender's term (for pre-votes: the term asked about)
    pub fn term(&self) -> Term {
        match self {
            Message::PreVote { term, .. }
            | Message::PreVoteResponse { term, .. }
            | Message::Vote { term, .. }
            | Message::VoteResponse { term, .. }
            | Message::Append { term, .. }
            | Message::AppendResponse { term, .. }
            | Message::Heartbeat { term, .. }
            | Message::HeartbeatResponse { term, .. }
            | Message::ReadIndex { term, .. }
            | Message::ReadIndexResponse { term, .. }
            | Message::TimeoutNow { term }
            | Message::InstallSnapshot { term, .. }
            | Message::InstallSnapshotResponse { term, .. } => *term,
        }
    }

    /// A short name of the message kind, for traces
    pub fn kind_name(&self) -> &'static str {
        match self {
            Message::PreVote { .. } => "PreVote",
            Message::PreVoteResponse { .. } => "PreVoteResponse",
            Message::Vote { .. } => "Vote",
            Message::VoteResponse { .. } => "VoteResponse",
            Message::Append { .. } => "Append",
            Message::AppendResponse { .. } => "AppendResponse",
            Message::Heartbeat { .. } => "Heartbeat",
            Message::HeartbeatResponse { .. } => "HeartbeatResponse",
            Message::ReadIndex { .. } => "ReadIndex",
            Message::ReadIndexResponse { .. } => "ReadIndexResponse",
            Message::TimeoutNow { .. } => "TimeoutNow",
            Message::InstallSnapshot { .. } => "InstallSnapshot",
            Message::InstallSnapshotResponse { .. } => "InstallSnapshotResponse",
        }
    }

    /// Number of entries carried
    pub fn entry_count(&self) -> usize {
        match self {
            Message::Append { entries, .. } => entries.len(),
            _ => 0,
        }
    }
}
