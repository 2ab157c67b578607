//! Random write sequences applied to the file storage and to an in-memory model, reopening
//! at random points and comparing what is recovered
//!
//! The same sequences run on the real file system and on a [`PowerCutDisk`], where a reopen
//! may follow a power cut that loses (or tears) everything not synced: every write returned
//! `Ok`, so every write must survive it.

use proptest::prelude::*;
use shale_core::raft::{
    Entry, EntryKind, HardState, Index, LogId, Membership, Recovered, SnapshotChunk, SnapshotMeta,
    Write,
};
use std::sync::Arc;

use shale_runtime_std::storage::{Cut, Disk, PowerCutDisk, StdDisk};
use shale_runtime_std::{Storage, StorageConfig};

#[derive(Clone, Debug)]
enum Op {
    Append {
        back: u8,
        count: u8,
        new_term: bool,
    },
    Vote,
    TakeSnapshot {
        pos: u8,
    },
    Compact,
    Install {
        len: u8,
    },
    Batch {
        count: u8,
    },
    Reopen,
    /// A power cut, then a reopen (a plain reopen on the real file system)
    PowerCut,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u8>(), 1..6u8, any::<bool>())
            .prop_map(|(back, count, new_term)| Op::Append { back, count, new_term }),
        1 => Just(Op::Vote),
        1 => any::<u8>().prop_map(|pos| Op::TakeSnapshot { pos }),
        1 => Just(Op::Compact),
        1 => (1..60u8).prop_map(|len| Op::Install { len }),
        1 => (1..4u8).prop_map(|count| Op::Batch { count }),
        2 => Just(Op::Reopen),
        2 => Just(Op::PowerCut),
    ]
}

#[derive(Default)]
struct Model {
    hard_state: HardState,
    snapshot: Option<(SnapshotMeta, Vec<u8>)>,
    entries: Vec<Entry>,
    next_id: u64,
}

impl Model {
    fn snap_index(&self) -> Index {
        self.snapshot.as_ref().map_or(0, |(m, _)| m.last.index)
    }

    fn last(&self) -> Index {
        self.entries.last().map_or(self.snap_index(), |e| e.index)
    }

    fn recovered(&self) -> Recovered {
        let snap = self.snap_index();
        Recovered {
            hard_state: self.hard_state,
            snapshot: self.snapshot.as_ref().map(|(m, _)| m.clone()),
            entries: self
                .entries
                .iter()
                .filter(|e| e.index > snap)
                .cloned()
                .collect(),
        }
    }

    fn entries(&self, start: Index, count: u8) -> Vec<Entry> {
        (start..start + Index::from(count))
            .map(|index| Entry {
                term: self.hard_state.term,
                index,
                kind: EntryKind::Command,
                data: vec![index as u8; (index % 7) as usize].into(),
            })
            .collect()
    }

    /// An append write (possibly conflicting), applied to the model
    fn append(&mut self, back: u8, count: u8, new_term: bool) -> Write {
        self.next_id += 1;
        let mut write = Write {
            id: self.next_id,
            ..Write::default()
        };
        if new_term || self.hard_state.term == 0 {
            self.hard_state = HardState {
                term: self.hard_state.term + 1,
                vote: None,
            };
            write.hard_state = Some(self.hard_state);
        }
        let low = self.snap_index() + 1;
        let span = self.last() + 2 - low;
        let start = self.last() + 1 - Index::from(back) % span;
        write.entries = self.entries(start, count);
        self.entries.retain(|e| e.index < start);
        self.entries.extend(write.entries.iter().cloned());
        write
    }
}

fn meta(last: LogId, size: usize) -> SnapshotMeta {
    SnapshotMeta {
        last,
        membership: Membership::new(&[1, 2, 3]),
        size_bytes: size as u64,
    }
}

fn check(storage: &Storage, recovered: &Recovered, model: &Model) {
    assert_eq!(recovered, &model.recovered());
    let snap = storage.read_snapshot().expect("read snapshot");
    assert_eq!(snap, model.snapshot.clone());
}

fn run(ops: Vec<Op>, power_cut_disk: Option<PowerCutDisk>) {
    let dir = tempfile::tempdir().expect("tempdir");
    // Zeros written ahead (40 bytes) are cut on every reopen and at every segment seal.
    let config = StorageConfig {
        max_segment_bytes: 96,
        preallocate_bytes: 40,
    };
    let disk: Arc<dyn Disk> = match &power_cut_disk {
        Some(d) => Arc::new(d.clone()),
        None => Arc::new(StdDisk),
    };
    let open = || Storage::open_on(disk.clone(), dir.path(), config.clone()).expect("open");
    let (mut storage, recovered) = open();
    let mut model = Model::default();
    check(&storage, &recovered, &model);
    for op in ops {
        match op {
            Op::Append {
                back,
                count,
                new_term,
            } => {
                let w = model.append(back, count, new_term);
                storage.write(&w).expect("write");
            }
            Op::Batch { count } => {
                let writes: Vec<Write> = (0..count).map(|i| model.append(i, 2, i == 1)).collect();
                storage.write_batch(&writes).expect("write batch");
            }
            Op::Vote => {
                model.next_id += 1;
                model.hard_state = HardState {
                    term: model.hard_state.term + 1,
                    vote: Some(2),
                };
                let w = Write {
                    id: model.next_id,
                    hard_state: Some(model.hard_state),
                    ..Write::default()
                };
                storage.write(&w).expect("write");
            }
            Op::TakeSnapshot { pos } => {
                let snap = model.snap_index();
                let candidates: Vec<&Entry> =
                    model.entries.iter().filter(|e| e.index > snap).collect();
                if candidates.is_empty() {
                    continue;
                }
                let e = candidates[pos as usize % candidates.len()];
                let data = vec![pos; pos as usize % 50];
                let m = meta(e.log_id(), data.len());
                storage.save_snapshot(&m, &data).expect("save snapshot");
                model.snapshot = Some((m, data));
            }
            Op::Compact => {
                let through = model.snap_index();
                model.next_id += 1;
                let w = Write {
                    id: model.next_id,
                    compact_through: Some(through),
                    ..Write::default()
                };
                model.entries.retain(|e| e.index > through);
                storage.write(&w).expect("write");
            }
            Op::Install { len } => {
                let term = model.hard_state.term.max(1);
                model.hard_state.term = term;
                let m = meta(LogId::new(term, model.last() + 3), len as usize);
                let data: Vec<u8> = (0..len).collect();
                let half = len as usize / 2;
                let chunk = |offset: usize, end: usize, install| SnapshotChunk {
                    meta: m.clone(),
                    offset: offset as u64,
                    data: data[offset..end].to_vec().into(),
                    install,
                };
                model.next_id += 1;
                let mut w = Write {
                    id: model.next_id,
                    hard_state: Some(model.hard_state),
                    snapshot_chunks: vec![chunk(0, half, false), chunk(half, len as usize, true)],
                    ..Write::default()
                };
                model.snapshot = Some((m, data.clone()));
                model.entries.clear();
                w.entries = model.entries(model.last() + 1, 1);
                model.entries.extend(w.entries.iter().cloned());
                storage.write(&w).expect("write");
            }
            Op::Reopen | Op::PowerCut => {
                if let (Op::PowerCut, Some(d)) = (&op, &power_cut_disk) {
                    d.power_cut(Cut::Tear);
                    drop(storage);
                    d.power_on();
                } else {
                    drop(storage);
                }
                let (s, recovered) = open();
                storage = s;
                check(&storage, &recovered, &model);
            }
        }
    }
    drop(storage);
    let (storage, recovered) = open();
    check(&storage, &recovered, &model);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn storage_matches_model(ops in proptest::collection::vec(op(), 1..40)) {
        run(ops, None);
    }

    #[test]
    fn storage_matches_model_through_power_cuts(
        ops in proptest::collection::vec(op(), 1..40),
        seed in any::<u64>(),
    ) {
        run(ops, Some(PowerCutDisk::new(seed)));
    }
}
