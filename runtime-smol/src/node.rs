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
//!
//! Metrics: the task times each round ([`Metrics::step_duration`]: two clock reads and a
//! histogram update per round); the WAL threads' reports that only feed metrics (syncs,
//! snapshots built and restored) go straight to their atomics, never through the task; and
//! [`SmolNode::peer_counters`] keeps the transport's per-peer counters readable after the
//! transport is handed to the engine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_executor::Executor;
use async_io::Timer;
use futures_lite::future;

use crate::metrics::Metrics;
use crate::transport::SmolTransport;
use shale_core::controller::{Configuration, ControllerCommand};
use shale_core::shard::{KvError, KvOp, KvResult};
use shale_runtime_std::node::{
    AdminError, Call, Deliver, GroupAdmin, Input, NodeConfig, NodeEngine, NodeError, NodeStatus,
    OpResult, ReplicaDigest, Reply, SessionId, WalEvent,
};
use shale_runtime_std::transport::PeerCounterSet;

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
    peer_counters: Arc<PeerCounterSet>,
}

/// A cheap, cloneable handle to call a node from any task
#[derive(Clone, Debug)]
pub struct NodeClient {
    inbox: async_channel::Sender<Input>,
}

impl SmolNode {
    /// Boots the node (its storage, WAL threads and transport tasks) and spawns its task on `ex`;
    /// the task records each round's duration into `metrics`, and the WAL threads each sync's
    /// and each snapshot's (built or restored) duration and size
    pub fn spawn(
        ex: &Arc<Executor<'static>>,
        config: &NodeConfig,
        metrics: Arc<Metrics>,
    ) -> Result<SmolNode, NodeError> {
        let (tx, rx) = async_channel::bounded(NODE_INBOX_CAPACITY);
        let deliver_tx = tx.clone();
        let wal_metrics = metrics.clone();
        let deliver: Deliver = Arc::new(move |input| match input {
            Input::Wal(event) => match metrics_only(&wal_metrics, event) {
                None => true,
                Some(event) => deliver_tx.send_blocking(Input::Wal(event)).is_ok(),
            },
            input => deliver_tx.send_blocking(input).is_ok(),
        });
        let mut peer_counters = None;
        let engine = NodeEngine::start_with(config, deliver, || {
            let bound = match &config.peer_listener {
                Some(listener) => listener
                    .try_clone()
                    .and_then(|l| SmolTransport::accept(ex, l, config.transport(), tx.clone())),
                None => SmolTransport::listen(ex, config.listen, config.transport(), tx.clone()),
            };
            let mut transport = bound.map_err(|e| NodeError::Listen(config.listen, e))?;
            for (&id, &addr) in &config.peers {
                if id != config.id {
                    transport.add_peer(id, addr);
                }
            }
            peer_counters = Some(transport.peer_counters());
            Ok(Box::new(transport))
        })?;
        let peer_addr = engine.peer_addr().ok_or(NodeError::Stopped)?;
        // Set whenever the engine started: it calls for its transport before returning `Ok`.
        let peer_counters = peer_counters.ok_or(NodeError::Stopped)?;
        let task = ex.spawn(run(engine, rx, metrics));
        Ok(SmolNode {
            client: NodeClient { inbox: tx },
            task,
            peer_addr,
            peer_counters,
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

    /// The peer transport's counters of each node it sends to or hears from (read them with
    /// [`PeerCounterSet::snapshot`]; they stay readable after the node stops)
    pub fn peer_counters(&self) -> Arc<PeerCounterSet> {
        self.peer_counters.clone()
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

/// Records a WAL report that only feeds metrics (`None`: recorded, the node's task need not
/// see it) or hands it back for the task
fn metrics_only(metrics: &Metrics, event: WalEvent) -> Option<WalEvent> {
    match event {
        WalEvent::Synced { bytes, took, .. } => {
            metrics.wal.write(bytes);
            metrics.wal.fsync_duration.observe(took);
        }
        WalEvent::SnapshotBuilt { bytes, took, .. } => metrics.snapshots.built(bytes, took),
        WalEvent::SnapshotRestored { bytes, took, .. } => metrics.snapshots.restored(bytes, took),
        event => return Some(event),
    }
    None
}

async fn run(
    mut engine: NodeEngine,
    rx: async_channel::Receiver<Input>,
    metrics: Arc<Metrics>,
) -> Result<(), NodeError> {
    let result = run_loop(&mut engine, &rx, &metrics).await;
    // Reporters see the channel closed instead of waiting on a full one.
    rx.close();
    // Joining the WAL threads blocks: off the executor's threads.
    smol::unblock(move || engine.shutdown()).await;
    result
}

async fn run_loop(
    engine: &mut NodeEngine,
    rx: &async_channel::Receiver<Input>,
    metrics: &Metrics,
) -> Result<(), NodeError> {
    // One timer, re-armed only when the node wants to wake up earlier than it is armed for
    // or once it fired: arming a timer wakes the reactor (a system call and, when another
    // executor thread sleeps in it, a context switch), which per round would cost more than
    // a round. Firing early is harmless: the round finds nothing due.
    let mut timer = Timer::never();
    let mut armed: Option<Instant> = None;
    loop {
        let wait = engine.poll_timeout().map_or(MAX_IDLE, |d| d.min(MAX_IDLE));
        let wake_at = Instant::now() + wait;
        if armed.is_none_or(|at| at > wake_at) {
            timer.set_at(wake_at);
            armed = Some(wake_at);
        }
        let first = future::or(async { Some(rx.recv().await) }, async {
            (&mut timer).await;
            None
        })
        .await;
        // A round runs from here (input or timer in hand) to the end of its step.
        let round_started = Instant::now();
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
        metrics.step_duration.observe(round_started.elapsed());
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

    /// The digests of every replica the node hosts, each at its applied index
    pub async fn digest(&self) -> Result<Result<Vec<ReplicaDigest>, String>, NodeError> {
        self.call(Call::Digest).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_only_reports_go_to_metrics_and_the_rest_to_the_task() {
        let metrics = Metrics::new();
        let synced = WalEvent::Synced {
            gid: 1,
            writes: 3,
            bytes: 300,
            took: Duration::from_micros(900),
        };
        assert!(metrics_only(&metrics, synced).is_none());
        let built = WalEvent::SnapshotBuilt {
            gid: 1,
            bytes: 4096,
            took: Duration::from_millis(20),
        };
        assert!(metrics_only(&metrics, built).is_none());
        let restored = WalEvent::SnapshotRestored {
            gid: 2,
            bytes: 8192,
            took: Duration::from_millis(70),
        };
        assert!(metrics_only(&metrics, restored).is_none());
        let failed = WalEvent::Failed("disk full".into());
        assert!(matches!(
            metrics_only(&metrics, failed),
            Some(WalEvent::Failed(_))
        ));

        assert_eq!(metrics.wal.bytes_total.get(), 300);
        assert_eq!(metrics.wal.fsync_duration.snapshot().count(), 1);
        let snapshots = &metrics.snapshots;
        assert_eq!(snapshots.build_bytes_total.get(), 4096);
        assert_eq!(snapshots.build_duration.snapshot().sum_micros, 20_000);
        assert_eq!(snapshots.restore_bytes_total.get(), 8192);
        assert_eq!(snapshots.restore_duration.snapshot().sum_micros, 70_000);
    }
}
