//! Three `shale-std-node` processes on loopback: replicated writes survive `kill -9` of a
//! group leader, its restart, and a restart of the whole cluster
//!
//! Every process is killed when the test ends (pass or fail), and every wait is bounded.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shale_core::shard::{KvOp, KvResult};
use shale_runtime_std::node::{FrontClient, FrontRequest, FrontResponse, NodeStatus};

const NODES: u64 = 3;
/// Longest any single wait of this test may take
const WAIT: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Ports picked by the OS: bound, read, released (the nodes bind them again)
fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    listeners.iter().map(|l| l.local_addr().unwrap()).collect()
}

/// A node process, killed (SIGKILL) when dropped
struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cluster {
    dir: PathBuf,
    peer_addrs: Vec<SocketAddr>,
    client_addrs: Vec<SocketAddr>,
    procs: Vec<Option<Proc>>,
}

impl Cluster {
    fn new(dir: &Path) -> Cluster {
        let addrs = free_addrs(2 * NODES as usize);
        Cluster {
            dir: dir.to_owned(),
            peer_addrs: addrs[..NODES as usize].to_vec(),
            client_addrs: addrs[NODES as usize..].to_vec(),
            procs: (0..NODES).map(|_| None).collect(),
        }
    }

    fn start(&mut self, id: u64) {
        let i = (id - 1) as usize;
        let peers: Vec<String> = self
            .peer_addrs
            .iter()
            .enumerate()
            .map(|(j, a)| format!("{}={a}", j + 1))
            .collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_shale-std-node"))
            .args(["--id", &id.to_string()])
            .arg("--data")
            .arg(self.dir.join(format!("n{id}")))
            .args(["--peer-addr", &self.peer_addrs[i].to_string()])
            .args(["--client-addr", &self.client_addrs[i].to_string()])
            .args(["--peers", &peers.join(",")])
            .args(["--groups", "2", "--shards", "8"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn shale-std-node");
        let stdout = child.stdout.take().expect("stdout");
        let proc = Proc { child };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read ready line");
        assert!(line.starts_with("ready "), "node {id} said {line:?}");
        self.procs[i] = Some(proc);
    }

    fn kill(&mut self, id: u64) {
        self.procs[(id - 1) as usize] = None;
    }

    /// The node whose replica of `gid` leads, as that node reports it
    fn leader_of(&self, gid: u64) -> Option<u64> {
        for (i, addr) in self.client_addrs.iter().enumerate() {
            if self.procs[i].is_none() {
                continue;
            }
            let Ok(mut c) = FrontClient::connect(addr, CALL_TIMEOUT) else {
                continue;
            };
            if let Ok(FrontResponse::Status(NodeStatus { id, groups, .. })) =
                c.call(&FrontRequest::Status)
                && groups.iter().any(|g| g.gid == gid && g.role == "leader")
            {
                return Some(id);
            }
        }
        None
    }
}

/// A client that moves to the next node when its node fails
struct Client {
    addrs: Vec<SocketAddr>,
    at: usize,
    conn: Option<FrontClient>,
}

impl Client {
    fn new(addrs: Vec<SocketAddr>, start: usize) -> Client {
        Client {
            addrs,
            at: start,
            conn: None,
        }
    }

    /// One attempt: `None` if the answer is unknown (the connection failed)
    fn try_op(&mut self, op: &KvOp) -> Option<KvResult> {
        if self.conn.is_none() {
            let addr = self.addrs[self.at % self.addrs.len()];
            self.conn = FrontClient::connect(addr, CALL_TIMEOUT).ok();
        }
        let answer = self.conn.as_mut()?.call(&FrontRequest::Op(op.clone()));
        match answer {
            Ok(FrontResponse::Op(Ok(result))) => Some(result),
            // No quorum answered in time (a leader was just killed, the machine is loaded):
            // the outcome is unknown, as when the connection fails; try another node.
            Ok(FrontResponse::Error(_)) => {
                self.at += 1;
                None
            }
            Ok(other) => panic!("{op:?} answered {other:?}"),
            Err(_) => {
                self.conn = None;
                self.at += 1;
                None
            }
        }
    }

    /// Retries until an answer or the deadline (reads only: a retried write may apply twice
    /// in two sessions, which the checks below allow for by using one key per write)
    fn op(&mut self, op: &KvOp) -> KvResult {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(result) = self.try_op(op) {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "no answer to {op:?} within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

type Acked = Arc<Mutex<BTreeMap<String, String>>>;

/// Writes distinct keys until `stop`, recording each acknowledged one
fn writer(t: usize, addrs: Vec<SocketAddr>, acked: Acked, stop: Arc<AtomicBool>) {
    let mut client = Client::new(addrs, t);
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("w{t}-{i}");
        let value = format!("value-{t}-{i}");
        let op = KvOp::Put {
            key: key.clone().into_bytes(),
            value: value.clone().into_bytes(),
        };
        if client.try_op(&op).is_some() {
            acked.lock().unwrap().insert(key, value);
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
        i += 1;
    }
}

fn wait_for_acks(acked: &Acked, at_least: usize) {
    let deadline = Instant::now() + WAIT;
    while acked.lock().unwrap().len() < at_least {
        assert!(
            Instant::now() < deadline,
            "only {} writes acknowledged, wanted {at_least}",
            acked.lock().unwrap().len()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check_all(addrs: &[SocketAddr], acked: &BTreeMap<String, String>) {
    for (n, _) in addrs.iter().enumerate() {
        let mut client = Client::new(addrs.to_vec(), n);
        for (key, value) in acked {
            let got = client.op(&KvOp::Get {
                key: key.clone().into_bytes(),
            });
            assert_eq!(
                got,
                KvResult::Value(Some(value.clone().into_bytes())),
                "acknowledged write {key} read through node {}",
                n + 1
            );
        }
    }
}

#[test]
fn acknowledged_writes_survive_kill_9_of_a_leader_and_a_full_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Cluster::new(dir.path());
    for id in 1..=NODES {
        cluster.start(id);
    }
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let (addrs, acked, stop) = (cluster.client_addrs.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || writer(t, addrs, acked, stop))
        })
        .collect();
    wait_for_acks(&acked, 40);

    // Kill the leader of replica group 1 while the writers keep going.
    let deadline = Instant::now() + WAIT;
    let leader = loop {
        if let Some(l) = cluster.leader_of(1) {
            break l;
        }
        assert!(Instant::now() < deadline, "group 1 has no leader");
        std::thread::sleep(Duration::from_millis(50));
    };
    cluster.kill(leader);
    let before = acked.lock().unwrap().len();
    wait_for_acks(&acked, before + 40);

    // Bring it back; it catches up and the writers go on.
    cluster.start(leader);
    let before = acked.lock().unwrap().len();
    wait_for_acks(&acked, before + 40);
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "killed node {leader} (leader of group 1); {} writes acknowledged",
        acked.len()
    );
    check_all(&cluster.client_addrs, &acked);

    // Kill everything at once and start again from disk.
    for id in 1..=NODES {
        cluster.kill(id);
    }
    for id in 1..=NODES {
        cluster.start(id);
    }
    check_all(&cluster.client_addrs, &acked);
}
