//! [`NodeEngine`]: a [`Host`] with its transport and WAL thread, for any runtime's loop

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use shale_core::controller::{Configuration, ControllerCommand};
use shale_core::group::AppMessage;
use shale_core::raft::Role;
use shale_core::shard::{KvError, KvOp, KvResult};
use shale_core::time::Instant;

use super::boot::{NodeConfig, boot};
use super::digest::ReplicaDigest;
use super::driver::{GroupStatus, HandoverStatus, NodeError, NodeStatus};
use super::release::Releaser;
use super::wal::{Wal, WalEvent};
use crate::transport::{Delivery, PeerLinks, Sink, Transport};
use shale_core::group::HandoverDirection;
use shale_core::node::{
    AdminError, GroupAdmin, Host, HostConfig, HostOutput, OpId, SessionError, SessionId,
};

/// Where a call's answer goes (called exactly once, from the engine's thread)
pub type Reply<T> = Box<dyn FnOnce(T) + Send>;

/// The result of a key-value operation, or why the session refused it
pub type OpResult = Result<Result<KvResult, KvError>, SessionError>;

/// A request from a client or an operator
pub enum Call {
    /// Open a session; answers its id
    OpenSession(Reply<SessionId>),
    /// Close a session
    CloseSession(SessionId),
    /// Run an operation in a session
    Op(SessionId, KvOp, Reply<OpResult>),
    /// Run an administrative command through the controller's leader
    Admin(ControllerCommand, Reply<Result<Configuration, AdminError>>),
    /// Report the node's status
    Status(Reply<NodeStatus>),
    /// Change one group's replicas or leader (run on its leader)
    Group(GroupAdmin, Reply<Result<String, String>>),
    /// Digest every replica this node hosts (answered from a thread of its own; refused
    /// while another digest runs)
    Digest(Reply<Result<Vec<ReplicaDigest>, String>>),
}

/// Everything that wakes the engine
pub enum Input {
    /// A frame from a peer
    Peer(Delivery),
    /// The WAL thread finished something (or failed)
    Wal(WalEvent),
    /// A client's or operator's call
    Call(Call),
    /// Stop the node
    Stop,
}

/// Where the transport's readers and the WAL thread hand their inputs; `false` once the
/// engine's loop is gone
pub type Deliver = Arc<dyn Fn(Input) -> bool + Send + Sync>;

/// [`NodeEngine`]: a [`Host`] with its transport and WAL thread, for any runtime's loop
///
/// The engine does everything but wait: a runtime owns one, feeds it [`Input`]s from a channel
/// of its own kind (the transport's reader threads and the WAL thread push through the
/// `deliver` callback given to [`NodeEngine::start`]), and sleeps until the next input or
/// [`NodeEngine::poll_timeout`]. The call order for one round:
///
/// 1. [`NodeEngine::handle`] for each input received (a bounded number per round, so timers
///    are never starved by a flood of requests);
/// 2. [`NodeEngine::step`]: fires due timers, runs every replica, sends what they produced and
///    answers finished calls;
/// 3. wait until the next input or [`NodeEngine::poll_timeout`].
///
/// The blocking [`Node`](super::Node) runs this loop on a thread; the smol runtime in a task.
pub struct NodeEngine {
    host: Host,
    transport: Option<Box<dyn PeerLinks>>,
    wal: Wal,
    releaser: Releaser,
    clock: std::time::Instant,
    ops: HashMap<OpId, Reply<OpResult>>,
    admin: HashMap<OpId, Reply<Result<Configuration, AdminError>>>,
    last_client: u64,
}

impl std::fmt::Debug for NodeEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeEngine")
            .field("id", &self.host.id())
            .finish_non_exhaustive()
    }
}

impl NodeEngine {
    /// Boots the node from its data directory, binds its peer listener and starts the
    /// transport's and the WAL's threads, which hand their inputs to `deliver`
    pub fn start(config: &NodeConfig, deliver: Deliver) -> Result<NodeEngine, NodeError> {
        let peer_deliver = deliver.clone();
        NodeEngine::start_with(config, deliver, move || {
            let sink: Sink = Arc::new(move |d| peer_deliver(Input::Peer(d)));
            let bound = match &config.peer_listener {
                Some(listener) => listener
                    .try_clone()
                    .and_then(|l| Transport::accept_into(l, config.transport(), sink)),
                None => Transport::listen_into(config.listen, config.transport(), sink),
            };
            let mut transport = bound.map_err(|e| NodeError::Listen(config.listen, e))?;
            for (&id, &addr) in &config.peers {
                if id != config.id {
                    transport.add_peer(id, addr).map_err(NodeError::Io)?;
                }
            }
            Ok(Box::new(transport))
        })
    }

    /// Boots the node from its data directory, then calls `links` for its peer transport
    /// (which delivers what it receives on its own) and starts the WAL's threads, which hand
    /// their inputs to `deliver`
    pub fn start_with(
        config: &NodeConfig,
        deliver: Deliver,
        links: impl FnOnce() -> Result<Box<dyn PeerLinks>, NodeError>,
    ) -> Result<NodeEngine, NodeError> {
        let clock = std::time::Instant::now();
        let now = Instant::ZERO;
        let (replicas, storages) = boot(config, now).map_err(NodeError::Boot)?;
        let transport = links()?;
        let wal = Wal::start(storages, move |e| deliver(Input::Wal(e))).map_err(NodeError::Io)?;
        let releaser =
            Releaser::start(&format!("shale-release-n{}", config.id)).map_err(NodeError::Io)?;
        let mut host_config = HostConfig::new(
            config.id,
            config.controller_voters.clone(),
            config.shard_count,
        );
        host_config.bootstrap_groups = config.bootstrap_groups.clone();
        host_config.bootstrap_max_moves_per_config = Some(config.max_moves_per_config);
        host_config.leader_balance_interval = config.leader_balance_interval;
        // Tokens of this boot start above every earlier boot's (see HostConfig::first_token).
        let boot_micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        host_config.first_token = boot_micros.saturating_mul(1000);
        Ok(NodeEngine {
            host: Host::new(host_config, replicas, now),
            transport: Some(transport),
            wal,
            releaser,
            clock,
            ops: HashMap::new(),
            admin: HashMap::new(),
            last_client: 0,
        })
    }

    /// The address peers connect to
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.transport.as_ref().map(|t| t.local_addr())
    }

    /// The host, to read
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The engine's clock: time since it started, as the core counts it
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.clock.elapsed().as_micros() as u64)
    }

    /// How long until [`step`](Self::step) has timers to fire (`None`: nothing scheduled)
    pub fn poll_timeout(&self) -> Option<std::time::Duration> {
        let now = self.now();
        self.host
            .poll_timeout()
            .map(|t| std::time::Duration::from_micros(t.saturating_since(now).as_micros()))
    }

    /// Handles one input; `Ok(false)` when it asks the node to stop
    pub fn handle(&mut self, input: Input) -> Result<bool, NodeError> {
        let now = self.now();
        self.host.handle_wall_clock(unix_millis());
        match input {
            Input::Stop => return Ok(false),
            Input::Peer(Delivery::Raft(envelope)) => {
                self.host.handle_raft(now, envelope.group, envelope.message);
            }
            Input::Peer(Delivery::App { from, bytes }) => {
                // A peer that sends garbage loses only that message.
                if let Some(message) = AppMessage::decode(&bytes) {
                    self.host.handle_app(now, from, message);
                }
            }
            Input::Wal(WalEvent::Done(done)) => self.host.handle_wal(now, done),
            Input::Wal(WalEvent::Failed(reason)) => return Err(NodeError::Fatal(reason)),
            // For a runtime's metrics.
            Input::Wal(
                WalEvent::Synced { .. }
                | WalEvent::SnapshotBuilt { .. }
                | WalEvent::SnapshotRestored { .. },
            ) => {}
            Input::Call(call) => self.handle_call(now, call),
        }
        Ok(true)
    }

    fn handle_call(&mut self, now: Instant, call: Call) {
        match call {
            Call::OpenSession(reply) => {
                let client = self.next_client_id();
                reply(self.host.open_session(client));
            }
            Call::CloseSession(session) => self.host.close_session(session),
            Call::Op(session, op, reply) => match self.host.start_op(now, session, op) {
                Ok(id) => {
                    self.ops.insert(id, reply);
                }
                Err(e) => reply(Err(e)),
            },
            Call::Admin(command, reply) => {
                let id = self.host.start_admin(now, command);
                self.admin.insert(id, reply);
            }
            Call::Status(reply) => reply(self.status()),
            Call::Group(admin, reply) => reply(self.host.group_admin(now, &admin)),
            Call::Digest(reply) => super::digest::start(self.host.replicas().iter(), reply),
        }
    }

    /// A client id above every one this node handed out before, also across restarts
    /// (microseconds since the epoch, shifted, with the node id as the issuer in the low
    /// bits). Shards keep a session watermark per issuer, so only this node's own clock
    /// matters: a node whose clock is behind the others' is not refused as expired.
    fn next_client_id(&mut self) -> u64 {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let bits = shale_core::shard::CLIENT_ISSUER_BITS;
        let id = (micros << bits) | shale_core::shard::client_issuer(self.host.id());
        self.last_client = id.max(self.last_client + (1 << bits));
        self.last_client
    }

    /// Fires due timers, runs every replica, and sends or answers what came out
    pub fn step(&mut self) -> Result<(), NodeError> {
        let now = self.now();
        self.host.handle_wall_clock(unix_millis());
        if self.host.poll_timeout().is_some_and(|t| t <= now) {
            self.host.handle_timeout(now);
        }
        self.host.flush(now);
        while let Some(output) = self.host.poll_output() {
            match output {
                HostOutput::Wal { gid, op } => self.wal.submit(gid, op),
                HostOutput::Raft { gid, message } => {
                    if let Some(t) = &self.transport {
                        t.send(message.to, gid, message);
                    }
                }
                HostOutput::App { to, message } => {
                    if let Some(t) = &self.transport {
                        t.send_app(to, message.encode());
                    }
                }
                HostOutput::Done { op, result } => {
                    if let Some(reply) = self.ops.remove(&op) {
                        reply(Ok(result));
                    }
                }
                HostOutput::TimedOut { op } => {
                    if let Some(reply) = self.ops.remove(&op) {
                        reply(Err(SessionError::TimedOut));
                    }
                }
                HostOutput::AdminDone { op, result } => {
                    if let Some(reply) = self.admin.remove(&op) {
                        reply(result);
                    }
                }
                HostOutput::Release(release) => self.releaser.release(release),
                HostOutput::Fatal(reason) => return Err(NodeError::Fatal(reason)),
            }
        }
        Ok(())
    }

    /// The status of every replica
    pub fn status(&self) -> NodeStatus {
        let groups = self
            .host
            .replicas()
            .iter()
            .map(|(&gid, r)| {
                let raft = r.raft();
                let driver = r.driver();
                let state = driver.map(|d| d.state());
                let handovers = state
                    .map(|s| s.handovers())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|h| {
                        let (incoming, peer) = match h.direction {
                            HandoverDirection::In { from } => (true, from),
                            HandoverDirection::Out { to } => (false, to),
                        };
                        HandoverStatus {
                            shard: h.shard,
                            incoming,
                            peer,
                            keys: h.keys,
                            bytes: h.bytes,
                            total: h.total,
                        }
                    })
                    .collect();
                GroupStatus {
                    gid,
                    role: role_name(raft.role()).to_owned(),
                    term: raft.term(),
                    leader: raft.leader_hint(),
                    commit: raft.commit_index(),
                    applied: raft.applied_index(),
                    last_index: raft.last_index(),
                    keys: state.map_or(0, |s| s.served_keys()),
                    snapshot_index: raft.snapshot().map_or(0, |m| m.last.index),
                    snapshot_bytes: raft.snapshot().map_or(0, |m| m.size_bytes),
                    handovers,
                    received_keys: state.map_or(0, |s| s.received.keys),
                    received_bytes: state.map_or(0, |s| s.received.bytes),
                    propose_failures: driver.map_or(0, |d| d.propose_failures()),
                    restoring: r.restore_wanted().is_some(),
                    config_num: state.map_or(0, |s| s.config.num),
                }
            })
            .collect();
        NodeStatus {
            id: self.host.id(),
            groups,
            config: self.host.local_config().cloned(),
            forwarded_requests: self.host.forwarded_requests(),
        }
    }

    /// Finishes the writes already handed to the WAL thread, then stops every thread. Close
    /// the runtime's input channel first: a WAL thread reporting into a full channel nobody
    /// reads would never finish.
    pub fn shutdown(mut self) {
        self.wal.stop();
        self.releaser.stop();
        if let Some(t) = self.transport.take() {
            t.shutdown();
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Leader => "leader",
        Role::Follower => "follower",
        Role::Candidate => "candidate",
        Role::PreCandidate => "pre-candidate",
    }
}

/// The wall clock in Unix milliseconds (0 before 1970)
fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
