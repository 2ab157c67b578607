//! Durable WAL appends per second with group commit, against the disk's own fsync rate
//!
//! The figure is a table printed once, before the first benchmark of this suite the filter
//! selects (`-- wal`), measured in the same run on the same filesystem: temp directories
//! under cargo's `CARGO_TARGET_TMPDIR` (inside the target directory, so on the working
//! disk, not on a tmpfs).
//!
//! - **fsync baseline** (the physical limit of one writer): append a [`RECORD_BYTES`] record
//!   to a plain file and `fdatasync` it, over and over, for [`PHASE`];
//! - **WAL, `n` writers**: `n` threads append [`PAYLOAD_BYTES`] payloads through one
//!   [`GroupCommit`] (one shared log, the WAL thread assigning consecutive indexes in arrival
//!   order), each waiting for its entry to be durable before submitting the next, for
//!   [`PHASE`]; for each of [`WRITERS`].
//!
//! Columns: durable appends per second, payload MB/s, log MB/s (bytes the segment files
//! grew by), average requests per batch (per `fdatasync`), and the ratio to the fsync
//! baseline. Issue 5's target: at 64 writers, at least [`TARGET_RATIO`] times the baseline.
//!
//! Criterion then times one round trip through a [`GroupCommit`] with a single writer
//! (`wal/group_commit_round_trip`): one append, one batch, one `fdatasync`.

use std::fs::{self, OpenOptions};
use std::hint::black_box;
use std::io::Write as _;
use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use shale_core::raft::{HardState, Payload, Write};
use shale_runtime_std::{GroupCommit, GroupCommitConfig, GroupCommitStats, Storage};
use tempfile::TempDir;

/// Payload of each appended entry, in bytes
pub const PAYLOAD_BYTES: usize = 128;

/// Bytes per baseline append: the payload plus about what the WAL adds per record (length,
/// CRC32, term, index, kind)
pub const RECORD_BYTES: usize = PAYLOAD_BYTES + 16;

/// Concurrent writers compared
pub const WRITERS: [usize; 2] = [1, 64];

/// How long each measured phase runs
pub const PHASE: Duration = Duration::from_secs(1);

/// Issue 5's target for 64 writers, as a multiple of the fsync baseline
pub const TARGET_RATIO: f64 = 20.0;

static TABLE: Once = Once::new();

/// `wal/group_commit_round_trip`, after the table (see the module documentation)
pub fn group_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("wal");
    // About 1 ms per iteration: 20 samples fit the 2 seconds.
    group
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    group.bench_function("group_commit_round_trip", |b| {
        TABLE.call_once(print_table);
        let dir = temp_dir();
        let gc = start(dir.path());
        let payload = Payload::from(vec![0x5A; PAYLOAD_BYTES]);
        b.iter(|| black_box(gc.append(payload.clone()).expect("append")));
    });
    group.finish();
}

/// A fresh directory on the same filesystem for every phase
fn temp_dir() -> TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("temp dir")
}

/// Opens fresh storage in `dir` and starts group commit on it, with a term to append in
fn start(dir: &Path) -> GroupCommit {
    let (storage, _) = Storage::open(dir).expect("open storage");
    let gc = GroupCommit::start(storage, GroupCommitConfig::default());
    gc.write(Write {
        hard_state: Some(HardState {
            term: 1,
            vote: Some(1),
        }),
        ..Write::default()
    })
    .expect("hard state");
    gc
}

/// Appends and `fdatasync`s one record at a time for [`PHASE`]; returns syncs per second
fn fsync_rate() -> f64 {
    let dir = temp_dir();
    let path = dir.path().join("fsync.bin");
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .expect("create file");
    let record = [0x5A; RECORD_BYTES];
    let start = Instant::now();
    let mut syncs = 0u64;
    while start.elapsed() < PHASE {
        file.write_all(&record).expect("append");
        file.sync_data().expect("fdatasync");
        syncs += 1;
    }
    syncs as f64 / start.elapsed().as_secs_f64()
}

/// One WAL phase's outcome
struct WalRun {
    appends: u64,
    secs: f64,
    log_bytes: u64,
    stats: GroupCommitStats,
}

/// `writers` threads append through one [`GroupCommit`] for [`PHASE`]
fn wal_run(writers: usize) -> WalRun {
    let dir = temp_dir();
    let gc = start(dir.path());
    let before = gc.stats();
    let log_before = log_bytes(dir.path());
    let stop = AtomicBool::new(false);
    let appends = AtomicU64::new(0);
    let payload = Payload::from(vec![0x5A; PAYLOAD_BYTES]);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..writers {
            s.spawn(|| {
                let mut mine = 0;
                while !stop.load(Ordering::Relaxed) {
                    gc.append(payload.clone()).expect("append");
                    mine += 1;
                }
                appends.fetch_add(mine, Ordering::Relaxed);
            });
        }
        std::thread::sleep(PHASE);
        stop.store(true, Ordering::Relaxed);
    });
    let secs = start.elapsed().as_secs_f64();
    let after = gc.stats();
    drop(gc.close().expect("storage back"));
    WalRun {
        appends: appends.into_inner(),
        secs,
        log_bytes: log_bytes(dir.path()) - log_before,
        stats: GroupCommitStats {
            batches: after.batches - before.batches,
            requests: after.requests - before.requests,
        },
    }
}

/// Total size of the log segment files in `dir`
fn log_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .expect("list storage")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("wal-"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Measures the baseline and each writer count, and prints the table
fn print_table() {
    let fsync = fsync_rate();
    eprintln!();
    eprintln!(
        "WAL durable appends, {PAYLOAD_BYTES} B payloads, {} s per row, temp dirs under {}:",
        PHASE.as_secs_f64(),
        env!("CARGO_TARGET_TMPDIR")
    );
    eprintln!(
        "{:<26} | {:>11} | {:>12} | {:>9} | {:>9} | {:>8}",
        "what", "appends/s", "payload MB/s", "log MB/s", "avg batch", "x fsync"
    );
    eprintln!(
        "{:-<26}-+-{:->11}-+-{:->12}-+-{:->9}-+-{:->9}-+-{:->8}",
        "", "", "", "", "", ""
    );
    let mb = |bytes: f64| bytes / 1e6;
    eprintln!(
        "{:<26} | {:>11.0} | {:>12.2} | {:>9.2} | {:>9} | {:>8.2}",
        format!("fsync baseline ({RECORD_BYTES} B)"),
        fsync,
        mb(fsync * PAYLOAD_BYTES as f64),
        mb(fsync * RECORD_BYTES as f64),
        "1",
        1.0
    );
    let mut ratio_at_max = 0.0;
    for writers in WRITERS {
        let run = wal_run(writers);
        let rate = run.appends as f64 / run.secs;
        ratio_at_max = rate / fsync;
        eprintln!(
            "{:<26} | {:>11.0} | {:>12.2} | {:>9.2} | {:>9.1} | {:>8.2}",
            format!("WAL, {writers} writer(s)"),
            rate,
            mb(rate * PAYLOAD_BYTES as f64),
            mb(run.log_bytes as f64 / run.secs),
            run.stats.average_batch(),
            ratio_at_max
        );
    }
    let max = WRITERS[WRITERS.len() - 1];
    eprintln!(
        "target: {max} writers >= {TARGET_RATIO}x fsync baseline: {} ({ratio_at_max:.1}x)",
        if ratio_at_max >= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        }
    );
    eprintln!();
}
