//! The `shale` command line: `up`, `node`, `ctl` and `bench`
//!
//! Every error a user can cause (a bad flag, a port in use, a corrupt or locked data
//! directory, an unreachable node) ends the program with one line on standard error and exit
//! status 2; nothing panics.

mod ctl;
mod node;
mod up;
mod verify;

/// Prints to standard output, ignoring a closed pipe (`shale ctl status | head` must not
/// panic)
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Like [`say!`] without the newline
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub(crate) use {say, say_raw};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Shale: a sharded, strongly consistent, Raft-replicated key-value store that speaks the
/// Redis protocol
#[derive(Debug, Parser)]
#[command(name = "shale", version)]
pub struct Cli {
    /// Log level: error, warn, info, debug or trace
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a complete local cluster on loopback (Ctrl-C stops it; running again resumes)
    Up(up::UpArgs),
    /// Run one node of a multi-machine cluster
    Node(node::NodeArgs),
    /// Administer a running cluster through any node's Redis port
    Ctl(ctl::CtlArgs),
    /// Generate load over the Redis protocol and report throughput and latency
    Bench(BenchArgs),
}

/// `shale bench`
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Redis endpoints; clients are spread over them in turn
    #[arg(long = "addr", default_value = "127.0.0.1:7001")]
    pub addrs: Vec<SocketAddr>,
    /// Concurrent connections
    #[arg(long, default_value_t = 50)]
    pub clients: usize,
    /// Requests in flight per connection
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// Number of distinct keys
    #[arg(long, default_value_t = 100_000)]
    pub keyspace: u64,
    /// Value size in bytes
    #[arg(long, default_value_t = 64)]
    pub value_bytes: usize,
    /// Fraction of requests that are GETs (the rest are SETs)
    #[arg(long, default_value_t = 0.5)]
    pub read_ratio: f64,
    /// Measured duration in seconds
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Warm-up before measuring, in seconds
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Seed of the key and request choice
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Password to AUTH with
    #[arg(long)]
    pub password: Option<String>,
    /// No progress bar
    #[arg(long)]
    pub quiet: bool,
    /// Rebalance under load: load --keys keys, measure the mixed load alone, then again while
    /// group --group leaves, joins again and --moves random shards move (see the README)
    #[arg(long)]
    pub rebalance: bool,
    /// With --rebalance: keys to load (`key:0` ...), of --value-bytes each (default 100)
    #[arg(long, default_value_t = 2_000_000)]
    pub keys: u64,
    /// With --rebalance: the keys are loaded already
    #[arg(long)]
    pub skip_load: bool,
    /// With --rebalance: the group that leaves and joins again
    #[arg(long, default_value_t = 2)]
    pub group: u64,
    /// With --rebalance: random shard moves after the rejoin
    #[arg(long, default_value_t = 10)]
    pub moves: usize,
    /// With --rebalance: the server's process id, to report its resident memory
    #[arg(long)]
    pub pid: Option<u32>,
    /// With --rebalance: longest wait for one change to settle, in seconds
    #[arg(long, default_value_t = 600.0)]
    pub settle_timeout: f64,
}

fn seconds(flag: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("--{flag} must be a non-negative number of seconds"))
}

fn bench(args: &BenchArgs) -> Result<(), String> {
    let mut config = crate::bench::BenchConfig::new(args.addrs.clone());
    config.clients = args.clients;
    config.pipeline = args.pipeline;
    config.keyspace = args.keyspace;
    config.value_bytes = args.value_bytes;
    config.read_ratio = args.read_ratio;
    config.duration = seconds("duration", args.duration)?;
    config.warmup = seconds("warmup", args.warmup)?;
    config.seed = args.seed;
    config.password = args.password.clone();
    config.progress = !args.quiet;
    config.validate()?;
    if args.rebalance {
        let mut rebalance = crate::bench::RebalanceConfig::new(config);
        if args.value_bytes != 64 {
            rebalance.bench.value_bytes = args.value_bytes;
        }
        rebalance.keys = args.keys;
        rebalance.skip_load = args.skip_load;
        rebalance.group = args.group;
        rebalance.moves = args.moves;
        rebalance.pid = args.pid;
        rebalance.settle_timeout = seconds("settle-timeout", args.settle_timeout)?;
        let report = crate::bench::run_rebalance(&rebalance)?;
        say!("{report}");
        return Ok(());
    }
    let report = crate::bench::run(&config).map_err(|e| e.to_string())?;
    say!("{report}");
    Ok(())
}

/// Where data lives by default
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("shale-data")
}

fn init_logs(level: &str) -> Result<(), String> {
    // A bare word must be a level (a bare target name would silently log nothing of ours);
    // full filter directives (`shale_runtime_smol=debug,warn`) are accepted as they are.
    let is_level = ["off", "error", "warn", "info", "debug", "trace"]
        .iter()
        .any(|l| l.eq_ignore_ascii_case(level));
    let bad = || format!("--log-level: {level:?} is not a level (error, warn, info, debug, trace)");
    if !is_level && !level.contains('=') {
        return Err(bad());
    }
    let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|_| bad())?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    Ok(())
}

/// Runs the program; `Err` is the one line to print before exiting with status 2
pub fn run(cli: Cli) -> Result<(), String> {
    init_logs(&cli.log_level)?;
    match cli.command {
        Command::Up(args) => up::run(&args),
        Command::Node(args) => node::run(&args),
        Command::Ctl(args) => ctl::run(&args),
        Command::Bench(args) => bench(&args),
    }
}

/// Blocks until Ctrl-C (SIGINT or SIGTERM)
fn wait_for_ctrl_c() -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .map_err(|e| format!("cannot install the Ctrl-C handler: {e}"))?;
    let _ = rx.recv();
    Ok(())
}
