//! Shared by the power-cut tests: numbers from the environment, and mixing seeds

use shale_core::rng::Rng;

/// The number in environment variable `name`, or `default` when it is not set; a value that
/// is not a number stops the test with the variable's name
pub fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// A well-mixed value derived from `x` (the first output of a generator seeded with it)
pub fn mix(x: u64) -> u64 {
    Rng::new(x).next_u64()
}
