//! The driver of one replica of a replica group: the group state machine over Raft, client
//! requests, and the hand-over protocol with other groups, all sans-IO
//!
//! [`GroupDriver`] wraps a [`Replica`] of [`GroupState`] (or of any state machine that applies
//! [`GroupCommand`]s and lends its [`GroupState`], such as a wrapper that also digests the
//! commands it applies; see [`GroupMachine`]). The runtime moves the Raft node's
//! bytes exactly as for any replica (`replica_mut().raft_mut()`), then calls
//! [`GroupDriver::process`]. On top of that, the leader of the group periodically
//! ([`DriverConfig::poll_interval`], through [`GroupDriver::handle_timeout`]) asks for work
//! through [`GroupDriver::poll_request`]:
//!
//! - [`GroupRequest::QueryConfig`]: fetch the next configuration from the controller, once
//!   every shard has settled; answer with [`GroupDriver::handle_config`];
//! - [`GroupRequest::FetchShard`]: pull a gained shard from its previous owner, whose replicas
//!   answer with [`GroupDriver::fetch`]; hand the answer to [`GroupDriver::handle_fetched`];
//! - [`GroupRequest::DeleteShard`]: have the previous owner delete its copy, whose replicas
//!   answer with [`GroupDriver::delete`]; hand a `true` answer to
//!   [`GroupDriver::handle_deleted`].
//!
//! Every answer becomes a command in the group's log, so each step is replicated, survives
//! crashes, and is fenced by configuration numbers; lost or duplicated answers are harmless.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::borrow::Borrow;

use super::app::AppMessage;
use super::state::{ClientOutcome, GroupCommand, GroupError, GroupState};
use crate::controller::{Configuration, GroupId, ShardId};
use crate::raft::{Index, NodeId, ProposeError, ReadConsistency, ReadError, Role};
use crate::rsm::{Replica, StateMachine};
use crate::shard::{ClientRequest, KvOp, KvResult, ShardState};
use crate::time::{Duration, Instant};

/// How a group driver paces its requests
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// How often the leader asks for the next configuration and retries pulls and deletes
    pub poll_interval: Duration,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            poll_interval: Duration::from_millis(100),
        }
    }
}

/// Work for the runtime: deliver to the named group (any replica; the leader answers best)
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupRequest {
    /// Ask the controller for configuration `num`
    QueryConfig {
        /// The configuration wanted (the current one plus one)
        num: u64,
    },
    /// Ask group `from` for `shard` as of configuration `num`
    FetchShard {
        /// The previous owner
        from: GroupId,
        /// Its replicas, as the previous configuration lists them
        replicas: Vec<NodeId>,
        /// The shard
        shard: ShardId,
        /// The configuration in which this group gained it
        num: u64,
    },
    /// Ask group `at` to delete its copy of `shard`, which this group gained in `num`
    DeleteShard {
        /// The previous owner
        at: GroupId,
        /// Its replicas
        replicas: Vec<NodeId>,
        /// The shard
        shard: ShardId,
        /// The configuration in which this group gained it
        num: u64,
    },
}

/// An answer to a client: `token` is the runtime's handle for the client
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientReply {
    /// The token given with the request
    pub token: u64,
    /// What happened
    pub outcome: ClientOutcome,
}

#[derive(Clone, Debug)]
struct PendingRead {
    token: u64,
    /// A `Get` or a `MultiGet`
    op: KvOp,
    /// Set once the read index is known
    index: Option<Index>,
}

/// A state machine a [`GroupDriver`] can drive: it applies [`GroupCommand`]s as
/// [`GroupState`] does and lends that state (implemented for every such type)
pub trait GroupMachine:
    StateMachine<Command = GroupCommand, Output = Option<ClientOutcome>> + Borrow<GroupState>
{
}

impl<M> GroupMachine for M where
    M: StateMachine<Command = GroupCommand, Output = Option<ClientOutcome>> + Borrow<GroupState>
{
}

/// One replica of a replica group (see the module docs)
#[derive(Debug)]
pub struct GroupDriver<M: GroupMachine = GroupState> {
    replica: Replica<M>,
    config: DriverConfig,
    next_poll: Instant,
    requests: VecDeque<GroupRequest>,
    replies: VecDeque<ClientReply>,
    reads: Vec<PendingRead>,
}

impl<M: GroupMachine> GroupDriver<M> {
    /// A driver over `replica` (a Raft node and the group's state, recovered)
    pub fn new(replica: Replica<M>, config: DriverConfig, now: Instant) -> Self {
        GroupDriver {
            replica,
            config,
            next_poll: now,
            requests: VecDeque::new(),
            replies: VecDeque::new(),
            reads: Vec::new(),
        }
    }

    /// The replica, to read
    pub fn replica(&self) -> &Replica<M> {
        &self.replica
    }

    /// The replica, to drive its Raft node's writes, messages and timeouts
    pub fn replica_mut(&mut self) -> &mut Replica<M> {
        &mut self.replica
    }

    /// The group state as applied here
    pub fn state(&self) -> &GroupState {
        self.replica.state().borrow()
    }

    fn is_leader(&self) -> bool {
        self.replica.raft().role() == Role::Leader
    }

    // ----- clients -----

    /// A client's request; reads are served by ReadIndex, writes go through the log. The reply
    /// comes out of [`poll_reply`](Self::poll_reply) with `token`, which must not be 0 (the
    /// group's own commands use it).
    pub fn handle_client(
        &mut self,
        now: Instant,
        token: u64,
        request: ClientRequest,
    ) -> Result<(), ProposeError> {
        if request.op.is_read() {
            let raft = self.replica.raft_mut();
            return match raft.read(now, token, ReadConsistency::Linearizable) {
                Ok(()) => {
                    self.reads.push(PendingRead {
                        token,
                        op: request.op,
                        index: None,
                    });
                    Ok(())
                }
                Err(ReadError::NotLeader { hint }) => Err(ProposeError::NotLeader { hint }),
                Err(_) => Err(ProposeError::Busy),
            };
        }
        // Refuse at once what this group would refuse after a round trip through the log.
        if let Err(e) = self.state().check_op(&request.op) {
            self.replies.push_back(ClientReply {
                token,
                outcome: Err(e),
            });
            return Ok(());
        }
        self.replica
            .propose(now, token, &GroupCommand::Client(request))
            .map(|_| ())
    }

    /// The next answer to a client, if any
    #[must_use]
    pub fn poll_reply(&mut self) -> Option<ClientReply> {
        self.replies.pop_front()
    }

    // ----- the hand-over protocol -----

    /// Time for the next round of requests; call when [`poll_timeout`](Self::poll_timeout)
    /// comes (the Raft node's own timeouts are driven separately)
    pub fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_poll {
            return;
        }
        self.next_poll = now + self.config.poll_interval;
        if !self.is_leader() {
            return;
        }
        let state: &GroupState = self.replica.state().borrow();
        let num = state.config.num;
        let mut requests = Vec::new();
        if state.settled() {
            requests.push(GroupRequest::QueryConfig { num: num + 1 });
        }
        let replicas_of =
            |gid: GroupId| state.previous.groups.get(&gid).cloned().unwrap_or_default();
        for (shard, from) in state.pulls() {
            requests.push(GroupRequest::FetchShard {
                from,
                replicas: replicas_of(from),
                shard,
                num,
            });
        }
        for (shard, at) in state.deletes_owed() {
            requests.push(GroupRequest::DeleteShard {
                at,
                replicas: replicas_of(at),
                shard,
                num,
            });
        }
        self.requests.extend(requests);
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_poll)
    }

    /// The next request for another group, if any
    #[must_use]
    pub fn poll_request(&mut self) -> Option<GroupRequest> {
        self.requests.pop_front()
    }

    /// The controller answered with `config`: logged if it is the next one and the group settled
    pub fn handle_config(&mut self, now: Instant, config: Configuration) {
        let state = self.state();
        if self.is_leader() && config.num == state.config.num + 1 && state.settled() {
            let _ = self
                .replica
                .propose(now, 0, &GroupCommand::Reconfigure(config));
        }
    }

    /// Another group asks for `shard` as of configuration `num`: the data, once this group has
    /// moved there and offers it (`None`: not yet, ask again)
    pub fn fetch(&self, shard: ShardId, num: u64) -> Option<ShardState> {
        self.state().offer(shard, num).cloned()
    }

    /// The previous owner handed over `shard` as of configuration `num`: logged for install
    pub fn handle_fetched(&mut self, now: Instant, shard: ShardId, num: u64, state: ShardState) {
        if self.is_leader() && self.state().pulls().iter().any(|(s, _)| *s == shard) {
            let _ = self
                .replica
                .propose(now, 0, &GroupCommand::InstallShard { shard, num, state });
        }
    }

    /// Another group, which gained `shard` in `num`, asks this group to delete its copy: `true`
    /// once deleted; otherwise the leader logs the deletion and the caller asks again
    pub fn delete(&mut self, now: Instant, shard: ShardId, num: u64) -> bool {
        if self.state().deleted(shard, num) {
            return true;
        }
        if self.is_leader() && self.state().config.num == num {
            let _ = self
                .replica
                .propose(now, 0, &GroupCommand::DeleteShard { shard, num });
        }
        false
    }

    /// The previous owner confirmed deleting `shard`: logged, which settles the shard here
    pub fn handle_deleted(&mut self, now: Instant, shard: ShardId, num: u64) {
        if self.is_leader() && self.state().deletes_owed().iter().any(|(s, _)| *s == shard) {
            let _ = self
                .replica
                .propose(now, 0, &GroupCommand::DeleteConfirmed { shard, num });
        }
    }

    // ----- applying -----

    /// A message for this replica's group ([`AppMessage::driver_group`]): a configuration it
    /// asked for, another group's request for a shard, or the answer to its own; returns the
    /// answer to send back to the sender, if any (other messages are ignored)
    pub fn handle_app(&mut self, now: Instant, message: AppMessage) -> Option<AppMessage> {
        let gid = self.state().gid;
        match message {
            AppMessage::Config {
                for_gid: Some(_),
                config,
            } => self.handle_config(now, config),
            AppMessage::Fetch {
                requester,
                shard,
                num,
                ..
            } => {
                let state = self.fetch(shard, num)?;
                return Some(AppMessage::Fetched {
                    gid: requester,
                    by: gid,
                    shard,
                    num,
                    state,
                });
            }
            AppMessage::Fetched {
                shard, num, state, ..
            } => self.handle_fetched(now, shard, num, state),
            AppMessage::Delete {
                requester,
                shard,
                num,
                ..
            } => {
                return self.delete(now, shard, num).then_some(AppMessage::Deleted {
                    gid: requester,
                    by: gid,
                    shard,
                    num,
                });
            }
            AppMessage::Deleted { shard, num, .. } => self.handle_deleted(now, shard, num),
            _ => {}
        }
        None
    }

    /// Applies what became committed, serves reads whose index is applied, and collects client
    /// replies; call after draining the Raft node's writes and messages
    pub fn process(&mut self) {
        self.replica.process();
        while let Some(applied) = self.replica.poll_result() {
            if applied.token == 0 {
                continue; // the group's own commands
            }
            let outcome = match applied.output {
                Some(Some(outcome)) => outcome,
                _ => Err(GroupError::Retry),
            };
            self.replies.push_back(ClientReply {
                token: applied.token,
                outcome,
            });
        }
        while let Some(read) = self.replica.raft_mut().poll_read() {
            let Some(pos) = self.reads.iter().position(|r| r.token == read.ctx) else {
                continue;
            };
            match read.result {
                Ok(index) => self.reads[pos].index = Some(index),
                Err(_) => {
                    let r = self.reads.swap_remove(pos);
                    self.replies.push_back(ClientReply {
                        token: r.token,
                        outcome: Err(GroupError::Retry),
                    });
                }
            }
        }
        let applied = self.replica.raft().applied_index();
        let mut i = 0;
        while i < self.reads.len() {
            if self.reads[i].index.is_some_and(|index| index <= applied) {
                let r = self.reads.swap_remove(i);
                let outcome = self.read_now(&r.op);
                self.replies.push_back(ClientReply {
                    token: r.token,
                    outcome,
                });
            } else {
                i += 1;
            }
        }
    }

    /// Serves a read from the applied state, re-checking that the shard is still served here
    fn read_now(&self, op: &KvOp) -> ClientOutcome {
        let state = self.state();
        let shard = state.check_op(op)?;
        let kv = state.shards.get(&shard).map(|s| &s.state.kv);
        let value = |key: &[u8]| kv.and_then(|kv| kv.get(key)).cloned();
        match op {
            KvOp::MultiGet { keys } => {
                Ok(KvResult::Values(keys.iter().map(|k| value(k)).collect()))
            }
            other => Ok(KvResult::Value(value(other.key()))),
        }
    }
}
