//! Replicated state machines: three controller replicas over Raft agree on every
//! configuration, answer the proposer, and a lagging replica catches up from a snapshot

use shale_core::controller::{Configuration, ControllerCommand, ShardController};
use shale_core::raft::{Config, Outgoing, Raft, Recovered, Role, SnapshotTask};
use shale_core::rsm::Replica;
use shale_core::time::Instant;

struct Node {
    replica: Replica<ShardController>,
    stored: Option<Vec<u8>>,
}

/// Drives one node: persist writes at once, store snapshots, answer chunk reads, apply
fn drain(node: &mut Node, now: Instant) -> Vec<Outgoing> {
    let mut out = Vec::new();
    loop {
        let raft = node.replica.raft_mut();
        let mut busy = false;
        while let Some(w) = raft.poll_write() {
            raft.handle_persisted(now, w.id);
            busy = true;
        }
        while let Some(m) = raft.poll_message() {
            out.push(m);
            busy = true;
        }
        if node.replica.restore_wanted().is_some() {
            let bytes = node
                .stored
                .clone()
                .expect("an installed snapshot was stored");
            assert!(node.replica.restore(&bytes));
            busy = true;
        }
        node.replica.process();
        while let Some(s) = node.replica.poll_snapshot_to_store() {
            let bytes = shale_core::rsm::encode_to_vec(s.encoder, 64);
            let len = bytes.len() as u64;
            node.stored = Some(bytes);
            node.replica
                .raft_mut()
                .handle_snapshot_taken(now, s.index, len);
            busy = true;
        }
        while let Some(task) = node.replica.poll_chunk_read() {
            if let SnapshotTask::ReadChunk {
                to,
                index,
                offset,
                max_bytes,
            } = task
            {
                let data = node.stored.clone().unwrap_or_default();
                let start = (offset as usize).min(data.len());
                let end = (start + max_bytes).min(data.len());
                node.replica.raft_mut().handle_snapshot_chunk(
                    now,
                    to,
                    index,
                    offset,
                    data[start..end].into(),
                );
                busy = true;
            }
        }
        if !busy {
            return out;
        }
    }
}

/// The follower side of snapshot chunks lives in writes: keep the last installed snapshot
fn settle(nodes: &mut [Node], now: Instant, cut: &[u64]) {
    let mut queue: Vec<Outgoing> = Vec::new();
    for n in nodes.iter_mut() {
        queue.extend(drain(n, now));
    }
    while let Some(m) = queue.pop() {
        if cut.contains(&m.to) || cut.contains(&m.from) {
            continue;
        }
        let i = (m.to - 1) as usize;
        if let shale_core::raft::Message::InstallSnapshot { data, offset, .. } = &m.message {
            // The runtime stores received chunks; here every snapshot fits in one chunk.
            assert_eq!(*offset, 0);
            nodes[i].stored = Some(data.as_bytes().to_vec());
        }
        nodes[i]
            .replica
            .raft_mut()
            .handle_message(now, m.from, m.message)
            .unwrap();
        queue.extend(drain(&mut nodes[i], now));
    }
}

#[test]
fn controller_replicas_agree_and_a_lagging_one_catches_up_by_snapshot() {
    let mut now = Instant::ZERO;
    let mut nodes: Vec<Node> = (1..=3)
        .map(|id| {
            let mut c = Config::new(id, id);
            c.election_timeout_max = c.election_timeout_min;
            c.snapshot_threshold_bytes = 300;
            c.snapshot_trailing_bytes = 0;
            let raft = Raft::new(c, &[1, 2, 3], Recovered::default(), now).unwrap();
            Node {
                replica: Replica::new(raft, ShardController::new(16)),
                stored: None,
            }
        })
        .collect();
    now = nodes[0].replica.raft().poll_timeout().unwrap();
    nodes[0].replica.raft_mut().handle_timeout(now).unwrap();
    settle(&mut nodes, now, &[]);
    assert_eq!(nodes[0].replica.raft().role(), Role::Leader);

    // Node 3 misses every change; the log is compacted behind its back.
    let mut last: Option<Configuration> = None;
    for gid in 1..=12u64 {
        let cmd = ControllerCommand::Join(vec![(gid * 100, vec![gid])]);
        nodes[0].replica.propose(now, gid, &cmd).unwrap();
        settle(&mut nodes, now, &[3]);
        let applied = nodes[0].replica.poll_result().expect("answered");
        assert_eq!(applied.token, gid);
        last = Some(applied.output.expect("applied").expect("valid join"));
    }
    let last = last.unwrap();
    assert_eq!(last.num, 12);
    assert!(
        nodes[0].replica.raft().snapshot().is_some(),
        "the leader compacted"
    );
    // A bad command is refused by every replica alike.
    nodes[0]
        .replica
        .propose(now, 99, &ControllerCommand::Leave(vec![7]))
        .unwrap();
    settle(&mut nodes, now, &[3]);
    let refused = nodes[0].replica.poll_result().unwrap();
    assert!(refused.output.unwrap().is_err());

    // Node 3 returns: heartbeats find it behind the compaction point; it gets the snapshot.
    for _ in 0..3 {
        now = nodes[0].replica.raft().poll_timeout().unwrap();
        nodes[0].replica.raft_mut().handle_timeout(now).unwrap();
        settle(&mut nodes, now, &[]);
    }
    for n in &nodes {
        assert_eq!(
            n.replica.state().latest(),
            &last,
            "replica {} disagrees",
            n.replica.raft().id()
        );
        assert_eq!(
            n.replica.state().config(3),
            nodes[0].replica.state().config(3)
        );
    }
}
