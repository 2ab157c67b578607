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
mod server;
mod text;

use std::sync::Arc;
use std::time::Duration;

pub use family::{Family, OVERFLOW_LABEL_VALUE};
pub use primitives::{Counter, Gauge, Histogram, HistogramSnapshot};
pub use server::{MetricsServer, MetricsServerConfig, spawn_metrics_server};
pub use text::{CONTENT_TYPE, TextEncoder};

/// The most distinct command names tracked; further names share the `_other` series
pub const COMMANDS_MAX: usize = 128;

/// The most Raft groups tracked; further groups share the `_other` series
pub const GROUPS_MAX: usize = 4096;

/// Everything a Shale node exports
///
/// | Name | Type | Labels | Meaning |
/// |---|---|---|---|
/// | `shale_config_num` | gauge | | number of the shard configuration in force |
/// | `shale_connections` | gauge | | client connections open now |
/// | `shale_connections_total` | counter | | client connections accepted |
/// | `shale_raft_applied_index` | gauge | `group` | last log index applied |
/// | `shale_raft_commit_index` | gauge | `group` | last log index known committed |
/// | `shale_raft_commit_lag` | gauge | `group` | commit index minus applied index |
/// | `shale_raft_is_leader` | gauge | `group` | 1 if this node leads the group, else 0 |
/// | `shale_raft_term` | gauge | `group` | current Raft term |
/// | `shale_request_duration_seconds` | histogram | `command` | time to answer a request |
/// | `shale_request_errors_total` | counter | `command` | requests answered with an error |
/// | `shale_requests_total` | counter | `command` | requests answered |
/// | `shale_snapshot_bytes` | gauge | `group` | size of the last snapshot |
/// | `shale_snapshots_total` | counter | `group` | snapshots taken |
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
    /// The write-ahead log's metrics
    pub wal: WalMetrics,
    requests: Family<RequestMetrics>,
    groups: Family<GroupMetrics>,
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
            wal: WalMetrics::default(),
            requests: Family::new(&["command"], COMMANDS_MAX, RequestMetrics::default),
            groups: Family::new(&["group"], GROUPS_MAX, GroupMetrics::default),
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

    /// Counts a new client connection as open until the returned guard drops
    pub fn open_connection(self: &Arc<Self>) -> ConnectionGuard {
        self.connections_total.inc();
        self.connections.inc();
        ConnectionGuard {
            metrics: Arc::clone(self),
        }
    }

    /// The exposition text: every family in name order, series in label-value order
    pub fn render(&self) -> String {
        let mut text = TextEncoder::new();
        let groups = &self.groups;
        let requests = &self.requests;
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
        text.gauge_family("shale_raft_term", "Current Raft term.", groups, |group| {
            &group.term
        });
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
        text.gauge_family(
            "shale_snapshot_bytes",
            "Size of the group's last snapshot in bytes.",
            groups,
            |group| &group.snapshot_bytes,
        );
        text.counter_family(
            "shale_snapshots_total",
            "Snapshots taken of the group.",
            groups,
            |group| &group.snapshots_total,
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
        text.finish()
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

/// The metrics of one command name, from [`Metrics::request`]
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

/// The metrics of one Raft group, from [`Metrics::group`]
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
}

/// The write-ahead log's metrics, in [`Metrics::wal`]
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
