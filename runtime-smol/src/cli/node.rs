//! `shale node`: one node of a multi-machine cluster

use super::say;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use shale_runtime_std::node::{
    CONTROLLER_GROUP, DEFAULT_HANDOVER_BYTES_PER_SEC, DEFAULT_MAX_MOVES_PER_CONFIG, GroupSpec,
    NodeConfig,
};

use crate::runtime::Runtime;
use crate::server::{Server, ServerConfig};

/// `shale node`
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// A file of `flag = value` lines (the long flag names without `--`); flags on the
    /// command line win
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// This node's id (1 or more)
    #[arg(long)]
    pub id: Option<u64>,
    /// Every node's peer address, this one's included: `1=host:port,2=host:port,...`
    #[arg(long)]
    pub peers: Option<String>,
    /// Where Redis clients connect
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Where Redis Cluster clients connect: keys led by another node are answered -MOVED
    /// (needs --clients)
    #[arg(long)]
    pub cluster_listen: Option<SocketAddr>,
    /// Every node's cluster address as clients reach it, this one's included:
    /// `1=host:port,2=host:port,...` (what CLUSTER SLOTS, NODES, SHARDS and -MOVED show)
    #[arg(long)]
    pub clients: Option<String>,
    /// Where Prometheus scrapes /metrics
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// Data directory
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The cluster's id: peers of another cluster are refused
    #[arg(long)]
    pub cluster_id: Option<u64>,
    /// Number of replica groups (each with a replica on every node)
    #[arg(long)]
    pub groups: Option<u64>,
    /// Number of shards
    #[arg(long)]
    pub shards: Option<u32>,
    /// Replica groups joined when the cluster is new (default: all); the others run idle
    /// until `shale ctl join`
    #[arg(long)]
    pub initial_groups: Option<u64>,
    /// Require clients to AUTH with this password
    #[arg(long)]
    pub requirepass: Option<String>,
    /// The cluster secret every node must know (use a long random string)
    #[arg(long)]
    pub secret: Option<String>,
    /// Serve reads from leader leases (faster; assumes clocks drift by under 50 ms per
    /// election timeout) instead of a heartbeat round per batch of reads
    #[arg(long)]
    pub lease_reads: bool,
    /// KiB per second each replica group pulls while shards move to it (0: as fast as it
    /// can; default 2048)
    #[arg(long)]
    pub handover_kib_per_sec: Option<u64>,
    /// Most shards holding data one configuration moves, given to the controller when the
    /// cluster is created (0: all at once; default 1); later, `shale ctl max-moves`
    #[arg(long)]
    pub max_moves_per_config: Option<u32>,
}

/// The `flag = value` lines of a config file
fn read_file(path: &PathBuf) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut values = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = line.split_once('=').ok_or(format!(
            "{}:{}: expected `flag = value`",
            path.display(),
            n + 1
        ))?;
        values.insert(
            key.trim().to_owned(),
            value.trim().trim_matches('"').to_owned(),
        );
    }
    Ok(values)
}

fn parse<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("--{flag}: {value:?} is not valid"))
}

/// An `id=host:port,...` list given to `--{flag}`
fn parse_addrs(flag: &str, value: &str) -> Result<BTreeMap<u64, SocketAddr>, String> {
    let mut addrs = BTreeMap::new();
    for item in value.split(',').filter(|s| !s.trim().is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or(format!("--{flag}: {item:?} is not id=host:port"))?;
        addrs.insert(parse(flag, id.trim())?, parse(flag, addr.trim())?);
    }
    Ok(addrs)
}

/// Runs `shale node` until Ctrl-C
pub fn run(args: &NodeArgs) -> Result<(), String> {
    let mut file = match &args.config {
        Some(path) => read_file(path)?,
        None => BTreeMap::new(),
    };
    let mut get = |flag: &str, cli: Option<String>| cli.or_else(|| file.remove(flag));
    let id: u64 = parse(
        "id",
        &get("id", args.id.map(|v| v.to_string())).ok_or("--id is required")?,
    )?;
    let peers = parse_addrs(
        "peers",
        &get("peers", args.peers.clone()).ok_or("--peers is required")?,
    )?;
    let listen: SocketAddr = parse(
        "listen",
        &get("listen", args.listen.map(|v| v.to_string())).ok_or("--listen is required")?,
    )?;
    let cluster_listen = get("cluster-listen", args.cluster_listen.map(|v| v.to_string()))
        .map(|v| parse::<SocketAddr>("cluster-listen", &v))
        .transpose()?;
    let cluster_clients = get("clients", args.clients.clone())
        .map(|v| parse_addrs("clients", &v))
        .transpose()?
        .unwrap_or_default();
    let metrics = get("metrics", args.metrics.map(|v| v.to_string()))
        .map(|v| parse::<SocketAddr>("metrics", &v))
        .transpose()?;
    let data_dir = get(
        "data-dir",
        args.data_dir.as_ref().map(|p| p.display().to_string()),
    )
    .map_or_else(super::default_data_dir, PathBuf::from);
    let cluster_id = get("cluster-id", args.cluster_id.map(|v| v.to_string()))
        .map_or(Ok(1), |v| parse("cluster-id", &v))?;
    let groups: u64 =
        get("groups", args.groups.map(|v| v.to_string())).map_or(Ok(2), |v| parse("groups", &v))?;
    let shards: u32 = get("shards", args.shards.map(|v| v.to_string()))
        .map_or(Ok(16), |v| parse("shards", &v))?;
    let initial_groups: u64 = get("initial-groups", args.initial_groups.map(|v| v.to_string()))
        .map_or(Ok(groups), |v| parse("initial-groups", &v))?;
    let requirepass = get("requirepass", args.requirepass.clone());
    let secret = get("secret", args.secret.clone()).unwrap_or_default();
    let lease_reads = args.lease_reads || get("lease-reads", None).is_some_and(|v| v == "true");
    let max_moves_per_config: u32 = get(
        "max-moves-per-config",
        args.max_moves_per_config.map(|v| v.to_string()),
    )
    .map_or(Ok(DEFAULT_MAX_MOVES_PER_CONFIG), |v| {
        parse("max-moves-per-config", &v)
    })?;
    let handover_kib_per_sec: u64 = get(
        "handover-kib-per-sec",
        args.handover_kib_per_sec.map(|v| v.to_string()),
    )
    .map_or(Ok(DEFAULT_HANDOVER_BYTES_PER_SEC / 1024), |v| {
        parse("handover-kib-per-sec", &v)
    })?;
    if let Some(unknown) = file.keys().next() {
        return Err(format!("unknown setting {unknown:?} in the config file"));
    }
    let Some(&peer_addr) = peers.get(&id) else {
        return Err(format!(
            "--peers must list this node ({id}) with its peer address"
        ));
    };
    if cluster_listen.is_some() == cluster_clients.is_empty() {
        return Err("--cluster-listen and --clients go together".into());
    }
    if !cluster_clients.is_empty() && !cluster_clients.contains_key(&id) {
        return Err(format!(
            "--clients must list this node ({id}) with its cluster address"
        ));
    }
    if id == 0 || shards == 0 || groups == 0 {
        return Err("--id, --groups and --shards must be at least 1".into());
    }
    let ids: Vec<u64> = peers.keys().copied().collect();
    let mut node = NodeConfig::new(id, data_dir, peer_addr);
    node.cluster_id = cluster_id;
    node.secret = secret.into_bytes();
    node.raft.lease_reads = lease_reads;
    node.peers = peers;
    node.shard_count = shards;
    node.handover_bytes_per_sec = handover_kib_per_sec.saturating_mul(1024);
    node.max_moves_per_config = max_moves_per_config;
    node.controller_voters = ids.clone();
    node.groups = vec![GroupSpec {
        gid: CONTROLLER_GROUP,
        voters: ids.clone(),
    }];
    for gid in 1..=groups {
        node.groups.push(GroupSpec {
            gid,
            voters: ids.clone(),
        });
        if gid <= initial_groups {
            node.bootstrap_groups.push((gid, ids.clone()));
        }
    }
    let config = ServerConfig {
        node,
        client_addr: listen,
        admin_addr: metrics,
        requirepass,
        cluster_addr: cluster_listen,
        cluster_listener: None,
        cluster_clients,
    };
    let rt = Runtime::start(crate::runtime::default_threads())
        .map_err(|e| format!("cannot start threads: {e}"))?;
    let server = Server::start(&rt, &config).map_err(|e| e.to_string())?;
    say!(
        "shale node {id}: redis on {}, peers on {}",
        server.client_addr(),
        server.peer_addr()
    );
    super::wait_for_ctrl_c()?;
    let result = rt.block_on(server.stop()).map_err(|e| e.to_string());
    rt.shutdown();
    result
}
