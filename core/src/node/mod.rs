//! A node hosting replicas of several groups: the application protocol between them and the
//! front door's client sessions, sans-IO
//!
//! A Shale node hosts replicas of the shard controller (group [`CONTROLLER_GROUP`]) and of
//! replica groups. [`Host`] is all of them on one node: it feeds each replica its Raft
//! messages, timers and persistence results, routes the [`AppMessage`]s between groups (a
//! group's driver asking the controller for configurations and other groups for shards), and
//! runs a [`Clerk`](crate::clerk::Clerk) per client session so any node accepts any key. It
//! does no IO: storage operations ([`WalOp`]), messages and finished client operations come
//! out of [`Host::poll_output`] for the runtime to carry out. See [`Host`] for the call order.
//!
//! [`AppMessage`]: crate::group::AppMessage

mod balance;
mod host;
mod machines;
mod replica;
mod route;
mod sessions;

pub use balance::preferred_leader;
pub use host::{CONTROLLER_GROUP, GroupAdmin, Host, HostConfig, HostOutput, OpId, WalDone, WalOp};
pub use machines::{ControllerMachine, HostMachines, StandardMachines};
pub use replica::HostedReplica;
pub use sessions::{AdminError, SessionError, SessionId};
