//! A replicated state machine over one Raft node: commands in, results out
//!
//! [`Replica`] pairs a [`Raft`] node with an application [`StateMachine`]. The application
//! proposes typed commands with a token of its choosing; when the command's entry is applied,
//! the result comes out of [`Replica::poll_result`] with that token (on the replica that
//! proposed it).
//!
//! Snapshots never stall the replica's loop, whatever the state's size (see [`snapshot`]):
//! when Raft asks for one, the replica freezes a view of its state and hands the runtime an
//! encoder ([`Replica::poll_snapshot_to_store`]); the runtime encodes and stores it where it
//! likes, then reports it to the Raft node (`raft_mut().handle_snapshot_taken`). When a
//! snapshot was installed from the leader, the replica applies nothing until the runtime has
//! decoded the stored snapshot with [`Replica::restorer`] (again where it likes) and handed the
//! built state to [`Replica::install`], which swaps it in at once. What the state machine lets
//! go of, and the state an install replaces, come out of [`Replica::poll_release`] for the
//! runtime to drop off its loop.
//!
//! The runtime still moves the Raft node's bytes: it drains [`Replica::raft_mut`]'s writes
//! and messages and feeds it messages and timeouts exactly as for a bare Raft node, then calls
//! [`Replica::process`] to apply what became committed.

pub mod snapshot;

use alloc::boxed::Box;
use alloc::collections::VecDeque;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::raft::{EntryKind, Index, LogId, ProposeError, Raft, SnapshotMeta, SnapshotTask};
use crate::time::Instant;

pub use snapshot::{
    Release, RestoredState, SnapshotDecoder, SnapshotEncoder, SnapshotError, WholeDecoder,
    WholeEncoder, decode_all, encode_to_vec,
};

/// The application a [`Replica`] replicates
pub trait StateMachine: Sized + Send + 'static {
    /// A command, as proposed and stored in the log
    type Command: Serialize + DeserializeOwned;
    /// What applying a command returns
    type Output;
    /// Applies the command at log `index`; must be deterministic
    fn apply(&mut self, index: Index, command: Self::Command) -> Self::Output;
    /// A frozen view of the whole state as an encoder, taken in O(1) or O(log n): later
    /// applies do not change what it encodes, and the encoding itself runs later, elsewhere
    fn snapshot(&self) -> Box<dyn SnapshotEncoder>;
    /// A decoder that builds a state of this machine (of type `Self`) from snapshot bytes;
    /// settings that are not in the snapshot come from `self`
    fn restorer(&self) -> Box<dyn SnapshotDecoder>;
    /// The next thing the machine let go of, for the runtime to drop off its loop
    fn poll_release(&mut self) -> Option<Release> {
        None
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

/// A snapshot for the runtime to encode and store durably before calling
/// `raft_mut().handle_snapshot_taken(now, index, size_bytes)`
#[derive(Debug)]
pub struct SnapshotToStore {
    /// The last index it covers
    pub index: Index,
    /// The frozen state, to encode
    pub encoder: Box<dyn SnapshotEncoder>,
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
    /// A snapshot was installed and the runtime must decode it and [`Replica::install`] it
    restore_wanted: Option<SnapshotMeta>,
    releases: VecDeque<Release>,
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
            releases: VecDeque::new(),
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

    /// The state machine as applied so far (stale while [`restore_wanted`](Self::restore_wanted)
    /// names a snapshot: nothing may be served from it then)
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
        while let Some(release) = self.state.poll_release() {
            self.releases.push_back(release);
        }
        while let Some(task) = self.raft.poll_snapshot_task() {
            match task {
                SnapshotTask::Take { .. } => {
                    let index = self.raft.applied_index();
                    self.to_store.push_back(SnapshotToStore {
                        index,
                        encoder: self.state.snapshot(),
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

    /// The next snapshot to encode and store, if any
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

    /// The next thing to drop off the loop (a deleted shard, a replaced state), if any
    #[must_use]
    pub fn poll_release(&mut self) -> Option<Release> {
        self.releases.pop_front()
    }

    /// The snapshot the runtime must decode and [`install`](Self::install), if one was
    /// installed
    pub fn restore_wanted(&self) -> Option<&SnapshotMeta> {
        self.restore_wanted.as_ref()
    }

    /// A decoder for stored snapshot bytes of this machine, to run wherever the runtime likes
    pub fn restorer(&self) -> Box<dyn SnapshotDecoder> {
        self.state.restorer()
    }

    /// Swaps in a state decoded by [`restorer`](Self::restorer) (after an install, or at
    /// start-up) in O(1); the replaced state comes out of [`poll_release`](Self::poll_release).
    /// `false` (and nothing changes) if `restored` is not a state of this machine.
    pub fn install(&mut self, restored: RestoredState) -> bool {
        let Ok(state) = restored.downcast::<S>() else {
            return false;
        };
        let old = core::mem::replace(&mut self.state, state);
        self.releases.push_back(Release::new(old));
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

    /// Decodes the stored snapshot `bytes` here and now and installs the state (at start-up,
    /// or in tests); `false` if they do not decode, in which case nothing changes
    pub fn restore(&mut self, bytes: &[u8]) -> bool {
        match decode_all(self.restorer(), bytes) {
            Ok(restored) => self.install(restored),
            Err(_) => false,
        }
    }
}
