//! The same seed replays the same run bit for bit; different seeds differ

use shale_sim::campaign;

#[test]
fn same_seed_same_trace() {
    for seed in [3, 17, 2024] {
        let a = campaign::run_seed(seed).unwrap_or_else(|e| panic!("{e}"));
        let b = campaign::run_seed(seed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a, b, "seed {seed} did not replay identically");
        assert!(
            a.committed > 10,
            "seed {seed}: the workload made progress: {a:?}"
        );
    }
    let x = campaign::run_seed(1).unwrap();
    let y = campaign::run_seed(2).unwrap();
    assert_ne!(x.trace_hash, y.trace_hash);
}

#[test]
fn campaign_seeds_pass() {
    for seed in shale_sim::seeds::from_env(30) {
        if let Err(e) = campaign::run_seed(seed) {
            panic!("campaign failed: {e}");
        }
    }
}

/// The sharded campaign (controller and replica groups on shared nodes, random faults) over
/// `SHALE_SEEDS` seeds, 20 by default in CI
#[test]
fn sharded_campaign_seeds_pass() {
    for seed in shale_sim::seeds::from_env(20) {
        if let Err(e) = shale_sim::multi::run_sharded_seed(seed) {
            panic!("sharded campaign failed: {e}");
        }
    }
}
