//! A node as a smol task: one task owns the node's [`NodeEngine`] (every group it hosts)
//!
//! The task waits for an input or its next timer, handles at most
//! [`MAX_INPUTS_PER_ROUND`] inputs, then steps the engine, which fires every due timer. Timers
//! are not messages, so they never queue behind client requests: a flood of requests delays a
//! tick by one bounded round at most. The peer transport ([`SmolTransport`]) runs as tasks on
//! the same executor: its readers push what peers send into the task's bounded channel (a full
//! channel pushes back on TCP). The WAL threads push their reports into the same channel
//! (blocking those threads, never the executor, when it is full); clients call through a
//! cloneable [`NodeClient`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_executor::Executor;
use async_io::Timer;
use futures_lite::future;

use crate::metrics::Metrics;
use crate::transport::SmolTransport;
use shale_core::controller::{Configuration, ControllerCommand};
use shale_core::shard::{KvError, KvOp, KvResult};
use shale_runtime_std::node::{
    AdminError, Call, Deliver, GroupAdmin, Input, NodeConfig, NodeEngine, NodeError, NodeStatus,
    OpResult, Reply, SessionId, WalEvent,
};

/// Inputs queued for a node's task
pub const NODE_INBOX_CAPACITY: usize = 8192;
/// Most inputs a node's task handles before it fires its timers again
pub const MAX_INPUTS_PER_ROUND: usize = 1024;
/// Longest a node's task sleeps without input
const MAX_IDLE: Duration = Duration::from_millis(100);

/// A running node's task
#[derive(Debug)]
pub struct SmolNode {
    client: NodeClient,
    task: async_executor::Task<Result<(), NodeError>>,
    peer_addr: SocketAddr,
}

/// A cheap, cloneable handle to call a node from any task
#[derive(Clone, Debug)]
pub struct NodeClient {
    inbox: async_channel::Sender<Input>,
}

impl SmolNode {
    /// Boots the node (its storage, WAL threads and transport tasks) and spawns its task on `ex`;
    /// the WAL threads report each sync's duration and size into `metrics`
    pub fn spawn(
        ex: &Arc<Executor<'static>>,
        config: &NodeConfig,
        metrics: Arc<Metrics>,
    ) -> Result<SmolNode, NodeError> {
        let (tx, rx) = async_channel::bounded(NODE_INBOX_CAPACITY);
        let deliver_tx = tx.clone();
        let deliver: Deliver = Arc::new(move |input| match input {
            // Metrics go straight to their atomics, never through the node's task.
            Input::Wal(WalEvent::Synced { bytes, took, .. }) => {
                metrics.wal.write(bytes);
                metrics.wal.fsync_duration.observe(took);
                true
            }
            input => deliver_tx.send_blocking(input).is_ok(),
        });
        let engine = NodeEngine::start_with(config, deliver, || {
            let mut transport =
                SmolTransport::listen(ex, config.listen, config.transport(), tx.clone())
                    .map_err(|e| NodeError::Listen(config.listen, e))?;
            for (&id, &addr) in &config.peers {
                if id != config.id {
                    transport.add_peer(id, addr);
                }
            }
            Ok(Box::new(transport))
        })?;
        let peer_addr = engine.peer_addr().ok_or(NodeError::Stopped)?;
        let task = ex.spawn(run(engine, rx));
        Ok(SmolNode {
            client: NodeClient { inbox: tx },
            task,
            peer_addr,
        })
    }

    /// The address peers connect to
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// A handle to call the node
    pub fn client(&self) -> NodeClient {
        self.client.clone()
    }

    /// Stops the node (writes already handed to the WAL are finished) and returns the error
    /// it stopped on, if any
    pub async fn stop(self) -> Result<(), NodeError> {
        let _ = self.client.inbox.send(Input::Stop).await;
        self.task.await
    }

    /// Waits until the node stops by itself (a fatal error) and returns why
    pub async fn join(self) -> Result<(), NodeError> {
        self.task.await
    }
}

async fn run(mut engine: NodeEngine, rx: async_channel::Receiver<Input>) -> Result<(), NodeError> {
    let result = run_loop(&mut engine, &rx).await;
    // Reporters see the channel closed instead of waiting on a full one.
    rx.close();
    // Joining the WAL threads blocks: off the executor's threads.
    smol::unblock(move || engine.shutdown()).await;
    result
}

async fn run_loop(
    engine: &mut NodeEngine,
    rx: &async_channel::Receiver<Input>,
) -> Result<(), NodeError> {
    // One timer, re-armed only when the node wants to wake up earlier than it is armed for
    // or once it fired: arming a timer wakes the reactor (a system call and, when another
    // executor thread sleeps in it, a context switch), which per round would cost more than
    // a round. Firing early is harmless: the round finds nothing due.
    let mut timer = Timer::never();
    let mut armed: Option<std::time::Instant> = None;
    loop {
        let wait = engine.poll_timeout().map_or(MAX_IDLE, |d| d.min(MAX_IDLE));
        let wake_at = std::time::Instant::now() + wait;
        if armed.is_none_or(|at| at > wake_at) {
            timer.set_at(wake_at);
            armed = Some(wake_at);
        }
        let first = future::or(async { Some(rx.recv().await) }, async {
            (&mut timer).await;
            None
        })
        .await;
        let mut next = match first {
            Some(Ok(input)) => Some(input),
            Some(Err(_)) => return Ok(()),
            None => {
                armed = None;
                None
            }
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

impl NodeClient {
    async fn call<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Call,
    ) -> Result<T, NodeError> {
        let (tx, rx) = async_channel::bounded(1);
        let reply: Reply<T> = Box::new(move |answer| {
            let _ = tx.try_send(answer);
        });
        self.inbox
            .send(Input::Call(make(reply)))
            .await
            .map_err(|_| NodeError::Stopped)?;
        rx.recv().await.map_err(|_| NodeError::Stopped)
    }

    /// Opens a client session (exactly-once for its operations)
    pub async fn open_session(&self) -> Result<SessionId, NodeError> {
        self.call(Call::OpenSession).await
    }

    /// Closes a session
    pub fn close_session(&self, session: SessionId) {
        let _ = self
            .inbox
            .try_send(Input::Call(Call::CloseSession(session)));
    }

    /// Runs `op` in `session` (linearizable)
    pub async fn op(
        &self,
        session: SessionId,
        op: KvOp,
    ) -> Result<Result<KvResult, KvError>, NodeError> {
        let result: OpResult = self.call(|reply| Call::Op(session, op, reply)).await?;
        result.map_err(NodeError::Session)
    }

    /// Runs an administrative command through the controller's leader
    pub async fn admin(
        &self,
        command: ControllerCommand,
    ) -> Result<Result<Configuration, AdminError>, NodeError> {
        self.call(|reply| Call::Admin(command, reply)).await
    }

    /// Changes one group's replicas or leader; this node must lead the group
    pub async fn group_admin(
        &self,
        admin: GroupAdmin,
    ) -> Result<Result<String, String>, NodeError> {
        self.call(|reply| Call::Group(admin, reply)).await
    }

    /// The node's groups, roles, terms and indexes, and its latest configuration
    pub async fn status(&self) -> Result<NodeStatus, NodeError> {
        self.call(Call::Status).await
    }
}
