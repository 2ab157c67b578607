//! A random campaign over a sharded cluster: KV users on shared keys while groups join and
//! leave, nodes crash and restart, the network partitions and turns lossy; then everything
//! heals, the users finish, and the whole history must be linearizable (per key)

use shale_core::controller::{ControllerCommand, GroupId};
use shale_core::time::{Duration, Instant};

use super::{CLERK_POLL, Clerk, KvWorkload, ShardedCluster, ShardedConfig, TxnWorkload, Workload};
use crate::{NetworkConfig, SimError};

/// What one sharded campaign run did
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardedReport {
    /// The seed
    pub seed: u64,
    /// Faults injected (crashes, restarts, partitions, network changes)
    pub faults: u64,
    /// Configuration changes made
    pub reconfigurations: u64,
    /// KV operations completed (all proven linearizable)
    pub client_ops: u64,
    /// KV operations given up (outcome unknown)
    pub unknown_ops: u64,
    /// List-append transactions completed (all checked, see [`TxnWorkload`])
    pub txns: u64,
    /// Hash of the whole trace (equal for two runs of one seed)
    pub trace_hash: u64,
}

/// Mixed into the seed for the campaign's clock drift draw
const DRIFT_SALT: u64 = 0xd81f_7c10_c4a1_0001;

/// Virtual time the faults go on for
pub const SHARDED_FAULT_PHASE: Duration = Duration::from_secs(6);

/// Runs the sharded campaign of `seed`: invariant violations panic (with the seed); a history
/// that is not linearizable, or users that cannot finish after healing, is an `Err`
///
/// Even seeds give each group nodes of its own; odd seeds put every group on the same three
/// nodes, as `shale up` does. Seeds 2 and 3 modulo 4 serve reads from leader leases. Every
/// node's clock drifts (up to a seeded bound of at most 2%). Seeds 1 and 2 modulo 3 balance
/// leaders (every 300 ms or 2 s), so leadership also moves by transfer while faults go on.
/// Faults: node crashes and restarts, pauses, partitions, one-way link cuts and lossy
/// networks, while groups join and leave.
pub fn run_sharded_seed(seed: u64) -> Result<ShardedReport, SimError> {
    let mut config = ShardedConfig::new(seed);
    config.shared_nodes = seed % 2 == 1;
    // Half the seeds serve reads from leader leases, under the pauses and drift below.
    config.raft.lease_reads = seed % 4 >= 2;
    // Clocks drift up to 2% (4% between two nodes, within the lease's 10% margin)
    config.clock_drift_ppm_max = shale_core::rng::Rng::new(seed ^ DRIFT_SALT).below(20_001);
    config.leader_balance_interval = match seed % 3 {
        1 => Some(Duration::from_millis(300)),
        2 => Some(Duration::from_secs(2)),
        _ => None,
    };
    config.raft.snapshot_threshold_bytes = 4096;
    config.raft.snapshot_trailing_bytes = 512;
    config.raft.snapshot_chunk_bytes = 1024;
    config.call_budget = Duration::from_secs(60);
    let mut c = ShardedCluster::new(config);
    let keys = c.key_per_shard();
    let mut users = KvWorkload::new(
        &mut c,
        6,
        Workload::Random(keys),
        Some(Duration::from_secs(3)),
    );
    users.think = Duration::from_millis(20);
    // Transactions (MULTI/EXEC) appending to and reading lists, beside the KV users
    let mut txns = TxnWorkload::new(
        &mut c,
        3,
        vec!["a".into(), "b".into()],
        Some(Duration::from_secs(3)),
    );
    let gids: Vec<GroupId> = c.groups.keys().copied().collect();
    let mut joined: Vec<GroupId> = vec![gids[0]];
    c.join(&joined)?;
    let (mut faults, mut reconfigurations) = (0u64, 1u64);
    // Configuration changes run alongside the users and the faults, through a clerk of
    // their own.
    let mut admin = Clerk::new(&mut c.sim);
    let end = c.sim.now() + SHARDED_FAULT_PHASE;
    let nodes = c.sim.ids();
    while c.sim.now() < end {
        let gap = c.sim.fault_rng().range(100, 600);
        let until = c.sim.now() + Duration::from_millis(gap);
        run_with(&mut c, &mut users, &mut txns, &mut admin, until, true)?;
        match c.sim.fault_rng().range(0, 9) {
            0 if admin.is_idle() => {
                // Join a group that is out, or have one leave (never the last one).
                let pick = c.sim.fault_rng().range(0, gids.len() as u64) as usize;
                let gid = gids[pick];
                let command = if !joined.contains(&gid) {
                    joined.push(gid);
                    ControllerCommand::Join(vec![(gid, c.groups[&gid].clone())])
                } else if joined.len() > 1 {
                    joined.retain(|&g| g != gid);
                    ControllerCommand::Leave(vec![gid])
                } else {
                    continue;
                };
                admin.start(command);
                reconfigurations += 1;
            }
            0 => {}
            1 => {
                let id = nodes[c.sim.fault_rng().range(0, nodes.len() as u64) as usize];
                c.sim.crash(id);
                faults += 1;
            }
            2 => {
                for id in nodes.clone() {
                    if !c.sim.is_up(id) {
                        c.sim.restart(id);
                    }
                }
                faults += 1;
            }
            3 => {
                let mut a = Vec::new();
                let mut b = Vec::new();
                for &id in &nodes {
                    if c.sim.fault_rng().chance(1, 2) {
                        a.push(id);
                    } else {
                        b.push(id);
                    }
                }
                c.sim.partition(&[&a, &b]);
                faults += 1;
            }
            4 => {
                c.sim.heal();
                faults += 1;
            }
            6 => {
                let id = nodes[c.sim.fault_rng().range(0, nodes.len() as u64) as usize];
                if c.sim.is_paused(id) {
                    c.sim.resume(id);
                } else {
                    c.sim.pause(id);
                }
                faults += 1;
            }
            7 => {
                let pick = |c: &mut ShardedCluster| {
                    nodes[c.sim.fault_rng().range(0, nodes.len() as u64) as usize]
                };
                let (from, to) = (pick(&mut c), pick(&mut c));
                if from != to {
                    c.sim.set_link(from, to, false);
                    faults += 1;
                }
            }
            8 => {
                for &id in &nodes {
                    if c.sim.is_paused(id) {
                        c.sim.resume(id);
                    }
                }
            }
            _ => {
                let network = if c.sim.fault_rng().chance(1, 2) {
                    NetworkConfig::unreliable()
                } else {
                    NetworkConfig::reliable()
                };
                c.sim.set_network(network);
                faults += 1;
            }
        }
    }
    c.sim.heal();
    c.sim.set_network(NetworkConfig::reliable());
    for id in nodes {
        if c.sim.is_paused(id) {
            c.sim.resume(id);
        }
        if !c.sim.is_up(id) {
            c.sim.restart(id);
        }
    }
    let until = c.sim.now() + Duration::from_secs(60);
    run_with(&mut c, &mut users, &mut txns, &mut admin, until, false)?;
    if !admin.is_idle() {
        return Err(c
            .sim
            .error("the last configuration change never finished".into()));
    }
    users.run_for(&mut c, Duration::from_secs(1))?;
    users.drain(&mut c, Duration::from_secs(30))?;
    txns.drain(&mut c, Duration::from_secs(30))?;
    txns.check(&mut c)?;
    let (client_ops, unknown_ops) = (users.completed, users.unknown);
    users.check_linearizable(&c)?;
    Ok(ShardedReport {
        seed,
        faults,
        reconfigurations,
        client_ops,
        unknown_ops,
        txns: txns.completed,
        trace_hash: c.sim.trace_hash(),
    })
}

/// Runs users and the configuration clerk until `until` (or, without `busy`, until the clerk
/// is idle)
fn run_with(
    c: &mut ShardedCluster,
    users: &mut KvWorkload,
    txns: &mut TxnWorkload,
    admin: &mut Clerk,
    until: Instant,
    busy: bool,
) -> Result<(), SimError> {
    while c.sim.now() < until && (busy || !admin.is_idle()) {
        users.tick(c, busy)?;
        txns.tick(c, busy)?;
        if !admin.is_idle() {
            let _ = admin.poll(&mut c.sim);
        }
        c.sim.run_for(CLERK_POLL);
    }
    Ok(())
}
