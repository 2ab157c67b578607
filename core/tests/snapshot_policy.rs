//! When Raft asks for snapshots: at least every `snapshot_threshold_bytes` of applied log, and,
//! with `snapshot_log_percent`, not before the log since the last snapshot reaches that share
//! of the last snapshot's size, so a growing state is snapshotted geometrically less often

use shale_core::raft::{Config, Raft, Recovered, Role, SnapshotTask};
use shale_core::time::{Duration, Instant};

/// A lone voter that applies `writes` entries of 100 bytes, answering every snapshot request
/// with a snapshot as large as everything applied so far (a state that only grows); the
/// number of snapshots taken
fn snapshots_taken(percent: u32, writes: usize) -> usize {
    let mut config = Config::new(1, 7);
    config.snapshot_threshold_bytes = 1_000;
    config.snapshot_trailing_bytes = 0;
    config.snapshot_log_percent = percent;
    let mut now = Instant::ZERO;
    let mut raft = Raft::new(config, &[1], Recovered::default(), now).unwrap();
    while raft.role() != Role::Leader {
        now = raft.poll_timeout().unwrap().max(now);
        raft.handle_timeout(now).unwrap();
        while let Some(w) = raft.poll_write() {
            raft.handle_persisted(now, w.id);
        }
    }
    let (mut state_bytes, mut taken) = (0u64, 0);
    for _ in 0..writes {
        now += Duration::from_millis(1);
        raft.propose(now, vec![7u8; 100]).unwrap();
        while let Some(w) = raft.poll_write() {
            raft.handle_persisted(now, w.id);
        }
        while raft.poll_message().is_some() {}
        while let Some(e) = raft.poll_apply() {
            state_bytes += e.data.len() as u64;
        }
        while let Some(task) = raft.poll_snapshot_task() {
            if let SnapshotTask::Take { .. } = task {
                let index = raft.applied_index();
                assert!(raft.handle_snapshot_taken(now, index, state_bytes));
                taken += 1;
            }
        }
    }
    taken
}

#[test]
fn a_growing_state_is_snapshotted_geometrically_less_often() {
    let fixed = snapshots_taken(0, 5_000);
    let growing = snapshots_taken(100, 5_000);
    // 500 kB applied: a snapshot per ~1 kB at a fixed threshold, a doubling state with 100%.
    assert!(fixed >= 400, "{fixed} at a fixed threshold");
    assert!((5..=15).contains(&growing), "{growing} growing apart");
    let half = snapshots_taken(50, 5_000);
    assert!(
        growing < half && half < fixed,
        "{growing} < {half} < {fixed}"
    );
}
