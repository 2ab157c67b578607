//! End-to-end tests: real `shale node` processes on loopback, real Redis clients, crashes,
//! configuration changes, restarts and a fault-injecting proxy on every peer link
//!
//! Each test starts its own 3-node cluster in a temporary directory, on ports the OS chose,
//! and kills every process it started when it ends (pass or fail). The tests run one at a
//! time (they share two cores with everything else, and elections take 1-2 s). A failure
//! prints what happened (events with times, which node was killed or cut off), the clients'
//! counts, each node's `SHALE STATUS` and the tail of its stderr. Set `SHALE_E2E_KEEP=1` to
//! keep the data directories and logs of a failed test.

mod e2e_support;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use e2e_support::cluster::{Cluster, Shape};
use e2e_support::history::{Clients, check_history};
use e2e_support::proxy::Mode;
use e2e_support::writers::{self, Writers};
use shale_core::shard::key_shard;

/// Longest wait for any one step of progress (an election takes 1-2 s, more on a loaded
/// machine)
const PROGRESS: Duration = Duration::from_secs(20);

/// The tests run one at a time
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Panics with `what` and everything the cluster knows, unless `ok`
#[track_caller]
fn ensure(ok: bool, cluster: &Cluster, what: impl FnOnce() -> String) {
    if !ok {
        panic!("{}\n{}", what(), cluster.report());
    }
}

/// `count` keys of which `in_g1` live in replica group 1's shards and the rest elsewhere,
/// so a fault on group 1 hits some keys and not others
fn keys_for(cluster: &Cluster, count: usize, in_g1: usize) -> Vec<String> {
    let g1 = cluster.shards_of(cluster.ids()[0], 1);
    ensure(!g1.is_empty(), cluster, || {
        "group 1 owns no shards in the first configuration".into()
    });
    let (mut inside, mut outside) = (Vec::new(), Vec::new());
    for n in 0.. {
        let key = format!("lin{n}");
        if g1.contains(&key_shard(key.as_bytes(), cluster.shape.shards)) {
            if inside.len() < in_g1 {
                inside.push(key);
            }
        } else if outside.len() < count - in_g1 {
            outside.push(key);
        }
        if inside.len() + outside.len() == count {
            break;
        }
    }
    inside.extend(outside);
    inside
}

/// Waits until the history clients completed `more` operations (a failure with the
/// cluster's report if they do not within [`PROGRESS`])
fn history_progress(cluster: &mut Cluster, clients: &Clients, more: u64, phase: &str) {
    let want = clients.ok_count() + more;
    let ok = clients.wait_ok(want, PROGRESS);
    let summary = clients.shared.counters.summary();
    ensure(ok, cluster, || {
        format!("clients made no progress ({phase}): wanted {want} completions; {summary}")
    });
    cluster.note(format!("{phase}: {summary}"));
}

/// The node leading replica group 1, or a failure with the cluster's report
fn g1_leader(cluster: &Cluster) -> u64 {
    let leader = cluster.leader_of("g1", PROGRESS);
    ensure(leader.is_some(), cluster, || {
        format!("no leader of g1 within {PROGRESS:?}")
    });
    leader.unwrap()
}

/// Checks every acknowledged write is readable, with its value, through every node
fn verify_all(cluster: &Cluster, acked: &BTreeMap<String, String>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(40);
    for id in cluster.live() {
        let started = Instant::now();
        let result = writers::verify(cluster.resp(id), acked, deadline);
        ensure(matches!(&result, Ok(m) if m.is_empty()), cluster, || {
            let detail = match &result {
                Ok(missing) => format!(
                    "{} of {} acknowledged writes lost or changed ({what}), first ones:\n  {}",
                    missing.len(),
                    acked.len(),
                    missing[..missing.len().min(20)].join("\n  ")
                ),
                Err(e) => e.clone(),
            };
            format!("reading back through node {id}: {detail}")
        });
        eprintln!(
            "e2e: node {id}: all {} acknowledged writes read back in {:?}",
            acked.len(),
            started.elapsed()
        );
    }
}

/// Runs a `SHALE` admin command that must take effect; a retry of one that was applied but
/// answered TRYAGAIN may be refused as a no-op, which is fine once the configuration shows it
fn admin(cluster: &mut Cluster, args: &[&str]) {
    let result = cluster.admin(args, Duration::from_secs(30));
    let ok = match &result {
        Ok(redis::Value::Int(_)) => true,
        Err(e) => e.contains("refused"),
        Ok(_) => false,
    };
    ensure(ok, cluster, || {
        format!("SHALE {}: {result:?}", args.join(" "))
    });
}

/// Waits until node `id`'s configuration gives group `gid` shards (`want_shards`) or none
fn wait_config(cluster: &Cluster, gid: u64, want_shards: bool) {
    let deadline = Instant::now() + PROGRESS;
    loop {
        let ok = cluster
            .live()
            .iter()
            .all(|&id| cluster.shards_of(id, gid).is_empty() != want_shards);
        if ok {
            return;
        }
        ensure(Instant::now() < deadline, cluster, || {
            format!(
                "group {gid} never {} shards",
                if want_shards { "got" } else { "lost" }
            )
        });
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn acknowledged_writes_survive_leader_kill_group_changes_and_full_restart() {
    let _serial = serial();
    let started = Instant::now();
    let mut cluster = Cluster::start(Shape {
        nodes: 3,
        groups: 3,
        initial_groups: 2,
        shards: 8,
        proxied: false,
        lease_reads: false,
    });
    let first = g1_leader(&cluster);
    cluster.note(format!("g1 leader at start: node {first}"));
    let writers = Writers::start(4, &cluster.resp_addrs(), "");
    // Each phase lasts at least a second and needs `more` new acknowledgements.
    let progress = |cluster: &mut Cluster, writers: &Writers, more: usize, phase: &str| {
        let want = writers.shared.acked_count() + more;
        let phase_start = Instant::now();
        let ok = writers.wait_acked(want, PROGRESS);
        thread::sleep(Duration::from_secs(1).saturating_sub(phase_start.elapsed()));
        let summary = writers.shared.counters.summary();
        ensure(ok, cluster, || {
            format!("writers made no progress ({phase}): wanted {want} acks; {summary}")
        });
        cluster.note(format!(
            "{phase}: {} acknowledged ({summary})",
            writers.shared.acked_count()
        ));
    };
    progress(&mut cluster, &writers, 50, "warm-up");

    let victim = g1_leader(&cluster);
    cluster.kill(victim);
    progress(&mut cluster, &writers, 50, "g1 leader killed");
    cluster.restart(victim);
    progress(&mut cluster, &writers, 30, "killed leader restarted");

    admin(&mut cluster, &["JOIN", "3", "1,2,3"]);
    wait_config(&cluster, 3, true);
    progress(&mut cluster, &writers, 50, "group 3 joined");
    admin(&mut cluster, &["LEAVE", "2"]);
    wait_config(&cluster, 2, false);
    progress(&mut cluster, &writers, 50, "group 2 left");

    let shared = writers.stop();
    let acked = shared.acked.lock().unwrap().clone();
    let bad_reads = shared.bad_reads.lock().unwrap().clone();
    cluster.note(format!(
        "writers stopped: {} acknowledged; {}",
        acked.len(),
        shared.counters.summary()
    ));
    ensure(bad_reads.is_empty(), &cluster, || {
        format!(
            "{} reads of acknowledged keys returned something else:\n  {}",
            bad_reads.len(),
            bad_reads.join("\n  ")
        )
    });
    verify_all(&cluster, &acked, "before the restart");

    let mut unclean = Vec::new();
    for id in cluster.ids() {
        if !cluster.interrupt(id) {
            unclean.push(id);
        }
    }
    for id in cluster.ids() {
        cluster.spawn(id);
    }
    for id in cluster.ids() {
        cluster.wait_ready(id);
    }
    verify_all(&cluster, &acked, "after a full restart");
    ensure(unclean.is_empty(), &cluster, || {
        format!("nodes {unclean:?} did not exit cleanly on SIGINT")
    });
    eprintln!(
        "e2e: {} acknowledged writes survived; test took {:?}",
        acked.len(),
        started.elapsed()
    );
}

#[test]
fn histories_are_linearizable_under_a_leader_kill() {
    let _serial = serial();
    let started = Instant::now();
    let mut cluster = Cluster::start(Shape::small());
    let leader = g1_leader(&cluster);
    let keys = keys_for(&cluster, 5, 3);
    cluster.note(format!("g1 leader node {leader}; keys {keys:?}"));
    let clients = Clients::start(5, &cluster.resp_addrs(), &keys);
    history_progress(&mut cluster, &clients, 150, "warm-up");
    let victim = g1_leader(&cluster);
    cluster.kill(victim);
    history_progress(&mut cluster, &clients, 150, "g1 leader killed");
    cluster.restart(victim);
    history_progress(&mut cluster, &clients, 150, "killed leader restarted");
    let (history, summary, odd) = clients.stop();
    ensure(odd.is_empty(), &cluster, || format!("odd replies: {odd:?}"));
    let verdict = check_history(&history, &summary);
    ensure(verdict.is_ok(), &cluster, || verdict.clone().unwrap_err());
    eprintln!(
        "e2e: linearizable: {}; test took {:?}",
        verdict.unwrap(),
        started.elapsed()
    );
}

#[test]
fn partitioned_leader_loses_nothing_acknowledged_and_reads_stay_linearizable() {
    let _serial = serial();
    let started = Instant::now();
    let mut cluster = Cluster::start(Shape {
        proxied: true,
        ..Shape::small()
    });
    g1_leader(&cluster);
    let keys = keys_for(&cluster, 5, 3);
    let clients = Clients::start(4, &cluster.resp_addrs(), &keys);
    let writers = Writers::start(2, &cluster.resp_addrs(), "p");
    let progress = |cluster: &mut Cluster, clients: &Clients, writers: &Writers, phase: &str| {
        let (want_ops, want_acks) = (clients.ok_count() + 60, writers.shared.acked_count() + 20);
        let ok = clients.wait_ok(want_ops, PROGRESS) && writers.wait_acked(want_acks, PROGRESS);
        let (c, w) = (
            clients.shared.counters.summary(),
            writers.shared.counters.summary(),
        );
        ensure(ok, cluster, || {
            format!("no progress ({phase}): clients {c}; writers {w}")
        });
        cluster.note(format!("{phase}: clients {c}; writers {w}"));
    };
    progress(&mut cluster, &clients, &writers, "warm-up");

    // Round 1: the leader of g1 is cut off from both other nodes, then healed.
    let victim = g1_leader(&cluster);
    cluster.isolate(victim, Mode::Cut, 0);
    progress(&mut cluster, &clients, &writers, "g1 leader isolated");
    thread::sleep(Duration::from_secs(2));
    cluster.isolate(victim, Mode::Pass, 0);
    progress(&mut cluster, &clients, &writers, "healed after cut");
    let now_leading = g1_leader(&cluster);
    cluster.note(format!("g1 leader after the cut: node {now_leading}"));

    // Round 2: every link of the (new) leader is 60 ms late each way.
    let slow = g1_leader(&cluster);
    cluster.isolate(slow, Mode::Delay, 60);
    progress(&mut cluster, &clients, &writers, "g1 leader delayed");
    thread::sleep(Duration::from_secs(2));
    cluster.isolate(slow, Mode::Pass, 0);
    progress(&mut cluster, &clients, &writers, "healed after delay");

    // Round 3: the leader's links black-hole every byte (no connection closes), then heal.
    let silent = g1_leader(&cluster);
    cluster.isolate(silent, Mode::Drop, 0);
    progress(&mut cluster, &clients, &writers, "g1 leader black-holed");
    thread::sleep(Duration::from_secs(2));
    cluster.isolate(silent, Mode::Pass, 0);
    progress(&mut cluster, &clients, &writers, "healed after black hole");
    let now_leading = g1_leader(&cluster);
    cluster.note(format!(
        "g1 leader after the black hole: node {now_leading}"
    ));

    let (history, summary, odd) = clients.stop();
    let shared = writers.stop();
    let acked = shared.acked.lock().unwrap().clone();
    let bad_reads = shared.bad_reads.lock().unwrap().clone();
    cluster.note(format!(
        "stopped: history {summary}; writers {} acknowledged, {}",
        acked.len(),
        shared.counters.summary()
    ));
    ensure(odd.is_empty(), &cluster, || format!("odd replies: {odd:?}"));
    ensure(bad_reads.is_empty(), &cluster, || {
        format!(
            "reads of acknowledged keys went wrong:\n  {}",
            bad_reads.join("\n  ")
        )
    });
    let verdict = check_history(&history, &summary);
    ensure(verdict.is_ok(), &cluster, || verdict.clone().unwrap_err());
    verify_all(&cluster, &acked, "after the partitions");
    eprintln!(
        "e2e: linearizable: {}; {} acknowledged writes kept; test took {:?}",
        verdict.unwrap(),
        acked.len(),
        started.elapsed()
    );
}

#[test]
fn lease_reads_stay_linearizable_when_the_leader_is_paused() {
    let _serial = serial();
    let started = Instant::now();
    let mut cluster = Cluster::start(Shape {
        lease_reads: true,
        ..Shape::small()
    });
    let keys = keys_for(&cluster, 5, 4);
    let clients = Clients::start(6, &cluster.resp_addrs(), &keys);
    history_progress(&mut cluster, &clients, 150, "warm-up");
    for round in 0..2 {
        // A leader stopped mid-step resumes with whatever time it read before the stop: its
        // lease must not let it answer reads the new leader's writes have made stale.
        let victim = g1_leader(&cluster);
        cluster.pause(victim);
        history_progress(
            &mut cluster,
            &clients,
            150,
            &format!("round {round}: g1 leader paused"),
        );
        cluster.resume(victim);
        history_progress(
            &mut cluster,
            &clients,
            150,
            &format!("round {round}: leader resumed"),
        );
    }
    let (history, summary, odd) = clients.stop();
    ensure(odd.is_empty(), &cluster, || format!("odd replies: {odd:?}"));
    let verdict = check_history(&history, &summary);
    ensure(verdict.is_ok(), &cluster, || verdict.clone().unwrap_err());
    eprintln!(
        "e2e: lease reads through paused leaders linearizable: {}; test took {:?}",
        verdict.unwrap(),
        started.elapsed()
    );
}
