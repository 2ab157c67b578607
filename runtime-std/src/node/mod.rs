//! A whole node on std threads: its Raft groups, storage, peers and clients
//!
//! A node hosts replicas of several Raft groups: the shard controller (group
//! [`CONTROLLER_GROUP`]) and/or replica groups. Three layers, from the inside out:
//!
//! - [`Host`] (from the core, sans-IO, re-exported here): every replica of the node, the
//!   application protocol between groups ([`shale_core::group::AppMessage`]), and the front
//!   door's client sessions, each a [`shale_core::clerk::Clerk`] that routes an operation to
//!   the group owning its key and keeps it exactly-once.
//! - [`Wal`]: the WAL thread, owning every group's [`Storage`](crate::Storage).
//! - [`Node`]: the blocking runtime. A driver thread owns the [`Host`], feeds it ticks from
//!   `std::time::Instant`, peer messages from the [`Transport`](crate::transport::Transport)'s
//!   reader threads (one per peer connection; a writer thread per peer sends), completions
//!   from the WAL thread, and calls from [`NodeHandle`]s; then drains its outputs. Messages
//!   that depend on a write are released by the Raft core only once the WAL thread reports the
//!   write durable.
//!
//! [`boot`] opens (or creates) each group's storage under the data directory, checks the
//! recovered log and restores each state machine from its stored snapshot.
//!
//! ```no_run
//! use shale_runtime_std::node::{Node, NodeConfig, GroupSpec, CONTROLLER_GROUP};
//! use shale_core::shard::KvOp;
//!
//! // A one-node cluster: the controller and replica group 1, both on node 1.
//! let mut config = NodeConfig::new(1, "data/n1".into(), "127.0.0.1:0".parse()?);
//! config.groups = vec![
//!     GroupSpec { gid: CONTROLLER_GROUP, voters: vec![1] },
//!     GroupSpec { gid: 1, voters: vec![1] },
//! ];
//! config.controller_voters = vec![1];
//! config.bootstrap_groups = vec![(1, vec![1])];
//! let node = Node::start(config)?;
//! let handle = node.handle();
//! let session = handle.open_session()?;
//! handle.op(session, KvOp::Put { key: b"k".to_vec(), value: b"v".to_vec() })?;
//! node.stop()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod boot;
mod client;
mod digest;
mod driver;
mod engine;
mod release;
mod wal;

pub use boot::{
    BootError, Booted, DEFAULT_HANDOVER_BYTES_PER_SEC, DEFAULT_LEADER_BALANCE_INTERVAL,
    DEFAULT_MAX_MOVES_PER_CONFIG, GroupSpec, NodeConfig, RaftTuning, boot,
};
pub use client::{FrontClient, FrontRequest, FrontResponse, serve_clients};
pub use digest::ReplicaDigest;
pub use driver::{GroupStatus, HandoverStatus, Node, NodeError, NodeHandle, NodeStatus};
pub use engine::{Call, Deliver, Input, NodeEngine, OpResult, Reply};
pub use release::Releaser;
pub use shale_core::node::{
    AdminError, CONTROLLER_GROUP, GroupAdmin, Host, HostConfig, HostOutput, HostedReplica, OpId,
    SessionError, SessionId, WalDone, WalOp,
};
pub use wal::{WAL_MAX_BATCH, Wal, WalEvent};
