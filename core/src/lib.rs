//! Shale's core: sans-IO, `no_std` state machines for a sharded, Raft-replicated KV store
//!
//! Nothing in this crate touches a clock, a socket, a file, a thread or a global random source.
//! Time comes in as an argument ([`time::Instant`], microseconds), randomness from a generator
//! seeded in each node's config ([`rng::Rng`]), and every effect goes out through a `poll_*`
//! method that the runtime drains. The same state machines therefore run inside a blocking-thread
//! server, an async executor, a deterministic simulator or an embedded device.
//!
//! # Driving Raft by hand
//!
//! A runtime owns one [`raft::Raft`] per node and group and repeats one loop: feed an input
//! (a message, a timeout, a finished write), then drain the outputs: make writes durable,
//! send messages, apply committed entries, and arm the next timeout. Here three nodes live in
//! one `Vec`, the "disk" is a `Vec` per node and the "network" a queue:
//!
//! ```
//! use shale_core::raft::{Config, Entry, Outgoing, Raft, Recovered, Role};
//! use shale_core::time::{Duration, Instant};
//!
//! let voters = [1, 2, 3];
//! let mut now = Instant::ZERO;
//! let mut nodes: Vec<Raft> = voters
//!     .iter()
//!     .map(|&id| Raft::new(Config::new(id, id), &voters, Recovered::default(), now).unwrap())
//!     .collect();
//! let mut disks: Vec<Vec<Entry>> = vec![Vec::new(); 3];
//! let mut network: Vec<Outgoing> = Vec::new();
//! let mut applied: Vec<Vec<Entry>> = vec![Vec::new(); 3];
//!
//! // Drain one node's outputs: persist (synchronously), then send, then apply.
//! fn drain(node: &mut Raft, disk: &mut Vec<Entry>, network: &mut Vec<Outgoing>,
//!          applied: &mut Vec<Entry>, now: Instant) {
//!     while let Some(write) = node.poll_write() {
//!         // A real runtime stores write.hard_state first, then the entries, and fsyncs.
//!         if let Some(first) = write.entries.first() {
//!             disk.truncate((first.index - 1) as usize);
//!             disk.extend(write.entries.iter().cloned());
//!         }
//!         node.handle_persisted(now, write.id);
//!     }
//!     while let Some(out) = node.poll_message() {
//!         network.push(out);
//!     }
//!     while let Some(entry) = node.poll_apply() {
//!         applied.push(entry);
//!     }
//! }
//!
//! let mut proposed = None;
//! for _round in 0..200 {
//!     // Jump virtual time to the earliest deadline and fire it.
//!     now = nodes.iter().filter_map(|n| n.poll_timeout()).min().unwrap().max(now);
//!     for (i, node) in nodes.iter_mut().enumerate() {
//!         if node.poll_timeout().is_some_and(|t| t <= now) {
//!             node.handle_timeout(now).unwrap();
//!         }
//!         drain(node, &mut disks[i], &mut network, &mut applied[i], now);
//!     }
//!     // Deliver every message (a perfect network), draining after each.
//!     while !network.is_empty() {
//!         for msg in std::mem::take(&mut network) {
//!             let i = (msg.to - 1) as usize;
//!             nodes[i].handle_message(now, msg.from, msg.message).unwrap();
//!             drain(&mut nodes[i], &mut disks[i], &mut network, &mut applied[i], now);
//!         }
//!     }
//!     // Once there is a leader, propose a command on it.
//!     if proposed.is_none() {
//!         if let Some(leader) = nodes.iter_mut().find(|n| n.role() == Role::Leader) {
//!             proposed = Some(leader.propose(now, b"set x = 1").unwrap());
//!             let i = (leader.id() - 1) as usize;
//!             drain(&mut nodes[i], &mut disks[i], &mut network, &mut applied[i], now);
//!         }
//!     }
//!     if applied.iter().all(|a| a.iter().any(|e| Some(e.log_id()) == proposed)) {
//!         break;
//!     }
//! }
//! // Every node applied the command, at the same index.
//! let id = proposed.expect("a leader was elected");
//! for log in &applied {
//!     assert!(log.iter().any(|e| e.log_id() == id && e.data.as_bytes() == b"set x = 1"));
//! }
//! # let _ = Duration::ZERO;
//! ```
//!
//! The simulator in `shale-sim` is this loop with a lossy network, crashing disks and invariant
//! checks after every step.
//!
//! # Modules
//!
//! - [`raft`]: one Raft node: pre-vote, check-quorum, batching, pipelining, flow control, the
//!   persistence contract, snapshots streamed in chunks, joint-consensus membership changes
//!   with learners, leadership transfer, and linearizable reads (ReadIndex, leases)
//! - [`clerk`]: the client side of a sharded cluster (routing by configuration, retries)
//! - [`controller`]: the shard controller's state machine (numbered configurations,
//!   deterministic minimal-move balancing)
//! - [`group`]: a replica group's replicated state and the shard hand-over protocol
//! - [`node`]: one node hosting replicas of several groups: the application protocol between
//!   them and a clerk per client session, for any runtime to drive
//! - [`rsm`]: a replicated state machine over one Raft node (typed commands, results,
//!   snapshots of the machine's bytes)
//! - [`shard`]: the sharded KV state machine (key hashing, operations, exactly-once sessions)
//! - [`store`]: [`store::PersistentMap`], an ordered map whose clones are O(1) frozen views
//!   (copy-on-write B+tree nodes), for snapshots and shard hand-over
//! - [`wire`]: encoding of messages and length-prefixed frames over `embedded-io`
//! - [`time`], [`rng`]: time and randomness as inputs
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod clerk;
pub mod controller;
pub mod group;
pub mod node;
pub mod raft;
pub mod rng;
pub mod rsm;
pub mod shard;
pub mod store;
pub mod time;
pub mod wire;
