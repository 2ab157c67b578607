//! Damaged directories: each case with its expected outcome

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use shale_core::raft::{Entry, EntryKind, HardState, LogId, Membership, SnapshotMeta, Write};
use shale_runtime_std::{Storage, StorageConfig, StorageError};

const ENTRIES: u64 = 30;

fn config() -> StorageConfig {
    StorageConfig {
        max_segment_bytes: 64,
        ..StorageConfig::default()
    }
}

/// A directory holding `ENTRIES` entries over several segments
fn populated() -> tempfile::TempDir {
    populated_with(config())
}

/// A directory holding `ENTRIES` entries, written with `config`
fn populated_with(config: StorageConfig) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut storage, _) = Storage::open_with(dir.path(), config).expect("open");
    let entries = (1..=ENTRIES)
        .map(|index| Entry {
            term: 1,
            index,
            kind: EntryKind::Command,
            data: vec![index as u8; 10].into(),
        })
        .collect();
    storage
        .write(&Write {
            id: 1,
            hard_state: Some(HardState {
                term: 1,
                vote: Some(1),
            }),
            entries,
            ..Write::default()
        })
        .expect("write");
    assert!(storage.segment_count() >= 3);
    dir
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    v.sort();
    v
}

fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fs::read_dir(dir)
        .expect("list")
        .map(|e| {
            let p = e.expect("entry").path();
            let bytes = fs::read(&p).expect("read");
            (p, bytes)
        })
        .collect()
}

fn open_err(dir: &Path) -> StorageError {
    match Storage::open_with(dir, config()) {
        Ok(_) => panic!("open should have failed"),
        Err(e) => e,
    }
}

#[test]
fn flipped_byte_in_non_last_segment_is_an_error_and_changes_nothing() {
    let dir = populated();
    let first = segments(dir.path())[0].clone();
    let mut bytes = fs::read(&first).expect("read");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x55;
    fs::write(&first, &bytes).expect("write");
    let before = contents(dir.path());
    let err = open_err(dir.path());
    match &err {
        StorageError::Corrupt { path, offset, .. } => {
            assert_eq!(path, &first);
            assert!(*offset <= at as u64);
        }
        other => panic!("unexpected error {other}"),
    }
    let text = err.to_string();
    assert!(text.contains(&first.display().to_string()), "{text}");
    assert!(text.contains("offset"), "{text}");
    assert_eq!(contents(dir.path()), before);
}

/// The same, without zeros written ahead: the last segment ends with its last record
fn config_without_preallocation() -> StorageConfig {
    StorageConfig {
        preallocate_bytes: 0,
        ..config()
    }
}

#[test]
fn a_torn_record_among_the_zeros_written_ahead_is_cut() {
    let dir = populated();
    let last = segments(dir.path()).last().cloned().expect("segments");
    let mut bytes = fs::read(&last).expect("read");
    let end = bytes.iter().rposition(|&b| b != 0).expect("records") + 1;
    assert!(end < bytes.len(), "zeros were written ahead of the records");
    // Only the last segment has zeros ahead: the others were sealed at their last record.
    let all = segments(dir.path());
    for sealed in &all[..all.len() - 1] {
        let b = fs::read(sealed).expect("read");
        assert_ne!(b.last(), Some(&0), "{} ends in zeros", sealed.display());
    }
    // The last record's final bytes never reached the disk.
    for b in &mut bytes[end - 3..end] {
        *b = 0;
    }
    fs::write(&last, &bytes).expect("write");
    let (_storage, recovered) = Storage::open_with(dir.path(), config()).expect("open");
    assert_eq!(recovered.entries.len() as u64, ENTRIES - 1);
    let cut = fs::metadata(&last).expect("stat").len();
    assert!(
        cut < (end - 3) as u64,
        "the torn record and the zeros were cut off"
    );
}

#[test]
fn torn_tail_of_last_segment_is_cut() {
    let dir = populated_with(config_without_preallocation());
    let last = segments(dir.path()).last().cloned().expect("segments");
    let len = fs::metadata(&last).expect("stat").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .and_then(|f| f.set_len(len - 3))
        .expect("truncate");
    let (storage, recovered) =
        Storage::open_with(dir.path(), config_without_preallocation()).expect("open");
    assert_eq!(recovered.entries.len() as u64, ENTRIES - 1);
    assert_eq!(recovered.entries.last().map(|e| e.index), Some(ENTRIES - 1));
    let cut = fs::metadata(&last).expect("stat").len();
    assert!(cut < len - 3, "the torn record was cut off");
    drop(storage);
    let (mut storage, again) = Storage::open_with(dir.path(), config()).expect("reopen");
    assert_eq!(again, recovered);
    // The log continues where it was cut.
    let entry = Entry {
        term: 1,
        index: ENTRIES,
        kind: EntryKind::Noop,
        data: Default::default(),
    };
    storage
        .write(&Write {
            id: 1,
            entries: vec![entry.clone()],
            ..Write::default()
        })
        .expect("write");
    drop(storage);
    let (_, after) = Storage::open_with(dir.path(), config()).expect("reopen");
    assert_eq!(after.entries.last(), Some(&entry));
}

#[test]
fn missing_middle_segment_is_an_error() {
    let dir = populated();
    let segs = segments(dir.path());
    fs::remove_file(&segs[1]).expect("remove");
    let before = contents(dir.path());
    match open_err(dir.path()) {
        StorageError::MissingSegment { path, .. } => assert_eq!(path, segs[2]),
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(contents(dir.path()), before);
}

#[test]
fn corrupt_snapshot_is_an_error() {
    let dir = populated();
    let (mut storage, _) = Storage::open_with(dir.path(), config()).expect("open");
    let meta = SnapshotMeta {
        last: LogId::new(1, 10),
        membership: Membership::new(&[1, 2, 3]),
        size_bytes: 100,
    };
    storage
        .save_snapshot(&meta, &[7; 100])
        .expect("save snapshot");
    assert_eq!(
        storage.read_snapshot_chunk(10, 95, 10).expect("chunk"),
        vec![7; 5]
    );
    drop(storage);
    let path = dir.path().join("snapshot");
    let mut bytes = fs::read(&path).expect("read");
    bytes[40] ^= 1;
    fs::write(&path, &bytes).expect("write");
    let before = contents(dir.path());
    match open_err(dir.path()) {
        StorageError::Corrupt { path: p, .. } => assert_eq!(p, path),
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(contents(dir.path()), before);
}

#[test]
fn second_open_of_a_locked_directory_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (storage, _) = Storage::open(dir.path()).expect("open");
    let err = open_err(dir.path());
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    assert!(err.to_string().contains(&dir.path().display().to_string()));
    drop(storage);
    Storage::open(dir.path()).expect("open after the first is dropped");
}

/// One group commit of `entries` (their value lengths), from `first`, synced
fn commit(storage: &mut Storage, first: u64, values: &[Vec<u8>]) {
    let entries = values
        .iter()
        .enumerate()
        .map(|(i, v)| Entry {
            term: 1,
            index: first + i as u64,
            kind: EntryKind::Command,
            data: v.clone().into(),
        })
        .collect();
    storage
        .write(&Write {
            id: first,
            hard_state: (first == 1).then_some(HardState {
                term: 1,
                vote: Some(1),
            }),
            entries,
            ..Write::default()
        })
        .expect("write");
}

/// A value holding a whole disk sector of zeros (any value with 1 KiB of zeros does), marked
/// at both ends so a flipped byte is easy to place
fn value_with_zeros() -> Vec<u8> {
    let mut v = vec![0u8; 1536];
    v[0] = 0xAB;
    v[1535] = 0xCD;
    v
}

/// Flips a byte of the [`value_with_zeros`] in the only segment of `dir`; returns the segment
fn flip_in_value_with_zeros(dir: &Path) -> PathBuf {
    let segment = segments(dir).pop().expect("one segment");
    let mut bytes = fs::read(&segment).expect("read");
    let marker = bytes
        .windows(2)
        .position(|w| w == [0xAB, 0])
        .expect("the value is in the segment");
    bytes[marker] ^= 0x01;
    fs::write(&segment, &bytes).expect("write");
    segment
}

/// Damage inside a record that a later group commit followed is corruption, even when the
/// record holds a sector of zeros (which a torn append would also leave): the later commit was
/// written only after this one was synced and acknowledged, so cutting here would lose
/// acknowledged records
#[test]
fn damage_before_a_later_commit_is_an_error_even_with_a_zero_sector() {
    let one_segment = StorageConfig::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut storage, _) = Storage::open_with(dir.path(), one_segment.clone()).expect("open");
    commit(
        &mut storage,
        1,
        &[vec![1; 10], value_with_zeros(), vec![3; 10]],
    );
    commit(&mut storage, 4, &[vec![4; 10], vec![5; 10]]);
    drop(storage);
    let segment = flip_in_value_with_zeros(dir.path());
    let before = contents(dir.path());
    match Storage::open_with(dir.path(), one_segment) {
        Err(StorageError::Corrupt { path, .. }) => assert_eq!(path, segment),
        Err(other) => panic!("expected corruption, got {other}"),
        Ok((_, recovered)) => panic!(
            "damage was cut as a torn tail: {} of 5 acknowledged entries recovered",
            recovered.entries.len()
        ),
    }
    assert_eq!(contents(dir.path()), before, "nothing changed on disk");
}

/// The same damage in the last group commit, with nothing after it, still reads as a torn
/// append (a crash before its sync leaves exactly this), and is cut
#[test]
fn damage_in_the_last_commit_with_a_zero_sector_is_cut_as_torn() {
    let one_segment = StorageConfig::default();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut storage, _) = Storage::open_with(dir.path(), one_segment.clone()).expect("open");
    commit(&mut storage, 1, &[vec![1; 10], vec![2; 10]]);
    commit(&mut storage, 3, &[value_with_zeros(), vec![4; 10]]);
    drop(storage);
    flip_in_value_with_zeros(dir.path());
    let (_, recovered) = Storage::open_with(dir.path(), one_segment).expect("open");
    assert_eq!(recovered.entries.len(), 2, "cut at the torn record");
}
