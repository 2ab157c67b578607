//! The simulated cluster: nodes, their disks, the network, virtual time, and the event loop

use std::fmt;

use shale_core::raft::{
    Config, Entry, Index, LogId, NodeId, Outgoing, ProposeError, Raft, Role, Term,
};
use shale_core::rng::Rng;
use shale_core::time::{Duration, Instant};

use crate::app::{SimApp, load_snapshot, serve_snapshot_task};
use crate::disk::{DiskConfig, SimDisk};
use crate::invariants::Checker;
use crate::network::{Network, NetworkConfig, NetworkStats};
use crate::trace::Trace;

/// Everything that shapes one simulation; one seed drives every random choice
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The seed; split into independent streams for network, disk, node faults, clocks and
    /// workload
    pub seed: u64,
    /// Number of nodes, with ids `1..=nodes`, all voters
    pub nodes: usize,
    /// The Raft config every node starts from (`id` and `seed` are set per node)
    pub raft: Config,
    /// Network behaviour
    pub network: NetworkConfig,
    /// Disk behaviour
    pub disk: DiskConfig,
    /// Most clock drift per node, in parts per million (each node draws its own drift)
    pub clock_drift_ppm_max: u64,
}

impl SimConfig {
    /// `nodes` nodes on a reliable network with default Raft settings, driven by `seed`
    pub fn new(seed: u64, nodes: usize) -> Self {
        SimConfig {
            seed,
            nodes,
            raft: Config::new(0, 0),
            network: NetworkConfig::reliable(),
            disk: DiskConfig::default(),
            clock_drift_ppm_max: 0,
        }
    }
}

/// A simulation that ended in something other than success; says the seed to replay
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimError {
    /// The seed of the failed run
    pub seed: u64,
    /// What went wrong
    pub message: String,
    /// Virtual time of the failure
    pub at: Instant,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (seed {}, at {}; replay with SHALE_SEED={})",
            self.message, self.seed, self.at, self.seed
        )
    }
}

impl std::error::Error for SimError {}

/// One simulated node: the Raft state machine, its disk and its state machine
#[derive(Debug)]
pub(crate) struct SimNode {
    id: NodeId,
    raft: Option<Raft>,
    pub(crate) disk: SimDisk,
    /// The state machine (kept as it was while the node is crashed)
    pub(crate) app: SimApp,
    /// Index the state machine was last loaded from a snapshot at (0: started empty)
    pub(crate) applied_base: Index,
    /// Entries applied since the node last (re)started or restored a snapshot: the first has
    /// index `applied_base + 1`
    applied: Vec<Entry>,
    /// Snapshots installed from a leader and restored (not counting restarts)
    pub(crate) installs: u64,
    /// Snapshots this node took of its own state machine
    pub(crate) snapshots_taken: u64,
    /// Largest in-memory log (bytes) seen after any event, over the whole run
    pub(crate) peak_log_bytes: usize,
    paused: bool,
    /// Cut off from every other node by [`Sim::disconnect`]
    disconnected: bool,
    /// Clock drift in parts per million (positive: this node's clock runs fast)
    drift_ppm: i64,
    /// Times this node was restarted
    restarts: u64,
}

/// A deterministic simulation of a Raft group
///
/// Time is virtual: it jumps to the next event (a message arrival, a write completing, a node's
/// timeout). The same [`SimConfig`] always produces the same run. Invariants are checked after
/// every event; a violation panics with the seed and the recent trace, so a failing test always
/// says how to replay it.
#[derive(Debug)]
pub struct Sim {
    config: SimConfig,
    now: Instant,
    pub(crate) nodes: Vec<SimNode>,
    network: Network,
    disk_rng: Rng,
    fault_rng: Rng,
    workload_rng: Rng,
    checker: Checker,
    trace: Trace,
    undecodable: u64,
    busy_drops: u64,
    /// Every committed entry as first applied anywhere (position 0 is index 1)
    history: Vec<Entry>,
}

impl Sim {
    /// Builds the cluster; every node starts as a fresh follower
    pub fn new(config: SimConfig) -> Self {
        let mut root = Rng::new(config.seed);
        let network_rng = root.fork();
        let disk_rng = root.fork();
        let fault_rng = root.fork();
        let mut clock_rng = root.fork();
        let workload_rng = root.fork();
        let mut nodes = Vec::new();
        for i in 0..config.nodes {
            let id = i as NodeId + 1;
            let max = config.clock_drift_ppm_max;
            let drift_ppm = clock_rng.range(0, 2 * max + 1) as i64 - max as i64;
            nodes.push(SimNode {
                id,
                raft: None,
                disk: SimDisk::default(),
                app: SimApp::new(),
                applied_base: 0,
                applied: Vec::new(),
                installs: 0,
                snapshots_taken: 0,
                peak_log_bytes: 0,
                paused: false,
                disconnected: false,
                drift_ppm,
                restarts: 0,
            });
        }
        let network = Network::new(config.network.clone(), network_rng, config.nodes);
        let mut sim = Sim {
            now: Instant::ZERO,
            nodes,
            network,
            disk_rng,
            fault_rng,
            workload_rng,
            checker: Checker::default(),
            trace: Trace::default(),
            undecodable: 0,
            busy_drops: 0,
            history: Vec::new(),
            config,
        };
        for id in sim.ids() {
            sim.boot(id);
        }
        sim
    }

    fn boot(&mut self, id: NodeId) {
        let voters = self.ids();
        let now = self.local_time(id);
        let node = &mut self.nodes[(id - 1) as usize];
        let mut config = self.config.raft.clone();
        config.id = id;
        config.seed = self.config.seed ^ (id.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ node.restarts;
        let recovered = node.disk.recovered();
        if let Err(e) = Raft::recover(&recovered) {
            self.fail(format!("node {id} cannot recover its own disk: {e}"));
        }
        match Raft::new(config, &voters, recovered, now) {
            Ok(raft) => node.raft = Some(raft),
            Err(e) => panic!("invalid raft config in the simulation: {e}"),
        }
        node.applied.clear();
        node.app = SimApp::new();
        node.applied_base = 0;
        if let Some(meta) = node.disk.snapshot.meta.clone() {
            let result = load_snapshot(&node.disk, &meta).and_then(|app| {
                self.checker.on_restore(id, app.applied, app.digest)?;
                Ok(app)
            });
            match result {
                Ok(app) => {
                    node.applied_base = app.applied;
                    node.app = app;
                }
                Err(e) => self.fail(format!("node {id} restarting: {e}")),
            }
        }
    }

    // ----- getters -----

    /// The seed of this run
    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// The configuration of this run
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Virtual time now
    pub fn now(&self) -> Instant {
        self.now
    }

    /// All node ids, ascending
    pub fn ids(&self) -> Vec<NodeId> {
        (1..=self.config.nodes as NodeId).collect()
    }

    /// The Raft node `id`, unless it is crashed
    pub fn node(&self, id: NodeId) -> Option<&Raft> {
        self.nodes.get((id as usize).wrapping_sub(1))?.raft.as_ref()
    }

    /// Whether node `id` is running (not crashed; it may be paused)
    pub fn is_up(&self, id: NodeId) -> bool {
        self.node(id).is_some()
    }

    /// Entries node `id` applied since it last (re)started or loaded a snapshot, in order; the
    /// first has index [`Sim::applied_base`]` + 1` (index 1 when no snapshot was involved)
    pub fn applied(&self, id: NodeId) -> &[Entry] {
        &self.nodes[(id - 1) as usize].applied
    }

    /// The durable log of node `id` (what would survive a crash now); after compaction it
    /// starts past index 1
    pub fn durable_log(&self, id: NodeId) -> &[Entry] {
        &self.nodes[(id - 1) as usize].disk.entries
    }

    /// Network counters
    pub fn network_stats(&self) -> &NetworkStats {
        &self.network.stats
    }

    /// The invariant checker (what is known committed, leaders per term)
    pub fn checker(&self) -> &Checker {
        &self.checker
    }

    /// Hash of the whole event trace so far; equal for two runs of one seed
    pub fn trace_hash(&self) -> u64 {
        self.trace.hash()
    }

    /// The most recent trace lines
    pub fn trace_tail(&self) -> String {
        self.trace.tail()
    }

    /// Print every trace line to stderr as it happens
    pub fn set_trace_echo(&mut self, echo: bool) {
        self.trace.echo = echo;
    }

    /// The workload's own random stream (independent of the fault and network streams)
    pub fn workload_rng(&mut self) -> &mut Rng {
        &mut self.workload_rng
    }

    /// The fault stream, for tests that pick random victims
    pub fn fault_rng(&mut self) -> &mut Rng {
        &mut self.fault_rng
    }

    /// Messages that failed to decode on arrival, and messages a node refused as `Busy`
    pub fn dropped_on_arrival(&self) -> (u64, u64) {
        (self.undecodable, self.busy_drops)
    }

    /// The leader of the highest term among running nodes, if one claims it
    pub fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|n| n.raft.as_ref())
            .filter(|r| r.role() == Role::Leader)
            .max_by_key(|r| r.term())
            .map(Raft::id)
    }

    /// Running nodes that claim to lead, as (id, term)
    pub fn leaders(&self) -> Vec<(NodeId, Term)> {
        self.nodes
            .iter()
            .filter_map(|n| n.raft.as_ref())
            .filter(|r| r.role() == Role::Leader)
            .map(|r| (r.id(), r.term()))
            .collect()
    }

    /// How many nodes have `index` applied in their state machine in their current (or, if
    /// crashed, last) life, by applying it or by loading a snapshot covering it, and the entry
    /// at `index`
    pub fn n_committed(&self, index: Index) -> (usize, Option<Entry>) {
        let mut count = 0;
        let mut entry = None;
        for n in &self.nodes {
            if index == 0 || n.app.applied < index {
                continue;
            }
            count += 1;
            if index > n.applied_base {
                entry = n
                    .applied
                    .get((index - n.applied_base - 1) as usize)
                    .cloned();
            }
        }
        if count > 0 && entry.is_none() {
            entry = self.history.get((index - 1) as usize).cloned();
        }
        (count, entry)
    }

    // ----- faults -----

    /// Crashes node `id`: it stops, and its disk keeps only what was durable (perhaps with the
    /// oldest pending write torn)
    pub fn crash(&mut self, id: NodeId) {
        let i = (id - 1) as usize;
        if self.nodes[i].raft.take().is_some() {
            let cfg = self.config.disk.clone();
            self.nodes[i].disk.crash(&cfg, &mut self.disk_rng);
            self.nodes[i].paused = false;
            self.trace.record(format!("{} n{id} CRASH", self.now));
        }
    }

    /// Restarts a crashed node from its durable state (a running node is crashed first)
    pub fn restart(&mut self, id: NodeId) {
        self.crash(id);
        let i = (id - 1) as usize;
        self.nodes[i].restarts += 1;
        let durable_term = self.nodes[i].disk.hard_state.term;
        self.checker.on_restart(id, durable_term);
        self.boot(id);
        self.trace.record(format!("{} n{id} RESTART", self.now));
        self.after_event(id);
    }

    /// Pauses node `id`: no timers fire and arriving messages wait until [`Sim::resume`]
    pub fn pause(&mut self, id: NodeId) {
        self.nodes[(id - 1) as usize].paused = true;
        self.trace.record(format!("{} n{id} PAUSE", self.now));
    }

    /// Resumes a paused node; it sees all the time that passed at once
    pub fn resume(&mut self, id: NodeId) {
        self.nodes[(id - 1) as usize].paused = false;
        self.trace.record(format!("{} n{id} RESUME", self.now));
    }

    /// Whether node `id` is paused
    pub fn is_paused(&self, id: NodeId) -> bool {
        self.nodes[(id - 1) as usize].paused
    }

    /// Cuts every link to and from node `id`
    pub fn disconnect(&mut self, id: NodeId) {
        for other in self.ids() {
            if other != id {
                self.network.set_cut(id, other, true);
                self.network.set_cut(other, id, true);
            }
        }
        self.nodes[(id - 1) as usize].disconnected = true;
        self.trace.record(format!("{} n{id} DISCONNECT", self.now));
    }

    /// Reconnects node `id` to every node that is not disconnected itself (the nodes it can
    /// reach again are those still in the connected set, as in the classic lab harness)
    pub fn connect(&mut self, id: NodeId) {
        self.nodes[(id - 1) as usize].disconnected = false;
        for other in self.ids() {
            if other != id && self.is_connected(other) {
                self.network.set_cut(id, other, false);
                self.network.set_cut(other, id, false);
            }
        }
        self.trace.record(format!("{} n{id} CONNECT", self.now));
    }

    /// Whether node `id` is not cut off by [`Sim::disconnect`] (partitions do not count)
    pub fn is_connected(&self, id: NodeId) -> bool {
        !self.nodes[(id - 1) as usize].disconnected
    }

    /// Whether messages from `from` to `to` currently get through the cut links
    pub fn link_up(&self, from: NodeId, to: NodeId) -> bool {
        !self.network.is_cut(from, to)
    }

    /// Splits the nodes into groups that hear only each other; unlisted nodes are isolated
    pub fn partition(&mut self, groups: &[&[NodeId]]) {
        let group_of = |id: NodeId| groups.iter().position(|g| g.contains(&id));
        for a in self.ids() {
            for b in self.ids() {
                if a != b {
                    let same = group_of(a).is_some() && group_of(a) == group_of(b);
                    self.network.set_cut(a, b, !same);
                }
            }
        }
        self.trace
            .record(format!("{} PARTITION {groups:?}", self.now));
    }

    /// Cuts (or restores) the one-way link `from -> to`
    pub fn set_link(&mut self, from: NodeId, to: NodeId, up: bool) {
        self.network.set_cut(from, to, !up);
        self.trace.record(format!(
            "{} LINK {from}->{to} {}",
            self.now,
            if up { "up" } else { "down" }
        ));
    }

    /// Restores every link
    pub fn heal(&mut self) {
        self.network.heal();
        for n in &mut self.nodes {
            n.disconnected = false;
        }
        self.trace.record(format!("{} HEAL", self.now));
    }

    /// Changes how the network behaves from now on
    pub fn set_network(&mut self, config: NetworkConfig) {
        self.network.config = config;
    }

    // ----- commands -----

    /// Proposes `data` on node `id`
    pub fn propose(&mut self, id: NodeId, data: &[u8]) -> Result<LogId, ProposeError> {
        let now = self.local_time(id);
        let Some(raft) = self.nodes[(id - 1) as usize].raft.as_mut() else {
            return Err(ProposeError::NotLeader { hint: None });
        };
        let result = raft.propose(now, data);
        if let Ok(log_id) = result {
            self.trace
                .record(format!("{} n{id} propose {log_id}", self.now));
        }
        self.after_event(id);
        result
    }

    // ----- the event loop -----

    /// Processes the next event; `false` when nothing can ever happen again
    pub fn step(&mut self) -> bool {
        let Some(at) = self.next_event_time() else {
            return false;
        };
        self.now = self.now.max(at);
        // Ties are broken in a fixed order: disks, then the network, then timers, by node id.
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            if node.raft.is_none() || node.paused {
                continue;
            }
            if node.disk.next_completion().is_some_and(|t| t <= self.now) {
                let id = node.id;
                let now = self.local_time(id);
                let node = &mut self.nodes[i];
                if let Some(write_id) = node.disk.complete_due(self.now) {
                    if let Some(raft) = node.raft.as_mut() {
                        raft.handle_persisted(now, write_id);
                    }
                    self.trace
                        .record(format!("{} n{id} persisted w{write_id}", self.now));
                    self.after_event(id);
                }
                return true;
            }
        }
        if let Some((to, decoded)) = self.network.pop_due(self.now) {
            self.deliver(to, decoded);
            return true;
        }
        for i in 0..self.nodes.len() {
            let id = self.nodes[i].id;
            let now = self.local_time(id);
            let node = &mut self.nodes[i];
            if node.paused {
                continue;
            }
            let Some(raft) = node.raft.as_mut() else {
                continue;
            };
            if raft.poll_timeout().is_some_and(|t| t <= now) {
                let before = (raft.role(), raft.term());
                if raft.handle_timeout(now).is_err() {
                    self.busy_drops += 1;
                }
                let after = (raft.role(), raft.term());
                if before != after {
                    self.trace.record(format!(
                        "{} n{id} timeout: {} t{} -> {} t{}",
                        self.now, before.0, before.1, after.0, after.1
                    ));
                }
                self.after_event(id);
                return true;
            }
        }
        true
    }

    fn deliver(&mut self, to: NodeId, decoded: Result<Outgoing, shale_core::wire::DecodeError>) {
        let Ok(out) = decoded else {
            self.undecodable += 1;
            return;
        };
        let i = (to as usize).wrapping_sub(1);
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        if node.paused {
            // Held in the receiver's socket buffer until it resumes; re-checked every 10 ms.
            let at = self.now + Duration::from_millis(10);
            self.network.defer(at, &out);
            return;
        }
        if node.raft.is_none() {
            self.network.stats.dropped += 1;
            return;
        }
        self.network.stats.delivered += 1;
        if let Some(c) = self.network.stats.received_by_node.get_mut(i) {
            *c += 1;
        }
        let now = self.local_time(to);
        let raft = self.nodes[i].raft.as_mut().expect("checked above");
        let before = (raft.role(), raft.term());
        let kind = out.message.kind_name();
        let term = out.message.term();
        let entries = out.message.entry_count();
        if raft.handle_message(now, out.from, out.message).is_err() {
            self.busy_drops += 1;
        }
        let after = (raft.role(), raft.term());
        let change = if before != after {
            format!(" -> {} t{}", after.0, after.1)
        } else {
            String::new()
        };
        self.trace.record(format!(
            "{} n{to} <- n{} {kind} t{term} e{entries}{change}",
            self.now, out.from
        ));
        self.after_event(to);
    }

    /// Drains node `id`'s outputs and checks the invariants
    fn after_event(&mut self, id: NodeId) {
        let i = (id - 1) as usize;
        let now = self.now;
        let local = self.local_time(id);
        loop {
            let mut progressed = false;
            let node = &mut self.nodes[i];
            let Some(raft) = node.raft.as_mut() else {
                return;
            };
            while let Some(write) = raft.poll_write() {
                progressed = true;
                if let Err(e) = self.checker.on_write(raft, &write) {
                    self.fail(e);
                }
                let cfg = &self.config.disk;
                node.disk.submit(now, write, cfg, &mut self.disk_rng);
            }
            while let Some(out) = raft.poll_message() {
                progressed = true;
                self.checker.on_send(&out);
                self.network.send(now, &out);
            }
            if let Err(e) = self.checker.on_step(raft) {
                self.fail(e);
            }
            while let Some(meta) = raft.poll_restore() {
                progressed = true;
                let result = load_snapshot(&node.disk, &meta).and_then(|app| {
                    self.checker.on_restore(id, app.applied, app.digest)?;
                    Ok(app)
                });
                match result {
                    Ok(app) => {
                        node.applied.clear();
                        node.applied_base = app.applied;
                        node.app = app;
                    }
                    Err(e) => self.fail(format!("node {id} restoring an installed snapshot: {e}")),
                }
                node.installs += 1;
                self.trace.record(format!(
                    "{} n{id} restored snapshot {}",
                    self.now, meta.last
                ));
            }
            while let Some(entry) = raft.poll_apply() {
                progressed = true;
                node.app.apply(&entry);
                let checked = self
                    .checker
                    .on_apply(id, &entry)
                    .and_then(|()| self.checker.check_digest(id, entry.index, node.app.digest));
                if let Err(e) = checked {
                    self.fail(e);
                }
                if self.history.len() as Index == entry.index - 1 {
                    self.history.push(entry.clone());
                }
                node.applied.push(entry);
            }
            while let Some(task) = raft.poll_snapshot_task() {
                progressed = true;
                match serve_snapshot_task(raft, &node.app, &mut node.disk, task, local) {
                    Ok(Some(taken)) => {
                        self.trace
                            .record(format!("{} n{id} took snapshot {taken}", self.now));
                        node.snapshots_taken += 1;
                    }
                    Ok(None) => {}
                    Err(e) => self.fail(format!("node {id}: {e}")),
                }
            }
            node.peak_log_bytes = node.peak_log_bytes.max(raft.log_bytes());
            if !progressed {
                return;
            }
        }
    }

    fn next_event_time(&self) -> Option<Instant> {
        let mut next = self.network.next_arrival();
        for n in &self.nodes {
            let Some(raft) = n.raft.as_ref() else {
                continue;
            };
            if n.paused {
                continue;
            }
            let candidates = [
                n.disk.next_completion(),
                raft.poll_timeout().map(|t| self.global_time(n, t)),
            ];
            for t in candidates.into_iter().flatten() {
                next = Some(next.map_or(t, |x: Instant| x.min(t)));
            }
        }
        next
    }

    /// Node `id`'s clock reading now (virtual time skewed by its drift)
    fn local_time(&self, id: NodeId) -> Instant {
        let drift = self.nodes[(id - 1) as usize].drift_ppm;
        skew(self.now, drift)
    }

    /// The global time at which node `n`'s clock reads `local`
    fn global_time(&self, n: &SimNode, local: Instant) -> Instant {
        if n.drift_ppm == 0 {
            return local;
        }
        let micros = local.as_micros() as i128 * 1_000_000 / (1_000_000 + n.drift_ppm as i128);
        let mut t = Instant::from_micros(micros.max(0) as u64);
        // Round up so the node's clock has really reached `local` at `t`.
        while skew(t, n.drift_ppm) < local {
            t += Duration::from_micros(1);
        }
        t.max(self.now)
    }

    /// Runs for `duration` of virtual time
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.next_event_time().is_some_and(|t| t <= end) {
            self.step();
        }
        self.now = self.now.max(end);
    }

    /// Runs until `done` holds, or fails once `budget` of virtual time has passed
    pub fn run_until(
        &mut self,
        budget: Duration,
        what: &str,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Result<(), SimError> {
        let end = self.now + budget;
        loop {
            if done(self) {
                return Ok(());
            }
            match self.next_event_time() {
                Some(t) if t <= end => {
                    self.step();
                }
                _ => {
                    self.now = self.now.max(end);
                    return if done(self) {
                        Ok(())
                    } else {
                        Err(self.error(format!("timed out after {budget} waiting for {what}")))
                    };
                }
            }
        }
    }

    /// An error for this run at this time
    pub fn error(&self, message: String) -> SimError {
        SimError {
            seed: self.config.seed,
            message,
            at: self.now,
        }
    }

    /// Reports an invariant violation: panics with the seed and the recent trace
    fn fail(&self, message: String) -> ! {
        panic!(
            "INVARIANT VIOLATED: {message}\nseed {seed} at {now}; replay with SHALE_SEED={seed}\nrecent events:\n{tail}",
            seed = self.config.seed,
            now = self.now,
            tail = self.trace.tail()
        );
    }
}

fn skew(t: Instant, drift_ppm: i64) -> Instant {
    if drift_ppm == 0 {
        return t;
    }
    let micros = t.as_micros() as i128 + t.as_micros() as i128 * drift_ppm as i128 / 1_000_000;
    Instant::from_micros(micros.max(0) as u64)
}
