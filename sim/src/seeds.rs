//! Which seeds a test runs, from the environment
//!
//! `SHALE_SEED=S` replays exactly seed `S`; `SHALE_SEEDS=N` runs seeds `0..N`; neither runs
//! the test's default count. A value that is not a number, or `SHALE_SEEDS=0` (which would
//! run nothing and pass), stops the test with a message instead of being ignored.
//!
//! ```
//! let seeds = shale_sim::seeds::from_env(5);
//! assert!(!seeds.is_empty());
//! ```

/// The seeds to run: `SHALE_SEED` alone, else `0..SHALE_SEEDS`, else `0..default`
///
/// # Panics
/// On a value that is not a decimal number, or on `SHALE_SEEDS=0`.
pub fn from_env(default: u64) -> Vec<u64> {
    match parse(
        var("SHALE_SEED").as_deref(),
        var("SHALE_SEEDS").as_deref(),
        default,
    ) {
        Ok(seeds) => seeds,
        Err(message) => panic!("{message}"),
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// [`from_env`] on given values (`None`: not set)
pub fn parse(seed: Option<&str>, seeds: Option<&str>, default: u64) -> Result<Vec<u64>, String> {
    let number = |name: &str, value: &str| {
        value
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("{name}={value:?} is not a number of seeds"))
    };
    if let Some(value) = seed {
        return Ok(vec![number("SHALE_SEED", value)?]);
    }
    let count = match seeds {
        Some(value) => number("SHALE_SEEDS", value)?,
        None => default,
    };
    if count == 0 {
        return Err("SHALE_SEEDS=0 would run no seed (and pass); ask for at least one".into());
    }
    Ok((0..count).collect())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn bad_or_empty_seed_counts_are_errors() {
        assert_eq!(parse(None, None, 3), Ok(vec![0, 1, 2]));
        assert_eq!(parse(None, Some("2"), 3), Ok(vec![0, 1]));
        assert_eq!(parse(Some("42"), Some("2"), 3), Ok(vec![42]));
        assert!(parse(None, Some("0"), 3).is_err());
        assert!(parse(None, Some("ten"), 3).is_err());
        assert!(parse(Some("x"), None, 3).is_err());
        assert!(parse(None, None, 0).is_err());
    }
}
