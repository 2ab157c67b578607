//! The `shale` program's errors: every mistake a user can make ends with exit status 2 and
//! one clear line on standard error, never a panic; and `shale up` stops cleanly on SIGINT
//! and resumes from its data directory

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn shale() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shale"))
}

/// Runs `cmd` to completion (bounded) and returns its output
fn finish(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn shale");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// Asserts a user error: status 2, one line on stderr containing `expected`, no panic
fn user_error(cmd: Command, expected: &str) {
    let shown = format!("{cmd:?}");
    let out = finish(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{shown}: {stderr}");
    assert!(!stderr.contains("panicked"), "{shown} panicked: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{shown}: {stderr}");
    assert!(stderr.contains(expected), "{shown}: {stderr}");
}

/// A `shale up` on ports chosen by the OS, killed when dropped
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_up(dir: &Path, nodes: &str) -> Up {
    let mut child = shale()
        .args(["up", "--nodes", nodes, "--port", "0", "--peer-port", "0"])
        .args([
            "--metrics-port",
            "0",
            "--cluster-port",
            "0",
            "--log-level",
            "warn",
        ])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn shale up");
    let stdout = child.stdout.take().expect("stdout");
    let up = Up(child);
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.any(|l| l.is_ok_and(|l| l.contains("Ctrl-C stops")));
    assert!(ready, "shale up never said it was ready");
    up
}

/// Sends SIGINT and waits for a clean exit
fn interrupt(mut up: Up) {
    let pid = up.0.id().to_string();
    let sent = Command::new("kill").args(["-INT", &pid]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -INT failed");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = up.0.try_wait().expect("wait") {
            assert!(status.success(), "shale up exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "shale up did not stop on SIGINT");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn mistakes_end_with_one_line_and_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = shale();
    cmd.args(["up", "--nodes", "0", "--data-dir"])
        .arg(dir.path());
    user_error(cmd, "at least 1");
    let mut cmd = shale();
    cmd.args(["bench", "--clients", "0"]);
    user_error(cmd, "clients");
    let mut cmd = shale();
    cmd.args(["--log-level", "loud", "ctl", "status"]);
    user_error(cmd, "--log-level");
    let mut cmd = shale();
    cmd.args(["node", "--listen", "127.0.0.1:0"]);
    user_error(cmd, "--id is required");
    let config = dir.path().join("node.conf");
    std::fs::write(&config, "id = 1\nthis line is wrong\n").unwrap();
    let mut cmd = shale();
    cmd.arg("node").arg("--config").arg(&config);
    user_error(cmd, "node.conf:2");
    let mut cmd = shale();
    cmd.args(["ctl", "--addr", "127.0.0.1:1", "status"]);
    user_error(cmd, "no node answered");
    // A port in use.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut cmd = shale();
    cmd.args([
        "up",
        "--port",
        &port,
        "--peer-port",
        "0",
        "--metrics-port",
        "0",
        "--cluster-port",
        "0",
    ])
    .arg("--data-dir")
    .arg(dir.path().join("busy"));
    user_error(cmd, "cannot listen for clients");
}

#[test]
fn up_stops_on_sigint_resumes_and_refuses_another_shape() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    interrupt(start_up(&data, "3"));
    // The same shape resumes from disk; another is refused, naming the difference.
    let up = start_up(&data, "3");
    let mut cmd = shale();
    cmd.args(["up", "--nodes", "5", "--port", "0", "--peer-port", "0"])
        .args(["--metrics-port", "0", "--cluster-port", "0", "--data-dir"])
        .arg(&data);
    user_error(cmd, "holds a cluster of nodes=3");
    interrupt(up);
}
