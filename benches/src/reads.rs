//! Linearizable reads on the leader: batches through one ReadIndex heartbeat round, and the
//! same from a lease

use shale_core::raft::{ReadConsistency, ReadState};

use crate::{Cluster, LEADER};

impl Cluster {
    /// A cluster whose nodes serve leader reads from a lease (`lease_reads`), with the lease
    /// already established by one confirmed round; the clock is frozen, so it never lapses
    pub fn with_lease() -> Cluster {
        let mut cluster = Cluster::with_config(|c| c.lease_reads = true);
        cluster.read_batch(1);
        assert!(
            cluster.leader().lease_valid(),
            "a confirmed round grants the lease"
        );
        cluster
    }

    /// One benchmark round: `n` linearizable reads on the leader with fresh contexts, then
    /// drain the leader and deliver messages until all `n` have come out of `poll_read`;
    /// returns them, in the order they came out
    ///
    /// Messages still in flight then (the slower follower's heartbeat answer) stay queued and go
    /// first in the next round. Panics if a read fails or the network goes quiet first.
    pub fn read_batch(&mut self, n: usize) -> &[ReadState] {
        let now = self.now;
        let first = self.next_ctx;
        self.next_ctx += n as u64;
        self.hosts[crate::cluster::slot(LEADER)].reads.clear();
        for ctx in first..first + n as u64 {
            self.node_mut(LEADER)
                .read(now, ctx, ReadConsistency::Linearizable)
                .expect("the leader takes reads within its limits");
        }
        self.drain(LEADER);
        while self.host(LEADER).reads.len() < n {
            assert!(self.deliver_next(), "network quiet with reads unanswered");
        }
        let reads = &self.host(LEADER).reads;
        let applied = self.leader().applied_index();
        for read in reads {
            let index = read.result.expect("a read on a stable leader succeeds");
            assert!(index <= applied, "the read index is applied on the leader");
        }
        reads
    }
}
