//! What a bench run does: targets, concurrency, workload mix and timing
//!
//! [`BenchConfig::new`] gives a sensible starting point; [`BenchConfig::validate`] checks the
//! knobs against the named limits below before [`run`](super::run) opens a single connection.

use std::net::SocketAddr;
use std::time::Duration;

/// Most client connections one run opens (each is an OS thread; see the module docs)
pub const CLIENTS_MAX: usize = 1024;

/// Most requests one client keeps in flight at once
pub const PIPELINE_MAX: usize = 4096;

/// Largest value a `SET` carries, in bytes
pub const VALUE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Most request bytes one client may have in flight (`pipeline × value_bytes`)
///
/// A client writes its whole window before reading; a window that does not fit in the socket
/// buffers could deadlock against a server that stops reading while its replies back up.
pub const WINDOW_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Configuration of one `shale bench` run
#[derive(Clone, Debug, PartialEq)]
pub struct BenchConfig {
    /// RESP endpoints to load; client `i` connects to `targets[i % targets.len()]`
    pub targets: Vec<SocketAddr>,
    /// Number of client connections, each driven by its own thread
    pub clients: usize,
    /// Requests each client keeps in flight (1 = strict request/reply)
    pub pipeline: usize,
    /// Keys are `key:<n>` with `n` uniform in `[0, keyspace)`
    pub keyspace: u64,
    /// Size of every `SET` value, in bytes
    pub value_bytes: usize,
    /// Fraction of requests that are `GET`s, in `0.0..=1.0`; the rest are `SET`s
    pub read_ratio: f64,
    /// How long requests are measured, after the warmup
    pub duration: Duration,
    /// How long load runs before measuring starts; replies in this window are not recorded
    pub warmup: Duration,
    /// Seed of the workload; client `i` draws from a generator seeded with `seed + i`
    pub seed: u64,
    /// Show a progress bar with the current ops/s on stderr
    pub progress: bool,
    /// If set, every connection sends `AUTH <password>` before any load
    pub password: Option<String>,
}

impl BenchConfig {
    /// A configuration loading `targets` with 50 clients, no pipelining, 100 000 keys,
    /// 64-byte values, half reads, 10 s measured after 1 s of warmup, seed 1 and no progress bar
    pub fn new(targets: Vec<SocketAddr>) -> Self {
        Self {
            targets,
            clients: 50,
            pipeline: 1,
            keyspace: 100_000,
            value_bytes: 64,
            read_ratio: 0.5,
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            seed: 1,
            progress: false,
            password: None,
        }
    }

    /// Checks every knob, naming the first one that is out of range and what it accepts
    pub fn validate(&self) -> Result<(), String> {
        if self.targets.is_empty() {
            return Err("no targets: give at least one RESP address to load".into());
        }
        if self.clients == 0 || self.clients > CLIENTS_MAX {
            return Err(format!(
                "clients must be in 1..={CLIENTS_MAX}, got {}",
                self.clients
            ));
        }
        if self.pipeline == 0 || self.pipeline > PIPELINE_MAX {
            return Err(format!(
                "pipeline must be in 1..={PIPELINE_MAX}, got {}",
                self.pipeline
            ));
        }
        if self.keyspace == 0 {
            return Err("keyspace must be at least 1 key, got 0".into());
        }
        if self.value_bytes > VALUE_BYTES_MAX {
            return Err(format!(
                "value size must be at most {VALUE_BYTES_MAX} bytes, got {}",
                self.value_bytes
            ));
        }
        let window_bytes = self.pipeline.saturating_mul(self.value_bytes);
        if window_bytes > WINDOW_BYTES_MAX {
            return Err(format!(
                "pipeline × value size is {window_bytes} bytes in flight per client; \
                 the limit is {WINDOW_BYTES_MAX}"
            ));
        }
        if !(0.0..=1.0).contains(&self.read_ratio) {
            return Err(format!(
                "read ratio must be in 0.0..=1.0, got {}",
                self.read_ratio
            ));
        }
        if self.duration.is_zero() {
            return Err("duration must be longer than zero".into());
        }
        Ok(())
    }

    /// The target client `index` connects to (round-robin over [`targets`](Self::targets))
    pub fn target_of(&self, index: usize) -> SocketAddr {
        assert!(!self.targets.is_empty());
        self.targets[index % self.targets.len()]
    }
}
