//! Snapshot scenarios: logs are compacted behind snapshots, followers far behind catch up by
//! InstallSnapshot, and snapshots survive whole-group crashes
//!
//! Ports of the classic Raft lab snapshot tests (Snapshot Basic, Install, Install Unreliable,
//! Install Crash, Install Unreliable Crash, All Crash, Init) plus two of our own: the leader's
//! memory stays bounded while a follower is stalled, and a snapshot sent in many tiny chunks
//! over a lossy network still installs. The simulated state machine snapshots itself whenever
//! the core asks (every [`SNAP_ENTRIES`] entries or so, like the classic applier's snapshot
//! every 10); the simulator checks every restored snapshot against the committed log.
//!
//! Time bounds are multiples of [`ELECTION_TIMEOUT`] and [`HEARTBEAT`]: an agreement gets twenty
//! election timeouts, an election ten.

use shale_core::raft::{Config, ENTRY_OVERHEAD_BYTES, Index, NodeId, ProposeError};
use shale_core::time::Duration;
use shale_sim::{NetworkConfig, Sim, SimConfig, SimError};
use shale_tests::{ELECTION_TIMEOUT, HEARTBEAT, ensure, for_each_seed, raft_config};

/// Bytes of every command the scenarios propose
const PAYLOAD: usize = 10;
/// Bytes one command takes in the in-memory log
const ENTRY: usize = PAYLOAD + ENTRY_OVERHEAD_BYTES;
/// Entries between two snapshots (the classic tests snapshot every 10)
const SNAP_ENTRIES: usize = 10;
/// The classic bound on the log size while snapshots are taken (`MAXLOGSIZE`), in bytes
const MAX_LOG: usize = 2_000;

/// Time one `one()` agreement may take
fn agree() -> Duration {
    ELECTION_TIMEOUT.saturating_mul(20)
}

/// Time an election may take
fn elect() -> Duration {
    ELECTION_TIMEOUT.saturating_mul(10)
}

/// The node `k` places after `id` in a ring of `n` nodes (ids are `1..=n`)
fn after(id: NodeId, k: u64, n: usize) -> NodeId {
    (id - 1 + k) % n as NodeId + 1
}

/// The scenario Raft config with a snapshot every [`SNAP_ENTRIES`] entries and two entries kept
/// behind each snapshot
fn snap_config() -> Config {
    let mut c = raft_config();
    c.snapshot_threshold_bytes = SNAP_ENTRIES * ENTRY;
    c.snapshot_trailing_bytes = 2 * ENTRY;
    c
}

/// A simulation of `nodes` nodes running `raft` on a reliable network
fn snap_sim(seed: u64, nodes: usize, raft: Config) -> Sim {
    let mut config = SimConfig::new(seed, nodes);
    config.raft = raft;
    Sim::new(config)
}

/// A random command of [`PAYLOAD`] bytes from the workload stream
fn command(sim: &mut Sim) -> Vec<u8> {
    format!("{:010}", sim.workload_rng().below(10_000_000_000)).into_bytes()
}

/// Commits one random command on at least `expected` nodes; returns its index
fn one(sim: &mut Sim, expected: usize) -> Result<Index, SimError> {
    let data = command(sim);
    sim.one(&data, expected, true, agree())
}

/// `Err` unless every node's in-memory log stayed at or below `bound` bytes after every event
fn log_stayed_below(sim: &Sim, bound: usize) -> Result<(), SimError> {
    for id in sim.ids() {
        let peak = sim.peak_log_bytes(id);
        ensure(sim, peak <= bound, || {
            format!("node {id} held {peak} bytes of log, more than {bound}")
        })?;
    }
    Ok(())
}

/// Snapshots installed from a leader, summed over the nodes
fn installs(sim: &Sim) -> u64 {
    sim.ids()
        .iter()
        .map(|&id| sim.snapshots_installed(id))
        .sum()
}

/// How the victim of each round of [`snap_common`] is taken out
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// No victim: all followers keep up
    None,
    /// Cut off from the others, then reconnected
    Disconnect,
    /// Crashed, then restarted from its disk
    Crash,
}

/// The classic snapshot scenario: 30 rounds; in each, a victim (every third round the leader)
/// is taken out while the sender proposes 5-14 commands and a majority commits; the victim
/// comes back and must catch up (by InstallSnapshot, since its missing entries are compacted).
/// The log stays below [`MAX_LOG`] bytes throughout.
fn snap_common(name: &str, fault: Fault, unreliable: bool) {
    for_each_seed(name, |seed| {
        const N: usize = 3;
        let mut raft = snap_config();
        if fault == Fault::None {
            // A window for followers a few messages behind (appends reorder on any network).
            raft.snapshot_trailing_bytes = 2 * SNAP_ENTRIES * ENTRY;
        }
        let mut sim = snap_sim(seed, N, raft);
        if unreliable {
            sim.set_network(NetworkConfig::unreliable());
        }
        one(&mut sim, N)?;
        let mut leader = sim.wait_for_leader(elect())?;
        for round in 0..30 {
            let (mut victim, mut sender) = (after(leader, 1, N), leader);
            if round % 3 == 1 {
                (victim, sender) = (leader, victim);
            }
            match fault {
                Fault::None => {}
                Fault::Disconnect => sim.disconnect(victim),
                Fault::Crash => sim.crash(victim),
            }
            if fault != Fault::None {
                one(&mut sim, N - 1)?;
            }
            // Proposals to a node that does not lead are refused, as in the classic test.
            let count = SNAP_ENTRIES / 2 + sim.workload_rng().below(SNAP_ENTRIES as u64) as usize;
            for _ in 0..count {
                let data = command(&mut sim);
                let _ = sim.propose(sender, &data);
            }
            let expected = if fault == Fault::None { N } else { N - 1 };
            one(&mut sim, expected)?;
            log_stayed_below(&sim, MAX_LOG)?;
            match fault {
                Fault::None => {}
                Fault::Disconnect => sim.connect(victim),
                Fault::Crash => sim.restart(victim),
            }
            if fault != Fault::None {
                one(&mut sim, N)?;
                leader = sim.wait_for_leader(elect())?;
            }
        }
        log_stayed_below(&sim, MAX_LOG)?;
        for id in sim.ids() {
            ensure(&sim, sim.snapshots_taken(id) > 0, || {
                format!("node {id} never took a snapshot")
            })?;
        }
        match fault {
            // Reliable and fault-free, every follower keeps up with the leader's log.
            Fault::None if !unreliable => ensure(&sim, installs(&sim) == 0, || {
                format!(
                    "{} InstallSnapshots although every follower kept up",
                    installs(&sim)
                )
            }),
            Fault::None => Ok(()),
            _ => ensure(&sim, installs(&sim) > 0, || {
                "no victim caught up by InstallSnapshot: the scenario tested little".into()
            }),
        }
    });
}

/// Snapshot Basic: every follower keeps up, snapshots are taken and the log stays small
#[test]
fn snapshot_basic() {
    snap_common("snapshot_basic", Fault::None, false);
}

/// Snapshot Install: a disconnected victim catches up by InstallSnapshot
#[test]
fn snapshot_install_after_disconnect() {
    snap_common(
        "snapshot_install_after_disconnect",
        Fault::Disconnect,
        false,
    );
}

/// Snapshot Install Unreliable: as above on a lossy network
#[test]
fn snapshot_install_unreliable() {
    snap_common("snapshot_install_unreliable", Fault::Disconnect, true);
}

/// Snapshot Install Crash: the victim crashes instead, and restarts from its disk
#[test]
fn snapshot_install_crash() {
    snap_common("snapshot_install_crash", Fault::Crash, false);
}

/// Snapshot Install Unreliable Crash: crashes on a lossy network
#[test]
fn snapshot_install_unreliable_crash() {
    snap_common("snapshot_install_unreliable_crash", Fault::Crash, true);
}

/// Snapshot All Crash: the whole group crashes and restarts five times; the committed index
/// never goes back, and every node restarts from its snapshot with its state machine no older
/// than before
#[test]
fn snapshot_all_crash() {
    for_each_seed("snapshot_all_crash", |seed| {
        const N: usize = 3;
        let mut sim = snap_sim(seed, N, snap_config());
        one(&mut sim, N)?;
        for round in 0..5 {
            let count = SNAP_ENTRIES / 2 + sim.workload_rng().below(SNAP_ENTRIES as u64) as usize;
            for _ in 0..count {
                one(&mut sim, N)?;
            }
            let before = one(&mut sim, N)?;
            let snapshots: Vec<Index> =
                sim.ids().iter().map(|&id| sim.snapshot_index(id)).collect();
            sim.restart_all();
            for id in sim.ids() {
                let (old, base) = (snapshots[id as usize - 1], sim.applied_base(id));
                ensure(&sim, base == sim.snapshot_index(id) && base >= old, || {
                    format!(
                        "round {round}: node {id} had snapshot {old} but restarted from {base} (disk {})",
                        sim.snapshot_index(id)
                    )
                })?;
            }
            let now = one(&mut sim, N)?;
            ensure(&sim, now > before, || {
                format!("round {round}: index decreased from {before} to {now} across the crash")
            })?;
            for id in sim.ids() {
                let applied = sim.app(id).applied;
                ensure(&sim, applied >= now, || {
                    format!("round {round}: node {id} applied only {applied} of {now}")
                })?;
            }
        }
        for id in sim.ids() {
            ensure(&sim, sim.applied_base(id) > 0, || {
                format!("node {id} never restarted from a snapshot")
            })?;
        }
        Ok(())
    });
}

/// Snapshot Init: a snapshot taken before one whole-group restart must survive a second one
/// (a restarted node must know the snapshot it recovered, or its next compaction loses it)
#[test]
fn snapshot_init() {
    for_each_seed("snapshot_init", |seed| {
        const N: usize = 3;
        let mut sim = snap_sim(seed, N, snap_config());
        for _ in 0..=SNAP_ENTRIES {
            one(&mut sim, N)?;
        }
        let first: Vec<Index> = sim.ids().iter().map(|&id| sim.snapshot_index(id)).collect();
        ensure(&sim, first.iter().all(|&s| s > 0), || {
            format!("no snapshot after {} commands: {first:?}", SNAP_ENTRIES + 1)
        })?;
        for restart in 0..2 {
            sim.restart_all();
            for id in sim.ids() {
                let (old, disk) = (first[id as usize - 1], sim.snapshot_index(id));
                ensure(&sim, disk >= old && sim.applied_base(id) == disk, || {
                    format!(
                        "restart {restart}: node {id} took snapshot {old}, disk holds {disk}, restored from {}",
                        sim.applied_base(id)
                    )
                })?;
            }
            one(&mut sim, N)?;
        }
        Ok(())
    });
}

/// With no log kept behind a snapshot, followers only a few (reordered) appends behind get the
/// snapshot instead; one that already holds entries past it must keep them (Raft §7: a snapshot
/// that ends at an entry the log holds replaces only the prefix), or it drops entries it
/// acknowledged and the leader, counting them as replicated, never catches it up
#[test]
fn snapshot_install_keeps_acknowledged_entries() {
    for_each_seed("snapshot_install_keeps_acknowledged_entries", |seed| {
        const N: usize = 3;
        let mut raft = snap_config();
        raft.snapshot_trailing_bytes = 0;
        let mut sim = snap_sim(seed, N, raft);
        for _ in 0..30 {
            let leader = sim.wait_for_leader(elect())?;
            let count = SNAP_ENTRIES / 2 + sim.workload_rng().below(SNAP_ENTRIES as u64) as usize;
            for _ in 0..count {
                let data = command(&mut sim);
                let _ = sim.propose(leader, &data);
            }
            one(&mut sim, N)?;
        }
        Ok(())
    });
}

/// A stalled (disconnected) follower and a proposer as fast as the leader lets it: the leader
/// keeps compacting, so its log stays under `max_log_bytes` and near threshold + trailing +
/// uncommitted bytes (proposals past the uncommitted limit answer Busy); the follower then
/// reconnects and catches up by snapshot
#[test]
fn snapshot_memory_bound() {
    for_each_seed("snapshot_memory_bound", |seed| {
        const N: usize = 3;
        let mut raft = snap_config();
        raft.max_entry_bytes = 4 * PAYLOAD;
        raft.max_uncommitted_bytes = 20 * ENTRY;
        raft.max_log_bytes = 4 * (raft.snapshot_threshold_bytes + raft.max_uncommitted_bytes);
        // Threshold and trailing window, the uncommitted limit, and the no-op and one command
        // by which each limit may be passed.
        let bound = raft.snapshot_threshold_bytes
            + raft.snapshot_trailing_bytes
            + raft.max_uncommitted_bytes
            + 2 * ENTRY;
        let max_log = raft.max_log_bytes;
        let mut sim = snap_sim(seed, N, raft);
        let leader = sim.wait_for_leader(elect())?;
        one(&mut sim, N)?;
        let stalled = after(leader, 1 + sim.fault_rng().below(2), N);
        sim.disconnect(stalled);
        let (mut accepted, mut busy) = (0u64, 0u64);
        let end = sim.now() + ELECTION_TIMEOUT.saturating_mul(10);
        while sim.now() < end {
            for _ in 0..8 {
                let data = command(&mut sim);
                match sim.propose(leader, &data) {
                    Ok(_) => accepted += 1,
                    Err(ProposeError::Busy) => busy += 1,
                    Err(e) => return Err(sim.error(format!("leader {leader} refused: {e:?}"))),
                }
            }
            sim.run_for(Duration::from_micros(HEARTBEAT.as_micros() / 10));
        }
        let peak = sim.peak_log_bytes(leader);
        ensure(&sim, peak <= max_log && peak <= bound, || {
            format!("leader held {peak} bytes of log (bound {bound}, max_log_bytes {max_log})")
        })?;
        let committed = sim.checker().commit_index();
        ensure(&sim, accepted as usize * ENTRY > 10 * max_log, || {
            format!("only {accepted} proposals accepted ({busy} busy): too few to test the bound")
        })?;
        sim.connect(stalled);
        sim.run_until(agree(), "the stalled follower to catch up", |s| {
            s.app(stalled).applied >= committed
        })?;
        ensure(&sim, sim.snapshots_installed(stalled) > 0, || {
            format!("node {stalled} caught up without an InstallSnapshot")
        })?;
        one(&mut sim, N).map(|_| ())
    });
}

/// Snapshots sent one byte per chunk (a dozen chunks or more) over a lossy network: chunks get
/// lost, duplicated and reordered, and every install still completes
#[test]
fn snapshot_chunked() {
    for_each_seed("snapshot_chunked", |seed| {
        const N: usize = 3;
        let mut raft = snap_config();
        raft.snapshot_chunk_bytes = 1;
        let mut sim = snap_sim(seed, N, raft);
        sim.set_network(NetworkConfig::unreliable());
        let leader = sim.wait_for_leader(elect())?;
        one(&mut sim, N)?;
        for round in 0..5 {
            let victim = after(leader, 1 + round % 2, N);
            sim.disconnect(victim);
            for _ in 0..2 * SNAP_ENTRIES {
                one(&mut sim, N - 1)?;
            }
            let target = sim.checker().commit_index();
            let before = sim.snapshots_installed(victim);
            sim.connect(victim);
            sim.run_until(agree(), "the victim to catch up", |s| {
                s.app(victim).applied >= target
            })?;
            ensure(&sim, sim.snapshots_installed(victim) > before, || {
                format!("round {round}: node {victim} caught up without an InstallSnapshot")
            })?;
            let size = sim.durable_snapshot(victim).map_or(0, |m| m.size_bytes);
            ensure(&sim, size >= 8, || {
                format!("round {round}: a snapshot of {size} bytes is too few chunks")
            })?;
        }
        one(&mut sim, N).map(|_| ())
    });
}

/// A follower cut off for less than an election timeout while the leader snapshots several
/// times catches up from the log the leader kept for it (`catch_up_log_bytes`), not from a
/// snapshot; without that room it needs a snapshot
#[test]
fn a_follower_briefly_behind_catches_up_from_the_log() {
    for_each_seed(
        "a_follower_briefly_behind_catches_up_from_the_log",
        |seed| {
            let run = |catch_up: usize| -> Result<(Sim, u64), SimError> {
                let mut raft = snap_config();
                raft.catch_up_log_bytes = catch_up;
                let mut sim = snap_sim(seed, 3, raft);
                one(&mut sim, 3)?;
                let leader = sim.wait_for_leader(elect())?;
                let follower = after(leader, 1, 3);
                sim.set_link(leader, follower, false);
                for _ in 0..3 * SNAP_ENTRIES {
                    let data = command(&mut sim);
                    sim.propose(leader, &data)
                        .map_err(|e| sim.error(format!("propose: {e}")))?;
                }
                sim.run_for(HEARTBEAT.saturating_mul(3));
                sim.set_link(leader, follower, true);
                one(&mut sim, 3)?;
                let installed = sim.snapshots_installed(follower);
                Ok((sim, installed))
            };
            let (sim, installed) = run(100 * ENTRY)?;
            ensure(&sim, installed == 0, || {
                format!("the follower installed {installed} snapshots with the log kept for it")
            })?;
            let (sim, installed) = run(0)?;
            ensure(&sim, installed > 0, || {
                "without room kept, the follower caught up from the log anyway: the scenario tests \
             nothing"
                    .into()
            })
        },
    );
}
