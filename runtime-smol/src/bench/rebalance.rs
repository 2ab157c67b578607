//! `shale bench --rebalance`: shards moving under load, on a real dataset
//!
//! [`run_rebalance`] loads a running cluster with [`RebalanceConfig::keys`] keys (`key:<n>`,
//! pipelined `SET`s), measures a mixed load on its own ([`BenchConfig::duration`]), then runs
//! the same load while it has a group leave, join again, and makes
//! [`RebalanceConfig::moves`] random shard moves, waiting after each change until every
//! group on every node has applied the newest configuration and no shard is moving. It
//! reports how long each step took, throughput and latency before and during the moves,
//! the elections seen (the growth of every group's highest term), and, given the server's
//! process id, its resident memory against the data it holds.
//!
//! It assumes what `shale up` builds: every node named by the targets runs in the one process
//! (for the memory figure) and hosts a replica of every group.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::call::call;
use super::client::Shared;
use super::reply::{Reply, ReplyReader};
use super::workload::{SplitMix64, encode};
use super::{BenchConfig, BenchReport, run_with};

/// Longest a loading connection waits for a reply
const LOAD_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// How often the settling of a change is checked
const SETTLE_POLL: Duration = Duration::from_millis(100);

/// What a rebalance run does
#[derive(Clone, Debug)]
pub struct RebalanceConfig {
    /// The mixed load (its targets are also where admin commands and status queries go;
    /// its `keyspace` is set to `keys`)
    pub bench: BenchConfig,
    /// Keys loaded before measuring (`key:0` to `key:<keys - 1>`, values of
    /// `bench.value_bytes`)
    pub keys: u64,
    /// Connections that load the keys
    pub load_clients: usize,
    /// `SET`s each loading connection keeps in flight
    pub load_pipeline: usize,
    /// Skip loading (the keys are already there)
    pub skip_load: bool,
    /// The group that leaves and joins again
    pub group: u64,
    /// Random shard moves after the rejoin
    pub moves: usize,
    /// Longest wait for one change to settle
    pub settle_timeout: Duration,
    /// The server's process id, to read its resident memory from `/proc`
    pub pid: Option<u32>,
}

impl RebalanceConfig {
    /// 2 million keys of 100 bytes, 16 loading connections of 64 `SET`s in flight, group 2
    /// leaving and rejoining, ten moves, ten minutes for a change to settle, and the mixed load
    /// of `bench` (half reads, 50 clients by default)
    pub fn new(mut bench: BenchConfig) -> Self {
        bench.value_bytes = 100;
        RebalanceConfig {
            bench,
            keys: 2_000_000,
            load_clients: 16,
            load_pipeline: 64,
            skip_load: false,
            group: 2,
            moves: 10,
            settle_timeout: Duration::from_secs(600),
            pid: None,
        }
    }
}

/// What a rebalance run measured
#[derive(Clone, Debug)]
pub struct RebalanceReport {
    /// Keys loaded and how long loading took (`None`: skipped)
    pub load: Option<(u64, Duration)>,
    /// Each change and how long it took to settle
    pub steps: Vec<(String, Duration)>,
    /// The mixed load alone
    pub before: BenchReport,
    /// The mixed load while shards moved
    pub during: BenchReport,
    /// Term growth per group (the controller is group 0) over both measured phases
    pub elections: BTreeMap<u64, u64>,
    /// Bytes of keys and values loaded
    pub logical_bytes: u64,
    /// Replicas of the data in the server's process (nodes answering)
    pub replicas: u64,
    /// The server's resident and peak resident memory at the end, in bytes
    pub memory: Option<(u64, u64)>,
}

impl RebalanceReport {
    /// Elections over every group
    pub fn total_elections(&self) -> u64 {
        self.elections.values().sum()
    }

    /// Resident memory per byte of data the process holds (all its replicas)
    pub fn memory_ratio(&self) -> Option<f64> {
        let held = self.logical_bytes.saturating_mul(self.replicas);
        self.memory
            .filter(|_| held > 0)
            .map(|(rss, _)| rss as f64 / held as f64)
    }
}

/// `PASS` or `FAIL`
fn verdict(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

impl fmt::Display for RebalanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((keys, took)) = self.load {
            let rate = keys as f64 / took.as_secs_f64().max(1e-9);
            writeln!(
                f,
                "load: {keys} keys in {:.1} s ({rate:.0} keys/s)",
                took.as_secs_f64()
            )?;
        }
        for (step, took) in &self.steps {
            writeln!(f, "step {step}: settled in {:.2} s", took.as_secs_f64())?;
        }
        writeln!(f, "--- before the moves ---\n{}", self.before)?;
        writeln!(f, "--- during the moves ---\n{}", self.during)?;
        writeln!(f, "elections (term growth per group): {:?}", self.elections)?;
        let mb = |b: u64| b as f64 / (1 << 20) as f64;
        if let Some((rss, peak)) = self.memory {
            writeln!(
                f,
                "memory: resident {:.0} MiB (peak {:.0} MiB) for {:.0} MiB of data x {} replicas",
                mb(rss),
                mb(peak),
                mb(self.logical_bytes),
                self.replicas
            )?;
        }
        let before_p99 = self.before.latency.p99_us.max(1);
        let during = &self.during.latency;
        writeln!(
            f,
            "target zero elections: {} ({})",
            verdict(self.total_elections() == 0),
            self.total_elections()
        )?;
        writeln!(
            f,
            "target no request over 1 s: {} (max {:.1} ms during, {:.1} ms before)",
            verdict(during.max_us <= 1_000_000 && self.before.latency.max_us <= 1_000_000),
            during.max_us as f64 / 1e3,
            self.before.latency.max_us as f64 / 1e3
        )?;
        writeln!(
            f,
            "target p99 during at most 5x before: {} ({:.2} ms against {:.2} ms: {:.1}x)",
            verdict(during.p99_us <= 5 * before_p99),
            during.p99_us as f64 / 1e3,
            before_p99 as f64 / 1e3,
            during.p99_us as f64 / before_p99 as f64
        )?;
        if let Some(ratio) = self.memory_ratio() {
            writeln!(
                f,
                "target resident memory at most 3x the data held: {} ({ratio:.2}x)",
                verdict(ratio <= 3.0)
            )?;
        }
        Ok(())
    }
}

/// What one node says of its groups (`SHALE GROUPS`)
#[derive(Clone, Debug, Default)]
struct NodeGroups {
    node: u64,
    /// The newest configuration its controller replica applied (-1: unknown)
    latest: i64,
    /// (gid, term, configuration applied, shards moving)
    groups: Vec<(u64, u64, i64, u64)>,
    owners: Vec<u64>,
}

fn int(reply: &Reply) -> Option<i64> {
    match reply {
        Reply::Integer(n) => Some(*n),
        _ => None,
    }
}

fn parse_groups(reply: &Reply) -> Option<NodeGroups> {
    let Reply::Array(top) = reply else {
        return None;
    };
    let [node, latest, Reply::Array(groups), Reply::Array(owners)] = top.as_slice() else {
        return None;
    };
    let mut out = NodeGroups {
        node: u64::try_from(int(node)?).ok()?,
        latest: int(latest)?,
        ..NodeGroups::default()
    };
    for g in groups {
        let Reply::Array(fields) = g else {
            return None;
        };
        let [gid, term, _role, config, moving, _keys] = fields.as_slice() else {
            return None;
        };
        out.groups.push((
            u64::try_from(int(gid)?).ok()?,
            u64::try_from(int(term)?).ok()?,
            int(config)?,
            u64::try_from(int(moving)?).ok()?,
        ));
    }
    for o in owners {
        out.owners.push(u64::try_from(int(o)?).ok()?);
    }
    Some(out)
}

/// Every target's groups (targets that do not answer are left out)
fn survey(config: &RebalanceConfig) -> Vec<NodeGroups> {
    let password = config.bench.password.as_deref();
    config
        .bench
        .targets
        .iter()
        .filter_map(|&addr| call(addr, password, &["SHALE", "GROUPS"]).ok())
        .filter_map(|reply| parse_groups(&reply))
        .collect()
}

/// Whether every replica group on every node applied the newest configuration, and nothing
/// moves
fn settled(nodes: &[NodeGroups]) -> bool {
    let latest = nodes.iter().map(|n| n.latest).max().unwrap_or(-1);
    latest > 0
        && nodes.iter().all(|n| {
            n.groups
                .iter()
                .filter(|g| g.0 != 0)
                .all(|&(_, _, config, moving)| config == latest && moving == 0)
        })
}

/// The highest term of each group over `nodes`
fn terms(nodes: &[NodeGroups]) -> BTreeMap<u64, u64> {
    let mut out = BTreeMap::new();
    for n in nodes {
        for &(gid, term, _, _) in &n.groups {
            let t = out.entry(gid).or_insert(0);
            *t = (*t).max(term);
        }
    }
    out
}

/// Waits until the cluster settles; how long that took
fn wait_settled(config: &RebalanceConfig, what: &str) -> Result<Duration, String> {
    let started = Instant::now();
    loop {
        if settled(&survey(config)) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > config.settle_timeout {
            return Err(format!(
                "{what}: the cluster did not settle within {:?}",
                config.settle_timeout
            ));
        }
        std::thread::sleep(SETTLE_POLL);
    }
}

/// Sends a `SHALE` command to the first target that takes it
fn admin(config: &RebalanceConfig, args: &[&str]) -> Result<(), String> {
    let password = config.bench.password.as_deref();
    let deadline = Instant::now() + config.settle_timeout;
    loop {
        let mut last = String::from("no target");
        for &addr in &config.bench.targets {
            match call(addr, password, args) {
                Ok(Reply::Integer(_)) => return Ok(()),
                Ok(Reply::Error(e)) => last = String::from_utf8_lossy(&e).into_owned(),
                Ok(other) => last = other.describe(),
                Err(e) => last = e,
            }
        }
        if Instant::now() >= deadline || last.starts_with("ERR refused") {
            return Err(format!("{}: {last}", args.join(" ")));
        }
        std::thread::sleep(SETTLE_POLL);
    }
}

/// Loads `key:i` for every `i` with `index + k * clients`, `pipeline` `SET`s in flight
fn load_part(
    addr: SocketAddr,
    password: Option<&str>,
    index: u64,
    config: &RebalanceConfig,
) -> Result<(), String> {
    let broken = |e: std::io::Error| format!("loading through {addr}: {e}");
    let mut stream = TcpStream::connect(addr).map_err(broken)?;
    stream.set_nodelay(true).map_err(broken)?;
    stream
        .set_read_timeout(Some(LOAD_REPLY_TIMEOUT))
        .map_err(broken)?;
    let mut reader = ReplyReader::new();
    let value = vec![b'v'; config.bench.value_bytes];
    let mut out = Vec::new();
    let mut expected_ok = 0usize;
    if let Some(p) = password {
        encode(&mut out, &[b"AUTH", p.as_bytes()]);
        expected_ok += 1;
    }
    let step = config.load_clients as u64;
    let mut next = index;
    while next < config.keys || expected_ok > 0 {
        while next < config.keys && expected_ok < config.load_pipeline {
            let key = format!("key:{next}");
            encode(&mut out, &[b"SET", key.as_bytes(), &value]);
            expected_ok += 1;
            next += step;
        }
        stream.write_all(&out).map_err(broken)?;
        out.clear();
        while expected_ok > 0 {
            match reader.next_reply() {
                Ok(Some(Reply::Simple(_))) => expected_ok -= 1,
                Ok(Some(other)) => {
                    return Err(format!("loading through {addr}: {}", other.describe()));
                }
                Ok(None) => {
                    if reader.fill_from(&mut stream).map_err(broken)? == 0 {
                        return Err(format!("{addr} closed the connection while loading"));
                    }
                }
                Err(e) => return Err(format!("loading through {addr}: {e}")),
            }
        }
    }
    Ok(())
}

/// Loads every key through `load_clients` connections; how long it took
fn load(config: &RebalanceConfig) -> Result<Duration, String> {
    let started = Instant::now();
    let password = config.bench.password.clone();
    let handles: Vec<_> = (0..config.load_clients)
        .map(|i| {
            let addr = config.bench.target_of(i);
            let (config, password) = (config.clone(), password.clone());
            std::thread::spawn(move || load_part(addr, password.as_deref(), i as u64, &config))
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| "a loading thread panicked".to_owned())??;
    }
    Ok(started.elapsed())
}

/// The resident and peak resident memory of process `pid`, in bytes
fn memory_of(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    };
    Some((kib("VmRSS:")? * 1024, kib("VmHWM:")? * 1024))
}

/// Runs the rebalance benchmark (see the module docs)
pub fn run_rebalance(config: &RebalanceConfig) -> Result<RebalanceReport, String> {
    let mut config = config.clone();
    config.bench.keyspace = config.keys.max(1);
    config.bench.progress = false;
    config.bench.validate()?;
    if config.load_clients == 0 || config.load_pipeline == 0 {
        return Err("loading needs at least one connection and one request in flight".into());
    }
    wait_settled(&config, "before loading")?;
    let load_time = if config.skip_load {
        None
    } else {
        Some((config.keys, load(&config)?))
    };
    let start = survey(&config);
    let nodes: Vec<String> = start.iter().map(|n| n.node.to_string()).collect();
    let replicas = nodes.len() as u64;
    let terms_before = terms(&start);
    let before = super::run(&config.bench).map_err(|e| e.to_string())?;

    // The same load again, this time until the changes are done.
    let shared = Arc::new(Shared::default());
    let mut during_config = config.bench.clone();
    during_config.duration = Duration::from_secs(365 * 24 * 3600);
    let load_shared = Arc::clone(&shared);
    let during = std::thread::spawn(move || run_with(&during_config, load_shared));
    std::thread::sleep(config.bench.warmup);
    let steps = changes(&config, &nodes);
    shared.stop.store(true, Ordering::Relaxed);
    let during = during
        .join()
        .map_err(|_| "the load thread panicked".to_owned())?
        .map_err(|e| e.to_string())?;
    let steps = steps?;
    let terms_after = terms(&survey(&config));
    let elections = terms_after
        .iter()
        .map(|(gid, after)| {
            let before = terms_before.get(gid).copied().unwrap_or(*after);
            (*gid, after.saturating_sub(before))
        })
        .collect();
    let key_bytes = |n: u64| format!("key:{n}").len() as u64;
    let logical_bytes = (0..config.keys)
        .map(|n| key_bytes(n) + config.bench.value_bytes as u64)
        .sum();
    Ok(RebalanceReport {
        load: load_time,
        steps,
        before,
        during,
        elections,
        logical_bytes,
        replicas,
        memory: config.pid.and_then(memory_of),
    })
}

/// The leave, the join and the moves, each waited out
fn changes(config: &RebalanceConfig, nodes: &[String]) -> Result<Vec<(String, Duration)>, String> {
    let mut steps = Vec::new();
    let gid = config.group.to_string();
    let step = |steps: &mut Vec<(String, Duration)>, name: String, args: &[&str]| {
        let started = Instant::now();
        admin(config, args)?;
        wait_settled(config, &name)?;
        steps.push((name, started.elapsed()));
        Ok::<(), String>(())
    };
    step(
        &mut steps,
        format!("leave {gid}"),
        &["SHALE", "LEAVE", &gid],
    )?;
    let members = nodes.join(",");
    step(
        &mut steps,
        format!("join {gid}"),
        &["SHALE", "JOIN", &gid, &members],
    )?;
    let mut rng = SplitMix64::new(config.bench.seed ^ 0x5EED);
    for _ in 0..config.moves {
        let owners = survey(config)
            .into_iter()
            .max_by_key(|n| n.latest)
            .map(|n| n.owners)
            .unwrap_or_default();
        let mut groups: Vec<u64> = owners.iter().copied().filter(|&g| g != 0).collect();
        groups.sort_unstable();
        groups.dedup();
        if owners.is_empty() || groups.len() < 2 {
            return Err("fewer than two groups own shards: nothing to move".into());
        }
        let shard = rng.below(owners.len() as u64) as usize;
        let others: Vec<u64> = groups
            .iter()
            .copied()
            .filter(|&g| g != owners[shard])
            .collect();
        let to = others[rng.below(others.len() as u64) as usize];
        let (s, g) = (shard.to_string(), to.to_string());
        step(
            &mut steps,
            format!("move shard {shard} to {to}"),
            &["SHALE", "MOVE", &s, &g],
        )?;
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups_reply(latest: i64, groups: &[(i64, i64, i64, i64)]) -> Reply {
        let gs = groups
            .iter()
            .map(|&(gid, term, config, moving)| {
                Reply::Array(vec![
                    Reply::Integer(gid),
                    Reply::Integer(term),
                    Reply::Bulk(b"leader".to_vec()),
                    Reply::Integer(config),
                    Reply::Integer(moving),
                    Reply::Integer(0),
                ])
            })
            .collect();
        Reply::Array(vec![
            Reply::Integer(1),
            Reply::Integer(latest),
            Reply::Array(gs),
            Reply::Array(vec![Reply::Integer(1), Reply::Integer(2)]),
        ])
    }

    #[test]
    fn settled_means_every_group_at_the_newest_configuration_with_nothing_moving() {
        let a = parse_groups(&groups_reply(
            3,
            &[(0, 2, 0, 0), (1, 2, 3, 0), (2, 5, 3, 0)],
        ))
        .unwrap();
        assert!(settled(std::slice::from_ref(&a)));
        assert_eq!(terms(std::slice::from_ref(&a)).get(&2), Some(&5));
        let moving = parse_groups(&groups_reply(3, &[(1, 2, 3, 1)])).unwrap();
        assert!(!settled(&[a.clone(), moving]));
        let behind = parse_groups(&groups_reply(2, &[(1, 2, 2, 0)])).unwrap();
        assert!(
            !settled(&[a, behind]),
            "a node behind the newest configuration"
        );
        assert!(parse_groups(&Reply::Integer(3)).is_none());
        assert!(!settled(&[]));
    }
}
