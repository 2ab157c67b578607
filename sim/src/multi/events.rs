//! The event loop: proposals, message delivery, disk completions and timeouts, and draining
//! each replica's outputs through its group's checker

use shale_core::controller::GroupId;
use shale_core::raft::{NodeId, Outgoing, ProposeError, SnapshotTask};
use shale_core::time::{Duration, Instant};
use shale_core::wire;

use super::machine::Hosted;
use super::route::{CLIENT_BASE, decode_app};
use super::{HostedCommand, HostedOutput, MultiSim};
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

impl MultiSim {
    // ----- clients -----

    /// Proposes `command` to `gid`'s replica on node `id`; its result comes out of
    /// [`MultiSim::take_result`] under the returned token, if that replica stays up
    pub fn propose(
        &mut self,
        gid: GroupId,
        id: NodeId,
        command: HostedCommand,
    ) -> Result<u64, ProposeError> {
        let now = self.local_time(id);
        let token = self.next_token;
        let Some(replica) = self
            .nodes
            .get_mut((id as usize).wrapping_sub(1))
            .filter(|n| n.up)
            .and_then(|n| n.groups.get_mut(&gid))
            .and_then(|g| g.replica.as_mut())
        else {
            return Err(ProposeError::NotLeader { hint: None });
        };
        let result = replica.propose(now, token, command);
        self.charge_cpu(id);
        if let Ok(log_id) = result {
            self.next_token += 1;
            self.trace.record(format!(
                "{} g{gid} n{id} propose {log_id} #{token}",
                self.now
            ));
        }
        self.after_event(id, gid);
        result.map(|_| token)
    }

    /// The result of the proposal `token`, once its entry was applied on the replica that
    /// took it: `Some(None)` when the proposal was lost (another entry took its place)
    pub fn take_result(&mut self, token: u64) -> Option<Option<HostedOutput>> {
        self.results.remove(&token)
    }

    // ----- the event loop -----

    /// Processes the next event; `false` when nothing can ever happen again
    pub fn step(&mut self) -> bool {
        let Some(at) = self.next_event_time() else {
            return false;
        };
        self.now = self.now.max(at);
        // Ties are broken in a fixed order: disks, then the network, then timers, each by
        // node id, then group id.
        let disk_due = self
            .nodes
            .iter()
            .filter(|n| n.up && !n.paused)
            .find_map(|n| {
                n.groups
                    .iter()
                    .find(|(_, g)| g.disk.next_completion().is_some_and(|t| t <= self.now))
                    .map(|(&gid, _)| (n.id, gid))
                    .filter(|_| n.cpu_free_at <= self.now)
            });
        if let Some((id, gid)) = disk_due {
            let local = self.local_time(id);
            let hosted = self.nodes[(id - 1) as usize]
                .groups
                .get_mut(&gid)
                .expect("found above");
            if let Some(write_id) = hosted.disk.complete_due(self.now) {
                self.charge_cpu(id);
                let hosted = self.nodes[(id - 1) as usize]
                    .groups
                    .get_mut(&gid)
                    .expect("found above");
                if let Some(replica) = hosted.replica.as_mut() {
                    replica.raft_mut().handle_persisted(local, write_id);
                }
                self.trace
                    .record(format!("{} g{gid} n{id} persisted w{write_id}", self.now));
                self.after_event(id, gid);
            }
            return true;
        }
        if let Some((from, to, bytes)) = self.network.pop_due_bytes(self.now) {
            self.deliver(from, to, bytes);
            return true;
        }
        let timer_due = self
            .nodes
            .iter()
            .filter(|n| n.up && !n.paused)
            .find_map(|n| {
                let local = skew(self.now, n.drift_ppm);
                n.groups
                    .iter()
                    .find(|(_, g)| {
                        g.replica
                            .as_ref()
                            .and_then(|r| next_timer(r.as_ref()))
                            .is_some_and(|t| t <= local)
                    })
                    .map(|(&gid, _)| (n.id, gid))
                    .filter(|_| n.cpu_free_at <= self.now)
            });
        if let Some((id, gid)) = timer_due {
            self.charge_cpu(id);
            let local = self.local_time(id);
            let hosted = self.nodes[(id - 1) as usize]
                .groups
                .get_mut(&gid)
                .expect("found above");
            let replica = hosted.replica.as_mut().expect("found above");
            if let Some(driver) = replica.driver_mut()
                && driver.poll_timeout().is_some_and(|t| t <= local)
            {
                driver.handle_timeout(local);
            }
            let raft = replica.raft_mut();
            let before = (raft.role(), raft.term());
            if raft.poll_timeout().is_some_and(|t| t <= local)
                && raft.handle_timeout(local).is_err()
            {
                self.busy_drops += 1;
            }
            let after = (raft.role(), raft.term());
            if before != after {
                self.trace.record(format!(
                    "{} g{gid} n{id} timeout: {} t{} -> {} t{}",
                    self.now, before.0, before.1, after.0, after.1
                ));
            }
            self.after_event(id, gid);
        }
        true
    }

    /// Delivers an envelope from `from` to `to`
    fn deliver(&mut self, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        if to >= CLIENT_BASE {
            match decode_app(&bytes) {
                Some(Some(message)) => self.deliver_app(from, to, message),
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
        self.charge_cpu(to);
        if let Some(app) = decode_app(&bytes) {
            match app {
                Some(message) => {
                    self.network.stats.delivered += 1;
                    self.deliver_app(from, to, message);
                }
                None => self.undecodable += 1,
            }
            return;
        }
        let Some((gid, out)) = decode_envelope(&bytes) else {
            self.undecodable += 1;
            return;
        };
        let local = self.local_time(to);
        let Some(replica) = self.nodes[i]
            .groups
            .get_mut(&gid)
            .and_then(|g| g.replica.as_mut())
        else {
            self.undecodable += 1;
            return;
        };
        self.network.stats.delivered += 1;
        if let Some(c) = self.network.stats.received_by_node.get_mut(i) {
            *c += 1;
        }
        let raft = replica.raft_mut();
        let (busy, what) = crate::trace::deliver_traced(raft, local, out);
        if busy {
            self.busy_drops += 1;
        }
        self.trace
            .record(format!("{} g{gid} n{to} {what}", self.now));
        self.after_event(to, gid);
    }

    /// Drains the outputs of `gid`'s replica on `id`, checks the group's invariants, and sends
    /// what a replica group driver has for other groups and clients
    pub(crate) fn after_event(&mut self, id: NodeId, gid: GroupId) {
        self.drain_replica(id, gid);
        self.route_outputs(id, gid);
    }

    /// Drains the Raft outputs of `gid`'s replica on `id` and checks the group's invariants
    fn drain_replica(&mut self, id: NodeId, gid: GroupId) {
        let i = (id - 1) as usize;
        let now = self.now;
        let local = self.local_time(id);
        loop {
            let mut progressed = false;
            let node = &mut self.nodes[i];
            if !node.up {
                return;
            }
            let Some(hosted) = node.groups.get_mut(&gid) else {
                return;
            };
            let Some(replica) = hosted.replica.as_mut() else {
                return;
            };
            let check = self
                .checks
                .get_mut(&gid)
                .expect("every group has a checker");
            let raft = replica.raft_mut();
            while let Some(write) = raft.poll_write() {
                progressed = true;
                if let Err(e) = check.checker.on_write(raft, &write) {
                    self.fail(format!("g{gid}: {e}"));
                }
                hosted
                    .disk
                    .submit(now, write, &self.config.disk, &mut self.disk_rng);
            }
            while let Some(out) = raft.poll_message() {
                progressed = true;
                check.checker.on_send(&out);
                self.buf.clear();
                encode_envelope(gid, &out, &mut self.buf);
                self.network.send_bytes(now, out.from, out.to, &self.buf);
            }
            if let Err(e) = check.checker.on_step(raft) {
                self.fail(format!("g{gid}: {e}"));
            }
            check.learn_committed(raft);
            if let Some(meta) = replica.restore_wanted() {
                progressed = true;
                let stored = &hosted.disk.snapshot;
                let held = stored.meta.as_ref().map(|m| m.last);
                if held != Some(meta.last) {
                    self.fail(format!(
                        "g{gid} node {id} must restore snapshot {} but its disk holds {held:?}",
                        meta.last
                    ));
                }
                if !replica.restore(&stored.data) {
                    self.fail(format!(
                        "g{gid} node {id} cannot restore the installed snapshot {}",
                        meta.last
                    ));
                }
                hosted.installs += 1;
                self.trace.record(format!(
                    "{now} g{gid} n{id} restored snapshot {}",
                    meta.last
                ));
            }
            replica.process();
            if replica.restore_wanted().is_some() {
                progressed = true; // a snapshot was installed: restore it on the next round
            }
            while let Some((token, output)) = replica.poll_result() {
                self.results.insert(token, output);
            }
            while let Some(s) = replica.poll_snapshot_to_store() {
                progressed = true;
                let len = s.bytes.len() as u64;
                if !replica
                    .raft_mut()
                    .handle_snapshot_taken(local, s.index, len)
                {
                    continue; // stale: the core already has a newer one
                }
                let Some(meta) = replica.raft().snapshot().cloned() else {
                    self.fail(format!(
                        "g{gid} node {id} took a snapshot but the core reports none"
                    ));
                };
                if meta.last.index != s.index {
                    self.fail(format!(
                        "g{gid} node {id} took a snapshot at {} but the core reports {}",
                        s.index, meta.last
                    ));
                }
                self.trace
                    .record(format!("{now} g{gid} n{id} took snapshot {}", meta.last));
                hosted.disk.store_snapshot(meta, s.bytes);
                hosted.snapshots_taken += 1;
            }
            while let Some(task) = replica.poll_chunk_read() {
                progressed = true;
                let SnapshotTask::ReadChunk {
                    to,
                    index,
                    offset,
                    max_bytes,
                } = task
                else {
                    continue;
                };
                let stored = &hosted.disk.snapshot;
                let len = stored.data.len() as u64;
                // A chunk of a snapshot that is not (or no longer) stored is skipped; the core
                // asks again.
                if stored.meta.as_ref().is_some_and(|m| m.last.index == index) && offset <= len {
                    let end = offset.saturating_add(max_bytes as u64).min(len);
                    let data = stored.data[offset as usize..end as usize].into();
                    replica
                        .raft_mut()
                        .handle_snapshot_chunk(local, to, index, offset, data);
                }
            }
            hosted.peak_log_bytes = hosted.peak_log_bytes.max(replica.raft().log_bytes());
            if replica.restore_wanted().is_none() {
                let applied = replica.raft().applied_index();
                if let Err(e) = check.check_state(id, applied, replica.digest().0) {
                    self.fail(format!("g{gid}: {e}"));
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// When the next event happens, if any can
    pub(crate) fn next_event_time(&self) -> Option<Instant> {
        let mut next = self.network.next_arrival();
        let mut consider = |t: Instant| next = Some(next.map_or(t, |x: Instant| x.min(t)));
        for n in self.nodes.iter().filter(|n| n.up && !n.paused) {
            for g in n.groups.values() {
                // Without a CPU model `cpu_free_at` stays at zero and changes nothing.
                if let Some(t) = g.disk.next_completion() {
                    consider(t.max(n.cpu_free_at));
                }
                if let Some(t) = g.replica.as_ref().and_then(|r| next_timer(r.as_ref())) {
                    consider(unskew(self.now, n.drift_ppm, t).max(n.cpu_free_at));
                }
            }
        }
        next
    }

    /// Spends node `id`'s CPU on one event starting now (or when the CPU frees up, for a
    /// direct proposal handled at once); nothing without a CPU model
    fn charge_cpu(&mut self, id: NodeId) {
        if let Some(service) = self.config.cpu_per_event {
            let node = &mut self.nodes[(id - 1) as usize];
            node.cpu_free_at = node.cpu_free_at.max(self.now) + service;
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

/// The earliest of a replica's Raft timeout and (for a replica group) its driver's poll timer
fn next_timer(replica: &dyn Hosted) -> Option<Instant> {
    let raft = replica.raft().poll_timeout();
    let driver = replica.driver().and_then(|d| d.poll_timeout());
    match (raft, driver) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
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
