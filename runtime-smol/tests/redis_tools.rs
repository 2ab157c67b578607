//! `redis-cli` and `redis-benchmark` against an in-process 3-node cluster
//!
//! They come from Debian's `redis-tools`, which `.ci/run` installs and then sets
//! `SHALE_REQUIRE_REDIS_TOOLS=1`: without the tools this test fails in CI and, elsewhere,
//! says it was skipped.

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
    match (find("redis-cli"), find("redis-benchmark")) {
        (Some(cli), Some(bench)) => Some((cli, bench)),
        _ => {
            assert!(
                std::env::var_os("SHALE_REQUIRE_REDIS_TOOLS").is_none(),
                "redis-cli and redis-benchmark are required (install redis-tools)"
            );
            eprintln!("skipped: redis-cli or redis-benchmark is not installed (redis-tools)");
            None
        }
    }
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
}
