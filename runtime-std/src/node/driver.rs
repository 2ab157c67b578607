//! [`Node`]: the blocking-thread runtime around a [`Host`]

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration as StdDuration;

use serde::{Deserialize, Serialize};
use shale_core::controller::{Configuration, ControllerCommand, GroupId};
use shale_core::raft::NodeId;
use shale_core::shard::{KvError, KvOp, KvResult};

use super::boot::{BootError, NodeConfig};
use super::engine::{Call, Deliver, Input, NodeEngine, Reply};
use shale_core::node::{AdminError, SessionId};

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
    /// Keys this replica serves, as applied here (0 for the controller)
    pub keys: u64,
    /// Last index covered by the group's snapshot on this node (0: none)
    pub snapshot_index: u64,
    /// Bytes of that snapshot's data
    pub snapshot_bytes: u64,
    /// Shards moving into or out of the group, as applied here
    pub handovers: Vec<HandoverStatus>,
    /// Keys the group received by hand-over, over its life
    pub received_keys: u64,
    /// Bytes of keys and values the group received by hand-over, over its life
    pub received_bytes: u64,
    /// The group's own proposals (configuration changes, hand-over chunks, deletions) that
    /// Raft refused on this replica; each was retried
    pub propose_failures: u64,
    /// An installed snapshot is being restored here (nothing is served meanwhile)
    pub restoring: bool,
    /// The shard configuration the group has applied here (0 for the controller)
    pub config_num: u64,
}

/// A shard moving into or out of a group
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverStatus {
    /// The shard
    pub shard: u32,
    /// `true`: moving in from `peer`; `false`: moving out to `peer`
    pub incoming: bool,
    /// The other group
    pub peer: GroupId,
    /// Keys moved so far (moving out: the keys the shard holds)
    pub keys: u64,
    /// Bytes moved so far (moving out: the bytes the shard holds)
    pub bytes: u64,
    /// Keys and bytes to move in all, once known
    pub total: Option<(u64, u64)>,
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
    /// Client requests this node sent to a replica on another node, since it started
    pub forwarded_requests: u64,
}

/// Why a node stopped or a call failed
#[derive(Debug)]
pub enum NodeError {
    /// The node could not boot
    Boot(BootError),
    /// The peer listener could not bind its address
    Listen(SocketAddr, std::io::Error),
    /// A socket or thread could not be set up
    Io(std::io::Error),
    /// Storage failed, or a state machine could not restore: the node stopped
    Fatal(String),
    /// The node is not running
    Stopped,
    /// A session call was refused
    Session(shale_core::node::SessionError),
    /// The driver did not answer in time
    Timeout,
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NodeError::Boot(e) => write!(f, "cannot start: {e}"),
            NodeError::Listen(addr, e) => write!(f, "cannot listen for peers on {addr}: {e}"),
            NodeError::Io(e) => write!(f, "{e}"),
            NodeError::Fatal(reason) => write!(f, "stopped: {reason}"),
            NodeError::Stopped => f.write_str("the node is not running"),
            NodeError::Session(e) => write!(f, "{e}"),
            NodeError::Timeout => f.write_str("the node did not answer in time"),
        }
    }
}

impl std::error::Error for NodeError {}

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
        let (inbox, rx) = sync_channel(INBOX_CAPACITY);
        let deliver_inbox = inbox.clone();
        let deliver: Deliver = Arc::new(move |input| deliver_inbox.send(input).is_ok());
        let mut engine = NodeEngine::start(&config, deliver)?;
        let peer_addr = engine.peer_addr().ok_or(NodeError::Stopped)?;
        let thread = std::thread::Builder::new()
            .name(format!("shale-node-{}", config.id))
            .spawn(move || {
                let result = run(&mut engine, &rx);
                // Reporters see the channel closed instead of waiting on a full one.
                drop(rx);
                engine.shutdown();
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
    fn call<T: Send + 'static>(&self, make: impl FnOnce(Reply<T>) -> Call) -> Result<T, NodeError> {
        let (tx, rx) = sync_channel(1);
        let reply: Reply<T> = Box::new(move |answer| {
            let _ = tx.send(answer);
        });
        self.inbox
            .send(Input::Call(make(reply)))
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

    /// The digests of every replica the node hosts, each at its applied index (see
    /// [`ReplicaDigest`](super::ReplicaDigest))
    pub fn digest(&self) -> Result<Result<Vec<super::ReplicaDigest>, String>, NodeError> {
        self.call(Call::Digest)
    }
}

/// The driver thread's loop: see [`NodeEngine`] for the order of calls
fn run(engine: &mut NodeEngine, rx: &Receiver<Input>) -> Result<(), NodeError> {
    loop {
        let wait = engine.poll_timeout().map_or(MAX_IDLE, |d| d.min(MAX_IDLE));
        let mut next = match rx.recv_timeout(wait) {
            Ok(input) => Some(input),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        };
        let mut handled = 0;
        while let Some(input) = next.take() {
            if !engine.handle(input)? {
                return Ok(());
            }
            handled += 1;
            if handled < MAX_INPUTS_PER_ROUND {
                next = rx.try_recv().ok();
            }
        }
        engine.step()?;
    }
}
