//! Crash loops with real `shale node` processes: `kill -9` of a minority, of the majority and
//! of every node, kills during a snapshot save, a snapshot install and a shard hand-over,
//! over and over while history clients and writers run; then a node whose data directory is
//! wiped rejoins as a new replica through the membership commands. At the end the history
//! must be linearizable, every acknowledged write must read back through every node, and
//! `shale ctl verify` must find every group's replicas identical.
//!
//! `SHALE_CRASH_LOOP_ROUNDS` sets the rounds (default 6: each kind of kill once, as CI runs
//! it); `SHALE_CRASH_LOOP_MINUTES` runs rounds until that many minutes have passed instead.
//! `SHALE_SEED` picks victims and delays; a failure prints it. `SHALE_E2E_KEEP=1` keeps the
//! data directories and logs of a failed run.

#[allow(dead_code)]
mod e2e_support;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use e2e_support::cluster::{Cluster, Shape};
use e2e_support::history::{Clients, check_history};
use e2e_support::writers::{self, Writers};
use e2e_support::{Rng, connect, query};

/// Longest wait for any one step of progress
const PROGRESS: Duration = Duration::from_secs(30);

#[track_caller]
fn ensure(ok: bool, cluster: &Cluster, seed: u64, what: impl FnOnce() -> String) {
    if !ok {
        panic!(
            "{} (replay with SHALE_SEED={seed})\n{}",
            what(),
            cluster.report()
        );
    }
}

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

/// The kinds of kill a round makes, in turn
const KINDS: [&str; 6] = [
    "minority",
    "majority",
    "every node",
    "snapshot save",
    "snapshot install",
    "shard hand-over",
];

struct Run {
    cluster: Cluster,
    clients: Clients,
    writers: Writers,
    rng: Rng,
    seed: u64,
}

impl Run {
    /// Waits until clients and writers both made progress
    fn progress(&mut self, phase: &str) {
        let (ops, acks) = (
            self.clients.ok_count() + 40,
            self.writers.shared.acked_count() + 20,
        );
        let ok = self.clients.wait_ok(ops, PROGRESS) && self.writers.wait_acked(acks, PROGRESS);
        let summary = self.clients.shared.counters.summary();
        ensure(ok, &self.cluster, self.seed, || {
            format!("no progress after {phase}: {summary}")
        });
        self.cluster.note(format!("{phase}: progress ({summary})"));
    }

    fn pause(&mut self, min_ms: u64, max_ms: u64) {
        thread::sleep(Duration::from_millis(
            min_ms + self.rng.below(max_ms - min_ms + 1),
        ));
    }

    fn pick(&mut self, from: &[u64]) -> u64 {
        from[self.rng.below(from.len() as u64) as usize]
    }

    fn leader(&mut self, group: &str) -> u64 {
        let leader = self.cluster.leader_of(group, PROGRESS);
        ensure(leader.is_some(), &self.cluster, self.seed, || {
            format!("no leader of {group}")
        });
        leader.unwrap_or(1)
    }

    /// `SHALE <args>` on node `id` itself, once
    fn on_node(&mut self, id: u64, args: &[&str]) {
        let mut full = vec!["SHALE"];
        full.extend_from_slice(args);
        let answer = connect(self.cluster.resp(id)).and_then(|mut c| query(&mut c, &full));
        self.cluster
            .note(format!("SHALE {} on node {id}: {answer:?}", args.join(" ")));
    }

    fn round(&mut self, round: u64) {
        let kind = KINDS[(round % KINDS.len() as u64) as usize];
        let ids = self.cluster.ids();
        self.cluster.note(format!("round {round}: kill {kind}"));
        match kind {
            "minority" => {
                let victim = self.pick(&ids);
                self.cluster.kill(victim);
                self.pause(200, 1500);
                self.cluster.restart(victim);
            }
            "majority" => {
                let spared = self.pick(&ids);
                let victims: Vec<u64> = ids.iter().copied().filter(|&i| i != spared).collect();
                for &v in &victims {
                    self.cluster.kill(v);
                    self.pause(0, 300);
                }
                self.pause(200, 1500);
                for &v in &victims {
                    self.cluster.restart(v);
                }
            }
            "every node" => {
                for &v in &ids {
                    self.cluster.kill(v);
                }
                self.pause(0, 500);
                for &v in &ids {
                    self.cluster.spawn(v);
                }
                for &v in &ids {
                    self.cluster.wait_ready(v);
                }
            }
            "snapshot save" => {
                let victim = self.leader("g1");
                self.on_node(victim, &["SNAPSHOT", "1"]);
                self.pause(0, 40);
                self.cluster.kill(victim);
                self.cluster.restart(victim);
            }
            "snapshot install" => {
                let victim = self.pick(&ids);
                self.cluster.kill(victim);
                self.progress("a replica down");
                // The others compact their logs: the victim catches up from a snapshot.
                for &other in ids.iter().filter(|&&i| i != victim) {
                    self.on_node(other, &["SNAPSHOT", "1"]);
                    self.on_node(other, &["SNAPSHOT", "2"]);
                }
                self.cluster.restart(victim);
                self.pause(50, 600);
                self.cluster.kill(victim);
                self.cluster.restart(victim);
            }
            _ => {
                // Move a shard between the groups, and kill a leader of one side mid-way.
                let shard = self.rng.below(u64::from(self.cluster.shape.shards));
                let to = 1 + self.rng.below(2);
                let answer = self.cluster.admin(
                    &["MOVE", &shard.to_string(), &to.to_string()],
                    Duration::from_secs(30),
                );
                let ok = matches!(answer, Ok(redis::Value::Int(_)))
                    || matches!(&answer, Err(e) if e.contains("refused"));
                ensure(ok, &self.cluster, self.seed, || {
                    format!("SHALE MOVE {shard} {to}: {answer:?}")
                });
                self.pause(0, 400);
                let group = if self.rng.below(2) == 0 { "g1" } else { "g2" };
                let victim = self.leader(group);
                self.cluster.kill(victim);
                self.pause(100, 1000);
                self.cluster.restart(victim);
            }
        }
        self.progress(&format!("round {round} ({kind})"));
    }

    /// Kills `victim`, removes it from every group, wipes its data directory, starts it
    /// empty and adds it back to every group, as a learner and then as a voter
    fn wipe_and_rejoin(&mut self, victim: u64) {
        self.cluster.kill(victim);
        for gid in ["0", "1", "2"] {
            let answer = self.on_leader(gid, "REMOVE-REPLICA", victim);
            ensure(answer.is_ok(), &self.cluster, self.seed, || {
                format!("REMOVE-REPLICA {gid} {victim}: {answer:?}")
            });
        }
        self.progress("the victim removed from every group");
        self.cluster.wipe(victim);
        self.cluster.restart(victim);
        for gid in ["0", "1", "2"] {
            let deadline = Instant::now() + PROGRESS * 2;
            loop {
                // The first call adds a learner; later ones promote it once it caught up.
                let answer = self.on_leader(gid, "ADD-REPLICA", victim);
                let voters = |done: &str| {
                    let list = done.split("voters [").nth(1)?.split(']').next()?;
                    Some(list.split(", ").any(|v| v == victim.to_string()))
                };
                if matches!(&answer, Ok(done) if voters(done) == Some(true)) {
                    break;
                }
                ensure(Instant::now() < deadline, &self.cluster, self.seed, || {
                    format!("node {victim} never became a voter of group {gid}: {answer:?}")
                });
                thread::sleep(Duration::from_millis(300));
            }
        }
        self.progress("the wiped node rejoined every group");
    }

    /// `SHALE <sub> <gid> <node>` on whichever node leads the group, retried until one
    /// answers other than with an error naming another leader
    fn on_leader(&mut self, gid: &str, sub: &str, node: u64) -> Result<String, String> {
        let deadline = Instant::now() + PROGRESS;
        let mut last = String::new();
        while Instant::now() < deadline {
            for id in self.cluster.live() {
                let answer = connect(self.cluster.resp(id))
                    .and_then(|mut c| query(&mut c, &["SHALE", sub, gid, &node.to_string()]));
                match answer {
                    Ok(redis::Value::SimpleString(done)) => {
                        self.cluster
                            .note(format!("SHALE {sub} {gid} {node} on node {id}: {done}"));
                        return Ok(done);
                    }
                    Ok(other) => last = format!("node {id}: {other:?}"),
                    Err(e) => last = format!("node {id}: {e}"),
                }
            }
            thread::sleep(Duration::from_millis(200));
        }
        Err(last)
    }
}

#[test]
fn crash_loops_keep_histories_linearizable_and_replicas_identical() {
    let seed = env_number("SHALE_SEED").unwrap_or(0x00c0_ffee_c0de);
    let minutes = env_number("SHALE_CRASH_LOOP_MINUTES");
    let rounds = env_number("SHALE_CRASH_LOOP_ROUNDS").unwrap_or(KINDS.len() as u64);
    let started = Instant::now();
    let cluster = Cluster::start(Shape::small());
    let addrs = cluster.resp_addrs();
    let keys: Vec<String> = (0..6).map(|i| format!("loop{i}")).collect();
    let mut run = Run {
        clients: Clients::start(4, &addrs, &keys),
        writers: Writers::start(2, &addrs, "crash-"),
        cluster,
        rng: Rng::new(seed),
        seed,
    };
    run.progress("warm-up");
    let mut round = 0;
    loop {
        let more = match minutes {
            Some(m) => started.elapsed() < Duration::from_secs(m * 60),
            None => round < rounds,
        };
        if !more {
            break;
        }
        run.round(round);
        round += 1;
    }
    let victim = 1 + run.rng.below(3);
    run.wipe_and_rejoin(victim);

    let Run {
        mut cluster,
        clients,
        writers,
        ..
    } = run;
    let (history, summary, odd) = clients.stop();
    ensure(odd.is_empty(), &cluster, seed, || {
        format!("odd replies: {odd:?}")
    });
    let verdict = check_history(&history, &summary);
    ensure(verdict.is_ok(), &cluster, seed, || {
        verdict.clone().unwrap_err()
    });
    let shared = writers.stop();
    let acked = shared.acked.lock().unwrap().clone();
    let bad_reads = shared.bad_reads.lock().unwrap().clone();
    ensure(bad_reads.is_empty(), &cluster, seed, || {
        format!("reads of acknowledged keys returned something else: {bad_reads:?}")
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in cluster.ids() {
        let missing = writers::verify(cluster.resp(id), &acked, deadline);
        ensure(
            matches!(&missing, Ok(m) if m.is_empty()),
            &cluster,
            seed,
            || format!("node {id}: acknowledged writes lost or changed: {missing:?}"),
        );
    }
    // Every replica of every group, compared shard by shard at one applied index.
    let mut verify = Command::new(env!("CARGO_BIN_EXE_shale"));
    verify.arg("ctl");
    for addr in cluster.resp_addrs() {
        verify.args(["--addr", &addr.to_string()]);
    }
    verify.arg("verify");
    let out = verify.output().expect("run shale ctl verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    cluster.note(format!("shale ctl verify: {}\n{text}", out.status));
    ensure(
        out.status.success() && text.matches("identical").count() == 3,
        &cluster,
        seed,
        || format!("shale ctl verify: {}\n{text}", out.status),
    );
    eprintln!(
        "crash loop: {round} rounds and a wiped node; {} acknowledged writes; {}; took {:?}",
        acked.len(),
        verdict.unwrap_or_default(),
        started.elapsed()
    );
}
