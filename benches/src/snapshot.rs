//! Snapshot install through the chunk path: a follower cut off while the leader compacts
//! its log, then caught up by the snapshot
//!
//! [`Cluster::with_lagging_follower`] builds the situation (untimed), and
//! [`Cluster::install_snapshot`] moves the snapshot (what the benchmark times).

use shale_core::raft::{Config, Index, NodeId, Payload, ReplicationState, SnapshotMeta};

use crate::{Cluster, LEADER};

/// The follower that falls behind in [`Cluster::with_lagging_follower`]
pub const LAGGING: NodeId = 3;

/// Bytes of applied log after which every node asks for a snapshot in
/// [`Cluster::with_lagging_follower`]
const THRESHOLD_BYTES: usize = 1024;

/// Entries committed while [`LAGGING`] is cut off, and their payload size: enough to pass
/// [`THRESHOLD_BYTES`]
const ENTRIES: usize = 16;
const ENTRY_BYTES: usize = 128;

impl Cluster {
    /// A cluster whose node [`LAGGING`] missed every entry after the no-op while the leader
    /// snapshotted its state as `data` and compacted its whole log; returns the cluster (with
    /// [`LAGGING`] reconnected, the leader not yet aware it is behind) and the snapshot
    ///
    /// Every node sends snapshots in chunks of `chunk_bytes` and keeps no log before a
    /// snapshot (`snapshot_trailing_bytes` 0), so the lagging follower can only catch up
    /// through the snapshot. `data` is shared, not copied.
    pub fn with_lagging_follower(chunk_bytes: usize, data: &Payload) -> (Cluster, SnapshotMeta) {
        let adjust = |c: &mut Config| {
            c.snapshot_chunk_bytes = chunk_bytes;
            c.snapshot_threshold_bytes = THRESHOLD_BYTES;
            c.snapshot_trailing_bytes = 0;
        };
        let mut cluster = Cluster::with_config(adjust);
        cluster.isolate(LAGGING);
        let payload = Payload::from(vec![0x5A; ENTRY_BYTES]);
        cluster.commit_batch(ENTRIES, &payload);
        cluster.run_until_quiet();
        let meta = cluster.take_snapshot(LEADER, data.clone());
        assert_eq!(cluster.leader().first_index(), meta.last.index + 1);
        cluster.run_until_quiet();
        cluster.reconnect(LAGGING);
        (cluster, meta)
    }

    /// Answers node `id`'s pending [`Take`](shale_core::raft::SnapshotTask::Take): the
    /// application "snapshots" its state at the applied index as `data`, stores it, and
    /// reports it with [`handle_snapshot_taken`](shale_core::raft::Raft::handle_snapshot_taken)
    ///
    /// Panics if the node asked for no snapshot or refused this one.
    pub fn take_snapshot(&mut self, id: NodeId, data: Payload) -> SnapshotMeta {
        let now = self.now;
        let asked = self.hosts[crate::cluster::slot(id)]
            .take_asked
            .take()
            .expect("the node asked for a snapshot");
        let applied = self.node(id).applied_index();
        assert!(applied >= asked, "the applied index never goes back");
        let taken = self
            .node_mut(id)
            .handle_snapshot_taken(now, applied, data.len() as u64);
        assert!(taken, "the node accepts a snapshot of its applied state");
        let meta = self.node(id).snapshot().expect("just taken").clone();
        self.hosts[crate::cluster::slot(id)].store_taken(meta.clone(), data);
        self.drain(id);
        meta
    }

    /// Lets the leader find out (one heartbeat round, after its appends to `id` stalled for two
    /// heartbeat intervals) that follower `id` needs its snapshot, then delivers messages until
    /// the follower has installed it: the leader's progress for `id` has left the snapshot
    /// state with the match index at the snapshot's last index; returns that index
    ///
    /// Every chunk is read from the leader's stored snapshot (a copy, as a read from disk),
    /// handed to the leader, sent, passed to the follower's runtime in a write and stored
    /// there (a second copy); the follower restores from the whole snapshot before it answers
    /// the last chunk.
    pub fn install_snapshot(&mut self, id: NodeId) -> Index {
        let index = self
            .leader()
            .snapshot()
            .expect("the leader has a snapshot")
            .last
            .index;
        let stall = self.leader().config().heartbeat_interval.saturating_mul(2);
        self.advance(stall);
        while !self.installed(id, index) {
            assert!(
                self.deliver_next(),
                "network quiet before node {id} installed snapshot {index}"
            );
        }
        index
    }

    /// The leader knows follower `id` holds everything through `index` and replicates after it
    fn installed(&self, id: NodeId, index: Index) -> bool {
        self.leader().progress(id).is_some_and(|pr| {
            pr.match_index >= index && !matches!(pr.state, ReplicationState::Snapshot { .. })
        })
    }
}
