//! Which state machines a [`Host`](super::Host) runs: the shard controller's and the replica
//! groups', as plain types in production or wrapped (for instance by the simulator, which
//! digests every command a replica applies to check state machine safety)

use core::borrow::Borrow;

use crate::controller::{Configuration, ControllerCommand, ControllerError, ShardController};
use crate::group::{GroupMachine, GroupState};
use crate::rsm::StateMachine;

/// A state machine that applies controller commands as [`ShardController`] does and lends
/// that state (implemented for every such type)
pub trait ControllerMachine:
    StateMachine<Command = ControllerCommand, Output = Result<Configuration, ControllerError>>
    + Borrow<ShardController>
{
}

impl<M> ControllerMachine for M where
    M: StateMachine<Command = ControllerCommand, Output = Result<Configuration, ControllerError>>
        + Borrow<ShardController>
{
}

/// The pair of state machine types a host's replicas run
pub trait HostMachines: 'static {
    /// The shard controller's
    type Controller: ControllerMachine + core::fmt::Debug;
    /// A replica group's
    type Group: GroupMachine + core::fmt::Debug;
}

/// The plain state machines: what the `shale` program runs
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StandardMachines;

impl HostMachines for StandardMachines {
    type Controller = ShardController;
    type Group = GroupState;
}
