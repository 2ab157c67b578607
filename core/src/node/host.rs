//! [`Host`]: every replica of one node, its application messages and its clients, without
//! threads or sockets

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::controller::{Configuration, ControllerCommand, GroupId, ShardController};
use crate::group::AppMessage;
use alloc::boxed::Box;
use core::borrow::Borrow;

use crate::raft::{NodeId, Outgoing, Raft, Role, SnapshotMeta, SnapshotTask, Write};
use crate::rsm::{Release, RestoredState, SnapshotDecoder, SnapshotEncoder, SnapshotError};

use crate::shard::{KvError, KvResult};
use crate::time::{Duration, Instant};

use super::machines::{HostMachines, StandardMachines};
pub use super::replica::HostedReplica;
use super::sessions::{AdminError, Sessions};

/// The controller's group id on every node
pub const CONTROLLER_GROUP: GroupId = 0;

/// A storage operation of one group, in order per group
///
/// `Write` and `ReadChunk` belong on the group's WAL (in order with its writes). The two
/// snapshot operations do work in proportion to the state's size and belong on a worker, off
/// the node's loop; a runtime that stores snapshots beside the log must still make the
/// finished snapshot current in order with the group's writes (see `SaveSnapshot`).
#[derive(Debug)]
pub enum WalOp {
    /// Persist a write; answer [`WalDone::Persisted`]
    Write(Write),
    /// Encode the frozen state with `encoder`, store it durably as the group's snapshot
    /// unless the stored one is newer, then answer [`WalDone::SnapshotSaved`]
    SaveSnapshot {
        /// What it covers; `size_bytes` is 0 here: the runtime sets it to the encoded length
        meta: SnapshotMeta,
        /// The frozen state
        encoder: Box<dyn SnapshotEncoder>,
    },
    /// Read a chunk of the stored snapshot for a follower; answer [`WalDone::Chunk`]
    ReadChunk {
        /// The follower
        to: NodeId,
        /// The snapshot's last index
        index: u64,
        /// Where to read from
        offset: u64,
        /// Most bytes to read
        max_bytes: usize,
    },
    /// Decode the stored snapshot ending at `index` with `decoder`; answer
    /// [`WalDone::SnapshotLoaded`]
    LoadSnapshot {
        /// The snapshot's last index
        index: u64,
        /// Builds the state machine from the snapshot's bytes
        decoder: Box<dyn SnapshotDecoder>,
    },
}

/// What the runtime reports back about a [`WalOp`]
#[derive(Debug)]
pub enum WalDone {
    /// Every write of `gid` up to and including `id` is durable
    Persisted {
        /// The group
        gid: GroupId,
        /// The last durable write
        id: u64,
    },
    /// A chunk read for a follower (`None`: the snapshot is no longer stored)
    Chunk {
        /// The group
        gid: GroupId,
        /// The follower
        to: NodeId,
        /// The snapshot's last index
        index: u64,
        /// Where the chunk starts
        offset: u64,
        /// The bytes
        data: Option<Vec<u8>>,
    },
    /// A [`WalOp::SaveSnapshot`] finished
    SnapshotSaved {
        /// The group
        gid: GroupId,
        /// The snapshot's last index
        index: u64,
        /// Its size in bytes, now durable and current; `None` when a newer snapshot was stored
        /// meanwhile and this one was dropped
        size_bytes: Option<u64>,
    },
    /// A [`WalOp::LoadSnapshot`] finished
    SnapshotLoaded {
        /// The group
        gid: GroupId,
        /// The snapshot's last index
        index: u64,
        /// The built state; `None` when the stored snapshot is not the one asked for (a newer
        /// one replaced it); an error when its bytes did not decode
        state: Option<Result<RestoredState, SnapshotError>>,
    },
}

/// A client operation's handle, from [`Host::start_op`] or [`Host::start_admin`]
pub type OpId = u64;

/// Something for the runtime to do
#[derive(Debug)]
pub enum HostOutput {
    /// Hand to the WAL thread (in order, per group)
    Wal {
        /// The group
        gid: GroupId,
        /// The operation
        op: WalOp,
    },
    /// Send a Raft message of `gid` to `to`
    Raft {
        /// The group
        gid: GroupId,
        /// The message (its `to` is the peer)
        message: Outgoing,
    },
    /// Send an application message to node `to`
    App {
        /// The peer
        to: NodeId,
        /// The message
        message: AppMessage,
    },
    /// A client operation finished
    Done {
        /// From [`Host::start_op`]
        op: OpId,
        /// Its result
        result: Result<KvResult, KvError>,
    },
    /// A client operation was given up on at its deadline ([`HostConfig::op_timeout`]); it
    /// may or may not have been applied
    TimedOut {
        /// From [`Host::start_op`]
        op: OpId,
    },
    /// An administrative command finished
    AdminDone {
        /// From [`Host::start_admin`]
        op: OpId,
        /// The new configuration, or why it did not take effect
        result: Result<Configuration, AdminError>,
    },
    /// Drop this off the node's loop (a deleted shard, a replaced state: freeing it takes
    /// time in proportion to the data it held)
    Release(Release),
    /// A state machine could not restore its stored snapshot: the node must stop
    Fatal(String),
}

/// How a [`Host`] is set up
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// This node
    pub node: NodeId,
    /// The controller's voters (every node knows them, hosting a replica or not)
    pub controller_voters: Vec<NodeId>,
    /// The cluster's number of shards (fixed when the cluster is created)
    pub shard_count: u32,
    /// Replica groups the controller's first leader joins when the cluster is new (the
    /// controller has no configuration yet), with their replicas
    pub bootstrap_groups: Vec<(GroupId, Vec<NodeId>)>,
    /// Moves per configuration a new cluster's controller is given with its first join
    /// ([`ControllerCommand::SetMaxMovesPerConfig`], logged so every replica agrees; `None`:
    /// the controller's own); a cluster that exists keeps what its log says
    pub bootstrap_max_moves_per_config: Option<u32>,
    /// How long a client attempt waits for a replica's answer before trying another
    pub attempt_timeout: Duration,
    /// How long a client operation keeps trying before it is given up on
    pub op_timeout: Duration,
    /// Pause before retrying a replica that answered "not me" or "shard moving"
    pub retry_delay: Duration,
    /// How often the controller's leader retries joining [`bootstrap_groups`](Self::bootstrap_groups)
    pub bootstrap_interval: Duration,
    /// How long a forwarded request's reply route is kept without an answer
    pub forward_ttl: Duration,
    /// How long an administrative command keeps looking for the controller's leader
    pub admin_timeout: Duration,
    /// The first token this host gives requests; must differ by more than the tokens a boot
    /// uses from every earlier boot's, so a reply to a request of a previous life of this
    /// node is never taken for one of this life's (runtimes pass the boot time, e.g.
    /// microseconds since the epoch times 1000)
    pub first_token: u64,
    /// How often each leader checks whether to hand its group to the group's preferred voter
    /// (see [`preferred_leader`](super::preferred_leader)); `None` leaves leadership where
    /// elections put it
    pub leader_balance_interval: Option<Duration>,
}

impl HostConfig {
    /// Defaults for node `node`
    pub fn new(node: NodeId, controller_voters: Vec<NodeId>, shard_count: u32) -> Self {
        HostConfig {
            node,
            controller_voters,
            shard_count,
            bootstrap_groups: Vec::new(),
            bootstrap_max_moves_per_config: None,
            attempt_timeout: Duration::from_millis(1_000),
            op_timeout: Duration::from_secs(10),
            retry_delay: Duration::from_millis(5),
            bootstrap_interval: Duration::from_millis(500),
            forward_ttl: Duration::from_secs(30),
            admin_timeout: Duration::from_secs(10),
            first_token: 1,
            leader_balance_interval: None,
        }
    }
}

/// Where the reply to a request handed to a local replica goes
#[derive(Clone, Copy, Debug)]
pub(super) enum ReplyTo {
    /// A local session's attempt
    Local,
    /// Node `node`, which asked with `token`
    Remote { node: NodeId, token: u64 },
}

/// [`Host`]: every replica of one node, its application messages and its clients, without
/// threads or sockets
///
/// # Call order
///
/// 1. Any number of inputs: [`Host::handle_raft`], [`Host::handle_app`], [`Host::handle_wal`],
///    [`Host::handle_timeout`], and the front door's [`Host::open_session`],
///    [`Host::start_op`], [`Host::start_admin`].
/// 2. [`Host::flush`], which runs every replica until it has nothing more to do.
/// 3. [`Host::poll_output`] until it returns `None`: storage operations for the WAL thread,
///    Raft messages and application messages for peers, finished client operations.
/// 4. [`Host::poll_timeout`]: when to call [`Host::handle_timeout`] next.
///
/// Time is the core's [`Instant`]: the runtime converts its clock. Messages a replica may only
/// send once a write is durable are held inside the Raft core until
/// [`WalDone::Persisted`] comes back, so outputs can be sent as soon as they are polled.
#[derive(Debug)]
pub struct Host<M: HostMachines = StandardMachines> {
    pub(super) config: HostConfig,
    pub(super) replicas: BTreeMap<GroupId, HostedReplica<M>>,
    /// Snapshots asked from the WAL thread for restoring, per group
    restoring: BTreeMap<GroupId, u64>,
    pub(super) outputs: VecDeque<HostOutput>,
    /// Application messages this node sent itself, handled in [`Host::flush`]
    pub(super) loopback: VecDeque<AppMessage>,
    /// Requests handed to local replicas, by the token they were given
    pub(super) routes: BTreeMap<u64, (ReplyTo, Instant)>,
    pub(super) next_token: u64,
    /// Per (target group, lane), how many requests were sent, to take turns among replicas
    pub(super) turns: BTreeMap<(GroupId, u64), usize>,
    /// Per group, the node whose replica answered last
    pub(super) answered_last: BTreeMap<GroupId, NodeId>,
    pub(super) sessions: Sessions,
    next_bootstrap: Instant,
    next_sweep: Instant,
    /// Client requests of this node's sessions sent to another node's replica (see
    /// [`Host::forwarded_requests`])
    pub(super) forwarded_requests: u64,
    /// When [`Host::balance_leaders`] runs next
    pub(super) next_balance: Instant,
    pub(super) now: Instant,
}

impl<M: HostMachines> Host<M> {
    /// A host over `replicas` (already recovered from storage)
    pub fn new(
        config: HostConfig,
        replicas: BTreeMap<GroupId, HostedReplica<M>>,
        now: Instant,
    ) -> Host<M> {
        let next_token = config.first_token.max(1);
        let next_balance = now + config.leader_balance_interval.unwrap_or_default();
        Host {
            config,
            replicas,
            restoring: BTreeMap::new(),
            outputs: VecDeque::new(),
            loopback: VecDeque::new(),
            routes: BTreeMap::new(),
            next_token,
            turns: BTreeMap::new(),
            answered_last: BTreeMap::new(),
            sessions: Sessions::default(),
            next_bootstrap: now,
            next_sweep: now,
            next_balance,
            forwarded_requests: 0,
            now,
        }
    }

    /// This node's id
    pub fn id(&self) -> NodeId {
        self.config.node
    }

    /// How many client requests of this node's sessions were sent to a replica on another
    /// node (each attempt counts, retries too): zero while clients reach each key's leader
    pub fn forwarded_requests(&self) -> u64 {
        self.forwarded_requests
    }

    /// The hosted replicas, by group
    pub fn replicas(&self) -> &BTreeMap<GroupId, HostedReplica<M>> {
        &self.replicas
    }

    /// Starts hosting `replica` of group `gid` (recovered from storage by the runtime), in
    /// place of any replica of that group hosted before
    pub fn add_replica(&mut self, gid: GroupId, replica: HostedReplica<M>) {
        self.restoring.remove(&gid);
        self.replicas.insert(gid, replica);
    }

    /// The latest configuration this node's controller replica applied (`None` without one)
    pub fn local_config(&self) -> Option<&Configuration> {
        let ctl = self.replicas.get(&CONTROLLER_GROUP)?.controller()?;
        Some(ctl.latest())
    }

    pub(super) fn observe(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    pub(super) fn token(&mut self) -> u64 {
        let t = self.next_token;
        self.next_token += 1;
        t
    }

    /// A Raft message of group `gid` arrived
    pub fn handle_raft(&mut self, now: Instant, gid: GroupId, message: Outgoing) {
        self.observe(now);
        if let Some(r) = self.replicas.get_mut(&gid) {
            // Busy (a full outbox) drops the message; Raft recovers from loss.
            let _ = r
                .raft_mut()
                .handle_message(now, message.from, message.message);
        }
    }

    /// The WAL thread finished an operation
    pub fn handle_wal(&mut self, now: Instant, done: WalDone) {
        self.observe(now);
        match done {
            WalDone::Persisted { gid, id } => {
                if let Some(r) = self.replicas.get_mut(&gid) {
                    r.raft_mut().handle_persisted(now, id);
                }
            }
            WalDone::Chunk {
                gid,
                to,
                index,
                offset,
                data: Some(data),
            } => {
                if let Some(r) = self.replicas.get_mut(&gid) {
                    r.raft_mut()
                        .handle_snapshot_chunk(now, to, index, offset, data.into());
                }
            }
            WalDone::Chunk { data: None, .. } => {} // the core asks again
            WalDone::SnapshotSaved {
                gid,
                index,
                size_bytes,
            } => {
                if let Some(r) = self.replicas.get_mut(&gid) {
                    match size_bytes {
                        // Refused as stale (a newer one was installed meanwhile): Raft asks
                        // again later either way.
                        Some(size) => {
                            r.raft_mut().handle_snapshot_taken(now, index, size);
                        }
                        // A newer snapshot is stored: this one is stale, and Raft may ask for
                        // another once its log grows again.
                        None => r.raft_mut().handle_snapshot_dropped(now),
                    }
                }
            }
            WalDone::SnapshotLoaded { gid, index, state } => {
                if self.restoring.get(&gid) == Some(&index) {
                    self.restoring.remove(&gid);
                }
                let Some(r) = self.replicas.get_mut(&gid) else {
                    return;
                };
                if r.restore_wanted().map(|m| m.last.index) != Some(index) {
                    return; // a newer one is wanted: asked again in flush
                }
                // Storage moved on to a newer installed snapshot: flush asks for that one.
                let newer = r.raft().snapshot().is_some_and(|m| m.last.index > index);
                if state.is_none() && newer {
                    return;
                }
                let installed = match state {
                    Some(Ok(state)) => r.install(state),
                    Some(Err(e)) => {
                        self.outputs.push_back(HostOutput::Fatal(format!(
                            "group {gid}: the installed snapshot at index {index} does not \
                             restore: {e}"
                        )));
                        return;
                    }
                    None => false,
                };
                if !installed {
                    self.outputs.push_back(HostOutput::Fatal(format!(
                        "group {gid}: cannot restore the installed snapshot at index {index}"
                    )));
                }
            }
        }
    }

    /// The wall clock reads `unix_ms` (Unix milliseconds): every replica group's leader
    /// stamps the client requests it proposes with it, and serves reads at it (expiry; see
    /// [`GroupDriver::handle_wall_clock`](crate::group::GroupDriver::handle_wall_clock)).
    /// Call it whenever the clock is read, e.g. before each round of inputs
    pub fn handle_wall_clock(&mut self, unix_ms: u64) {
        for r in self.replicas.values_mut() {
            if let Some(d) = r.driver_mut() {
                d.handle_wall_clock(unix_ms);
            }
        }
    }

    /// Time passed: fires every due timer
    pub fn handle_timeout(&mut self, now: Instant) {
        self.observe(now);
        for r in self.replicas.values_mut() {
            r.handle_timeout(now);
        }
        self.bootstrap(now);
        self.balance_leaders(now);
        self.sessions_timeout(now);
        if now >= self.next_sweep {
            self.next_sweep = now + self.config.forward_ttl;
            let ttl = self.config.forward_ttl;
            self.routes
                .retain(|_, (_, since)| now.saturating_since(*since) < ttl);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work next
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = Some(self.next_sweep);
        let mut consider = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        };
        for r in self.replicas.values() {
            consider(r.poll_timeout());
        }
        consider(self.sessions.next_deadline());
        consider(self.next_balance());
        if !self.loopback.is_empty() {
            consider(Some(self.now)); // flush stopped at its round limit: more to do now
        }
        if self.wants_bootstrap() {
            consider(Some(self.next_bootstrap));
        }
        next
    }

    /// The next thing for the runtime to do
    pub fn poll_output(&mut self) -> Option<HostOutput> {
        self.outputs.pop_front()
    }

    fn wants_bootstrap(&self) -> bool {
        !self.config.bootstrap_groups.is_empty()
            && self.replicas.get(&CONTROLLER_GROUP).is_some_and(|r| {
                r.raft().role() == Role::Leader
                    && r.controller().is_some_and(|c| c.latest().num == 0)
            })
    }

    /// A new cluster: the controller's leader joins the bootstrap groups (once it commits,
    /// the configuration is no longer 0 and this stops; a repeat is refused harmlessly)
    fn bootstrap(&mut self, now: Instant) {
        if !self.wants_bootstrap() || now < self.next_bootstrap {
            return;
        }
        self.next_bootstrap = now + self.config.bootstrap_interval;
        let join = ControllerCommand::Join(self.config.bootstrap_groups.clone());
        let max_moves = self.config.bootstrap_max_moves_per_config;
        if let Some(HostedReplica::Controller(r)) = self.replicas.get_mut(&CONTROLLER_GROUP) {
            // A refused proposal (not leader any more, busy) is tried again next interval,
            // until the join makes configuration 1; the setting is logged before the join.
            if let Some(max) = max_moves
                && Borrow::<ShardController>::borrow(r.state()).max_moves_per_config() != max
                && r.propose(now, 0, &ControllerCommand::SetMaxMovesPerConfig(max))
                    .is_err()
            {
                return;
            }
            let _ = r.propose(now, 0, &join);
        }
    }

    /// Runs every replica until none has more to do, and routes what they produced
    pub fn flush(&mut self, now: Instant) {
        self.observe(now);
        // Bounded: each round either makes progress or stops; loopback messages can cause
        // more work, which the next round picks up.
        for _ in 0..64 {
            let mut progressed = false;
            while let Some(message) = self.loopback.pop_front() {
                progressed = true;
                let me = self.id();
                self.handle_app(now, me, message);
            }
            let gids: Vec<GroupId> = self.replicas.keys().copied().collect();
            for gid in gids {
                progressed |= self.drain(now, gid);
                self.route(now, gid);
            }
            if !progressed && self.loopback.is_empty() {
                return;
            }
        }
    }

    /// Drains one replica's Raft outputs and snapshot work; whether anything happened
    fn drain(&mut self, now: Instant, gid: GroupId) -> bool {
        let Some(r) = self.replicas.get_mut(&gid) else {
            return false;
        };
        let mut progressed = drain_raft(&mut self.outputs, gid, r.raft_mut());
        // Applies what committed, or takes note of a snapshot installed (the newest wins).
        r.process();
        while let Some(release) = r.poll_release() {
            self.outputs.push_back(HostOutput::Release(release));
        }
        if let Some(meta) = r.restore_wanted() {
            let index = meta.last.index;
            if self.restoring.get(&gid) != Some(&index) {
                self.restoring.insert(gid, index);
                let decoder = r.restorer();
                self.outputs.push_back(HostOutput::Wal {
                    gid,
                    op: WalOp::LoadSnapshot { index, decoder },
                });
            }
            return progressed; // nothing applies before the snapshot is restored
        }
        while let Some(s) = r.poll_snapshot_to_store() {
            progressed = true;
            match r.raft().snapshot_meta(s.index, 0) {
                Some(meta) => self.outputs.push_back(HostOutput::Wal {
                    gid,
                    op: WalOp::SaveSnapshot {
                        meta,
                        encoder: s.encoder,
                    },
                }),
                // Compacted past it meanwhile (a newer snapshot was installed): let Raft ask
                // again.
                None => r.raft_mut().handle_snapshot_dropped(now),
            }
        }
        while let Some(task) = r.poll_chunk_read() {
            progressed = true;
            if let SnapshotTask::ReadChunk {
                to,
                index,
                offset,
                max_bytes,
            } = task
            {
                self.outputs.push_back(HostOutput::Wal {
                    gid,
                    op: WalOp::ReadChunk {
                        to,
                        index,
                        offset,
                        max_bytes,
                    },
                });
            }
        }
        // Writes and messages the apply step caused go out in this round too.
        drain_raft(&mut self.outputs, gid, r.raft_mut()) || progressed
    }

    /// Sends `message` to node `to` (through the loopback when it is this node)
    pub(super) fn send_app(&mut self, to: NodeId, message: AppMessage) {
        if to == self.id() {
            self.loopback.push_back(message);
        } else {
            self.outputs.push_back(HostOutput::App { to, message });
        }
    }
}

/// An operator's change to one group's replicas, run on that group's leader
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupAdmin {
    /// Hand the group's leadership to node `to`
    TransferLeader {
        /// The group
        gid: GroupId,
        /// The new leader
        to: NodeId,
    },
    /// Make `node` a replica of the group: a learner first, a voter once caught up (run it
    /// again to promote)
    AddReplica {
        /// The group
        gid: GroupId,
        /// The node (it must host the group)
        node: NodeId,
    },
    /// Remove `node` from the group's voters and learners
    RemoveReplica {
        /// The group
        gid: GroupId,
        /// The node
        node: NodeId,
    },
    /// Snapshot this node's replica of the group now (and compact its log), leader or not
    Snapshot {
        /// The group
        gid: GroupId,
    },
}

impl<M: HostMachines> Host<M> {
    /// Runs an operator's change on this node's replica of the group, which must lead it
    /// (except for a snapshot, which any replica takes of itself); answers what happened, or
    /// why not (naming the leader to ask instead)
    pub fn group_admin(&mut self, now: Instant, admin: &GroupAdmin) -> Result<String, String> {
        self.observe(now);
        let id = self.id();
        let gid = match admin {
            GroupAdmin::TransferLeader { gid, .. }
            | GroupAdmin::AddReplica { gid, .. }
            | GroupAdmin::RemoveReplica { gid, .. }
            | GroupAdmin::Snapshot { gid } => *gid,
        };
        let Some(r) = self.replicas.get_mut(&gid) else {
            return Err(format!("node {id} hosts no replica of group {gid}"));
        };
        let raft = r.raft_mut();
        // A snapshot is this replica's own business; everything else is the leader's.
        let (voters, learners) = match *admin {
            GroupAdmin::Snapshot { .. } => {
                let applied = raft.applied_index();
                return if raft.request_snapshot() {
                    Ok(format!(
                        "node {id} group {gid}: snapshot at index {applied} asked for"
                    ))
                } else {
                    Err(format!(
                        "node {id} group {gid}: nothing applied since the last snapshot, or one \
                         is being taken"
                    ))
                };
            }
            _ if raft.role() != Role::Leader => {
                return Err(match raft.leader_hint() {
                    Some(l) => format!("node {id} does not lead group {gid}; node {l} does"),
                    None => format!("group {gid} has no leader right now"),
                });
            }
            GroupAdmin::TransferLeader { to, .. } => {
                raft.transfer_leader(now, to)
                    .map_err(|e| format!("{e:?}"))?;
                return Ok(format!("group {gid}: transferring leadership to node {to}"));
            }
            GroupAdmin::AddReplica { node, .. } => {
                let membership = raft.membership();
                let (mut voters, mut learners) =
                    (membership.voters().to_vec(), membership.learners().to_vec());
                if voters.contains(&node) {
                    return Ok(format!("group {gid}: node {node} is already a voter"));
                }
                if learners.contains(&node) {
                    learners.retain(|&n| n != node);
                    voters.push(node);
                } else {
                    learners.push(node);
                }
                (voters, learners)
            }
            GroupAdmin::RemoveReplica { node, .. } => {
                let membership = raft.membership();
                let mut voters = membership.voters().to_vec();
                let mut learners = membership.learners().to_vec();
                voters.retain(|&n| n != node);
                learners.retain(|&n| n != node);
                (voters, learners)
            }
        };
        let (mut voters, mut learners) = (voters, learners);
        voters.sort_unstable();
        learners.sort_unstable();
        raft.change_membership(now, &voters, &learners)
            .map_err(|e| format!("group {gid}: {e:?}"))?;
        Ok(format!(
            "group {gid}: changing to voters {voters:?}, learners {learners:?}"
        ))
    }
}

/// Moves one Raft node's writes and messages to `outputs`, in that order; whether there were any
fn drain_raft(outputs: &mut VecDeque<HostOutput>, gid: GroupId, raft: &mut Raft) -> bool {
    let mut progressed = false;
    while let Some(write) = raft.poll_write() {
        progressed = true;
        outputs.push_back(HostOutput::Wal {
            gid,
            op: WalOp::Write(write),
        });
    }
    while let Some(message) = raft.poll_message() {
        progressed = true;
        outputs.push_back(HostOutput::Raft { gid, message });
    }
    progressed
}
