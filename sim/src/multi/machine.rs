//! The state machines a simulated node can host, behind one object-safe trait
//!
//! Every hosted replica is a [`Replica`] over a [`Tracked`] state machine: `Tracked` wraps the
//! real one (the shard controller, or a replica group's [`GroupState`], whose replicas are
//! [`GroupDriver`]s over a `Replica<Tracked<GroupState>>`) and keeps a rolling digest
//! of every command it applied, which the simulator compares with the digest of the committed
//! log after every event (state machine safety for typed replicas, whose applied entries the
//! runtime never sees).
//!
//! Adding a kind of state machine takes four small steps, all in this file (a replica group
//! took a fifth: its replicas are drivers, hosted by `impl Hosted for SimDriver`):
//! 1. a variant in [`HostedCommand`] and one in [`HostedOutput`];
//! 2. an `impl HostedKind for TheMachine` that unwraps its command and wraps its output;
//! 3. a variant in [`MachineSpec`] with what building an empty machine needs, and its arm in
//!    [`MachineSpec::build`];
//! 4. if a retried command needs special handling by the clerk, an arm in
//!    [`retry_follow_up`].

use std::any::Any;
use std::borrow::Borrow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shale_core::controller::{
    Configuration, ControllerCommand, ControllerError, GroupId, ShardController,
};
use shale_core::group::{ClientOutcome, DriverConfig, GroupCommand, GroupDriver, GroupState};
use shale_core::raft::{Index, LogId, ProposeError, Raft, SnapshotMeta, SnapshotTask};
use shale_core::rsm::{Replica, SnapshotToStore, StateMachine};
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

/// What a [`Tracked`] snapshot holds
#[derive(Serialize, Deserialize)]
struct TrackedSnapshot {
    digest: u64,
    last_command: Index,
    inner: Vec<u8>,
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

/// A replica of a replica group as the simulator hosts it: the core's driver over a
/// digest-tracked group state
pub type SimDriver = GroupDriver<Tracked<GroupState>>;

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

    fn snapshot(&self) -> Vec<u8> {
        let snap = TrackedSnapshot {
            digest: self.digest,
            last_command: self.last_command,
            inner: self.inner.snapshot(),
        };
        postcard::to_allocvec(&snap).unwrap_or_default()
    }

    fn restore(&mut self, bytes: &[u8]) -> bool {
        let Ok(snap) = postcard::from_bytes::<TrackedSnapshot>(bytes) else {
            return false;
        };
        if !self.inner.restore(&snap.inner) {
            return false;
        }
        self.digest = snap.digest;
        self.last_command = snap.last_command;
        true
    }
}

/// A command for any hosted kind of state machine
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostedCommand {
    /// For the shard controller
    Controller(ControllerCommand),
    /// For a replica group
    Group(GroupCommand),
}

/// What applying a [`HostedCommand`] returned
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostedOutput {
    /// From the shard controller
    Controller(Result<Configuration, ControllerError>),
    /// From a replica group (`Some` for client requests)
    Group(Option<ClientOutcome>),
}

impl HostedOutput {
    /// The controller's answer, or `Err(self)` for another kind's
    pub fn into_controller(self) -> Result<Result<Configuration, ControllerError>, HostedOutput> {
        match self {
            HostedOutput::Controller(result) => Ok(result),
            other => Err(other),
        }
    }
}

/// A state machine the multi-group simulator can host: how its commands and outputs map to
/// [`HostedCommand`] and [`HostedOutput`]
pub trait HostedKind: StateMachine + 'static {
    /// A short name for traces and errors
    const NAME: &'static str;
    /// Unwraps a command of this kind (`Err` gives back a command of another kind)
    fn command(command: HostedCommand) -> Result<Self::Command, HostedCommand>;
    /// Wraps an output of this kind
    fn output(output: Self::Output) -> HostedOutput;
}

impl HostedKind for ShardController {
    const NAME: &'static str = "controller";

    fn command(command: HostedCommand) -> Result<ControllerCommand, HostedCommand> {
        match command {
            HostedCommand::Controller(c) => Ok(c),
            other => Err(other),
        }
    }

    fn output(output: Result<Configuration, ControllerError>) -> HostedOutput {
        HostedOutput::Controller(output)
    }
}

impl HostedKind for GroupState {
    const NAME: &'static str = "group";

    fn command(command: HostedCommand) -> Result<GroupCommand, HostedCommand> {
        match command {
            HostedCommand::Group(c) => Ok(c),
            other => Err(other),
        }
    }

    fn output(output: Option<ClientOutcome>) -> HostedOutput {
        HostedOutput::Group(output)
    }
}

/// How to build a group's empty state machine (at creation and at every restart)
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MachineSpec {
    /// A shard controller over `shards` shards
    Controller {
        /// The number of shards
        shards: u32,
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
    /// A fresh replica of this machine over `raft`, booted at local time `now`
    pub(crate) fn build(&self, raft: Raft, now: Instant) -> Box<dyn Hosted> {
        match self {
            MachineSpec::Controller { shards } => Box::new(Replica::new(
                raft,
                Tracked::new(ShardController::new(*shards)),
            )),
            MachineSpec::Group {
                gid,
                shards,
                limits,
            } => {
                let state = Tracked::new(GroupState::new(*gid, *shards, *limits));
                let replica = Replica::new(raft, state);
                Box::new(SimDriver::new(replica, DriverConfig::default(), now))
            }
        }
    }
}

/// A follow-up for a clerk whose retried `command` came back as `output`: `Some(query)` when
/// the output only says the first attempt was applied already (a retried Join refused as
/// `AlreadyJoined` for one of its own groups, a retried Leave refused as `UnknownGroup` for
/// one of its own), in which case the clerk asks for the latest configuration instead
pub(crate) fn retry_follow_up(
    command: &HostedCommand,
    output: &HostedOutput,
) -> Option<HostedCommand> {
    let HostedOutput::Controller(Err(error)) = output else {
        return None;
    };
    let HostedCommand::Controller(command) = command else {
        return None;
    };
    let own = match (command, error) {
        (ControllerCommand::Join(groups), ControllerError::AlreadyJoined(g)) => {
            groups.iter().any(|(gid, _)| gid == g)
        }
        (ControllerCommand::Leave(gids), ControllerError::UnknownGroup(g)) => gids.contains(g),
        _ => false,
    };
    own.then_some(HostedCommand::Controller(ControllerCommand::Query(None)))
}

/// A hosted replica of any kind, as the simulator drives it (see [`Replica`])
pub(crate) trait Hosted {
    /// The Raft node
    fn raft(&self) -> &Raft;
    /// The Raft node, to drive
    fn raft_mut(&mut self) -> &mut Raft;
    /// Applies what is committed and answers snapshot tasks
    fn process(&mut self);
    /// Proposes a command of this replica's kind (a command of another kind is a bug in the
    /// scenario and panics)
    fn propose(
        &mut self,
        now: Instant,
        token: u64,
        command: HostedCommand,
    ) -> Result<LogId, ProposeError>;
    /// The next result for this replica's proposals, as (token, output)
    fn poll_result(&mut self) -> Option<(u64, Option<HostedOutput>)>;
    /// The next snapshot to store
    fn poll_snapshot_to_store(&mut self) -> Option<SnapshotToStore>;
    /// The next chunk to read for a follower
    fn poll_chunk_read(&mut self) -> Option<SnapshotTask>;
    /// The installed snapshot to restore, if any
    fn restore_wanted(&self) -> Option<SnapshotMeta>;
    /// Restores stored snapshot bytes
    fn restore(&mut self, bytes: &[u8]) -> bool;
    /// The command digest and the index of the last command applied
    fn digest(&self) -> (u64, Index);
    /// The wrapped state machine, to downcast
    fn machine(&self) -> &dyn Any;
    /// The kind's name
    fn kind(&self) -> &'static str;
    /// The replica group driver, for replicas of a replica group
    fn driver(&self) -> Option<&SimDriver> {
        None
    }
    /// The replica group driver, to drive
    fn driver_mut(&mut self) -> Option<&mut SimDriver> {
        None
    }
}

impl Hosted for SimDriver {
    fn raft(&self) -> &Raft {
        self.replica().raft()
    }

    fn raft_mut(&mut self) -> &mut Raft {
        self.replica_mut().raft_mut()
    }

    fn process(&mut self) {
        GroupDriver::process(self);
    }

    fn propose(
        &mut self,
        now: Instant,
        token: u64,
        command: HostedCommand,
    ) -> Result<LogId, ProposeError> {
        match GroupState::command(command) {
            Ok(c) => self.replica_mut().propose(now, token, &c),
            Err(other) => panic!("a {} replica was given {other:?}", GroupState::NAME),
        }
    }

    fn poll_result(&mut self) -> Option<(u64, Option<HostedOutput>)> {
        None // the driver turns results into client replies
    }

    fn poll_snapshot_to_store(&mut self) -> Option<SnapshotToStore> {
        self.replica_mut().poll_snapshot_to_store()
    }

    fn poll_chunk_read(&mut self) -> Option<SnapshotTask> {
        self.replica_mut().poll_chunk_read()
    }

    fn restore_wanted(&self) -> Option<SnapshotMeta> {
        self.replica().restore_wanted().cloned()
    }

    fn restore(&mut self, bytes: &[u8]) -> bool {
        self.replica_mut().restore(bytes)
    }

    fn digest(&self) -> (u64, Index) {
        let state = self.replica().state();
        (state.digest(), state.last_command())
    }

    fn machine(&self) -> &dyn Any {
        self.state()
    }

    fn kind(&self) -> &'static str {
        GroupState::NAME
    }

    fn driver(&self) -> Option<&SimDriver> {
        Some(self)
    }

    fn driver_mut(&mut self) -> Option<&mut SimDriver> {
        Some(self)
    }
}

impl<S> Hosted for Replica<Tracked<S>>
where
    S: HostedKind,
    S::Command: Serialize + DeserializeOwned,
{
    fn raft(&self) -> &Raft {
        Replica::raft(self)
    }

    fn raft_mut(&mut self) -> &mut Raft {
        Replica::raft_mut(self)
    }

    fn process(&mut self) {
        Replica::process(self);
    }

    fn propose(
        &mut self,
        now: Instant,
        token: u64,
        command: HostedCommand,
    ) -> Result<LogId, ProposeError> {
        match S::command(command) {
            Ok(c) => Replica::propose(self, now, token, &c),
            Err(other) => panic!("a {} replica was given {other:?}", S::NAME),
        }
    }

    fn poll_result(&mut self) -> Option<(u64, Option<HostedOutput>)> {
        let applied = Replica::poll_result(self)?;
        Some((applied.token, applied.output.map(S::output)))
    }

    fn poll_snapshot_to_store(&mut self) -> Option<SnapshotToStore> {
        Replica::poll_snapshot_to_store(self)
    }

    fn poll_chunk_read(&mut self) -> Option<SnapshotTask> {
        Replica::poll_chunk_read(self)
    }

    fn restore_wanted(&self) -> Option<SnapshotMeta> {
        Replica::restore_wanted(self).cloned()
    }

    fn restore(&mut self, bytes: &[u8]) -> bool {
        Replica::restore(self, bytes)
    }

    fn digest(&self) -> (u64, Index) {
        let state = self.state();
        (state.digest(), state.last_command())
    }

    fn machine(&self) -> &dyn Any {
        self.state().inner()
    }

    fn kind(&self) -> &'static str {
        S::NAME
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_snapshots_carry_the_digest() {
        let mut a = Tracked::new(ShardController::new(4));
        let join = ControllerCommand::Join(vec![(1, vec![1])]);
        StateMachine::apply(&mut a, 3, join).unwrap();
        assert_eq!(a.last_command(), 3);
        assert_ne!(a.digest(), EMPTY_COMMAND_DIGEST);
        let mut b = Tracked::new(ShardController::new(4));
        assert!(StateMachine::restore(&mut b, &StateMachine::snapshot(&a)));
        assert_eq!(a, b);
        assert!(!StateMachine::restore(&mut b, &[0xff]));
    }

    #[test]
    fn only_own_groups_make_a_retry_a_success() {
        let join = HostedCommand::Controller(ControllerCommand::Join(vec![(5, vec![1])]));
        let own = HostedOutput::Controller(Err(ControllerError::AlreadyJoined(5)));
        let other = HostedOutput::Controller(Err(ControllerError::NoReplicas(5)));
        assert!(retry_follow_up(&join, &own).is_some());
        assert!(retry_follow_up(&join, &other).is_none());
        let leave = HostedCommand::Controller(ControllerCommand::Leave(vec![5]));
        let gone = HostedOutput::Controller(Err(ControllerError::UnknownGroup(5)));
        assert!(retry_follow_up(&leave, &gone).is_some());
        assert!(retry_follow_up(&leave, &own).is_none());
    }
}
