//! Linearizable reads: ReadIndex on the leader and through followers, opt-in leader leases,
//! and explicitly stale (serializable) reads
//!
//! A read is confirmed by a heartbeat round that started after the read arrived and that a
//! quorum answered: then this node was still leader when the read arrived, and every write
//! acknowledged before it is committed at or below the read index. Many reads share one round.
//! A new leader answers reads only once an entry of its own term is committed (before that its
//! commit index may lag what its predecessors committed).
//!
//! Reference: thesis §6.4 (processing read-only queries), §6.4.1 (leases).

use alloc::collections::VecDeque;

use super::Raft;
use super::errors::ReadError;
use super::message::Message;
use super::types::{Index, NodeId, Role};
use crate::time::Instant;

/// How fresh a read must be
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadConsistency {
    /// Reflects every write acknowledged before the read was asked (ReadIndex, or a lease when
    /// configured)
    Linearizable,
    /// Whatever this node has applied, possibly stale; never waits and never fails
    Serializable,
}

/// A read that may now be served (once the state machine has applied `index`), or failed
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadState {
    /// The caller's identifier of the read
    pub ctx: u64,
    /// The index the state machine must have applied before serving the read, or why the read
    /// cannot be served
    pub result: Result<Index, ReadError>,
}

#[derive(Clone, Copy, Debug)]
struct PendingRead {
    ctx: u64,
    /// The follower that forwarded the read, or `None` for a read asked on this node
    from: Option<NodeId>,
    index: Index,
    /// The heartbeat round that must be confirmed
    round: u64,
}

/// Read bookkeeping of one node
#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// Leader: reads waiting for their round
    pending: VecDeque<PendingRead>,
    /// Follower: reads forwarded to the leader, by context, with when each gives up
    forwarded: VecDeque<(u64, Instant)>,
    /// Output queue
    ready: VecDeque<ReadState>,
    /// Leader: the latest heartbeat round started
    pub(crate) round: u64,
    /// Leader: the latest round a quorum answered
    confirmed_round: u64,
    /// Leader: reads wait for a round that has not started; it starts when messages are next
    /// polled, so every read asked before then shares it
    pub(crate) round_wanted: bool,
    /// Leader: rounds in flight and when each was sent (for the lease)
    round_sent_at: VecDeque<(u64, Instant)>,
    /// Leader: lease reads are safe until this time
    lease_until: Option<Instant>,
    /// Leader: leadership was handed over this term (TimeoutNow sent): no lease any more
    pub(crate) lease_revoked: bool,
}

/// Rounds remembered for the lease; older unanswered rounds are forgotten
const ROUNDS_REMEMBERED: usize = 64;

impl Reads {
    pub(crate) fn pending_count(&self) -> usize {
        self.pending.len() + self.forwarded.len()
    }
}

impl Raft {
    /// Asks for a read with the caller's identifier `ctx`; the answer comes out of
    /// [`poll_read`](Self::poll_read)
    ///
    /// Serializable reads answer at once with the applied index. Linearizable reads on the
    /// leader wait for a heartbeat round (or use the lease); on a follower they are forwarded to
    /// the leader, and answered with the leader's read index.
    pub fn read(
        &mut self,
        now: Instant,
        ctx: u64,
        consistency: ReadConsistency,
    ) -> Result<(), ReadError> {
        self.observe_time(now);
        if consistency == ReadConsistency::Serializable {
            let index = self.applied;
            self.reads.ready.push_back(ReadState {
                ctx,
                result: Ok(index),
            });
            return Ok(());
        }
        if self.reads.pending_count() >= self.config.max_pending_reads || self.outbox_room() == 0 {
            return Err(ReadError::Busy);
        }
        match (self.role, self.leader) {
            (Role::Leader, _) => {
                self.register_read(ctx, None);
                Ok(())
            }
            (_, Some(leader)) => {
                let deadline = self.now + self.config.election_timeout_min;
                self.reads.forwarded.push_back((ctx, deadline));
                let term = self.term;
                self.send(leader, Message::ReadIndex { term, ctx });
                Ok(())
            }
            (_, None) => Err(ReadError::NotLeader { hint: None }),
        }
    }

    /// The next read that may be served or has failed, if any
    #[must_use]
    pub fn poll_read(&mut self) -> Option<ReadState> {
        self.reads.ready.pop_front()
    }

    /// Leader: whether linearizable reads are currently served from the lease
    pub fn lease_valid(&self) -> bool {
        self.role == Role::Leader
            && self.config.lease_reads
            && self.transfer.is_none()
            && !self.reads.lease_revoked
            && self.reads.lease_until.is_some_and(|until| self.now < until)
    }

    /// Leader: a read arrived (from this node's caller or forwarded by `from`)
    fn register_read(&mut self, ctx: u64, from: Option<NodeId>) {
        let index = self.commit.max(self.term_start_index);
        if self.config.unsafe_reads_without_quorum || self.lease_valid() {
            // The lease needs the term's first entry committed, like ReadIndex.
            if self.config.unsafe_reads_without_quorum || self.commit >= self.term_start_index {
                self.answer_read(ctx, from, Ok(index));
                return;
            }
        }
        let round = self.reads.round + 1;
        self.reads.pending.push_back(PendingRead {
            ctx,
            from,
            index,
            round,
        });
        if self.reads.confirmed_round == self.reads.round {
            // No round in flight: start one at the next drain instead of the next heartbeat.
            self.reads.round_wanted = true;
        }
    }

    fn answer_read(&mut self, ctx: u64, from: Option<NodeId>, result: Result<Index, ReadError>) {
        match from {
            None => self.reads.ready.push_back(ReadState { ctx, result }),
            Some(follower) => {
                let term = self.term;
                let index = result.ok();
                self.send_now(follower, Message::ReadIndexResponse { term, ctx, index });
            }
        }
    }

    /// Leader: records that a heartbeat round was sent now
    pub(super) fn on_round_started(&mut self) {
        self.reads.round_wanted = false;
        self.reads.round += 1;
        let round = self.reads.round;
        if self.reads.round_sent_at.len() == ROUNDS_REMEMBERED {
            self.reads.round_sent_at.pop_front();
        }
        self.reads.round_sent_at.push_back((round, self.now));
        // A lone voter confirms its own round at once.
        self.confirm_rounds();
    }

    /// Leader: a follower answered heartbeat round `round`
    pub(super) fn on_round_acked(&mut self, from: NodeId, round: u64) {
        let latest = self.reads.round;
        if let Some(pr) = self.progress_mut(from)
            && round <= latest
            && round > pr.acked_round
        {
            pr.acked_round = round;
        }
        self.confirm_rounds();
    }

    /// Leader: advances the confirmed round to what a quorum answered, renews the lease and
    /// releases the reads that round confirms
    fn confirm_rounds(&mut self) {
        let confirmed = self.quorum_value(self.reads.round, |p| p.acked_round);
        if confirmed <= self.reads.confirmed_round {
            return;
        }
        self.reads.confirmed_round = confirmed;
        while let Some(&(round, sent_at)) = self.reads.round_sent_at.front() {
            if round > confirmed {
                break;
            }
            self.reads.round_sent_at.pop_front();
            if round == confirmed && !self.reads.lease_revoked {
                let drift = if cfg!(feature = "planted-lease-without-drift") {
                    crate::time::Duration::ZERO
                } else {
                    self.config.max_clock_drift
                };
                let lease = self.config.election_timeout_min - drift;
                self.reads.lease_until = Some(sent_at + lease);
            }
        }
        self.release_reads();
    }

    /// Leader: answers the reads whose round is confirmed, once the term's first entry is
    /// committed; starts the next round if reads wait for one
    pub(super) fn release_reads(&mut self) {
        if self.role != Role::Leader || self.commit < self.term_start_index {
            return;
        }
        while let Some(&read) = self.reads.pending.front() {
            if read.round > self.reads.confirmed_round {
                break;
            }
            self.reads.pending.pop_front();
            let index = read.index.max(self.term_start_index);
            self.answer_read(read.ctx, read.from, Ok(index));
        }
        let waiting = self
            .reads
            .pending
            .front()
            .is_some_and(|r| r.round > self.reads.round);
        if waiting && self.reads.confirmed_round == self.reads.round {
            self.reads.round_wanted = true;
        }
    }

    /// Handles [`Message::ReadIndex`] from a follower
    pub(super) fn handle_read_index(&mut self, from: NodeId, ctx: u64) {
        if self.role == Role::Leader && self.reads.pending_count() < self.config.max_pending_reads {
            self.register_read(ctx, Some(from));
        } else {
            let term = self.term;
            self.send(
                from,
                Message::ReadIndexResponse {
                    term,
                    ctx,
                    index: None,
                },
            );
        }
    }

    /// Handles [`Message::ReadIndexResponse`] from the leader
    pub(super) fn handle_read_index_response(&mut self, ctx: u64, index: Option<Index>) {
        let Some(pos) = self.reads.forwarded.iter().position(|(c, _)| *c == ctx) else {
            return; // a duplicate, or a read already failed
        };
        self.reads.forwarded.remove(pos);
        let result = index.ok_or(ReadError::NotLeader { hint: self.leader });
        self.reads.ready.push_back(ReadState { ctx, result });
    }

    /// Follower: when the oldest forwarded read gives up, if any
    pub(super) fn forwarded_read_deadline(&self) -> Option<Instant> {
        self.reads.forwarded.front().map(|(_, deadline)| *deadline)
    }

    /// Follower: fails forwarded reads the leader did not answer in time (their request or
    /// answer was lost), so their slots free up and callers retry
    pub(super) fn expire_forwarded_reads(&mut self) {
        while let Some(&(ctx, deadline)) = self.reads.forwarded.front() {
            if deadline > self.now {
                break;
            }
            self.reads.forwarded.pop_front();
            self.reads.ready.push_back(ReadState {
                ctx,
                result: Err(ReadError::TimedOut),
            });
        }
    }

    /// Leadership or the known leader changed: every read in progress fails, so callers retry
    pub(super) fn fail_reads(&mut self) {
        while let Some(read) = self.reads.pending.pop_front() {
            self.answer_read(read.ctx, read.from, Err(ReadError::LeaderChanged));
        }
        while let Some((ctx, _)) = self.reads.forwarded.pop_front() {
            self.reads.ready.push_back(ReadState {
                ctx,
                result: Err(ReadError::LeaderChanged),
            });
        }
        self.reads.round_sent_at.clear();
        self.reads.lease_until = None;
        self.reads.confirmed_round = self.reads.round;
        self.reads.round_wanted = false;
    }
}
