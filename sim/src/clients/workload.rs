//! What each client does: handles what the nodes report, settles operations, and starts new
//! ones (see the parent module for the behaviour)

use shale_core::raft::{NodeId, ProposeError, ReadConsistency, ReadError, Role};
use shale_core::time::Duration;

use super::{ClientEvent, Clients, Pending, ReadMode};
use crate::cluster::Sim;
use crate::kv::KvOp;
use crate::linearizability::{KvInput, KvOutput};

impl Clients {
    /// Handles the queued events, settles operations, and starts the operations that are due
    pub(super) fn tick(&mut self, sim: &mut Sim) {
        for event in std::mem::take(&mut sim.client_hooks.events) {
            self.on_event(sim, event);
        }
        for i in 0..self.clients.len() {
            self.settle(sim, i);
        }
        for i in 0..self.clients.len() {
            if matches!(self.clients[i].pending, Pending::Idle { next_at } if next_at <= sim.now())
            {
                self.start(sim, i);
            }
        }
    }

    /// Hands `event` to the client waiting for it, if any
    fn on_event(&mut self, sim: &mut Sim, event: ClientEvent) {
        let now = sim.now();
        for i in 0..self.clients.len() {
            match (&self.clients[i].pending, &event) {
                (
                    Pending::Write {
                        op,
                        node,
                        life,
                        log_id,
                        ..
                    },
                    ClientEvent::Applied {
                        node: n,
                        life: l,
                        log_id: applied,
                        result,
                    },
                ) if node == n && life == l && log_id.index == applied.index => {
                    if log_id != applied {
                        self.give_up_write(sim, i);
                        continue;
                    }
                    let output = result.clone().expect("a client's entry is a KV command");
                    self.recorder.complete(*op, output, now);
                    self.stats.writes_ok += 1;
                    self.idle(sim, i, self.config.think_max);
                }
                (
                    Pending::Read {
                        node, life, ctx, ..
                    },
                    ClientEvent::Read {
                        node: n,
                        life: l,
                        state,
                    },
                ) if node == n && life == l && *ctx == state.ctx => match state.result {
                    Ok(ready) => {
                        if let Pending::Read { index, .. } = &mut self.clients[i].pending {
                            *index = Some(ready);
                        }
                    }
                    Err(_) => {
                        self.stats.reads_failed += 1;
                        self.idle(sim, i, self.config.backoff);
                    }
                },
                _ => {}
            }
        }
    }

    /// Completes a read whose index is applied; gives up on operations whose node crashed or
    /// restarted, or that ran out of time
    fn settle(&mut self, sim: &mut Sim, i: usize) {
        let now = sim.now();
        match self.clients[i].pending.clone() {
            Pending::Idle { .. } => {}
            Pending::Write {
                node,
                life,
                log_id,
                deadline,
                ..
            } => {
                // Applied without the client seeing it: a snapshot was restored past it.
                let skipped = sim.app(node).applied >= log_id.index;
                if sim.life(node) != Some(life) || now >= deadline || skipped {
                    self.give_up_write(sim, i);
                }
            }
            Pending::Read {
                key,
                call,
                node,
                life,
                index,
                deadline,
                ..
            } => {
                if sim.life(node) != Some(life) || now >= deadline {
                    self.stats.reads_failed += 1;
                    self.idle(sim, i, self.config.backoff);
                } else if let Some(index) = index
                    && sim.app(node).applied >= index
                {
                    let value = sim.app(node).kv.get(&key).cloned();
                    let client = self.clients[i].id;
                    let op = self.recorder.invoke(client, KvInput::get(&key), call);
                    self.recorder
                        .complete(op, KvOutput::Value(value.clone()), now);
                    self.seen.insert(key, value);
                    self.stats.reads_ok += 1;
                    self.idle(sim, i, self.config.think_max);
                }
            }
        }
    }

    /// Leaves the write of client `i` open and moves the client to a new id and another node
    fn give_up_write(&mut self, sim: &mut Sim, i: usize) {
        if let Pending::Write { op, .. } = self.clients[i].pending {
            self.recorder.timeout(op);
            self.stats.writes_timed_out += 1;
            self.clients[i].id = self.recorder.new_client();
            let ids = sim.ids();
            self.clients[i].guess = ids[sim.workload_rng().below(ids.len() as u64) as usize];
        }
        self.idle(sim, i, self.config.backoff);
    }

    /// Client `i` waits between 1 ms and `pause` before its next operation
    fn idle(&mut self, sim: &mut Sim, i: usize, pause: Duration) {
        let micros = sim
            .workload_rng()
            .range(1_000, pause.as_micros().max(1_001));
        let next_at = sim.now() + Duration::from_micros(micros);
        self.clients[i].pending = Pending::Idle { next_at };
    }

    /// Client `i` starts an operation, or backs off if no node takes it
    fn start(&mut self, sim: &mut Sim, i: usize) {
        let ids = sim.ids();
        let rng = sim.workload_rng();
        if rng.chance(1, 5) {
            // Clients disagree on the leader: some ask a random node afresh now and then.
            self.clients[i].guess = ids[rng.below(ids.len() as u64) as usize];
        }
        let kind = rng.below(100);
        let key = format!("k{}", rng.below(self.config.keys as u64)).into_bytes();
        self.seq += 1;
        let value = format!("{}", self.seq).into_bytes();
        let op = match kind {
            0..40 => return self.start_read(sim, i, key),
            40..65 => KvOp::Put { key, value },
            65..90 => KvOp::Append {
                key,
                suffix: [&value[..], b","].concat(),
            },
            90..95 => KvOp::Delete { key },
            _ => {
                let expected = self.seen.get(&key).cloned().flatten();
                KvOp::Cas {
                    key,
                    expected,
                    new: value,
                }
            }
        };
        self.start_write(sim, i, op);
    }

    /// Client `i` proposes `op` on the node it believes leads, following hints
    fn start_write(&mut self, sim: &mut Sim, i: usize, op: KvOp) {
        let data = op.encode();
        for _ in 0..sim.ids().len() {
            let node = self.clients[i].guess;
            if !sim.reachable(node) {
                self.clients[i].guess = next_node(sim, node);
                continue;
            }
            match sim.propose(node, &data) {
                Ok(log_id) => {
                    let now = sim.now();
                    let op = self.recorder.invoke(self.clients[i].id, op.to_input(), now);
                    self.clients[i].pending = Pending::Write {
                        op,
                        node,
                        life: sim.life(node).expect("the node took a proposal"),
                        log_id,
                        deadline: now + self.config.op_timeout,
                    };
                    return;
                }
                Err(ProposeError::NotLeader { hint: Some(hint) }) if hint != node => {
                    self.clients[i].guess = hint;
                }
                Err(ProposeError::Transferring { target }) if target != node => {
                    self.clients[i].guess = target;
                }
                Err(ProposeError::TooLarge { .. }) => panic!("a KV command is too large"),
                Err(_) => self.clients[i].guess = next_node(sim, node),
            }
        }
        self.stats.refused += 1;
        self.idle(sim, i, self.config.backoff);
    }

    /// Client `i` asks for a read of `key` as its read mode says
    fn start_read(&mut self, sim: &mut Sim, i: usize, key: Vec<u8>) {
        self.seq += 1;
        let ctx = self.seq;
        let mut tries = 0;
        while tries < sim.ids().len() {
            tries += 1;
            let node = if self.config.mode == ReadMode::Follower {
                let ids = sim.ids();
                let followers: Vec<NodeId> = (ids.iter().copied())
                    .filter(|&id| {
                        sim.reachable(id) && sim.node(id).map(|r| r.role()) != Some(Role::Leader)
                    })
                    .collect();
                if followers.is_empty() {
                    break;
                }
                followers[sim.workload_rng().below(followers.len() as u64) as usize]
            } else {
                let node = self.clients[i].guess;
                let role = sim
                    .node(node)
                    .filter(|_| sim.reachable(node))
                    .map(|r| r.role());
                if role != Some(Role::Leader) {
                    let hint = sim.node(node).and_then(|r| r.leader_hint());
                    self.clients[i].guess = hint
                        .filter(|&h| h != node)
                        .unwrap_or_else(|| next_node(sim, node));
                    continue;
                }
                node
            };
            match sim.read(node, ctx, ReadConsistency::Linearizable) {
                Ok(()) => {
                    let now = sim.now();
                    self.clients[i].pending = Pending::Read {
                        key,
                        call: now,
                        node,
                        life: sim.life(node).expect("the node took a read"),
                        ctx,
                        index: None,
                        deadline: now + self.config.op_timeout,
                    };
                    return;
                }
                Err(ReadError::NotLeader { hint: Some(hint) }) if hint != node => {
                    self.clients[i].guess = hint;
                }
                Err(_) => self.clients[i].guess = next_node(sim, node),
            }
        }
        self.stats.refused += 1;
        self.idle(sim, i, self.config.backoff);
    }
}

/// The node after `id` in id order, wrapping around
fn next_node(sim: &Sim, id: NodeId) -> NodeId {
    let ids = sim.ids();
    let pos = ids.iter().position(|&x| x == id).unwrap_or(0);
    ids[(pos + 1) % ids.len()]
}
