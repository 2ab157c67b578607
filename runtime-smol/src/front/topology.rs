//! Where each slot range is served: the picture `CLUSTER SLOTS`, `NODES` and `SHARDS` show
//! and `-MOVED` redirections follow
//!
//! Each shard owns a contiguous range of slots ([`shard_slots`]); the configuration names the
//! group that owns the shard and the group's replicas; the node's status names each hosted
//! group's leader. A [`SlotRange`] lists the leader first (the node a cluster-aware client
//! sends the range's keys to), then the other replicas in id order. Adjacent shards of one
//! group merge into one range. Nodes are shown only where their client address is known
//! (`--clients`): without it a node presents itself alone, as the master of every slot.
//!
//! The front door keeps a [`Topology`] a few tenths of a second old ([`REFRESH`]), so a
//! redirection costs no round trip to the node's loop. A stale picture is harmless: a client
//! sent to a node that no longer leads the range is redirected again or, when that node does
//! not know better, served through a forward.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use shale_core::controller::GroupId;
use shale_core::shard::{SLOT_COUNT, shard_slots};
use shale_runtime_std::node::NodeStatus;

use crate::node::NodeClient;

/// How often the front door refreshes its [`Topology`]
pub const REFRESH: Duration = Duration::from_millis(200);

/// One contiguous range of slots and the nodes that serve it
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRange {
    /// First slot
    pub first: u16,
    /// Last slot (inclusive)
    pub last: u16,
    /// The group that owns it
    pub gid: GroupId,
    /// Its replicas with a known client address: the leader first when known, then the
    /// others by id
    pub nodes: Vec<u64>,
    /// Whether `nodes[0]` is the leader this node knows of (not just the first replica)
    pub leader_known: bool,
}

/// The cluster as this node sees it
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Topology {
    /// The configuration number (shown as the epoch)
    pub epoch: u64,
    /// Every slot's range, ascending, covering all slots once every shard has an owner
    /// (empty before the first configuration)
    pub ranges: Vec<SlotRange>,
}

impl Topology {
    /// The picture of `status`, showing the nodes of `clients`
    pub fn of(status: &NodeStatus, clients: &BTreeMap<u64, SocketAddr>) -> Topology {
        let Some(config) = &status.config else {
            return Topology::default();
        };
        let shard_count = config.shards.len() as u32;
        if shard_count == 0 || config.shards.contains(&0) {
            return Topology {
                epoch: config.num,
                ranges: Vec::new(),
            };
        }
        let mut ranges: Vec<SlotRange> = Vec::new();
        for (shard, &gid) in config.shards.iter().enumerate() {
            let slots = shard_slots(shard as u32, shard_count);
            if slots.is_empty() {
                continue;
            }
            let last = slots.end - 1;
            if let Some(prev) = ranges.last_mut()
                && prev.gid == gid
                && prev.last + 1 == slots.start
            {
                prev.last = last;
                continue;
            }
            let leader = status
                .groups
                .iter()
                .find(|g| g.gid == gid)
                .and_then(|g| g.leader);
            let mut nodes: Vec<u64> = config
                .groups
                .get(&gid)
                .map(|replicas| {
                    let mut r = replicas.clone();
                    r.sort_unstable();
                    r
                })
                .unwrap_or_default();
            let leader_known = leader.is_some_and(|l| nodes.contains(&l));
            if let Some(l) = leader.filter(|_| leader_known) {
                nodes.retain(|&n| n != l);
                nodes.insert(0, l);
            }
            nodes.retain(|n| clients.contains_key(n));
            let leader_known = leader_known && nodes.first() == leader.as_ref();
            ranges.push(SlotRange {
                first: slots.start,
                last,
                gid,
                nodes,
                leader_known,
            });
        }
        Topology {
            epoch: config.num,
            ranges,
        }
    }

    /// Whether every slot has an owner
    pub fn ready(&self) -> bool {
        self.ranges.last().is_some_and(|r| r.last == SLOT_COUNT - 1)
    }

    /// The range holding `slot`
    pub fn range_of(&self, slot: u16) -> Option<&SlotRange> {
        let i = self.ranges.partition_point(|r| r.last < slot);
        self.ranges.get(i).filter(|r| r.first <= slot)
    }
}

/// The front door's current [`Topology`], refreshed in the background
#[derive(Debug, Default)]
pub struct TopologyCache {
    current: RwLock<Arc<Topology>>,
}

impl TopologyCache {
    /// The latest picture
    pub fn get(&self) -> Arc<Topology> {
        self.current
            .read()
            .map_or_else(|p| p.into_inner().clone(), |t| t.clone())
    }

    /// Takes `topology`, where a range whose leader is not known now (an election under
    /// way) keeps the order it had while its leader was known, if it is the same range of the
    /// same group: the last leader is a better guess for clients than the lowest id
    fn set(&self, mut topology: Topology) {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for range in topology.ranges.iter_mut().filter(|r| !r.leader_known) {
            if let Some(before) = current
                .ranges
                .iter()
                .find(|b| b.first == range.first && b.last == range.last && b.gid == range.gid)
            {
                let mut nodes = before.nodes.clone();
                nodes.retain(|n| range.nodes.contains(n));
                if nodes.len() == range.nodes.len() {
                    range.nodes = nodes;
                }
            }
        }
        if **current != topology {
            *current = Arc::new(topology);
        }
    }
}

/// Keeps `cache` up to date with the node's status every [`REFRESH`], until the node stops
pub async fn refresh(
    node: NodeClient,
    clients: BTreeMap<u64, SocketAddr>,
    cache: Arc<TopologyCache>,
) {
    loop {
        let Ok(status) = node.status().await else {
            return;
        };
        cache.set(Topology::of(&status, &clients));
        async_io::Timer::after(REFRESH).await;
    }
}
