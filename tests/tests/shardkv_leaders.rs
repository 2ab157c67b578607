//! Leader balancing: with every group on the same three nodes (as `shale up` places them),
//! each group's leadership settles on its preferred voter, so the leaders spread over the
//! nodes, and no client operation is lost or misordered while leadership moves

use shale_core::node::{CONTROLLER_GROUP, preferred_leader};
use shale_core::time::Duration;
use shale_sim::SimError;
use shale_sim::multi::{KvWorkload, ShardedCluster, Workload};
use shale_tests::{ELECTION_TIMEOUT, ensure, for_each_seed, sharded_config};

/// Groups on shared nodes balance every 200 ms while users run; after a quiet spell, every
/// group (the controller too) is led by its preferred voter and the history is linearizable
fn balanced_scenario(seed: u64) -> Result<(), SimError> {
    let mut config = sharded_config(seed);
    config.shared_nodes = true;
    config.leader_balance_interval = Some(Duration::from_millis(200));
    let mut c = ShardedCluster::new(config);
    c.join(&[100, 101, 102])?;
    let keys = c.key_per_shard();
    let mut users = KvWorkload::new(&mut c, 6, Workload::Random(keys), None);
    users.run_for(&mut c, ELECTION_TIMEOUT.saturating_mul(6))?;
    users.drain(&mut c, ELECTION_TIMEOUT.saturating_mul(20))?;
    for gid in [CONTROLLER_GROUP, 100, 101, 102] {
        let leader = c.sim.leader_of(gid);
        let preferred = preferred_leader(gid, &[1, 2, 3]);
        ensure(&c.sim, leader == preferred, || {
            format!("group {gid} is led by {leader:?}, not its preferred voter {preferred:?}")
        })?;
    }
    users.check_linearizable(&c)
}

#[test]
fn leaders_settle_on_their_preferred_voters() {
    for_each_seed(
        "leaders_settle_on_their_preferred_voters",
        balanced_scenario,
    );
}
