//! The simulated state machine every node runs: an applied index, a rolling digest of every
//! entry applied, and a small key-value map, all snapshotted with postcard
//!
//! Command entries that decode as a [`KvOp`] (see [`crate::kv`]) are applied to the map and
//! return the operation's result; every other payload is an opaque command that only moves the
//! digest on.
//!
//! The digest is a hash chain over the applied entries (`digest_i = mix(digest_{i-1}, term_i,
//! hash_i)`), so two state machines at the same applied index have equal digests exactly when
//! they applied the same entries. The [`crate::Checker`] keeps the same chain over the
//! committed log and compares it with every restored snapshot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shale_core::raft::{
    Entry, EntryKind, Index, LogId, Payload, Raft, SnapshotMeta, SnapshotTask, Term,
};
use shale_core::time::Instant;

use crate::disk::SimDisk;
use crate::invariants::entry_hash;
use crate::kv::KvOp;
use crate::linearizability::KvOutput;

/// The digest of an empty state machine (nothing applied)
pub const EMPTY_DIGEST: u64 = 0x5348_414c_455f_4150;

/// One step of the rolling digest: `prev` followed by an entry of `term` whose
/// [`entry_hash`] is `hash`
pub fn digest_step(prev: u64, term: Term, hash: u64) -> u64 {
    let mut h = prev ^ 0x9e37_79b9_7f4a_7c15;
    for word in [term, hash] {
        h ^= word;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
    }
    h
}

/// The state machine of one simulated node
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimApp {
    /// Index of the last entry applied (0: nothing yet)
    pub applied: Index,
    /// Rolling digest of every entry applied so far ([`EMPTY_DIGEST`] when none)
    pub digest: u64,
    /// The key-value map the KV commands ([`KvOp`]) act on
    pub kv: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl SimApp {
    /// A state machine that applied nothing
    pub fn new() -> Self {
        SimApp {
            applied: 0,
            digest: EMPTY_DIGEST,
            kv: BTreeMap::new(),
        }
    }

    /// Applies `entry` (the caller hands entries over in index order); returns the result of
    /// the KV command it carries, or `None` for any other entry
    pub fn apply(&mut self, entry: &Entry) -> Option<KvOutput> {
        self.digest = digest_step(self.digest, entry.term, entry_hash(entry));
        self.applied = entry.index;
        if entry.kind != EntryKind::Command {
            return None;
        }
        KvOp::decode(entry.data.as_bytes()).map(|op| op.apply(&mut self.kv))
    }

    /// The whole state, serialized
    pub fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("serializing the simulated app cannot fail")
    }

    /// The state serialized in `data` by [`SimApp::snapshot`]
    pub fn restore(data: &[u8]) -> Result<Self, postcard::Error> {
        postcard::from_bytes(data)
    }
}

/// The state machine stored in the snapshot on `disk`, which must be `meta`
pub(crate) fn load_snapshot(disk: &SimDisk, meta: &SnapshotMeta) -> Result<SimApp, String> {
    let stored = &disk.snapshot;
    if stored.meta.as_ref() != Some(meta) {
        return Err(format!(
            "the snapshot to load is {meta:?}, but the disk holds {:?}",
            stored.meta
        ));
    }
    let app = SimApp::restore(&stored.data)
        .map_err(|e| format!("snapshot {} does not decode: {e}", meta.last))?;
    if app.applied != meta.last.index {
        return Err(format!(
            "snapshot {} holds a state machine at index {}",
            meta.last, app.applied
        ));
    }
    Ok(app)
}

/// Does what the core asks in `task` for node `raft`, whose state machine is `app` and disk
/// `disk`: a snapshot is taken of `app` and stored on `disk` (durable at once) before the core
/// is told; a chunk is read from the snapshot on `disk`, or skipped if that snapshot is not
/// (yet) there (the core asks again). Returns the snapshot taken, if one was.
pub(crate) fn serve_snapshot_task(
    raft: &mut Raft,
    app: &SimApp,
    disk: &mut SimDisk,
    task: SnapshotTask,
    now: Instant,
) -> Result<Option<LogId>, String> {
    match task {
        SnapshotTask::Take { .. } => {
            let data = app.snapshot();
            if !raft.handle_snapshot_taken(now, app.applied, data.len() as u64) {
                return Ok(None);
            }
            let meta = raft
                .snapshot()
                .cloned()
                .ok_or("took a snapshot but the core reports none")?;
            if meta.last.index != app.applied {
                return Err(format!(
                    "took a snapshot at {} but the core reports {meta:?}",
                    app.applied
                ));
            }
            let last = meta.last;
            disk.store_snapshot(meta, data);
            Ok(Some(last))
        }
        SnapshotTask::ReadChunk {
            to,
            index,
            offset,
            max_bytes,
        } => {
            let stored = &disk.snapshot;
            let len = stored.data.len() as u64;
            if stored.meta.as_ref().is_some_and(|m| m.last.index == index) && offset <= len {
                let end = offset.saturating_add(max_bytes as u64).min(len);
                let data = Payload::from(&stored.data[offset as usize..end as usize]);
                raft.handle_snapshot_chunk(now, to, index, offset, data);
            }
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shale_core::raft::EntryKind;

    fn entry(term: Term, index: Index, data: &str) -> Entry {
        Entry {
            term,
            index,
            kind: EntryKind::Command,
            data: data.into(),
        }
    }

    #[test]
    fn snapshot_round_trips_and_digest_depends_on_history() {
        let mut a = SimApp::new();
        a.apply(&entry(1, 1, "x"));
        a.apply(&entry(1, 2, "y"));
        a.kv.insert(b"k".to_vec(), b"v".to_vec());
        assert_eq!(SimApp::restore(&a.snapshot()).unwrap(), a);
        let mut b = SimApp::new();
        b.apply(&entry(1, 1, "y"));
        b.apply(&entry(1, 2, "x"));
        assert_eq!(b.applied, 2);
        assert_ne!(a.digest, b.digest);
        assert!(SimApp::restore(&[0xff; 3]).is_err());
    }

    #[test]
    fn kv_commands_change_the_map_and_opaque_ones_only_the_digest() {
        let put = KvOp::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        let cas = KvOp::Cas {
            key: b"k".to_vec(),
            expected: Some(b"x".to_vec()),
            new: b"y".to_vec(),
        };
        let command = |index, op: &KvOp| Entry {
            data: op.encode().into(),
            ..entry(1, index, "")
        };
        let mut a = SimApp::new();
        assert_eq!(a.apply(&command(1, &put)), Some(KvOutput::Done));
        assert_eq!(a.apply(&entry(1, 2, "opaque")), None);
        assert_eq!(a.apply(&command(3, &cas)), Some(KvOutput::Cas(false)));
        let noop = Entry {
            kind: EntryKind::Noop,
            ..command(4, &put)
        };
        assert_eq!(a.apply(&noop), None);
        assert_eq!(a.applied, 4);
        assert_eq!(a.kv.get(&b"k"[..]), Some(&b"v".to_vec()));
        assert_eq!(SimApp::restore(&a.snapshot()).unwrap(), a);
    }
}
