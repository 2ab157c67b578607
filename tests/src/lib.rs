//! Shale's integration suites: simulated Raft scenarios over many seeds
//!
//! Every scenario runs once per seed. `SHALE_SEEDS=N` sets how many seeds (default
//! [`DEFAULT_SEEDS`]); `SHALE_SEED=S` replays exactly one. A failure names its seed:
//!
//! ```text
//! SHALE_SEEDS=500 cargo test -p shale-tests --release
//! SHALE_SEED=1234 cargo test -p shale-tests --release -- figure_8
//! ```
//!
//! Time bounds are written in multiples of the Raft timing the scenario configures (see
//! [`raft_config`]), not in wall-clock time: the simulator runs in virtual time.

use shale_core::raft::Config;
use shale_core::time::Duration;
use shale_sim::{Sim, SimConfig, SimError};

/// Seeds each scenario runs in CI when `SHALE_SEEDS` is not set
pub const DEFAULT_SEEDS: u64 = 20;

/// Heartbeat interval of the scenario clusters
pub const HEARTBEAT: Duration = Duration::from_millis(50);
/// Lower bound of the election timeout of the scenario clusters (the upper bound is twice it)
pub const ELECTION_TIMEOUT: Duration = Duration::from_millis(500);

/// The seeds to run: `SHALE_SEED` alone, else `0..SHALE_SEEDS`
pub fn seeds() -> Vec<u64> {
    seeds_or(DEFAULT_SEEDS)
}

/// The seeds to run: `SHALE_SEED` alone, else `0..SHALE_SEEDS`, else `0..default` (for
/// scenarios too long to run [`DEFAULT_SEEDS`] of in CI); a bad value or `SHALE_SEEDS=0` stops
/// the test (see [`shale_sim::seeds`])
pub fn seeds_or(default: u64) -> Vec<u64> {
    shale_sim::seeds::from_env(default)
}

/// The Raft config scenario clusters use: 50 ms heartbeats, 500-1000 ms election timeouts
pub fn raft_config() -> Config {
    let mut c = Config::new(0, 0);
    c.heartbeat_interval = HEARTBEAT;
    c.election_timeout_min = ELECTION_TIMEOUT;
    c.election_timeout_max = ELECTION_TIMEOUT.saturating_mul(2);
    c
}

/// A simulation of `nodes` nodes with [`raft_config`] on a reliable network
pub fn sim(seed: u64, nodes: usize) -> Sim {
    let mut config = SimConfig::new(seed, nodes);
    config.raft = raft_config();
    Sim::new(config)
}

/// Runs `scenario` for every seed of [`seeds`]; panics naming the first failing seed (an
/// invariant violation inside the simulator panics with its seed too)
pub fn for_each_seed(name: &str, scenario: impl Fn(u64) -> Result<(), SimError>) {
    for_seeds(name, seeds(), scenario);
}

/// [`for_each_seed`] over `seeds`
pub fn for_seeds(name: &str, seeds: Vec<u64>, scenario: impl Fn(u64) -> Result<(), SimError>) {
    for seed in seeds {
        if let Err(e) = scenario(seed) {
            panic!(
                "scenario {name} failed: {e}\nreplay: SHALE_SEED={seed} cargo test -p shale-tests {name}"
            );
        }
    }
}

/// A simulation that can name its seed and time in an error (both simulators)
pub trait Simulation {
    /// An error for this run at this time
    fn error_at(&self, message: String) -> SimError;
}

impl Simulation for Sim {
    fn error_at(&self, message: String) -> SimError {
        self.error(message)
    }
}

impl Simulation for shale_sim::multi::MultiSim {
    fn error_at(&self, message: String) -> SimError {
        self.error(message)
    }
}

/// `Err` with `message` unless `condition` holds
pub fn ensure(
    sim: &impl Simulation,
    condition: bool,
    message: impl FnOnce() -> String,
) -> Result<(), SimError> {
    if condition {
        Ok(())
    } else {
        Err(sim.error_at(message()))
    }
}

/// A sharded cluster's settings for the scenario suites: 3 controller replicas and groups 100,
/// 101 and 102 of 3 replicas each on 12 nodes, 10 shards, [`raft_config`] timing
pub fn sharded_config(seed: u64) -> shale_sim::multi::ShardedConfig {
    let mut config = shale_sim::multi::ShardedConfig::new(seed);
    config.raft = raft_config();
    config.call_budget = ELECTION_TIMEOUT.saturating_mul(40);
    config
}
