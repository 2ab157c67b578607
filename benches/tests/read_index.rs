//! Batched linearizable reads on the leader share one heartbeat round; lease reads need none

use shale_benches::{Cluster, LEADER, VOTERS};

#[test]
fn a_thousand_batched_reads_need_exactly_one_heartbeat_round() {
    let mut cluster = Cluster::new();
    cluster.run_until_quiet();
    for n in [1, 1000, 1000] {
        let before = cluster.heartbeats_sent();
        let reads = cluster.read_batch(n);
        assert_eq!(reads.len(), n);
        let mut ctxs: Vec<u64> = reads.iter().map(|r| r.ctx).collect();
        ctxs.sort_unstable();
        ctxs.dedup();
        assert_eq!(ctxs.len(), n, "every read came out once");
        assert_eq!(
            cluster.heartbeats_sent() - before,
            (VOTERS.len() - 1) as u64,
            "one heartbeat per follower for {n} reads"
        );
    }
    cluster.run_until_quiet();
    assert_eq!(
        cluster.leader().commit_index(),
        cluster.node(LEADER).applied_index()
    );
}

#[test]
fn lease_reads_need_no_heartbeat() {
    let mut cluster = Cluster::with_lease();
    cluster.run_until_quiet();
    let before = cluster.heartbeats_sent();
    assert_eq!(cluster.read_batch(1000).len(), 1000);
    assert_eq!(cluster.heartbeats_sent(), before);
    assert!(cluster.network_mut().is_empty(), "lease reads send nothing");
    assert!(cluster.leader().lease_valid());
}
