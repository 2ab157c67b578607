//! The node's WAL threads: one per group's [`Storage`], one batch of requests at a time
//!
//! The driver hands over [`WalOp`]s without ever blocking (the Raft core bounds how many
//! writes are outstanding); each group's thread takes everything queued for it, applies it in
//! order, persisting consecutive writes with one [`Storage::write_batch`] (one `fdatasync`
//! per batch), and reports each result through the `done` callback. Groups have a thread each
//! so their syncs run in parallel: a node leading two groups waits for one sync time per
//! round, not two (their logs are separate files, so one sync cannot cover both).
//! A storage error is fatal: the thread reports it and stops, and the node stops too (the
//! in-memory view of a failed storage may be stale, so nothing is retried).
//!
//! Snapshot work takes time in proportion to the state, so it runs on worker threads of its
//! own, never on a WAL thread (which would hold up the group's writes) nor on the node's loop:
//! a snapshot taken here is encoded piece by piece into a file by a worker, then handed to
//! the group's WAL thread, which makes it current in order with the group's writes (unless a
//! newer one was installed meanwhile) and reports [`WalDone::SnapshotSaved`]; a snapshot to
//! restore is streamed from its file into the state machine's decoder by a worker, which
//! reports [`WalDone::SnapshotLoaded`] with the built state.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::Instant;

use shale_core::controller::GroupId;
use shale_core::raft::Write;

use crate::Storage;
use crate::storage::{BuiltSnapshot, Disk, build_snapshot, load_snapshot};
use shale_core::node::{WalDone, WalOp};

/// Most operations taken into one batch
pub const WAL_MAX_BATCH: usize = 4096;

/// What the WAL thread reports
#[derive(Debug)]
pub enum WalEvent {
    /// An operation finished
    Done(WalDone),
    /// A storage operation failed; the thread has stopped
    Failed(String),
    /// A snapshot was encoded and synced (for metrics; the node ignores it)
    SnapshotBuilt {
        /// The group
        gid: GroupId,
        /// Its size
        bytes: u64,
        /// How long encoding and syncing took
        took: std::time::Duration,
    },
    /// A snapshot was read and decoded (for metrics; the node learns of it through
    /// [`WalDone::SnapshotLoaded`])
    SnapshotRestored {
        /// The group
        gid: GroupId,
        /// Its size
        bytes: u64,
        /// How long reading and decoding took
        took: std::time::Duration,
    },
    /// A batch of writes was persisted with one sync (for metrics; the node ignores it)
    Synced {
        /// The group
        gid: GroupId,
        /// Writes in the batch
        writes: usize,
        /// Bytes of entry payloads in the batch
        bytes: u64,
        /// How long writing and syncing the batch took
        took: std::time::Duration,
    },
}

/// What a group's WAL thread does, in order
enum WalJob {
    /// An operation of the core
    Op(WalOp),
    /// Make a snapshot a worker built current
    Adopt(BuiltSnapshot),
}

type Done = Arc<dyn Fn(WalEvent) -> bool + Send + Sync>;

/// The handle of a node's WAL threads and snapshot workers
pub struct Wal {
    txs: BTreeMap<GroupId, Sender<(GroupId, WalJob)>>,
    dirs: BTreeMap<GroupId, (Arc<dyn Disk>, PathBuf)>,
    threads: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    done: Done,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("groups", &self.dirs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Moves each of `storages` onto a WAL thread of its own; they report through `done`
    /// (which returns `false` once nobody listens)
    pub fn start(
        storages: BTreeMap<GroupId, Storage>,
        done: impl Fn(WalEvent) -> bool + Send + Sync + 'static,
    ) -> std::io::Result<Wal> {
        let done: Done = Arc::new(done);
        let mut wal = Wal {
            txs: BTreeMap::new(),
            dirs: BTreeMap::new(),
            threads: Vec::new(),
            workers: Vec::new(),
            done: done.clone(),
        };
        for (gid, storage) in storages {
            let (tx, rx) = channel();
            let done = done.clone();
            wal.dirs
                .insert(gid, (storage.disk().clone(), storage.dir().to_path_buf()));
            let thread = std::thread::Builder::new()
                .name(format!("shale-wal-g{gid}"))
                .spawn(move || run(BTreeMap::from([(gid, storage)]), &rx, |e| done(e)))?;
            wal.txs.insert(gid, tx);
            wal.threads.push(thread);
        }
        Ok(wal)
    }

    /// Hands `op` of group `gid` to its WAL thread, or to a snapshot worker; never blocks
    pub fn submit(&mut self, gid: GroupId, op: WalOp) {
        let (Some(tx), Some(dir)) = (self.txs.get(&gid), self.dirs.get(&gid)) else {
            return;
        };
        self.workers.retain(|w| !w.is_finished());
        let done = self.done.clone();
        let spawned = match op {
            WalOp::SaveSnapshot { meta, encoder } => {
                let (tx, (disk, dir)) = (tx.clone(), dir.clone());
                std::thread::Builder::new()
                    .name(format!("shale-snap-g{gid}"))
                    .spawn(move || {
                        let started = Instant::now();
                        match build_snapshot(&*disk, &dir, meta, encoder) {
                            Ok(built) => {
                                let bytes = built.meta().size_bytes;
                                done(WalEvent::SnapshotBuilt {
                                    gid,
                                    bytes,
                                    took: started.elapsed(),
                                });
                                // A stopped WAL thread already reported why.
                                let _ = tx.send((gid, WalJob::Adopt(built)));
                            }
                            Err(e) => {
                                done(WalEvent::Failed(format!("group {gid}: {e}")));
                            }
                        }
                    })
            }
            WalOp::LoadSnapshot { index, decoder } => {
                let (disk, dir) = dir.clone();
                std::thread::Builder::new()
                    .name(format!("shale-load-g{gid}"))
                    .spawn(move || {
                        let started = Instant::now();
                        let event = match load_snapshot(&*disk, &dir, Some(index), decoder) {
                            Ok(loaded) => {
                                if let Some((meta, _)) = &loaded {
                                    done(WalEvent::SnapshotRestored {
                                        gid,
                                        bytes: meta.size_bytes,
                                        took: started.elapsed(),
                                    });
                                }
                                WalEvent::Done(WalDone::SnapshotLoaded {
                                    gid,
                                    index,
                                    state: loaded.map(|(_, state)| state),
                                })
                            }
                            Err(e) => WalEvent::Failed(format!("group {gid}: {e}")),
                        };
                        done(event);
                    })
            }
            op => {
                // A stopped thread already reported why.
                let _ = tx.send((gid, WalJob::Op(op)));
                return;
            }
        };
        match spawned {
            Ok(worker) => self.workers.push(worker),
            Err(e) => {
                (self.done)(WalEvent::Failed(format!(
                    "group {gid}: cannot start a snapshot worker: {e}"
                )));
            }
        }
    }

    /// Stops the threads once they have handled everything queued (snapshot workers finish
    /// what they started first)
    pub fn stop(&mut self) {
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.txs.clear();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    mut storages: BTreeMap<GroupId, Storage>,
    rx: &Receiver<(GroupId, WalJob)>,
    mut done: impl FnMut(WalEvent) -> bool,
) {
    let mut batch = Vec::new();
    let mut pending: BTreeMap<GroupId, Vec<Write>> = BTreeMap::new();
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < WAL_MAX_BATCH {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let result = handle_batch(&mut storages, &mut batch, &mut pending, &mut done);
        if let Err(reason) = result {
            done(WalEvent::Failed(reason));
            return;
        }
    }
}

fn handle_batch(
    storages: &mut BTreeMap<GroupId, Storage>,
    batch: &mut Vec<(GroupId, WalJob)>,
    pending: &mut BTreeMap<GroupId, Vec<Write>>,
    done: &mut impl FnMut(WalEvent) -> bool,
) -> Result<(), String> {
    for (gid, job) in batch.drain(..) {
        let Some(storage) = storages.get_mut(&gid) else {
            continue;
        };
        if let WalJob::Op(WalOp::Write(write)) = job {
            pending.entry(gid).or_default().push(write);
            continue;
        }
        // Anything else sees the writes queued before it.
        flush(gid, storage, pending, done)?;
        let event = match job {
            WalJob::Op(WalOp::ReadChunk {
                to,
                index,
                offset,
                max_bytes,
            }) => WalDone::Chunk {
                gid,
                to,
                index,
                offset,
                data: storage.read_snapshot_chunk(index, offset, max_bytes).ok(),
            },
            WalJob::Adopt(built) => {
                let (index, size) = (built.meta().last.index, built.meta().size_bytes);
                let adopted = storage
                    .adopt_snapshot(built)
                    .map_err(|e| format!("group {gid}: {e}"))?;
                WalDone::SnapshotSaved {
                    gid,
                    index,
                    size_bytes: adopted.then_some(size),
                }
            }
            // Writes are batched above; snapshots are the workers' (see Wal::submit).
            WalJob::Op(_) => continue,
        };
        if !done(WalEvent::Done(event)) {
            return Ok(());
        }
    }
    let gids: Vec<GroupId> = pending.keys().copied().collect();
    for gid in gids {
        if let Some(storage) = storages.get_mut(&gid) {
            flush(gid, storage, pending, done)?;
        }
    }
    Ok(())
}

/// Persists the writes queued for `gid` with one sync and reports them
fn flush(
    gid: GroupId,
    storage: &mut Storage,
    pending: &mut BTreeMap<GroupId, Vec<Write>>,
    done: &mut impl FnMut(WalEvent) -> bool,
) -> Result<(), String> {
    let Some(writes) = pending.remove(&gid) else {
        return Ok(());
    };
    let Some(last) = writes.last().map(|w| w.id) else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    storage
        .write_batch(&writes)
        .map_err(|e| format!("group {gid}: {e}"))?;
    let took = started.elapsed();
    done(WalEvent::Done(WalDone::Persisted { gid, id: last }));
    let bytes = writes
        .iter()
        .flat_map(|w| &w.entries)
        .map(|e| e.data.as_bytes().len() as u64)
        .sum();
    done(WalEvent::Synced {
        gid,
        writes: writes.len(),
        bytes,
        took,
    });
    Ok(())
}
