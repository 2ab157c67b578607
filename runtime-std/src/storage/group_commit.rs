//! Group commit: many writers share one [`Storage`], one `fdatasync` per batch
//!
//! A [`GroupCommit`] owns a [`Storage`] on its own thread (the WAL thread). Writers submit
//! requests over a bounded channel and block until theirs is durable. The WAL thread waits
//! for one request, then takes everything else already queued (up to
//! [`GroupCommitConfig::max_batch`] requests), persists the lot with one
//! [`Storage::write_batch`] (one log sync), and only then answers every writer in the batch.
//! Requests are applied in the order they were received, so the log stays one ordered
//! sequence.
//!
//! Two kinds of request:
//!
//! - [`GroupCommit::write`]: a full [`Write`] built by the caller, who is responsible for its
//!   indexes following the log;
//! - [`GroupCommit::append`]: a payload; the WAL thread makes it a [`EntryKind::Command`]
//!   entry at the next log index, in the current term (the term of the last hard state
//!   written), and answers with that index. Consecutive appends in one batch go into one
//!   [`Write`], so they cost one file write as well as one sync.
//!
//! After a storage error the WAL thread answers every request of the failed batch with
//! that error and stops (as [`Storage`] asks: its in-memory view may be stale); later
//! requests get [`GroupCommitError::Closed`]. Reopen the directory to continue.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;

use shale_core::raft::{Entry, EntryKind, Index, Payload, Write};

use super::{Storage, StorageError};

/// Default for [`GroupCommitConfig::max_batch`]
pub const DEFAULT_MAX_BATCH: usize = 1024;

/// Tuning of a [`GroupCommit`]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupCommitConfig {
    /// Most requests persisted by one batch (one sync); also the depth of the request queue,
    /// beyond which writers block before their request is even queued
    pub max_batch: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        GroupCommitConfig {
            max_batch: DEFAULT_MAX_BATCH,
        }
    }
}

/// Why a request did not become durable
#[derive(Clone, Debug)]
pub enum GroupCommitError {
    /// The batch holding the request failed; the WAL thread has stopped
    Storage(Arc<StorageError>),
    /// The WAL thread stopped (after an earlier error) before taking the request
    Closed,
}

impl std::fmt::Display for GroupCommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupCommitError::Storage(e) => write!(f, "group commit failed: {e}"),
            GroupCommitError::Closed => f.write_str("group commit thread has stopped"),
        }
    }
}

impl std::error::Error for GroupCommitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GroupCommitError::Storage(e) => Some(&**e),
            GroupCommitError::Closed => None,
        }
    }
}

/// Counters of a [`GroupCommit`], cumulative since it started
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Batches persisted (each ends with one log sync)
    pub batches: u64,
    /// Requests persisted
    pub requests: u64,
}

impl GroupCommitStats {
    /// Average requests per batch (0 before the first batch)
    pub fn average_batch(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.requests as f64 / self.batches as f64
        }
    }
}

/// What a writer asks for
enum Op {
    Write(Write),
    Append(Payload),
}

/// One queued request and where its answer goes
struct Request {
    op: Op,
    reply: SyncSender<Result<Option<Index>, GroupCommitError>>,
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    requests: AtomicU64,
}

/// A [`Storage`] on its own thread, persisting the requests of many writers in batches with
/// one sync each; see the [module documentation](self)
///
/// Share it by reference (it is `Sync`), e.g. with [`std::thread::scope`].
pub struct GroupCommit {
    tx: Option<SyncSender<Request>>,
    thread: Option<JoinHandle<Option<Storage>>>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Moves `storage` onto a new WAL thread
    ///
    /// # Panics
    ///
    /// If `config.max_batch` is 0, or the thread cannot be spawned.
    pub fn start(storage: Storage, config: GroupCommitConfig) -> GroupCommit {
        assert!(config.max_batch > 0, "max_batch must be at least 1");
        let (tx, rx) = sync_channel(config.max_batch);
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("shale-wal".to_owned())
            .spawn(move || run(storage, &rx, config.max_batch, &thread_counters))
            .expect("spawn the WAL thread");
        GroupCommit {
            tx: Some(tx),
            thread: Some(thread),
            counters,
        }
    }

    /// Persists `write` (indexes chosen by the caller) and returns once it is durable
    pub fn write(&self, write: Write) -> Result<(), GroupCommitError> {
        self.submit(Op::Write(write)).map(|_| ())
    }

    /// Appends `data` as a command entry at the next log index, in the current term, and
    /// returns that index once the entry is durable
    pub fn append(&self, data: Payload) -> Result<Index, GroupCommitError> {
        self.submit(Op::Append(data))?
            .ok_or(GroupCommitError::Closed)
    }

    /// Counters so far
    pub fn stats(&self) -> GroupCommitStats {
        GroupCommitStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            requests: self.counters.requests.load(Ordering::Relaxed),
        }
    }

    /// Stops the WAL thread once it has persisted every request already queued, and gives
    /// back the storage (`None` if the thread stopped on an error)
    pub fn close(mut self) -> Option<Storage> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Option<Storage> {
        drop(self.tx.take());
        self.thread.take().and_then(|t| t.join().ok().flatten())
    }

    fn submit(&self, op: Op) -> Result<Option<Index>, GroupCommitError> {
        let (reply, answer) = sync_channel(1);
        let tx = self.tx.as_ref().ok_or(GroupCommitError::Closed)?;
        tx.send(Request { op, reply })
            .map_err(|_| GroupCommitError::Closed)?;
        answer.recv().map_err(|_| GroupCommitError::Closed)?
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The WAL thread: batch, persist, answer, until every sender is gone or a batch fails
fn run(
    mut storage: Storage,
    rx: &Receiver<Request>,
    max_batch: usize,
    counters: &Counters,
) -> Option<Storage> {
    let mut next_index = next_index(&storage);
    let mut term = storage.hard_state().term;
    let mut batch: Vec<Request> = Vec::with_capacity(max_batch);
    let mut writes: Vec<Write> = Vec::new();
    let mut answers: Vec<Option<Index>> = Vec::with_capacity(max_batch);
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(request) => batch.push(request),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        // Build the writes in arrival order; runs of appends share one write.
        let mut in_append_run = false;
        for request in &mut batch {
            match &mut request.op {
                Op::Write(write) => {
                    let write = std::mem::take(write);
                    if let Some(hs) = write.hard_state {
                        term = hs.term;
                    }
                    if let Some(chunk) = write.snapshot_chunks.iter().rev().find(|c| c.install) {
                        next_index = chunk.meta.last.index + 1;
                    }
                    if let Some(last) = write.entries.last() {
                        next_index = last.index + 1;
                    }
                    writes.push(write);
                    answers.push(None);
                    in_append_run = false;
                }
                Op::Append(data) => {
                    if !in_append_run {
                        writes.push(Write::default());
                        in_append_run = true;
                    }
                    let entry = Entry {
                        term,
                        index: next_index,
                        kind: EntryKind::Command,
                        data: std::mem::take(data),
                    };
                    if let Some(w) = writes.last_mut() {
                        w.entries.push(entry);
                    }
                    answers.push(Some(next_index));
                    next_index += 1;
                }
            }
        }
        let result = storage.write_batch(&writes).map_err(Arc::new);
        writes.clear();
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters
            .requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for (request, answer) in batch.drain(..).zip(answers.drain(..)) {
            let reply = match &result {
                Ok(()) => Ok(answer),
                Err(e) => Err(GroupCommitError::Storage(Arc::clone(e))),
            };
            // A writer that gave up waiting is no concern of the WAL thread.
            let _ = request.reply.send(reply);
        }
        if result.is_err() {
            return None;
        }
    }
    Some(storage)
}

/// The index the next appended entry gets: after the stored log, else after the snapshot
fn next_index(storage: &Storage) -> Index {
    match (storage.log_range(), storage.snapshot_meta()) {
        (Some((_, last)), _) => last + 1,
        (None, Some(meta)) => meta.last.index + 1,
        (None, None) => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shale_core::raft::HardState;

    #[test]
    fn many_writers_all_durable_in_order_after_reopen() {
        const WRITERS: usize = 16;
        const PER_WRITER: usize = 50;
        let dir = tempfile::tempdir().expect("temp dir");
        let (storage, _) = Storage::open(dir.path()).expect("open");
        let gc = GroupCommit::start(storage, GroupCommitConfig { max_batch: 8 });
        gc.write(Write {
            hard_state: Some(HardState {
                term: 3,
                vote: Some(1),
            }),
            ..Write::default()
        })
        .expect("hard state");
        let mut acked: Vec<Vec<Index>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let gc = &gc;
                    s.spawn(move || {
                        (0..PER_WRITER)
                            .map(|i| {
                                let data = Payload::from(format!("{w}:{i}").into_bytes());
                                gc.append(data).expect("append")
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("writer"))
                .collect()
        });
        let stats = gc.stats();
        assert_eq!(stats.requests, (WRITERS * PER_WRITER + 1) as u64);
        assert!(stats.batches <= stats.requests);
        drop(gc.close().expect("storage back"));

        let (_storage, recovered) = Storage::open(dir.path()).expect("reopen");
        assert_eq!(recovered.hard_state.term, 3);
        assert_eq!(recovered.entries.len(), WRITERS * PER_WRITER);
        for (w, indexes) in acked.iter_mut().enumerate() {
            // Each writer's entries are in the log in submission order.
            assert!(indexes.windows(2).all(|p| p[0] < p[1]));
            for (i, &index) in indexes.iter().enumerate() {
                let entry = &recovered.entries[(index - 1) as usize];
                assert_eq!(entry.index, index);
                assert_eq!(entry.term, 3);
                assert_eq!(entry.kind, EntryKind::Command);
                assert_eq!(entry.data.as_bytes(), format!("{w}:{i}").as_bytes());
            }
        }
    }

    #[test]
    fn appends_follow_a_reopened_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        for round in 0..2u64 {
            let (storage, _) = Storage::open(dir.path()).expect("open");
            let gc = GroupCommit::start(storage, GroupCommitConfig::default());
            assert_eq!(gc.append(Payload::from("x")).expect("append"), round + 1);
            drop(gc);
        }
        let (_storage, recovered) = Storage::open(dir.path()).expect("reopen");
        assert_eq!(recovered.entries.len(), 2);
    }
}
