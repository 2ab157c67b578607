//! Snapshots and log compaction: asking the application for snapshots, streaming them to
//! followers in chunks, and installing them
//!
//! The core never holds a whole snapshot. The application writes it (the runtime stores it)
//! and reports it with [`Raft::handle_snapshot_taken`]; the core then compacts its log. To send
//! one, the leader asks the runtime for one chunk at a time
//! ([`SnapshotTask::ReadChunk`], answered with [`Raft::handle_snapshot_chunk`]) and keeps one
//! chunk in flight per follower. A follower passes each chunk on in a [`super::Write`], so its
//! memory stays bounded too; the last chunk installs the snapshot, and once that write is
//! durable the application restores from it ([`Raft::poll_restore`]) before applying anything
//! after it. A lost chunk is resent from the follower's last acknowledged offset; a new leader,
//! or a newer snapshot, restarts the transfer from offset 0.
//!
//! Reference: Raft paper §7 (log compaction), thesis §5.

use alloc::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::Raft;
use super::membership::Membership;
use super::message::{AppendOutcome, Message};
use super::progress::ReplicationState;
use super::types::{Index, LogId, NodeId, Payload, Role, Term};
use crate::time::Instant;

/// What a snapshot covers
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SnapshotMeta {
    /// The last log entry the snapshot includes
    pub last: LogId,
    /// The group's membership as of `last`
    pub membership: Membership,
    /// Size of the snapshot's data in bytes
    pub size_bytes: u64,
}

/// Part of a snapshot being received, to be stored in order: `data` goes at `offset` of the
/// snapshot described by `meta`; `install` marks the last chunk, after which the snapshot
/// replaces the stored log entirely
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotChunk {
    /// The snapshot the chunk belongs to
    pub meta: SnapshotMeta,
    /// Where `data` starts in the snapshot, in bytes
    pub offset: u64,
    /// The bytes
    pub data: Payload,
    /// This is the last chunk: make the snapshot current and drop every stored log entry
    pub install: bool,
}

/// Work the core asks of the application or runtime for snapshots
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotTask {
    /// The log since the last snapshot passed `snapshot_threshold_bytes`: snapshot the state
    /// machine at its applied index (at least `applied`), store it durably, then call
    /// [`Raft::handle_snapshot_taken`]
    Take {
        /// The applied index when the snapshot was asked for
        applied: Index,
    },
    /// Read up to `max_bytes` of the current snapshot (ending at `index`) from `offset` and hand
    /// them to [`Raft::handle_snapshot_chunk`] for follower `to`
    ReadChunk {
        /// The follower the chunk is for
        to: NodeId,
        /// The last index of the snapshot to read from
        index: Index,
        /// Byte offset to read from
        offset: u64,
        /// Most bytes to read
        max_bytes: usize,
    },
}

/// A snapshot being received from the leader
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Receiving {
    pub(crate) term: Term,
    pub(crate) meta: SnapshotMeta,
    pub(crate) next_offset: u64,
}

/// Snapshot bookkeeping of one node
#[derive(Debug, Default)]
pub(crate) struct Snapshots {
    /// The latest snapshot this node has (taken or installed)
    pub(crate) current: Option<SnapshotMeta>,
    /// Output queue of tasks
    pub(crate) tasks: VecDeque<SnapshotTask>,
    /// A `Take` task is outstanding
    pub(crate) take_asked: bool,
    /// Bytes of entries applied since the current snapshot
    pub(crate) applied_bytes: usize,
    /// Follower: the snapshot being received
    pub(crate) receiving: Option<Receiving>,
    /// A snapshot became durable and the application must restore it before applying more
    pub(crate) restore: Option<SnapshotMeta>,
}

impl Raft {
    /// The latest snapshot this node has, if any
    pub fn snapshot(&self) -> Option<&SnapshotMeta> {
        self.snapshots.current.as_ref()
    }

    /// The next snapshot task, if any
    #[must_use]
    pub fn poll_snapshot_task(&mut self) -> Option<SnapshotTask> {
        self.snapshots.tasks.pop_front()
    }

    /// A snapshot that became durable here: the application must load its state from it now,
    /// before applying further entries ([`poll_apply`](Self::poll_apply) waits until this is
    /// taken)
    #[must_use]
    pub fn poll_restore(&mut self) -> Option<SnapshotMeta> {
        let meta = self.snapshots.restore.take()?;
        self.applied = self.applied.max(meta.last.index);
        self.snapshots.applied_bytes = 0;
        Some(meta)
    }

    /// What a snapshot of the state at `index` covers, with `size_bytes` of data: its last
    /// entry and the membership as of it (`None` when `index` is not applied, or no longer in
    /// the log). A runtime stores this meta with a snapshot it encodes elsewhere, before
    /// reporting it with [`handle_snapshot_taken`](Self::handle_snapshot_taken).
    pub fn snapshot_meta(&self, index: Index, size_bytes: u64) -> Option<SnapshotMeta> {
        if index > self.applied {
            return None;
        }
        let term = self.log.term(index)?;
        Some(SnapshotMeta {
            last: LogId::new(term, index),
            membership: self.membership_at(index),
            size_bytes,
        })
    }

    /// The snapshot asked for with [`SnapshotTask::Take`] will not come (it was overtaken by a
    /// newer one, installed from the leader): Raft asks again once its log has grown enough
    pub fn handle_snapshot_dropped(&mut self, now: Instant) {
        self.observe_time(now);
        self.snapshots.take_asked = false;
    }

    /// The application stored a snapshot of its state at `index` (at most the applied index),
    /// `size_bytes` long; the log up to it may be dropped
    ///
    /// Returns `false` (and changes nothing) if `index` is not applied, or not newer than the
    /// current snapshot.
    pub fn handle_snapshot_taken(&mut self, now: Instant, index: Index, size_bytes: u64) -> bool {
        self.observe_time(now);
        self.snapshots.take_asked = false;
        let newer = self
            .snapshots
            .current
            .as_ref()
            .is_none_or(|s| index > s.last.index);
        if !newer {
            return false;
        }
        let Some(meta) = self.snapshot_meta(index, size_bytes) else {
            return false;
        };
        self.snapshots.current = Some(meta);
        self.snapshots.applied_bytes = self.log.range_bytes(index + 1, self.applied);
        // Keep a window before the snapshot for followers slightly behind.
        let mut keep_from = index + 1;
        let mut kept = 0;
        while keep_from > self.log.offset() + 1 {
            let Some(e) = self.log.get(keep_from - 1) else {
                break;
            };
            if kept + e.size_bytes() > self.config.snapshot_trailing_bytes {
                break;
            }
            kept += e.size_bytes();
            keep_from -= 1;
        }
        // A leader also keeps what its followers in touch still need, up to
        // `catch_up_log_bytes`: a follower a little behind a busy log should catch up from
        // entries, not receive the whole snapshot (which, at scale, is the whole state).
        if self.role == Role::Leader && self.config.catch_up_log_bytes > 0 {
            let id = self.id();
            let needed = self
                .progress
                .iter()
                .filter(|(peer, pr)| *peer != id && pr.recent_active)
                .map(|(_, pr)| pr.match_index + 1)
                .min();
            if let Some(needed) = needed
                && needed < keep_from
                && needed > self.log.offset()
                && self.log.range_bytes(needed, index) <= self.config.catch_up_log_bytes
            {
                keep_from = needed;
            }
        }
        let compact = keep_from - 1;
        self.memberships.base = self.memberships.at(compact);
        self.memberships.entries.retain(|(i, _)| *i > compact);
        self.log.compact_through(compact);
        self.persist.compact_through(compact);
        // Followers receiving an older snapshot restart with this one.
        for (_, pr) in &mut self.progress {
            if let ReplicationState::Snapshot { .. } = pr.state {
                pr.become_snapshot(index);
            }
        }
        self.replication_pending = true;
        true
    }

    /// The runtime read a chunk of the current snapshot for follower `to`
    pub fn handle_snapshot_chunk(
        &mut self,
        now: Instant,
        to: NodeId,
        index: Index,
        offset: u64,
        data: Payload,
    ) {
        self.observe_time(now);
        let Some(meta) = self.snapshots.current.clone() else {
            return;
        };
        if self.role != Role::Leader || meta.last.index != index {
            return;
        }
        let Some(pr) = self.progress_mut(to) else {
            return;
        };
        let ReplicationState::Snapshot {
            index: sending,
            offset: at,
            requested: true,
            ..
        } = pr.state
        else {
            return;
        };
        if sending != index || at != offset {
            return;
        }
        let done = offset.saturating_add(data.len() as u64) >= meta.size_bytes;
        pr.state = ReplicationState::Snapshot {
            index,
            offset,
            requested: false,
            sent_at: Some(now),
        };
        let term = self.term;
        self.send_now(
            to,
            Message::InstallSnapshot {
                term,
                meta,
                offset,
                data,
                done,
            },
        );
    }

    /// Leader: asks for the next chunk for every follower that needs one
    pub(super) fn request_snapshot_chunks(&mut self) {
        let max_bytes = self.config.snapshot_chunk_bytes;
        for (id, pr) in &mut self.progress {
            if let ReplicationState::Snapshot {
                index,
                offset,
                requested: false,
                sent_at: None,
            } = pr.state
            {
                pr.state = ReplicationState::Snapshot {
                    index,
                    offset,
                    requested: true,
                    sent_at: Some(self.now),
                };
                self.snapshots.tasks.push_back(SnapshotTask::ReadChunk {
                    to: *id,
                    index,
                    offset,
                    max_bytes,
                });
            }
        }
    }

    /// Leader: a follower acknowledged snapshot data up to `next_offset` of snapshot `index`
    pub(super) fn handle_snapshot_response(
        &mut self,
        from: NodeId,
        index: Index,
        next_offset: u64,
    ) {
        let size = self
            .snapshots
            .current
            .as_ref()
            .map(|s| (s.last.index, s.size_bytes));
        let Some(pr) = self.progress_mut(from) else {
            return;
        };
        pr.recent_active = true;
        let ReplicationState::Snapshot { index: sending, .. } = pr.state else {
            return;
        };
        if sending != index {
            return;
        }
        match size {
            Some((current, size)) if current == index && next_offset < size.max(1) => {
                pr.state = ReplicationState::Snapshot {
                    index,
                    offset: next_offset,
                    requested: false,
                    sent_at: None,
                };
            }
            Some((current, _)) if current == index => {
                // Installed: replicate the log after it.
                pr.advance_match(index);
                pr.become_probe(index + 1);
            }
            _ => {}
        }
        self.replication_pending = true;
    }

    /// Follower: a chunk of the leader's snapshot arrived
    pub(super) fn handle_install_snapshot(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Payload,
        done: bool,
    ) {
        let term = self.term;
        let index = meta.last.index;
        let keep_log = self.log.matches(meta.last) && !cfg!(feature = "planted-snapshot-drops-log");
        if index <= self.commit || keep_log {
            // Everything in it is committed here already, or this log holds the snapshot's last
            // entry (and so, by log matching, everything before it): keep the log, including
            // entries after the snapshot this node may have acknowledged (Raft paper §7).
            self.snapshots.receiving = None;
            self.commit = self.commit.max(index);
            let outcome = AppendOutcome::Accepted {
                match_index: self.commit,
            };
            self.send(from, Message::AppendResponse { term, outcome });
            return;
        }
        let same = self
            .snapshots
            .receiving
            .as_ref()
            .is_some_and(|r| r.term == term && r.meta == meta);
        if !same {
            if offset != 0 {
                self.send(
                    from,
                    Message::InstallSnapshotResponse {
                        term,
                        index,
                        next_offset: 0,
                    },
                );
                return;
            }
            self.snapshots.receiving = Some(Receiving {
                term,
                meta: meta.clone(),
                next_offset: 0,
            });
        }
        let expected = self
            .snapshots
            .receiving
            .as_ref()
            .map_or(0, |r| r.next_offset);
        if offset != expected {
            // A duplicate or a chunk after a lost one: say where to resume.
            self.send(
                from,
                Message::InstallSnapshotResponse {
                    term,
                    index,
                    next_offset: expected,
                },
            );
            return;
        }
        let next_offset = offset.saturating_add(data.len() as u64);
        let install = done || next_offset >= meta.size_bytes;
        self.persist.add_snapshot_chunk(SnapshotChunk {
            meta: meta.clone(),
            offset,
            data,
            install,
        });
        if install {
            self.snapshots.receiving = None;
            self.log.install_snapshot(meta.last);
            self.memberships.base = meta.membership.clone();
            self.memberships.entries.clear();
            self.adopt_latest_membership();
            self.commit = self.commit.max(index);
            self.snapshots.current = Some(meta);
        } else if let Some(r) = self.snapshots.receiving.as_mut() {
            r.next_offset = next_offset;
        }
        let next_offset = if install {
            next_offset.max(1)
        } else {
            next_offset
        };
        self.send(
            from,
            Message::InstallSnapshotResponse {
                term,
                index,
                next_offset,
            },
        );
    }

    /// Asks the application for a snapshot now, whatever the log's size (an operator's
    /// request); `false` when one is already asked for or nothing was applied since the last
    /// snapshot. The snapshot then comes as a [`SnapshotTask::Take`] like any other.
    pub fn request_snapshot(&mut self) -> bool {
        let last = self.snapshots.current.as_ref().map_or(0, |m| m.last.index);
        if self.snapshots.take_asked || self.applied <= last {
            return false;
        }
        self.snapshots.take_asked = true;
        let applied = self.applied;
        self.snapshots
            .tasks
            .push_back(SnapshotTask::Take { applied });
        true
    }

    /// Asks the application for a snapshot once enough log was applied since the last one
    ///
    /// "Enough" grows with the state: at least `snapshot_threshold_bytes`, and at least
    /// `snapshot_log_percent` of the last snapshot's size, so that writing snapshots costs in
    /// proportion to what is written rather than to that times the state's size.
    pub(super) fn maybe_ask_snapshot(&mut self) {
        let last = self
            .snapshots
            .current
            .as_ref()
            .map_or(0, |m| m.size_bytes as u128);
        let relative = last * u128::from(self.config.snapshot_log_percent) / 100;
        let enough = relative.max(self.config.snapshot_threshold_bytes as u128);
        if !self.snapshots.take_asked && self.snapshots.applied_bytes as u128 >= enough {
            self.snapshots.take_asked = true;
            let applied = self.applied;
            self.snapshots
                .tasks
                .push_back(SnapshotTask::Take { applied });
        }
    }
}
