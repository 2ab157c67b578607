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

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use shale_core::controller::GroupId;
use shale_core::raft::Write;

use crate::Storage;
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

/// The handle of a node's WAL threads
#[derive(Debug)]
pub struct Wal {
    txs: BTreeMap<GroupId, Sender<(GroupId, WalOp)>>,
    threads: Vec<JoinHandle<()>>,
}

impl Wal {
    /// Moves each of `storages` onto a WAL thread of its own; they report through `done`
    /// (which returns `false` once nobody listens)
    pub fn start(
        storages: BTreeMap<GroupId, Storage>,
        done: impl Fn(WalEvent) -> bool + Send + Sync + 'static,
    ) -> std::io::Result<Wal> {
        let done = std::sync::Arc::new(done);
        let mut wal = Wal {
            txs: BTreeMap::new(),
            threads: Vec::new(),
        };
        for (gid, storage) in storages {
            let (tx, rx) = channel();
            let done = done.clone();
            let thread = std::thread::Builder::new()
                .name(format!("shale-wal-g{gid}"))
                .spawn(move || run(BTreeMap::from([(gid, storage)]), &rx, |e| done(e)))?;
            wal.txs.insert(gid, tx);
            wal.threads.push(thread);
        }
        Ok(wal)
    }

    /// Queues `op` for group `gid`; never blocks
    pub fn submit(&self, gid: GroupId, op: WalOp) {
        if let Some(tx) = self.txs.get(&gid) {
            // A stopped thread already reported why.
            let _ = tx.send((gid, op));
        }
    }

    /// Stops the threads once they have handled everything queued
    pub fn stop(&mut self) {
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
    rx: &Receiver<(GroupId, WalOp)>,
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
    batch: &mut Vec<(GroupId, WalOp)>,
    pending: &mut BTreeMap<GroupId, Vec<Write>>,
    done: &mut impl FnMut(WalEvent) -> bool,
) -> Result<(), String> {
    for (gid, op) in batch.drain(..) {
        let Some(storage) = storages.get_mut(&gid) else {
            continue;
        };
        if let WalOp::Write(write) = op {
            pending.entry(gid).or_default().push(write);
            continue;
        }
        // Anything else sees the writes queued before it.
        flush(gid, storage, pending, done)?;
        let event = match op {
            WalOp::Write(_) => continue,
            WalOp::SaveSnapshot { meta, bytes } => {
                storage
                    .save_snapshot(&meta, &bytes)
                    .map_err(|e| format!("group {gid}: {e}"))?;
                continue;
            }
            WalOp::ReadChunk {
                to,
                index,
                offset,
                max_bytes,
            } => WalDone::Chunk {
                gid,
                to,
                index,
                offset,
                data: storage.read_snapshot_chunk(index, offset, max_bytes).ok(),
            },
            WalOp::ReadSnapshot { index } => {
                let stored = storage
                    .read_snapshot()
                    .map_err(|e| format!("group {gid}: {e}"))?;
                WalDone::Snapshot {
                    gid,
                    index,
                    bytes: stored
                        .filter(|(meta, _)| meta.last.index == index)
                        .map(|(_, bytes)| bytes),
                }
            }
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
