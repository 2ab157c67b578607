//! The event loop: message delivery, disk completions and timeouts, each handed to a node's
//! [`Host`](shale_core::node::Host), whose outputs then go to the disks and the network
//! while every group's checker watches

use std::collections::BTreeMap;

use shale_core::controller::GroupId;
use shale_core::node::{HostOutput, WalDone, WalOp};
use shale_core::raft::{NodeId, Outgoing, Role, Term};
use shale_core::time::{Duration, Instant};
use shale_core::wire;

use super::MultiSim;
use super::machine::digest;
use super::node::Work;
use shale_core::rsm::{decode_all, encode_to_vec};

/// Bytes a simulated snapshot worker encodes per piece
const SNAPSHOT_PIECE_BYTES: usize = 1 << 20;
use super::route::{CLIENT_BASE, decode_app};
use crate::SimError;
use crate::events::{skew, unskew};

/// Appends the envelope of `out` for group `gid` to `buf`: the group id as a LEB128 varint,
/// then the message in the wire encoding
pub(crate) fn encode_envelope(gid: GroupId, out: &Outgoing, buf: &mut Vec<u8>) {
    let mut v = gid;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            buf.push(byte);
            break;
        }
        buf.push(byte | 0x80);
    }
    wire::encode_message(out, buf);
}

/// Splits an envelope into its group id and message; `None` if it does not decode
pub(crate) fn decode_envelope(bytes: &[u8]) -> Option<(GroupId, Outgoing)> {
    let mut gid: u64 = 0;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        gid |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let out = wire::decode_message(&bytes[i + 1..]).ok()?;
            return Some((gid, out));
        }
    }
    None
}

/// What a node's host was handed, for the trace
enum Event {
    Raft(GroupId, Outgoing),
    App(NodeId, shale_core::group::AppMessage),
    Wal(WalDone),
    Timeout,
}

impl MultiSim {
    // ----- the event loop -----

    /// Processes the next event; `false` when nothing can ever happen again
    pub fn step(&mut self) -> bool {
        let Some(at) = self.next_event_time() else {
            return false;
        };
        self.now = self.now.max(at);
        // Ties are broken in a fixed order: disks, then the network, then timers, each by
        // node id, then group id.
        if let Some((id, done)) = self.disk_due() {
            self.handle(id, Event::Wal(done));
            return true;
        }
        if let Some((from, to, bytes)) = self.network.pop_due_bytes(self.now) {
            self.deliver(from, to, bytes);
            return true;
        }
        let timer_due = self
            .nodes
            .iter()
            .filter(|n| n.up && !n.paused && n.cpu_free_at <= self.now)
            .find(|n| {
                let local = skew(self.now, n.drift_ppm);
                n.host
                    .as_ref()
                    .and_then(|h| h.poll_timeout())
                    .is_some_and(|t| t <= local)
            })
            .map(|n| n.id);
        if let Some(id) = timer_due {
            self.handle(id, Event::Timeout);
        }
        true
    }

    /// The first disk completion due on a running node whose CPU is free: a persisted write,
    /// else finished storage or worker work
    fn disk_due(&mut self) -> Option<(NodeId, WalDone)> {
        let now = self.now;
        let i = self.nodes.iter().position(|n| {
            n.up && !n.paused
                && n.cpu_free_at <= now
                && (n
                    .disks
                    .values()
                    .any(|g| g.disk.next_completion().is_some_and(|t| t <= now))
                    || n.next_work().is_some_and(|t| t <= now))
        })?;
        let node = &mut self.nodes[i];
        let id = node.id;
        for (&gid, g) in &mut node.disks {
            if let Some(w) = g.disk.complete_due(now) {
                return Some((id, WalDone::Persisted { gid, id: w }));
            }
        }
        let (_, work) = node.work.pop_first()?;
        match work {
            Work::Done(done) => Some((id, done)),
            Work::SnapshotBuilt { gid, meta, bytes } => {
                let g = node.disks.get_mut(&gid)?;
                let index = meta.last.index;
                let size = bytes.len() as u64;
                // The disk may have installed a newer snapshot from the leader meanwhile.
                let stored = index > g.disk.snapshot_index();
                if stored {
                    g.disk.store_snapshot(meta, bytes);
                    g.snapshots_taken += 1;
                }
                self.trace.record(format!(
                    "{now} g{gid} n{id} stored snapshot {index}: {stored}"
                ));
                let size_bytes = stored.then_some(size);
                Some((
                    id,
                    WalDone::SnapshotSaved {
                        gid,
                        index,
                        size_bytes,
                    },
                ))
            }
        }
    }

    /// Delivers an envelope from `from` to `to`
    fn deliver(&mut self, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        if to >= CLIENT_BASE {
            match decode_app(&bytes) {
                Some(Some(message)) => self.client_inbox.entry(to).or_default().push(message),
                _ => self.undecodable += 1,
            }
            return;
        }
        let i = (to as usize).wrapping_sub(1);
        let Some(node) = self.nodes.get(i) else {
            return;
        };
        if node.paused {
            // Held in the receiver's socket buffer until it resumes; re-checked every 10 ms.
            let at = self.now + Duration::from_millis(10);
            self.network.defer_bytes(at, from, to, bytes);
            return;
        }
        if !node.up {
            self.network.stats.dropped += 1;
            return;
        }
        if node.cpu_free_at > self.now {
            // The CPU is busy: the message waits until it is free.
            let at = node.cpu_free_at;
            self.network.defer_bytes(at, from, to, bytes);
            return;
        }
        let size = bytes.len();
        let event = match decode_app(&bytes) {
            Some(Some(message)) => Event::App(from, message),
            Some(None) => {
                self.undecodable += 1;
                return;
            }
            None => match decode_envelope(&bytes) {
                Some((gid, out)) if self.hosts(to, gid) => Event::Raft(gid, out),
                _ => {
                    self.undecodable += 1;
                    return;
                }
            },
        };
        self.network.stats.delivered += 1;
        if let Some(c) = self.network.stats.received_by_node.get_mut(i) {
            *c += 1;
        }
        self.charge_bytes(to, size);
        self.handle(to, event);
    }

    /// Whether node `id` hosts a replica of `gid`
    fn hosts(&self, id: NodeId, gid: GroupId) -> bool {
        self.node(id).disks.contains_key(&gid)
    }

    /// Hands `event` to node `id`'s host, then carries out what the host produced
    fn handle(&mut self, id: NodeId, event: Event) {
        let local = self.local_time(id);
        let before = self.roles(id);
        let what = {
            let Some(host) = self.nodes[(id - 1) as usize].host.as_mut() else {
                return;
            };
            // The node's wall clock is its own (drifting) clock, so expiry sees clock skew.
            host.handle_wall_clock(local.as_micros() / 1000);
            match event {
                Event::Raft(gid, out) => {
                    let what = format!(
                        "g{gid} n{id} <- n{} {} t{} e{}",
                        out.from,
                        out.message.kind_name(),
                        out.message.term(),
                        out.message.entry_count()
                    );
                    host.handle_raft(local, gid, out);
                    what
                }
                Event::App(from, message) => {
                    let what = format!("n{id} <- {from} {}", app_kind(&message));
                    host.handle_app(local, from, message);
                    what
                }
                Event::Wal(done) => {
                    let what = match &done {
                        WalDone::Persisted { gid, id: w } => format!("g{gid} n{id} persisted w{w}"),
                        WalDone::Chunk { gid, offset, .. } => {
                            format!("g{gid} n{id} chunk read at {offset}")
                        }
                        WalDone::SnapshotSaved { gid, index, .. } => {
                            format!("g{gid} n{id} snapshot {index} saved")
                        }
                        WalDone::SnapshotLoaded { gid, index, .. } => {
                            format!("g{gid} n{id} snapshot {index} loaded")
                        }
                    };
                    host.handle_wal(local, done);
                    what
                }
                Event::Timeout => {
                    host.handle_timeout(local);
                    format!("n{id} timeout")
                }
            }
        };
        self.charge_cpu(id);
        self.trace.record(format!("{} {what}", self.now));
        // Commits are seen before the host's flush applies them and perhaps compacts them
        // away into a snapshot.
        self.check_node(id, false);
        self.after_event(id);
        let after = self.roles(id);
        for (gid, (role, term)) in after {
            if before.get(&gid) != Some(&(role, term)) {
                self.trace
                    .record(format!("{} g{gid} n{id} -> {role} t{term}", self.now));
            }
        }
    }

    /// The role and term of every replica of node `id`
    fn roles(&self, id: NodeId) -> BTreeMap<GroupId, (Role, Term)> {
        self.node(id).host.as_ref().map_or_else(BTreeMap::new, |h| {
            h.replicas()
                .iter()
                .map(|(&gid, r)| (gid, (r.raft().role(), r.raft().term())))
                .collect()
        })
    }

    /// Runs node `id`'s host until it has nothing more to do, carries out its outputs (writes
    /// to the disks, messages to the network) and checks every group's invariants
    pub(crate) fn after_event(&mut self, id: NodeId) {
        let i = (id - 1) as usize;
        let local = self.local_time(id);
        let mut outputs = Vec::new();
        {
            let Some(host) = self.nodes[i].host.as_mut() else {
                return;
            };
            host.flush(local);
            while let Some(output) = host.poll_output() {
                outputs.push(output);
            }
        }
        let mut bytes = 0;
        for output in outputs {
            bytes += self.carry_out(id, output);
        }
        self.charge_bytes(id, bytes);
        self.check_node(id, true);
    }

    /// Carries out one output of node `id`'s host; the bytes it moved
    fn carry_out(&mut self, id: NodeId, output: HostOutput) -> usize {
        let now = self.now;
        match output {
            HostOutput::Wal { gid, op } => self.storage_op(id, gid, op),
            HostOutput::Raft { gid, message } => {
                if let Some(check) = self.checks.get_mut(&gid) {
                    check.checker.on_send(&message);
                }
                self.buf.clear();
                encode_envelope(gid, &message, &mut self.buf);
                self.network
                    .send_bytes(now, message.from, message.to, &self.buf);
                self.buf.len()
            }
            HostOutput::App { to, message } => {
                self.send_app(id, to, &message);
                self.buf.len()
            }
            HostOutput::Fatal(reason) => self.fail(format!("node {id} stopped: {reason}")),
            // Freed off the loop in a real runtime; here it costs nothing.
            HostOutput::Release(release) => {
                drop(release);
                0
            }
            // The simulator's clients talk to the nodes over the network, not through sessions
            // of the host.
            HostOutput::Done { .. }
            | HostOutput::TimedOut { .. }
            | HostOutput::AdminDone { .. } => 0,
        }
    }

    /// Carries out a storage operation of `gid` on node `id`; the bytes it moved
    fn storage_op(&mut self, id: NodeId, gid: GroupId, op: WalOp) -> usize {
        let i = (id - 1) as usize;
        let now = self.now;
        let node = &mut self.nodes[i];
        let Some(disk) = node.disks.get_mut(&gid) else {
            return 0;
        };
        match op {
            WalOp::Write(write) => {
                let raft = node
                    .host
                    .as_ref()
                    .and_then(|h| h.replicas().get(&gid))
                    .map(|r| r.raft());
                let checked = match (raft, self.checks.get_mut(&gid)) {
                    (Some(raft), Some(check)) => check.checker.on_write(raft, &write),
                    _ => Ok(()),
                };
                if let Err(e) = checked {
                    self.fail(format!("g{gid}: {e}"));
                }
                let bytes = write.entries.iter().map(|e| e.size_bytes()).sum::<usize>()
                    + write
                        .snapshot_chunks
                        .iter()
                        .map(|c| c.data.len())
                        .sum::<usize>();
                let Some(disk) = self.nodes[i].disks.get_mut(&gid) else {
                    return 0;
                };
                disk.disk
                    .submit(now, write, &self.config.disk, &mut self.disk_rng);
                bytes
            }
            WalOp::SaveSnapshot { mut meta, encoder } => {
                // The worker's time is its own: the node's loop goes on meanwhile.
                let bytes = encode_to_vec(encoder, SNAPSHOT_PIECE_BYTES);
                meta.size_bytes = bytes.len() as u64;
                let at = now
                    + worker_time(
                        self.config.worker_per_mib.or(self.config.cpu_per_mib),
                        bytes.len(),
                    );
                self.trace.record(format!(
                    "{now} g{gid} n{id} snapshot {} of {} bytes until {at}",
                    meta.last,
                    bytes.len()
                ));
                self.nodes[i].schedule(at, Work::SnapshotBuilt { gid, meta, bytes });
                0
            }
            WalOp::ReadChunk {
                to,
                index,
                offset,
                max_bytes,
            } => {
                let stored = &disk.disk.snapshot;
                let len = stored.data.len() as u64;
                // A chunk of a snapshot that is not (or no longer) stored answers nothing; the
                // core asks again.
                let data = (stored.meta.as_ref().is_some_and(|m| m.last.index == index)
                    && offset <= len)
                    .then(|| {
                        let end = offset.saturating_add(max_bytes as u64).min(len);
                        stored.data[offset as usize..end as usize].to_vec()
                    });
                let moved = data.as_ref().map_or(0, Vec::len);
                let done = WalDone::Chunk {
                    gid,
                    to,
                    index,
                    offset,
                    data,
                };
                node.schedule(now, Work::Done(done));
                moved
            }
            WalOp::LoadSnapshot { index, decoder } => {
                let stored = &disk.disk.snapshot;
                let held = stored.meta.as_ref().is_some_and(|m| m.last.index == index);
                let size = if held { stored.data.len() } else { 0 };
                let state = held.then(|| decode_all(decoder, &stored.data));
                if held {
                    disk.installs += 1;
                }
                let at =
                    now + worker_time(self.config.worker_per_mib.or(self.config.cpu_per_mib), size);
                let done = WalDone::SnapshotLoaded { gid, index, state };
                self.nodes[i].schedule(at, Work::Done(done));
                0
            }
        }
    }

    /// Checks every replica of node `id` against its group's checker, and with `applied`
    /// also each state machine against the committed log
    fn check_node(&mut self, id: NodeId, applied: bool) {
        let i = (id - 1) as usize;
        let Some(host) = self.nodes[i].host.as_ref() else {
            return;
        };
        let mut failure = None;
        let mut peaks = Vec::new();
        for (&gid, replica) in host.replicas() {
            let Some(check) = self.checks.get_mut(&gid) else {
                continue;
            };
            let raft = replica.raft();
            if let Err(e) = check.checker.on_step(raft) {
                failure = Some(format!("g{gid}: {e}"));
                break;
            }
            check.learn_committed(raft);
            if applied && replica.restore_wanted().is_none() {
                let (d, _) = digest(replica);
                if let Err(e) = check.check_state(id, raft.applied_index(), d) {
                    failure = Some(format!("g{gid}: {e}"));
                    break;
                }
            }
            peaks.push((gid, raft.log_bytes()));
        }
        if let Some(message) = failure {
            self.fail(message);
        }
        for (gid, bytes) in peaks {
            if let Some(g) = self.nodes[i].disks.get_mut(&gid) {
                g.peak_log_bytes = g.peak_log_bytes.max(bytes);
            }
        }
    }

    /// When the next event happens, if any can
    pub(crate) fn next_event_time(&self) -> Option<Instant> {
        let mut next = self.network.next_arrival();
        let mut consider = |t: Instant| next = Some(next.map_or(t, |x: Instant| x.min(t)));
        for n in self.nodes.iter().filter(|n| n.up && !n.paused) {
            // Without a CPU model `cpu_free_at` stays at zero and changes nothing.
            for g in n.disks.values() {
                if let Some(t) = g.disk.next_completion() {
                    consider(t.max(n.cpu_free_at));
                }
            }
            if let Some(t) = n.next_work() {
                consider(t.max(n.cpu_free_at));
            }
            if let Some(t) = n.host.as_ref().and_then(|h| h.poll_timeout()) {
                consider(unskew(self.now, n.drift_ppm, t).max(n.cpu_free_at));
            }
        }
        next
    }

    /// Spends node `id`'s CPU on one event starting now; nothing without a CPU model
    fn charge_cpu(&mut self, id: NodeId) {
        if let Some(service) = self.config.cpu_per_event {
            let node = &mut self.nodes[(id - 1) as usize];
            node.cpu_free_at = node.cpu_free_at.max(self.now) + service;
        }
    }

    /// Spends node `id`'s CPU on `bytes` handled by its loop (received, sent, written or read
    /// back); nothing without a per-byte CPU model
    fn charge_bytes(&mut self, id: NodeId, bytes: usize) {
        if let Some(per_mib) = self.config.cpu_per_mib {
            let micros = (bytes as u128 * u128::from(per_mib.as_micros())) >> 20;
            let node = &mut self.nodes[(id - 1) as usize];
            node.cpu_free_at =
                node.cpu_free_at.max(self.now) + Duration::from_micros(micros as u64);
        }
    }

    /// Node `id`'s clock reading now (virtual time skewed by its drift)
    pub(crate) fn local_time(&self, id: NodeId) -> Instant {
        skew(self.now, self.nodes[(id - 1) as usize].drift_ppm)
    }

    /// Runs for `duration` of virtual time
    pub fn run_for(&mut self, duration: Duration) {
        crate::clock::run_for(self, duration);
    }

    /// Runs until `done` holds, or fails once `budget` of virtual time has passed
    pub fn run_until(
        &mut self,
        budget: Duration,
        what: &str,
        done: impl FnMut(&MultiSim) -> bool,
    ) -> Result<(), SimError> {
        crate::clock::run_until(self, budget, what, done)
    }

    /// Runs until a running replica of `gid` leads, and returns it
    pub fn wait_for_leader(&mut self, gid: GroupId, budget: Duration) -> Result<NodeId, SimError> {
        self.run_until(budget, "a leader", |s| s.leader_of(gid).is_some())?;
        self.leader_of(gid)
            .ok_or_else(|| self.error(format!("g{gid} has no leader")))
    }
}

/// How long a node's snapshot worker takes over `bytes` (as long as its loop would: the
/// per-MiB CPU model, spent on a core of its own)
fn worker_time(per_mib: Option<Duration>, bytes: usize) -> Duration {
    let per_mib = per_mib.unwrap_or(Duration::ZERO);
    Duration::from_micros(((bytes as u128 * u128::from(per_mib.as_micros())) >> 20) as u64)
}

/// A short name of an application message, for the trace
fn app_kind(message: &shale_core::group::AppMessage) -> String {
    use shale_core::group::AppMessage as A;
    match message {
        A::Client { gid, token, .. } => format!("client g{gid} #{token}"),
        A::Reply { token, .. } => format!("reply #{token}"),
        A::Query { num, for_gid } => format!("query {num:?} for {for_gid:?}"),
        A::Config { for_gid, config } => format!("config {} for {for_gid:?}", config.num),
        A::Fetch {
            gid, shard, num, ..
        } => format!("fetch g{gid} s{shard} c{num}"),
        A::Fetched {
            gid, shard, num, ..
        } => format!("fetched g{gid} s{shard} c{num}"),
        A::Delete {
            gid, shard, num, ..
        } => format!("delete g{gid} s{shard} c{num}"),
        A::Deleted {
            gid, shard, num, ..
        } => format!("deleted g{gid} s{shard} c{num}"),
        A::FetchKeys {
            gid, shard, keys, ..
        } => format!("fetch {} keys g{gid} s{shard}", keys.len()),
        A::KeysFetched {
            gid,
            shard,
            entries,
            ..
        } => format!("fetched {} keys g{gid} s{shard}", entries.len()),
        A::Admin { token, .. } => format!("admin #{token}"),
        A::AdminReply { token, result } => format!("admin reply #{token} {}", result.is_some()),
    }
}

impl crate::clock::VirtualTime for MultiSim {
    fn clock(&mut self) -> &mut Instant {
        &mut self.now
    }

    fn next_event_time(&self) -> Option<Instant> {
        MultiSim::next_event_time(self)
    }

    fn step(&mut self) -> bool {
        MultiSim::step(self)
    }

    fn error(&self, message: String) -> SimError {
        MultiSim::error(self, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shale_core::raft::Message;

    #[test]
    fn envelopes_round_trip_and_count_the_group_id() {
        let out = Outgoing {
            from: 1,
            to: 2,
            message: Message::TimeoutNow { term: 3 },
        };
        for gid in [0, 1, 127, 128, 300, u64::MAX] {
            let mut buf = Vec::new();
            encode_envelope(gid, &out, &mut buf);
            assert_eq!(
                buf.len(),
                wire::encoded_len(&out) + (64 - gid.leading_zeros() as usize).div_ceil(7).max(1)
            );
            assert_eq!(decode_envelope(&buf), Some((gid, out.clone())));
        }
        assert_eq!(decode_envelope(&[0x80; 11]), None);
    }
}
