//! The `shale bench` load generator
//!
//! [`run`] opens [`BenchConfig::clients`] connections to RESP endpoints, keeps
//! [`BenchConfig::pipeline`] requests in flight on each, and returns a [`BenchReport`] of
//! throughput, latency percentiles, errors and `GET` misses:
//!
//! ```no_run
//! use std::time::Duration;
//! use shale_runtime_smol::bench::{self, BenchConfig};
//!
//! let mut config = BenchConfig::new(vec!["127.0.0.1:6379".parse().unwrap()]);
//! config.clients = 8;
//! config.read_ratio = 0.9;
//! config.duration = Duration::from_secs(5);
//! config.validate()?;
//! let report = bench::run(&config).map_err(|err| err.to_string())?;
//! println!("{report}");
//! # Ok::<(), String>(())
//! ```
//!
//! # How a run goes
//!
//! 1. Every client connects (with `TCP_NODELAY`) and sends `AUTH` if a password is set. Any
//!    failure here ends the run with a [`BenchError`] naming the address, before load starts.
//! 2. Load runs for [`warmup`](BenchConfig::warmup); replies in this window are not recorded.
//! 3. Load runs for [`duration`](BenchConfig::duration). Each reply's latency, from the write
//!    of its request to the read that completed it, goes into per-client microsecond
//!    histograms (3 significant digits) that are merged at the end.
//! 4. Clients stop sending and wait for outstanding replies, at most
//!    [`DRAIN_TIMEOUT`]; replies still missing then are reported as
//!    [`unanswered`](BenchReport::unanswered). Connections are closed.
//!
//! A connection that breaks or sends an invalid reply fails the whole run: the other clients
//! stop within a few milliseconds and [`run`] returns the error, naming the address.
//!
//! # Threads, not tasks
//!
//! Each client is a blocking [`std::net::TcpStream`] on its own OS thread. A blocked thread
//! wakes as soon as its reply arrives, so latencies are not inflated by an executor's queue,
//! and the code stays a plain loop. This is accurate up to a few hundred clients (the limit is
//! [`CLIENTS_MAX`]); beyond that, raise [`pipeline`](BenchConfig::pipeline) instead.
//!
//! # Workload
//!
//! Client `i` draws from a splitmix64 generator seeded with `seed + i`: a `GET key:<n>` with
//! probability [`read_ratio`](BenchConfig::read_ratio), otherwise a `SET key:<n> <value>`, with
//! `n` uniform in `[0, keyspace)`. Requests are RESP arrays of bulk strings; replies are read
//! by the small incremental parser in [`reply`].

pub mod call;
mod client;
mod config;
mod error;
mod progress;
mod rebalance;
pub mod reply;
mod report;
mod workload;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Instant;

pub use client::{AUTH_REPLY_TIMEOUT, CONNECT_TIMEOUT, DRAIN_TIMEOUT};
pub use config::{BenchConfig, CLIENTS_MAX, PIPELINE_MAX, VALUE_BYTES_MAX, WINDOW_BYTES_MAX};
pub use error::BenchError;
pub use report::{BenchReport, LATENCY_US_MAX, LatencySummary};

use client::{Connection, Schedule, Shared};
pub use rebalance::{RebalanceConfig, RebalanceReport, run_rebalance};
use report::Tally;
use workload::Workload;

/// Runs the load described by `config` and reports what it measured
///
/// Blocks for about `warmup + duration` (plus connection setup, and at most
/// [`DRAIN_TIMEOUT`] more if replies are slow to arrive).
pub fn run(config: &BenchConfig) -> Result<BenchReport, BenchError> {
    run_with(config, Arc::new(Shared::default()))
}

/// [`run`], sharing its stop and progress state with the caller (who may stop it early by
/// setting `shared.stop`: the report then covers the time until then)
pub(crate) fn run_with(
    config: &BenchConfig,
    shared: Arc<Shared>,
) -> Result<BenchReport, BenchError> {
    config.validate().map_err(BenchError::Config)?;
    let connections = (0..config.clients)
        .map(|index| Connection::open(config.target_of(index), config.password.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;

    let start = Instant::now();
    let measure_from = start + config.warmup;
    let stop_at = measure_from + config.duration;
    let schedule = Schedule {
        measure_from,
        stop_at,
        give_up_at: stop_at + DRAIN_TIMEOUT,
    };
    let mut handles = Vec::with_capacity(config.clients);
    for (index, conn) in connections.into_iter().enumerate() {
        let workload = Workload::new(
            config.seed,
            index,
            config.keyspace,
            config.read_ratio,
            config.value_bytes,
        );
        let (pipeline, client_shared) = (config.pipeline, Arc::clone(&shared));
        let spawned = thread::Builder::new()
            .name(format!("bench-client-{index}"))
            .spawn(move || {
                let result = client::drive(conn, workload, pipeline, schedule, &client_shared);
                if result.is_err() {
                    client_shared.abort.store(true, Ordering::Relaxed);
                }
                result
            });
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(err) => {
                shared.abort.store(true, Ordering::Relaxed);
                for handle in handles {
                    let _ = handle.join();
                }
                return Err(BenchError::Thread(err));
            }
        }
    }

    if config.progress {
        progress::watch(&handles, schedule, &shared);
    }
    let mut total = Tally::new();
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(tally)) => total.merge(&tally),
            Ok(Err(err)) => {
                first_error.get_or_insert(err);
            }
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    if let Some(err) = first_error {
        return Err(err);
    }
    let elapsed = if shared.stop.load(Ordering::Relaxed) {
        total.last_reply
    } else {
        total.last_reply.max(config.duration)
    };
    Ok(total.report(elapsed, config.clients, config.pipeline))
}
