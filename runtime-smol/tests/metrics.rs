//! Metrics: exposition text of each kind, labels, histograms, concurrency, the HTTP endpoint,
//! and the families a running node fills in (loop rounds, snapshots, groups, peers)

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::TestCluster;
use shale_runtime_smol::metrics::{
    Counter, Family, Gauge, Histogram, Metrics, MetricsServerConfig, OVERFLOW_LABEL_VALUE,
    TextEncoder, spawn_metrics_server,
};

/// Every socket wait in these tests is bounded by this
const IO_TIMEOUT: Duration = Duration::from_secs(1);

#[test]
fn counter_and_gauge_text() {
    let counter = Counter::new();
    counter.inc();
    counter.add(41);
    let gauge = Gauge::new();
    gauge.set(5);
    gauge.add(-8);
    let mut text = TextEncoder::new();
    text.counter("t_events_total", "Events seen.", &counter);
    text.gauge(
        "t_level",
        "A level\\with a backslash\nand a newline.",
        &gauge,
    );
    assert_eq!(
        text.finish(),
        "# HELP t_events_total Events seen.\n\
         # TYPE t_events_total counter\n\
         t_events_total 42\n\
         # HELP t_level A level\\\\with a backslash\\nand a newline.\n\
         # TYPE t_level gauge\n\
         t_level -3\n"
    );
}

#[test]
fn labelled_series_are_sorted_and_escaped() {
    let family = Family::new(&["command", "shard"], 16, Counter::new);
    family.with(&["set", "2"]).add(2);
    family.with(&["get", "10"]).inc();
    family.with(&["a\"b\\c\nd", "1"]).add(7);
    let hits = family.with(&["get", "10"]);
    hits.inc(); // the same series as before
    let empty = Family::new(&["group"], 16, Gauge::new);
    let mut text = TextEncoder::new();
    text.counter_family("t_requests_total", "Requests.", &family, |counter| counter);
    text.gauge_family("t_absent", "Never written.", &empty, |gauge| gauge);
    assert_eq!(
        text.finish(),
        "# HELP t_requests_total Requests.\n\
         # TYPE t_requests_total counter\n\
         t_requests_total{command=\"a\\\"b\\\\c\\nd\",shard=\"1\"} 7\n\
         t_requests_total{command=\"get\",shard=\"10\"} 2\n\
         t_requests_total{command=\"set\",shard=\"2\"} 2\n"
    );
}

#[test]
fn histogram_counts_are_cumulative_with_sum() {
    let histogram = Histogram::new(&[100, 1_000, 2_500_000]);
    histogram.observe_micros(50);
    histogram.observe_micros(100); // bounds are inclusive
    histogram.observe_micros(101);
    histogram.observe(Duration::from_millis(3));
    histogram.observe(Duration::from_secs(3));
    let snapshot = histogram.snapshot();
    assert_eq!(snapshot.cumulative, vec![2, 3, 4, 5]);
    assert_eq!(snapshot.count(), 5);
    assert_eq!(snapshot.sum_micros, 50 + 100 + 101 + 3_000 + 3_000_000);

    let family = Family::new(&["command"], 4, || Histogram::new(&[1_000]));
    family.with(&["get"]).observe_micros(10);
    let mut text = TextEncoder::new();
    text.histogram("t_seconds", "Latency.", &histogram);
    text.histogram_family("t_by_command_seconds", "Per command.", &family, |h| h);
    assert_eq!(
        text.finish(),
        "# HELP t_seconds Latency.\n\
         # TYPE t_seconds histogram\n\
         t_seconds_bucket{le=\"0.0001\"} 2\n\
         t_seconds_bucket{le=\"0.001\"} 3\n\
         t_seconds_bucket{le=\"2.5\"} 4\n\
         t_seconds_bucket{le=\"+Inf\"} 5\n\
         t_seconds_sum 3.003251\n\
         t_seconds_count 5\n\
         # HELP t_by_command_seconds Per command.\n\
         # TYPE t_by_command_seconds histogram\n\
         t_by_command_seconds_bucket{command=\"get\",le=\"0.001\"} 1\n\
         t_by_command_seconds_bucket{command=\"get\",le=\"+Inf\"} 1\n\
         t_by_command_seconds_sum{command=\"get\"} 0.00001\n\
         t_by_command_seconds_count{command=\"get\"} 1\n"
    );
}

#[test]
#[should_panic(expected = "strictly increasing")]
fn histogram_bounds_must_increase() {
    let _ = Histogram::new(&[10, 10]);
}

#[test]
fn full_family_folds_newcomers_into_one_series() {
    let family = Family::new(&["command"], 3, Counter::new);
    for name in ["a", "b", "c", "d", "e"] {
        family.with(&[name]).inc();
    }
    let series: Vec<(String, u64)> = family
        .series()
        .into_iter()
        .map(|(values, counter)| (values[0].clone(), counter.get()))
        .collect();
    let other = OVERFLOW_LABEL_VALUE.to_owned();
    assert_eq!(series, vec![(other, 3), ("a".into(), 1), ("b".into(), 1)]);
    assert!(family.remove(&["a"]));
    assert!(!family.remove(&["a"]));
    assert_eq!(family.len(), 2);
}

#[test]
fn fresh_metrics_render_exactly() {
    let metrics = Metrics::new();
    metrics.config_num.set(3);
    metrics.wal.write(512);
    metrics
        .wal
        .fsync_duration
        .observe(Duration::from_micros(700));
    let expected = "\
# HELP shale_config_num Number of the shard configuration in force.
# TYPE shale_config_num gauge
shale_config_num 3
# HELP shale_connections Client connections open now.
# TYPE shale_connections gauge
shale_connections 0
# HELP shale_connections_total Client connections accepted.
# TYPE shale_connections_total counter
shale_connections_total 0
# HELP shale_forwarded_requests_total Client requests this node sent to a replica on another node (each attempt); zero while cluster-aware clients reach each key's leader directly.
# TYPE shale_forwarded_requests_total counter
shale_forwarded_requests_total 0
# HELP shale_node_step_duration_seconds Time of one round of the node's loop: handling its inputs, then stepping.
# TYPE shale_node_step_duration_seconds histogram
shale_node_step_duration_seconds_bucket{le=\"0.00001\"} 0
shale_node_step_duration_seconds_bucket{le=\"0.000025\"} 0
shale_node_step_duration_seconds_bucket{le=\"0.00005\"} 0
shale_node_step_duration_seconds_bucket{le=\"0.0001\"} 0
shale_node_step_duration_seconds_bucket{le=\"0.00025\"} 0
shale_node_step_duration_seconds_bucket{le=\"0.0005\"} 0
shale_node_step_duration_seconds_bucket{le=\"0.001\"} 0
shale_node_step_duration_seconds_bucket{le=\"0.0025\"} 0
shale_node_step_duration_seconds_bucket{le=\"0.005\"} 0
shale_node_step_duration_seconds_bucket{le=\"0.01\"} 0
shale_node_step_duration_seconds_bucket{le=\"0.025\"} 0
shale_node_step_duration_seconds_bucket{le=\"0.05\"} 0
shale_node_step_duration_seconds_bucket{le=\"0.1\"} 0
shale_node_step_duration_seconds_bucket{le=\"0.25\"} 0
shale_node_step_duration_seconds_bucket{le=\"0.5\"} 0
shale_node_step_duration_seconds_bucket{le=\"1\"} 0
shale_node_step_duration_seconds_bucket{le=\"2.5\"} 0
shale_node_step_duration_seconds_bucket{le=\"5\"} 0
shale_node_step_duration_seconds_bucket{le=\"10\"} 0
shale_node_step_duration_seconds_bucket{le=\"+Inf\"} 0
shale_node_step_duration_seconds_sum 0
shale_node_step_duration_seconds_count 0
# HELP shale_snapshot_build_bytes_total Bytes of the snapshots built, over every group.
# TYPE shale_snapshot_build_bytes_total counter
shale_snapshot_build_bytes_total 0
# HELP shale_snapshot_build_duration_seconds Time to encode and sync a snapshot.
# TYPE shale_snapshot_build_duration_seconds histogram
shale_snapshot_build_duration_seconds_bucket{le=\"0.001\"} 0
shale_snapshot_build_duration_seconds_bucket{le=\"0.0025\"} 0
shale_snapshot_build_duration_seconds_bucket{le=\"0.005\"} 0
shale_snapshot_build_duration_seconds_bucket{le=\"0.01\"} 0
shale_snapshot_build_duration_seconds_bucket{le=\"0.025\"} 0
shale_snapshot_build_duration_seconds_bucket{le=\"0.05\"} 0
shale_snapshot_build_duration_seconds_bucket{le=\"0.1\"} 0
shale_snapshot_build_duration_seconds_bucket{le=\"0.25\"} 0
shale_snapshot_build_duration_seconds_bucket{le=\"0.5\"} 0
shale_snapshot_build_duration_seconds_bucket{le=\"1\"} 0
shale_snapshot_build_duration_seconds_bucket{le=\"2.5\"} 0
shale_snapshot_build_duration_seconds_bucket{le=\"5\"} 0
shale_snapshot_build_duration_seconds_bucket{le=\"10\"} 0
shale_snapshot_build_duration_seconds_bucket{le=\"25\"} 0
shale_snapshot_build_duration_seconds_bucket{le=\"50\"} 0
shale_snapshot_build_duration_seconds_bucket{le=\"100\"} 0
shale_snapshot_build_duration_seconds_bucket{le=\"+Inf\"} 0
shale_snapshot_build_duration_seconds_sum 0
shale_snapshot_build_duration_seconds_count 0
# HELP shale_snapshot_restore_bytes_total Bytes of the snapshots restored, over every group.
# TYPE shale_snapshot_restore_bytes_total counter
shale_snapshot_restore_bytes_total 0
# HELP shale_snapshot_restore_duration_seconds Time to read and decode a snapshot.
# TYPE shale_snapshot_restore_duration_seconds histogram
shale_snapshot_restore_duration_seconds_bucket{le=\"0.001\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"0.0025\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"0.005\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"0.01\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"0.025\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"0.05\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"0.1\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"0.25\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"0.5\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"1\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"2.5\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"5\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"10\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"25\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"50\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"100\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"+Inf\"} 0
shale_snapshot_restore_duration_seconds_sum 0
shale_snapshot_restore_duration_seconds_count 0
# HELP shale_wal_bytes_total Bytes appended to the write-ahead log.
# TYPE shale_wal_bytes_total counter
shale_wal_bytes_total 512
# HELP shale_wal_fsync_duration_seconds Time taken by each write-ahead log fsync.
# TYPE shale_wal_fsync_duration_seconds histogram
shale_wal_fsync_duration_seconds_bucket{le=\"0.0001\"} 0
shale_wal_fsync_duration_seconds_bucket{le=\"0.00025\"} 0
shale_wal_fsync_duration_seconds_bucket{le=\"0.0005\"} 0
shale_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 1
shale_wal_fsync_duration_seconds_bucket{le=\"0.0025\"} 1
shale_wal_fsync_duration_seconds_bucket{le=\"0.005\"} 1
shale_wal_fsync_duration_seconds_bucket{le=\"0.01\"} 1
shale_wal_fsync_duration_seconds_bucket{le=\"0.025\"} 1
shale_wal_fsync_duration_seconds_bucket{le=\"0.05\"} 1
shale_wal_fsync_duration_seconds_bucket{le=\"0.1\"} 1
shale_wal_fsync_duration_seconds_bucket{le=\"0.25\"} 1
shale_wal_fsync_duration_seconds_bucket{le=\"0.5\"} 1
shale_wal_fsync_duration_seconds_bucket{le=\"1\"} 1
shale_wal_fsync_duration_seconds_bucket{le=\"2.5\"} 1
shale_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 1
shale_wal_fsync_duration_seconds_sum 0.0007
shale_wal_fsync_duration_seconds_count 1
# HELP shale_wal_writes_total Appends to the write-ahead log.
# TYPE shale_wal_writes_total counter
shale_wal_writes_total 1
";
    assert_eq!(metrics.render(), expected);
}

#[test]
fn every_family_renders_once_in_name_order() {
    let metrics = Arc::new(Metrics::new());
    let connection = metrics.open_connection();
    metrics
        .request("get")
        .record(Duration::from_micros(300), true);
    metrics
        .request("set")
        .record(Duration::from_millis(20), false);
    let group = metrics.group(2);
    group.set_raft_status(5, 10, 7, false);
    group.snapshot_taken(4096);
    metrics.group(1).set_raft_status(6, 3, 3, true);
    metrics.peer(3).sent.inc();
    let text = metrics.render();
    drop(connection);

    let names: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|rest| rest.split(' ').next().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(names, sorted);
    // 12 unlabelled, 12 per group, 3 per command, 5 per peer
    assert_eq!(names.len(), 32);
    for line in [
        "shale_connections 1",
        "shale_connections_total 1",
        "shale_raft_term{group=\"1\"} 6",
        "shale_raft_term{group=\"2\"} 5",
        "shale_raft_commit_lag{group=\"2\"} 3",
        "shale_raft_is_leader{group=\"1\"} 1",
        "shale_raft_is_leader{group=\"2\"} 0",
        "shale_snapshot_bytes{group=\"2\"} 4096",
        "shale_snapshots_total{group=\"1\"} 0",
        "shale_requests_total{command=\"set\"} 1",
        "shale_request_errors_total{command=\"get\"} 0",
        "shale_request_errors_total{command=\"set\"} 1",
        "shale_request_duration_seconds_bucket{command=\"set\",le=\"0.01\"} 0",
        "shale_request_duration_seconds_bucket{command=\"set\",le=\"0.025\"} 1",
        "shale_request_duration_seconds_sum{command=\"get\"} 0.0003",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line:?} missing from\n{text}"
        );
    }
    assert_eq!(metrics.connections.get(), 0);
    assert!(metrics.remove_group(2));
    assert!(!metrics.render().contains("group=\"2\""));
}

#[test]
fn step_and_snapshot_families_render_exactly() {
    let metrics = Metrics::new();
    metrics.step_duration.observe(Duration::from_micros(8));
    metrics.step_duration.observe(Duration::from_micros(40));
    metrics.step_duration.observe(Duration::from_secs(4)); // a stall
    metrics
        .snapshots
        .built(1_500_000, Duration::from_millis(30));
    metrics.snapshots.built(500, Duration::from_micros(800));
    metrics.snapshots.restored(2048, Duration::from_secs(120)); // past the last bound
    let text = metrics.render();
    let step = "\
# HELP shale_node_step_duration_seconds Time of one round of the node's loop: handling its inputs, then stepping.
# TYPE shale_node_step_duration_seconds histogram
shale_node_step_duration_seconds_bucket{le=\"0.00001\"} 1
shale_node_step_duration_seconds_bucket{le=\"0.000025\"} 1
shale_node_step_duration_seconds_bucket{le=\"0.00005\"} 2
shale_node_step_duration_seconds_bucket{le=\"0.0001\"} 2
shale_node_step_duration_seconds_bucket{le=\"0.00025\"} 2
shale_node_step_duration_seconds_bucket{le=\"0.0005\"} 2
shale_node_step_duration_seconds_bucket{le=\"0.001\"} 2
shale_node_step_duration_seconds_bucket{le=\"0.0025\"} 2
shale_node_step_duration_seconds_bucket{le=\"0.005\"} 2
shale_node_step_duration_seconds_bucket{le=\"0.01\"} 2
shale_node_step_duration_seconds_bucket{le=\"0.025\"} 2
shale_node_step_duration_seconds_bucket{le=\"0.05\"} 2
shale_node_step_duration_seconds_bucket{le=\"0.1\"} 2
shale_node_step_duration_seconds_bucket{le=\"0.25\"} 2
shale_node_step_duration_seconds_bucket{le=\"0.5\"} 2
shale_node_step_duration_seconds_bucket{le=\"1\"} 2
shale_node_step_duration_seconds_bucket{le=\"2.5\"} 2
shale_node_step_duration_seconds_bucket{le=\"5\"} 3
shale_node_step_duration_seconds_bucket{le=\"10\"} 3
shale_node_step_duration_seconds_bucket{le=\"+Inf\"} 3
shale_node_step_duration_seconds_sum 4.000048
shale_node_step_duration_seconds_count 3
";
    let build = "\
# HELP shale_snapshot_build_bytes_total Bytes of the snapshots built, over every group.
# TYPE shale_snapshot_build_bytes_total counter
shale_snapshot_build_bytes_total 1500500
# HELP shale_snapshot_build_duration_seconds Time to encode and sync a snapshot.
# TYPE shale_snapshot_build_duration_seconds histogram
shale_snapshot_build_duration_seconds_bucket{le=\"0.001\"} 1
shale_snapshot_build_duration_seconds_bucket{le=\"0.0025\"} 1
shale_snapshot_build_duration_seconds_bucket{le=\"0.005\"} 1
shale_snapshot_build_duration_seconds_bucket{le=\"0.01\"} 1
shale_snapshot_build_duration_seconds_bucket{le=\"0.025\"} 1
shale_snapshot_build_duration_seconds_bucket{le=\"0.05\"} 2
shale_snapshot_build_duration_seconds_bucket{le=\"0.1\"} 2
shale_snapshot_build_duration_seconds_bucket{le=\"0.25\"} 2
shale_snapshot_build_duration_seconds_bucket{le=\"0.5\"} 2
shale_snapshot_build_duration_seconds_bucket{le=\"1\"} 2
shale_snapshot_build_duration_seconds_bucket{le=\"2.5\"} 2
shale_snapshot_build_duration_seconds_bucket{le=\"5\"} 2
shale_snapshot_build_duration_seconds_bucket{le=\"10\"} 2
shale_snapshot_build_duration_seconds_bucket{le=\"25\"} 2
shale_snapshot_build_duration_seconds_bucket{le=\"50\"} 2
shale_snapshot_build_duration_seconds_bucket{le=\"100\"} 2
shale_snapshot_build_duration_seconds_bucket{le=\"+Inf\"} 2
shale_snapshot_build_duration_seconds_sum 0.0308
shale_snapshot_build_duration_seconds_count 2
";
    let restore = "\
# HELP shale_snapshot_restore_bytes_total Bytes of the snapshots restored, over every group.
# TYPE shale_snapshot_restore_bytes_total counter
shale_snapshot_restore_bytes_total 2048
# HELP shale_snapshot_restore_duration_seconds Time to read and decode a snapshot.
# TYPE shale_snapshot_restore_duration_seconds histogram
shale_snapshot_restore_duration_seconds_bucket{le=\"0.001\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"0.0025\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"0.005\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"0.01\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"0.025\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"0.05\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"0.1\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"0.25\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"0.5\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"1\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"2.5\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"5\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"10\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"25\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"50\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"100\"} 0
shale_snapshot_restore_duration_seconds_bucket{le=\"+Inf\"} 1
shale_snapshot_restore_duration_seconds_sum 120
shale_snapshot_restore_duration_seconds_count 1
";
    for block in [step, build, restore] {
        assert!(text.contains(block), "{block}\nnot in\n{text}");
    }
}

#[test]
fn group_handover_families_render_exactly() {
    let metrics = Metrics::new();
    let two = metrics.group(2);
    two.set_handovers(1_200, 98_304, 3);
    two.propose_failures.set_u64(4);
    two.restoring.set(1);
    // A restore set the received counts back: gauges follow.
    let one = metrics.group(1);
    one.set_handovers(50, 4_000, 0);
    one.set_handovers(10, 800, 1);
    let text = metrics.render();
    let expected = "\
# HELP shale_group_propose_failures The group's own proposals (configuration changes, hand-over chunks, deletions) Raft refused on this replica since the node started; each is retried.
# TYPE shale_group_propose_failures gauge
shale_group_propose_failures{group=\"1\"} 0
shale_group_propose_failures{group=\"2\"} 4
# HELP shale_handover_bytes_received Bytes of keys and values the group received by hand-over over its life, as applied on this replica; a gauge because a restored snapshot can set it back.
# TYPE shale_handover_bytes_received gauge
shale_handover_bytes_received{group=\"1\"} 800
shale_handover_bytes_received{group=\"2\"} 98304
# HELP shale_handover_keys_received Keys the group received by hand-over over its life, as applied on this replica; a gauge because a restored snapshot can set it back.
# TYPE shale_handover_keys_received gauge
shale_handover_keys_received{group=\"1\"} 10
shale_handover_keys_received{group=\"2\"} 1200
# HELP shale_handovers_in_flight Shards moving into or out of the group, as applied on this replica.
# TYPE shale_handovers_in_flight gauge
shale_handovers_in_flight{group=\"1\"} 1
shale_handovers_in_flight{group=\"2\"} 3
";
    assert!(text.contains(expected), "{expected}\nnot in\n{text}");
    let restoring = "\
# HELP shale_raft_restoring 1 while an installed snapshot is being restored (nothing is served), else 0.
# TYPE shale_raft_restoring gauge
shale_raft_restoring{group=\"1\"} 0
shale_raft_restoring{group=\"2\"} 1
";
    assert!(text.contains(restoring), "{restoring}\nnot in\n{text}");
}

#[test]
fn transport_families_render_exactly_per_peer_and_reason() {
    let metrics = Metrics::new();
    let two = metrics.peer(2);
    two.sent.raise_to(120);
    two.sent.raise_to(100); // mirrors only go up
    two.received.add(95);
    two.dropped_queue_full.raise_to(7);
    two.dropped_oversize.inc();
    two.connect_failures.raise_to(2);
    let nine = metrics.peer(9); // not a peer: only sends with no address
    nine.dropped_unknown_peer.raise_to(3);
    metrics.peer(10).refused.inc();
    let text = metrics.render();
    let expected = "\
# HELP shale_transport_connect_failures_total Connection attempts to the peer that failed (connect, handshake or refusal).
# TYPE shale_transport_connect_failures_total counter
shale_transport_connect_failures_total{peer=\"10\"} 0
shale_transport_connect_failures_total{peer=\"2\"} 2
shale_transport_connect_failures_total{peer=\"9\"} 0
# HELP shale_transport_frames_dropped_total Frames to the peer dropped: its queue was full, the frame was over the size limit, or the node is not a peer (no address to send to).
# TYPE shale_transport_frames_dropped_total counter
shale_transport_frames_dropped_total{peer=\"10\",reason=\"oversize\"} 0
shale_transport_frames_dropped_total{peer=\"10\",reason=\"queue_full\"} 0
shale_transport_frames_dropped_total{peer=\"10\",reason=\"unknown_peer\"} 0
shale_transport_frames_dropped_total{peer=\"2\",reason=\"oversize\"} 1
shale_transport_frames_dropped_total{peer=\"2\",reason=\"queue_full\"} 7
shale_transport_frames_dropped_total{peer=\"2\",reason=\"unknown_peer\"} 0
shale_transport_frames_dropped_total{peer=\"9\",reason=\"oversize\"} 0
shale_transport_frames_dropped_total{peer=\"9\",reason=\"queue_full\"} 0
shale_transport_frames_dropped_total{peer=\"9\",reason=\"unknown_peer\"} 3
# HELP shale_transport_frames_received_total Frames received from the peer.
# TYPE shale_transport_frames_received_total counter
shale_transport_frames_received_total{peer=\"10\"} 0
shale_transport_frames_received_total{peer=\"2\"} 95
shale_transport_frames_received_total{peer=\"9\"} 0
# HELP shale_transport_frames_refused_total Handshakes the peer refused (wrong cluster or secret, too many connections).
# TYPE shale_transport_frames_refused_total counter
shale_transport_frames_refused_total{peer=\"10\"} 1
shale_transport_frames_refused_total{peer=\"2\"} 0
shale_transport_frames_refused_total{peer=\"9\"} 0
# HELP shale_transport_frames_sent_total Frames written to a connection to the peer.
# TYPE shale_transport_frames_sent_total counter
shale_transport_frames_sent_total{peer=\"10\"} 0
shale_transport_frames_sent_total{peer=\"2\"} 120
shale_transport_frames_sent_total{peer=\"9\"} 0
# HELP shale_wal_bytes_total";
    assert!(text.contains(expected), "{expected}\nnot in\n{text}");
}

#[test]
fn concurrent_updates_are_exact() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 50_000;
    let metrics = Arc::new(Metrics::new());
    let workers: Vec<_> = (0..THREADS)
        .map(|index| {
            let metrics = Arc::clone(&metrics);
            thread::spawn(move || {
                let get = metrics.request("get");
                for _ in 0..PER_THREAD {
                    metrics.connections_total.inc();
                    get.record(Duration::from_micros(index), index % 2 == 0);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(metrics.connections_total.get(), THREADS * PER_THREAD);
    let get = metrics.request("get");
    assert_eq!(get.total.get(), THREADS * PER_THREAD);
    assert_eq!(get.errors.get(), THREADS / 2 * PER_THREAD);
    let snapshot = get.duration.snapshot();
    assert_eq!(snapshot.count(), THREADS * PER_THREAD);
    assert_eq!(snapshot.sum_micros, (0..THREADS).sum::<u64>() * PER_THREAD);
}

// --- HTTP ---

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    Ok(stream)
}

/// Sends `request`, then reads until the server closes; the answer as text
fn exchange(addr: SocketAddr, request: &[u8]) -> io::Result<String> {
    let mut stream = connect(addr)?;
    stream.write_all(request)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(String::from_utf8(answer).expect("the answer is text"))
}

#[test]
fn get_metrics_over_http() {
    let metrics = Arc::new(Metrics::new());
    metrics.group(1).set_raft_status(2, 9, 9, true);
    let (addr, server) = spawn_metrics_server(
        loopback(),
        Arc::clone(&metrics),
        MetricsServerConfig::default(),
    )
    .unwrap();
    for _ in 0..2 {
        let answer = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        let mut head_lines = head.lines();
        assert_eq!(head_lines.next(), Some("HTTP/1.1 200 OK"));
        let headers: Vec<&str> = head_lines.collect();
        assert!(headers.contains(&"Content-Type: text/plain; version=0.0.4; charset=utf-8"));
        assert!(headers.contains(&"Connection: close"));
        assert!(headers.contains(&format!("Content-Length: {}", body.len()).as_str()));
        assert_eq!(body, metrics.render());
        assert!(body.contains("shale_raft_term{group=\"1\"} 2\n"));
    }
    server.stop();
}

#[test]
fn other_paths_and_methods_are_refused() {
    let metrics = Arc::new(Metrics::new());
    let (addr, server) =
        spawn_metrics_server(loopback(), metrics, MetricsServerConfig::default()).unwrap();
    let answer = exchange(addr, b"GET /other HTTP/1.0\r\n\r\n").unwrap();
    assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
    let answer = exchange(addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{answer}"
    );
    let answer = exchange(addr, b"nonsense\r\n\r\n").unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    server.stop();
}

#[test]
fn oversize_headers_are_refused_without_hanging() {
    let metrics = Arc::new(Metrics::new());
    let (addr, server) =
        spawn_metrics_server(loopback(), metrics, MetricsServerConfig::default()).unwrap();
    let started = Instant::now();
    let mut request = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    request.resize(16 * 1024, b'a'); // no blank line: the head never ends
    match exchange(addr, &request) {
        Ok(answer) => assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}"),
        // The server may close before reading everything; a reset is fine, a hang is not.
        Err(error) => assert_ne!(error.kind(), io::ErrorKind::WouldBlock, "{error}"),
    }
    assert!(started.elapsed() < IO_TIMEOUT);
    // The server is still there for well-behaved clients.
    let answer = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
    server.stop();
}

#[test]
fn silent_clients_time_out() {
    let metrics = Arc::new(Metrics::new());
    let config = MetricsServerConfig {
        request_timeout: Duration::from_millis(150),
        ..MetricsServerConfig::default()
    };
    let (addr, server) = spawn_metrics_server(loopback(), metrics, config).unwrap();
    let started = Instant::now();
    let mut silent = connect(addr).unwrap();
    let mut answer = Vec::new();
    silent.read_to_end(&mut answer).unwrap(); // EOF once the server gives up
    assert!(answer.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert!(started.elapsed() < IO_TIMEOUT);
    let answer = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
    server.stop();
}

#[test]
fn stop_interrupts_a_slow_client_and_closes_the_port() {
    let metrics = Arc::new(Metrics::new());
    let config = MetricsServerConfig {
        request_timeout: Duration::from_secs(30),
        ..MetricsServerConfig::default()
    };
    let (addr, server) = spawn_metrics_server(loopback(), metrics, config).unwrap();
    let mut slow = connect(addr).unwrap();
    slow.write_all(b"GET /metr").unwrap();
    thread::sleep(Duration::from_millis(50)); // let the server start reading it
    let started = Instant::now();
    server.stop();
    assert!(started.elapsed() < Duration::from_millis(500));
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest); // closed or reset, but not left hanging
    let _ = slow.shutdown(Shutdown::Both);
    let refused = TcpStream::connect_timeout(&addr, IO_TIMEOUT);
    assert!(refused.is_err(), "the listener should be closed");
}

// --- A running node ---

/// Longest wait for a running cluster's metrics to show something (refreshed every second)
const CLUSTER_WAIT: Duration = Duration::from_secs(30);

/// Runs a Redis command against node `i`, retrying until it succeeds or [`CLUSTER_WAIT`] passes
fn redis_until_ok(cluster: &TestCluster, i: usize, args: &[&str]) -> String {
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let answer = (|| -> redis::RedisResult<String> {
            let client = redis::Client::open(cluster.url(i))?;
            let mut con = client.get_connection_with_timeout(Duration::from_secs(5))?;
            let mut cmd = redis::cmd(args[0]);
            for arg in &args[1..] {
                cmd.arg(*arg);
            }
            cmd.query(&mut con)
        })();
        match answer {
            Ok(answer) => return answer,
            Err(e) => assert!(Instant::now() < deadline, "{args:?} kept failing: {e}"),
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// The value of the sample whose name and labels are exactly `series`, if it is there
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

#[test]
fn a_running_node_exports_loop_rounds_snapshots_groups_and_peers() {
    let cluster = TestCluster::start(3, 1, None);
    for i in 0..20 {
        let key = format!("metrics{i}");
        assert_eq!(redis_until_ok(&cluster, 0, &["SET", &key, "v"]), "OK");
    }
    // Any replica snapshots itself on request: node 1's replica of group 1 builds one.
    let snapshot = redis_until_ok(&cluster, 0, &["SHALE", "SNAPSHOT", "1"]);
    assert!(snapshot.contains("snapshot at index"), "{snapshot}");
    let addr = cluster.servers[0].admin_addr().expect("a metrics endpoint");
    // Server 0 is node 1; its peers are nodes 2 and 3.
    let wanted = [
        "shale_node_step_duration_seconds_count",
        "shale_snapshot_build_duration_seconds_count",
        "shale_snapshot_build_bytes_total",
        "shale_snapshots_total{group=\"1\"}",
        "shale_transport_frames_sent_total{peer=\"2\"}",
        "shale_transport_frames_sent_total{peer=\"3\"}",
        "shale_transport_frames_received_total{peer=\"2\"}",
        "shale_transport_frames_received_total{peer=\"3\"}",
    ];
    let present = [
        "shale_group_propose_failures{group=\"1\"}",
        "shale_handover_bytes_received{group=\"1\"}",
        "shale_handover_keys_received{group=\"1\"}",
        "shale_handovers_in_flight{group=\"1\"}",
        "shale_raft_restoring{group=\"1\"}",
        "shale_snapshot_restore_duration_seconds_count",
        "shale_transport_connect_failures_total{peer=\"2\"}",
        "shale_transport_frames_dropped_total{peer=\"2\",reason=\"queue_full\"}",
        "shale_transport_frames_dropped_total{peer=\"3\",reason=\"unknown_peer\"}",
        "shale_transport_frames_refused_total{peer=\"3\"}",
    ];
    let deadline = Instant::now() + CLUSTER_WAIT;
    let text = loop {
        let answer = exchange(addr, b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let text = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        let missing: Vec<&str> = wanted
            .iter()
            .filter(|series| sample(text, series).is_none_or(|value| value <= 0.0))
            .chain(
                present
                    .iter()
                    .filter(|series| sample(text, series).is_none()),
            )
            .copied()
            .collect();
        if missing.is_empty() {
            break text.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "missing or zero: {missing:?}\n{text}"
        );
        thread::sleep(Duration::from_millis(200));
    };
    // A healthy three-node cluster: nothing restoring, nothing dropped or refused.
    assert_eq!(
        sample(&text, "shale_raft_restoring{group=\"1\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "shale_handovers_in_flight{group=\"1\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "shale_transport_frames_refused_total{peer=\"3\"}"),
        Some(0.0)
    );
    let built = sample(&text, "shale_snapshot_build_bytes_total").unwrap_or_default();
    let built_sum = sample(&text, "shale_snapshot_build_duration_seconds_sum");
    assert!(built > 0.0 && built_sum.is_some_and(|s| s >= 0.0), "{text}");
}

#[test]
fn a_shard_move_shows_in_the_receiving_groups_handover_gauges() {
    let cluster = TestCluster::start(3, 2, None);
    let keys: Vec<String> = (0..)
        .map(|n| format!("moving{n}"))
        .filter(|key| shale_core::shard::key_shard(key.as_bytes(), 8) == 0)
        .take(10)
        .collect();
    for key in &keys {
        assert_eq!(redis_until_ok(&cluster, 0, &["SET", key, "v"]), "OK");
    }
    // Shard 0 is in group 1 or 2: moving it to each in turn moves it at least once.
    let mut moved = 0;
    for gid in ["1", "2"] {
        let client = redis::Client::open(cluster.url(0)).unwrap();
        let mut con = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .unwrap();
        let answer: redis::RedisResult<redis::Value> = redis::cmd("SHALE")
            .arg("MOVE")
            .arg("0")
            .arg(gid)
            .query(&mut con);
        moved += usize::from(answer.is_ok());
    }
    assert!(moved > 0, "neither move was accepted");
    let addr = cluster.servers[0].admin_addr().expect("a metrics endpoint");
    let deadline = Instant::now() + CLUSTER_WAIT;
    loop {
        let answer = exchange(addr, b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let text = answer.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        let received = |what: &str, gid: u64| {
            sample(
                text,
                &format!("shale_handover_{what}_received{{group=\"{gid}\"}}"),
            )
            .unwrap_or_default()
        };
        let keys_received = received("keys", 1) + received("keys", 2);
        let bytes_received = received("bytes", 1) + received("bytes", 2);
        if keys_received >= keys.len() as f64 && bytes_received > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no hand-over shows (keys {keys_received}, bytes {bytes_received}):\n{text}"
        );
        thread::sleep(Duration::from_millis(200));
    }
}
