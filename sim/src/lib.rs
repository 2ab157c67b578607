//! Shale's deterministic simulator: virtual time, a lossy network, crashing disks and invariant
//! checkers, all driven by one seed
//!
//! A [`Sim`] holds a group of [`shale_core::raft::Raft`] nodes and feeds them events in virtual
//! time: message arrivals, disk writes completing, timeouts. One `u64` seed, split into
//! independent streams (network, disk, faults, clocks, workload), decides every random choice,
//! so a seed replays a run bit for bit. After every event the [`Checker`] verifies election
//! safety, log matching, leader completeness, state machine safety, monotonic commit and apply
//! indexes, and that nothing committed is lost; a violation panics with the seed and the recent
//! trace.
//!
//! Every node runs a [`SimApp`] state machine (applied index, rolling digest, small KV map).
//! When the core asks, the simulator snapshots it onto the node's disk, serves snapshot chunks
//! to followers from there, and restores it after an InstallSnapshot or a restart; the checker
//! compares every restored snapshot with the committed log. Set
//! `SimConfig::raft.snapshot_threshold_bytes` small to snapshot often; [`Sim::snapshot_index`],
//! [`Sim::snapshots_installed`], [`Sim::log_bytes`], [`Sim::peak_log_bytes`] and
//! [`Sim::durable_size`] let scenarios watch compaction.
//!
//! # Writing a scenario
//!
//! ```
//! use shale_core::time::Duration;
//! use shale_sim::{NetworkConfig, Sim, SimConfig};
//!
//! let mut sim = Sim::new(SimConfig::new(7, 3));
//! let leader = sim.wait_for_leader(Duration::from_secs(5)).unwrap();
//!
//! // Commit a command on all three nodes.
//! let index = sim.one(b"hello", 3, false, Duration::from_secs(5)).unwrap();
//! assert_eq!(sim.n_committed(index).0, 3);
//!
//! // Cut the leader off; the other two elect a new one and keep committing.
//! sim.disconnect(leader);
//! let others: Vec<_> = sim.ids().into_iter().filter(|&id| id != leader).collect();
//! let new_leader = sim.wait_for_leader_among(&others, Duration::from_secs(5)).unwrap();
//! assert_ne!(new_leader, leader);
//! sim.one(b"world", 2, true, Duration::from_secs(5)).unwrap();
//!
//! // Make the network lossy, crash a node, heal, and require convergence.
//! sim.set_network(NetworkConfig::unreliable());
//! sim.crash(new_leader);
//! sim.run_for(Duration::from_secs(1));
//! sim.check_liveness_after_heal(Duration::from_secs(10)).unwrap();
//! ```
//!
//! # Faults
//!
//! Network: drop, duplicate, delay and reorder ([`NetworkConfig`]), long delays, two-way
//! partitions ([`Sim::partition`], [`Sim::disconnect`]) and one-way cuts ([`Sim::set_link`]).
//! Nodes: [`Sim::crash`] (pending writes lost, the oldest possibly torn), [`Sim::restart`]
//! (from the durable state), [`Sim::pause`] / [`Sim::resume`], and clock drift
//! ([`SimConfig::clock_drift_ppm_max`]).
//!
//! # Membership changes and leadership transfer
//!
//! [`Sim::add_node`] starts a brand-new node with an empty disk that knows no voters; the
//! leader adds it as a learner ([`Sim::change_membership`], or [`Sim::add_learner`]) and
//! promotes it once caught up ([`Sim::caught_up_learners`], [`Sim::promote`]). Voter changes
//! go through a joint configuration the leader leaves by itself; [`Sim::wait_for_membership`]
//! waits for the group to settle. [`Sim::transfer_leader`] hands leadership over. Removed
//! nodes keep running (they must not disrupt the group); [`Sim::check_members_converge`] is
//! the liveness check that asks only members to converge. [`inject_membership_fault`] draws a
//! random membership change or transfer, for campaigns.
//!
//! # Several groups
//!
//! [`multi::MultiSim`] runs several Raft groups (the shard controller and the replica groups
//! of a sharded cluster) over one set of nodes, one network and one clock, with per-node
//! faults and per-group invariant checks; [`multi::ShardedCluster`] and
//! [`multi::run_sharded_seed`] build on it (`--sharded` runs that campaign).
//!
//! # Random campaigns
//!
//! `cargo run -p shale-sim --release -- --seeds 1000` runs random fault campaigns
//! ([`campaign`]) over many seeds and prints every failing seed; `--seed N` replays one.

pub mod app;
mod clock;
mod cluster;
mod disk;
mod events;
mod faults;
mod helpers;
mod invariants;
mod membership;
mod network;
mod trace;

pub mod campaign;
pub mod clients;
pub mod kv;
pub mod linearizability;
pub mod multi;
pub mod seeds;

pub use app::SimApp;
pub use clients::{ClientStats, Clients, ClientsConfig, ReadMode};
pub use cluster::{Sim, SimConfig, SimError};
pub use disk::DiskConfig;
pub use invariants::{Checker, entry_hash};
pub use membership::{MAX_NODES, MAX_VOTERS, MIN_VOTERS, inject_membership_fault};
pub use network::{NetworkConfig, NetworkStats};
pub use trace::{TRACE_TAIL_LINES, Trace};
