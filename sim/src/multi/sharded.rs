//! A sharded cluster in the multi-group simulator: the controller and replica groups on
//! dedicated nodes, with helpers for scenarios (joins, leaves, whole-group shutdowns, KV calls)
//!
//! ```
//! use shale_core::shard::{KvOp, KvResult};
//! use shale_sim::multi::{ShardedCluster, ShardedConfig};
//!
//! let mut c = ShardedCluster::new(ShardedConfig::new(3));
//! c.join(&[100]).unwrap();
//! let put = KvOp::Put { key: b"k".to_vec(), value: b"v".to_vec() };
//! assert_eq!(c.op(put).unwrap(), Ok(KvResult::Done));
//! c.join(&[101]).unwrap();
//! let got = c.op(KvOp::Get { key: b"k".to_vec() }).unwrap();
//! assert_eq!(got, Ok(KvResult::Value(Some(b"v".to_vec()))));
//! ```

use std::collections::BTreeMap;

use shale_core::controller::{Configuration, ControllerCommand, GroupId, ShardController};
use shale_core::group::{DriverConfig, GroupState};
use shale_core::raft::{Config, NodeId};
use shale_core::shard::{KvError, KvOp, KvResult, ShardLimits, ShardStore, key_shard};
use shale_core::time::Duration;

use super::{CLERK_POLL, CONTROLLER, KvClient, MachineSpec, MultiConfig, MultiSim};
use crate::{NetworkConfig, SimError};

/// A key and its value, borrowed
type Entry<'a> = (&'a Vec<u8>, &'a Vec<u8>);

/// How a [`ShardedCluster`] is built
#[derive(Clone, Debug)]
pub struct ShardedConfig {
    /// The seed
    pub seed: u64,
    /// Number of shards
    pub shards: u32,
    /// Replica group ids; each gets three dedicated nodes after the controller's three,
    /// unless [`shared_nodes`](Self::shared_nodes)
    pub gids: Vec<GroupId>,
    /// Every group (the controller too) has a replica on each of the same three nodes, as
    /// `shale up` places them: a node's crash, pause or cut then hits every group at once,
    /// and their messages share its links (false, the default: three nodes per group)
    pub shared_nodes: bool,
    /// Raft settings of every replica (snapshot thresholds included)
    pub raft: Config,
    /// The network
    pub network: NetworkConfig,
    /// Limits of every shard
    pub limits: ShardLimits,
    /// Time one KV or controller call may take before it is an error
    pub call_budget: Duration,
    /// CPU time each node spends per event; `None` (the default) makes CPU free (see
    /// [`MultiConfig::cpu_per_event`])
    pub cpu_per_event: Option<Duration>,
    /// CPU time each node's loop spends per MiB it handles; `None` (the default) makes bytes
    /// free (see [`MultiConfig::cpu_per_mib`])
    pub cpu_per_mib: Option<Duration>,
    /// Most shards with data one configuration moves (0, the default: any number; the program
    /// moves one at a time)
    pub max_moves_per_config: u32,
    /// Most clock drift per node, in parts per million (0, the default: none; see
    /// [`MultiConfig::clock_drift_ppm_max`])
    pub clock_drift_ppm_max: u64,
    /// How often hosts hand groups to their preferred leaders (see
    /// [`MultiConfig::leader_balance_interval`]); `None` (the default): never
    pub leader_balance_interval: Option<Duration>,
}

impl ShardedConfig {
    /// Groups 100, 101 and 102 over 10 shards, 50 ms heartbeats and 500-1000 ms election
    /// timeouts, on a reliable network
    pub fn new(seed: u64) -> Self {
        let mut raft = Config::new(0, 0);
        raft.heartbeat_interval = Duration::from_millis(50);
        raft.election_timeout_min = Duration::from_millis(500);
        raft.election_timeout_max = Duration::from_millis(1000);
        ShardedConfig {
            seed,
            shards: 10,
            gids: vec![100, 101, 102],
            shared_nodes: false,
            raft,
            network: NetworkConfig::reliable(),
            limits: ShardLimits::default(),
            call_budget: Duration::from_secs(20),
            cpu_per_event: None,
            cpu_per_mib: None,
            max_moves_per_config: 0,
            clock_drift_ppm_max: 0,
            leader_balance_interval: None,
        }
    }
}

/// A controller on nodes 1-3 and replica groups of three on the following nodes (see the
/// module docs)
#[derive(Debug)]
pub struct ShardedCluster {
    /// The simulation
    pub sim: MultiSim,
    /// Each group's nodes
    pub groups: BTreeMap<GroupId, Vec<NodeId>>,
    /// The build settings
    pub config: ShardedConfig,
    /// The client behind [`ShardedCluster::op`]
    user: Option<KvClient>,
}

impl ShardedCluster {
    /// Builds the cluster and waits for the controller to elect a leader
    pub fn new(config: ShardedConfig) -> Self {
        let nodes = if config.shared_nodes {
            3
        } else {
            3 + 3 * config.gids.len()
        };
        let mut mc = MultiConfig::new(config.seed, nodes);
        mc.raft = config.raft.clone();
        // As the nodes of the program do: the largest values fit in one entry.
        mc.raft.max_entry_bytes = mc
            .raft
            .max_entry_bytes
            .max(DriverConfig::default().max_entry_bytes(&config.limits));
        mc.network = config.network.clone();
        mc.cpu_per_event = config.cpu_per_event;
        mc.cpu_per_mib = config.cpu_per_mib;
        mc.clock_drift_ppm_max = config.clock_drift_ppm_max;
        mc.leader_balance_interval = config.leader_balance_interval;
        let mut sim = MultiSim::with_staged_controller(
            mc,
            &[1, 2, 3],
            config.shards,
            config.max_moves_per_config,
        );
        let mut groups = BTreeMap::new();
        for (i, &gid) in config.gids.iter().enumerate() {
            let base = if config.shared_nodes {
                1
            } else {
                4 + 3 * i as NodeId
            };
            let voters = vec![base, base + 1, base + 2];
            let spec = MachineSpec::Group {
                gid,
                shards: config.shards,
                limits: config.limits,
            };
            sim.add_group(gid, &voters, spec);
            groups.insert(gid, voters);
        }
        ShardedCluster {
            sim,
            groups,
            config,
            user: None,
        }
    }

    fn control(&mut self, command: ControllerCommand) -> Result<Configuration, SimError> {
        let what = format!("{command:?}");
        let budget = self.config.call_budget;
        self.sim
            .controller_call(command, budget)?
            .map_err(|e| self.sim.error(format!("{what} was refused: {e}")))
    }

    /// Joins `gids` (with their nodes) in one configuration change
    pub fn join(&mut self, gids: &[GroupId]) -> Result<Configuration, SimError> {
        let groups = gids.iter().map(|g| (*g, self.groups[g].clone())).collect();
        self.control(ControllerCommand::Join(groups))
    }

    /// Has `gids` leave in one configuration change
    pub fn leave(&mut self, gids: &[GroupId]) -> Result<Configuration, SimError> {
        self.control(ControllerCommand::Leave(gids.to_vec()))
    }

    /// Gives `shard` to group `gid`
    pub fn move_shard(&mut self, shard: u32, gid: GroupId) -> Result<Configuration, SimError> {
        self.control(ControllerCommand::Move { shard, gid })
    }

    /// The controller's latest configuration (through the log)
    pub fn query(&mut self) -> Result<Configuration, SimError> {
        self.control(ControllerCommand::Query(None))
    }

    /// Crashes every node of group `gid`
    pub fn shutdown_group(&mut self, gid: GroupId) {
        for id in self.groups[&gid].clone() {
            self.sim.crash(id);
        }
    }

    /// Restarts every node of group `gid` from its disks
    pub fn start_group(&mut self, gid: GroupId) {
        for id in self.groups[&gid].clone() {
            self.sim.restart(id);
        }
    }

    /// A new KV client
    pub fn client(&mut self) -> KvClient {
        KvClient::new(&mut self.sim, self.config.shards)
    }

    /// Runs `op` through `client` until it is done; `None` if `budget` passes first (the
    /// operation is then abandoned)
    pub fn try_call(
        &mut self,
        client: &mut KvClient,
        op: KvOp,
        budget: Duration,
    ) -> Option<Result<KvResult, KvError>> {
        let end = self.sim.now() + budget;
        client.start(&mut self.sim, op);
        loop {
            if let Some(result) = client.poll(&mut self.sim) {
                return Some(result);
            }
            if self.sim.now() >= end {
                client.cancel();
                return None;
            }
            self.sim.run_for(CLERK_POLL);
        }
    }

    /// Runs `op` through the cluster's own client; an error if it takes longer than the call
    /// budget
    pub fn op(&mut self, op: KvOp) -> Result<Result<KvResult, KvError>, SimError> {
        let mut user = match self.user.take() {
            Some(u) => u,
            None => self.client(),
        };
        let what = format!("{op:?}");
        let budget = self.config.call_budget;
        let result = self.try_call(&mut user, op, budget);
        match result {
            Some(r) => {
                self.user = Some(user);
                Ok(r)
            }
            None => {
                self.user = Some(user.successor(&mut self.sim));
                Err(self.sim.error(format!(
                    "no answer to {what} within {budget}\n{}",
                    self.describe()
                )))
            }
        }
    }

    /// The value of `key`, read through the cluster's own client
    pub fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, SimError> {
        match self.op(KvOp::Get { key: key.to_vec() })? {
            Ok(KvResult::Value(v)) => Ok(v),
            other => Err(self.sim.error(format!("get {key:?} answered {other:?}"))),
        }
    }

    /// Appends `value` to `key` through the cluster's own client
    pub fn append(&mut self, key: &[u8], value: &[u8]) -> Result<(), SimError> {
        let op = KvOp::Append {
            key: key.to_vec(),
            value: value.to_vec(),
        };
        match self.op(op)? {
            Ok(KvResult::Length(_)) => Ok(()),
            other => Err(self
                .sim
                .error(format!("append to {key:?} answered {other:?}"))),
        }
    }

    /// Sets `key` to `value` through the cluster's own client
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), SimError> {
        let op = KvOp::Put {
            key: key.to_vec(),
            value: value.to_vec(),
        };
        match self.op(op)? {
            Ok(KvResult::Done) => Ok(()),
            other => Err(self.sim.error(format!("put {key:?} answered {other:?}"))),
        }
    }

    /// The shard of `key`
    pub fn shard_of(&self, key: &[u8]) -> u32 {
        key_shard(key, self.config.shards)
    }

    /// One key per shard, in shard order
    pub fn key_per_shard(&self) -> Vec<Vec<u8>> {
        (0..self.config.shards)
            .map(|s| {
                (0u32..)
                    .map(|i| format!("key-{i}").into_bytes())
                    .find(|k| self.shard_of(k) == s)
                    .expect("some key hashes to every shard")
            })
            .collect()
    }

    /// The group state of `gid`'s replica on node `id`, if it runs
    pub fn state(&self, gid: GroupId, id: NodeId) -> Option<&GroupState> {
        self.sim.machine::<GroupState>(gid, id)
    }

    /// The newest configuration applied by a running controller replica
    pub fn controller_latest(&self) -> Option<&Configuration> {
        (1..=3)
            .filter_map(|id| self.sim.machine::<ShardController>(CONTROLLER, id))
            .map(|c| c.latest())
            .max_by_key(|c| c.num)
    }

    /// Bytes durable on every replica group's disks (log and snapshot), over every node
    pub fn stored_bytes(&self) -> usize {
        self.groups
            .iter()
            .flat_map(|(gid, ids)| ids.iter().map(move |&id| (*gid, id)))
            .map(|(gid, id)| self.sim.stored_bytes(gid, id))
            .sum()
    }

    /// Bytes of keys and values held in the applied state of every running replica group
    /// replica (shards offered away included)
    pub fn held_bytes(&self) -> u64 {
        self.groups
            .iter()
            .flat_map(|(gid, ids)| ids.iter().map(move |&id| (*gid, id)))
            .filter_map(|(gid, id)| self.state(gid, id))
            .map(|s| s.data_bytes())
            .sum()
    }

    /// One line per running replica group replica: its role, configuration and shards
    pub fn describe(&self) -> String {
        let mut out = format!(
            "controller latest {:?}\n",
            self.controller_latest().map(|c| (c.num, &c.shards))
        );
        for (gid, ids) in &self.groups {
            for &id in ids {
                let role = self
                    .sim
                    .raft(*gid, id)
                    .map(|r| (r.role(), r.term(), r.commit_index(), r.applied_index()));
                let state = self.state(*gid, id).map(|s| {
                    let shards: Vec<_> = s.shards.iter().map(|(k, v)| (*k, v.status)).collect();
                    (s.config.num, shards)
                });
                out += &format!("g{gid} n{id} {role:?} {state:?}\n");
            }
        }
        out
    }

    /// The highest term any running replica of each group (the controller's included) has
    /// seen; with pre-vote, a term only grows through a real election
    pub fn terms(&self) -> BTreeMap<GroupId, u64> {
        self.sim
            .group_ids()
            .into_iter()
            .map(|gid| {
                let term = self
                    .sim
                    .ids()
                    .into_iter()
                    .filter_map(|id| self.sim.raft(gid, id))
                    .map(|r| r.term())
                    .max()
                    .unwrap_or(0);
                (gid, term)
            })
            .collect()
    }

    /// Writes `keys_per_shard` keys of `value_bytes` each into every shard, in all-or-none
    /// batches of up to `batch_bytes` of values per shard sent by `clients` concurrent
    /// clients; returns every key with its value
    pub fn load(
        &mut self,
        keys_per_shard: usize,
        value_bytes: usize,
        batch_bytes: usize,
        clients: usize,
    ) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, SimError> {
        let shards = self.config.shards;
        let mut per_shard: Vec<Vec<Vec<u8>>> = vec![Vec::new(); shards as usize];
        let mut i = 0u64;
        while per_shard.iter().any(|k| k.len() < keys_per_shard) {
            let key = format!("bulk-{i:010}").into_bytes();
            let keys = &mut per_shard[self.shard_of(&key) as usize];
            if keys.len() < keys_per_shard {
                keys.push(key);
            }
            i += 1;
        }
        let per_batch = (batch_bytes / value_bytes.max(1)).max(1);
        let mut batches: Vec<Vec<(Vec<u8>, Vec<u8>)>> = Vec::new();
        let mut expected = BTreeMap::new();
        for keys in per_shard {
            for chunk in keys.chunks(per_batch) {
                let pairs: Vec<(Vec<u8>, Vec<u8>)> = chunk
                    .iter()
                    .map(|k| {
                        let mut value = k.clone();
                        value.resize(value_bytes, b'.');
                        (k.clone(), value)
                    })
                    .collect();
                expected.extend(pairs.iter().cloned());
                batches.push(pairs);
            }
        }
        let mut workers: Vec<KvClient> = (0..clients.max(1)).map(|_| self.client()).collect();
        let mut busy: Vec<bool> = vec![false; workers.len()];
        let budget = self.config.call_budget;
        let mut deadline = self.sim.now() + budget;
        loop {
            for (w, client) in workers.iter_mut().enumerate() {
                if busy[w] {
                    match client.poll(&mut self.sim) {
                        Some(Ok(KvResult::Done)) => {
                            busy[w] = false;
                            deadline = self.sim.now() + budget;
                        }
                        Some(other) => {
                            return Err(self.sim.error(format!("a bulk write answered {other:?}")));
                        }
                        None => {}
                    }
                }
                if !busy[w]
                    && let Some(pairs) = batches.pop()
                {
                    client.start(&mut self.sim, KvOp::MultiSet { pairs });
                    busy[w] = true;
                }
            }
            if batches.is_empty() && busy.iter().all(|b| !b) {
                return Ok(expected);
            }
            if self.sim.now() >= deadline {
                return Err(self
                    .sim
                    .error(format!("bulk writes made no progress within {budget}")));
            }
            self.sim.run_for(CLERK_POLL);
        }
    }

    /// Checks that every running replica of the group owning each shard in the latest
    /// configuration holds every key of `expected` in that shard with its value (read from
    /// the replicas' state machines, not through clients; other keys may be there too)
    pub fn check_data(&self, expected: &BTreeMap<Vec<u8>, Vec<u8>>) -> Result<(), SimError> {
        let Some(latest) = self.controller_latest().cloned() else {
            return Err(self.sim.error("no controller replica runs".into()));
        };
        let mut want: BTreeMap<u32, Vec<Entry<'_>>> = BTreeMap::new();
        for (k, v) in expected {
            want.entry(self.shard_of(k)).or_default().push((k, v));
        }
        for shard in 0..self.config.shards {
            let owner = latest.owner(shard);
            let Some(ids) = self.groups.get(&owner) else {
                continue;
            };
            let wanted = want.remove(&shard).unwrap_or_default();
            for &id in ids {
                let Some(state) = self.state(owner, id) else {
                    continue;
                };
                let Some(slot) = state.shards.get(&shard) else {
                    return Err(self.sim.error(format!(
                        "g{owner} n{id} does not hold shard {shard} it owns"
                    )));
                };
                for (key, value) in &wanted {
                    let held = slot
                        .state
                        .kv
                        .get(key)
                        .map(|v| shale_core::shard::value::StoredValue::decode(v).payload);
                    if held != Some(value.as_slice()) {
                        return Err(self.sim.error(format!(
                            "g{owner} n{id} shard {shard}: key {} holds {}",
                            String::from_utf8_lossy(key),
                            match held {
                                None => "nothing".to_owned(),
                                Some(v) => format!("{} other bytes", v.len()),
                            }
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Runs until every running replica of every group is in the controller's latest
    /// configuration with every shard settled
    pub fn settle(&mut self, budget: Duration) -> Result<(), SimError> {
        let groups = self.groups.clone();
        let result = self.sim.run_until(budget, "groups to settle", |s| {
            // The newest configuration any controller replica applied (the one that answered
            // the last change has it).
            let Some(latest) = (1..=3)
                .filter_map(|id| s.machine::<ShardController>(CONTROLLER, id))
                .map(|c| c.latest().num)
                .max()
            else {
                return false;
            };
            groups.iter().all(|(gid, ids)| {
                ids.iter().all(|&id| {
                    s.machine::<GroupState>(*gid, id)
                        .is_none_or(|g| g.config.num == latest && g.settled())
                })
            })
        });
        result.map_err(|e| {
            self.sim
                .error(format!("{}\n{}", e.message, self.describe()))
        })
    }
}
