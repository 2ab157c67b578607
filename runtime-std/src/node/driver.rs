//! [`Node`]: the blocking-thread runtime around a [`Host`]

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration as StdDuration;

use serde::{Deserialize, Serialize};
use shale_core::controller::{Configuration, ControllerCommand, GroupId};
use shale_core::group::AppMessage;
use shale_core::raft::{NodeId, Role};
use shale_core::shard::{KvError, KvOp, KvResult};
use shale_core::time::Instant;

use super::boot::{BootError, NodeConfig, boot};
use super::host::{Host, HostConfig, HostOutput, OpId};
use super::sessions::{AdminError, SessionError, SessionId};
use super::wal::{Wal, WalEvent};
use crate::transport::{Delivery, Sink, Transport, TransportConfig};

/// Inputs queued for the driver thread
const INBOX_CAPACITY: usize = 8192;
/// Most inputs the driver handles before it looks at its timers again
const MAX_INPUTS_PER_ROUND: usize = 1024;
/// Longest the driver sleeps without input
const MAX_IDLE: StdDuration = StdDuration::from_millis(100);
/// How long a [`NodeHandle`] call waits for the driver
const CALL_TIMEOUT: StdDuration = StdDuration::from_secs(30);

/// One group's state on this node, as [`NodeHandle::status`] reports it
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStatus {
    /// The group
    pub gid: GroupId,
    /// `leader`, `follower`, `candidate`, `pre-candidate` or `learner`
    pub role: String,
    /// Current term
    pub term: u64,
    /// The leader this replica knows of
    pub leader: Option<NodeId>,
    /// Highest index known committed
    pub commit: u64,
    /// Highest index applied
    pub applied: u64,
    /// Last index in the log
    pub last_index: u64,
}

/// A node's state, as [`NodeHandle::status`] reports it
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The node
    pub id: NodeId,
    /// Its replicas
    pub groups: Vec<GroupStatus>,
    /// The latest configuration its controller replica applied (`None` without one)
    pub config: Option<Configuration>,
}

/// Why a node stopped or a call failed
#[derive(Debug)]
pub enum NodeError {
    /// The node could not boot
    Boot(BootError),
    /// A socket or thread could not be set up
    Io(std::io::Error),
    /// Storage failed, or a state machine could not restore: the node stopped
    Fatal(String),
    /// The node is not running
    Stopped,
    /// A session call was refused
    Session(SessionError),
    /// The driver did not answer in time
    Timeout,
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Boot(e) => write!(f, "cannot start: {e}"),
            NodeError::Io(e) => write!(f, "{e}"),
            NodeError::Fatal(reason) => write!(f, "stopped: {reason}"),
            NodeError::Stopped => f.write_str("the node is not running"),
            NodeError::Session(e) => write!(f, "{e}"),
            NodeError::Timeout => f.write_str("the node did not answer in time"),
        }
    }
}

impl std::error::Error for NodeError {}

/// Where an operation's result goes
type OpReply = SyncSender<Result<Result<KvResult, KvError>, SessionError>>;

enum Call {
    OpenSession(SyncSender<SessionId>),
    CloseSession(SessionId),
    Op(
        SessionId,
        KvOp,
        SyncSender<Result<Result<KvResult, KvError>, SessionError>>,
    ),
    Admin(
        ControllerCommand,
        SyncSender<Result<Configuration, AdminError>>,
    ),
    Status(SyncSender<NodeStatus>),
}

enum Input {
    Peer(Delivery),
    Wal(WalEvent),
    Call(Call),
    Stop,
}

/// A running node; see the [module documentation](super)
pub struct Node {
    inbox: SyncSender<Input>,
    thread: Option<JoinHandle<Result<(), NodeError>>>,
    peer_addr: SocketAddr,
}

/// A cheap, cloneable way to call a running [`Node`] from any thread
#[derive(Clone)]
pub struct NodeHandle {
    inbox: SyncSender<Input>,
}

impl fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeHandle")
    }
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("peer_addr", &self.peer_addr)
            .finish()
    }
}

impl Node {
    /// Boots the node from its data directory and starts its threads
    pub fn start(config: NodeConfig) -> Result<Node, NodeError> {
        let clock = std::time::Instant::now();
        let now = Instant::ZERO;
        let (replicas, storages) = boot(&config, now).map_err(NodeError::Boot)?;
        let (inbox, rx) = sync_channel(INBOX_CAPACITY);
        let peer_inbox = inbox.clone();
        let sink: Sink = Arc::new(move |d| peer_inbox.send(Input::Peer(d)).is_ok());
        let transport_config = TransportConfig::new(config.cluster_id, config.id);
        let mut transport =
            Transport::listen_into(config.listen, transport_config, sink).map_err(NodeError::Io)?;
        for (&id, &addr) in &config.peers {
            if id != config.id {
                transport.add_peer(id, addr).map_err(NodeError::Io)?;
            }
        }
        let wal_inbox = inbox.clone();
        let wal = Wal::start(storages, move |e| wal_inbox.send(Input::Wal(e)).is_ok())
            .map_err(NodeError::Io)?;
        let mut host_config = HostConfig::new(
            config.id,
            config.controller_voters.clone(),
            config.shard_count,
        );
        host_config.bootstrap_groups = config.bootstrap_groups.clone();
        let host = Host::new(host_config, replicas, now);
        let peer_addr = transport.local_addr();
        let thread = std::thread::Builder::new()
            .name(format!("shale-node-{}", config.id))
            .spawn(move || {
                let mut driver = Driver {
                    host,
                    transport: Some(transport),
                    wal,
                    clock,
                    ops: HashMap::new(),
                    admin: HashMap::new(),
                    last_client: 0,
                };
                let result = driver.run(&rx);
                driver.wal.stop();
                if let Some(t) = driver.transport.take() {
                    t.shutdown();
                }
                result
            })
            .map_err(NodeError::Io)?;
        Ok(Node {
            inbox,
            thread: Some(thread),
            peer_addr,
        })
    }

    /// The address peers connect to
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// A handle to call the node
    pub fn handle(&self) -> NodeHandle {
        NodeHandle {
            inbox: self.inbox.clone(),
        }
    }

    /// Stops the node: writes already handed to the WAL thread are finished, then every
    /// thread is joined. Returns the error the node stopped on, if it did.
    pub fn stop(mut self) -> Result<(), NodeError> {
        let _ = self.inbox.send(Input::Stop);
        self.join()
    }

    /// Waits until the node stops by itself (a fatal error) and returns why
    pub fn join(&mut self) -> Result<(), NodeError> {
        match self.thread.take() {
            Some(t) => t.join().unwrap_or(Err(NodeError::Stopped)),
            None => Ok(()),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.inbox.send(Input::Stop);
        let _ = self.join();
    }
}

impl NodeHandle {
    fn call<T>(&self, make: impl FnOnce(SyncSender<T>) -> Call) -> Result<T, NodeError> {
        let (tx, rx) = sync_channel(1);
        self.inbox
            .send(Input::Call(make(tx)))
            .map_err(|_| NodeError::Stopped)?;
        rx.recv_timeout(CALL_TIMEOUT).map_err(|e| match e {
            RecvTimeoutError::Timeout => NodeError::Timeout,
            RecvTimeoutError::Disconnected => NodeError::Stopped,
        })
    }

    /// Opens a client session (exactly-once for its operations)
    pub fn open_session(&self) -> Result<SessionId, NodeError> {
        self.call(Call::OpenSession)
    }

    /// Closes a session
    pub fn close_session(&self, session: SessionId) {
        let _ = self.inbox.send(Input::Call(Call::CloseSession(session)));
    }

    /// Runs `op` in `session` and waits for its result (linearizable)
    pub fn op(&self, session: SessionId, op: KvOp) -> Result<Result<KvResult, KvError>, NodeError> {
        self.call(|tx| Call::Op(session, op, tx))?
            .map_err(NodeError::Session)
    }

    /// Runs an administrative command through the controller's leader
    pub fn admin(
        &self,
        command: ControllerCommand,
    ) -> Result<Result<Configuration, AdminError>, NodeError> {
        self.call(|tx| Call::Admin(command, tx))
    }

    /// The node's groups, roles, terms and indexes, and its latest configuration
    pub fn status(&self) -> Result<NodeStatus, NodeError> {
        self.call(Call::Status)
    }
}

struct Driver {
    host: Host,
    transport: Option<Transport>,
    wal: Wal,
    clock: std::time::Instant,
    ops: HashMap<OpId, OpReply>,
    admin: HashMap<OpId, SyncSender<Result<Configuration, AdminError>>>,
    last_client: u64,
}

impl Driver {
    fn now(&self) -> Instant {
        Instant::from_micros(self.clock.elapsed().as_micros() as u64)
    }

    fn run(&mut self, rx: &Receiver<Input>) -> Result<(), NodeError> {
        loop {
            let now = self.now();
            let wait = self.host.poll_timeout().map_or(MAX_IDLE, |t| {
                StdDuration::from_micros(t.saturating_since(now).as_micros()).min(MAX_IDLE)
            });
            let mut next = match rx.recv_timeout(wait) {
                Ok(input) => Some(input),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            let mut handled = 0;
            while let Some(input) = next.take() {
                let now = self.now();
                if !self.handle(now, input)? {
                    return Ok(());
                }
                handled += 1;
                if handled < MAX_INPUTS_PER_ROUND {
                    next = rx.try_recv().ok();
                }
            }
            let now = self.now();
            if self.host.poll_timeout().is_some_and(|t| t <= now) {
                self.host.handle_timeout(now);
            }
            self.host.flush(now);
            self.drain_outputs()?;
        }
    }

    /// Handles one input; `false` to stop
    fn handle(&mut self, now: Instant, input: Input) -> Result<bool, NodeError> {
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
            Input::Call(call) => self.handle_call(now, call),
        }
        Ok(true)
    }

    fn handle_call(&mut self, now: Instant, call: Call) {
        match call {
            Call::OpenSession(reply) => {
                let client = self.next_client_id();
                let _ = reply.send(self.host.open_session(client));
            }
            Call::CloseSession(session) => self.host.close_session(session),
            Call::Op(session, op, reply) => match self.host.start_op(now, session, op) {
                Ok(id) => {
                    self.ops.insert(id, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Call::Admin(command, reply) => {
                let id = self.host.start_admin(now, command);
                self.admin.insert(id, reply);
            }
            Call::Status(reply) => {
                let _ = reply.send(status(&self.host));
            }
        }
    }

    /// A client id above every one this node handed out before, also across restarts
    /// (microseconds since the epoch, shifted, with the node id in the low bits)
    fn next_client_id(&mut self) -> u64 {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let id = (micros << 12) | (self.host.id() & 0xfff);
        self.last_client = id.max(self.last_client + (1 << 12));
        self.last_client
    }

    fn drain_outputs(&mut self) -> Result<(), NodeError> {
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
                        let _ = reply.send(Ok(result));
                    }
                }
                HostOutput::AdminDone { op, result } => {
                    if let Some(reply) = self.admin.remove(&op) {
                        let _ = reply.send(result);
                    }
                }
                HostOutput::Fatal(reason) => return Err(NodeError::Fatal(reason)),
            }
        }
        Ok(())
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

/// The status of every replica of `host`
pub(crate) fn status(host: &Host) -> NodeStatus {
    let groups = host
        .replicas()
        .iter()
        .map(|(&gid, r)| {
            let raft = r.raft();
            GroupStatus {
                gid,
                role: role_name(raft.role()).to_owned(),
                term: raft.term(),
                leader: raft.leader_hint(),
                commit: raft.commit_index(),
                applied: raft.applied_index(),
                last_index: raft.last_index(),
            }
        })
        .collect();
    NodeStatus {
        id: host.id(),
        groups,
        config: host.local_config().cloned(),
    }
}
