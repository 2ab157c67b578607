//! Log replication: appends with batching and pipelining, flow control, fast backtracking,
//! heartbeats and the commit rule
//!
//! Reference: Raft paper §5.3 (log replication), §5.4.2 (committing entries from previous
//! terms), thesis §10.2.1 (the leader appends to its own disk in parallel with replication).

use alloc::vec::Vec;

use super::Raft;
use super::message::{AppendOutcome, Message};
use super::progress::{Progress, ReplicationState};
use super::types::{Entry, EntryKind, Index, LogId, NodeId, Role};

impl Raft {
    // ----- follower side -----

    pub(super) fn handle_append(
        &mut self,
        from: NodeId,
        prev: LogId,
        entries: Vec<Entry>,
        commit: Index,
    ) {
        if !entries_well_formed(prev, &entries, self.term) {
            return; // garbled: not something a correct leader sends
        }
        let (prev, entries) = self.skip_committed(prev, entries);
        let term = self.term;
        if !self.log.matches(prev) {
            let hint = self
                .log
                .find_conflict_by_term(prev.index.min(self.log.last_index()), prev.term);
            let outcome = AppendOutcome::Rejected {
                rejected_prev: prev.index,
                hint,
            };
            self.send(from, Message::AppendResponse { term, outcome });
            return;
        }
        let configs: Vec<Entry> = entries
            .iter()
            .filter(|e| e.kind == EntryKind::Membership)
            .cloned()
            .collect();
        let (match_index, first_changed) = self.log.append_after_match(prev.index, entries);
        if let Some(first_changed) = first_changed
            && (!configs.is_empty() || self.memberships.latest_index() >= first_changed)
        {
            self.sync_memberships_after_append(first_changed, &configs);
        }
        let commit = commit.min(match_index);
        if commit > self.commit {
            self.commit = commit;
        }
        let outcome = AppendOutcome::Accepted { match_index };
        self.send(from, Message::AppendResponse { term, outcome });
    }

    /// Drops entries at or below our commit index: they are committed, so they already match
    /// (and may be compacted away here); the append then continues from our commit point
    fn skip_committed(&self, prev: LogId, mut entries: Vec<Entry>) -> (LogId, Vec<Entry>) {
        if prev.index >= self.commit {
            return (prev, entries);
        }
        let skip = ((self.commit - prev.index) as usize).min(entries.len());
        entries.drain(..skip);
        let commit_term = self.log.term(self.commit).unwrap_or(0);
        (LogId::new(commit_term, self.commit), entries)
    }

    pub(super) fn handle_heartbeat(&mut self, from: NodeId, commit: Index, round: u64) {
        // The leader never sends a commit above what it knows we hold; clamp anyway.
        let commit = commit.min(self.log.last_index());
        if commit > self.commit {
            self.commit = commit;
        }
        let term = self.term;
        self.send(from, Message::HeartbeatResponse { term, round });
    }

    // ----- leader side -----

    pub(super) fn handle_append_response(&mut self, from: NodeId, outcome: AppendOutcome) {
        let last_index = self.log.last_index();
        let Some(pr) = self.progress_mut(from) else {
            return;
        };
        pr.recent_active = true;
        match outcome {
            AppendOutcome::Accepted { match_index } => {
                if match_index > last_index {
                    return; // impossible: the follower claims entries we never had
                }
                let advanced = pr.advance_match(match_index);
                let leave = match pr.state {
                    ReplicationState::Replicate => false,
                    ReplicationState::Probe { .. } => true,
                    // Only once the follower holds everything the snapshot covers.
                    ReplicationState::Snapshot { index, .. } => pr.match_index >= index,
                };
                if leave {
                    // The match point is known now: stream from it.
                    pr.become_replicate();
                }
                if advanced {
                    self.maybe_commit();
                    if self.transfer.is_some_and(|t| t.target == from) {
                        self.maybe_send_timeout_now();
                    }
                }
                self.replication_pending = true;
            }
            AppendOutcome::Rejected {
                rejected_prev,
                hint,
            } => {
                let stale = match pr.state {
                    ReplicationState::Replicate => rejected_prev <= pr.match_index,
                    ReplicationState::Probe { .. } => {
                        rejected_prev.checked_add(1) != Some(pr.next_index)
                    }
                    ReplicationState::Snapshot { .. } => true,
                };
                if stale {
                    return;
                }
                let hint_index = hint.index.min(rejected_prev);
                let probe = self.log.find_conflict_by_term(hint_index, hint.term);
                let Some(pr) = self.progress_mut(from) else {
                    return;
                };
                pr.become_probe((probe.index + 1).min(rejected_prev));
                self.replication_pending = true;
            }
        }
    }

    pub(super) fn handle_heartbeat_response(&mut self, from: NodeId, round: u64) {
        self.on_round_acked(from, round);
        let now = self.now;
        let last_index = self.log.last_index();
        let stall = self.config.heartbeat_interval.saturating_mul(2);
        let Some(pr) = self.progress_mut(from) else {
            return;
        };
        pr.recent_active = true;
        if pr.match_index >= last_index {
            return;
        }
        match pr.state {
            // The outstanding probe may be lost: send again.
            ReplicationState::Probe { .. } => pr.state = ReplicationState::Probe { paused: false },
            // Pipelined appends may be lost: if the oldest one in flight went unanswered for
            // two heartbeat intervals, find the match point again.
            ReplicationState::Replicate => {
                let stalled = pr
                    .oldest_inflight_sent_at()
                    .is_some_and(|sent| now.saturating_since(sent) >= stall);
                if stalled {
                    let next = pr.match_index + 1;
                    pr.become_probe(next);
                }
            }
            // A chunk (or the runtime's read of it) may be lost: ask again from the offset the
            // follower acknowledged.
            ReplicationState::Snapshot {
                index,
                offset,
                sent_at: Some(sent),
                ..
            } => {
                if now.saturating_since(sent) >= stall {
                    pr.state = ReplicationState::Snapshot {
                        index,
                        offset,
                        requested: false,
                        sent_at: None,
                    };
                }
            }
            ReplicationState::Snapshot { .. } => {}
        }
        self.replication_pending = true;
    }

    /// Sends every append the flow-control windows allow, and empty appends that carry news of
    /// a higher commit index
    pub(super) fn send_appends(&mut self) {
        for i in 0..self.progress.len() {
            let id = self.progress[i].0;
            self.send_appends_to(id);
        }
    }

    fn send_appends_to(&mut self, to: NodeId) {
        let now = self.now;
        let last_index = self.log.last_index();
        let commit = self.commit;
        let term = self.term;
        let (max_msgs, max_bytes) = (
            self.config.max_inflight_msgs,
            self.config.max_inflight_bytes,
        );
        let max_append = self.config.max_append_bytes;
        loop {
            let Some(pr) = self.progress(to) else { return };
            if !pr.can_send(max_msgs, max_bytes) {
                return;
            }
            let next = pr.next_index;
            let has_entries = next <= last_index;
            let commit_news = pr.sent_commit < commit.min(next - 1);
            let probing = matches!(pr.state, ReplicationState::Probe { .. });
            let match_unknown = probing && pr.match_index + 1 < next;
            if !has_entries && !commit_news && !match_unknown {
                return;
            }
            let prev_index = next - 1;
            let Some(prev_term) = self.log.term(prev_index) else {
                // The entries it needs were compacted: send the snapshot instead.
                let snapshot = self.snapshots.current.as_ref().map(|s| s.last.index);
                if let (Some(index), Some(pr)) = (snapshot, self.progress_mut(to)) {
                    pr.become_snapshot(index);
                }
                return;
            };
            let entries = if has_entries {
                self.log.slice(next, last_index, max_append)
            } else {
                Vec::new()
            };
            let sent_last = entries.last().map_or(prev_index, |e| e.index);
            let bytes: usize = entries.iter().map(Entry::size_bytes).sum();
            let Some(pr) = self.progress_mut(to) else {
                return;
            };
            pr.on_sent(sent_last, bytes, now);
            pr.sent_commit = pr.sent_commit.max(commit.min(sent_last));
            let message = Message::Append {
                term,
                prev: LogId::new(prev_term, prev_index),
                entries,
                commit,
            };
            self.send_now(to, message);
            if !has_entries || probing {
                return;
            }
        }
    }

    /// Sends a heartbeat round to every follower (also the confirmation round for reads)
    pub(super) fn broadcast_heartbeat(&mut self) {
        self.heartbeat_deadline = self.now + self.config.heartbeat_interval;
        self.on_round_started();
        let term = self.term;
        let round = self.reads.round;
        for i in 0..self.progress.len() {
            let (id, ref pr) = self.progress[i];
            let commit = self.commit.min(pr.match_index);
            self.send_now(
                id,
                Message::Heartbeat {
                    term,
                    commit,
                    round,
                },
            );
        }
    }

    /// Advances the commit index to what a majority holds durably, if it is of our term
    pub(super) fn maybe_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let own = self.persist.durable_index(&self.log);
        let committed = self.quorum_value(own, |p| p.match_index);
        // Only entries of the current term commit by counting (paper §5.4.2, figure 8).
        let of_this_term = self.log.term(committed) == Some(self.term);
        #[cfg(feature = "planted-commit-by-counting")]
        let of_this_term = of_this_term || committed > 0;
        if committed > self.commit && of_this_term {
            // Only this term's proposals were counted as uncommitted.
            let released: usize = self
                .log
                .range(self.commit.max(self.term_start_index) + 1, committed)
                .iter()
                .filter(|e| e.kind == EntryKind::Command)
                .map(Entry::size_bytes)
                .sum();
            self.uncommitted_bytes = self.uncommitted_bytes.saturating_sub(released);
            self.commit = committed;
            self.replication_pending = true;
            self.release_reads();
            self.after_commit_reconfigure();
        }
    }

    /// The highest value a quorum of voters has reached, with `own` for this node and `field`
    /// of each follower's progress for the others (0 for voters without progress)
    pub(super) fn quorum_value(&self, own: u64, field: impl Fn(&Progress) -> u64) -> u64 {
        let me = self.id();
        self.membership.committed(|id| {
            if id == me {
                own
            } else {
                self.progress(id).map_or(0, &field)
            }
        })
    }

    pub(super) fn progress_mut(&mut self, id: NodeId) -> Option<&mut super::Progress> {
        self.progress
            .iter_mut()
            .find(|(p, _)| *p == id)
            .map(|(_, p)| p)
    }
}

/// Entries follow `prev` contiguously, terms never decrease and never pass the leader's term
fn entries_well_formed(prev: LogId, entries: &[Entry], leader_term: u64) -> bool {
    if prev.term > leader_term {
        return false;
    }
    let mut expected = prev.index;
    let mut term = prev.term;
    for e in entries {
        expected = match expected.checked_add(1) {
            Some(i) => i,
            None => return false,
        };
        if e.index != expected || e.term < term || e.term > leader_term {
            return false;
        }
        term = e.term;
    }
    true
}
