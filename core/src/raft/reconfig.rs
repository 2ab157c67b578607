//! Membership changes: joint consensus with automatic leave, learners, and the rules that keep
//! changes safe
//!
//! A change is an entry of kind [`EntryKind::Membership`] whose payload is the new
//! [`Membership`]. It takes effect on each node as soon as it is in that node's log (thesis
//! §4.1), and is undone if that entry is truncated. Changing voters goes through a joint
//! configuration (both the old and the new voters must agree on everything); once the joint
//! entry commits, the leader appends the final configuration by itself. Learners can be added
//! or removed directly; a learner is promoted only once it has caught up. A leader refuses a
//! change until it committed an entry of its own term (the single-server change bug, raft-dev
//! 2015) and while another is uncommitted. A leader that is not a voter of a committed
//! configuration steps down. Vote requests are judged on the candidate's log, not on the
//! receiver's view of the membership (which may be stale, or empty on a new node); a removed
//! node cannot disrupt the group because its log lacks the entry that removed it (pre-vote)
//! and voters ignore it while they hear from a leader (check-quorum).
//!
//! Reference: thesis §4.3 (joint consensus), §4.2.1 (learners), §4.2.2 (removing the leader).

use alloc::vec::Vec;

use super::Raft;
use super::errors::ChangeError;
use super::membership::Membership;
use super::progress::Progress;
use super::types::{Entry, EntryKind, Index, LogId, NodeId, Payload, Role};
use crate::time::Instant;

/// The configuration entries in the in-memory log, and the membership before them
#[derive(Debug, Default)]
pub(crate) struct MembershipLog {
    /// The membership in force at the log's compaction point
    pub(crate) base: Membership,
    /// Configuration entries held in the log, ascending by index
    pub(crate) entries: Vec<(Index, Membership)>,
}

impl MembershipLog {
    pub(crate) fn latest(&self) -> &Membership {
        self.entries.last().map_or(&self.base, |(_, m)| m)
    }

    pub(crate) fn latest_index(&self) -> Index {
        self.entries.last().map_or(0, |(i, _)| *i)
    }

    pub(crate) fn at(&self, index: Index) -> Membership {
        self.entries
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map_or_else(|| self.base.clone(), |(_, m)| m.clone())
    }
}

/// Decodes the membership carried by a configuration entry
pub(crate) fn decode_membership(entry: &Entry) -> Option<Membership> {
    if entry.kind != EntryKind::Membership {
        return None;
    }
    postcard::from_bytes(entry.data.as_bytes()).ok()
}

fn encode_membership(m: &Membership) -> Payload {
    Payload::from(postcard::to_allocvec(m).unwrap_or_default())
}

impl Raft {
    /// Changes the group's membership to `voters` and `learners` (leader only); returns the id
    /// of the entry that starts the change
    ///
    /// If the voters change, the group first enters a joint configuration, and the leader
    /// leaves it on its own once the joint entry commits; watch [`membership`](Self::membership)
    /// or the applied entries for the end. Changing only learners takes one entry.
    pub fn change_membership(
        &mut self,
        now: Instant,
        voters: &[NodeId],
        learners: &[NodeId],
    ) -> Result<LogId, ChangeError> {
        self.observe_time(now);
        if self.role != Role::Leader {
            return Err(ChangeError::NotLeader { hint: self.leader });
        }
        if self.transfer.is_some() {
            return Err(ChangeError::Transferring);
        }
        if self.commit < self.term_start_index {
            return Err(ChangeError::NotReady);
        }
        if self.membership.is_joint() || self.memberships.latest_index() > self.commit {
            return Err(ChangeError::InProgress);
        }
        if voters.is_empty() {
            return Err(ChangeError::NoVoters);
        }
        let target = Membership::with_learners(voters, learners);
        for &id in target.voters() {
            if self.membership.is_learner(id) {
                let match_index = self.progress(id).map_or(0, |p| p.match_index);
                if match_index < self.commit {
                    return Err(ChangeError::LearnerBehind {
                        id,
                        match_index,
                        commit: self.commit,
                    });
                }
            }
        }
        let next = if target.voters() == self.membership.voters() {
            target
        } else {
            self.membership.joint(&target)
        };
        Ok(self.append_membership(next))
    }

    /// The membership as of the last configuration entry in the log (committed or not)
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// Leader: appends a configuration entry and adopts it at once
    fn append_membership(&mut self, membership: Membership) -> LogId {
        let id = LogId::new(self.term, self.log.last_index() + 1);
        self.log.push(Entry {
            term: id.term,
            index: id.index,
            kind: EntryKind::Membership,
            data: encode_membership(&membership),
        });
        self.memberships.entries.push((id.index, membership));
        self.adopt_latest_membership();
        self.replication_pending = true;
        id
    }

    /// Makes the latest configuration in the log the one in force, and fits the leader's
    /// progress table to it
    pub(super) fn adopt_latest_membership(&mut self) {
        self.membership = self.memberships.latest().clone();
        if self.role != Role::Leader {
            return;
        }
        let me = self.id();
        let next = self.log.last_index() + 1;
        let members = self.membership.members();
        self.progress.retain(|(id, _)| members.contains(id));
        for id in members {
            if id != me && !self.progress.iter().any(|(p, _)| *p == id) {
                self.progress.push((id, Progress::new(next)));
            }
        }
        self.progress.sort_by_key(|(id, _)| *id);
    }

    /// Follower: after an append changed the log from index `first_changed` on (truncating
    /// what was there, if anything), forgets every configuration cached at or after it and
    /// adopts those among `appended` (the append's configuration entries) that are now in the
    /// log
    ///
    /// Everything in the log at or after `first_changed` came from this append, so the cache
    /// is rebuilt exactly, even where a new configuration replaces another at the same index.
    pub(super) fn sync_memberships_after_append(
        &mut self,
        first_changed: Index,
        appended: &[Entry],
    ) {
        #[cfg(not(feature = "planted-stale-membership"))]
        self.memberships.entries.retain(|(i, _)| *i < first_changed);
        #[cfg(feature = "planted-stale-membership")]
        {
            // The old rule: keep a cached membership wherever some membership entry is.
            let log = &self.log;
            self.memberships.entries.retain(|(i, _)| {
                *i < first_changed || log.get(*i).is_some_and(|e| e.kind == EntryKind::Membership)
            });
        }
        for e in appended.iter().filter(|e| e.index >= first_changed) {
            #[cfg(feature = "planted-stale-membership")]
            if self.memberships.entries.iter().any(|(i, _)| *i == e.index) {
                continue;
            }
            if let Some(m) = decode_membership(e) {
                self.memberships.entries.push((e.index, m));
            }
        }
        self.adopt_latest_membership();
    }

    /// Leader, after the commit index advanced: leaves a committed joint configuration, and
    /// steps down once a committed configuration no longer counts it as a voter
    pub(super) fn after_commit_reconfigure(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        // The configuration in force is committed once its entry is (one compacted into the
        // snapshot, at index 0 here, is committed by definition).
        if self.memberships.latest_index() > self.commit {
            return;
        }
        if self.membership.is_joint() {
            let final_config = self.membership.leave_joint();
            self.append_membership(final_config);
        } else if !self.membership.is_voter(self.id()) {
            self.become_follower(self.term, None);
        }
    }

    /// The membership in force at `index` (used for snapshots)
    pub(super) fn membership_at(&self, index: Index) -> Membership {
        self.memberships.at(index)
    }
}
