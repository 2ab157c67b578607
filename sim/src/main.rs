//! `shale-sim`: random fault campaigns over many seeds
//!
//! ```text
//! cargo run -p shale-sim --release -- --seeds 1000 [--start 0] [--threads 2]
//! cargo run -p shale-sim --release -- --seed 42 [--trace]
//! cargo run -p shale-sim --release -- --sharded --seeds 100    # the sharded-cluster campaign
//! ```

use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{ProgressBar, ProgressStyle};
use shale_sim::campaign::{self, CampaignReport};
use shale_sim::multi::{ShardedReport, run_sharded_seed};

struct Args {
    seeds: u64,
    start: u64,
    threads: usize,
    single: Option<u64>,
    trace: bool,
    sharded: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seeds: 100,
        start: 0,
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        single: None,
        trace: false,
        sharded: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a number"))?;
            v.parse()
                .map_err(|_| format!("{name}: not a number: {v:?}"))
        };
        match flag.as_str() {
            "--seeds" => args.seeds = value("--seeds")?,
            "--start" => args.start = value("--start")?,
            "--threads" => args.threads = value("--threads")?.max(1) as usize,
            "--seed" => args.single = Some(value("--seed")?),
            "--trace" => args.trace = true,
            "--sharded" => args.sharded = true,
            "-h" | "--help" => {
                return Err(
                    "usage: shale-sim [--sharded] [--seeds N] [--start S] [--threads T] | --seed S [--trace]"
                        .into(),
                );
            }
            other => return Err(format!("unknown flag {other:?}; try --help")),
        }
    }
    Ok(args)
}

/// Runs one seed, turning an invariant panic into an error message
fn run_caught(seed: u64) -> Result<CampaignReport, String> {
    caught(|| campaign::run_seed(seed))
}

/// Runs one seed of the sharded campaign, turning an invariant panic into an error message
fn run_sharded_caught(seed: u64) -> Result<ShardedReport, String> {
    caught(|| run_sharded_seed(seed))
}

/// Runs `f`, turning an error or a panic into a message
fn caught<T, E: ToString>(
    f: impl FnOnce() -> Result<T, E> + std::panic::UnwindSafe,
) -> Result<T, String> {
    match std::panic::catch_unwind(f) {
        Ok(Ok(report)) => Ok(report),
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())),
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if let Some(seed) = args.single
        && args.sharded
    {
        return match run_sharded_caught(seed) {
            Ok(r) => {
                println!(
                    "sharded seed {seed}: ok ({} faults, {} reconfigurations, {} linearizable client ops, \
                     {} unknown, {} checked transactions, trace {:016x})",
                    r.faults, r.reconfigurations, r.client_ops, r.unknown_ops, r.txns, r.trace_hash
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("sharded seed {seed}: FAILED\n{e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(seed) = args.single {
        if args.trace {
            eprintln!("(tracing is printed on failure; the last events are in the report)");
        }
        return match run_caught(seed) {
            Ok(r) => {
                println!(
                    "seed {seed}: ok ({} nodes, {} faults, {} reconfigurations, {} proposals, {} committed, \
                     {} snapshots taken, {} installed, {} linearizable client ops, trace {:016x})",
                    r.nodes,
                    r.faults,
                    r.reconfigurations,
                    r.proposals,
                    r.committed,
                    r.snapshots_taken,
                    r.snapshots_installed,
                    r.client_ops,
                    r.trace_hash
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("seed {seed}: FAILED\n{e}");
                ExitCode::FAILURE
            }
        };
    }
    std::panic::set_hook(Box::new(|_| {}));
    let bar = ProgressBar::new(args.seeds);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} seeds  {elapsed_precise}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let next = AtomicU64::new(args.start);
    let end = args.start + args.seeds;
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..args.threads {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= end {
                        break;
                    }
                    let result = if args.sharded {
                        run_sharded_caught(seed).map(|_| ())
                    } else {
                        run_caught(seed).map(|_| ())
                    };
                    if let Err(e) = result {
                        let first_line = e.lines().next().unwrap_or("").to_string();
                        bar.println(format!("seed {seed}: FAILED: {first_line}"));
                        failures
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((seed, e));
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish();
    let mut failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    failures.sort_by_key(|(s, _)| *s);
    if failures.is_empty() {
        let what = if args.sharded {
            "sharded seeds"
        } else {
            "seeds"
        };
        println!("{} {what} from {}: all passed", args.seeds, args.start);
        ExitCode::SUCCESS
    } else {
        let seeds: Vec<String> = failures.iter().map(|(s, _)| s.to_string()).collect();
        println!(
            "{} of {} seeds FAILED: {}",
            failures.len(),
            args.seeds,
            seeds.join(" ")
        );
        println!(
            "replay one with: cargo run -p shale-sim --release -- {}--seed {}",
            if args.sharded { "--sharded " } else { "" },
            failures[0].0
        );
        ExitCode::FAILURE
    }
}
