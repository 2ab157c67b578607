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
//! - [`GroupRequest::FetchShard`]: pull the next chunk of a gained shard from its previous
//!   owner, whose replicas answer with [`GroupDriver::fetch`]; hand the answer to
//!   [`GroupDriver::handle_fetched`]. Each chunk is bounded
//!   ([`DriverConfig::handover_chunk_bytes`]) and read from a cursor kept in the replicated
//!   state, so a shard of any size moves as a series of bounded log entries, and a leader
//!   change on either side resumes the transfer where it stood. The next chunk is asked for as
//!   soon as the last one is applied;
//! - [`GroupRequest::DeleteShard`]: have the previous owner delete its copy, whose replicas
//!   answer with [`GroupDriver::delete`]; hand a `true` answer to
//!   [`GroupDriver::handle_deleted`].
//!
//! Every answer becomes a command in the group's log, so each step is replicated, survives
//! crashes, and is fenced by configuration numbers; lost or duplicated answers are harmless.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;
use core::borrow::Borrow;

use super::ahead::Parked;
use super::app::AppMessage;
use super::pull::{Pace, Pulls};
use super::state::{ClientOutcome, GroupCommand, GroupError, GroupState};
use crate::controller::{Configuration, GroupId, ShardId};
use crate::raft::{Index, NodeId, ProposeError, ReadConsistency, ReadError, Role};
use crate::rsm::{Replica, StateMachine};
use crate::shard::{Bytes, ClientRequest, KvOp, ShardChunk, ShardCursor, ShardLimits};
use crate::time::{Duration, Instant};

/// How a group driver paces its requests
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverConfig {
    /// How often the leader asks for the next configuration and retries pulls and deletes
    pub poll_interval: Duration,
    /// About how many bytes of a shard one hand-over chunk carries, in bytes (a chunk holds at
    /// least one key and value, so one larger than this makes a larger chunk); keep it well
    /// under the Raft `max_entry_bytes`, since each chunk is one log entry
    pub handover_chunk_bytes: usize,
    /// Chunks of one shard logged and not yet applied at once, at most (the pull asks for the
    /// next chunk while earlier ones commit)
    pub handover_window: usize,
    /// Keys of one shard being pulled fetched ahead of their chunk per poll interval, at most
    /// (clients waiting on others retry until their chunk comes)
    pub ahead_keys_max: usize,
    /// Bytes per second a group pulls, over all its shards (0: as fast as it can): moving
    /// shards costs CPU on every replica of both groups, which clients then wait for; keys
    /// clients ask for are fetched ahead of the rate
    pub handover_bytes_per_sec: u64,
    /// Keys the leader looks at for expired ones per poll, at most (0: expired keys stay,
    /// absent to clients, until written or deleted); see [`expiry`](super::expiry)
    pub expiry_sweep_keys: usize,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            poll_interval: Duration::from_millis(100),
            handover_chunk_bytes: 256 * 1024,
            handover_window: 4,
            ahead_keys_max: 4096,
            handover_bytes_per_sec: 0,
            expiry_sweep_keys: 1_000,
        }
    }
}

impl DriverConfig {
    /// The largest log entry a group with these `limits` writes, in bytes: a hand-over chunk
    /// (its budget plus one key and value over it) or a client's command (one key and value),
    /// with room for their encoding. The group's Raft `max_entry_bytes` must be at least this,
    /// or the largest values could neither be written nor moved.
    pub fn max_entry_bytes(&self, limits: &ShardLimits) -> usize {
        let item = limits.kv.max_key_bytes as usize + limits.kv.max_value_bytes as usize;
        self.handover_chunk_bytes + item + ENCODING_ROOM_BYTES
    }
}

/// Bytes allowed for the encoding around a command's keys and values
const ENCODING_ROOM_BYTES: usize = 64 * 1024;

/// Work for the runtime: deliver to the named group (any replica; the leader answers best)
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupRequest {
    /// Ask the controller for configuration `num`
    QueryConfig {
        /// The configuration wanted (the current one plus one)
        num: u64,
    },
    /// Ask group `from` for the chunk of `shard` (as of configuration `num`) at `cursor`
    FetchShard {
        /// The previous owner
        from: GroupId,
        /// Its replicas, as the previous configuration lists them
        replicas: Vec<NodeId>,
        /// The shard
        shard: ShardId,
        /// The configuration in which this group gained it
        num: u64,
        /// Where the chunk starts
        cursor: ShardCursor,
        /// About how many bytes it may carry
        max_bytes: u32,
    },
    /// Ask group `from` for some keys of `shard` (as of configuration `num`) ahead of their
    /// chunk, for clients waiting on them
    FetchKeys {
        /// The previous owner
        from: GroupId,
        /// Its replicas
        replicas: Vec<NodeId>,
        /// The shard
        shard: ShardId,
        /// The configuration in which this group gained it
        num: u64,
        /// The keys
        keys: Vec<Bytes>,
    },
    /// Send group `to`, which gained `shard` in `num`, the first chunk of it (its hand-over
    /// started here; answered like a [`GroupRequest::FetchShard`] answer)
    SendChunk {
        /// The new owner
        to: GroupId,
        /// Its replicas
        replicas: Vec<NodeId>,
        /// The shard
        shard: ShardId,
        /// The configuration in which the new owner gained it
        num: u64,
        /// The chunk
        chunk: ShardChunk,
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
    pub(super) replica: Replica<M>,
    pub(super) config: DriverConfig,
    next_poll: Instant,
    pub(super) requests: VecDeque<GroupRequest>,
    pub(super) replies: VecDeque<ClientReply>,
    reads: Vec<PendingRead>,
    /// The leader's pipelines of chunks to pull
    pulls: Pulls,
    /// The configuration from which the next one was last asked for outside the poll
    next_config_asked: Option<u64>,
    /// Per shard being pulled, the keys fetched ahead since the last poll
    pub(super) ahead_asked: BTreeMap<ShardId, BTreeSet<Bytes>>,
    /// Client requests waiting for keys fetched ahead
    pub(super) parked: Vec<Parked>,
    /// Shards whose hand-over this leader logged, with the group to send the first chunk to,
    /// its budget, and when
    handoffs: BTreeMap<ShardId, (GroupId, usize, Instant)>,
    /// The latest time an input brought
    now: Instant,
    /// The wall clock, Unix milliseconds, as of the last [`GroupDriver::handle_wall_clock`]
    /// (0 until then): stamps client requests and decides expiry for reads
    wall_ms: u64,
    /// Proposals of the group's own commands that Raft refused (each is retried at the next
    /// poll)
    propose_failures: u64,
    /// Where the walk for expired keys goes on (see [`expiry`](super::expiry))
    pub(super) sweep_cursor: Option<super::expiry::SweepCursor>,
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
            pulls: Pulls::default(),
            next_config_asked: None,
            ahead_asked: BTreeMap::new(),
            parked: Vec::new(),
            handoffs: BTreeMap::new(),
            now,
            wall_ms: 0,
            propose_failures: 0,
            sweep_cursor: None,
        }
    }

    /// The wall clock reads `unix_ms` (Unix milliseconds) now. Client requests this replica
    /// proposes as leader are stamped with it, and reads decide expiry with it (or with the
    /// shard's time, if later: each shard applies at the latest stamp it has seen, so a clock
    /// stepped back changes nothing until it catches up)
    pub fn handle_wall_clock(&mut self, unix_ms: u64) {
        self.wall_ms = unix_ms;
    }

    /// The wall clock as of the last [`handle_wall_clock`](Self::handle_wall_clock)
    pub fn wall_ms(&self) -> u64 {
        self.wall_ms
    }

    /// The latest time an input brought
    pub(super) fn now_seen(&self) -> Instant {
        self.now
    }

    /// The settings it runs with
    pub fn config(&self) -> &DriverConfig {
        &self.config
    }

    /// Proposals of the group's own commands (configuration changes, hand-over chunks and
    /// deletions) that Raft refused so far; each is retried at the next poll
    pub fn propose_failures(&self) -> u64 {
        self.propose_failures
    }

    /// Whether an installed snapshot waits to be restored: the applied state is stale until
    /// then, so nothing is served from it (reads, chunks, deletion answers)
    pub fn restoring(&self) -> bool {
        self.replica.restore_wanted().is_some()
    }

    /// Proposes one of the group's own commands, counting a refusal
    pub(super) fn propose_own(&mut self, now: Instant, command: &GroupCommand) -> bool {
        match self.replica.propose(now, 0, command) {
            Ok(_) => true,
            Err(_) => {
                self.propose_failures += 1;
                false
            }
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

    pub(super) fn is_leader(&self) -> bool {
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
        self.now = self.now.max(now);
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
            // A key still on its way: fetched ahead, and the request waits here for it.
            if matches!(e, GroupError::ShardMoving { .. })
                && self.park(token, request.op.clone(), Some(request.clone()))
            {
                return Ok(());
            }
            self.replies.push_back(ClientReply {
                token,
                outcome: Err(e),
            });
            return Ok(());
        }
        let mut request = request;
        request.stamp_ms = self.wall_ms;
        match self
            .replica
            .propose(now, token, &GroupCommand::Client(request))
        {
            Ok(_) => Ok(()),
            // Too large for one log entry (a transaction of large values): no retry can help,
            // so the client hears it now instead of retrying until its deadline.
            Err(ProposeError::TooLarge {
                size_bytes,
                max_bytes,
            }) => {
                self.replies.push_back(ClientReply {
                    token,
                    outcome: Err(GroupError::Kv(crate::shard::KvError::ValueTooLarge {
                        size_bytes: size_bytes as u64,
                        max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
                    })),
                });
                Ok(())
            }
            Err(e) => Err(e),
        }
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
        self.now = self.now.max(now);
        if now < self.next_poll {
            // A pull held back by the rate may go on now.
            if self.is_leader() && self.pulls.due().is_some_and(|t| t <= now) {
                self.ask_for_chunks();
            }
            return;
        }
        self.next_poll = now + self.config.poll_interval;
        // Requests still waiting for their keys are answered: their clients ask again.
        self.release_parked();
        if !self.is_leader() || self.restoring() {
            self.pulls.clear();
            return;
        }
        let state: &GroupState = self.replica.state().borrow();
        if state.settled() {
            let num = state.config.num + 1;
            self.requests.push_back(GroupRequest::QueryConfig { num });
        }
        self.pulls.poll(state);
        self.ahead_asked.clear();
        self.ask_for_chunks();
        self.sweep_expired(now);
        let state: &GroupState = self.replica.state().borrow();
        let num = state.config.num;
        let mut requests = Vec::new();
        for (shard, at) in state.deletes_owed() {
            requests.push(GroupRequest::DeleteShard {
                at,
                replicas: state.previous_replicas(at),
                shard,
                num,
            });
        }
        self.requests.extend(requests);
    }

    /// Asks for the chunks the pull pipelines want (see [`pull`](super::pull))
    fn ask_for_chunks(&mut self) {
        let state: &GroupState = self.replica.state().borrow();
        let term = self.replica.raft().term();
        let num = state.config.num;
        let max_bytes = u32::try_from(self.config.handover_chunk_bytes).unwrap_or(u32::MAX);
        let pace = Pace {
            now: self.now,
            window: self.config.handover_window,
            chunk_bytes: self.config.handover_chunk_bytes,
            bytes_per_sec: self.config.handover_bytes_per_sec,
        };
        let wanted = self.pulls.wanted(state, term, pace);
        for (shard, from, cursor) in wanted {
            let replicas = state.previous_replicas(from);
            self.requests.push_back(GroupRequest::FetchShard {
                from,
                replicas,
                shard,
                num,
                cursor,
                max_bytes,
            });
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) wants to run next
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        Some(match self.pulls.due() {
            Some(due) => due.min(self.next_poll),
            None => self.next_poll,
        })
    }

    /// The next request for another group, if any
    #[must_use]
    pub fn poll_request(&mut self) -> Option<GroupRequest> {
        self.requests.pop_front()
    }

    /// The controller answered with `config`: logged if it is the next one and the group settled
    pub fn handle_config(&mut self, now: Instant, config: Configuration) {
        let state = self.state();
        if self.is_leader()
            && !self.restoring()
            && config.num == state.config.num + 1
            && state.settled()
        {
            self.propose_own(now, &GroupCommand::Reconfigure(config));
        }
    }

    /// Another group asks for the chunk of `shard` (as of configuration `num`) at `from`: the
    /// chunk, at most about `max_bytes` (and [`DriverConfig::handover_chunk_bytes`]), once this
    /// group has moved there and offers the shard (`None`: not yet, or not now; ask again)
    ///
    /// A shard still served here ([`ShardStatus::Handing`](super::ShardStatus::Handing)) is
    /// handed over first: the leader logs `StartHandOff`, and once that is applied sends the
    /// first chunk to `requester` by itself ([`GroupRequest::SendChunk`]).
    pub fn fetch(
        &mut self,
        now: Instant,
        requester: GroupId,
        shard: ShardId,
        num: u64,
        from: &ShardCursor,
        max_bytes: usize,
    ) -> Option<ShardChunk> {
        if self.restoring() || self.refuses(requester, shard, num) {
            return None;
        }
        let budget = max_bytes.min(self.config.handover_chunk_bytes);
        if let Some(state) = self.state().offer(shard, num) {
            return Some(state.chunk(from, budget));
        }
        let handing = self.state().config.num == num
            && self
                .state()
                .shards
                .get(&shard)
                .is_some_and(|s| matches!(s.status, super::ShardStatus::Handing { .. }));
        let recent = self
            .handoffs
            .get(&shard)
            .is_some_and(|h| now.saturating_since(h.2) < self.config.poll_interval);
        if handing && self.is_leader() && !recent {
            let command = GroupCommand::StartHandOff { shard, num };
            if self.propose_own(now, &command) {
                self.handoffs.insert(shard, (requester, budget, now));
            }
        }
        None
    }

    /// Sends the first chunk of every shard whose hand-over just started
    fn send_first_chunks(&mut self) {
        if self.handoffs.is_empty() || !self.is_leader() {
            return;
        }
        let state: &GroupState = self.replica.state().borrow();
        let num = state.config.num;
        let mut sent = Vec::new();
        for (&shard, &(requester, budget, _)) in &self.handoffs {
            let Some(offered) = state.offer(shard, num) else {
                continue;
            };
            let replicas = state
                .config
                .groups
                .get(&requester)
                .cloned()
                .unwrap_or_default();
            self.requests.push_back(GroupRequest::SendChunk {
                to: requester,
                replicas,
                shard,
                num,
                chunk: offered.chunk(&ShardCursor::START, budget),
            });
            sent.push(shard);
        }
        for shard in sent {
            self.handoffs.remove(&shard);
        }
    }

    /// The previous owner answered with a chunk of `shard` (gained in configuration `num`):
    /// logged if it is the one the pull pipeline waits for, and the next one asked for at once
    pub fn handle_fetched(&mut self, now: Instant, shard: ShardId, num: u64, chunk: ShardChunk) {
        self.now = self.now.max(now);
        if !self.is_leader() || self.restoring() || self.state().config.num != num {
            return;
        }
        let term = self.replica.raft().term();
        if !self
            .pulls
            .accepts(shard, &chunk.from, term, self.config.handover_window)
        {
            return;
        }
        let (from, next) = (chunk.from.clone(), chunk.next.clone());
        // A chunk Raft refused (a leadership transfer, a full queue) is asked for again at the
        // next poll, not at once: with the previous owner on this node, asking at once would
        // loop without time passing.
        if self.propose_own(now, &GroupCommand::InstallChunk { shard, num, chunk }) {
            self.pulls.logged(shard, from, next);
            self.ask_for_chunks();
        }
    }

    /// Whether `requester` asks for `shard` of configuration `num` that this group hands to
    /// another group: refused, whatever the requester's configurations say
    fn refuses(&self, requester: GroupId, shard: ShardId, num: u64) -> bool {
        self.state()
            .hands_to(shard, num)
            .is_some_and(|to| to != requester)
    }

    /// Group `requester`, which gained `shard` in `num`, asks this group to delete its copy:
    /// `true` once deleted; otherwise the leader logs the deletion and the caller asks again
    /// (a group the shard is not handed to is refused)
    pub fn delete(&mut self, now: Instant, requester: GroupId, shard: ShardId, num: u64) -> bool {
        if self.restoring() || self.refuses(requester, shard, num) {
            return false;
        }
        if self.state().deleted(shard, num) {
            return true;
        }
        if self.is_leader() && self.state().config.num == num {
            self.propose_own(now, &GroupCommand::DeleteShard { shard, num });
        }
        false
    }

    /// The previous owner confirmed deleting `shard`: logged, which settles the shard here
    pub fn handle_deleted(&mut self, now: Instant, shard: ShardId, num: u64) {
        if self.is_leader()
            && !self.restoring()
            && self.state().deletes_owed().iter().any(|(s, _)| *s == shard)
        {
            self.propose_own(now, &GroupCommand::DeleteConfirmed { shard, num });
        }
    }

    // ----- applying -----

    /// A message for this replica's group ([`AppMessage::driver_group`]): a configuration it
    /// asked for, another group's request for a shard, or the answer to its own; returns the
    /// answer to send back to the sender, if any (other messages are ignored)
    pub fn handle_app(&mut self, now: Instant, message: AppMessage) -> Option<AppMessage> {
        self.now = self.now.max(now);
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
                from,
                max_bytes,
                ..
            } => {
                let chunk = self.fetch(now, requester, shard, num, &from, max_bytes as usize)?;
                return Some(AppMessage::Fetched {
                    gid: requester,
                    by: gid,
                    shard,
                    num,
                    chunk,
                });
            }
            AppMessage::Fetched {
                shard, num, chunk, ..
            } => self.handle_fetched(now, shard, num, chunk),
            AppMessage::FetchKeys {
                requester,
                shard,
                num,
                keys,
                ..
            } => {
                if self.restoring() || self.refuses(requester, shard, num) {
                    return None;
                }
                let entries = self.state().offer_keys(shard, num, &keys)?;
                return Some(AppMessage::KeysFetched {
                    gid: requester,
                    by: gid,
                    shard,
                    num,
                    entries,
                });
            }
            AppMessage::KeysFetched {
                shard,
                num,
                entries,
                ..
            } => self.handle_keys_fetched(now, shard, num, entries),
            AppMessage::Delete {
                requester,
                shard,
                num,
                ..
            } => {
                return self
                    .delete(now, requester, shard, num)
                    .then_some(AppMessage::Deleted {
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
        if self.restoring() {
            return; // the applied state is stale: reads wait for the snapshot
        }
        let applied = self.replica.raft().applied_index();
        let mut i = 0;
        while i < self.reads.len() {
            if self.reads[i].index.is_some_and(|index| index <= applied) {
                let r = self.reads.swap_remove(i);
                let outcome = self.read_now(&r.op);
                if matches!(outcome, Err(GroupError::ShardMoving { .. }))
                    && self.park(r.token, r.op.clone(), None)
                {
                    continue;
                }
                self.replies.push_back(ClientReply {
                    token: r.token,
                    outcome,
                });
            } else {
                i += 1;
            }
        }
        self.unpark();
        self.send_first_chunks();
        // A chunk applied: ask for the next one at once rather than at the next poll; and once
        // every shard settled, for the next configuration (a staged change follows at once).
        if self.is_leader() {
            self.ask_for_chunks();
            let state = self.state();
            let num = state.config.num;
            if state.settled() && self.next_config_asked != Some(num) {
                self.next_config_asked = Some(num);
                self.requests
                    .push_back(GroupRequest::QueryConfig { num: num + 1 });
            }
        }
    }

    /// Serves a read from the applied state, re-checking that the shard is still served here
    pub(super) fn read_now(&self, op: &KvOp) -> ClientOutcome {
        let state = self.state();
        let shard = state.check_op(op)?;
        let Some(slot) = state.shards.get(&shard) else {
            return Err(GroupError::WrongGroup {
                config_num: state.config.num,
            });
        };
        // A read runs the operation on a view (an O(1) clone) at this replica's clock, or the
        // shard's time if that is later (so a read never sees a key that a write already saw
        // expire): only read operations get here, and they change nothing.
        let at = self.wall_ms.max(slot.state.sessions.time_ms());
        let mut view = slot.state.kv.clone();
        crate::shard::apply_op(&mut view, op, &state.limits.kv, at).map_err(GroupError::Kv)
    }
}
