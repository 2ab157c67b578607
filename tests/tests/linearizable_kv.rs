//! The replicated KV store under concurrent clients is linearizable, through every read path,
//! on a lossy network with partitions, crashes, leader changes and snapshots; and the checker
//! catches the deliberately broken read path
//!
//! Each scenario runs 5 nodes and 5-8 clients ([`shale_sim::Clients`]) for about six seconds
//! of virtual time: ten rounds of clients interleaved with a random fault, then a healed
//! stretch. The history is checked with the linearizability checker; `Illegal` and `Unknown`
//! both fail the seed, and a history must hold a minimum of completed writes and reads.
//!
//! `SHALE_SEEDS=200 cargo test -p shale-tests --release --test linearizable_kv -- --nocapture`
//! prints, per scenario, how many operations were recorded and how long the checker took.

use std::cell::Cell;
use std::time::Instant as WallClock;

use shale_core::raft::{Config, NodeId};
use shale_core::time::Duration;
use shale_sim::linearizability::{CheckResult, DEFAULT_BUDGET, History, check};
use shale_sim::{
    ClientStats, Clients, ClientsConfig, NetworkConfig, ReadMode, Sim, SimConfig, SimError,
    inject_membership_fault,
};
use shale_tests::{ELECTION_TIMEOUT, HEARTBEAT, ensure, for_each_seed, for_seeds, raft_config};

/// Nodes in every scenario
const NODES: usize = 5;
/// Completed writes each history must hold at least (1000 seeds give 69 or more)
const MIN_WRITES: u64 = 50;
/// Completed reads each history must hold at least (1000 seeds give 37 or more)
const MIN_READS: u64 = 25;
/// Seeds the broken read path runs over (fixed, whatever `SHALE_SEEDS` says)
const BROKEN_SEEDS: u64 = 40;

/// What a scenario adds to the basic one
#[derive(Clone, Copy, PartialEq, Eq)]
struct Setup {
    /// How the clients read
    mode: ReadMode,
    /// A random membership change ([`inject_membership_fault`]) after most faults
    membership: bool,
}

/// The Raft config: scenario timing, a snapshot every ~25 entries, and the read mode's needs
fn kv_raft(mode: ReadMode) -> Config {
    let mut c = raft_config();
    c.snapshot_threshold_bytes = 1_500;
    c.snapshot_trailing_bytes = 300;
    match mode {
        ReadMode::Lease => c.lease_reads = true,
        ReadMode::Broken => {
            c.unsafe_reads_without_quorum = true;
            // An isolated old leader keeps leading (and serving its stale reads).
            c.check_quorum = false;
        }
        ReadMode::ReadIndex | ReadMode::Follower => {}
    }
    c
}

/// 5 nodes on the unreliable network; clocks drift up to 2% (4% between two nodes, well within
/// the lease's 50 ms margin over a 500 ms election timeout)
fn kv_sim(seed: u64, mode: ReadMode) -> Sim {
    let mut config = SimConfig::new(seed, NODES);
    config.raft = kv_raft(mode);
    config.network = NetworkConfig::unreliable();
    config.clock_drift_ppm_max = 20_000;
    Sim::new(config)
}

/// One random fault: a partition, the leader cut off or crashed, a node crashed or restarted,
/// or a heal
fn fault(sim: &mut Sim) {
    let ids = sim.ids();
    let down = ids.iter().filter(|&&id| !sim.is_up(id)).count();
    let choice = sim.fault_rng().below(7);
    let victim = ids[sim.fault_rng().below(ids.len() as u64) as usize];
    match choice {
        0 => {
            let mut shuffled = ids.clone();
            for i in (1..shuffled.len()).rev() {
                let j = sim.fault_rng().below(i as u64 + 1) as usize;
                shuffled.swap(i, j);
            }
            let cut = 1 + sim.fault_rng().below(shuffled.len() as u64 - 1) as usize;
            let (a, b) = shuffled.split_at(cut);
            sim.partition(&[a, b]);
        }
        1 => {
            if let Some(leader) = sim.leader() {
                sim.disconnect(leader);
            }
        }
        2 => {
            if let Some(leader) = sim.leader() {
                sim.crash(leader);
            }
        }
        3 if down < 2 => sim.crash(victim),
        4 | 5 => {
            if let Some(&id) = ids.iter().find(|&&id| !sim.is_up(id)) {
                sim.restart(id);
            }
        }
        _ => sim.heal(),
    }
}

/// Runs one seed of a scenario: ten rounds of clients and faults, then everything healed and
/// restarted while the clients go on, for two seconds once a leader is back; returns the
/// simulation, the history and what the clients did
fn run(seed: u64, setup: Setup) -> Result<(Sim, History, ClientStats), SimError> {
    let mut sim = kv_sim(seed, setup.mode);
    sim.wait_for_leader(ELECTION_TIMEOUT.saturating_mul(10))?;
    let count = 5 + (seed % 4) as usize;
    let mut clients = Clients::new(&sim, ClientsConfig::new(count, setup.mode));
    for _ in 0..10 {
        let span = Duration::from_millis(sim.fault_rng().range(200, 600));
        sim.run_clients(&mut clients, span);
        fault(&mut sim);
        if setup.membership && sim.fault_rng().chance(2, 3) {
            // Add a learner, promote, remove or replace a voter, or transfer leadership.
            let _ = inject_membership_fault(&mut sim);
        }
    }
    sim.heal();
    for id in sim.ids() {
        if !sim.is_up(id) {
            sim.restart(id);
        }
    }
    // Healed: once a leader is back, the clients must get work done.
    let give_up = sim.now() + ELECTION_TIMEOUT.saturating_mul(20);
    while sim.leader().is_none() && sim.now() < give_up {
        sim.run_clients(&mut clients, HEARTBEAT);
    }
    ensure(&sim, sim.leader().is_some(), || {
        "no leader after healing".into()
    })?;
    sim.run_clients(&mut clients, Duration::from_secs(2));
    let stats = clients.stats().clone();
    Ok((sim, clients.finish(), stats))
}

/// Totals over the seeds of one scenario, printed at the end
#[derive(Default)]
struct Totals {
    /// Operations recorded
    ops: Cell<usize>,
    /// Writes completed
    writes: Cell<u64>,
    /// Reads completed
    reads: Cell<u64>,
    /// Microseconds the checker took
    check_us: Cell<u128>,
    /// Most microseconds the checker took on one seed
    worst_us: Cell<u128>,
    /// Fewest writes completed in one seed
    min_writes: Cell<u64>,
    /// Fewest reads completed in one seed
    min_reads: Cell<u64>,
}

/// Runs `setup` over every seed; each history must be proven linearizable and hold at least
/// [`MIN_WRITES`] completed writes and [`MIN_READS`] completed reads
fn linearizable(name: &str, setup: Setup) {
    let totals = Totals {
        min_writes: Cell::new(u64::MAX),
        min_reads: Cell::new(u64::MAX),
        ..Totals::default()
    };
    for_each_seed(name, |seed| {
        let (sim, history, stats) = run(seed, setup)?;
        let started = WallClock::now();
        let verdict = check(&history, DEFAULT_BUDGET);
        let us = started.elapsed().as_micros();
        let (writes, reads) = (stats.writes_ok, stats.reads_ok);
        ensure(&sim, verdict.is_ok(), || {
            format!("seed {seed}: the history is not proven linearizable: {verdict}\n{stats:?}")
        })?;
        ensure(&sim, writes >= MIN_WRITES && reads >= MIN_READS, || {
            format!("seed {seed}: too little progress: {stats:?}")
        })?;
        totals.min_writes.set(totals.min_writes.get().min(writes));
        totals.min_reads.set(totals.min_reads.get().min(reads));
        totals.ops.set(totals.ops.get() + history.len());
        totals.writes.set(totals.writes.get() + writes);
        totals.reads.set(totals.reads.get() + reads);
        totals.check_us.set(totals.check_us.get() + us);
        totals.worst_us.set(totals.worst_us.get().max(us));
        Ok(())
    });
    eprintln!(
        "{name}: {} ops recorded ({} writes and {} reads completed, at least {} and {} per seed); \
         checker {} us in all, {} us at worst",
        totals.ops.get(),
        totals.writes.get(),
        totals.reads.get(),
        totals.min_writes.get(),
        totals.min_reads.get(),
        totals.check_us.get(),
        totals.worst_us.get()
    );
}

#[test]
fn kv_linearizable_read_index() {
    linearizable(
        "kv_linearizable_read_index",
        Setup {
            mode: ReadMode::ReadIndex,
            membership: false,
        },
    );
}

#[test]
fn kv_linearizable_lease() {
    linearizable(
        "kv_linearizable_lease",
        Setup {
            mode: ReadMode::Lease,
            membership: false,
        },
    );
}

#[test]
fn kv_linearizable_follower_reads() {
    linearizable(
        "kv_linearizable_follower_reads",
        Setup {
            mode: ReadMode::Follower,
            membership: false,
        },
    );
}

#[test]
fn kv_linearizable_membership_changes() {
    linearizable(
        "kv_linearizable_membership_changes",
        Setup {
            mode: ReadMode::ReadIndex,
            membership: true,
        },
    );
}

/// Rounds of the broken scenario: clients run, the leader is cut off and keeps serving reads
/// while the others elect a new leader and take writes, then everything heals
fn run_broken(seed: u64) -> Result<History, SimError> {
    let sim = kv_sim(seed, ReadMode::Broken);
    cut_off_leaders(sim, ReadMode::Broken, 3)
}

/// `rounds` times: 6 clients run, the leader is cut off while they go on for four election
/// timeouts, then everything heals; the clients' history
fn cut_off_leaders(mut sim: Sim, mode: ReadMode, rounds: usize) -> Result<History, SimError> {
    cut_off_leaders_with(&mut sim, mode, rounds, ELECTION_TIMEOUT)
}

/// [`cut_off_leaders`] for a cluster whose election timeout is `election`
fn cut_off_leaders_with(
    sim: &mut Sim,
    mode: ReadMode,
    rounds: usize,
    election: Duration,
) -> Result<History, SimError> {
    sim.wait_for_leader(election.saturating_mul(10))?;
    let mut config = ClientsConfig::new(6, mode);
    // Clients stuck on the cut-off leader give up on their writes soon and look elsewhere.
    config.op_timeout = election;
    let mut clients = Clients::new(sim, config);
    for _ in 0..rounds {
        sim.run_clients(&mut clients, Duration::from_millis(300));
        let Some(old): Option<NodeId> = sim.leader() else {
            continue;
        };
        sim.disconnect(old);
        sim.run_clients(&mut clients, election.saturating_mul(4));
        sim.heal();
    }
    Ok(clients.finish())
}

/// The deliberately broken read path (no quorum check on leader reads) must be caught: over a
/// fixed list of seeds, the checker finds most histories not linearizable (38 of 40 when
/// written; at least three quarters required)
#[test]
fn broken_reads_are_caught() {
    let mut caught = Vec::new();
    for seed in 0..BROKEN_SEEDS {
        let history = run_broken(seed).unwrap_or_else(|e| panic!("{e}"));
        match check(&history, DEFAULT_BUDGET) {
            CheckResult::Illegal { explanation, .. } => {
                if caught.is_empty() {
                    eprintln!("seed {seed}: caught a stale read:\n{explanation}");
                }
                caught.push(seed);
            }
            CheckResult::Ok | CheckResult::Unknown { .. } => {}
        }
    }
    eprintln!(
        "broken reads caught at {} of {BROKEN_SEEDS} seeds: {caught:?}",
        caught.len()
    );
    assert!(
        caught.len() as u64 * 4 >= BROKEN_SEEDS * 3,
        "the checker caught stale reads in only {} of {BROKEN_SEEDS} seeds",
        caught.len()
    );
}

/// Rounds of leases with clocks `drift_ppm` slow or fast: clients run, the leader
/// is cut off and keeps answering lease reads until its lease ends, while the others elect a
/// new leader (as soon as their own clocks say an election timeout passed) and take writes
fn run_lease(seed: u64, drift_ppm: i64) -> Result<History, SimError> {
    run_lease_scaled(seed, drift_ppm, 1)
}

/// [`run_lease`] with the election timeout and the drift allowance both `scale` times longer
/// (their ratio, the lease's margin, stays 10%): the same drift then opens a window `scale`
/// times longer, so a lease without its margin shows stale reads
fn run_lease_scaled(seed: u64, drift_ppm: i64, scale: u32) -> Result<History, SimError> {
    let mut config = SimConfig::new(seed, NODES);
    config.raft = kv_raft(ReadMode::Lease);
    let election = ELECTION_TIMEOUT.saturating_mul(u64::from(scale));
    config.raft.election_timeout_min = election;
    config.raft.max_clock_drift = config.raft.max_clock_drift.saturating_mul(u64::from(scale));
    // Elections start as soon as the lease assumes they can: no random slack beyond it.
    config.raft.election_timeout_max = election + Duration::from_millis(20);
    config.network = NetworkConfig::reliable();
    // Slow and fast clocks side by side: some leaders are slow, some followers fast.
    config.clock_drifts_ppm = vec![-drift_ppm, drift_ppm, -drift_ppm, drift_ppm, drift_ppm];
    cut_off_leaders_with(
        &mut Sim::new(config),
        ReadMode::Lease,
        LEASE_ROUNDS,
        election,
    )
}

/// `Ok` when the checker proves `history` linearizable, else an error naming `seed`
fn proven_linearizable(seed: u64, history: &History) -> Result<(), SimError> {
    match check(history, DEFAULT_BUDGET) {
        CheckResult::Ok => Ok(()),
        other => Err(SimError {
            seed,
            message: format!("not proven linearizable: {other}"),
            at: shale_core::time::Instant::ZERO,
        }),
    }
}

/// Seeds of the lease scenarios
const LEASE_SEEDS: u64 = 30;
/// Leaders cut off per seed in the lease scenarios
const LEASE_ROUNDS: usize = 12;

/// The lease test can fail: with clocks drifting far beyond the bound the lease assumes (30%
/// slow or fast against a 10% margin), a cut-off leader's lease outlives the new leader's
/// first writes, and the checker finds stale reads (in 13 of 30 seeds when written; at least a
/// quarter required)
#[test]
fn lease_reads_beyond_the_drift_bound_are_caught() {
    let caught: Vec<u64> = (0..LEASE_SEEDS)
        .filter(|&seed| {
            let history = run_lease(seed, 300_000).unwrap_or_else(|e| panic!("{e}"));
            matches!(check(&history, DEFAULT_BUDGET), CheckResult::Illegal { .. })
        })
        .collect();
    eprintln!(
        "lease reads beyond the drift bound: stale reads caught at {} of {LEASE_SEEDS} seeds: \
         {caught:?}",
        caught.len()
    );
    assert!(
        caught.len() as u64 * 4 >= LEASE_SEEDS,
        "stale lease reads caught in only {} of {LEASE_SEEDS} seeds with clocks drifting 30%",
        caught.len()
    );
}

/// At the bound with 8-times longer timeouts (4 s, and a 400 ms drift allowance): the window
/// a lease without its margin leaves open (about 390 ms here) is long enough for the new
/// leader's writes and the old leader's reads to fall into it, so this is the scenario that
/// catches a missing margin (`planted-lease-without-drift`); with the margin it stays
/// linearizable
#[test]
fn lease_reads_at_the_drift_bound_with_long_timeouts_stay_linearizable() {
    for_seeds(
        "lease_reads_at_the_drift_bound_with_long_timeouts_stay_linearizable",
        (0..LEASE_SEEDS / 3).collect(),
        |seed| proven_linearizable(seed, &run_lease_scaled(seed, 49_000, 8)?),
    );
}

/// Within the bound (4.9% slow or fast, 9.8% between two, against the 10% margin of a 50 ms
/// drift allowance over a 500 ms election timeout), the same scenario stays linearizable
#[test]
fn lease_reads_at_the_drift_bound_stay_linearizable() {
    for_seeds(
        "lease_reads_at_the_drift_bound_stay_linearizable",
        (0..LEASE_SEEDS).collect(),
        |seed| proven_linearizable(seed, &run_lease(seed, 49_000)?),
    );
}
