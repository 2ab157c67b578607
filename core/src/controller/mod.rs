//! The shard controller: a replicated state machine holding the numbered history of
//! configurations (which replica group owns which shard)
//!
//! Commands are [`ControllerCommand`]s, applied in log order by every replica of the controller
//! group through [`ShardController::apply`], so every replica holds the same history. Joins and
//! leaves rebalance with [`balance::rebalance`]: shard counts per group differ by at most one,
//! and only the shards that must move do. Every configuration ever made stays queryable.
//!
//! ```
//! use shale_core::controller::{ControllerCommand, ShardController};
//!
//! let mut ctl = ShardController::new(8);
//! let c1 = ctl.apply(&ControllerCommand::Join(vec![(100, vec![1, 2, 3])])).unwrap();
//! assert_eq!(c1.num, 1);
//! assert!(c1.shards.iter().all(|&g| g == 100));
//! let c2 = ctl.apply(&ControllerCommand::Join(vec![(200, vec![4, 5, 6])])).unwrap();
//! assert_eq!(c2.shards_of(200).len(), 4);
//! // A bad request changes nothing.
//! assert!(ctl.apply(&ControllerCommand::Leave(vec![999])).is_err());
//! assert_eq!(ctl.latest().num, 2);
//! assert_eq!(ctl.apply(&ControllerCommand::Query(Some(1))).unwrap(), c1);
//! ```

pub mod balance;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};

use crate::raft::NodeId;

/// A replica group's id; 0 is reserved for "no group"
pub type GroupId = u64;
/// A shard's number, `0..shard_count`
pub type ShardId = u32;
/// The owner of a shard that no group holds
pub const UNASSIGNED: GroupId = 0;

/// One numbered configuration: the owner of every shard and the replicas of every group
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Configuration {
    /// The configuration number; 0 is the initial one with no groups
    pub num: u64,
    /// `shards[s]` is the group owning shard `s` ([`UNASSIGNED`] when there are no groups)
    pub shards: Vec<GroupId>,
    /// Every group's replicas (the nodes hosting one), by group id
    pub groups: BTreeMap<GroupId, Vec<NodeId>>,
}

impl Configuration {
    /// The group owning `shard` ([`UNASSIGNED`] for an unknown shard)
    pub fn owner(&self, shard: ShardId) -> GroupId {
        self.shards
            .get(shard as usize)
            .copied()
            .unwrap_or(UNASSIGNED)
    }

    /// The shards `gid` owns, ascending
    pub fn shards_of(&self, gid: GroupId) -> Vec<ShardId> {
        (0..self.shards.len() as ShardId)
            .filter(|&s| self.owner(s) == gid)
            .collect()
    }
}

/// An administrative command to the controller
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerCommand {
    /// Add groups with their replicas, then rebalance
    Join(Vec<(GroupId, Vec<NodeId>)>),
    /// Remove groups, then rebalance
    Leave(Vec<GroupId>),
    /// Give `shard` to group `gid` (no rebalancing)
    Move {
        /// The shard
        shard: ShardId,
        /// Its new owner
        gid: GroupId,
    },
    /// The configuration numbered `num`, or the latest for `None`
    Query(Option<u64>),
    /// From now on, a join or leave moves at most this many shards holding data per
    /// configuration (0: any number); makes no configuration and answers the latest. In the
    /// log, so every replica stages the same configurations from the same commands.
    SetMaxMovesPerConfig(u32),
}

impl ControllerCommand {
    /// Whether `error`, the answer to a retry of this command, only says that an earlier
    /// attempt of it was applied: a Join refused as already joined for one of its own groups,
    /// or a Leave refused as unknown for one of its own (a client then asks for the latest
    /// configuration instead of reporting the refusal)
    pub fn refusal_means_applied(&self, error: &ControllerError) -> bool {
        match (self, error) {
            (ControllerCommand::Join(groups), ControllerError::AlreadyJoined(g)) => {
                groups.iter().any(|(gid, _)| gid == g)
            }
            (ControllerCommand::Leave(gids), ControllerError::UnknownGroup(g)) => gids.contains(g),
            _ => false,
        }
    }
}

/// Why the controller refused a command; the history is unchanged
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerError {
    /// The command names no group
    EmptyRequest,
    /// Group id 0 is reserved
    ReservedGroup,
    /// This group has already joined
    AlreadyJoined(GroupId),
    /// The same group appears twice in one command
    Duplicate(GroupId),
    /// A group must have at least one replica
    NoReplicas(GroupId),
    /// No such group in the latest configuration
    UnknownGroup(GroupId),
    /// The shard number is not below the shard count
    ShardOutOfRange {
        /// The refused shard
        shard: ShardId,
        /// The number of shards
        shards: u32,
    },
    /// A leave of every group while shards hold data: nobody would own them, and a group
    /// joining later would serve them empty while a lagging old owner still served its copy
    NoGroupLeft,
    /// No configuration has this number
    UnknownConfig {
        /// The number asked for
        num: u64,
        /// The latest number
        latest: u64,
    },
}

impl fmt::Display for ControllerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControllerError::EmptyRequest => f.write_str("the command names no group"),
            ControllerError::ReservedGroup => f.write_str("group id 0 is reserved"),
            ControllerError::AlreadyJoined(g) => write!(f, "group {g} has already joined"),
            ControllerError::Duplicate(g) => write!(f, "group {g} appears twice in the command"),
            ControllerError::NoReplicas(g) => write!(f, "group {g} has no replicas"),
            ControllerError::UnknownGroup(g) => write!(f, "group {g} is not in the configuration"),
            ControllerError::ShardOutOfRange { shard, shards } => {
                write!(f, "shard {shard} does not exist (there are {shards})")
            }
            ControllerError::UnknownConfig { num, latest } => {
                write!(f, "no configuration {num} (the latest is {latest})")
            }
            ControllerError::NoGroupLeft => {
                f.write_str("the command would leave the shards without any group")
            }
        }
    }
}

impl core::error::Error for ControllerError {}

/// The controller's state: every configuration made, in order
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardController {
    configs: Vec<Configuration>,
    /// Most shards holding data that one configuration moves (0: any number)
    max_moves_per_config: u32,
}

impl ShardController {
    /// A controller for `shard_count` shards, holding configuration 0 (no groups); a join or
    /// leave moves every shard it must in one configuration
    pub fn new(shard_count: u32) -> Self {
        ShardController::with_max_moves(shard_count, 0)
    }

    /// A controller whose joins and leaves move at most `max_moves_per_config` shards that
    /// hold data per configuration (0: any number): one command then makes a series of
    /// configurations, each moving a few shards, ending at the balanced one
    ///
    /// Groups take configurations one at a time and a shard is unavailable while it moves,
    /// so a shard waits only for its own transfer instead of for every shard the command
    /// moves. Shards that nobody held (the first join) are given out at once.
    pub fn with_max_moves(shard_count: u32, max_moves_per_config: u32) -> Self {
        ShardController {
            configs: alloc::vec![Configuration {
                num: 0,
                shards: alloc::vec![UNASSIGNED; shard_count as usize],
                groups: BTreeMap::new(),
            }],
            max_moves_per_config,
        }
    }

    /// Most shards holding data that one configuration moves (0: any number)
    pub fn max_moves_per_config(&self) -> u32 {
        self.max_moves_per_config
    }

    /// Makes the configurations from the latest to `target`: at once, or in steps of at
    /// most `max_moves_per_config` moves of shards that hold data; the last one made
    fn stage(&mut self, target: Configuration) -> Configuration {
        let limit = self.max_moves_per_config as usize;
        let mut current = self.latest().clone();
        loop {
            let held_moves: Vec<usize> = (0..current.shards.len())
                .filter(|&s| {
                    current.shards[s] != UNASSIGNED && current.shards[s] != target.shards[s]
                })
                .collect();
            let mut next = Configuration {
                num: current.num + 1,
                shards: target.shards.clone(),
                groups: target.groups.clone(),
            };
            let last = limit == 0 || held_moves.len() <= limit;
            if !last {
                // Only the first `limit` shards with data move now; the others stay put.
                for &s in &held_moves[limit..] {
                    next.shards[s] = current.shards[s];
                }
                // A group that still holds shards stays listed, so others can pull from it.
                for g in next.shards.iter() {
                    if let Some(replicas) = current.groups.get(g) {
                        next.groups.entry(*g).or_insert_with(|| replicas.clone());
                    }
                }
            }
            self.configs.push(next.clone());
            if last {
                return next;
            }
            current = next;
        }
    }

    /// The latest configuration
    pub fn latest(&self) -> &Configuration {
        // Never empty: `new` creates configuration 0 and nothing removes configurations.
        &self.configs[self.configs.len() - 1]
    }

    /// Configuration `num`, if made
    pub fn config(&self, num: u64) -> Option<&Configuration> {
        self.configs.get(usize::try_from(num).ok()?)
    }

    /// Applies one command; returns the configuration it made (or the one queried)
    pub fn apply(&mut self, command: &ControllerCommand) -> Result<Configuration, ControllerError> {
        let latest = self.latest();
        let mut next = Configuration {
            num: latest.num + 1,
            shards: latest.shards.clone(),
            groups: latest.groups.clone(),
        };
        match command {
            ControllerCommand::Query(None) => return Ok(latest.clone()),
            ControllerCommand::SetMaxMovesPerConfig(max) => {
                let latest = latest.clone();
                self.max_moves_per_config = *max;
                return Ok(latest);
            }
            ControllerCommand::Query(Some(num)) => {
                return self
                    .config(*num)
                    .cloned()
                    .ok_or(ControllerError::UnknownConfig {
                        num: *num,
                        latest: latest.num,
                    });
            }
            ControllerCommand::Join(groups) => {
                if groups.is_empty() {
                    return Err(ControllerError::EmptyRequest);
                }
                for (i, (gid, replicas)) in groups.iter().enumerate() {
                    if *gid == UNASSIGNED {
                        return Err(ControllerError::ReservedGroup);
                    }
                    if next.groups.contains_key(gid) {
                        return Err(ControllerError::AlreadyJoined(*gid));
                    }
                    if groups[..i].iter().any(|(g, _)| g == gid) {
                        return Err(ControllerError::Duplicate(*gid));
                    }
                    if replicas.is_empty() {
                        return Err(ControllerError::NoReplicas(*gid));
                    }
                }
                for (gid, replicas) in groups {
                    next.groups.insert(*gid, replicas.clone());
                }
                let gids: Vec<GroupId> = next.groups.keys().copied().collect();
                balance::rebalance(&mut next.shards, &gids);
            }
            ControllerCommand::Leave(gids) => {
                if gids.is_empty() {
                    return Err(ControllerError::EmptyRequest);
                }
                for (i, gid) in gids.iter().enumerate() {
                    if !next.groups.contains_key(gid) {
                        return Err(ControllerError::UnknownGroup(*gid));
                    }
                    if gids[..i].contains(gid) {
                        return Err(ControllerError::Duplicate(*gid));
                    }
                }
                for gid in gids {
                    next.groups.remove(gid);
                }
                if next.groups.is_empty() && next.shards.iter().any(|&g| g != UNASSIGNED) {
                    return Err(ControllerError::NoGroupLeft);
                }
                let remaining: Vec<GroupId> = next.groups.keys().copied().collect();
                balance::rebalance(&mut next.shards, &remaining);
            }
            ControllerCommand::Move { shard, gid } => {
                let shards = next.shards.len() as u32;
                if *shard >= shards {
                    return Err(ControllerError::ShardOutOfRange {
                        shard: *shard,
                        shards,
                    });
                }
                if !next.groups.contains_key(gid) {
                    return Err(ControllerError::UnknownGroup(*gid));
                }
                if next.shards[*shard as usize] == *gid {
                    return Ok(latest.clone()); // nothing changes, so no new configuration
                }
                next.shards[*shard as usize] = *gid;
            }
        }
        Ok(self.stage(next))
    }
}

impl crate::rsm::StateMachine for ShardController {
    type Command = ControllerCommand;
    type Output = Result<Configuration, ControllerError>;

    fn apply(&mut self, _index: crate::raft::Index, command: ControllerCommand) -> Self::Output {
        ShardController::apply(self, &command)
    }

    /// The controller's history is small next to the data (it grows with configuration
    /// changes, not with keys), so its view is a clone, encoded whole
    fn snapshot(&self) -> alloc::boxed::Box<dyn crate::rsm::SnapshotEncoder> {
        alloc::boxed::Box::new(crate::rsm::WholeEncoder::new(self.clone()))
    }

    fn restorer(&self) -> alloc::boxed::Box<dyn crate::rsm::SnapshotDecoder> {
        alloc::boxed::Box::new(crate::rsm::WholeDecoder::<ShardController>::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn the_moves_per_configuration_are_set_through_the_log() {
        let mut ctl = ShardController::with_max_moves(8, 0);
        ctl.apply(&ControllerCommand::Join(vec![(1, vec![1])]))
            .unwrap();
        let latest = ctl
            .apply(&ControllerCommand::SetMaxMovesPerConfig(1))
            .unwrap();
        assert_eq!((latest.num, ctl.max_moves_per_config()), (1, 1));
        // A join now moves one held shard per configuration: four of them for four shards.
        let last = ctl
            .apply(&ControllerCommand::Join(vec![(2, vec![2])]))
            .unwrap();
        assert_eq!(last.num, 5);
    }

    #[test]
    fn a_leave_of_every_group_is_refused() {
        let mut ctl = ShardController::new(4);
        ctl.apply(&ControllerCommand::Join(vec![(1, vec![1]), (2, vec![2])]))
            .unwrap();
        assert_eq!(
            ctl.apply(&ControllerCommand::Leave(vec![1, 2])),
            Err(ControllerError::NoGroupLeft)
        );
        assert_eq!(ctl.latest().num, 1, "nothing was made");
        ctl.apply(&ControllerCommand::Leave(vec![1])).unwrap();
        assert_eq!(
            ctl.apply(&ControllerCommand::Leave(vec![2])),
            Err(ControllerError::NoGroupLeft)
        );
    }

    #[test]
    fn a_staged_join_or_leave_moves_a_few_held_shards_per_configuration() {
        let mut ctl = ShardController::with_max_moves(8, 2);
        // Nobody held any shard yet: the first join takes them all at once.
        let c1 = ctl
            .apply(&ControllerCommand::Join(vec![(1, vec![1])]))
            .unwrap();
        assert_eq!(c1.num, 1);
        let c = ctl
            .apply(&ControllerCommand::Join(vec![(2, vec![2]), (3, vec![3])]))
            .unwrap();
        let mut unstaged = ShardController::new(8);
        unstaged
            .apply(&ControllerCommand::Join(vec![(1, vec![1])]))
            .unwrap();
        let target = unstaged
            .apply(&ControllerCommand::Join(vec![(2, vec![2]), (3, vec![3])]))
            .unwrap();
        assert_eq!(
            c.shards, target.shards,
            "it ends at the balanced configuration"
        );
        assert_eq!(c.num, 1 + 3, "5 shards move, 2 per configuration");
        for n in 2..=c.num {
            let (a, b) = (ctl.config(n - 1).unwrap(), ctl.config(n).unwrap());
            let moved = a
                .shards
                .iter()
                .zip(&b.shards)
                .filter(|(x, y)| x != y)
                .count();
            assert!((1..=2).contains(&moved), "configuration {n} moves {moved}");
        }
        // A leave keeps the leaving group listed while it still holds shards.
        let left = ctl.apply(&ControllerCommand::Leave(vec![1])).unwrap();
        assert!(!left.groups.contains_key(&1));
        let before = ctl.config(left.num - 1).unwrap();
        assert!(before.groups.contains_key(&1) && before.shards.contains(&1));
        assert!(left.shards.iter().all(|&g| g == 2 || g == 3));
    }

    #[test]
    fn only_a_refusal_naming_the_commands_own_group_means_applied_before() {
        let join = ControllerCommand::Join(vec![(5, vec![1])]);
        assert!(join.refusal_means_applied(&ControllerError::AlreadyJoined(5)));
        assert!(!join.refusal_means_applied(&ControllerError::AlreadyJoined(6)));
        assert!(!join.refusal_means_applied(&ControllerError::NoReplicas(5)));
        let leave = ControllerCommand::Leave(vec![5]);
        assert!(leave.refusal_means_applied(&ControllerError::UnknownGroup(5)));
        assert!(!leave.refusal_means_applied(&ControllerError::AlreadyJoined(5)));
        let query = ControllerCommand::Query(None);
        assert!(!query.refusal_means_applied(&ControllerError::UnknownGroup(5)));
    }

    #[test]
    fn bad_requests_are_refused_and_change_nothing() {
        let mut ctl = ShardController::new(10);
        ctl.apply(&ControllerCommand::Join(vec![(1, vec![1])]))
            .unwrap();
        let before = ctl.clone();
        let refused = [
            (
                ControllerCommand::Join(vec![]),
                ControllerError::EmptyRequest,
            ),
            (
                ControllerCommand::Join(vec![(0, vec![1])]),
                ControllerError::ReservedGroup,
            ),
            (
                ControllerCommand::Join(vec![(1, vec![2])]),
                ControllerError::AlreadyJoined(1),
            ),
            (
                ControllerCommand::Join(vec![(2, vec![1]), (2, vec![3])]),
                ControllerError::Duplicate(2),
            ),
            (
                ControllerCommand::Join(vec![(3, vec![])]),
                ControllerError::NoReplicas(3),
            ),
            (
                ControllerCommand::Leave(vec![9]),
                ControllerError::UnknownGroup(9),
            ),
            (
                ControllerCommand::Leave(vec![]),
                ControllerError::EmptyRequest,
            ),
            (
                ControllerCommand::Leave(vec![1, 1]),
                ControllerError::Duplicate(1),
            ),
            (
                ControllerCommand::Move { shard: 10, gid: 1 },
                ControllerError::ShardOutOfRange {
                    shard: 10,
                    shards: 10,
                },
            ),
            (
                ControllerCommand::Move { shard: 0, gid: 4 },
                ControllerError::UnknownGroup(4),
            ),
            (
                ControllerCommand::Query(Some(7)),
                ControllerError::UnknownConfig { num: 7, latest: 1 },
            ),
        ];
        for (command, error) in refused {
            assert_eq!(ctl.apply(&command), Err(error), "{command:?}");
            assert_eq!(ctl, before, "{command:?} changed the history");
        }
    }

    #[test]
    fn history_stays_queryable_and_moves_number_only_real_changes() {
        let mut ctl = ShardController::new(4);
        let c1 = ctl
            .apply(&ControllerCommand::Join(vec![(5, vec![1, 2])]))
            .unwrap();
        let c2 = ctl
            .apply(&ControllerCommand::Join(vec![(6, vec![3])]))
            .unwrap();
        let c3 = ctl
            .apply(&ControllerCommand::Move { shard: 0, gid: 6 })
            .unwrap();
        assert_eq!((c1.num, c2.num, c3.num), (1, 2, 3));
        assert_eq!(c3.owner(0), 6);
        let same = ctl
            .apply(&ControllerCommand::Move { shard: 0, gid: 6 })
            .unwrap();
        assert_eq!(
            same.num, 3,
            "a move that changes nothing makes no configuration"
        );
        for c in [&c1, &c2, &c3] {
            assert_eq!(
                &ctl.apply(&ControllerCommand::Query(Some(c.num))).unwrap(),
                c
            );
        }
        assert_eq!(ctl.apply(&ControllerCommand::Query(None)).unwrap(), c3);
        assert_eq!(
            ctl.apply(&ControllerCommand::Leave(vec![5, 6])),
            Err(ControllerError::NoGroupLeft),
            "the shards would be left without an owner"
        );
    }
}
