//! Shale's metrics in the Prometheus text format, and a tiny HTTP endpoint serving them
//!
//! [`Metrics`] holds everything a node exports. Counters, gauges and histograms are plain
//! atomics, so request handlers, the WAL writer and the Raft driver update them from any
//! thread without locks. Labelled metrics live in [`Family`]s: look the series up once (a
//! mutex and a map lookup) and keep the `Arc` for the hot path. [`Metrics::render`] writes
//! the exposition text, and [`spawn_metrics_server`] answers `GET /metrics` with it.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use shale_runtime_smol::metrics::Metrics;
//!
//! let metrics = Arc::new(Metrics::new());
//!
//! // A connection task: count the connection while it is open, and each request.
//! let connection = metrics.open_connection();
//! let get = metrics.request("get"); // once per connection or per command name
//! get.record(Duration::from_micros(180), true);
//! drop(connection);
//!
//! // The Raft driver, every tick or so, for each group it hosts.
//! let group = metrics.group(1);
//! group.set_raft_status(7, 42, 40, true);
//!
//! let text = metrics.render();
//! assert!(text.contains("shale_requests_total{command=\"get\"} 1\n"));
//! assert!(text.contains("shale_request_duration_seconds_sum{command=\"get\"} 0.00018\n"));
//! assert!(text.contains("shale_raft_commit_lag{group=\"1\"} 2\n"));
//! assert!(text.contains("shale_connections 0\n"));
//! assert!(text.contains("shale_connections_total 1\n"));
//! ```

mod family;
mod primitives;
mod render;
mod sections;
mod server;
mod text;

use std::sync::Arc;

pub use family::{Family, OVERFLOW_LABEL_VALUE};
pub use primitives::{Counter, Gauge, Histogram, HistogramSnapshot};
pub use sections::{GroupMetrics, PeerMetrics, RequestMetrics, SnapshotMetrics, WalMetrics};
pub use server::{MetricsServer, MetricsServerConfig, spawn_metrics_server};
pub use text::{CONTENT_TYPE, PickCounter, TextEncoder};

/// The most distinct command names tracked; further names share the `_other` series
pub const COMMANDS_MAX: usize = 128;

/// The most Raft groups tracked; further groups share the `_other` series
pub const GROUPS_MAX: usize = 4096;

/// The most peers (nodes) tracked; further peers share the `_other` series
pub const PEERS_MAX: usize = 1024;

/// Everything a Shale node exports
///
/// | Name | Type | Labels | Meaning |
/// |---|---|---|---|
/// | `shale_config_num` | gauge | | number of the shard configuration in force |
/// | `shale_connections` | gauge | | client connections open now |
/// | `shale_connections_total` | counter | | client connections accepted |
/// | `shale_forwarded_requests_total` | counter | | client requests this node sent to a replica on another node (zero while cluster-aware clients reach each key's leader) |
/// | `shale_group_propose_failures` | gauge | `group` | the group's own proposals Raft refused here, since the node started |
/// | `shale_handover_bytes_received` | gauge | `group` | bytes received by hand-over over the group's life (a restore can set it back) |
/// | `shale_handover_keys_received` | gauge | `group` | keys received by hand-over over the group's life (a restore can set it back) |
/// | `shale_handovers_in_flight` | gauge | `group` | shards moving into or out of the group |
/// | `shale_node_step_duration_seconds` | histogram | | time of one round of the node's loop (its inputs and a step) |
/// | `shale_raft_applied_index` | gauge | `group` | last log index applied |
/// | `shale_raft_commit_index` | gauge | `group` | last log index known committed |
/// | `shale_raft_commit_lag` | gauge | `group` | commit index minus applied index |
/// | `shale_raft_is_leader` | gauge | `group` | 1 if this node leads the group, else 0 |
/// | `shale_raft_restoring` | gauge | `group` | 1 while an installed snapshot is being restored, else 0 |
/// | `shale_raft_term` | gauge | `group` | current Raft term |
/// | `shale_request_duration_seconds` | histogram | `command` | time to answer a request |
/// | `shale_request_errors_total` | counter | `command` | requests answered with an error |
/// | `shale_requests_total` | counter | `command` | requests answered |
/// | `shale_snapshot_build_bytes_total` | counter | | bytes of the snapshots built |
/// | `shale_snapshot_build_duration_seconds` | histogram | | time to encode and sync a snapshot |
/// | `shale_snapshot_bytes` | gauge | `group` | size of the last snapshot |
/// | `shale_snapshot_restore_bytes_total` | counter | | bytes of the snapshots restored |
/// | `shale_snapshot_restore_duration_seconds` | histogram | | time to read and decode a snapshot |
/// | `shale_snapshots_total` | counter | `group` | snapshots taken |
/// | `shale_transport_connect_failures_total` | counter | `peer` | connection attempts to the peer that failed |
/// | `shale_transport_frames_dropped_total` | counter | `peer`, `reason` | frames to the peer dropped: `queue_full`, `oversize`, `unknown_peer` (no address for that node) |
/// | `shale_transport_frames_received_total` | counter | `peer` | frames received from the peer |
/// | `shale_transport_frames_refused_total` | counter | `peer` | handshakes the peer refused |
/// | `shale_transport_frames_sent_total` | counter | `peer` | frames written to a connection to the peer |
/// | `shale_wal_bytes_total` | counter | | bytes appended to the WAL |
/// | `shale_wal_fsync_duration_seconds` | histogram | | time taken by each WAL fsync |
/// | `shale_wal_writes_total` | counter | | WAL appends |
///
/// Labelled families appear once they have a series; the others always appear.
#[derive(Debug)]
pub struct Metrics {
    /// `shale_connections`: client connections open now
    pub connections: Gauge,
    /// `shale_connections_total`: client connections accepted
    pub connections_total: Counter,
    /// `shale_config_num`: number of the shard configuration in force
    pub config_num: Gauge,
    /// `shale_forwarded_requests_total`: client requests sent to a replica on another node
    pub forwarded_requests: Counter,
    /// `shale_node_step_duration_seconds`: one round of the node's loop, from its first
    /// input (or its timer) to the end of its step
    pub step_duration: Histogram,
    /// The write-ahead log's metrics
    pub wal: WalMetrics,
    /// Snapshot builds and restores, over every group
    pub snapshots: SnapshotMetrics,
    requests: Family<RequestMetrics>,
    groups: Family<GroupMetrics>,
    peers: Family<PeerMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// All metrics at zero, with no requests or groups seen yet
    pub fn new() -> Self {
        Self {
            connections: Gauge::new(),
            connections_total: Counter::new(),
            config_num: Gauge::new(),
            forwarded_requests: Counter::new(),
            step_duration: Histogram::stall(),
            wal: WalMetrics::default(),
            snapshots: SnapshotMetrics::default(),
            requests: Family::new(&["command"], COMMANDS_MAX, RequestMetrics::default),
            groups: Family::new(&["group"], GROUPS_MAX, GroupMetrics::default),
            peers: Family::new(&["peer"], PEERS_MAX, PeerMetrics::default),
        }
    }

    /// The metrics of one command name; keep the `Arc` rather than looking it up per request
    ///
    /// Pass the canonical (say lower-case) name of a known command, and fold unknown ones
    /// into one name such as `"unknown"`: client input should not pick label values.
    pub fn request(&self, command: &str) -> Arc<RequestMetrics> {
        self.requests.with(&[command])
    }

    /// The metrics of one Raft group; keep the `Arc` in the group's driver
    pub fn group(&self, group: u64) -> Arc<GroupMetrics> {
        self.groups.with(&[&group.to_string()])
    }

    /// Stops exporting a Raft group that no longer lives on this node; returns whether it was
    pub fn remove_group(&self, group: u64) -> bool {
        self.groups.remove(&[&group.to_string()])
    }

    /// What the peer transport counted for node `peer`; keep the `Arc` where it is updated
    pub fn peer(&self, peer: u64) -> Arc<PeerMetrics> {
        self.peers.with(&[&peer.to_string()])
    }

    /// Counts a new client connection as open until the returned guard drops
    pub fn open_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections_total.inc();
        self.connections.inc();
        ConnectionGuard {
            metrics: Arc::clone(self),
        }
    }
}

/// Keeps `shale_connections` one higher while it lives; from [`Metrics::open_connection`]
#[derive(Debug)]
pub struct ConnectionGuard {
    metrics: Arc<Metrics>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics.connections.dec();
    }
}
