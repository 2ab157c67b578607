//! `redis-cli` and `redis-benchmark` against an in-process 3-node cluster
//!
//! They come from Debian's `redis-tools`. When they are missing, this test installs them with
//! `apt-get` (as root, or through `sudo -n`), so `cargo test --workspace` works on a fresh
//! machine; if that fails, the test fails, unless `SHALE_SKIP_REDIS_TOOLS=1` tells it to skip
//! (and it says it did).

mod common;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::TestCluster;

fn find(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

fn tools() -> Option<(PathBuf, PathBuf)> {
    let found = || Some((find("redis-cli")?, find("redis-benchmark")?));
    if let Some(tools) = found() {
        return Some(tools);
    }
    if std::env::var("SHALE_SKIP_REDIS_TOOLS").is_ok_and(|v| v == "1") {
        eprintln!("skipped (SHALE_SKIP_REDIS_TOOLS=1): redis-cli or redis-benchmark missing");
        return None;
    }
    let tried = install_redis_tools();
    match found() {
        Some(tools) => Some(tools),
        None => panic!(
            "redis-cli and redis-benchmark are required and could not be installed ({tried}): \
             install redis-tools, or set SHALE_SKIP_REDIS_TOOLS=1 to skip this test"
        ),
    }
}

/// Installs Debian's redis-tools with apt-get, once per test process; what happened
fn install_redis_tools() -> String {
    static DONE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    let mut done = DONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(what) = done.as_ref() {
        return what.clone();
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.args(["-n", "apt-get"]);
            sudo
        };
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .map(|o| o.status.success())
    };
    eprintln!("redis-tools missing: installing them with apt-get");
    let what = match apt(&["install", "-y", "redis-tools"]) {
        Ok(true) => "installed".to_owned(),
        _ => match apt(&["update"]).and_then(|_| apt(&["install", "-y", "redis-tools"])) {
            Ok(true) => "installed after apt-get update".to_owned(),
            Ok(false) => "apt-get install redis-tools failed".to_owned(),
            Err(e) => format!("cannot run apt-get: {e}"),
        },
    };
    *done = Some(what.clone());
    what
}

/// Runs `cmd`, killing it after `limit`
fn run(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{cmd:?} ran over {limit:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn redis_cli_and_redis_benchmark_work_against_a_cluster() {
    let Some((cli, bench)) = tools() else {
        return;
    };
    let cluster = TestCluster::start(3, 2, None);
    let ports: Vec<String> = cluster
        .addrs()
        .iter()
        .map(|a| a.port().to_string())
        .collect();
    let redis_cli = |port: &str, args: &[&str]| {
        let mut cmd = Command::new(&cli);
        cmd.args(["-h", "127.0.0.1", "-p", port]).args(args);
        let out = run(cmd, Duration::from_secs(30));
        assert!(out.status.success(), "redis-cli {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(redis_cli(&ports[0], &["set", "hello", "world"]), "OK");
    assert_eq!(redis_cli(&ports[2], &["get", "hello"]), "world");
    assert_eq!(redis_cli(&ports[1], &["ping"]), "PONG");
    assert!(redis_cli(&ports[1], &["nosuch"]).contains("unknown command"));
    assert!(redis_cli(&ports[1], &["info", "replication"]).contains("role:master"));

    let mut cmd = Command::new(&bench);
    cmd.args(["-h", "127.0.0.1", "-p", &ports[0]])
        .args(["-t", "set,get", "-n", "5000", "-c", "50", "-q"]);
    let out = run(cmd, Duration::from_secs(120));
    let report = text(&out);
    assert!(out.status.success(), "redis-benchmark failed: {report}");
    assert!(
        report.contains("SET:") && report.contains("GET:"),
        "redis-benchmark did not finish both tests: {report}"
    );
    assert!(
        !report.contains("ERR") && !report.to_lowercase().contains("error"),
        "redis-benchmark saw errors: {report}"
    );

    // Cluster mode: redis-benchmark needs two masters with slots, so wait for the leaders to
    // spread; redis-cli -c follows -MOVED from a node that leads nothing.
    let cluster_ports: Vec<String> = cluster
        .cluster_addrs()
        .iter()
        .map(|a| a.port().to_string())
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // Balanced: groups 1 and 2 led by nodes 2 and 3, node 1 (listed first) leading none.
    let balanced = |nodes: &str| {
        let leads: Vec<bool> = nodes.lines().map(|l| l.split(' ').count() > 8).collect();
        leads == [false, true, true]
    };
    while !balanced(&redis_cli(&ports[0], &["cluster", "nodes"])) {
        assert!(std::time::Instant::now() < deadline, "leaders never spread");
        std::thread::sleep(Duration::from_millis(100));
    }
    for port in &cluster_ports {
        let mut cmd = Command::new(&cli);
        cmd.args(["-c", "-h", "127.0.0.1", "-p", port]).args([
            "set",
            &format!("key-via-{port}"),
            port,
        ]);
        let out = run(cmd, Duration::from_secs(30));
        assert_eq!(text(&out).trim(), "OK", "redis-cli -c set: {}", text(&out));
        let mut cmd = Command::new(&cli);
        cmd.args(["-c", "-h", "127.0.0.1", "-p", &cluster_ports[0]])
            .args(["get", &format!("key-via-{port}")]);
        let out = run(cmd, Duration::from_secs(30));
        assert_eq!(text(&out).trim(), port.as_str(), "redis-cli -c get");
    }
    let mut cmd = Command::new(&bench);
    cmd.args(["--cluster", "-h", "127.0.0.1", "-p", &cluster_ports[0]])
        .args(["-t", "set,get,incr", "-n", "5000", "-c", "20", "-q"]);
    let out = run(cmd, Duration::from_secs(120));
    let report = text(&out);
    assert!(
        out.status.success(),
        "redis-benchmark --cluster failed: {report}"
    );
    assert!(
        report.contains("Cluster has 2 master nodes") || report.contains("Cluster has 2 primary"),
        "{report}"
    );
    assert!(
        report.contains("SET:") && report.contains("GET:") && report.contains("INCR:"),
        "redis-benchmark --cluster did not finish: {report}"
    );
    assert!(
        !report.contains("ERR") && !report.contains("MOVED"),
        "redis-benchmark --cluster saw errors: {report}"
    );
}
