//! The parts [`Metrics`](super::Metrics) is made of: per command, per Raft group, per peer,
//! the write-ahead log and snapshots

use std::time::Duration;

use super::primitives::{Counter, Gauge, Histogram};
use super::text::PickCounter;

/// The metrics of one command name, from [`Metrics::request`](super::Metrics::request)
#[derive(Debug)]
pub struct RequestMetrics {
    /// `shale_requests_total`: requests answered
    pub total: Counter,
    /// `shale_request_errors_total`: requests answered with an error
    pub errors: Counter,
    /// `shale_request_duration_seconds`: time to answer
    pub duration: Histogram,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        Self {
            total: Counter::new(),
            errors: Counter::new(),
            duration: Histogram::latency(),
        }
    }
}

impl RequestMetrics {
    /// Records one answered request: how long it took and whether it succeeded
    pub fn record(&self, elapsed: Duration, ok: bool) {
        self.total.inc();
        if !ok {
            self.errors.inc();
        }
        self.duration.observe(elapsed);
    }
}

/// The metrics of one Raft group, from [`Metrics::group`](super::Metrics::group)
#[derive(Debug, Default)]
pub struct GroupMetrics {
    /// `shale_raft_term`
    pub term: Gauge,
    /// `shale_raft_commit_index`
    pub commit_index: Gauge,
    /// `shale_raft_applied_index`
    pub applied_index: Gauge,
    /// `shale_raft_is_leader`: 0 or 1
    pub is_leader: Gauge,
    /// `shale_raft_commit_lag`: commit index minus applied index
    pub commit_lag: Gauge,
    /// `shale_snapshot_bytes`: size of the last snapshot
    pub snapshot_bytes: Gauge,
    /// `shale_snapshots_total`
    pub snapshots_total: Counter,
    /// `shale_handover_keys_received`: keys received by hand-over over the group's life, as
    /// applied on this replica (a gauge: a restored snapshot can set it back)
    pub handover_keys_received: Gauge,
    /// `shale_handover_bytes_received`: bytes received by hand-over, like
    /// [`handover_keys_received`](Self::handover_keys_received)
    pub handover_bytes_received: Gauge,
    /// `shale_handovers_in_flight`: shards moving into or out of the group
    pub handovers_in_flight: Gauge,
    /// `shale_group_propose_failures`: the group's own proposals Raft refused on this
    /// replica, since it started (a gauge: the driver's count starts over on a restart)
    pub propose_failures: Gauge,
    /// `shale_raft_restoring`: 1 while an installed snapshot is being restored, else 0
    pub restoring: Gauge,
}

impl GroupMetrics {
    /// Sets the Raft gauges from the node's status, and the lag from the two indices
    pub fn set_raft_status(&self, term: u64, commit_index: u64, applied_index: u64, leader: bool) {
        self.term.set_u64(term);
        self.commit_index.set_u64(commit_index);
        self.applied_index.set_u64(applied_index);
        self.is_leader.set(i64::from(leader));
        self.commit_lag
            .set_u64(commit_index.saturating_sub(applied_index));
    }

    /// Records a snapshot of `bytes` bytes
    pub fn snapshot_taken(&self, bytes: u64) {
        self.snapshots_total.inc();
        self.snapshot_bytes.set_u64(bytes);
    }

    /// Sets the hand-over gauges: the cumulative keys and bytes received, and the shards
    /// moving in or out now
    pub fn set_handovers(&self, received_keys: u64, received_bytes: u64, in_flight: u64) {
        self.handover_keys_received.set_u64(received_keys);
        self.handover_bytes_received.set_u64(received_bytes);
        self.handovers_in_flight.set_u64(in_flight);
    }
}

/// The write-ahead log's metrics, in [`Metrics::wal`](super::Metrics::wal)
#[derive(Debug)]
pub struct WalMetrics {
    /// `shale_wal_fsync_duration_seconds`
    pub fsync_duration: Histogram,
    /// `shale_wal_writes_total`
    pub writes_total: Counter,
    /// `shale_wal_bytes_total`
    pub bytes_total: Counter,
}

impl Default for WalMetrics {
    fn default() -> Self {
        Self {
            fsync_duration: Histogram::latency(),
            writes_total: Counter::new(),
            bytes_total: Counter::new(),
        }
    }
}

impl WalMetrics {
    /// Records one append of `bytes` bytes
    pub fn write(&self, bytes: u64) {
        self.writes_total.inc();
        self.bytes_total.add(bytes);
    }
}

/// Snapshot builds and restores of every group on the node, in
/// [`Metrics::snapshots`](super::Metrics::snapshots)
#[derive(Debug)]
pub struct SnapshotMetrics {
    /// `shale_snapshot_build_duration_seconds`: time to encode and sync a snapshot
    pub build_duration: Histogram,
    /// `shale_snapshot_build_bytes_total`: bytes of the snapshots built
    pub build_bytes_total: Counter,
    /// `shale_snapshot_restore_duration_seconds`: time to read and decode a snapshot
    pub restore_duration: Histogram,
    /// `shale_snapshot_restore_bytes_total`: bytes of the snapshots restored
    pub restore_bytes_total: Counter,
}

impl Default for SnapshotMetrics {
    fn default() -> Self {
        Self {
            build_duration: Histogram::bulk(),
            build_bytes_total: Counter::new(),
            restore_duration: Histogram::bulk(),
            restore_bytes_total: Counter::new(),
        }
    }
}

impl SnapshotMetrics {
    /// Records a snapshot of `bytes` bytes built in `took`
    pub fn built(&self, bytes: u64, took: Duration) {
        self.build_duration.observe(took);
        self.build_bytes_total.add(bytes);
    }

    /// Records a snapshot of `bytes` bytes restored in `took`
    pub fn restored(&self, bytes: u64, took: Duration) {
        self.restore_duration.observe(took);
        self.restore_bytes_total.add(bytes);
    }
}

/// What the peer transport counted for one peer, from [`Metrics::peer`](super::Metrics::peer)
///
/// The transport keeps its own atomics; these mirror them ([`Counter::raise_to`]) each time
/// the node's metrics are refreshed.
#[derive(Debug, Default)]
pub struct PeerMetrics {
    /// `shale_transport_frames_sent_total`: frames written to a connection to the peer
    pub sent: Counter,
    /// `shale_transport_frames_received_total`: frames received from the peer
    pub received: Counter,
    /// `shale_transport_frames_dropped_total{reason="queue_full"}`: the peer's queue was full
    pub dropped_queue_full: Counter,
    /// `shale_transport_frames_dropped_total{reason="oversize"}`: over the frame size limit
    pub dropped_oversize: Counter,
    /// `shale_transport_frames_dropped_total{reason="unknown_peer"}`: no address for the node
    pub dropped_unknown_peer: Counter,
    /// `shale_transport_frames_refused_total`: handshakes the peer refused
    pub refused: Counter,
    /// `shale_transport_connect_failures_total`: connection attempts to the peer that failed
    pub connect_failures: Counter,
}

impl PeerMetrics {
    /// The `reason` label values of `shale_transport_frames_dropped_total`, in order, with
    /// the counter of each
    pub const DROP_REASONS: &'static [(&'static str, PickCounter<PeerMetrics>)] = &[
        ("oversize", |peer| &peer.dropped_oversize),
        ("queue_full", |peer| &peer.dropped_queue_full),
        ("unknown_peer", |peer| &peer.dropped_unknown_peer),
    ];
}
