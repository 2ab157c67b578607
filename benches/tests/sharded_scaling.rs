//! The claim of the `sharded` bench: under the CPU model, four replica groups complete at
//! least twice the operations of one group under the same closed-loop load

#[allow(dead_code)] // the bench's criterion entry point is not used here
#[path = "../benches/suites/sharded.rs"]
mod sharded;

use shale_core::time::Duration;

#[test]
fn four_groups_do_at_least_twice_the_work_of_one() {
    let measured = Duration::from_millis(200);
    let one = sharded::scaling_run(1, measured);
    let four = sharded::scaling_run(4, measured);
    eprintln!(
        "1 group: {:.0} ops/s, 4 groups: {:.0} ops/s",
        one.ops_per_sec(),
        four.ops_per_sec()
    );
    assert!(one.ops > 0, "one group completed nothing");
    assert!(
        four.ops >= 2 * one.ops,
        "4 groups: {} ops, 1 group: {} ops in {measured}",
        four.ops,
        one.ops
    );
}
