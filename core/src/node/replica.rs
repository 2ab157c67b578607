//! The replicas a node hosts: the shard controller's or a replica group's, behind one enum

use alloc::boxed::Box;

use core::borrow::Borrow;

use super::machines::{HostMachines, StandardMachines};
use crate::controller::ShardController;
use crate::group::GroupDriver;
use crate::raft::{Raft, SnapshotMeta, SnapshotTask};
use crate::rsm::{Release, Replica, RestoredState, SnapshotDecoder, SnapshotToStore};
use crate::time::Instant;

/// One hosted replica, running the state machines of `M`
#[derive(Debug)]
pub enum HostedReplica<M: HostMachines = StandardMachines> {
    /// A replica of the shard controller (boxed, like the other: a Raft node is large)
    Controller(Box<Replica<M::Controller>>),
    /// A replica of a replica group
    Group(Box<GroupDriver<M::Group>>),
}

impl<M: HostMachines> HostedReplica<M> {
    /// The Raft node
    pub fn raft(&self) -> &Raft {
        match self {
            HostedReplica::Controller(r) => r.raft(),
            HostedReplica::Group(d) => d.replica().raft(),
        }
    }

    /// The Raft node, to drive
    pub fn raft_mut(&mut self) -> &mut Raft {
        match self {
            HostedReplica::Controller(r) => r.raft_mut(),
            HostedReplica::Group(d) => d.replica_mut().raft_mut(),
        }
    }

    /// The shard controller, for a controller replica
    pub fn controller(&self) -> Option<&ShardController> {
        match self {
            HostedReplica::Controller(r) => Some(r.state().borrow()),
            HostedReplica::Group(_) => None,
        }
    }

    /// The group driver, for a replica group's replica
    pub fn driver(&self) -> Option<&GroupDriver<M::Group>> {
        match self {
            HostedReplica::Controller(_) => None,
            HostedReplica::Group(d) => Some(d),
        }
    }

    /// The group driver, to drive
    pub fn driver_mut(&mut self) -> Option<&mut GroupDriver<M::Group>> {
        match self {
            HostedReplica::Controller(_) => None,
            HostedReplica::Group(d) => Some(d),
        }
    }

    /// Applies what is committed and answers snapshot tasks
    pub fn process(&mut self) {
        match self {
            HostedReplica::Controller(r) => r.process(),
            HostedReplica::Group(d) => d.process(),
        }
    }

    /// The next snapshot to store
    pub fn poll_snapshot_to_store(&mut self) -> Option<SnapshotToStore> {
        match self {
            HostedReplica::Controller(r) => r.poll_snapshot_to_store(),
            HostedReplica::Group(d) => d.replica_mut().poll_snapshot_to_store(),
        }
    }

    /// The next snapshot chunk to read for a follower
    pub fn poll_chunk_read(&mut self) -> Option<SnapshotTask> {
        match self {
            HostedReplica::Controller(r) => r.poll_chunk_read(),
            HostedReplica::Group(d) => d.replica_mut().poll_chunk_read(),
        }
    }

    /// The installed snapshot waiting to be restored, if any
    pub fn restore_wanted(&self) -> Option<&SnapshotMeta> {
        match self {
            HostedReplica::Controller(r) => r.restore_wanted(),
            HostedReplica::Group(d) => d.replica().restore_wanted(),
        }
    }

    /// Restores the state machine from stored snapshot bytes here and now (at start-up);
    /// `false` if they do not decode
    pub fn restore(&mut self, bytes: &[u8]) -> bool {
        match self {
            HostedReplica::Controller(r) => r.restore(bytes),
            HostedReplica::Group(d) => d.replica_mut().restore(bytes),
        }
    }

    /// A decoder for stored snapshot bytes of this replica's state machine
    pub fn restorer(&self) -> Box<dyn SnapshotDecoder> {
        match self {
            HostedReplica::Controller(r) => r.restorer(),
            HostedReplica::Group(d) => d.replica().restorer(),
        }
    }

    /// Swaps in a state a [`restorer`](Self::restorer) built; `false` if it is not of this
    /// replica's kind
    pub fn install(&mut self, state: RestoredState) -> bool {
        match self {
            HostedReplica::Controller(r) => r.install(state),
            HostedReplica::Group(d) => d.replica_mut().install(state),
        }
    }

    /// The next thing to drop off the loop
    pub fn poll_release(&mut self) -> Option<Release> {
        match self {
            HostedReplica::Controller(r) => r.poll_release(),
            HostedReplica::Group(d) => d.replica_mut().poll_release(),
        }
    }

    /// The earliest time [`handle_timeout`](Self::handle_timeout) has work
    pub fn poll_timeout(&self) -> Option<Instant> {
        let raft = self.raft().poll_timeout();
        let driver = self.driver().and_then(GroupDriver::poll_timeout);
        match (raft, driver) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Fires the Raft node's and the driver's timers that are due
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.raft().poll_timeout().is_some_and(|t| t <= now) {
            // Busy (a full outbox) only delays the tick to the next round.
            let _ = self.raft_mut().handle_timeout(now);
        }
        if let Some(d) = self.driver_mut()
            && d.poll_timeout().is_some_and(|t| t <= now)
        {
            d.handle_timeout(now);
        }
    }
}
