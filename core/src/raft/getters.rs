//! What a Raft node can be asked without changing it

use super::{Config, Entry, HardState, Index, LogId, NodeId, Progress, Raft, Role, Term};

impl Raft {
    /// This node's id
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// The configuration this node runs with
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Current role
    pub fn role(&self) -> Role {
        self.role
    }

    /// Current term
    pub fn term(&self) -> Term {
        self.term
    }

    /// Whom this node voted for in the current term
    pub fn vote(&self) -> Option<NodeId> {
        self.vote
    }

    /// The term and vote as currently held in memory (possibly not yet durable)
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
        }
    }

    /// The leader of the current term as far as this node knows
    pub fn leader_hint(&self) -> Option<NodeId> {
        self.leader
    }

    /// Highest index known committed
    pub fn commit_index(&self) -> Index {
        self.commit
    }

    /// Highest index handed out by [`poll_apply`](Self::poll_apply)
    pub fn applied_index(&self) -> Index {
        self.applied
    }

    /// Index of the last entry in the log
    pub fn last_index(&self) -> Index {
        self.log.last_index()
    }

    /// Id of the last entry in the log
    pub fn last_log_id(&self) -> LogId {
        self.log.last_log_id()
    }

    /// Highest index durable (reported persisted) and matching the in-memory log
    pub fn durable_index(&self) -> Index {
        self.persist.durable_index(&self.log)
    }

    /// The entry at `index`, if held
    pub fn entry(&self, index: Index) -> Option<&Entry> {
        self.log.get(index)
    }

    /// The term of the entry at `index`, if held or at the compaction point
    pub fn term_at(&self, index: Index) -> Option<Term> {
        self.log.term(index)
    }

    /// Index of the first entry held in memory (entries before it are in the snapshot)
    pub fn first_index(&self) -> Index {
        self.log.offset() + 1
    }

    /// Bytes of the entries held in memory (payloads plus a fixed overhead each)
    pub fn log_bytes(&self) -> usize {
        self.log.bytes()
    }

    /// The held entries from `low` through `high` inclusive
    pub fn entries(&self, low: Index, high: Index) -> &[Entry] {
        self.log.range(low, high)
    }

    /// Leader: what it knows of follower `id`
    pub fn progress(&self, id: NodeId) -> Option<&Progress> {
        self.progress.iter().find(|(p, _)| *p == id).map(|(_, p)| p)
    }

    /// Leader: bytes of entries proposed but not yet committed
    pub fn uncommitted_bytes(&self) -> usize {
        self.uncommitted_bytes
    }

    /// Writes handed out by [`poll_write`](Self::poll_write) and not yet reported persisted
    pub fn unpersisted_writes(&self) -> usize {
        self.persist.unpersisted_writes()
    }

    /// Messages queued (ready or waiting for persistence)
    pub fn queued_messages(&self) -> usize {
        self.outbox.len() + self.held.len()
    }
}
