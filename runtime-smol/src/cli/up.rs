//! `shale up`: a local cluster on loopback

use super::say;
use std::path::PathBuf;

use shale_runtime_std::node::{DEFAULT_HANDOVER_BYTES_PER_SEC, DEFAULT_MAX_MOVES_PER_CONFIG};
use shale_runtime_std::storage::StdDisk;

use crate::runtime::Runtime;
use crate::server::{LocalClusterConfig, Server, local_cluster};

/// `shale up`
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Number of nodes
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// Number of replica groups (each has a replica on every node)
    #[arg(long, default_value_t = 2)]
    pub groups: u64,
    /// Number of shards (fixed when the cluster is created)
    #[arg(long, default_value_t = 16)]
    pub shards: u32,
    /// Replica groups joined when the cluster is new (default: all); the others run idle
    /// until `shale ctl join`
    #[arg(long)]
    pub initial_groups: Option<u64>,
    /// Data directory (node i keeps its data in node-i under it)
    #[arg(long, default_value = "shale-data")]
    pub data_dir: PathBuf,
    /// First Redis port: node i listens on port + i - 1 (0: any free port)
    #[arg(long, default_value_t = 7001)]
    pub port: u16,
    /// First peer port (0: any free port)
    #[arg(long, default_value_t = 7101)]
    pub peer_port: u16,
    /// First metrics port (0: any free port)
    #[arg(long, default_value_t = 7201)]
    pub metrics_port: u16,
    /// First cluster port, where Redis Cluster clients are redirected to each key's leader
    /// (`redis-cli -c`, `redis-benchmark --cluster`): node i listens on port + i - 1 (0: any
    /// free port)
    #[arg(long, default_value_t = 7301)]
    pub cluster_port: u16,
    /// Require clients to AUTH with this password
    #[arg(long)]
    pub requirepass: Option<String>,
    /// Executor threads (default: half the CPUs, at least one)
    #[arg(long)]
    pub threads: Option<usize>,
    /// Serve reads from leader leases (faster; assumes clocks drift by under 50 ms per
    /// election timeout) instead of a heartbeat round per batch of reads
    #[arg(long)]
    pub lease_reads: bool,
    /// KiB per second each replica group pulls while shards move to it (0: as fast as it
    /// can; faster moves, slower clients meanwhile)
    #[arg(long, default_value_t = DEFAULT_HANDOVER_BYTES_PER_SEC / 1024)]
    pub handover_kib_per_sec: u64,
    /// Most shards holding data one configuration moves: a join or leave becomes a series of
    /// configurations (0: any number). Fixed when the cluster is created
    #[arg(long, default_value_t = DEFAULT_MAX_MOVES_PER_CONFIG)]
    pub max_moves_per_config: u32,
}

/// The cluster's shape, stored in its data directory so a restart with other flags is
/// refused instead of silently mixing shapes
fn check_shape(args: &UpArgs) -> Result<(), String> {
    let shape = format!(
        "nodes={} groups={} shards={} max-moves-per-config={}\n",
        args.nodes, args.groups, args.shards, args.max_moves_per_config
    );
    let path = args.data_dir.join("cluster-shape");
    // Written before the shape named the moves per configuration, which were then 1
    let legacy = format!(
        "nodes={} groups={} shards={}\n",
        args.nodes, args.groups, args.shards
    );
    match std::fs::read_to_string(&path) {
        Ok(existing) if existing == shape => Ok(()),
        Ok(existing) if existing == legacy && args.max_moves_per_config == 1 => {
            std::fs::write(&path, shape)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        Ok(existing) => Err(format!(
            "{} holds a cluster of {} but the flags ask for {}; use the same flags or another --data-dir",
            args.data_dir.display(),
            existing.trim(),
            shape.trim()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Each directory made is synced into its parent: nodes keep their data under it.
            shale_runtime_std::storage::create_dir_durably(&StdDisk, &args.data_dir)
                .map_err(|e| e.to_string())?;
            std::fs::write(&path, shape)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Runs `shale up` until Ctrl-C
pub fn run(args: &UpArgs) -> Result<(), String> {
    check_shape(args)?;
    let configs = local_cluster(&LocalClusterConfig {
        nodes: args.nodes,
        groups: args.groups,
        initial_groups: args.initial_groups.unwrap_or(args.groups),
        shards: args.shards,
        data_dir: args.data_dir.clone(),
        host: std::net::Ipv4Addr::LOCALHOST.into(),
        client_port: args.port,
        peer_port: args.peer_port,
        admin_port: Some(args.metrics_port),
        cluster_port: Some(args.cluster_port),
        requirepass: args.requirepass.clone(),
    })?;
    let mut configs = configs;
    for c in &mut configs {
        c.node.raft.lease_reads = args.lease_reads;
        c.node.handover_bytes_per_sec = args.handover_kib_per_sec.saturating_mul(1024);
        c.node.max_moves_per_config = args.max_moves_per_config;
    }
    let threads = args.threads.unwrap_or_else(crate::runtime::default_threads);
    let rt = Runtime::start(threads).map_err(|e| format!("cannot start threads: {e}"))?;
    let mut servers = Vec::new();
    for config in &configs {
        let server =
            Server::start(&rt, config).map_err(|e| format!("node {}: {e}", config.node.id))?;
        servers.push(server);
    }
    say!(
        "shale: {} nodes, {} replica groups, {} shards, data in {}",
        args.nodes,
        args.groups,
        args.shards,
        args.data_dir.display()
    );
    for (config, server) in configs.iter().zip(&servers) {
        let metrics = server
            .admin_addr()
            .map_or(String::new(), |a| format!("  metrics http://{a}/metrics"));
        let cluster = server.cluster_addr().map_or(String::new(), |a| {
            format!("  cluster: redis-cli -c -p {}", a.port())
        });
        say!(
            "  node {}: redis-cli -p {}{cluster}{metrics}",
            config.node.id,
            server.client_addr().port()
        );
    }
    say!("Ctrl-C stops the cluster; running the same command again resumes from disk.");
    super::wait_for_ctrl_c()?;
    say!("shale: stopping");
    let mut failed = None;
    for server in servers {
        if let Err(e) = rt.block_on(server.stop()) {
            failed = Some(e.to_string());
        }
    }
    rt.shutdown();
    failed.map_or(Ok(()), Err)
}
