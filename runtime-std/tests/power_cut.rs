//! Power cuts and disk faults under concurrent group commit, on a [`PowerCutDisk`]
//!
//! Unlike the `kill -9` tests in `crash.rs`, a cut here loses every byte not synced (or tears
//! it in sector by sector), so a missing `fdatasync` or directory sync shows up as a lost
//! acknowledged write. Each round: writer threads append through [`GroupCommit`], the power
//! is cut after a random number of acknowledgements, the disk comes back with what survived,
//! and the reopened log must hold every acknowledged entry, unchanged, with nothing but whole
//! entries of this test after it.
//!
//! `SHALE_SEED=<seed>` replays a failing run (each failure prints its seed);
//! `SHALE_POWER_CUT_ROUNDS` sets the rounds of the first test (default 200, 25 per fresh disk).

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use shale_core::raft::{Entry, HardState, Index, Payload, Write};
use shale_runtime_std::storage::{Cut, Fault, FaultOn, PowerCutDisk};
use shale_runtime_std::{GroupCommit, GroupCommitConfig, GroupCommitError, Storage, StorageConfig};
use support::{env_number, mix};

const WRITERS: u64 = 6;
const DIR: &str = "/power-cut/group";

fn config() -> StorageConfig {
    // Small segments: cuts land around segment rolls too.
    StorageConfig {
        max_segment_bytes: 8 << 10,
        preallocate_bytes: 2 << 10,
    }
}

/// `round thread seq` and a filler whose length varies, so records straddle sectors
fn payload(round: u64, thread: u64, seq: u64) -> Vec<u8> {
    let mut out = format!("{round} {thread} {seq} ").into_bytes();
    let filler = (mix(round ^ thread << 20 ^ seq << 40) % 700) as usize;
    out.extend(std::iter::repeat_n(b'a' + (seq % 26) as u8, filler));
    out
}

fn open(disk: &PowerCutDisk, seed: u64) -> (Storage, Vec<Entry>) {
    match Storage::open_on(Arc::new(disk.clone()), DIR, config()) {
        Ok((storage, recovered)) => (storage, recovered.entries),
        Err(e) => panic!("seed {seed}: open after a power cut: {e}; replay with SHALE_SEED={seed}"),
    }
}

/// What the writers were told is durable: index → payload
type Acked = Arc<Mutex<BTreeMap<Index, Vec<u8>>>>;

/// Runs the writers until `stop_after` acknowledgements, then cuts the power
/// (`fault`: injects it instead, and cuts only once every writer has stopped). Returns the
/// errors the writers saw.
fn round(
    disk: &PowerCutDisk,
    storage: Storage,
    round: u64,
    stop_after: usize,
    fault: Option<(FaultOn, Fault)>,
    acked: &Acked,
) -> Vec<String> {
    let gc = GroupCommit::start(storage, GroupCommitConfig::default());
    gc.write(Write {
        hard_state: Some(HardState {
            term: round + 1,
            vote: Some(1),
        }),
        ..Write::default()
    })
    .expect("hard state");
    let acks_this_round = Arc::new(Mutex::new(0usize));
    let cut = AtomicBool::new(false);
    let errors = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for thread in 0..WRITERS {
            let (gc, acked, acks, cut, errors) = (&gc, acked, &acks_this_round, &cut, &errors);
            s.spawn(move || {
                for seq in 0.. {
                    let data = payload(round, thread, seq);
                    match gc.append(Payload::from(data.clone())) {
                        Ok(index) => {
                            acked.lock().unwrap().insert(index, data);
                            let mut n = acks.lock().unwrap();
                            *n += 1;
                            if *n == stop_after && !cut.swap(true, Ordering::SeqCst) {
                                match fault {
                                    Some((on, f)) => disk.fail(on, f),
                                    None => disk.power_cut(Cut::Tear),
                                }
                            }
                        }
                        Err(e) => {
                            errors.lock().unwrap().push(e.to_string());
                            return;
                        }
                    }
                }
            });
        }
    });
    drop(gc);
    disk.power_cut(Cut::Tear);
    disk.power_on();
    errors.into_inner().unwrap()
}

fn check(seed: u64, round: u64, entries: &[Entry], acked: &BTreeMap<Index, Vec<u8>>) {
    let by_index: BTreeMap<Index, &Entry> = entries.iter().map(|e| (e.index, e)).collect();
    for (index, data) in acked {
        let Some(e) = by_index.get(index) else {
            panic!(
                "seed {seed} round {round}: acknowledged entry {index} is lost (log holds {:?}); \
                 replay with SHALE_SEED={seed}",
                entries.first().map(|e| e.index)..entries.last().map(|e| e.index)
            );
        };
        assert_eq!(
            e.data.as_bytes(),
            &data[..],
            "seed {seed} round {round}: acknowledged entry {index} changed; replay with \
             SHALE_SEED={seed}"
        );
    }
    for e in entries {
        let text = String::from_utf8_lossy(e.data.as_bytes());
        let mut words = text.split(' ');
        let parsed: Vec<u64> = words
            .by_ref()
            .take(3)
            .filter_map(|w| w.parse().ok())
            .collect();
        assert!(
            parsed.len() == 3 && e.data.as_bytes() == &payload(parsed[0], parsed[1], parsed[2])[..],
            "seed {seed} round {round}: entry {} holds bytes no writer wrote; replay with \
             SHALE_SEED={seed}",
            e.index
        );
    }
}

/// Rounds on one disk before the next starts fresh (bounds the log each reopen reads)
const ROUNDS_PER_DISK: u64 = 25;

#[test]
fn power_cuts_during_group_commit_lose_nothing_acknowledged() {
    let base = env_number("SHALE_SEED", 0x90e7_c47d_15c0_0001);
    for run in 0..env_number("SHALE_POWER_CUT_ROUNDS", 200).div_ceil(ROUNDS_PER_DISK) {
        let seed = if run == 0 { base } else { mix(base ^ run) };
        let disk = PowerCutDisk::new(seed);
        let acked: Acked = Arc::default();
        for r in 0..ROUNDS_PER_DISK {
            let (storage, entries) = open(&disk, seed);
            let mut acked_now = acked.lock().unwrap();
            check(seed, r, &entries, &acked_now);
            // Entries past the last acknowledged one were not acknowledged, but the next
            // round appends after them: from now on they are promised too.
            *acked_now = entries
                .iter()
                .map(|e| (e.index, e.data.as_bytes().to_vec()))
                .collect();
            drop(acked_now);
            let stop_after = 1 + (mix(seed ^ r) % 400) as usize;
            round(&disk, storage, r, stop_after, None, &acked);
        }
        let (_storage, entries) = open(&disk, seed);
        check(seed, ROUNDS_PER_DISK, &entries, &acked.lock().unwrap());
    }
}

#[test]
fn no_space_or_io_errors_stop_acknowledgements_and_lose_nothing() {
    let seed = env_number("SHALE_SEED", 0x90e7_c47d_15c0_0001);
    let faults = [
        (FaultOn::Write, Fault::NoSpace, "no space left on device"),
        (FaultOn::Sync, Fault::Io, "input/output error"),
        (FaultOn::Write, Fault::Io, "input/output error"),
        (FaultOn::Sync, Fault::NoSpace, "no space left on device"),
    ];
    let disk = PowerCutDisk::new(seed);
    let acked: Acked = Arc::default();
    for (r, (on, fault, says)) in faults.into_iter().enumerate() {
        let r = r as u64;
        let (storage, entries) = open(&disk, seed);
        check(seed, r, &entries, &acked.lock().unwrap());
        *acked.lock().unwrap() = entries
            .iter()
            .map(|e| (e.index, e.data.as_bytes().to_vec()))
            .collect();
        let stop_after = 1 + (mix(seed ^ r) % 200) as usize;
        let errors = round(&disk, storage, r, stop_after, Some((on, fault)), &acked);
        assert!(
            errors.iter().any(|e| e.contains(says)),
            "seed {seed}: a {fault:?} fault on {on:?} was reported as {errors:?}"
        );
        assert!(
            errors
                .iter()
                .all(|e| e.contains(says) || e == &GroupCommitError::Closed.to_string()),
            "seed {seed}: {errors:?}"
        );
        disk.heal();
    }
    let (_storage, entries) = open(&disk, seed);
    check(seed, 4, &entries, &acked.lock().unwrap());
}
