//! Random fault campaigns: each seed draws its own cluster size, fault rates and schedule
//! (swarm testing), runs a workload through a safety phase full of faults, then concurrent KV
//! clients through more faults (client phase), then heals everything and requires the group to
//! converge (liveness phase); the clients' history must be linearizable

use shale_core::raft::Config;
use shale_core::rng::Rng;
use shale_core::time::Duration;

use crate::clients::{Clients, ClientsConfig, ReadMode};
use crate::cluster::{Sim, SimConfig, SimError};
use crate::disk::DiskConfig;
use crate::linearizability::{CheckResult, DEFAULT_BUDGET, check};
use crate::membership::inject_membership_fault;
use crate::network::NetworkConfig;

/// What one campaign run did
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignReport {
    /// The seed
    pub seed: u64,
    /// Cluster size drawn for this seed
    pub nodes: usize,
    /// Faults injected
    pub faults: u64,
    /// Proposals accepted by a leader
    pub proposals: u64,
    /// Entries known committed at the end
    pub committed: u64,
    /// Snapshots taken, summed over the nodes
    pub snapshots_taken: u64,
    /// Snapshots installed from a leader (InstallSnapshot), summed over the nodes
    pub snapshots_installed: u64,
    /// KV operations the clients completed (all proven linearizable)
    pub client_ops: u64,
    /// Membership changes and leadership transfers started
    pub reconfigurations: u64,
    /// Hash of the whole trace (equal for two runs of one seed)
    pub trace_hash: u64,
}

/// Virtual time of the safety phase of a campaign run
pub const SAFETY_PHASE: Duration = Duration::from_secs(20);
/// Virtual time the liveness phase may take
pub const LIVENESS_BUDGET: Duration = Duration::from_secs(30);
/// Virtual time concurrent KV clients run through faults after the safety phase
pub const CLIENT_PHASE: Duration = Duration::from_secs(3);
/// Virtual time the clients run on once the group is healed
pub const CLIENT_SETTLE: Duration = Duration::from_secs(1);

/// Draws the swarm configuration of `seed`
pub fn swarm_config(seed: u64) -> SimConfig {
    let mut rng = Rng::new(seed ^ 0x5157_4152_4d00);
    let nodes = [3, 5, 7][rng.below(3) as usize];
    let mut raft = Config::new(0, 0);
    raft.heartbeat_interval = Duration::from_millis(rng.range(20, 60));
    raft.election_timeout_min = Duration::from_millis(rng.range(150, 400));
    raft.election_timeout_max = raft.election_timeout_min.saturating_mul(2);
    raft.pre_vote = rng.chance(3, 4);
    raft.check_quorum = rng.chance(3, 4);
    raft.max_inflight_msgs = [1, 4, 64][rng.below(3) as usize];
    raft.max_append_bytes = [64, 1024, 1 << 20][rng.below(3) as usize];
    raft.max_inflight_bytes = raft.max_append_bytes.saturating_mul(8);
    raft.max_unpersisted_writes = [1, 8, 64][rng.below(3) as usize];
    draw_snapshot_config(seed, &mut raft);
    let network = NetworkConfig {
        delay_min: Duration::ZERO,
        delay_max: Duration::from_millis(rng.range(1, 30)),
        drop_per_million: rng.below(200_000),
        duplicate_per_million: rng.below(50_000),
        long_delay_per_million: if rng.chance(1, 3) {
            rng.below(100_000)
        } else {
            0
        },
        ..NetworkConfig::reliable()
    };
    let disk = DiskConfig {
        latency_min: Duration::from_micros(rng.range(0, 500)),
        latency_max: Duration::from_millis(rng.range(1, 20)),
        torn_write_per_million: rng.below(1_000_000),
    };
    SimConfig {
        seed,
        nodes,
        raft,
        network,
        disk,
        clock_drift_ppm_max: rng.below(1_000),
        clock_drifts_ppm: Vec::new(),
    }
}

/// Draws the snapshot settings of `seed` from a stream of their own (so the other draws of a
/// seed stay as they were): about half the seeds snapshot every few hundred bytes of log,
/// keep little or no log behind a snapshot, and some send snapshots in tiny chunks, so that
/// followers behind a crash or a partition catch up by InstallSnapshot under faults
fn draw_snapshot_config(seed: u64, raft: &mut Config) {
    let mut rng = Rng::new(seed ^ 0x534e_4150_5348_4f54);
    if !rng.chance(1, 2) {
        return;
    }
    raft.snapshot_threshold_bytes = rng.range(100, 2_000) as usize;
    raft.snapshot_trailing_bytes = [0, 64, 500, 4_000][rng.below(4) as usize];
    raft.snapshot_chunk_bytes = [1, 4, 64, 1 << 20][rng.below(4) as usize];
}

/// Runs the campaign of `seed`: invariant violations panic (with the seed); a failure to
/// converge after healing is an `Err`
pub fn run_seed(seed: u64) -> Result<CampaignReport, SimError> {
    let config = swarm_config(seed);
    let nodes = config.nodes;
    // A third of the seeds also change membership and hand leadership over as they go (drawn
    // from a stream of its own, so the other seeds replay exactly as before).
    let reconfigure = Rng::new(seed ^ 0x5245_434f_4e46).chance(1, 3);
    let mut sim = Sim::new(config);
    let (mut faults, mut proposals, mut reconfigurations) = (0u64, 0u64, 0u64);
    let end = sim.now() + SAFETY_PHASE;
    let mut next_fault = sim.now() + Duration::from_millis(500);
    let mut counter = 0u64;
    while sim.now() < end {
        let pause = Duration::from_millis(sim.workload_rng().range(5, 40));
        sim.run_for(pause);
        counter += 1;
        let payload = format!("s{seed}-op{counter}");
        if sim.propose_to_leader(payload.as_bytes()).is_ok() {
            proposals += 1;
        }
        if sim.now() >= next_fault {
            if reconfigure && sim.fault_rng().chance(1, 4) {
                if inject_membership_fault(&mut sim).is_some() {
                    reconfigurations += 1;
                }
            } else {
                inject_fault(&mut sim);
            }
            faults += 1;
            let gap = if sim.fault_rng().chance(1, 2) {
                (10, 200)
            } else {
                (100, 1_000)
            };
            next_fault = sim.now() + Duration::from_millis(sim.fault_rng().range(gap.0, gap.1));
        }
    }
    // Client phase: concurrent KV clients, with faults going on.
    let mode = if sim.workload_rng().chance(1, 2) {
        ReadMode::ReadIndex
    } else {
        ReadMode::Follower
    };
    let count = sim.workload_rng().range(3, 8) as usize;
    let mut clients = Clients::new(&sim, ClientsConfig::new(count, mode));
    let end = sim.now() + CLIENT_PHASE;
    while sim.now() < end {
        let span = Duration::from_millis(sim.fault_rng().range(50, 500));
        sim.run_clients(&mut clients, span);
        inject_fault(&mut sim);
        faults += 1;
    }
    sim.set_network(NetworkConfig::reliable());
    if reconfigure {
        sim.check_members_converge(LIVENESS_BUDGET)?;
    } else {
        sim.check_liveness_after_heal(LIVENESS_BUDGET)?;
    }
    sim.run_clients(&mut clients, CLIENT_SETTLE);
    let stats = clients.stats().clone();
    let history = clients.finish();
    let verdict = check(&history, DEFAULT_BUDGET);
    if verdict != CheckResult::Ok {
        return Err(sim.error(format!(
            "the KV history ({count} clients, {mode:?} reads) is not proven linearizable: {verdict}"
        )));
    }
    Ok(CampaignReport {
        seed,
        nodes,
        faults,
        proposals,
        committed: sim.checker().commit_index(),
        snapshots_taken: sim.ids().iter().map(|&id| sim.snapshots_taken(id)).sum(),
        snapshots_installed: sim
            .ids()
            .iter()
            .map(|&id| sim.snapshots_installed(id))
            .sum(),
        reconfigurations,
        client_ops: stats.writes_ok + stats.reads_ok,
        trace_hash: sim.trace_hash(),
    })
}

fn inject_fault(sim: &mut Sim) {
    let ids = sim.ids();
    let n = ids.len() as u64;
    let rng = sim.fault_rng();
    let choice = rng.below(13);
    let victim = ids[rng.below(n) as usize];
    let other = ids[rng.below(n) as usize];
    match choice {
        0 | 1 => {
            // Crash, but keep a majority of nodes running most of the time.
            let down = ids.iter().filter(|&&id| !sim.is_up(id)).count();
            if down < ids.len() / 2 {
                sim.crash(victim);
            }
        }
        2 | 3 => {
            if let Some(&down) = ids.iter().find(|&&id| !sim.is_up(id)) {
                sim.restart(down);
            }
        }
        4 => {
            let mut shuffled = ids.clone();
            for i in (1..shuffled.len()).rev() {
                let j = sim.fault_rng().below(i as u64 + 1) as usize;
                shuffled.swap(i, j);
            }
            let cut = 1 + sim.fault_rng().below(n - 1) as usize;
            let (a, b) = shuffled.split_at(cut);
            sim.partition(&[a, b]);
        }
        5 => {
            if let Some(leader) = sim.leader() {
                sim.disconnect(leader);
            }
        }
        6 => sim.heal(),
        7 => {
            if sim.is_paused(victim) {
                sim.resume(victim);
            } else if sim.is_up(victim) {
                sim.pause(victim);
            }
        }
        8 => {
            if victim != other {
                sim.set_link(victim, other, false);
            }
        }
        // The Figure 8 pattern: crash whoever leads, and bring a stopped node back.
        10..=12 => {
            if let Some(leader) = sim.leader() {
                sim.crash(leader);
            }
            let down: Vec<_> = ids.iter().copied().filter(|&id| !sim.is_up(id)).collect();
            if !down.is_empty() && (down.len() > ids.len() / 2 || sim.fault_rng().chance(1, 2)) {
                let pick = down[sim.fault_rng().below(down.len() as u64) as usize];
                sim.restart(pick);
            }
        }
        _ => {
            for id in ids {
                if sim.is_paused(id) {
                    sim.resume(id);
                }
            }
            sim.heal();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The swarm exercises snapshots: some seeds take them and some install them from a leader
    #[test]
    fn campaigns_take_and_install_snapshots() {
        let (mut taken, mut installed) = (0, 0);
        for seed in 0..16 {
            let report = run_seed(seed).unwrap_or_else(|e| panic!("{e}"));
            taken += report.snapshots_taken;
            installed += report.snapshots_installed;
        }
        assert!(
            taken > 0 && installed > 0,
            "taken {taken}, installed {installed}"
        );
    }

    /// The client phase completes operations on every seed (and their history checks)
    #[test]
    fn campaigns_complete_client_operations() {
        for seed in 0..8 {
            let report = run_seed(seed).unwrap_or_else(|e| panic!("{e}"));
            eprintln!("seed {seed}: {} client ops", report.client_ops);
            assert!(report.client_ops >= 20, "{report:?}");
        }
    }
}
