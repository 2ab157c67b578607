//! Terms, roles and elections: pre-vote, vote, the vote lease, check-quorum
//!
//! Reference: Raft paper §5.2 (leader election), §5.4.1 (election restriction); thesis §9.6
//! (pre-vote, check-quorum and the vote lease that stops removed or partitioned servers from
//! disrupting a healthy leader).

use super::message::Message;
use super::progress::Progress;
use super::types::{Entry, EntryKind, LogId, NodeId, Payload, Role, Term};
use super::{Raft, ReplicationState};

impl Raft {
    /// Handles one message from a known voter (the entry point of every message)
    pub(super) fn step(&mut self, from: NodeId, message: Message) {
        let msg_term = message.term();
        if msg_term > self.term {
            match message {
                Message::PreVote { .. }
                | Message::Vote {
                    transfer: false, ..
                } if self.in_leader_lease() => {
                    // A healthy leader exists: ignore, so a partitioned node rejoining cannot
                    // unseat it (thesis §9.6).
                    return;
                }
                // A pre-vote changes nothing on the receiver, and a granted pre-vote answer
                // carries the asked term, not a term anyone is in.
                Message::PreVote { .. } | Message::PreVoteResponse { granted: true, .. } => {}
                Message::Append { .. }
                | Message::Heartbeat { .. }
                | Message::TimeoutNow { .. }
                | Message::InstallSnapshot { .. } => {
                    self.become_follower(msg_term, Some(from));
                }
                _ => self.become_follower(msg_term, None),
            }
        } else if msg_term < self.term {
            self.answer_stale(from, &message);
            return;
        }

        match message {
            Message::PreVote { term, last_log } => {
                self.handle_vote_request(from, term, last_log, true)
            }
            Message::Vote { term, last_log, .. } => {
                self.handle_vote_request(from, term, last_log, false)
            }
            Message::PreVoteResponse { term, granted } => {
                // A grant names the asked term; a refusal carries the responder's own term,
                // which is ours (a higher one already made us a follower above).
                let ours = if granted {
                    Some(term) == self.term.checked_add(1)
                } else {
                    term == self.term
                };
                if self.role == Role::PreCandidate && ours {
                    self.record_vote(from, granted);
                }
            }
            Message::VoteResponse { granted, .. } => {
                if self.role == Role::Candidate {
                    self.record_vote(from, granted);
                }
            }
            Message::Append {
                prev,
                entries,
                commit,
                ..
            } => {
                self.follow(from);
                self.handle_append(from, prev, entries, commit);
            }
            Message::Heartbeat { commit, round, .. } => {
                self.follow(from);
                self.handle_heartbeat(from, commit, round);
            }
            Message::ReadIndex { ctx, .. } => self.handle_read_index(from, ctx),
            Message::ReadIndexResponse { ctx, index, .. } => {
                if self.leader == Some(from) {
                    self.handle_read_index_response(ctx, index);
                }
            }
            Message::TimeoutNow { .. } => {
                if self.leader == Some(from) {
                    self.handle_timeout_now();
                }
            }
            Message::InstallSnapshot {
                meta,
                offset,
                data,
                done,
                ..
            } => {
                self.follow(from);
                self.handle_install_snapshot(from, meta, offset, data, done);
            }
            Message::InstallSnapshotResponse {
                index, next_offset, ..
            } => {
                if self.role == Role::Leader {
                    self.handle_snapshot_response(from, index, next_offset);
                }
            }
            Message::AppendResponse { outcome, .. } => {
                if self.role == Role::Leader {
                    self.handle_append_response(from, outcome);
                }
            }
            Message::HeartbeatResponse { round, .. } => {
                if self.role == Role::Leader {
                    self.handle_heartbeat_response(from, round);
                }
            }
        }
    }

    /// A message from an older term: tell the sender our term where that helps it move on
    fn answer_stale(&mut self, from: NodeId, message: &Message) {
        match message {
            // A stale leader learns of the new term and steps down. Without this, pre-vote and
            // check-quorum could leave it waiting forever (etcd raft does the same).
            Message::Append { .. }
            | Message::Heartbeat { .. }
            | Message::InstallSnapshot { .. } => {
                let term = self.term;
                self.send(from, Message::HeartbeatResponse { term, round: 0 });
            }
            Message::PreVote { .. } => {
                let term = self.term;
                self.send(
                    from,
                    Message::PreVoteResponse {
                        term,
                        granted: false,
                    },
                );
            }
            _ => {}
        }
    }

    /// Within an election timeout of hearing from a live leader
    ///
    /// Applies with or without check-quorum (thesis §4.2.3): it is what keeps a removed or
    /// partitioned node from unseating a leader the others still hear from.
    fn in_leader_lease(&self) -> bool {
        if self.role == Role::Leader {
            return true;
        }
        // With lease reads, a restarted node may have answered an old leader's round just before
        // crashing: it honours that leader's lease for one election timeout after starting.
        if self.config.lease_reads
            && self.now.saturating_since(self.started_at) < self.config.election_timeout_min
        {
            return true;
        }
        match (self.leader, self.leader_contact) {
            (Some(_), Some(at)) => self.now.saturating_since(at) < self.config.election_timeout_min,
            _ => false,
        }
    }

    fn handle_vote_request(&mut self, from: NodeId, term: Term, last_log: LogId, pre_vote: bool) {
        let can_vote = self.vote == Some(from)
            || (self.vote.is_none() && self.leader.is_none())
            || (pre_vote && term > self.term);
        let granted = can_vote && self.log.is_up_to_date(last_log);
        if pre_vote {
            let term = if granted { term } else { self.term };
            self.send(from, Message::PreVoteResponse { term, granted });
        } else {
            if granted {
                self.vote = Some(from);
                self.persist.mark_hard_state_dirty();
                self.reset_election_deadline();
            }
            let term = self.term;
            self.send(from, Message::VoteResponse { term, granted });
        }
    }

    fn record_vote(&mut self, from: NodeId, granted: bool) {
        if !self.votes.iter().any(|(id, _)| *id == from) {
            self.votes.push((from, granted));
        }
        self.check_election_result();
    }

    /// Decides a (pre-)election once a majority answered; our own vote counts only once durable
    pub(super) fn check_election_result(&mut self) {
        let me = self.id();
        let own_vote = match self.role {
            Role::PreCandidate => true,
            Role::Candidate => {
                let durable = self.persist.durable_hard_state();
                durable.term == self.term && durable.vote == Some(me)
            }
            _ => return,
        };
        let votes = &self.votes;
        let result = self.membership.tally(|id| {
            if id == me {
                own_vote.then_some(true)
            } else {
                votes.iter().find(|(v, _)| *v == id).map(|(_, g)| *g)
            }
        });
        match (self.role, result) {
            (Role::PreCandidate, Some(true)) => self.campaign(false),
            (Role::Candidate, Some(true)) => self.become_leader(),
            (_, Some(false)) => self.become_follower(self.term, None),
            _ => {}
        }
    }

    /// The election timeout fired: campaign (through pre-vote when configured)
    pub(super) fn start_election(&mut self) {
        if self.term == Term::MAX {
            // A peer pushed the term to its limit; there is no next term to campaign in.
            self.reset_election_deadline();
            return;
        }
        if self.config.pre_vote {
            self.become_pre_candidate();
        } else {
            self.campaign(false);
        }
    }

    fn become_pre_candidate(&mut self) {
        self.fail_reads();
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes.clear();
        self.reset_election_deadline();
        let term = self.term + 1;
        let last_log = self.log.last_log_id();
        self.broadcast_to_voters(|| Message::PreVote { term, last_log });
        self.check_election_result();
    }

    /// Becomes a candidate in the next term and asks for votes; `transfer` marks an election
    /// the old leader asked for, which voters grant despite their leader lease
    pub(super) fn campaign(&mut self, transfer: bool) {
        if self.term == Term::MAX {
            return; // a peer pushed the term to its limit: there is no next term
        }
        self.fail_reads();
        self.transfer = None;
        self.role = Role::Candidate;
        self.term += 1;
        self.vote = Some(self.id());
        self.persist.mark_hard_state_dirty();
        self.leader = None;
        self.leader_contact = None;
        self.votes.clear();
        self.reset_election_deadline();
        let term = self.term;
        let last_log = self.log.last_log_id();
        self.broadcast_to_voters(|| Message::Vote {
            term,
            last_log,
            transfer,
        });
        self.check_election_result();
    }

    fn broadcast_to_voters(&mut self, message: impl Fn() -> Message) {
        let me = self.id();
        for id in self.membership.members() {
            if id != me && self.membership.is_voter(id) {
                self.send(id, message());
            }
        }
    }

    pub(super) fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        if self.role != Role::Follower || self.leader != leader || term > self.term {
            self.fail_reads();
        }
        self.transfer = None;
        if term > self.term {
            self.term = term;
            self.vote = None;
            self.persist.mark_hard_state_dirty();
            self.leader_contact = None;
        }
        self.role = Role::Follower;
        self.leader = leader;
        if leader.is_some() {
            self.leader_contact = Some(self.now);
        }
        self.votes.clear();
        self.progress.clear();
        self.uncommitted_bytes = 0;
        self.replication_pending = false;
        self.reset_election_deadline();
    }

    /// A message from the leader of our term arrived: follow it
    fn follow(&mut self, leader: NodeId) {
        if self.role != Role::Follower || self.leader != Some(leader) {
            self.become_follower(self.term, Some(leader));
        } else {
            self.leader_contact = Some(self.now);
            self.reset_election_deadline();
        }
    }

    fn become_leader(&mut self) {
        debug_assert_eq!(self.role, Role::Candidate);
        self.role = Role::Leader;
        self.leader = Some(self.id());
        self.votes.clear();
        let next = self.log.last_index() + 1;
        let now = self.now;
        let me = self.id();
        self.progress = self
            .membership
            .members()
            .into_iter()
            .filter(|&id| id != me)
            .map(|id| (id, Progress::new(next)))
            .collect();
        debug_assert!(
            self.progress
                .iter()
                .all(|(_, p)| p.state == ReplicationState::Probe { paused: false })
        );
        self.uncommitted_bytes = 0;
        self.term_start_index = next;
        self.transfer = None;
        self.reads.lease_revoked = false;
        self.heartbeat_deadline = now + self.config.heartbeat_interval;
        self.check_quorum_deadline = now + self.config.election_timeout_min;
        // A no-op of our own term commits everything before it (paper §8, figure 8).
        self.log.push(Entry {
            term: self.term,
            index: next,
            kind: EntryKind::Noop,
            data: Payload::default(),
        });
        self.replication_pending = true;
        self.maybe_commit();
    }

    /// Check-quorum: did a majority (counting ourselves) talk to us since the last check?
    pub(super) fn quorum_active(&mut self) -> bool {
        let me = self.id();
        let progress = &self.progress;
        let active = self.membership.tally(|id| {
            if id == me {
                return Some(true);
            }
            progress
                .iter()
                .find(|(p, _)| *p == id)
                .map(|(_, p)| p.recent_active)
        });
        for (_, p) in &mut self.progress {
            p.recent_active = false;
        }
        active == Some(true)
    }
}
