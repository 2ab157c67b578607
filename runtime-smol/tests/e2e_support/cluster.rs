//! Real `shale node` processes on loopback, optionally with every peer link behind a proxy
//!
//! Every process is killed and reaped when the [`Cluster`] drops; every wait is bounded.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::proxy::{Mode, Proxy};
use super::{connect, query};

/// Longest a node may take from spawn to answering PING
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Longest a node may take to exit after SIGINT before it is killed
const STOP_TIMEOUT: Duration = Duration::from_secs(8);

/// `n` distinct ports the OS had free a moment ago: all are bound at once before any is
/// released, so no two are the same (each `shale node` process binds its own again: peers
/// must know every peer port before any node starts, and a port cannot be handed to a child)
pub fn free_ports(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local address"))
        .collect()
}

/// How the cluster is shaped
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Number of nodes (ids 1..=nodes)
    pub nodes: u64,
    /// `--groups`
    pub groups: u64,
    /// `--initial-groups`
    pub initial_groups: u64,
    /// `--shards`
    pub shards: u32,
    /// Route every peer link through a [`Proxy`]
    pub proxied: bool,
    /// `--lease-reads`
    pub lease_reads: bool,
}

impl Shape {
    /// Three nodes, two replica groups both joined, eight shards, direct links, no leases
    pub fn small() -> Shape {
        Shape {
            nodes: 3,
            groups: 2,
            initial_groups: 2,
            shards: 8,
            proxied: false,
            lease_reads: false,
        }
    }
}

/// One row of `SHALE STATUS`
#[derive(Clone, Debug)]
pub struct GroupRow {
    /// `controller` or `g<N>`
    pub group: String,
    /// `leader`, `follower`, ...
    pub role: String,
    /// Raft term
    pub term: u64,
}

struct NodeProc {
    id: u64,
    resp: SocketAddr,
    peers_arg: String,
    data_dir: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    child: Option<Child>,
    starts: u32,
}

/// A running cluster in a temporary directory
pub struct Cluster {
    /// The shape it was started with
    pub shape: Shape,
    nodes: Vec<NodeProc>,
    /// `(from, to) -> proxy` when proxied
    proxies: BTreeMap<(u64, u64), Proxy>,
    /// Kept for its lifetime: the data directories and logs live here
    dir: tempfile::TempDir,
    /// What the test did, for failure reports
    pub events: Vec<String>,
    started: Instant,
}

impl Cluster {
    /// Spawns every node and waits until each answers PING
    pub fn start(shape: Shape) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("shale-e2e-")
            .tempdir()
            .expect("temp dir");
        let ids: Vec<u64> = (1..=shape.nodes).collect();
        let mut ports = free_ports(2 * ids.len()).into_iter();
        let peer_addr: BTreeMap<u64, SocketAddr> = ids
            .iter()
            .map(|&i| (i, ports.next().expect("a port per node")))
            .collect();
        let resp_addr: BTreeMap<u64, SocketAddr> = ids
            .iter()
            .map(|&i| (i, ports.next().expect("a port per node")))
            .collect();
        let mut proxies = BTreeMap::new();
        if shape.proxied {
            for &from in &ids {
                for &to in &ids {
                    if from != to {
                        proxies.insert((from, to), Proxy::start(peer_addr[&to]));
                    }
                }
            }
        }
        let nodes = ids
            .iter()
            .map(|&id| {
                let peers_arg = ids
                    .iter()
                    .map(|&j| {
                        let addr = if j == id || !shape.proxied {
                            peer_addr[&j]
                        } else {
                            proxies[&(id, j)].listen
                        };
                        format!("{j}={addr}")
                    })
                    .collect::<Vec<_>>()
                    .join(",");
                NodeProc {
                    id,
                    resp: resp_addr[&id],
                    peers_arg,
                    data_dir: dir.path().join(format!("node{id}")),
                    stdout: dir.path().join(format!("node{id}.out")),
                    stderr: dir.path().join(format!("node{id}.err")),
                    child: None,
                    starts: 0,
                }
            })
            .collect();
        let mut cluster = Cluster {
            shape,
            nodes,
            proxies,
            dir,
            events: Vec::new(),
            started: Instant::now(),
        };
        for id in ids.clone() {
            cluster.spawn(id);
        }
        for id in ids {
            cluster.wait_ready(id);
        }
        cluster.wait_configured();
        cluster
    }

    /// Waits until every running node applied a configuration that assigns every shard
    pub fn wait_configured(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let done = self.live().iter().all(|&id| {
                self.status_text(id).is_some_and(|t| {
                    t.contains("configuration ")
                        && !t.contains("configuration 0")
                        && !t.contains("configuration: unknown")
                        && !t.contains("unassigned shards")
                })
            });
            if done {
                self.note("every node has a configuration assigning all shards");
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "no configuration assigning all shards within {START_TIMEOUT:?}\n{}",
                    self.report()
                );
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Node ids
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Ids of the nodes currently running
    pub fn live(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// Node `id`'s Redis address
    pub fn resp(&self, id: u64) -> SocketAddr {
        self.node(id).resp
    }

    /// Every node's Redis address, by id order
    pub fn resp_addrs(&self) -> Vec<SocketAddr> {
        self.nodes.iter().map(|n| n.resp).collect()
    }

    fn node(&self, id: u64) -> &NodeProc {
        self.nodes.iter().find(|n| n.id == id).expect("known node")
    }

    fn node_mut(&mut self, id: u64) -> &mut NodeProc {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .expect("known node")
    }

    /// Notes an event (with the time since start) for failure reports
    pub fn note(&mut self, event: impl Into<String>) {
        let line = format!(
            "[{:>6.2}s] {}",
            self.started.elapsed().as_secs_f64(),
            event.into()
        );
        eprintln!("e2e: {line}");
        self.events.push(line);
    }

    /// Starts node `id` (not running) without waiting for it
    pub fn spawn(&mut self, id: u64) {
        let shape = self.shape;
        let node = self.node_mut(id);
        assert!(node.child.is_none(), "node {id} is already running");
        let open = |path: &PathBuf| -> File {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open a log file")
        };
        let child = Command::new(env!("CARGO_BIN_EXE_shale"))
            .arg("node")
            .args(["--id", &id.to_string()])
            .args(["--peers", &node.peers_arg])
            .args(["--listen", &node.resp.to_string()])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--groups", &shape.groups.to_string()])
            .args(["--initial-groups", &shape.initial_groups.to_string()])
            .args(["--shards", &shape.shards.to_string()])
            .args(shape.lease_reads.then_some("--lease-reads"))
            .stdin(Stdio::null())
            .stdout(open(&node.stdout))
            .stderr(open(&node.stderr))
            .spawn()
            .expect("spawn shale node");
        node.child = Some(child);
        node.starts += 1;
        let starts = node.starts;
        self.note(format!("node {id} started (start #{starts})"));
    }

    /// Waits until node `id` answers PING; panics with its stderr if it exits or never does
    pub fn wait_ready(&mut self, id: u64) {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = self.resp(id);
        loop {
            if let Some(child) = self.node_mut(id).child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.node_mut(id).child = None;
                panic!(
                    "node {id} exited during start-up with {status}\n{}",
                    self.report()
                );
            }
            if let Ok(mut con) = connect(addr)
                && query(&mut con, &["PING"]).is_ok()
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "node {id} did not answer PING within {START_TIMEOUT:?}\n{}",
                    self.report()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9` node `id` and reap it
    pub fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.node_mut(id).child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.note(format!("node {id} killed (SIGKILL)"));
    }

    /// SIGINT node `id` and wait for a clean exit; returns whether it exited by itself in time
    /// with status 0 (otherwise it is killed)
    pub fn interrupt(&mut self, id: u64) -> bool {
        let Some(mut child) = self.node_mut(id).child.take() else {
            return true;
        };
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut clean = false;
        if sent {
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    clean = status.success();
                    self.note(format!("node {id} stopped by SIGINT: {status}"));
                    return clean;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        self.note(format!(
            "node {id} did not exit within {STOP_TIMEOUT:?} of SIGINT (sent: {sent}): killed"
        ));
        clean
    }

    /// Stops node `id` where it stands (SIGSTOP), as a long pause of its machine would;
    /// [`resume`](Self::resume) lets it go on
    pub fn pause(&mut self, id: u64) {
        self.signal(id, "-STOP");
        self.note(format!("node {id} paused (SIGSTOP)"));
    }

    /// Lets a paused node go on (SIGCONT)
    pub fn resume(&mut self, id: u64) {
        self.signal(id, "-CONT");
        self.note(format!("node {id} resumed (SIGCONT)"));
    }

    fn signal(&self, id: u64, signal: &str) {
        if let Some(child) = &self.node(id).child {
            let sent = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(sent, "kill {signal} node {id} failed");
        }
    }

    /// Deletes the data directory of node `id`, which must be down: it starts empty next time
    #[allow(dead_code)] // only some test binaries wipe nodes
    pub fn wipe(&mut self, id: u64) {
        let node = self.node(id);
        assert!(node.child.is_none(), "node {id} is running");
        let dir = node.data_dir.clone();
        let removed = std::fs::remove_dir_all(&dir);
        self.note(format!("node {id}: data directory wiped ({removed:?})"));
    }

    /// Starts node `id` again with the same arguments and data directory, and waits for it
    pub fn restart(&mut self, id: u64) {
        self.spawn(id);
        self.wait_ready(id);
    }

    /// Switches every proxied link from or to `node` (both directions)
    pub fn isolate(&mut self, node: u64, mode: Mode, delay_ms: u64) {
        for (&(from, to), proxy) in &self.proxies {
            if from == node || to == node {
                proxy.set(mode, delay_ms);
            }
        }
        self.note(format!("links of node {node}: {mode:?} ({delay_ms} ms)"));
    }

    /// `SHALE STATUS` text of node `id`, if it answers
    pub fn status_text(&self, id: u64) -> Option<String> {
        let mut con = connect(self.resp(id)).ok()?;
        match query(&mut con, &["SHALE", "STATUS"]).ok()? {
            redis::Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            _ => None,
        }
    }

    /// The group rows of `SHALE STATUS` of node `id`
    pub fn status(&self, id: u64) -> Option<Vec<GroupRow>> {
        let text = self.status_text(id)?;
        Some(
            text.lines()
                .filter_map(|line| {
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    if cols.len() != 8 || cols[0] == "group" {
                        return None;
                    }
                    Some(GroupRow {
                        group: cols[0].to_owned(),
                        role: cols[1].to_owned(),
                        term: cols[2].parse().ok()?,
                    })
                })
                .collect(),
        )
    }

    /// The node that says it leads `group` (`"g1"`, `"controller"`) in the highest term,
    /// among running nodes, waiting up to `timeout` for one
    pub fn leader_of(&self, group: &str, timeout: Duration) -> Option<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut best: Option<(u64, u64)> = None;
            for id in self.live() {
                for row in self.status(id).unwrap_or_default() {
                    if row.group == group
                        && row.role == "leader"
                        && best.is_none_or(|(term, _)| row.term > term)
                    {
                        best = Some((row.term, id));
                    }
                }
            }
            if let Some((_, id)) = best {
                return Some(id);
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Shards of group `gid` in the configuration node `id` applied last
    pub fn shards_of(&self, id: u64, gid: u64) -> Vec<u32> {
        let text = self.status_text(id).unwrap_or_default();
        let prefix = format!("g{gid}: replicas");
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.split("shards [").nth(1))
            .map(|s| {
                s.trim_end_matches(']')
                    .split_whitespace()
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs `SHALE <args>` on any running node until it answers other than TRYAGAIN or IO
    /// failure; returns the final reply (an `Err` is the last error seen at the deadline)
    pub fn admin(&mut self, args: &[&str], timeout: Duration) -> Result<redis::Value, String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        let mut attempt = 0usize;
        let mut full = vec!["SHALE"];
        full.extend_from_slice(args);
        while Instant::now() < deadline {
            let live = self.live();
            let id = live[attempt % live.len()];
            attempt += 1;
            match connect(self.resp(id)).and_then(|mut con| query(&mut con, &full)) {
                Ok(v) => {
                    self.note(format!("SHALE {} on node {id}: {v:?}", args.join(" ")));
                    return Ok(v);
                }
                Err(e)
                    if matches!(e.code(), Some("TRYAGAIN" | "UNKNOWN"))
                        || e.is_io_error()
                        || e.is_timeout() =>
                {
                    last = format!("node {id}: {e}");
                }
                Err(e) => {
                    self.note(format!("SHALE {} on node {id}: {e}", args.join(" ")));
                    return Err(format!("node {id}: {e}"));
                }
            }
            thread::sleep(Duration::from_millis(200));
        }
        Err(format!("gave up after {timeout:?}: {last}"))
    }

    /// Events, each node's status and stderr tail: what a failure message needs
    pub fn report(&self) -> String {
        let mut out = String::from("---- events ----\n");
        for e in &self.events {
            out.push_str(e);
            out.push('\n');
        }
        for n in &self.nodes {
            out.push_str(&format!(
                "---- node {} ({}, started {} times, data {}) ----\n",
                n.id,
                if n.child.is_some() { "running" } else { "down" },
                n.starts,
                n.data_dir.display()
            ));
            if n.child.is_some() {
                out.push_str(
                    &self
                        .status_text(n.id)
                        .unwrap_or_else(|| "(no status)\n".into()),
                );
            }
            out.push_str("stderr tail:\n");
            out.push_str(&tail(&n.stderr, 25));
        }
        out.push_str(&format!("(logs in {})\n", self.dir.path().display()));
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut child) = n.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if thread::panicking() && std::env::var_os("SHALE_E2E_KEEP").is_some() {
            let path = self.dir.path().to_path_buf();
            eprintln!("e2e: keeping {}", path.display());
            std::mem::forget(std::mem::replace(
                &mut self.dir,
                tempfile::tempdir().expect("temp dir"),
            ));
        }
    }
}

/// The last `lines` lines of a file (reads at most its last 64 KiB)
fn tail(path: &PathBuf, lines: usize) -> String {
    let Ok(mut file) = File::open(path) else {
        return "(no file)\n".into();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    let all: Vec<&str> = text.lines().collect();
    let mut out = all[all.len().saturating_sub(lines)..].join("\n");
    out.push('\n');
    out
}
