//! A node's configuration, and booting its replicas from storage

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use shale_core::controller::{GroupId, ShardController};
use shale_core::group::{DriverConfig, GroupDriver, GroupState};
use shale_core::raft::{Config as RaftConfig, NodeId, Raft};
use shale_core::rsm::Replica;
use shale_core::shard::ShardLimits;
use shale_core::time::{Duration, Instant};

use crate::storage::{Disk, StdDisk};
use crate::{Storage, StorageConfig, StorageError};
use shale_core::node::{CONTROLLER_GROUP, HostedReplica};
use std::sync::Arc;

/// One group this node hosts a replica of
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSpec {
    /// The group ([`CONTROLLER_GROUP`] for the controller)
    pub gid: GroupId,
    /// Its voters when the group is created (later changes come through its log)
    pub voters: Vec<NodeId>,
}

/// Raft timing and size limits for every group of a node
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaftTuning {
    /// Leader heartbeat period
    pub heartbeat_interval: Duration,
    /// Shortest election timeout
    pub election_timeout_min: Duration,
    /// Longest election timeout
    pub election_timeout_max: Duration,
    /// Log bytes since the last snapshot that trigger the next one
    pub snapshot_threshold_bytes: usize,
    /// Serve linearizable reads from a leader lease while it holds, instead of a heartbeat
    /// round per batch of reads: faster, and safe as long as no clock runs faster than
    /// another by more than `max_clock_drift` over an election timeout (off by default)
    pub lease_reads: bool,
}

impl Default for RaftTuning {
    /// 100 ms heartbeats and 1-2 s election timeouts: generous for machines whose fsync
    /// takes tens of milliseconds; 8 MiB between snapshots
    fn default() -> Self {
        RaftTuning {
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(1_000),
            election_timeout_max: Duration::from_millis(2_000),
            snapshot_threshold_bytes: 8 << 20,
            lease_reads: false,
        }
    }
}

/// Everything a node needs to start
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// This node (non-zero)
    pub id: NodeId,
    /// The cluster; peers of another cluster are refused
    pub cluster_id: u64,
    /// The cluster secret peers must prove they know (empty: none); see
    /// [`transport::auth`](crate::transport::auth)
    pub secret: Vec<u8>,
    /// Where every group's storage lives (one subdirectory per group)
    pub data_dir: PathBuf,
    /// Address for peer connections
    pub listen: SocketAddr,
    /// The other nodes' peer addresses
    pub peers: BTreeMap<NodeId, SocketAddr>,
    /// The groups this node hosts replicas of
    pub groups: Vec<GroupSpec>,
    /// The controller's voters
    pub controller_voters: Vec<NodeId>,
    /// Replica groups to join when the cluster is new
    pub bootstrap_groups: Vec<(GroupId, Vec<NodeId>)>,
    /// Number of shards (fixed for the cluster's life)
    pub shard_count: u32,
    /// Key, value and session limits of every shard
    pub limits: ShardLimits,
    /// Raft timing
    pub raft: RaftTuning,
    /// Largest WAL segment file, in bytes
    pub max_segment_bytes: u64,
    /// Most shards holding data one configuration moves: a join or leave becomes a series of
    /// configurations, so a shard waits only for its own transfer (0: any number). Given to a
    /// new cluster's controller through its log with the first join (so every replica agrees
    /// whatever its own flags say); later, `SHALE MAX-MOVES` changes it.
    pub max_moves_per_config: u32,
    /// Bytes per second each group pulls when shards move to it (0: as fast as it can); see
    /// [`DriverConfig::handover_bytes_per_sec`]
    pub handover_bytes_per_sec: u64,
    /// A listener already bound to [`listen`](Self::listen), used instead of binding it
    /// again: a port the OS chose stays this node's from the moment it is known (binding,
    /// closing and binding again could lose it to another process)
    pub peer_listener: Option<std::sync::Arc<std::net::TcpListener>>,
    /// The file system the data directory is on: [`StdDisk`] but in tests (which use a
    /// [`PowerCutDisk`](crate::storage::PowerCutDisk) to cut the power under a node)
    pub disk: Arc<dyn Disk>,
    /// How often this node hands the groups it leads to their preferred voters, so leaders
    /// spread over the nodes (see [`shale_core::node::preferred_leader`]); `None`: never.
    /// Default [`DEFAULT_LEADER_BALANCE_INTERVAL`]
    pub leader_balance_interval: Option<Duration>,
}

/// How often a node balances leadership unless told otherwise
pub const DEFAULT_LEADER_BALANCE_INTERVAL: Duration = Duration::from_millis(2_000);

impl NodeConfig {
    /// Defaults for node `id` with data under `data_dir`, listening on `listen`; no groups
    pub fn new(id: NodeId, data_dir: PathBuf, listen: SocketAddr) -> Self {
        NodeConfig {
            id,
            cluster_id: 1,
            secret: Vec::new(),
            data_dir,
            listen,
            peers: BTreeMap::new(),
            groups: Vec::new(),
            controller_voters: Vec::new(),
            bootstrap_groups: Vec::new(),
            shard_count: 16,
            limits: ShardLimits::default(),
            raft: RaftTuning::default(),
            max_segment_bytes: StorageConfig::default().max_segment_bytes,
            max_moves_per_config: DEFAULT_MAX_MOVES_PER_CONFIG,
            handover_bytes_per_sec: DEFAULT_HANDOVER_BYTES_PER_SEC,
            peer_listener: None,
            disk: Arc::new(StdDisk),
            leader_balance_interval: Some(DEFAULT_LEADER_BALANCE_INTERVAL),
        }
    }

    /// The settings of this node's peer transport: its cluster, id and secret, with the
    /// default limits
    pub fn transport(&self) -> crate::transport::TransportConfig {
        let mut config = crate::transport::TransportConfig::new(self.cluster_id, self.id);
        config.secret = self.secret.clone();
        config
    }

    /// The directory of group `gid`'s storage
    pub fn group_dir(&self, gid: GroupId) -> PathBuf {
        if gid == CONTROLLER_GROUP {
            self.data_dir.join("controller")
        } else {
            self.data_dir.join(format!("group-{gid}"))
        }
    }
}

/// Why a node could not boot
#[derive(Debug)]
pub enum BootError {
    /// A group's storage would not open (the error names the file and offset)
    Storage(StorageError),
    /// A directory could not be created
    Io(PathBuf, std::io::Error),
    /// A recovered log is inconsistent, a stored snapshot does not restore, or the
    /// configuration is invalid
    Invalid(String),
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::Storage(e) => write!(f, "{e}"),
            BootError::Io(path, e) => write!(f, "cannot create {}: {e}", path.display()),
            BootError::Invalid(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for BootError {}

/// Shards with data one configuration moves, unless configured otherwise (see
/// [`NodeConfig::max_moves_per_config`])
pub const DEFAULT_MAX_MOVES_PER_CONFIG: u32 = 1;

/// Log applied since the last snapshot, as a percentage of that snapshot's size, before the
/// next one (see the Raft `snapshot_log_percent`): the log on disk and in memory stays under
/// about half the state, and writing snapshots costs about two bytes per byte logged
pub const SNAPSHOT_LOG_PERCENT: u32 = 25;

/// Bytes per second a group pulls moving shards, unless configured otherwise (see
/// [`NodeConfig::handover_bytes_per_sec`]): on the 2-core test machine, 2 MiB/s kept the p99
/// of a 50-client load during moves within 5x of the p99 without moves (3.3x and 4.3x), where
/// 4 MiB/s gave 7.5x to 9.6x and an unlimited pull (about 15 MiB/s) 40x
pub const DEFAULT_HANDOVER_BYTES_PER_SEC: u64 = 2 << 20;

/// Bytes of log a group's leader keeps for followers a little behind (see the Raft
/// `catch_up_log_bytes`): enough for a burst of hand-over chunks
pub const CATCH_UP_LOG_BYTES: usize = 64 << 20;

/// The file in a node's data directory naming the format of what is stored under it
pub const DATA_FORMAT_FILE: &str = "FORMAT";

/// The data format this build writes and reads: group commands, snapshots and hand-over
/// messages as of shards moving in chunks (format 2), then WAL segments with sync markers
/// and session watermarks per issuer (format 3), then keys placed by their Redis Cluster
/// slot (CRC16) instead of an FNV-1a hash (format 4), then values stored with a header
/// (their type and expiry) and client requests stamped by their leader (format 5); a
/// directory of another format is refused rather than misread
pub const DATA_FORMAT: &str = "shale-data-format 5\n";

/// Checks that `config.data_dir` holds data of this build's format (or none yet, and then
/// marks it)
fn check_format(config: &NodeConfig) -> Result<(), BootError> {
    let (dir, disk) = (&config.data_dir, &*config.disk);
    crate::storage::create_dir_durably(disk, dir).map_err(BootError::Storage)?;
    let path = dir.join(DATA_FORMAT_FILE);
    let mark = || {
        crate::storage::write_atomic(disk, dir, DATA_FORMAT_FILE, &[DATA_FORMAT.as_bytes()])
            .map_err(BootError::Storage)
    };
    let read = disk
        .read(&path)
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    match read {
        Ok(found) if found == DATA_FORMAT => Ok(()),
        Ok(found) => Err(BootError::Invalid(format!(
            "{} holds data of format {:?}, this build reads {:?}; use a data directory of this \
             version, or an empty one",
            dir.display(),
            found.trim(),
            DATA_FORMAT.trim()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let earlier = config
                .groups
                .iter()
                .any(|g| disk.exists(&config.group_dir(g.gid)));
            if earlier {
                return Err(BootError::Invalid(format!(
                    "{} holds data written by an earlier version of Shale (no {DATA_FORMAT_FILE} \
                     file): its snapshots and log entries are of an older format; start this \
                     version on an empty data directory",
                    dir.display()
                )));
            }
            mark()
        }
        Err(e) => Err(BootError::Io(path, e)),
    }
}

/// A seed for Raft's election timer: time and the ids, different on every boot
fn seed(id: NodeId, gid: GroupId) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ gid.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)
}

/// What [`boot`] gives back: the replicas and their storages, by group
pub type Booted = (BTreeMap<GroupId, HostedReplica>, BTreeMap<GroupId, Storage>);

/// Opens every group's storage and rebuilds its replica: the recovered log is checked and
/// the state machine restored from the stored snapshot. Nothing on disk is changed on error.
pub fn boot(config: &NodeConfig, now: Instant) -> Result<Booted, BootError> {
    if config.id == 0 {
        return Err(BootError::Invalid("node id 0 is reserved".into()));
    }
    if !(1..=shale_core::shard::MAX_SHARDS).contains(&config.shard_count) {
        return Err(BootError::Invalid(format!(
            "{} shards: a cluster has 1 to {} (one key slot each at the least)",
            config.shard_count,
            shale_core::shard::MAX_SHARDS
        )));
    }
    check_format(config)?;
    let mut replicas = BTreeMap::new();
    let mut storages = BTreeMap::new();
    for spec in &config.groups {
        let dir = config.group_dir(spec.gid);
        crate::storage::create_dir_durably(&*config.disk, &dir).map_err(BootError::Storage)?;
        let storage_config = StorageConfig {
            max_segment_bytes: config.max_segment_bytes,
            ..StorageConfig::default()
        };
        let (storage, recovered) = Storage::open_on(config.disk.clone(), &dir, storage_config)
            .map_err(BootError::Storage)?;
        Raft::recover(&recovered).map_err(|e| {
            BootError::Invalid(format!(
                "{}: recovered log is inconsistent: {e}",
                dir.display()
            ))
        })?;
        let mut raft_config = RaftConfig::new(config.id, seed(config.id, spec.gid));
        raft_config.heartbeat_interval = config.raft.heartbeat_interval;
        raft_config.election_timeout_min = config.raft.election_timeout_min;
        raft_config.election_timeout_max = config.raft.election_timeout_max;
        raft_config.snapshot_threshold_bytes = config.raft.snapshot_threshold_bytes;
        raft_config.lease_reads = config.raft.lease_reads;
        // Followers a few chunks behind a busy leader catch up from the log, not a snapshot.
        raft_config.catch_up_log_bytes = CATCH_UP_LOG_BYTES;
        // A large state is snapshotted less often: snapshots cost in proportion to writes.
        raft_config.snapshot_log_percent = SNAPSHOT_LOG_PERCENT;
        // The largest values must fit in one entry, as a command and as a hand-over chunk.
        raft_config.max_entry_bytes = raft_config
            .max_entry_bytes
            .max(DriverConfig::default().max_entry_bytes(&config.limits));
        let raft = Raft::new(raft_config, &spec.voters, recovered, now)
            .map_err(|e| BootError::Invalid(format!("group {}: {e}", spec.gid)))?;
        let mut replica = if spec.gid == CONTROLLER_GROUP {
            HostedReplica::Controller(Box::new(Replica::new(
                raft,
                // The same on every node whatever its flags: the value in force is the one the
                // controller's log set (see HostConfig::bootstrap_max_moves_per_config).
                ShardController::with_max_moves(config.shard_count, DEFAULT_MAX_MOVES_PER_CONFIG),
            )))
        } else {
            let state = GroupState::new(spec.gid, config.shard_count, config.limits);
            let replica = Replica::new(raft, state);
            let driver = DriverConfig {
                handover_bytes_per_sec: config.handover_bytes_per_sec,
                ..DriverConfig::default()
            };
            HostedReplica::Group(Box::new(GroupDriver::new(replica, driver, now)))
        };
        // Streamed from the file into the state machine's decoder: one piece in memory.
        let loaded = crate::storage::load_snapshot(&*config.disk, &dir, None, replica.restorer())
            .map_err(BootError::Storage)?;
        if let Some((meta, state)) = loaded {
            let restored = state.map_err(|e| {
                BootError::Invalid(format!(
                    "{}: the snapshot at index {} does not restore: {e}",
                    dir.display(),
                    meta.last.index
                ))
            })?;
            if !replica.install(restored) {
                return Err(BootError::Invalid(format!(
                    "{}: the snapshot at index {} is of another kind of state machine",
                    dir.display(),
                    meta.last.index
                )));
            }
            // What the install replaced is an empty state: nothing to free off the loop.
            while replica.poll_release().is_some() {}
        }
        replicas.insert(spec.gid, replica);
        storages.insert(spec.gid, storage);
    }
    Ok((replicas, storages))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path) -> NodeConfig {
        let mut c = NodeConfig::new(1, dir.to_path_buf(), "127.0.0.1:0".parse().unwrap());
        c.groups = vec![GroupSpec {
            gid: 1,
            voters: vec![1],
        }];
        c
    }

    #[test]
    fn data_of_an_earlier_or_other_format_is_refused_and_a_new_directory_is_marked() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        std::fs::create_dir_all(c.group_dir(1)).unwrap();
        let refused = boot(&c, Instant::ZERO).err().map(|e| e.to_string());
        assert!(
            refused
                .as_deref()
                .is_some_and(|e| e.contains("earlier version")),
            "{refused:?}"
        );
        let fresh = tempfile::tempdir().unwrap();
        let c = config(fresh.path());
        assert!(boot(&c, Instant::ZERO).is_ok());
        let marked = std::fs::read_to_string(fresh.path().join(DATA_FORMAT_FILE)).unwrap();
        assert_eq!(marked, DATA_FORMAT);
        assert!(
            boot(&c, Instant::ZERO).is_ok(),
            "its own format boots again"
        );
        std::fs::write(fresh.path().join(DATA_FORMAT_FILE), "shale-data-format 9\n").unwrap();
        let refused = boot(&c, Instant::ZERO).err().map(|e| e.to_string());
        assert!(
            refused.as_deref().is_some_and(|e| e.contains("format")),
            "{refused:?}"
        );
    }
}
