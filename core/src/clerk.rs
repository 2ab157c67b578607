//! The client side of a sharded cluster: routing by configuration and retrying, sans-IO
//!
//! A [`Clerk`] turns an operation into [`ClerkAction`]s: send the request to a replica of the
//! group owning the key's shard, or fetch a newer configuration first. Feed it what happened
//! ([`Clerk::handle_reply`], [`Clerk::handle_config`], [`Clerk::handle_timeout`]) and it says
//! what to do next, until the operation is [`ClerkStep::Done`]. Every attempt of one operation
//! carries the same sequence number, so the group applies it at most once.
//!
//! ```
//! use shale_core::clerk::{Clerk, ClerkAction, ClerkStep};
//! use shale_core::controller::{ControllerCommand, ShardController};
//! use shale_core::group::GroupError;
//! use shale_core::shard::{KvOp, KvResult};
//!
//! let mut ctl = ShardController::new(4);
//! let config = ctl.apply(&ControllerCommand::Join(vec![(10, vec![1, 2, 3])])).unwrap();
//! let mut clerk = Clerk::new(7, 4);
//! // No configuration yet: the clerk asks for one.
//! assert_eq!(clerk.start(KvOp::Get { key: b"k".to_vec() }), ClerkAction::QueryConfig { num: None });
//! let ClerkStep::Act(ClerkAction::Send { gid, node, .. }) = clerk.handle_config(config) else { panic!() };
//! assert_eq!((gid, node), (10, 1));
//! // Node 1 is not the leader: try the next replica with the same request.
//! let step = clerk.handle_reply(Err(GroupError::Retry));
//! assert!(matches!(step, ClerkStep::Act(ClerkAction::Send { node: 2, .. })));
//! let step = clerk.handle_reply(Ok(KvResult::Value(None)));
//! assert_eq!(step, ClerkStep::Done(Ok(KvResult::Value(None))));
//! ```

use alloc::collections::BTreeMap;

use crate::controller::{Configuration, GroupId};
use crate::group::{ClientOutcome, GroupError};
use crate::raft::NodeId;
use crate::shard::{ClientId, ClientRequest, KvError, KvOp, KvResult, key_shard};

/// What the clerk wants done next
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClerkAction {
    /// Send `request` to `node`, a replica of group `gid`, and report its answer (or a timeout)
    Send {
        /// The group owning the key's shard
        gid: GroupId,
        /// The replica to try
        node: NodeId,
        /// The request (the same sequence number on every attempt)
        request: ClientRequest,
    },
    /// Fetch configuration `num` (the latest for `None`) from the controller and report it
    QueryConfig {
        /// The configuration wanted
        num: Option<u64>,
    },
}

/// The outcome of feeding the clerk
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClerkStep {
    /// Do this next
    Act(ClerkAction),
    /// The operation finished with this result
    Done(Result<KvResult, KvError>),
}

/// One client's router (one operation at a time)
#[derive(Clone, Debug)]
pub struct Clerk {
    client: ClientId,
    seq: u64,
    shard_count: u32,
    config: Option<Configuration>,
    /// Per group, the replica position to try first (the last one that answered)
    preferred: BTreeMap<GroupId, usize>,
    /// The operation in flight and the replica position being tried
    current: Option<(KvOp, usize)>,
    /// Replicas that timed out in a row
    timeouts: usize,
    /// An older configuration asked for (the one a group that is behind is in)
    asked_older: Option<u64>,
}

impl Clerk {
    /// A clerk for session `client` in a cluster of `shard_count` shards
    pub fn new(client: ClientId, shard_count: u32) -> Self {
        Clerk {
            client,
            seq: 0,
            shard_count,
            config: None,
            preferred: BTreeMap::new(),
            current: None,
            timeouts: 0,
            asked_older: None,
        }
    }

    /// The client session id
    pub fn client(&self) -> ClientId {
        self.client
    }

    /// The configuration the clerk routes by
    pub fn config(&self) -> Option<&Configuration> {
        self.config.as_ref()
    }

    /// Starts `op` (replacing any unfinished one); returns the first action
    pub fn start(&mut self, op: KvOp) -> ClerkAction {
        self.seq += 1;
        let gid = self.owner(&op);
        let first = gid
            .and_then(|g| self.preferred.get(&g).copied())
            .unwrap_or(0);
        self.current = Some((op, first));
        self.route()
    }

    /// The controller answered with `config` (a newer one than the clerk's, or the older one
    /// it asked for)
    pub fn handle_config(&mut self, config: Configuration) -> ClerkStep {
        let asked = self.asked_older == Some(config.num);
        if asked || self.config.as_ref().is_none_or(|c| config.num >= c.num) {
            self.asked_older = None;
            self.config = Some(config);
        }
        ClerkStep::Act(self.route())
    }

    /// The replica answered
    pub fn handle_reply(&mut self, outcome: ClientOutcome) -> ClerkStep {
        self.timeouts = 0;
        match outcome {
            Ok(result) => self.finish(Ok(result)),
            Err(GroupError::Kv(e)) => self.finish(Err(e)),
            // The group is in an older configuration than ours, where it does not own the key
            // (a change made of several configurations is under way): route by that one, whose
            // owner still holds the shard. Otherwise ours may be old: fetch the latest.
            // Configuration 0 has no groups (a group answering from it has only just started):
            // nothing to follow there, the latest is asked for instead.
            Err(GroupError::WrongGroup { config_num }) => {
                let behind =
                    config_num > 0 && self.config.as_ref().is_some_and(|c| config_num < c.num);
                let num = behind.then_some(config_num);
                self.asked_older = num;
                ClerkStep::Act(ClerkAction::QueryConfig { num })
            }
            // The right group, but the key has not arrived yet: ask again, at the next replica
            // (only the group's leader fetches a key ahead of its chunk, so a follower would
            // answer the same until the chunk comes).
            Err(GroupError::ShardMoving { .. }) => {
                self.next_replica();
                ClerkStep::Act(self.route())
            }
            // Nothing handed over yet: the previous owner may still serve the shard in the
            // configuration before this one (it has not moved on); route by that one.
            Err(GroupError::ShardPending { config_num, .. }) if config_num > 0 => {
                self.asked_older = Some(config_num - 1);
                ClerkStep::Act(ClerkAction::QueryConfig {
                    num: Some(config_num - 1),
                })
            }
            Err(GroupError::ShardPending { .. }) => ClerkStep::Act(self.route()),
            // Not the leader, or the answer was lost: try the next replica.
            Err(GroupError::Retry) => {
                self.next_replica();
                ClerkStep::Act(self.route())
            }
        }
    }

    /// The replica did not answer in time: try the next one; once every replica of the group
    /// timed out in a row, the group may have moved on without us, so fetch the latest
    /// configuration first
    pub fn handle_timeout(&mut self) -> ClerkStep {
        self.next_replica();
        self.timeouts += 1;
        let replicas = self.current_group_size();
        if replicas > 0 && self.timeouts >= replicas {
            self.timeouts = 0;
            return ClerkStep::Act(ClerkAction::QueryConfig { num: None });
        }
        ClerkStep::Act(self.route())
    }

    fn current_group_size(&self) -> usize {
        let (Some((op, _)), Some(config)) = (&self.current, &self.config) else {
            return 0;
        };
        self.owner(op)
            .and_then(|gid| config.groups.get(&gid))
            .map_or(0, |r| r.len())
    }

    fn finish(&mut self, result: Result<KvResult, KvError>) -> ClerkStep {
        if let Some((op, pos)) = self.current.take()
            && let Some(gid) = self.owner(&op)
        {
            self.preferred.insert(gid, pos);
        }
        ClerkStep::Done(result)
    }

    fn owner(&self, op: &KvOp) -> Option<GroupId> {
        let config = self.config.as_ref()?;
        let gid = config.owner(key_shard(op.key(), self.shard_count));
        config.groups.contains_key(&gid).then_some(gid)
    }

    fn next_replica(&mut self) {
        if let Some((_, pos)) = self.current.as_mut() {
            *pos += 1;
        }
    }

    /// Where the current operation goes now
    fn route(&self) -> ClerkAction {
        let Some((op, pos)) = &self.current else {
            return ClerkAction::QueryConfig { num: None };
        };
        let (Some(config), Some(gid)) = (&self.config, self.owner(op)) else {
            return ClerkAction::QueryConfig { num: None };
        };
        // A configuration naming a group without replicas routes nowhere: ask for another.
        let Some(replicas) = config.groups.get(&gid).filter(|r| !r.is_empty()) else {
            return ClerkAction::QueryConfig { num: None };
        };
        ClerkAction::Send {
            gid,
            node: replicas[pos % replicas.len()],
            request: ClientRequest {
                stamp_ms: 0,
                client: self.client,
                seq: self.seq,
                op: op.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{ControllerCommand, ShardController};
    use alloc::vec;

    #[test]
    fn wrong_group_refreshes_the_configuration_and_retries_keep_the_sequence() {
        let mut ctl = ShardController::new(2);
        let c1 = ctl
            .apply(&ControllerCommand::Join(vec![(1, vec![11])]))
            .unwrap();
        let c2 = ctl
            .apply(&ControllerCommand::Join(vec![(2, vec![21, 22])]))
            .unwrap();
        let key = (0..)
            .map(|i| alloc::format!("k{i}").into_bytes())
            .find(|k| c2.owner(key_shard(k, 2)) == 2)
            .unwrap();
        let mut clerk = Clerk::new(5, 2);
        clerk.handle_config(c1);
        let ClerkAction::Send {
            gid,
            request: first,
            ..
        } = clerk.start(KvOp::Put {
            key,
            value: vec![1],
        })
        else {
            panic!("routed");
        };
        assert_eq!(gid, 1);
        assert_eq!(
            clerk.handle_reply(Err(GroupError::WrongGroup { config_num: 2 })),
            ClerkStep::Act(ClerkAction::QueryConfig { num: None })
        );
        let ClerkStep::Act(ClerkAction::Send { gid, node, request }) = clerk.handle_config(c2)
        else {
            panic!("routed");
        };
        assert_eq!((gid, node), (2, 21));
        assert_eq!(request.seq, first.seq, "a retry is the same request");
        let ClerkStep::Act(ClerkAction::Send { node, .. }) = clerk.handle_timeout() else {
            panic!()
        };
        assert_eq!(node, 22);
        assert_eq!(
            clerk.handle_reply(Ok(KvResult::Done)),
            ClerkStep::Done(Ok(KvResult::Done))
        );
        // The next operation starts at the replica that answered, with the next sequence number.
        let ClerkAction::Send { node, request, .. } = clerk.start(KvOp::Get {
            key: request.op.key().to_vec(),
        }) else {
            panic!()
        };
        assert_eq!((node, request.seq), (22, first.seq + 1));
        assert_eq!(
            clerk.handle_reply(Err(GroupError::Kv(KvError::SessionExpired))),
            ClerkStep::Done(Err(KvError::SessionExpired))
        );
    }

    /// At start-up a group may answer from configuration 0, which it has not left yet: that
    /// configuration has no groups, so the clerk keeps its own and asks again, instead of
    /// following configuration 0 (where the host would wait forever for a group to appear)
    #[test]
    fn a_group_still_at_configuration_0_is_not_followed_there() {
        let mut ctl = ShardController::new(2);
        let c1 = ctl
            .apply(&ControllerCommand::Join(vec![(1, vec![11])]))
            .unwrap();
        let mut clerk = Clerk::new(5, 2);
        clerk.handle_config(c1);
        let ClerkAction::Send { .. } = clerk.start(KvOp::Put {
            key: b"k".to_vec(),
            value: vec![1],
        }) else {
            panic!("routed");
        };
        let step = clerk.handle_reply(Err(GroupError::WrongGroup { config_num: 0 }));
        assert!(
            !matches!(
                step,
                ClerkStep::Act(ClerkAction::QueryConfig { num: Some(0) })
            ),
            "followed configuration 0: {step:?}"
        );
    }
}

#[cfg(test)]
mod staged {
    use super::*;
    use crate::controller::{ControllerCommand, ShardController};
    use alloc::vec;

    #[test]
    fn a_group_behind_the_clerk_sends_it_to_the_configuration_that_group_is_in() {
        // Group 2 joins in steps of one shard: the latest configuration gives it shards that
        // group 1 still holds while the change goes on.
        let mut ctl = ShardController::with_max_moves(4, 1);
        ctl.apply(&ControllerCommand::Join(vec![(1, vec![11])]))
            .unwrap();
        let latest = ctl
            .apply(&ControllerCommand::Join(vec![(2, vec![21])]))
            .unwrap();
        assert_eq!(latest.num, 3, "two moves, one per configuration");
        let step = ctl.config(2).unwrap().clone();
        let shard = (0..4)
            .find(|&s| latest.owner(s) == 2 && step.owner(s) == 1)
            .unwrap();
        let key = (0..)
            .map(|i| alloc::format!("k{i}").into_bytes())
            .find(|k| key_shard(k, 4) == shard)
            .unwrap();
        let mut clerk = Clerk::new(5, 4);
        clerk.handle_config(latest.clone());
        let ClerkAction::Send { gid, .. } = clerk.start(KvOp::Get { key }) else {
            panic!("routed");
        };
        assert_eq!(gid, 2);
        // Group 2 is still in configuration 2, where it does not own the shard.
        assert_eq!(
            clerk.handle_reply(Err(GroupError::WrongGroup { config_num: 2 })),
            ClerkStep::Act(ClerkAction::QueryConfig { num: Some(2) })
        );
        let ClerkStep::Act(ClerkAction::Send { gid, .. }) = clerk.handle_config(step) else {
            panic!("routed");
        };
        assert_eq!(
            gid, 1,
            "the owner in that configuration still serves the shard"
        );
        // An older configuration not asked for is ignored.
        clerk.handle_config(ctl.config(1).unwrap().clone());
        assert_eq!(clerk.config().map(|c| c.num), Some(2));
        clerk.handle_config(latest);
        assert_eq!(clerk.config().map(|c| c.num), Some(3));
    }
}
