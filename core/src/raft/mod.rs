//! Raft consensus for one group, sans-IO
//!
//! [`Raft`] is the state machine of one node of one group. See its documentation for the call
//! order; the crate documentation shows a complete driving loop.

mod config;
mod election;
mod errors;
mod getters;
mod log;
mod membership;
mod message;
mod persist;
mod progress;
mod read;
mod reconfig;
mod replication;
mod snapshot;
mod transfer;
mod types;

use alloc::collections::VecDeque;
use alloc::vec::Vec;

pub use config::Config;
pub use errors::{
    Busy, ChangeError, ConfigError, ProposeError, ReadError, RecoveryError, TransferError,
};
pub use membership::Membership;
pub use message::{AppendOutcome, Message};
pub use persist::{Write, WriteId};
pub use progress::{Progress, ReplicationState};
pub use read::{ReadConsistency, ReadState};
pub use snapshot::{SnapshotChunk, SnapshotMeta, SnapshotTask};
pub use types::{
    ENTRY_OVERHEAD_BYTES, Entry, EntryKind, HardState, Index, LogId, NodeId, Payload, Role, Term,
};

use log::RaftLog;
use persist::PersistTracker;
use read::Reads;
use reconfig::MembershipLog;
use snapshot::Snapshots;
use transfer::Transfer;

use crate::rng::Rng;
use crate::time::Instant;

/// A message to send: deliver `message` from `from` to `to`
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outgoing {
    /// The sending node (this node)
    pub from: NodeId,
    /// The receiving node
    pub to: NodeId,
    /// What to deliver
    pub message: Message,
}

/// What a node recovered from its disk; `Recovered::default()` for a brand-new node
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The last durable term and vote
    pub hard_state: HardState,
    /// The durable snapshot, if any (the application restores its state from it)
    pub snapshot: Option<SnapshotMeta>,
    /// The durable log: contiguous, starting at or before the entry after the snapshot (or at
    /// index 1); entries the snapshot covers are skipped
    pub entries: Vec<Entry>,
}

/// One node of a Raft group, as a deterministic state machine with no IO
///
/// # Call order
///
/// Methods come in four kinds:
///
/// - **Getters** (`&self`): [`role`](Self::role), [`term`](Self::term),
///   [`leader_hint`](Self::leader_hint), [`commit_index`](Self::commit_index), ...
/// - **Inputs**, named `handle_*`: [`handle_message`](Self::handle_message) for a message
///   from a peer, [`handle_timeout`](Self::handle_timeout) when the time from
///   [`poll_timeout`](Self::poll_timeout) has come, [`handle_persisted`](Self::handle_persisted)
///   when writes became durable.
/// - **Commands**: [`propose`](Self::propose), [`read`](Self::read),
///   [`transfer_leader`](Self::transfer_leader), [`change_membership`](Self::change_membership).
/// - **Outputs**, named `poll_*`, each drained one item per call until `None`.
///
/// After every input or command, drain the outputs in this order:
///
/// 1. [`poll_write`](Self::poll_write): make each write durable, in order, then call
///    [`handle_persisted`](Self::handle_persisted) (at once for a synchronous disk, later for
///    an asynchronous one; persisting releases more outputs, so drain again afterwards);
/// 2. [`poll_message`](Self::poll_message): send each message (it is safe to send now: the
///    core holds back anything whose state is not yet durable);
/// 3. [`poll_restore`](Self::poll_restore): load the state machine from a snapshot that was
///    installed here, then [`poll_apply`](Self::poll_apply): apply each committed entry;
/// 4. [`poll_read`](Self::poll_read): serve each confirmed read once its index is applied;
/// 5. [`poll_snapshot_task`](Self::poll_snapshot_task): take a snapshot, or read a chunk of one
///    for a follower, and report back with [`handle_snapshot_taken`](Self::handle_snapshot_taken)
///    or [`handle_snapshot_chunk`](Self::handle_snapshot_chunk);
/// 6. [`poll_timeout`](Self::poll_timeout): arm a timer for the next deadline.
///
/// Every input takes `now`; time must not go backwards (an earlier `now` is treated as the
/// latest one seen).
///
/// Bounded queues: inputs return [`Busy`] (and change nothing) when the outbox is too full to
/// take the messages the input could produce; proposals return [`ProposeError::Busy`] past
/// `max_uncommitted_bytes`. Nothing a peer sends can make the node panic or grow without bound.
#[derive(Debug)]
pub struct Raft {
    config: Config,
    rng: Rng,
    now: Instant,
    /// When this node (re)started
    started_at: Instant,
    membership: Membership,

    term: Term,
    vote: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    log: RaftLog,
    commit: Index,
    applied: Index,

    /// Follower and candidates: when to start an election
    election_deadline: Instant,
    /// When this node last heard from a leader of its current term (for the vote lease)
    leader_contact: Option<Instant>,
    /// Votes received in the current (pre-)election, from peers; own vote counted separately
    votes: Vec<(NodeId, bool)>,

    /// Leader: progress of every other voter
    progress: Vec<(NodeId, Progress)>,
    heartbeat_deadline: Instant,
    check_quorum_deadline: Instant,
    uncommitted_bytes: usize,
    /// Leader: appends may need sending (new entries, new commit, acks)
    replication_pending: bool,
    /// Leader: index of the first entry of its term (its no-op)
    term_start_index: Index,
    /// Leader: the leadership transfer under way
    transfer: Option<Transfer>,
    /// Reads waiting and reads ready
    reads: Reads,
    /// Snapshots taken, sent and received
    snapshots: Snapshots,
    /// Configuration entries in the log and the membership before them
    memberships: MembershipLog,

    persist: PersistTracker,
    /// Messages ready to send
    outbox: VecDeque<Outgoing>,
    /// Messages waiting for a write to become durable
    held: VecDeque<(WriteId, Outgoing)>,
}

impl Raft {
    /// A node that starts (or restarts) from `recovered`, among `voters`, at time `now`
    ///
    /// `voters` is the group's first membership, used only when neither the recovered snapshot
    /// nor the log holds one. A node joining an existing group starts with no voters: it
    /// campaigns for nothing and learns the membership from the leader's log or snapshot.
    ///
    /// Fails on an invalid `config`; see [`Raft::recover`] for checking a recovered log.
    pub fn new(
        config: Config,
        voters: &[NodeId],
        recovered: Recovered,
        now: Instant,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        if config.max_outbox_msgs < 4 * (voters.len() + 1) {
            return Err(ConfigError {
                field: "max_outbox_msgs",
                reason: "must be at least four messages per member, or every input answers Busy",
            });
        }
        let base = recovered
            .snapshot
            .as_ref()
            .map_or(LogId::default(), |s| s.last);
        let base_membership = match &recovered.snapshot {
            Some(s) => s.membership.clone(),
            None => Membership::new(voters),
        };
        let entries: Vec<Entry> = recovered
            .entries
            .into_iter()
            .filter(|e| e.index > base.index)
            .collect();
        let memberships = MembershipLog {
            base: base_membership,
            entries: entries
                .iter()
                .filter_map(|e| reconfig::decode_membership(e).map(|m| (e.index, m)))
                .collect(),
        };
        let membership = memberships.latest().clone();
        let disk_last = base.index + entries.len() as Index;
        let mut node = Raft {
            rng: Rng::new(config.seed),
            now,
            started_at: now,
            membership,
            term: recovered.hard_state.term,
            vote: recovered.hard_state.vote,
            role: Role::Follower,
            leader: None,
            log: RaftLog::after(base, entries),
            commit: base.index,
            applied: base.index,
            election_deadline: now,
            leader_contact: None,
            votes: Vec::new(),
            progress: Vec::new(),
            heartbeat_deadline: now,
            check_quorum_deadline: now,
            uncommitted_bytes: 0,
            replication_pending: false,
            term_start_index: 0,
            transfer: None,
            reads: Reads::default(),
            snapshots: Snapshots {
                current: recovered.snapshot,
                ..Snapshots::default()
            },
            memberships,
            persist: PersistTracker::recovered(recovered.hard_state, disk_last),
            outbox: VecDeque::new(),
            held: VecDeque::new(),
            config,
        };
        node.reset_election_deadline();
        Ok(node)
    }

    /// Checks a recovered state before handing it to [`Raft::new`]: the log contiguous and
    /// reaching the entry after the snapshot, terms never decreasing and never above the hard
    /// state's term, and agreeing with the snapshot where they overlap
    pub fn recover(recovered: &Recovered) -> Result<(), RecoveryError> {
        let base = recovered
            .snapshot
            .as_ref()
            .map_or(LogId::default(), |s| s.last);
        let first = recovered
            .entries
            .first()
            .map_or(base.index + 1, |e| e.index);
        if first > base.index + 1 {
            return Err(RecoveryError::NotContiguous {
                position: 0,
                expected: base.index + 1,
                found: first,
            });
        }
        let mut prev_term = 0;
        for (position, entry) in recovered.entries.iter().enumerate() {
            let expected = first + position as Index;
            if entry.index != expected {
                return Err(RecoveryError::NotContiguous {
                    position,
                    expected,
                    found: entry.index,
                });
            }
            if entry.term < prev_term || (entry.index == base.index && entry.term != base.term) {
                return Err(RecoveryError::TermsOutOfOrder { index: entry.index });
            }
            if entry.term > recovered.hard_state.term {
                return Err(RecoveryError::TermAheadOfHardState {
                    index: entry.index,
                    entry_term: entry.term,
                    hard_state_term: recovered.hard_state.term,
                });
            }
            prev_term = entry.term;
        }
        Ok(())
    }

    // ----- commands -----

    /// Proposes a command; on success returns the id the entry will be applied under
    ///
    /// The entry is committed once a majority holds it durably; watch
    /// [`poll_apply`](Self::poll_apply) for an entry with the returned id. Another id at that
    /// index means the proposal was lost to a leader change.
    pub fn propose(
        &mut self,
        now: Instant,
        data: impl Into<Payload>,
    ) -> Result<LogId, ProposeError> {
        self.observe_time(now);
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { hint: self.leader });
        }
        let data = data.into();
        if data.len() > self.config.max_entry_bytes {
            return Err(ProposeError::TooLarge {
                size_bytes: data.len(),
                max_bytes: self.config.max_entry_bytes,
            });
        }
        let size = data.len() + ENTRY_OVERHEAD_BYTES;
        let uncommitted_full = self.uncommitted_bytes > 0
            && self.uncommitted_bytes + size > self.config.max_uncommitted_bytes;
        if uncommitted_full || self.log.bytes() + size > self.config.max_log_bytes {
            return Err(ProposeError::Busy);
        }
        if let Some(t) = self.transfer {
            return Err(ProposeError::Transferring { target: t.target });
        }
        if self.outbox_room() == 0 {
            return Err(ProposeError::Busy);
        }
        let id = LogId::new(self.term, self.log.last_index() + 1);
        self.log.push(Entry {
            term: id.term,
            index: id.index,
            kind: EntryKind::Command,
            data,
        });
        self.uncommitted_bytes += size;
        self.replication_pending = true;
        Ok(id)
    }

    // ----- inputs -----

    /// A message `message` arrived from node `from`
    ///
    /// Messages from unknown nodes, of stale terms or with impossible contents are dropped or
    /// answered as Raft says; they never cause a panic.
    pub fn handle_message(
        &mut self,
        now: Instant,
        from: NodeId,
        message: Message,
    ) -> Result<(), Busy> {
        self.observe_time(now);
        if self.outbox_room() == 0 {
            return Err(Busy);
        }
        if from == self.id() {
            return Ok(());
        }
        self.step(from, message);
        Ok(())
    }

    /// The time returned by [`poll_timeout`](Self::poll_timeout) has come (calling it early or
    /// late is harmless)
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), Busy> {
        self.observe_time(now);
        if self.outbox_room() == 0 {
            return Err(Busy);
        }
        if self.role == Role::Leader {
            self.check_transfer_deadline();
            if now >= self.check_quorum_deadline {
                self.check_quorum_deadline = now + self.config.election_timeout_min;
                if self.config.check_quorum && !self.quorum_active() {
                    self.become_follower(self.term, None);
                    return Ok(());
                }
            }
            if now >= self.heartbeat_deadline {
                self.broadcast_heartbeat();
            }
        } else {
            self.expire_forwarded_reads();
            if now >= self.election_deadline && self.membership.is_voter(self.id()) {
                self.start_election();
            }
        }
        Ok(())
    }

    /// Every write up to and including `id` is durable
    pub fn handle_persisted(&mut self, now: Instant, id: WriteId) {
        self.observe_time(now);
        if let Some(installed) = self.persist.persisted(id) {
            self.snapshots.restore = Some(installed);
        }
        while let Some((barrier, _)) = self.held.front() {
            if !self.persist.is_durable(*barrier) {
                break;
            }
            if let Some((_, out)) = self.held.pop_front() {
                self.outbox.push_back(out);
            }
        }
        match self.role {
            Role::Leader => self.maybe_commit(),
            Role::Candidate => self.check_election_result(),
            _ => {}
        }
    }

    // ----- outputs -----

    /// The next write to make durable, if any (see [`Write`] for its order)
    #[must_use]
    pub fn poll_write(&mut self) -> Option<Write> {
        let hard_state = self.hard_state();
        self.persist.next_write(
            hard_state,
            &mut self.log,
            self.config.max_unpersisted_writes,
        )
    }

    /// The next message to send, if any
    #[must_use]
    pub fn poll_message(&mut self) -> Option<Outgoing> {
        if self.role == Role::Leader {
            if self.replication_pending {
                self.replication_pending = false;
                self.send_appends();
                self.request_snapshot_chunks();
            }
            if self.reads.round_wanted {
                self.broadcast_heartbeat();
            }
        }
        self.outbox.pop_front()
    }

    /// The next committed entry to apply, in index order, if any
    ///
    /// Only entries durable on this node are handed out.
    #[must_use]
    pub fn poll_apply(&mut self) -> Option<Entry> {
        if self.snapshots.restore.is_some() {
            return None; // the application restores the snapshot first
        }
        let limit = self.commit.min(self.durable_index());
        if self.applied >= limit {
            return None;
        }
        let entry = self.log.get(self.applied + 1)?.clone();
        self.applied += 1;
        self.snapshots.applied_bytes += entry.size_bytes();
        self.maybe_ask_snapshot();
        Some(entry)
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.role {
            Role::Leader => {
                let next = self.heartbeat_deadline.min(self.check_quorum_deadline);
                Some(self.transfer.map_or(next, |t| next.min(t.deadline)))
            }
            _ => {
                let election = self
                    .membership
                    .is_voter(self.id())
                    .then_some(self.election_deadline);
                match (election, self.forwarded_read_deadline()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        }
    }

    // ----- internals shared by the role files -----

    fn observe_time(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    /// How many more messages the outbox takes before inputs must answer `Busy`
    fn outbox_room(&self) -> usize {
        let reserve = self.progress.len() + self.membership.voters().len() + 2;
        self.config
            .max_outbox_msgs
            .saturating_sub(self.queued_messages() + reserve)
    }

    /// Queues `message` to `to`, held back until the state it reflects is durable
    fn send(&mut self, to: NodeId, message: Message) {
        let out = Outgoing {
            from: self.id(),
            to,
            message,
        };
        let barrier = self.persist.barrier(&self.log);
        #[cfg(feature = "planted-vote-before-durable")]
        let barrier = barrier.filter(|_| !matches!(out.message, Message::VoteResponse { .. }));
        #[cfg(feature = "planted-ack-before-durable")]
        let barrier = barrier.filter(|_| !matches!(out.message, Message::AppendResponse { .. }));
        match barrier {
            Some(id) => self.held.push_back((id, out)),
            None => self.outbox.push_back(out),
        }
    }

    /// Queues a leader's message, which depends on no pending write: the leader's term and vote
    /// were durable before it won, and it may send entries before its own append completes
    fn send_now(&mut self, to: NodeId, message: Message) {
        self.outbox.push_back(Outgoing {
            from: self.id(),
            to,
            message,
        });
    }

    fn reset_election_deadline(&mut self) {
        let min = self.config.election_timeout_min.as_micros();
        let max = self.config.election_timeout_max.as_micros();
        let timeout =
            crate::time::Duration::from_micros(self.rng.range(min, max.max(min.saturating_add(1))));
        self.election_deadline = self.now + timeout;
    }
}
