//! Harness for Shale's benchmarks: a 3-node Raft cluster held in memory, in one thread
//!
//! [`Cluster`] drives three [`Raft`](shale_core::raft::Raft) nodes the way the crate
//! documentation of `shale-core` does, stripped of everything that is not consensus:
//!
//! - the **network** is one FIFO queue of [`Outgoing`](shale_core::raft::Outgoing) messages,
//!   moved (never encoded); a node can be cut off ([`Cluster::isolate`]);
//! - **persistence** is synchronous and free: every [`Write`](shale_core::raft::Write) is
//!   dropped and `handle_persisted` is called at once, except that snapshot chunks are stored
//!   in the node's [`Host`];
//! - **applying** an entry drops it and bumps a counter; restoring a snapshot checks it;
//! - **time** is frozen after the election, so no timeout fires while measuring, unless a
//!   benchmark moves it ([`Cluster::advance`]).
//!
//! Node 1 is always the leader. Logs are compacted only when a benchmark takes a snapshot
//! ([`Cluster::take_snapshot`]), so long runs replace the cluster with a fresh one; see
//! [`Cluster::REBUILD_AFTER`].
//!
//! Modules: `cluster` (the nodes, network and drain loop), `host` (what each node's runtime
//! stores: snapshots, reads), `snapshot` (a follower caught up by a snapshot:
//! [`Cluster::with_lagging_follower`], [`Cluster::install_snapshot`]), `reads` (batched
//! linearizable reads: [`Cluster::read_batch`], [`Cluster::with_lease`]) and `allocations`
//! ([`CountingAllocator`] counts heap allocations for [`allocations_per_entry`]; a binary that
//! wants those counts registers it with `#[global_allocator]`).
//!
//! ```
//! use shale_benches::Cluster;
//! use shale_core::raft::Payload;
//!
//! let mut cluster = Cluster::new();
//! let payload = Payload::from(&[7u8; 16]);
//! let last = cluster.commit_batch(16, &payload);
//! assert_eq!(cluster.leader().commit_index(), last.index);
//! assert_eq!(cluster.read_batch(100).len(), 100);
//! ```

mod allocations;
mod cluster;
mod host;
mod reads;
mod snapshot;

pub use allocations::{CountingAllocator, allocation_count, allocations_per_entry};
pub use cluster::{Cluster, LEADER, VOTERS};
pub use host::Host;
pub use snapshot::LAGGING;
