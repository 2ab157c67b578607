//! Three in-process nodes, each on its own [`PowerCutDisk`]: power cuts of one node and of
//! all of them while clients write, and `ENOSPC` / `EIO` under a node. Every write a node
//! acknowledged must read back, unchanged, through every node afterwards.
//!
//! A power cut loses everything a node wrote but did not sync (a `kill -9` would keep it in
//! the page cache), so these tests fail on a missing `fdatasync` or directory sync anywhere on
//! the path from a client's write to its acknowledgement.
//!
//! `SHALE_SEED=<seed>` picks the tears of unsynced writes and the nodes cut; a failure prints
//! it (thread timing still varies from run to run).

mod support;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use shale_core::shard::{KvOp, KvResult};
use shale_core::time::Duration;
use shale_runtime_std::node::{
    CONTROLLER_GROUP, GroupSpec, Node, NodeConfig, NodeError, NodeHandle, RaftTuning,
};
use shale_runtime_std::storage::{Cut, Fault, FaultOn, PowerCutDisk};
use support::{env_number, mix};

const NODES: usize = 3;
/// The replica group holding the data
const GROUP: u64 = 1;
/// Longest any single wait of these tests may take
const WAIT: StdDuration = StdDuration::from_secs(60);
const WRITERS: usize = 3;

type Handles = Arc<Mutex<Vec<Option<NodeHandle>>>>;
type Acked = Arc<Mutex<BTreeMap<String, String>>>;

struct Cluster {
    seed: u64,
    disks: Vec<PowerCutDisk>,
    listeners: Vec<Arc<TcpListener>>,
    nodes: Vec<Option<Node>>,
    handles: Handles,
}

impl Cluster {
    fn new(seed: u64) -> Cluster {
        let listeners: Vec<Arc<TcpListener>> = (0..NODES)
            .map(|_| Arc::new(TcpListener::bind("127.0.0.1:0").expect("bind")))
            .collect();
        let mut cluster = Cluster {
            seed,
            disks: (0..NODES as u64)
                .map(|i| PowerCutDisk::new(mix(seed ^ i)))
                .collect(),
            listeners,
            nodes: (0..NODES).map(|_| None).collect(),
            handles: Arc::new(Mutex::new(vec![None; NODES])),
        };
        for i in 0..NODES {
            cluster.start(i);
        }
        cluster
    }

    fn config(&self, i: usize) -> NodeConfig {
        let id = i as u64 + 1;
        let addr = |j: usize| self.listeners[j].local_addr().expect("address");
        let mut config = NodeConfig::new(id, PathBuf::from(format!("/node-{id}")), addr(i));
        config.peer_listener = Some(self.listeners[i].clone());
        config.disk = Arc::new(self.disks[i].clone());
        config.peers = (0..NODES).map(|j| (j as u64 + 1, addr(j))).collect();
        let voters: Vec<u64> = (1..=NODES as u64).collect();
        config.controller_voters = voters.clone();
        config.groups = vec![
            GroupSpec {
                gid: CONTROLLER_GROUP,
                voters: voters.clone(),
            },
            GroupSpec {
                gid: GROUP,
                voters: voters.clone(),
            },
        ];
        config.bootstrap_groups = vec![(GROUP, voters)];
        config.shard_count = 4;
        config.raft = RaftTuning {
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(400),
            election_timeout_max: Duration::from_millis(800),
            // Small: snapshots are taken and installed during the test too.
            snapshot_threshold_bytes: 64 << 10,
            lease_reads: false,
        };
        config
    }

    fn start(&mut self, i: usize) {
        let node = Node::start(self.config(i)).unwrap_or_else(|e| {
            panic!(
                "seed {}: node {} does not start after a power cut: {e}; replay with \
                 SHALE_SEED={}",
                self.seed,
                i + 1,
                self.seed
            )
        });
        self.handles.lock().unwrap()[i] = Some(node.handle());
        self.nodes[i] = Some(node);
    }

    /// Cuts node `i`'s power: its unsynced writes are lost or torn, its threads fail
    fn cut(&mut self, i: usize) {
        self.disks[i].power_cut(Cut::Tear);
        self.handles.lock().unwrap()[i] = None;
        // Its threads see the dead disk and stop; what they say no longer matters.
        drop(self.nodes[i].take());
        self.disks[i].power_on();
    }

    /// The node leading the data group, if one does
    fn leader(&self) -> Option<usize> {
        let handles = self.handles.lock().unwrap().clone();
        handles.iter().enumerate().find_map(|(i, h)| {
            let status = h.as_ref()?.status().ok()?;
            status
                .groups
                .iter()
                .any(|g| g.gid == GROUP && g.role == "leader")
                .then_some(i)
        })
    }

    /// Waits for node `i` to stop by itself, and returns why
    fn wait_stopped(&mut self, i: usize) -> NodeError {
        let deadline = StdInstant::now() + WAIT;
        let handle = self.handles.lock().unwrap()[i].clone().expect("running");
        while handle.status().is_ok() {
            assert!(
                StdInstant::now() < deadline,
                "node {} still runs on a failing disk",
                i + 1
            );
            std::thread::sleep(StdDuration::from_millis(20));
        }
        self.handles.lock().unwrap()[i] = None;
        let mut node = self.nodes[i].take().expect("node");
        match node.join() {
            Ok(()) => panic!("node {} stopped without an error", i + 1),
            Err(e) => e,
        }
    }
}

/// Writes distinct keys through the running nodes until `stop`, recording each acknowledged
fn writer(t: usize, handles: Handles, acked: Acked, stop: Arc<AtomicBool>) {
    let mut at = t;
    let mut session = None;
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let handle = handles.lock().unwrap()[at % NODES].clone();
        let Some(handle) = handle else {
            at += 1;
            session = None;
            std::thread::sleep(StdDuration::from_millis(10));
            continue;
        };
        let s = match session {
            Some(s) => s,
            None => match handle.open_session() {
                Ok(s) => *session.insert(s),
                Err(_) => {
                    at += 1;
                    std::thread::sleep(StdDuration::from_millis(20));
                    continue;
                }
            },
        };
        let (key, value) = (format!("w{t}-{i}"), format!("value-{t}-{i}"));
        i += 1;
        let op = KvOp::Put {
            key: key.clone().into_bytes(),
            value: value.clone().into_bytes(),
        };
        match handle.op(s, op) {
            Ok(Ok(_)) => {
                acked.lock().unwrap().insert(key, value);
            }
            // Refused or unknown: not acknowledged. Another node may do better.
            _ => {
                session = None;
                at += 1;
                std::thread::sleep(StdDuration::from_millis(20));
            }
        }
    }
}

struct Writers {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    acked: Acked,
}

impl Writers {
    fn start(handles: &Handles) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Acked = Arc::default();
        let threads = (0..WRITERS)
            .map(|t| {
                let (h, a, s) = (handles.clone(), acked.clone(), stop.clone());
                std::thread::spawn(move || writer(t, h, a, s))
            })
            .collect();
        Writers {
            stop,
            threads,
            acked,
        }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until `more` writes beyond the current count are acknowledged
    fn wait_for(&self, more: usize) {
        let target = self.count() + more;
        let deadline = StdInstant::now() + WAIT;
        while self.count() < target {
            assert!(
                StdInstant::now() < deadline,
                "writes stalled at {} acknowledged, wanted {target}",
                self.count()
            );
            std::thread::sleep(StdDuration::from_millis(10));
        }
    }

    fn finish(self) -> BTreeMap<String, String> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("writer");
        }
        self.acked.lock().unwrap().clone()
    }
}

/// Every acknowledged write reads back through every node
fn check_all(cluster: &Cluster, acked: &BTreeMap<String, String>) {
    let handles = cluster.handles.lock().unwrap().clone();
    for (i, handle) in handles.iter().enumerate() {
        let handle = handle.as_ref().expect("every node runs for the check");
        let deadline = StdInstant::now() + WAIT;
        let mut session = None;
        for (key, value) in acked {
            let got = loop {
                assert!(
                    StdInstant::now() < deadline,
                    "seed {}: node {} does not answer reads",
                    cluster.seed,
                    i + 1
                );
                let s = match session {
                    Some(s) => s,
                    None => match handle.open_session() {
                        Ok(s) => *session.insert(s),
                        Err(_) => continue,
                    },
                };
                match handle.op(
                    s,
                    KvOp::Get {
                        key: key.clone().into_bytes(),
                    },
                ) {
                    Ok(Ok(r)) => break r,
                    _ => {
                        session = None;
                        std::thread::sleep(StdDuration::from_millis(20));
                    }
                }
            };
            assert_eq!(
                got,
                KvResult::Value(Some(value.clone().into_bytes())),
                "seed {}: acknowledged write {key} read through node {}; replay with \
                 SHALE_SEED={}",
                cluster.seed,
                i + 1,
                cluster.seed
            );
        }
    }
}

#[test]
fn acknowledged_writes_survive_power_cuts_of_one_node_and_of_all() {
    let seed = env_number("SHALE_SEED", 0x5eed_0f90_e7c4_7500);
    let mut cluster = Cluster::new(seed);
    let writers = Writers::start(&cluster.handles);
    writers.wait_for(50);
    for round in 0..6u64 {
        if round % 2 == 1 {
            // Everything at once: only what each node synced is left anywhere.
            for i in 0..NODES {
                cluster.cut(i);
            }
            for i in 0..NODES {
                cluster.start(i);
            }
        } else {
            // The leader when there is one (it has the most unsynced), else any node.
            let victim = cluster
                .leader()
                .unwrap_or((mix(seed ^ round) % NODES as u64) as usize);
            cluster.cut(victim);
            writers.wait_for(30);
            cluster.start(victim);
        }
        writers.wait_for(60);
    }
    let acked = writers.finish();
    check_all(&cluster, &acked);
}

#[test]
fn a_full_or_failing_disk_stops_its_node_with_the_reason_and_loses_nothing() {
    let seed = env_number("SHALE_SEED", 0x5eed_0f90_e7c4_7500);
    let mut cluster = Cluster::new(seed);
    let writers = Writers::start(&cluster.handles);
    writers.wait_for(50);
    let faults = [
        (FaultOn::Write, Fault::NoSpace, "no space left on device"),
        (FaultOn::Sync, Fault::Io, "input/output error"),
    ];
    for (on, fault, says) in faults {
        let victim = cluster.leader().unwrap_or(0);
        cluster.disks[victim].fail(on, fault);
        let why = cluster.wait_stopped(victim).to_string();
        assert!(
            why.contains(says) && !why.contains('\n'),
            "node {} stopped on a {fault:?} fault saying {why:?}",
            victim + 1
        );
        // The others go on without it.
        writers.wait_for(40);
        // Whatever it wrote after the fault is not trusted: power it off, then back on.
        cluster.disks[victim].heal();
        cluster.disks[victim].power_cut(Cut::Tear);
        cluster.disks[victim].power_on();
        cluster.start(victim);
        writers.wait_for(40);
    }
    let acked = writers.finish();
    check_all(&cluster, &acked);
}
