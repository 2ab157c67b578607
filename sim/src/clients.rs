//! Concurrent simulated clients of the replicated KV store, recorded for the linearizability
//! checker
//!
//! [`Clients`] owns a handful of clients. Each one in turn picks an operation (get 40%, put
//! 25%, append 25%, delete 5%, compare-and-swap 5%) on a small key set, with the simulation's
//! workload stream, and carries it out the way a real client would:
//!
//! - **Writes** are proposed as [`KvOp`](crate::kv::KvOp) commands on the node the client
//!   believes leads (following `NotLeader` hints and trying the others; before one operation in
//!   five it asks a random node afresh, so clients disagree about the leader during a
//!   partition, as real ones do). The write completes when that node
//!   applies the entry with the id the proposal returned, with the result the state machine
//!   gave. Another entry at that index, a crash or restart of that node, a snapshot restored
//!   past the index, or the op timeout leave it open (outcome unknown) and the client goes on
//!   under a new client id.
//! - **Reads** follow the [`ReadMode`]. A read completes when its [`ReadState`] is `Ok(index)`
//!   and that node's state machine has applied `index`; the value comes from that node's map at
//!   that moment. A refused or failed read, or one that times out, is not recorded: a read that
//!   never returned constrains nothing.
//!
//! Every operation is recorded in a [`HistoryRecorder`] with virtual-time call and return
//! times. [`Sim::run_clients`] interleaves the clients with the simulation's events in a fixed
//! order, so a seed replays exactly.

mod workload;

use std::collections::BTreeMap;

use shale_core::raft::{Index, LogId, NodeId, ReadConsistency, ReadError, ReadState};
use shale_core::time::{Duration, Instant};

use crate::cluster::Sim;
use crate::linearizability::{ClientId, History, HistoryRecorder, KvOutput, OpId};

/// How clients read
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Linearizable reads on the leader, confirmed by a heartbeat round (ReadIndex)
    ReadIndex,
    /// Linearizable reads on the leader, which serves them from its lease when it holds one
    /// (needs `Config::lease_reads`)
    Lease,
    /// Linearizable reads asked on a follower, which forwards them to the leader and serves
    /// them from its own state once it has applied the leader's read index
    Follower,
    /// Leader reads with `Config::unsafe_reads_without_quorum`: deliberately broken, for
    /// checking that the checker catches stale reads
    Broken,
}

/// Something a client may be waiting for, queued by the event loop
#[derive(Clone, Debug)]
pub(crate) enum ClientEvent {
    /// Node `node`, in its life `life` (restart count), applied the entry `log_id`
    Applied {
        /// The node
        node: NodeId,
        /// Its restart count when it applied the entry
        life: u64,
        /// The entry applied
        log_id: LogId,
        /// What the state machine returned (`None`: not a KV command)
        result: Option<KvOutput>,
    },
    /// Node `node`, in its life `life`, answered a read
    Read {
        /// The node
        node: NodeId,
        /// Its restart count when it answered
        life: u64,
        /// The answer
        state: ReadState,
    },
}

/// The event loop's hook points for clients: events are queued once [`Sim::run_clients`] has
/// run, and dropped before
#[derive(Debug, Default)]
pub(crate) struct ClientHooks {
    /// Whether events are queued (set by the first [`Sim::run_clients`])
    enabled: bool,
    /// Events not yet seen by the clients, in the order they happened
    events: Vec<ClientEvent>,
}

impl ClientHooks {
    /// Node `node` (life `life`) applied `log_id`, and the state machine returned `result`
    pub(crate) fn applied(
        &mut self,
        node: NodeId,
        life: u64,
        log_id: LogId,
        result: Option<KvOutput>,
    ) {
        if self.enabled {
            let event = ClientEvent::Applied {
                node,
                life,
                log_id,
                result,
            };
            self.events.push(event);
        }
    }

    /// Node `node` (life `life`) produced the read state `state`
    pub(crate) fn read(&mut self, node: NodeId, life: u64, state: ReadState) {
        if self.enabled {
            self.events.push(ClientEvent::Read { node, life, state });
        }
    }
}

/// How the client workload behaves
#[derive(Clone, Debug)]
pub struct ClientsConfig {
    /// Number of concurrent clients
    pub clients: usize,
    /// How reads are done
    pub mode: ReadMode,
    /// Number of keys operations pick from
    pub keys: usize,
    /// How long a client waits for an operation before giving up on it
    pub op_timeout: Duration,
    /// Longest pause between two operations of one client (drawn uniformly from 1 ms up)
    pub think_max: Duration,
    /// Pause before retrying when no node took the operation
    pub backoff: Duration,
}

impl ClientsConfig {
    /// `clients` clients reading with `mode` over 5 keys, 1.5 s op timeout, 1-20 ms pauses
    pub fn new(clients: usize, mode: ReadMode) -> Self {
        ClientsConfig {
            clients,
            mode,
            keys: 5,
            op_timeout: Duration::from_millis(1_500),
            think_max: Duration::from_millis(20),
            backoff: Duration::from_millis(20),
        }
    }
}

/// What the clients did so far
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Writes that completed with a known result
    pub writes_ok: u64,
    /// Writes given up on (outcome unknown)
    pub writes_timed_out: u64,
    /// Reads that completed with a value
    pub reads_ok: u64,
    /// Reads that failed or timed out (not recorded)
    pub reads_failed: u64,
    /// Attempts no node accepted (nothing recorded; the client retried later)
    pub refused: u64,
}

/// What one client is doing
#[derive(Clone, Debug)]
enum Pending {
    /// Nothing: starts its next operation at `next_at`
    Idle { next_at: Instant },
    /// A write proposed on `node` as `log_id`
    Write {
        /// The operation in the history
        op: OpId,
        /// The node that took the proposal
        node: NodeId,
        /// That node's restart count when it took it
        life: u64,
        /// The entry the write must be applied as
        log_id: LogId,
        /// When the client gives up
        deadline: Instant,
    },
    /// A read of `key` asked at `call` on `node`, with the index to wait for once known
    Read {
        /// The key read
        key: Vec<u8>,
        /// When the read was asked (its call time, once recorded)
        call: Instant,
        /// The node asked
        node: NodeId,
        /// That node's restart count when it was asked
        life: u64,
        /// The read's context
        ctx: u64,
        /// The index to wait for, once the node answered
        index: Option<Index>,
        /// When the client gives up
        deadline: Instant,
    },
}

/// One simulated client
#[derive(Clone, Debug)]
struct Client {
    /// Its current id in the history (a new one after each write it gave up on)
    id: ClientId,
    /// The node this client believes leads
    guess: NodeId,
    pending: Pending,
}

/// Concurrent KV clients and the history they record; run them with [`Sim::run_clients`]
#[derive(Debug)]
pub struct Clients {
    /// How the workload behaves
    config: ClientsConfig,
    /// The clients
    clients: Vec<Client>,
    /// Every operation so far
    recorder: HistoryRecorder,
    /// The latest value any client read of each key (the expected value of the next CAS)
    seen: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Makes every written value unique, and every read context
    seq: u64,
    /// What the clients did so far
    stats: ClientStats,
}

impl Clients {
    /// Clients for `sim`, which must be configured for the read mode (lease reads for
    /// [`ReadMode::Lease`], unsafe reads exactly for [`ReadMode::Broken`])
    ///
    /// # Panics
    ///
    /// If the simulation's Raft config does not fit `config.mode`.
    pub fn new(sim: &Sim, config: ClientsConfig) -> Self {
        let raft = &sim.config().raft;
        let broken = config.mode == ReadMode::Broken;
        assert_eq!(
            raft.unsafe_reads_without_quorum, broken,
            "{:?}",
            config.mode
        );
        if config.mode == ReadMode::Lease {
            assert!(raft.lease_reads, "lease reads need Config::lease_reads");
        }
        let mut recorder = HistoryRecorder::new();
        let ids = sim.ids();
        let clients = (0..config.clients)
            .map(|i| Client {
                id: recorder.new_client(),
                guess: ids[i % ids.len()],
                pending: Pending::Idle { next_at: sim.now() },
            })
            .collect();
        Clients {
            config,
            clients,
            recorder,
            seen: BTreeMap::new(),
            seq: 0,
            stats: ClientStats::default(),
        }
    }

    /// What the clients did so far
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// The history recorded; operations still in flight are left open (outcome unknown)
    pub fn finish(self) -> History {
        self.recorder.finish()
    }

    /// When a client next needs attention without any simulation event
    fn next_wakeup(&self) -> Option<Instant> {
        self.clients
            .iter()
            .map(|c| match &c.pending {
                Pending::Idle { next_at } => *next_at,
                Pending::Write { deadline, .. } | Pending::Read { deadline, .. } => *deadline,
            })
            .min()
    }
}

impl Sim {
    /// Asks node `id` for a read with context `ctx`; the [`ReadState`] goes to the clients
    pub fn read(
        &mut self,
        id: NodeId,
        ctx: u64,
        consistency: ReadConsistency,
    ) -> Result<(), ReadError> {
        let now = self.local_time(id);
        let Some(raft) = self.nodes[(id - 1) as usize].raft.as_mut() else {
            return Err(ReadError::NotLeader { hint: None });
        };
        let result = raft.read(now, ctx, consistency);
        if result.is_ok() {
            self.trace
                .record(format!("{} n{id} read c{ctx} {consistency:?}", self.now));
        }
        self.after_event(id);
        result
    }

    /// Node `id`'s life: how many times it restarted, or `None` while it is crashed
    pub fn life(&self, id: NodeId) -> Option<u64> {
        let node = &self.nodes[(id - 1) as usize];
        node.raft.as_ref().map(|_| node.restarts)
    }

    /// Whether clients can talk to node `id`: running and not paused
    fn reachable(&self, id: NodeId) -> bool {
        self.is_up(id) && !self.is_paused(id)
    }

    /// Runs the simulation and `clients` together for `duration` of virtual time: after every
    /// simulation event the clients see what happened and start their next operations; when
    /// a client is due before the next event, time jumps to it
    pub fn run_clients(&mut self, clients: &mut Clients, duration: Duration) {
        self.client_hooks.enabled = true;
        let end = self.now + duration;
        loop {
            clients.tick(self);
            let event = self.next_event_time();
            let wakeup = clients.next_wakeup();
            let next = match (event, wakeup) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(t) => t,
                    None => break,
                },
            };
            if next > end {
                break;
            }
            if event.is_some_and(|t| t <= next) {
                self.step();
            } else {
                self.now = self.now.max(next);
            }
        }
        self.now = self.now.max(end);
    }
}
