//! The cost of one leader step: one `AppendResponse` handled, outputs drained
//!
//! Untimed setup: propose [`PENDING`] entries one at a time, each replicated to both
//! followers, holding back every acknowledgement. Timed: hand one follower's acknowledgements
//! to the leader, each followed by a full drain (`handle_message`, then `poll_write`,
//! `poll_message` and `poll_apply` until empty). Timing [`PENDING`] steps per stretch keeps
//! the clock reads out of the figure; criterion divides by the iteration count.
//!
//! - `append_response_commits`: the first acknowledgement of an entry, which commits it; the
//!   leader then queues commit news for both followers and applies the entry;
//! - `append_response_no_commit`: the second acknowledgement, which only advances the
//!   follower's match index.

use std::time::{Duration, Instant};

use criterion::Criterion;
use shale_benches::{Cluster, LEADER};
use shale_core::raft::{Message, Outgoing, Payload};

/// Acknowledgements held back per timed stretch; under the default `max_inflight_msgs` (64),
/// so the leader's window never closes during setup
pub const PENDING: usize = 32;

/// `leader_step/append_response_*`: see the module documentation
pub fn append_response(c: &mut Criterion) {
    let mut group = c.benchmark_group("leader_step");
    let payload = Payload::from(&[0x5A; 16]);
    for (name, commits) in [
        ("append_response_commits", true),
        ("append_response_no_commit", false),
    ] {
        group.bench_function(name, |b| {
            let mut cluster = Cluster::new();
            let mut first = Vec::with_capacity(PENDING);
            let mut second = Vec::with_capacity(PENDING);
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    if cluster.needs_rebuild() {
                        cluster = Cluster::new();
                    }
                    let steps = left.min(PENDING as u64) as usize;
                    replicate_holding_acks(&mut cluster, &payload, steps, &mut first, &mut second);
                    if !commits {
                        first.drain(..).for_each(|ack| cluster.deliver(ack));
                    }
                    let timed = if commits { &mut first } else { &mut second };
                    let start = Instant::now();
                    for ack in timed.drain(..) {
                        cluster.deliver(ack);
                    }
                    total += start.elapsed();
                    let last = cluster.leader().last_index();
                    assert_eq!(
                        cluster.leader().commit_index(),
                        last,
                        "every step committed"
                    );
                    first.drain(..).for_each(|ack| cluster.deliver(ack));
                    second.drain(..).for_each(|ack| cluster.deliver(ack));
                    cluster.run_until_quiet();
                    left -= steps as u64;
                }
                total
            });
        });
    }
    group.finish();
}

/// Proposes `steps` entries one by one and replicates each to both followers, keeping their
/// acknowledgements (node 2's in `first`, node 3's in `second`) instead of delivering them
fn replicate_holding_acks(
    cluster: &mut Cluster,
    payload: &Payload,
    steps: usize,
    first: &mut Vec<Outgoing>,
    second: &mut Vec<Outgoing>,
) {
    cluster.run_until_quiet();
    for _ in 0..steps {
        cluster.propose(payload);
        cluster.drain(LEADER);
        while let Some(msg) = cluster.network_mut().pop_front() {
            if msg.to != LEADER {
                cluster.deliver(msg);
                continue;
            }
            assert!(matches!(msg.message, Message::AppendResponse { .. }));
            if msg.from == 2 {
                first.push(msg)
            } else {
                second.push(msg)
            }
        }
    }
}
