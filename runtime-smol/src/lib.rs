//! The smol runtime of Shale, and everything behind the `shale` program
//!
//! A Shale node hosts replicas of several Raft groups (the shard controller and replica
//! groups). Here one [`node::SmolNode`] task on an explicit [`runtime::Runtime`] (an
//! `async_executor::Executor` run by N threads with `async_io::block_on`) owns each node's
//! [`NodeEngine`](shale_runtime_std::node::NodeEngine): its groups, its write-ahead log on its
//! own thread (runtime-std's storage, one fsync per group per batch) and its peer transport
//! ([`transport::SmolTransport`]: runtime-std's protocol, as tasks on the same executor).
//! In front of it, [`front`] serves the Redis protocol: one task per connection, parsing with
//! our own incremental [`resp`] parser, one exactly-once session per connection, any key on
//! any node. [`metrics`] exports Prometheus text, [`bench`](mod@bench) generates load, [`server`] wires
//! a node to its front door, and [`cli`] is the `shale` program.
//!
//! A local three-node cluster in a test or a program:
//!
//! ```no_run
//! use shale_runtime_smol::runtime::Runtime;
//! use shale_runtime_smol::server::{LocalClusterConfig, Server, local_cluster};
//!
//! let configs = local_cluster(&LocalClusterConfig {
//!     nodes: 3,
//!     groups: 2,
//!     initial_groups: 2,
//!     shards: 16,
//!     data_dir: "shale-data".into(),
//!     host: std::net::Ipv4Addr::LOCALHOST.into(),
//!     client_port: 0, // any free port
//!     peer_port: 0,
//!     admin_port: None,
//!     cluster_port: Some(0), // where Redis Cluster clients are redirected to leaders
//!     requirepass: None,
//! })?;
//! let rt = Runtime::start(2)?;
//! let servers: Vec<Server> = configs
//!     .iter()
//!     .map(|c| Server::start(&rt, c))
//!     .collect::<Result<_, _>>()?;
//! for s in &servers {
//!     println!("redis-cli -p {}", s.client_addr().port());
//! }
//! for s in servers {
//!     rt.block_on(s.stop())?;
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bench;
pub mod cli;
pub mod front;
pub mod metrics;
pub mod node;
pub mod resp;
pub mod runtime;
pub mod server;
pub mod transport;
