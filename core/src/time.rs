//! Time as an input: the core's own `Instant` and `Duration`, in whole microseconds
//!
//! The core never reads a clock. Runtimes convert their clock into an [`Instant`] (for example
//! microseconds since the process started) and pass it to every `handle_*` call; the simulator
//! passes virtual time. Arithmetic saturates instead of overflowing, so a bad input can never
//! panic the core.

use core::fmt;
use core::ops::{Add, AddAssign, Sub};

use serde::{Deserialize, Serialize};

/// A point in time, in microseconds since an epoch the runtime chooses
///
/// Only differences between instants of one runtime mean anything.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Instant(u64);

/// A span of time, in microseconds
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Duration(u64);

impl Instant {
    /// The epoch: microsecond zero
    pub const ZERO: Instant = Instant(0);

    /// An instant `micros` microseconds after the epoch
    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }

    /// Microseconds since the epoch
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later
    pub const fn saturating_since(self, earlier: Instant) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
}

impl Duration {
    /// No time at all
    pub const ZERO: Duration = Duration(0);

    /// A duration of `micros` microseconds
    pub const fn from_micros(micros: u64) -> Self {
        Duration(micros)
    }

    /// A duration of `millis` milliseconds
    pub const fn from_millis(millis: u64) -> Self {
        Duration(millis.saturating_mul(1_000))
    }

    /// A duration of `secs` seconds
    pub const fn from_secs(secs: u64) -> Self {
        Duration(secs.saturating_mul(1_000_000))
    }

    /// Whole microseconds
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Whole milliseconds, rounded down
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000
    }

    /// `self * n`, saturating
    pub const fn saturating_mul(self, n: u64) -> Duration {
        Duration(self.0.saturating_mul(n))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, rhs: Duration) -> Duration {
        Duration(self.0.saturating_add(rhs.0))
    }
}

impl Sub for Duration {
    type Output = Duration;
    fn sub(self, rhs: Duration) -> Duration {
        Duration(self.0.saturating_sub(rhs.0))
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1_000) {
            write!(f, "{}ms", self.0 / 1_000)
        } else {
            write!(f, "{}us", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let end = Instant::from_micros(u64::MAX) + Duration::from_secs(1);
        assert_eq!(end.as_micros(), u64::MAX);
        assert_eq!(Instant::ZERO.saturating_since(end), Duration::ZERO);
        assert_eq!(Duration::from_millis(3).as_micros(), 3_000);
        assert_eq!(
            Duration::from_millis(5) - Duration::from_millis(7),
            Duration::ZERO
        );
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(alloc::format!("{}", Duration::from_millis(150)), "150ms");
        assert_eq!(alloc::format!("{}", Duration::from_micros(7)), "7us");
        assert_eq!(
            alloc::format!("{}", Instant::from_micros(1_500_000)),
            "1.500000s"
        );
    }
}
