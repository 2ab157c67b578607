//! Replica groups: the replicated state of a group and the shard hand-over protocol
//!
//! [`GroupState`] is what every replica of a group applies from its log. Hand-over is pulled
//! by the new owner and fenced by configuration numbers:
//!
//! 1. Every group moves to configuration N+1 only once all its shards have settled.
//! 2. In N+1, a shard a group gains is `Pulling` from its previous owner; a shard it loses is
//!    `Handing`: still served, since the new owner may not have reached N+1 yet.
//! 3. The new owner asks the previous owner for the shard as of N+1. The previous owner, once
//!    in N+1 itself, logs `StartHandOff` (from there the shard is `Offering`: kept, no longer
//!    served) and answers with the data and the session table, in bounded chunks read from a
//!    cursor. The new owner logs each chunk (`InstallChunk`) and serves each key once it has
//!    arrived (see `arrival`), the whole shard once the last chunk is in.
//! 4. The new owner then has the previous owner log `DeleteShard`, and once that is confirmed
//!    logs `DeleteConfirmed`; only then is the shard settled on both sides.
//!
//! A group serves every shard it owns and holds while others are still moving, refuses keys it
//! does not own in its configuration, and never serves a shard it is offering.
//!
//! ```
//! use shale_core::controller::{ControllerCommand, ShardController};
//! use shale_core::group::{GroupCommand, GroupState};
//! use shale_core::shard::{ShardCursor, ShardLimits};
//!
//! let mut ctl = ShardController::new(4);
//! let c1 = ctl.apply(&ControllerCommand::Join(vec![(1, vec![1])])).unwrap();
//! let c2 = ctl.apply(&ControllerCommand::Join(vec![(2, vec![2])])).unwrap();
//! let (mut g1, mut g2) = (GroupState::new(1, 4, ShardLimits::default()), GroupState::new(2, 4, ShardLimits::default()));
//! for g in [&mut g1, &mut g2] {
//!     g.apply(&GroupCommand::Reconfigure(c1.clone()));
//!     g.apply(&GroupCommand::Reconfigure(c2.clone()));
//! }
//! // Group 2 gained shards 2 and 3 and pulls them from group 1, which hands them over.
//! for (shard, from) in g2.pulls() {
//!     assert_eq!(from, 1);
//!     g1.apply(&GroupCommand::StartHandOff { shard, num: c2.num });
//!     let mut cursor = Some(ShardCursor::START);
//!     while let Some(from) = cursor {
//!         let chunk = g1.offer(shard, c2.num).unwrap().chunk(&from, 64 * 1024);
//!         cursor = chunk.next.clone();
//!         g2.apply(&GroupCommand::InstallChunk { shard, num: c2.num, chunk });
//!     }
//!     g1.apply(&GroupCommand::DeleteShard { shard, num: c2.num });
//!     assert!(g1.deleted(shard, c2.num));
//!     g2.apply(&GroupCommand::DeleteConfirmed { shard, num: c2.num });
//! }
//! assert!(g1.settled() && g2.settled());
//! ```

mod ahead;
mod app;
mod arrival;
mod digest;
mod driver;
mod expiry;
mod pull;
mod snapshot;
mod state;

pub use app::{Addressed, AppMessage};
pub use digest::{Fnv64, GroupDigest, ShardDigest};

pub use driver::{ClientReply, DriverConfig, GroupDriver, GroupMachine, GroupRequest};
pub use state::{
    ClientOutcome, GroupCommand, GroupError, GroupState, Handover, HandoverDirection,
    HandoverTotals, PullProgress, ShardSlot, ShardStatus,
};

#[cfg(test)]
mod tests;
