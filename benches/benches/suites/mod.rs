//! The benchmark suites, one file per concern

pub mod allocations;
pub mod leader_step;
pub mod read_index;
pub mod sharded;
pub mod snapshot;
pub mod store;
pub mod throughput;
pub mod wal;

/// Proposals on the leader per round
pub const BATCHES: [usize; 3] = [1, 16, 256];

/// Payload sizes, in bytes
pub const PAYLOADS: [usize; 2] = [16, 1024];
