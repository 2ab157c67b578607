//! Raft configuration: every limit is a named field with its unit

use super::errors::ConfigError;
use super::types::NodeId;
use crate::time::Duration;

/// How one Raft node behaves; build with [`Config::new`] and adjust fields, then the node
/// validates it in [`super::Raft::new`]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's id
    pub id: NodeId,
    /// Seed of the node's own random generator (election jitter); same seed, same behaviour
    pub seed: u64,
    /// How often a leader sends heartbeats
    pub heartbeat_interval: Duration,
    /// Lower bound of the randomized election timeout (inclusive); also the check-quorum period
    /// and the leader lease a follower honours before granting votes
    pub election_timeout_min: Duration,
    /// Upper bound of the randomized election timeout (exclusive, or equal to the minimum for
    /// no jitter)
    pub election_timeout_max: Duration,
    /// Ask for pre-votes before a real election, so a partitioned node cannot raise the term
    pub pre_vote: bool,
    /// A leader that has not heard from a quorum within `election_timeout_min` steps down
    pub check_quorum: bool,
    /// Most entry bytes in one append message (at least one entry is always sent)
    pub max_append_bytes: usize,
    /// Most append messages in flight to one follower in the replicate state
    pub max_inflight_msgs: usize,
    /// Most entry bytes in flight to one follower in the replicate state
    pub max_inflight_bytes: usize,
    /// Largest command accepted by `propose`, in bytes
    pub max_entry_bytes: usize,
    /// Most bytes of uncommitted entries a leader holds before `propose` answers `Busy`
    pub max_uncommitted_bytes: usize,
    /// Most messages queued for sending (ready or waiting for persistence) before inputs
    /// answer `Busy`
    pub max_outbox_msgs: usize,
    /// Most writes handed out by `poll_write` and not yet reported persisted; further state is
    /// coalesced into the next write once one completes
    pub max_unpersisted_writes: usize,
    /// Serve linearizable leader reads from a time-bounded lease instead of a heartbeat round
    /// per batch; needs `check_quorum`. A leader whose lease lapsed falls back to ReadIndex.
    pub lease_reads: bool,
    /// The most two nodes' clocks may disagree about the length of one election timeout; the
    /// lease is `election_timeout_min` minus this margin
    pub max_clock_drift: Duration,
    /// Most reads waiting for confirmation (local and forwarded); more answer `Busy`
    pub max_pending_reads: usize,
    /// Ask the application for a snapshot once this many bytes of entries were applied since
    /// the last one (at least; see `snapshot_log_percent`)
    pub snapshot_threshold_bytes: usize,
    /// ... and once the entries applied since the last snapshot reach this percentage of that
    /// snapshot's size: a large state is snapshotted less often, so the snapshots' cost stays
    /// in proportion to the writes (0: the byte threshold alone)
    pub snapshot_log_percent: u32,
    /// Largest snapshot chunk sent in one message, in bytes
    pub snapshot_chunk_bytes: usize,
    /// Bytes of entries before a new snapshot kept in memory for followers slightly behind;
    /// a follower further behind gets the snapshot
    pub snapshot_trailing_bytes: usize,
    /// Bytes of entries before a new snapshot a leader keeps, beyond the trailing ones, for
    /// followers in touch (heard from within the last election timeout) that still need
    /// them, so a follower briefly behind a busy log catches up from entries rather than from
    /// a whole snapshot (0: the trailing bytes alone)
    pub catch_up_log_bytes: usize,
    /// Most bytes of entries the log may hold in memory; past it a leader answers proposals
    /// with `Busy` until a snapshot lets it compact
    pub max_log_bytes: usize,
    /// DELIBERATELY UNSAFE, for testing the test suite only: a leader serves linearizable reads
    /// at once, without confirming leadership. A partitioned old leader then serves stale
    /// reads, which the simulator's linearizability check must catch.
    #[doc(hidden)]
    pub unsafe_reads_without_quorum: bool,
}

impl Config {
    /// Defaults suited to a LAN: 50 ms heartbeats, 500-1000 ms election timeouts, pre-vote and
    /// check-quorum on
    pub fn new(id: NodeId, seed: u64) -> Self {
        Config {
            id,
            seed,
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(500),
            election_timeout_max: Duration::from_millis(1_000),
            pre_vote: true,
            check_quorum: true,
            max_append_bytes: 1024 * 1024,
            max_inflight_msgs: 64,
            max_inflight_bytes: 8 * 1024 * 1024,
            max_entry_bytes: 1024 * 1024,
            max_uncommitted_bytes: 64 * 1024 * 1024,
            max_outbox_msgs: 4096,
            max_unpersisted_writes: 64,
            lease_reads: false,
            max_clock_drift: Duration::from_millis(50),
            max_pending_reads: 4096,
            snapshot_threshold_bytes: 8 * 1024 * 1024,
            snapshot_log_percent: 0,
            snapshot_chunk_bytes: 1024 * 1024,
            snapshot_trailing_bytes: 1024 * 1024,
            catch_up_log_bytes: 0,
            max_log_bytes: 256 * 1024 * 1024,
            unsafe_reads_without_quorum: false,
        }
    }

    /// Checks that the limits can work together
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |field, reason| Err(ConfigError { field, reason });
        if self.heartbeat_interval == Duration::ZERO {
            return err("heartbeat_interval", "must be above zero");
        }
        if self.election_timeout_min <= self.heartbeat_interval {
            return err(
                "election_timeout_min",
                "must be above heartbeat_interval, or followers time out between heartbeats",
            );
        }
        if self.election_timeout_max < self.election_timeout_min {
            return err(
                "election_timeout_max",
                "must be at least election_timeout_min",
            );
        }
        if self.max_append_bytes == 0 {
            return err("max_append_bytes", "must be above zero");
        }
        if self.max_inflight_msgs == 0 {
            return err("max_inflight_msgs", "must be above zero");
        }
        if self.max_inflight_bytes < self.max_append_bytes {
            return err("max_inflight_bytes", "must be at least max_append_bytes");
        }
        if self.max_entry_bytes == 0 {
            return err("max_entry_bytes", "must be above zero");
        }
        if self.max_uncommitted_bytes < self.max_entry_bytes {
            return err("max_uncommitted_bytes", "must be at least max_entry_bytes");
        }
        if self.max_outbox_msgs < 64 {
            return err("max_outbox_msgs", "must be at least 64");
        }
        if self.max_unpersisted_writes == 0 {
            return err("max_unpersisted_writes", "must be above zero");
        }
        if self.lease_reads && !self.check_quorum {
            return err(
                "lease_reads",
                "needs check_quorum, or a deposed leader could keep serving from its lease",
            );
        }
        if self.lease_reads && self.max_clock_drift >= self.election_timeout_min {
            return err(
                "max_clock_drift",
                "must be below election_timeout_min for a lease to remain",
            );
        }
        if self.max_pending_reads == 0 {
            return err("max_pending_reads", "must be above zero");
        }
        if self.snapshot_chunk_bytes == 0 {
            return err("snapshot_chunk_bytes", "must be above zero");
        }
        if self.max_log_bytes
            < self
                .max_uncommitted_bytes
                .min(self.snapshot_threshold_bytes)
        {
            return err(
                "max_log_bytes",
                "must be at least max_uncommitted_bytes or snapshot_threshold_bytes",
            );
        }
        if self.catch_up_log_bytes > self.max_log_bytes / 2 {
            return err(
                "catch_up_log_bytes",
                "must be at most half of max_log_bytes (the log keeps growing until the next \
                 snapshot)",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_field() {
        assert_eq!(Config::new(1, 0).validate(), Ok(()));
        let mut c = Config::new(1, 0);
        c.election_timeout_min = c.heartbeat_interval;
        assert_eq!(c.validate().unwrap_err().field, "election_timeout_min");
        let mut c = Config::new(1, 0);
        c.max_inflight_msgs = 0;
        assert_eq!(c.validate().unwrap_err().field, "max_inflight_msgs");
        let mut c = Config::new(1, 0);
        c.lease_reads = true;
        c.check_quorum = false;
        assert_eq!(c.validate().unwrap_err().field, "lease_reads");
        c.check_quorum = true;
        c.max_clock_drift = c.election_timeout_min;
        assert_eq!(c.validate().unwrap_err().field, "max_clock_drift");
    }
}
