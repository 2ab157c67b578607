//! A replicated state machine over one Raft node: commands in, results out
//!
//! [`Replica`] pairs a [`Raft`] node with an application [`StateMachine`]. The application
//! proposes typed commands with a token of its choosing; when the command's entry is applied,
//! the result comes out of [`Replica::poll_result`] with that token (on the replica that
//! proposed it). Snapshots are the state machine's own bytes: the replica answers the Raft
//! node's snapshot tasks and restores installed snapshots by itself, handing the runtime the
//! bytes to store ([`Replica::poll_snapshot_to_store`]) and asking it for stored bytes when a
//! snapshot was installed ([`Replica::restore`]).
//!
//! The runtime still moves the Raft node's bytes: it drains [`Replica::raft_mut`]'s writes
//! and messages and feeds it messages and timeouts exactly as for a bare Raft node, then calls
//! [`Replica::process`] to apply what became committed.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::raft::{EntryKind, Index, LogId, ProposeError, Raft, SnapshotMeta, SnapshotTask};
use crate::time::Instant;

/// The application a [`Replica`] replicates
pub trait StateMachine {
    /// A command, as proposed and stored in the log
    type Command: Serialize + DeserializeOwned;
    /// What applying a command returns
    type Output;
    /// Applies the command at log `index`; must be deterministic
    fn apply(&mut self, index: Index, command: Self::Command) -> Self::Output;
    /// The whole state, to store as a snapshot
    fn snapshot(&self) -> Vec<u8>;
    /// Replaces the state by a stored snapshot; `false` if the bytes do not decode
    fn restore(&mut self, bytes: &[u8]) -> bool;
}

/// The whole of `state` as snapshot bytes (postcard), for [`StateMachine::snapshot`]
pub fn encode_state<T: Serialize>(state: &T) -> Vec<u8> {
    postcard::to_allocvec(state).unwrap_or_default()
}

/// Replaces `state` by the snapshot `bytes` made by [`encode_state`], for
/// [`StateMachine::restore`]; `false` (and `state` unchanged) if they do not decode
pub fn decode_state<T: DeserializeOwned>(state: &mut T, bytes: &[u8]) -> bool {
    match postcard::from_bytes(bytes) {
        Ok(decoded) => {
            *state = decoded;
            true
        }
        Err(_) => false,
    }
}

/// A command's result, for the replica that proposed it
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied<O> {
    /// The token given to [`Replica::propose`]
    pub token: u64,
    /// The result, or `None` when the proposal was lost (another entry took its place)
    pub output: Option<O>,
}

/// A snapshot for the runtime to store durably before calling
/// `raft_mut().handle_snapshot_taken(now, index, bytes.len())`
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotToStore {
    /// The last index it covers
    pub index: Index,
    /// The state machine's bytes
    pub bytes: Vec<u8>,
}

/// One replica of a replicated state machine (see the module docs for the loop)
#[derive(Debug)]
pub struct Replica<S: StateMachine> {
    raft: Raft,
    state: S,
    /// Proposals of this replica awaiting their entry, in log order
    waiting: VecDeque<(LogId, u64)>,
    results: VecDeque<Applied<S::Output>>,
    to_store: VecDeque<SnapshotToStore>,
    /// Chunk reads for the runtime, which holds the stored snapshot
    chunk_reads: VecDeque<SnapshotTask>,
    /// A snapshot was installed and the runtime must hand its bytes to `restore`
    restore_wanted: Option<SnapshotMeta>,
}

impl<S: StateMachine> Replica<S> {
    /// A replica of `state` driven by `raft` (already recovered)
    pub fn new(raft: Raft, state: S) -> Self {
        Replica {
            raft,
            state,
            waiting: VecDeque::new(),
            results: VecDeque::new(),
            to_store: VecDeque::new(),
            chunk_reads: VecDeque::new(),
            restore_wanted: None,
        }
    }

    /// The Raft node, to read
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The Raft node, to drive its writes, messages and timeouts
    pub fn raft_mut(&mut self) -> &mut Raft {
        &mut self.raft
    }

    /// The state machine as applied so far
    pub fn state(&self) -> &S {
        &self.state
    }

    /// Proposes `command`; its result comes out of [`poll_result`](Self::poll_result) with
    /// `token`
    pub fn propose(
        &mut self,
        now: Instant,
        token: u64,
        command: &S::Command,
    ) -> Result<LogId, ProposeError> {
        let bytes = postcard::to_allocvec(command).unwrap_or_default();
        let id = self.raft.propose(now, bytes)?;
        self.waiting.push_back((id, token));
        Ok(id)
    }

    /// Applies every committed entry to the state machine and answers the snapshot tasks; call
    /// after draining the Raft node's writes and messages
    pub fn process(&mut self) {
        // A newer installed snapshot replaces one not yet restored: storage holds the newest.
        if let Some(meta) = self.raft.poll_restore() {
            self.restore_wanted = Some(meta);
        }
        if self.restore_wanted.is_some() {
            return; // nothing applies before the snapshot is restored
        }
        while let Some(entry) = self.raft.poll_apply() {
            let output = match entry.kind {
                EntryKind::Command => postcard::from_bytes::<S::Command>(entry.data.as_bytes())
                    .ok()
                    .map(|command| self.state.apply(entry.index, command)),
                _ => None,
            };
            self.answer(entry.log_id(), output);
        }
        while let Some(task) = self.raft.poll_snapshot_task() {
            match task {
                SnapshotTask::Take { .. } => {
                    let index = self.raft.applied_index();
                    self.to_store.push_back(SnapshotToStore {
                        index,
                        bytes: self.state.snapshot(),
                    });
                }
                read @ SnapshotTask::ReadChunk { .. } => self.chunk_reads.push_back(read),
            }
        }
    }

    /// Matches an applied entry with this replica's proposals
    fn answer(&mut self, applied: LogId, output: Option<S::Output>) {
        let mut output = output;
        while let Some(&(id, token)) = self.waiting.front() {
            if id.index > applied.index {
                break;
            }
            self.waiting.pop_front();
            let mine = id == applied;
            self.results.push_back(Applied {
                token,
                output: if mine { output.take() } else { None },
            });
        }
    }

    /// The next result of this replica's proposals, if any
    #[must_use]
    pub fn poll_result(&mut self) -> Option<Applied<S::Output>> {
        self.results.pop_front()
    }

    /// The next snapshot to store, if any
    #[must_use]
    pub fn poll_snapshot_to_store(&mut self) -> Option<SnapshotToStore> {
        self.to_store.pop_front()
    }

    /// The next chunk of the stored snapshot the runtime must read for a follower
    /// ([`SnapshotTask::ReadChunk`]), answered with `raft_mut().handle_snapshot_chunk`
    #[must_use]
    pub fn poll_chunk_read(&mut self) -> Option<SnapshotTask> {
        self.chunk_reads.pop_front()
    }

    /// The snapshot the runtime must load with [`restore`](Self::restore), if one was installed
    pub fn restore_wanted(&self) -> Option<&SnapshotMeta> {
        self.restore_wanted.as_ref()
    }

    /// Loads the stored snapshot `bytes` (after an install, or at start-up); `false` if they do
    /// not decode, in which case the state is unchanged
    pub fn restore(&mut self, bytes: &[u8]) -> bool {
        if !self.state.restore(bytes) {
            return false;
        }
        self.restore_wanted = None;
        // Proposals covered by the snapshot have lost their answers.
        let index = self.raft.applied_index();
        while self
            .waiting
            .front()
            .is_some_and(|(id, _)| id.index <= index)
        {
            if let Some((_, token)) = self.waiting.pop_front() {
                self.results.push_back(Applied {
                    token,
                    output: None,
                });
            }
        }
        true
    }
}
