//! An in-process local cluster for tests: every listener on a port the OS chooses

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use shale_runtime_smol::runtime::Runtime;
use shale_runtime_smol::server::{LocalClusterConfig, Server, local_cluster};

/// Shards of a test cluster
const SHARDS: u32 = 8;

/// A running local cluster; stopped (cleanly) when dropped
pub struct TestCluster {
    pub rt: Option<Runtime>,
    pub servers: Vec<Server>,
    pub dir: tempfile::TempDir,
}

impl TestCluster {
    /// `nodes` nodes, `groups` replica groups, with an optional password
    pub fn start(nodes: u64, groups: u64, requirepass: Option<&str>) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let configs = local_cluster(&LocalClusterConfig {
            nodes,
            groups,
            initial_groups: groups,
            shards: SHARDS,
            data_dir: dir.path().to_owned(),
            host: std::net::Ipv4Addr::LOCALHOST.into(),
            client_port: 0,
            peer_port: 0,
            admin_port: Some(0),
            cluster_port: Some(0),
            requirepass: requirepass.map(str::to_owned),
        })
        .unwrap();
        let rt = Runtime::start(2).unwrap();
        let servers = configs
            .iter()
            .map(|c| Server::start(&rt, c).unwrap())
            .collect();
        let cluster = TestCluster {
            rt: Some(rt),
            servers,
            dir,
        };
        cluster.wait_ready(requirepass);
        cluster
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.servers.iter().map(Server::client_addr).collect()
    }

    /// Each node's cluster-aware client address
    pub fn cluster_addrs(&self) -> Vec<SocketAddr> {
        self.servers
            .iter()
            .map(|s| s.cluster_addr().expect("a cluster port"))
            .collect()
    }

    pub fn url(&self, i: usize) -> String {
        format!("redis://{}/", self.servers[i].client_addr())
    }

    /// Waits until a write through every node to every shard succeeds (every group's leader
    /// elected, every group joined and serving)
    fn wait_ready(&self, password: Option<&str>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        // One key per shard: the first that hashes there
        let keys: Vec<String> = (0..SHARDS)
            .map(|shard| {
                (0..)
                    .map(|n| format!("ready{n}"))
                    .find(|k| shale_core::shard::key_shard(k.as_bytes(), SHARDS) == shard)
                    .unwrap_or_default()
            })
            .collect();
        for i in 0..self.servers.len() {
            loop {
                let ok = (|| -> redis::RedisResult<()> {
                    let client = redis::Client::open(self.url(i))?;
                    let mut con = client.get_connection_with_timeout(Duration::from_secs(5))?;
                    if let Some(p) = password {
                        redis::cmd("AUTH").arg(p).query::<()>(&mut con)?;
                    }
                    for key in &keys {
                        redis::cmd("SET").arg(key).arg("1").query::<()>(&mut con)?;
                    }
                    Ok(())
                })();
                if ok.is_ok() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster never became ready: {ok:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let Some(rt) = self.rt.take() else {
            return;
        };
        for server in self.servers.drain(..) {
            let _ = rt.block_on(server.stop());
        }
        rt.shutdown();
    }
}
