//! The snapshot-install path of the harness really installs the snapshot on the follower

use shale_benches::{Cluster, LAGGING, LEADER};
use shale_core::raft::{Payload, ReplicationState};

/// A snapshot of `size` bytes whose bytes differ from chunk to chunk
fn data(size: usize) -> Payload {
    Payload::from((0..size).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

#[test]
fn the_lagging_follower_installs_restores_and_then_follows_the_log() {
    for (size, chunk) in [(10_000, 1024), (4096, 4096), (1000, 64 * 1024)] {
        let snapshot = data(size);
        let (mut cluster, meta) = Cluster::with_lagging_follower(chunk, &snapshot);
        assert_eq!(meta.size_bytes, size as u64);
        assert!(
            cluster.node(LAGGING).last_index() < cluster.leader().first_index(),
            "the follower needs entries the leader compacted"
        );
        let chunks_before = cluster.snapshot_chunks_sent();

        let index = cluster.install_snapshot(LAGGING);

        assert_eq!(index, meta.last.index);
        assert_eq!(
            cluster.snapshot_chunks_sent() - chunks_before,
            size.div_ceil(chunk) as u64,
            "every chunk sent once ({size} B in chunks of {chunk} B)"
        );
        let follower = cluster.node(LAGGING);
        assert_eq!(follower.snapshot(), Some(&meta));
        assert_eq!(
            follower.applied_index(),
            index,
            "applied through the snapshot"
        );
        let host = cluster.host(LAGGING);
        assert_eq!(host.restored, Some(index), "the state machine was restored");
        let (stored, bytes) = host.snapshot().expect("stored on the follower");
        assert_eq!(stored, &meta);
        assert_eq!(bytes, snapshot.as_bytes(), "the same bytes arrived");
        let pr = cluster.leader().progress(LAGGING).expect("a follower");
        assert!(!matches!(pr.state, ReplicationState::Snapshot { .. }));
        assert_eq!(pr.match_index, index);

        // The log after the snapshot reaches the follower as usual.
        let last = cluster.commit_batch(4, &Payload::from(&[9u8; 32]));
        cluster.run_until_quiet();
        assert_eq!(cluster.node(LAGGING).applied_index(), last.index);
        assert_eq!(cluster.node(LEADER).applied_index(), last.index);
    }
}
