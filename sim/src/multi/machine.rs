//! The state machines the simulator's hosts run: the core's own, wrapped in [`Tracked`] so
//! every replica keeps a digest of the commands it applied, and how to build them
//!
//! Each simulated node runs the core's [`shale_core::node::Host`] over [`SimMachines`]:
//! a [`Tracked`] shard controller and [`Tracked`] replica group states. The wrapper changes
//! nothing of what the machines do; it only lets the checker compare every replica's applied
//! state with the committed log (see `check.rs`).

use std::any::Any;
use std::borrow::Borrow;

use shale_core::controller::{GroupId, ShardController};
use shale_core::group::{DriverConfig, GroupDriver, GroupState};
use shale_core::node::{HostMachines, HostedReplica};
use shale_core::raft::{Index, Raft};
use shale_core::rsm::{
    Release, Replica, RestoredState, SnapshotDecoder, SnapshotEncoder, SnapshotError, StateMachine,
};
use shale_core::shard::ShardLimits;
use shale_core::time::Instant;

/// The digest of a state machine that applied no command
pub const EMPTY_COMMAND_DIGEST: u64 = 0x5348_414c_455f_4d47;

/// A 64-bit FNV-1a hash of a command's encoded bytes
pub fn command_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One step of the command digest: `prev` followed by the command at `index` with
/// [`command_hash`] `hash`
pub fn command_digest_step(prev: u64, index: Index, hash: u64) -> u64 {
    let mut h = prev ^ 0x9e37_79b9_7f4a_7c15;
    for word in [index, hash] {
        h ^= word;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
    }
    h
}

/// A state machine with a rolling digest of the commands it applied, snapshotted with it
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracked<S> {
    inner: S,
    /// Digest of every command applied so far (through the snapshot it was restored from)
    digest: u64,
    /// Index of the last command applied (0: none)
    last_command: Index,
}

impl<S> Tracked<S> {
    /// Wraps `inner`, which has applied nothing
    pub fn new(inner: S) -> Self {
        Tracked {
            inner,
            digest: EMPTY_COMMAND_DIGEST,
            last_command: 0,
        }
    }

    /// The wrapped state machine
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The digest of every command applied so far
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// Index of the last command applied (0: none)
    pub fn last_command(&self) -> Index {
        self.last_command
    }
}

impl Borrow<GroupState> for Tracked<GroupState> {
    fn borrow(&self) -> &GroupState {
        &self.inner
    }
}

impl Borrow<ShardController> for Tracked<ShardController> {
    fn borrow(&self) -> &ShardController {
        &self.inner
    }
}

impl<S: StateMachine> StateMachine for Tracked<S> {
    type Command = S::Command;
    type Output = S::Output;

    fn apply(&mut self, index: Index, command: S::Command) -> S::Output {
        // The log holds postcard bytes; re-encoding the decoded command gives them back.
        let bytes = postcard::to_allocvec(&command).unwrap_or_default();
        self.digest = command_digest_step(self.digest, index, command_hash(&bytes));
        self.last_command = index;
        self.inner.apply(index, command)
    }

    fn snapshot(&self) -> Box<dyn SnapshotEncoder> {
        Box::new(TrackedEncoder {
            header: Some(header_bytes(self.digest, self.last_command)),
            inner: self.inner.snapshot(),
        })
    }

    fn restorer(&self) -> Box<dyn SnapshotDecoder> {
        Box::new(TrackedDecoder::<S> {
            header: Vec::new(),
            inner: self.inner.restorer(),
            _machine: std::marker::PhantomData,
        })
    }

    fn poll_release(&mut self) -> Option<Release> {
        self.inner.poll_release()
    }
}

/// A tracked snapshot: the digest and the last command's index (16 bytes), then the inner
/// machine's snapshot
fn header_bytes(digest: u64, last_command: Index) -> Vec<u8> {
    let mut out = digest.to_le_bytes().to_vec();
    out.extend_from_slice(&last_command.to_le_bytes());
    out
}

struct TrackedEncoder {
    header: Option<Vec<u8>>,
    inner: Box<dyn SnapshotEncoder>,
}

impl SnapshotEncoder for TrackedEncoder {
    fn encode(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> bool {
        if let Some(header) = self.header.take() {
            out.extend_from_slice(&header);
        }
        self.inner.encode(out, max_bytes)
    }
}

struct TrackedDecoder<S> {
    header: Vec<u8>,
    inner: Box<dyn SnapshotDecoder>,
    _machine: std::marker::PhantomData<fn() -> S>,
}

impl<S: StateMachine> SnapshotDecoder for TrackedDecoder<S> {
    fn decode(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let n = (16 - self.header.len()).min(bytes.len());
        self.header.extend_from_slice(&bytes[..n]);
        self.inner.decode(&bytes[n..])
    }

    fn finish(self: Box<Self>) -> Result<RestoredState, SnapshotError> {
        if self.header.len() < 16 {
            return Err(SnapshotError::Truncated);
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&self.header[i..i + 8]);
            u64::from_le_bytes(w)
        };
        let (digest, last_command) = (word(0), word(8));
        let inner = self
            .inner
            .finish()?
            .downcast::<S>()
            .map_err(|_| SnapshotError::Malformed {
                offset: 16,
                reason: "the inner state is of another machine",
            })?;
        Ok(RestoredState::new(Tracked {
            inner,
            digest,
            last_command,
        }))
    }
}

/// The machines of a simulated node's host: the core's, digest-tracked
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimMachines;

impl HostMachines for SimMachines {
    type Controller = Tracked<ShardController>;
    type Group = Tracked<GroupState>;
}

/// A replica of a replica group as the simulator hosts it: the core's driver over a
/// digest-tracked group state
pub type SimDriver = GroupDriver<Tracked<GroupState>>;

/// A replica as a simulated node hosts it
pub type SimReplica = HostedReplica<SimMachines>;

/// How to build a group's empty state machine (at creation and at every restart)
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MachineSpec {
    /// The shard controller over `shards` shards (only for group
    /// [`CONTROLLER`](super::CONTROLLER))
    Controller {
        /// The number of shards
        shards: u32,
        /// Most shards holding data one configuration moves (0: any number)
        max_moves: u32,
    },
    /// A replica group `gid` over `shards` shards, each replica a [`GroupDriver`]
    Group {
        /// The group's id (as the controller knows it)
        gid: GroupId,
        /// The number of shards (the controller's)
        shards: u32,
        /// Limits on keys, values and sessions
        limits: ShardLimits,
    },
}

impl MachineSpec {
    /// The number of shards of the cluster this machine belongs to
    pub fn shards(&self) -> u32 {
        match self {
            MachineSpec::Controller { shards, .. } | MachineSpec::Group { shards, .. } => *shards,
        }
    }

    /// A fresh replica of this machine over `raft`, booted at local time `now`
    pub(crate) fn build(&self, raft: Raft, now: Instant) -> SimReplica {
        match self {
            MachineSpec::Controller { shards, max_moves } => {
                let controller = ShardController::with_max_moves(*shards, *max_moves);
                HostedReplica::Controller(Box::new(Replica::new(raft, Tracked::new(controller))))
            }
            MachineSpec::Group {
                gid,
                shards,
                limits,
            } => {
                let state = Tracked::new(GroupState::new(*gid, *shards, *limits));
                let replica = Replica::new(raft, state);
                HostedReplica::Group(Box::new(SimDriver::new(
                    replica,
                    DriverConfig::default(),
                    now,
                )))
            }
        }
    }
}

/// The command digest of `replica`'s state machine and the index of its last command
pub(crate) fn digest(replica: &SimReplica) -> (u64, Index) {
    match replica {
        HostedReplica::Controller(r) => (r.state().digest(), r.state().last_command()),
        HostedReplica::Group(d) => {
            let state = d.replica().state();
            (state.digest(), state.last_command())
        }
    }
}

/// `replica`'s plain state machine ([`ShardController`] or [`GroupState`]), to downcast
pub(crate) fn machine(replica: &SimReplica) -> &dyn Any {
    match replica {
        HostedReplica::Controller(r) => r.state().inner(),
        HostedReplica::Group(d) => d.replica().state().inner(),
    }
}

/// The kind of `replica`, for traces
pub(crate) fn kind(replica: &SimReplica) -> &'static str {
    match replica {
        HostedReplica::Controller(_) => "controller",
        HostedReplica::Group(_) => "group",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shale_core::controller::ControllerCommand;

    #[test]
    fn tracked_snapshots_carry_the_digest() {
        let mut a = Tracked::new(ShardController::new(4));
        let join = ControllerCommand::Join(vec![(1, vec![1])]);
        StateMachine::apply(&mut a, 3, join).unwrap();
        assert_eq!(a.last_command(), 3);
        assert_ne!(a.digest(), EMPTY_COMMAND_DIGEST);
        let bytes = shale_core::rsm::encode_to_vec(a.snapshot(), 7);
        let b = shale_core::rsm::decode_all(a.restorer(), &bytes).unwrap();
        assert_eq!(b.downcast::<Tracked<ShardController>>().unwrap(), a);
        assert!(shale_core::rsm::decode_all(a.restorer(), &[0xff; 20]).is_err());
    }
}
