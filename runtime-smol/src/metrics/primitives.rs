//! The three metric kinds: [`Counter`], [`Gauge`] and [`Histogram`], each a few atomics

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// A value that only goes up, such as a number of requests or bytes written
///
/// Updates are one relaxed atomic add, so any number of threads can share a counter.
/// The value wraps at `u64::MAX`, which a counter of events or bytes never reaches.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// A counter at zero
    pub const fn new() -> Self {
        Self(AtomicU64::new(0))
    }

    /// Adds one
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Raises the value to `value` if it is lower, else leaves it
    ///
    /// For a counter that mirrors a cumulative count kept elsewhere (a transport's frames
    /// sent, say), copied now and then: one relaxed atomic max, and the counter still never
    /// goes down.
    pub fn raise_to(&self, value: u64) {
        self.0.fetch_max(value, Ordering::Relaxed);
    }

    /// The current value
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down, such as open connections or a Raft term
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// A gauge at zero
    pub const fn new() -> Self {
        Self(AtomicI64::new(0))
    }

    /// Sets the value
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// Sets the value from an unsigned number, saturating at `i64::MAX`
    ///
    /// Raft terms, log indices and sizes are `u64`; none of them gets near `i64::MAX`.
    pub fn set_u64(&self, value: u64) {
        self.set(i64::try_from(value).unwrap_or(i64::MAX));
    }

    /// Adds `delta`, which may be negative
    pub fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }

    /// Adds one
    pub fn inc(&self) {
        self.add(1);
    }

    /// Subtracts one
    pub fn dec(&self) {
        self.add(-1);
    }

    /// The current value
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A distribution of observations in fixed buckets chosen at creation
///
/// Observations are whole micro-units of the metric's base unit: microseconds for a
/// histogram in seconds, which is what every Shale histogram measures. Bucket bounds are
/// given in the same micro-units and are inclusive upper bounds, as Prometheus' `le` says.
/// Each observation is two relaxed atomic adds (its bucket and the sum) after a binary
/// search over the bounds.
#[derive(Debug)]
pub struct Histogram {
    /// Inclusive upper bounds, strictly increasing, in micro-units
    bounds_micros: Box<[u64]>,
    /// Non-cumulative counts: one per bound, then one for everything above the last bound
    buckets: Box<[AtomicU64]>,
    /// Sum of all observations in micro-units
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Request and disk latency bounds, in microseconds: 100 µs up to 2.5 s
    pub const LATENCY_BOUNDS_MICROS: &'static [u64] = &[
        100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
        1_000_000, 2_500_000,
    ];

    /// Bounds from 10 µs up to 10 s, in microseconds: resolves a fast round of a node's loop
    /// and still shows a stall of several seconds
    pub const STALL_BOUNDS_MICROS: &'static [u64] = &[
        10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
        500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
    ];

    /// Bounds from 1 ms up to 100 s, in microseconds: bulk work such as building or restoring
    /// a snapshot
    pub const BULK_BOUNDS_MICROS: &'static [u64] = &[
        1_000,
        2_500,
        5_000,
        10_000,
        25_000,
        50_000,
        100_000,
        250_000,
        500_000,
        1_000_000,
        2_500_000,
        5_000_000,
        10_000_000,
        25_000_000,
        50_000_000,
        100_000_000,
    ];

    /// A histogram with the given inclusive upper bounds in micro-units
    ///
    /// # Panics
    ///
    /// If the bounds are not strictly increasing. An empty slice is allowed: the histogram
    /// then only has the `+Inf` bucket, a count and a sum.
    pub fn new(bounds_micros: &[u64]) -> Self {
        assert!(
            bounds_micros.windows(2).all(|pair| pair[0] < pair[1]),
            "histogram bounds must be strictly increasing: {bounds_micros:?}"
        );
        let buckets = (0..=bounds_micros.len())
            .map(|_| AtomicU64::new(0))
            .collect();
        Self {
            bounds_micros: bounds_micros.into(),
            buckets,
            sum_micros: AtomicU64::new(0),
        }
    }

    /// A histogram with [`LATENCY_BOUNDS_MICROS`](Self::LATENCY_BOUNDS_MICROS)
    pub fn latency() -> Self {
        Self::new(Self::LATENCY_BOUNDS_MICROS)
    }

    /// A histogram with [`STALL_BOUNDS_MICROS`](Self::STALL_BOUNDS_MICROS)
    pub fn stall() -> Self {
        Self::new(Self::STALL_BOUNDS_MICROS)
    }

    /// A histogram with [`BULK_BOUNDS_MICROS`](Self::BULK_BOUNDS_MICROS)
    pub fn bulk() -> Self {
        Self::new(Self::BULK_BOUNDS_MICROS)
    }

    /// Records one observation of `value_micros` micro-units
    pub fn observe_micros(&self, value_micros: u64) {
        let index = self
            .bounds_micros
            .partition_point(|&bound| bound < value_micros);
        debug_assert!(index < self.buckets.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(value_micros, Ordering::Relaxed);
    }

    /// Records one duration, in whole microseconds (saturating)
    pub fn observe(&self, duration: Duration) {
        self.observe_micros(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
    }

    /// The inclusive upper bounds of the finite buckets, in micro-units
    pub fn bounds_micros(&self) -> &[u64] {
        &self.bounds_micros
    }

    /// A copy of the current counts
    ///
    /// The count is the sum of the buckets, so the `+Inf` bucket and `_count` always agree;
    /// while other threads observe, the sum may be a few observations ahead or behind.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0u64;
        let cumulative = self
            .buckets
            .iter()
            .map(|bucket| {
                total = total.wrapping_add(bucket.load(Ordering::Relaxed));
                total
            })
            .collect::<Vec<_>>();
        debug_assert_eq!(cumulative.len(), self.bounds_micros.len() + 1);
        HistogramSnapshot {
            cumulative,
            sum_micros: self.sum_micros.load(Ordering::Relaxed),
        }
    }
}

/// The counts of a [`Histogram`] at one moment
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Cumulative counts: entry `i` counts observations `<=` bound `i`, and the last entry
    /// (one past the bounds) counts all of them
    pub cumulative: Vec<u64>,
    /// Sum of the observations in micro-units
    pub sum_micros: u64,
}

impl HistogramSnapshot {
    /// The number of observations
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}
