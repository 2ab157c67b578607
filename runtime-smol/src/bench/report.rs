//! What a bench run measured, and how it prints

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::workload::Kind;

/// Largest latency the histograms track, in microseconds; longer ones are recorded as this
pub const LATENCY_US_MAX: u64 = 60 * 1_000_000;

/// Significant decimal digits the latency histograms keep
const LATENCY_SIGFIG: u8 = 3;

/// Latency percentiles of one kind of request, in microseconds
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LatencySummary {
    /// Number of replies the summary covers
    pub count: u64,
    /// Median
    pub p50_us: u64,
    /// 99th percentile
    pub p99_us: u64,
    /// 99.9th percentile
    pub p999_us: u64,
    /// Slowest reply
    pub max_us: u64,
    /// Arithmetic mean
    pub mean_us: f64,
}

impl LatencySummary {
    /// Summarises a histogram of microsecond latencies (all zeros when it is empty)
    fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        Self {
            count: histogram.len(),
            p50_us: histogram.value_at_quantile(0.50),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
            mean_us: histogram.mean(),
        }
    }
}

/// Everything one run measured, counted over the measured window only (warmup excluded)
///
/// Every reply counts as an op, error replies included, and its latency is recorded; errors
/// are also counted on their own so a fast stream of `-ERR` replies is visible.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchReport {
    /// Replies received (`reads + writes`)
    pub ops: u64,
    /// Replies to `GET`s
    pub reads: u64,
    /// Replies to `SET`s
    pub writes: u64,
    /// Error replies (`read_errors + write_errors`)
    pub errors: u64,
    /// Error replies to `GET`s
    pub read_errors: u64,
    /// Error replies to `SET`s
    pub write_errors: u64,
    /// `GET`s answered with nil (the key was absent)
    pub read_misses: u64,
    /// Requests still unanswered when the drain bound ran out (0 on a healthy server)
    pub unanswered: u64,
    /// Measured wall time: from the end of warmup to the last reply (at least the duration)
    pub elapsed: Duration,
    /// Client connections used
    pub clients: usize,
    /// Requests each client kept in flight
    pub pipeline: usize,
    /// Latency of all replies
    pub latency: LatencySummary,
    /// Latency of `GET` replies
    pub read_latency: LatencySummary,
    /// Latency of `SET` replies
    pub write_latency: LatencySummary,
}

impl BenchReport {
    /// Replies per second over [`elapsed`](Self::elapsed)
    pub fn ops_per_sec(&self) -> f64 {
        per_sec(self.ops, self.elapsed)
    }

    /// `GET`s that found a value
    pub fn read_hits(&self) -> u64 {
        self.reads
            .saturating_sub(self.read_errors)
            .saturating_sub(self.read_misses)
    }
}

fn per_sec(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 { count as f64 / secs } else { 0.0 }
}

/// Microseconds as milliseconds with about three significant digits
fn ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

fn latency_line(f: &mut fmt::Formatter<'_>, label: &str, l: &LatencySummary) -> fmt::Result {
    writeln!(
        f,
        "{label} p50 {}  p99 {}  p99.9 {}  max {}  mean {}",
        ms(l.p50_us),
        ms(l.p99_us),
        ms(l.p999_us),
        ms(l.max_us),
        ms(l.mean_us.round() as u64),
    )
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "throughput: {:.0} ops/s (reads {:.0}/s, writes {:.0}/s) over {:.1} s, \
             {} clients, pipeline {}",
            self.ops_per_sec(),
            per_sec(self.reads, self.elapsed),
            per_sec(self.writes, self.elapsed),
            self.elapsed.as_secs_f64(),
            self.clients,
            self.pipeline,
        )?;
        latency_line(f, "latency (ms):", &self.latency)?;
        latency_line(f, "  reads (ms): ", &self.read_latency)?;
        latency_line(f, "  writes (ms):", &self.write_latency)?;
        let miss_pct = if self.reads > 0 {
            100.0 * self.read_misses as f64 / self.reads as f64
        } else {
            0.0
        };
        write!(
            f,
            "errors: {} (reads {}, writes {}); read misses {} of {} ({miss_pct:.1}%)",
            self.errors, self.read_errors, self.write_errors, self.read_misses, self.reads,
        )?;
        if self.unanswered > 0 {
            write!(f, "; {} requests unanswered", self.unanswered)?;
        }
        Ok(())
    }
}

/// One client's counts and latency histograms; clients' tallies are merged into the report
#[derive(Debug)]
pub(crate) struct Tally {
    read_us: Histogram<u64>,
    write_us: Histogram<u64>,
    read_errors: u64,
    write_errors: u64,
    read_misses: u64,
    pub(crate) unanswered: u64,
    /// Time of the last recorded reply, measured from the end of warmup
    pub(crate) last_reply: Duration,
}

impl Tally {
    /// An empty tally
    pub(crate) fn new() -> Self {
        let histogram = || {
            Histogram::new_with_bounds(1, LATENCY_US_MAX, LATENCY_SIGFIG)
                .expect("latency histogram bounds are valid")
        };
        Self {
            read_us: histogram(),
            write_us: histogram(),
            read_errors: 0,
            write_errors: 0,
            read_misses: 0,
            unanswered: 0,
            last_reply: Duration::ZERO,
        }
    }

    /// Records one reply of `kind` that took `latency`
    pub(crate) fn record(&mut self, kind: Kind, latency: Duration, error: bool, miss: bool) {
        let us = u64::try_from(latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        debug_assert!(!(error && miss));
        match kind {
            Kind::Read => {
                self.read_us.saturating_record(us);
                self.read_errors += u64::from(error);
                self.read_misses += u64::from(miss);
            }
            Kind::Write => {
                debug_assert!(!miss);
                self.write_us.saturating_record(us);
                self.write_errors += u64::from(error);
            }
        }
    }

    /// Adds `other`'s counts and histograms into `self`
    pub(crate) fn merge(&mut self, other: &Self) {
        // Both histograms have the same bounds, so adding cannot fail.
        self.read_us.add(&other.read_us).expect("same bounds");
        self.write_us.add(&other.write_us).expect("same bounds");
        self.read_errors += other.read_errors;
        self.write_errors += other.write_errors;
        self.read_misses += other.read_misses;
        self.unanswered += other.unanswered;
        self.last_reply = self.last_reply.max(other.last_reply);
    }

    /// The report of a run with `clients` connections and `pipeline` depth over `elapsed`
    pub(crate) fn report(&self, elapsed: Duration, clients: usize, pipeline: usize) -> BenchReport {
        let mut all_us = self.read_us.clone();
        all_us.add(&self.write_us).expect("same bounds");
        let reads = self.read_us.len();
        let writes = self.write_us.len();
        BenchReport {
            ops: reads + writes,
            reads,
            writes,
            errors: self.read_errors + self.write_errors,
            read_errors: self.read_errors,
            write_errors: self.write_errors,
            read_misses: self.read_misses,
            unanswered: self.unanswered,
            elapsed,
            clients,
            pipeline,
            latency: LatencySummary::of(&all_us),
            read_latency: LatencySummary::of(&self.read_us),
            write_latency: LatencySummary::of(&self.write_us),
        }
    }
}
