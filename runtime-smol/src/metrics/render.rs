//! [`Metrics::render`]: every family of the table in [`Metrics`]' documentation, in name order

use super::sections::PeerMetrics;
use super::{Metrics, TextEncoder};

impl Metrics {
    /// The exposition text: every family in name order, series in label-value order
    pub fn render(&self) -> String {
        let mut text = TextEncoder::new();
        self.render_node(&mut text);
        self.render_groups(&mut text);
        self.render_requests_and_snapshots(&mut text);
        self.render_transport_and_wal(&mut text);
        text.finish()
    }

    /// `shale_config_num` to `shale_node_step_duration_seconds`
    fn render_node(&self, text: &mut TextEncoder) {
        let groups = &self.groups;
        text.gauge(
            "shale_config_num",
            "Number of the shard configuration in force.",
            &self.config_num,
        );
        text.gauge(
            "shale_connections",
            "Client connections open now.",
            &self.connections,
        );
        text.counter(
            "shale_connections_total",
            "Client connections accepted.",
            &self.connections_total,
        );
        text.counter(
            "shale_forwarded_requests_total",
            "Client requests this node sent to a replica on another node (each attempt); \
             zero while cluster-aware clients reach each key's leader directly.",
            &self.forwarded_requests,
        );
        text.gauge_family(
            "shale_group_propose_failures",
            "The group's own proposals (configuration changes, hand-over chunks, deletions) \
             Raft refused on this replica since the node started; each is retried.",
            groups,
            |group| &group.propose_failures,
        );
        text.gauge_family(
            "shale_handover_bytes_received",
            "Bytes of keys and values the group received by hand-over over its life, as \
             applied on this replica; a gauge because a restored snapshot can set it back.",
            groups,
            |group| &group.handover_bytes_received,
        );
        text.gauge_family(
            "shale_handover_keys_received",
            "Keys the group received by hand-over over its life, as applied on this \
             replica; a gauge because a restored snapshot can set it back.",
            groups,
            |group| &group.handover_keys_received,
        );
        text.gauge_family(
            "shale_handovers_in_flight",
            "Shards moving into or out of the group, as applied on this replica.",
            groups,
            |group| &group.handovers_in_flight,
        );
        text.histogram(
            "shale_node_step_duration_seconds",
            "Time of one round of the node's loop: handling its inputs, then stepping.",
            &self.step_duration,
        );
    }

    /// `shale_raft_*`
    fn render_groups(&self, text: &mut TextEncoder) {
        let groups = &self.groups;
        text.gauge_family(
            "shale_raft_applied_index",
            "Last Raft log index applied to the state machine.",
            groups,
            |group| &group.applied_index,
        );
        text.gauge_family(
            "shale_raft_commit_index",
            "Last Raft log index known to be committed.",
            groups,
            |group| &group.commit_index,
        );
        text.gauge_family(
            "shale_raft_commit_lag",
            "Committed Raft log entries not applied yet.",
            groups,
            |group| &group.commit_lag,
        );
        text.gauge_family(
            "shale_raft_is_leader",
            "1 if this node is the group's Raft leader, else 0.",
            groups,
            |group| &group.is_leader,
        );
        text.gauge_family(
            "shale_raft_restoring",
            "1 while an installed snapshot is being restored (nothing is served), else 0.",
            groups,
            |group| &group.restoring,
        );
        text.gauge_family("shale_raft_term", "Current Raft term.", groups, |group| {
            &group.term
        });
    }

    /// `shale_request_*` and `shale_snapshot*`
    fn render_requests_and_snapshots(&self, text: &mut TextEncoder) {
        let requests = &self.requests;
        let snapshots = &self.snapshots;
        text.histogram_family(
            "shale_request_duration_seconds",
            "Time from reading a request to having its reply.",
            requests,
            |request| &request.duration,
        );
        text.counter_family(
            "shale_request_errors_total",
            "Requests answered with an error.",
            requests,
            |request| &request.errors,
        );
        text.counter_family(
            "shale_requests_total",
            "Requests answered.",
            requests,
            |request| &request.total,
        );
        text.counter(
            "shale_snapshot_build_bytes_total",
            "Bytes of the snapshots built, over every group.",
            &snapshots.build_bytes_total,
        );
        text.histogram(
            "shale_snapshot_build_duration_seconds",
            "Time to encode and sync a snapshot.",
            &snapshots.build_duration,
        );
        text.gauge_family(
            "shale_snapshot_bytes",
            "Size of the group's last snapshot in bytes.",
            &self.groups,
            |group| &group.snapshot_bytes,
        );
        text.counter(
            "shale_snapshot_restore_bytes_total",
            "Bytes of the snapshots restored, over every group.",
            &snapshots.restore_bytes_total,
        );
        text.histogram(
            "shale_snapshot_restore_duration_seconds",
            "Time to read and decode a snapshot.",
            &snapshots.restore_duration,
        );
        text.counter_family(
            "shale_snapshots_total",
            "Snapshots taken of the group.",
            &self.groups,
            |group| &group.snapshots_total,
        );
    }

    /// `shale_transport_*` and `shale_wal_*`
    fn render_transport_and_wal(&self, text: &mut TextEncoder) {
        let peers = &self.peers;
        text.counter_family(
            "shale_transport_connect_failures_total",
            "Connection attempts to the peer that failed (connect, handshake or refusal).",
            peers,
            |peer| &peer.connect_failures,
        );
        text.counter_family_split(
            "shale_transport_frames_dropped_total",
            "Frames to the peer dropped: its queue was full, the frame was over the size \
             limit, or the node is not a peer (no address to send to).",
            peers,
            "reason",
            PeerMetrics::DROP_REASONS,
        );
        text.counter_family(
            "shale_transport_frames_received_total",
            "Frames received from the peer.",
            peers,
            |peer| &peer.received,
        );
        text.counter_family(
            "shale_transport_frames_refused_total",
            "Handshakes the peer refused (wrong cluster or secret, too many connections).",
            peers,
            |peer| &peer.refused,
        );
        text.counter_family(
            "shale_transport_frames_sent_total",
            "Frames written to a connection to the peer.",
            peers,
            |peer| &peer.sent,
        );
        text.counter(
            "shale_wal_bytes_total",
            "Bytes appended to the write-ahead log.",
            &self.wal.bytes_total,
        );
        text.histogram(
            "shale_wal_fsync_duration_seconds",
            "Time taken by each write-ahead log fsync.",
            &self.wal.fsync_duration,
        );
        text.counter(
            "shale_wal_writes_total",
            "Appends to the write-ahead log.",
            &self.wal.writes_total,
        );
    }
}
