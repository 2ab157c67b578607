//! A whole Shale node on the smol runtime: the node's task, its Redis-protocol front door and
//! its metrics endpoint; and a local cluster of such nodes (`shale up`)

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use shale_core::controller::GroupId;
use shale_core::raft::NodeId;
use shale_runtime_std::node::{CONTROLLER_GROUP, GroupSpec, NodeConfig, NodeError, NodeStatus};
use shale_runtime_std::transport::{PeerCounterSet, PeerStats};

use async_io::Async;

use crate::front::{self, FrontConfig};
use crate::metrics::{
    Metrics, MetricsServer, MetricsServerConfig, PeerMetrics, spawn_metrics_server,
};
use crate::node::{NodeClient, SmolNode};
use crate::runtime::Runtime;

/// How often a node's Raft state is copied into its metrics
const METRICS_REFRESH: Duration = Duration::from_secs(1);

/// Everything one server (node plus front door) needs
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The node itself: id, data directory, peers, groups
    pub node: NodeConfig,
    /// Where Redis clients connect
    pub client_addr: SocketAddr,
    /// Where Prometheus scrapes `/metrics` (`None`: no endpoint)
    pub admin_addr: Option<SocketAddr>,
    /// The password clients must AUTH with, if any
    pub requirepass: Option<String>,
    /// Where cluster-aware clients connect (`None`: no cluster port); see
    /// [`front`](crate::front)'s docs on the two kinds of connection
    pub cluster_addr: Option<SocketAddr>,
    /// A listener already bound to [`cluster_addr`](Self::cluster_addr) (a port the OS chose,
    /// kept from the moment it is known)
    pub cluster_listener: Option<Arc<std::net::TcpListener>>,
    /// Every node's cluster-aware client address, this one's included (empty: unknown)
    pub cluster_clients: BTreeMap<NodeId, SocketAddr>,
}

/// A running server
#[derive(Debug)]
pub struct Server {
    node: SmolNode,
    client_addr: SocketAddr,
    cluster_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    metrics_server: Option<MetricsServer>,
}

/// Why a server did not start
#[derive(Debug)]
pub enum ServerError {
    /// The node did not boot (storage, peer listener)
    Node(NodeError),
    /// A listener could not bind
    Bind(&'static str, SocketAddr, std::io::Error),
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerError::Node(e) => write!(f, "{e}"),
            ServerError::Bind(what, addr, e) => {
                write!(f, "cannot listen for {what} on {addr}: {e}")
            }
        }
    }
}

impl std::error::Error for ServerError {}

impl Server {
    /// Boots the node and starts serving on `rt`
    pub fn start(rt: &Runtime, config: &ServerConfig) -> Result<Server, ServerError> {
        // Bind the client listener first: a port in use fails before anything touches disk.
        let listener = front::bind(config.client_addr)
            .map_err(|e| ServerError::Bind("clients", config.client_addr, e))?;
        let client_addr = listener
            .get_ref()
            .local_addr()
            .map_err(|e| ServerError::Bind("clients", config.client_addr, e))?;
        let metrics = Arc::new(Metrics::new());
        let (admin_addr, metrics_server) = match config.admin_addr {
            Some(addr) => {
                let (bound, server) =
                    spawn_metrics_server(addr, metrics.clone(), MetricsServerConfig::default())
                        .map_err(|e| ServerError::Bind("metrics", addr, e))?;
                (Some(bound), Some(server))
            }
            None => (None, None),
        };
        let ex = rt.executor();
        let node = SmolNode::spawn(ex, &config.node, metrics.clone()).map_err(ServerError::Node)?;
        let cluster_listener = match (&config.cluster_listener, config.cluster_addr) {
            (Some(l), _) => Some(
                l.try_clone()
                    .and_then(Async::new)
                    .map_err(|e| ServerError::Bind("cluster clients", config.client_addr, e))?,
            ),
            (None, Some(addr)) => {
                Some(front::bind(addr).map_err(|e| ServerError::Bind("cluster clients", addr, e))?)
            }
            (None, None) => None,
        };
        let cluster_addr = cluster_listener
            .as_ref()
            .and_then(|l| l.get_ref().local_addr().ok());
        let mut front_config = FrontConfig::new(
            config.node.id,
            config.node.shard_count,
            client_addr,
            config.requirepass.clone(),
            metrics.clone(),
        );
        front_config.cluster_clients = config.cluster_clients.clone();
        let front_config = Arc::new(front_config);
        ex.spawn(front::topology::refresh(
            node.client(),
            config.cluster_clients.clone(),
            front_config.topology.clone(),
        ))
        .detach();
        ex.spawn(front::serve(
            ex.clone(),
            listener,
            node.client(),
            front_config.clone(),
            false,
        ))
        .detach();
        if let Some(listener) = cluster_listener {
            ex.spawn(front::serve(
                ex.clone(),
                listener,
                node.client(),
                front_config,
                true,
            ))
            .detach();
        }
        ex.spawn(refresh_metrics(
            node.client(),
            node.peer_counters(),
            metrics,
        ))
        .detach();
        Ok(Server {
            node,
            client_addr,
            cluster_addr,
            admin_addr,
            metrics_server,
        })
    }

    /// Where Redis clients connect
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// Where cluster-aware clients connect, if anywhere
    pub fn cluster_addr(&self) -> Option<SocketAddr> {
        self.cluster_addr
    }

    /// Where `/metrics` is served, if anywhere
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Where peers connect
    pub fn peer_addr(&self) -> SocketAddr {
        self.node.peer_addr()
    }

    /// A handle to call the node directly
    pub fn client(&self) -> NodeClient {
        self.node.client()
    }

    /// Stops the node cleanly (pending writes finish) and the metrics endpoint
    pub async fn stop(self) -> Result<(), NodeError> {
        if let Some(m) = self.metrics_server {
            m.stop();
        }
        self.node.stop().await
    }
}

/// Copies the node's status and its transport's per-peer counters into `metrics`, every
/// [`METRICS_REFRESH`], until the node stops
async fn refresh_metrics(node: NodeClient, peers: Arc<PeerCounterSet>, metrics: Arc<Metrics>) {
    let mut snapshots_seen: BTreeMap<GroupId, u64> = BTreeMap::new();
    let mut peer_metrics: BTreeMap<NodeId, Arc<PeerMetrics>> = BTreeMap::new();
    loop {
        for (id, stats) in peers.snapshot() {
            let peer = peer_metrics.entry(id).or_insert_with(|| metrics.peer(id));
            mirror_peer(peer, &stats);
        }
        let Ok(status) = node.status().await else {
            return;
        };
        record_status(&metrics, &status, &mut snapshots_seen);
        async_io::Timer::after(METRICS_REFRESH).await;
    }
}

/// Copies one status report into `metrics`; `snapshots_seen` holds each group's snapshot
/// index as of the previous report, so a newer one counts as a snapshot taken
fn record_status(
    metrics: &Metrics,
    status: &NodeStatus,
    snapshots_seen: &mut BTreeMap<GroupId, u64>,
) {
    for g in &status.groups {
        let group = metrics.group(g.gid);
        group.set_raft_status(g.term, g.commit, g.applied, g.role == "leader");
        let seen = snapshots_seen.entry(g.gid).or_insert(g.snapshot_index);
        if g.snapshot_index > *seen {
            *seen = g.snapshot_index;
            group.snapshot_taken(g.snapshot_bytes);
        } else {
            group.snapshot_bytes.set_u64(g.snapshot_bytes);
        }
        let in_flight = u64::try_from(g.handovers.len()).unwrap_or(u64::MAX);
        group.set_handovers(g.received_keys, g.received_bytes, in_flight);
        group.propose_failures.set_u64(g.propose_failures);
        group.restoring.set(i64::from(g.restoring));
    }
    metrics
        .forwarded_requests
        .raise_to(status.forwarded_requests);
    if let Some(c) = &status.config {
        metrics.config_num.set_u64(c.num);
    }
}

/// Raises a peer's counters to what its transport counted (they only go up)
fn mirror_peer(peer: &PeerMetrics, stats: &PeerStats) {
    peer.sent.raise_to(stats.sent);
    peer.received.raise_to(stats.received);
    peer.dropped_queue_full.raise_to(stats.dropped_full);
    peer.dropped_oversize.raise_to(stats.dropped_oversize);
    peer.dropped_unknown_peer
        .raise_to(stats.dropped_unknown_peer);
    peer.refused.raise_to(stats.refused_by_peer);
    peer.connect_failures.raise_to(stats.connect_failures);
}

/// The shape of a local cluster (`shale up`)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalClusterConfig {
    /// Number of nodes
    pub nodes: u64,
    /// Number of replica groups, each with a replica on every node
    pub groups: u64,
    /// How many of them (the lowest ids) join when the cluster is new; the others run idle
    /// until an operator joins them
    pub initial_groups: u64,
    /// Number of shards
    pub shards: u32,
    /// Data directory; node `i` keeps its data in `node-<i>` under it
    pub data_dir: PathBuf,
    /// The IP every listener binds
    pub host: std::net::IpAddr,
    /// Node `i`'s Redis port is `client_port + i - 1` (0: chosen by the OS)
    pub client_port: u16,
    /// Node `i`'s peer port is `peer_port + i - 1` (0: chosen by the OS)
    pub peer_port: u16,
    /// Node `i`'s metrics port is `admin_port + i - 1` (`None`: no metrics endpoint)
    pub admin_port: Option<u16>,
    /// Node `i`'s cluster-aware client port is `cluster_port + i - 1` (0: chosen by the OS;
    /// `None`: no cluster port)
    pub cluster_port: Option<u16>,
    /// The password clients must AUTH with, if any
    pub requirepass: Option<String>,
}

fn port(base: u16, i: u64) -> Result<u16, String> {
    if base == 0 {
        return Ok(0);
    }
    u16::try_from(u64::from(base) + i - 1)
        .map_err(|_| format!("port {base}+{} is above 65535", i - 1))
}

/// The server configurations of a local cluster. Peer ports chosen by the OS (port 0) are
/// bound here, since every node must know the others' addresses, and each node keeps its
/// listener ([`NodeConfig::peer_listener`]): the port is never released and bound again.
pub fn local_cluster(config: &LocalClusterConfig) -> Result<Vec<ServerConfig>, String> {
    if config.nodes == 0 || config.groups == 0 || config.shards == 0 {
        return Err("--nodes, --groups and --shards must be at least 1".into());
    }
    if config.nodes > 64 || config.groups > 1000 {
        return Err("at most 64 nodes and 1000 groups in a local cluster".into());
    }
    let ids: Vec<u64> = (1..=config.nodes).collect();
    let mut peers = BTreeMap::new();
    let mut bound = BTreeMap::new();
    for &id in &ids {
        let mut addr = SocketAddr::new(config.host, port(config.peer_port, id)?);
        if addr.port() == 0 {
            let l = std::net::TcpListener::bind(addr).map_err(|e| e.to_string())?;
            addr = l.local_addr().map_err(|e| e.to_string())?;
            bound.insert(id, std::sync::Arc::new(l));
        }
        peers.insert(id, addr);
    }
    let mut cluster_clients = BTreeMap::new();
    let mut cluster_bound = BTreeMap::new();
    if let Some(base) = config.cluster_port {
        for &id in &ids {
            let mut addr = SocketAddr::new(config.host, port(base, id)?);
            if addr.port() == 0 {
                let l = front::bind_std(addr).map_err(|e| e.to_string())?;
                addr = l.local_addr().map_err(|e| e.to_string())?;
                cluster_bound.insert(id, Arc::new(l));
            }
            cluster_clients.insert(id, addr);
        }
    }
    let mut groups = vec![GroupSpec {
        gid: CONTROLLER_GROUP,
        voters: ids.clone(),
    }];
    let replica_groups: Vec<(GroupId, Vec<u64>)> =
        (1..=config.groups).map(|g| (g, ids.clone())).collect();
    let initial: Vec<(GroupId, Vec<u64>)> = replica_groups
        .iter()
        .take(config.initial_groups.min(config.groups) as usize)
        .cloned()
        .collect();
    for (gid, voters) in &replica_groups {
        groups.push(GroupSpec {
            gid: *gid,
            voters: voters.clone(),
        });
    }
    let mut servers = Vec::new();
    for &id in &ids {
        let mut node = NodeConfig::new(id, config.data_dir.join(format!("node-{id}")), peers[&id]);
        node.peers = peers.clone();
        node.groups = groups.clone();
        node.controller_voters = ids.clone();
        node.bootstrap_groups = initial.clone();
        node.shard_count = config.shards;
        node.peer_listener = bound.get(&id).cloned();
        servers.push(ServerConfig {
            node,
            client_addr: SocketAddr::new(config.host, port(config.client_port, id)?),
            admin_addr: match config.admin_port {
                Some(p) => Some(SocketAddr::new(config.host, port(p, id)?)),
                None => None,
            },
            requirepass: config.requirepass.clone(),
            cluster_addr: cluster_clients.get(&id).copied(),
            cluster_listener: cluster_bound.get(&id).cloned(),
            cluster_clients: cluster_clients.clone(),
        });
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shale_runtime_std::node::{GroupStatus, HandoverStatus};

    fn group(gid: GroupId, snapshot_index: u64, handovers: usize) -> GroupStatus {
        let handover = HandoverStatus {
            shard: 3,
            incoming: true,
            peer: 2,
            keys: 10,
            bytes: 100,
            total: None,
        };
        GroupStatus {
            gid,
            role: "follower".into(),
            term: 4,
            leader: Some(2),
            commit: 12,
            applied: 10,
            last_index: 12,
            keys: 7,
            snapshot_index,
            snapshot_bytes: 640,
            handovers: vec![handover; handovers],
            received_keys: 300,
            received_bytes: 45_000,
            propose_failures: 6,
            restoring: true,
            config_num: 3,
        }
    }

    #[test]
    fn a_status_report_sets_every_group_metric() {
        let metrics = Metrics::new();
        let mut seen = BTreeMap::new();
        let mut status = NodeStatus {
            id: 1,
            groups: vec![group(1, 5, 2)],
            config: None,
            forwarded_requests: 0,
        };
        record_status(&metrics, &status, &mut seen);
        let g = metrics.group(1);
        assert_eq!(g.term.get(), 4);
        assert_eq!(g.commit_lag.get(), 2);
        assert_eq!(g.is_leader.get(), 0);
        assert_eq!(g.snapshot_bytes.get(), 640);
        assert_eq!(
            g.snapshots_total.get(),
            0,
            "the first report only sets the baseline"
        );
        assert_eq!(g.handover_keys_received.get(), 300);
        assert_eq!(g.handover_bytes_received.get(), 45_000);
        assert_eq!(g.handovers_in_flight.get(), 2);
        assert_eq!(g.propose_failures.get(), 6);
        assert_eq!(g.restoring.get(), 1);

        // A newer snapshot counts; a restore set the received counts back; done restoring.
        status.groups[0].snapshot_index = 9;
        status.groups[0].received_keys = 20;
        status.groups[0].handovers.clear();
        status.groups[0].restoring = false;
        record_status(&metrics, &status, &mut seen);
        assert_eq!(g.snapshots_total.get(), 1);
        assert_eq!(g.handover_keys_received.get(), 20);
        assert_eq!(g.handovers_in_flight.get(), 0);
        assert_eq!(g.restoring.get(), 0);
    }

    #[test]
    fn peer_counters_are_mirrored_field_by_field() {
        let metrics = Metrics::new();
        let peer = metrics.peer(2);
        let stats = PeerStats {
            sent: 1,
            received: 2,
            dropped_full: 3,
            dropped_oversize: 4,
            dropped_unknown_peer: 5,
            connects: 6,
            connect_failures: 7,
            refused_by_peer: 8,
        };
        mirror_peer(&peer, &stats);
        let got = [
            peer.sent.get(),
            peer.received.get(),
            peer.dropped_queue_full.get(),
            peer.dropped_oversize.get(),
            peer.dropped_unknown_peer.get(),
            peer.connect_failures.get(),
            peer.refused.get(),
        ];
        assert_eq!(got, [1, 2, 3, 4, 5, 7, 8]);
        // An older reading never takes a counter back.
        mirror_peer(&peer, &PeerStats::default());
        assert_eq!(peer.sent.get(), 1);
    }
}
