//! The event loop: commands, message delivery, disk completions, timeouts, and draining each
//! node's outputs through the invariant checker

use shale_core::raft::{Index, LogId, NodeId, Outgoing, ProposeError};
use shale_core::time::{Duration, Instant};

use crate::app::{load_snapshot, serve_snapshot_task};

use crate::cluster::{Sim, SimError, SimNode};

impl Sim {
    // ----- commands -----

    /// Proposes `data` on node `id`
    pub fn propose(&mut self, id: NodeId, data: &[u8]) -> Result<LogId, ProposeError> {
        let now = self.local_time(id);
        let Some(raft) = self.nodes[(id - 1) as usize].raft.as_mut() else {
            return Err(ProposeError::NotLeader { hint: None });
        };
        let result = raft.propose(now, data);
        if let Ok(log_id) = result {
            self.trace
                .record(format!("{} n{id} propose {log_id}", self.now));
        }
        self.after_event(id);
        result
    }

    // ----- the event loop -----

    /// Processes the next event; `false` when nothing can ever happen again
    pub fn step(&mut self) -> bool {
        let Some(at) = self.next_event_time() else {
            return false;
        };
        self.now = self.now.max(at);
        // Ties are broken in a fixed order: disks, then the network, then timers, by node id.
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            if node.raft.is_none() || node.paused {
                continue;
            }
            if node.disk.next_completion().is_some_and(|t| t <= self.now) {
                let id = node.id;
                let now = self.local_time(id);
                let node = &mut self.nodes[i];
                if let Some(write_id) = node.disk.complete_due(self.now) {
                    if let Some(raft) = node.raft.as_mut() {
                        raft.handle_persisted(now, write_id);
                    }
                    self.trace
                        .record(format!("{} n{id} persisted w{write_id}", self.now));
                    self.after_event(id);
                }
                return true;
            }
        }
        if let Some((to, decoded)) = self.network.pop_due(self.now) {
            self.deliver(to, decoded);
            return true;
        }
        for i in 0..self.nodes.len() {
            let id = self.nodes[i].id;
            let now = self.local_time(id);
            let node = &mut self.nodes[i];
            if node.paused {
                continue;
            }
            let Some(raft) = node.raft.as_mut() else {
                continue;
            };
            if raft.poll_timeout().is_some_and(|t| t <= now) {
                let before = (raft.role(), raft.term());
                if raft.handle_timeout(now).is_err() {
                    self.busy_drops += 1;
                }
                let after = (raft.role(), raft.term());
                if before != after {
                    self.trace.record(format!(
                        "{} n{id} timeout: {} t{} -> {} t{}",
                        self.now, before.0, before.1, after.0, after.1
                    ));
                }
                self.after_event(id);
                return true;
            }
        }
        true
    }

    pub(crate) fn deliver(
        &mut self,
        to: NodeId,
        decoded: Result<Outgoing, shale_core::wire::DecodeError>,
    ) {
        let Ok(out) = decoded else {
            self.undecodable += 1;
            return;
        };
        let i = (to as usize).wrapping_sub(1);
        let Some(node) = self.nodes.get_mut(i) else {
            return;
        };
        if node.paused {
            // Held in the receiver's socket buffer until it resumes; re-checked every 10 ms.
            let at = self.now + Duration::from_millis(10);
            self.network.defer(at, &out);
            return;
        }
        if node.raft.is_none() {
            self.network.stats.dropped += 1;
            return;
        }
        self.network.stats.delivered += 1;
        if let Some(c) = self.network.stats.received_by_node.get_mut(i) {
            *c += 1;
        }
        let now = self.local_time(to);
        let raft = self.nodes[i].raft.as_mut().expect("checked above");
        let (busy, what) = crate::trace::deliver_traced(raft, now, out);
        if busy {
            self.busy_drops += 1;
        }
        self.trace.record(format!("{} n{to} {what}", self.now));
        self.after_event(to);
    }

    /// Drains node `id`'s outputs and checks the invariants
    pub(crate) fn after_event(&mut self, id: NodeId) {
        let i = (id - 1) as usize;
        let now = self.now;
        let local = self.local_time(id);
        loop {
            let mut progressed = false;
            let node = &mut self.nodes[i];
            let Some(raft) = node.raft.as_mut() else {
                return;
            };
            while let Some(write) = raft.poll_write() {
                progressed = true;
                if let Err(e) = self.checker.on_write(raft, &write) {
                    self.fail(e);
                }
                let cfg = &self.config.disk;
                node.disk.submit(now, write, cfg, &mut self.disk_rng);
            }
            while let Some(out) = raft.poll_message() {
                progressed = true;
                self.checker.on_send(&out);
                self.network.send(now, &out);
            }
            if let Err(e) = self.checker.on_step(raft) {
                self.fail(e);
            }
            while let Some(meta) = raft.poll_restore() {
                progressed = true;
                let result = load_snapshot(&node.disk, &meta).and_then(|app| {
                    self.checker.on_restore(id, app.applied, app.digest)?;
                    Ok(app)
                });
                match result {
                    Ok(app) => {
                        node.applied.clear();
                        node.applied_base = app.applied;
                        node.app = app;
                    }
                    Err(e) => self.fail(format!("node {id} restoring an installed snapshot: {e}")),
                }
                node.installs += 1;
                self.trace.record(format!(
                    "{} n{id} restored snapshot {}",
                    self.now, meta.last
                ));
            }
            while let Some(entry) = raft.poll_apply() {
                progressed = true;
                let result = node.app.apply(&entry);
                let checked = self
                    .checker
                    .on_apply(id, &entry)
                    .and_then(|()| self.checker.check_digest(id, entry.index, node.app.digest));
                if let Err(e) = checked {
                    self.fail(e);
                }
                if self.history.len() as Index == entry.index - 1 {
                    self.history.push(entry.clone());
                }
                let life = node.restarts;
                self.client_hooks.applied(id, life, entry.log_id(), result);
                node.applied.push(entry);
            }
            // Reads after applies: a read whose index is applied can be served at once.
            while let Some(state) = raft.poll_read() {
                self.client_hooks.read(id, node.restarts, state);
            }
            while let Some(task) = raft.poll_snapshot_task() {
                progressed = true;
                match serve_snapshot_task(raft, &node.app, &mut node.disk, task, local) {
                    Ok(Some(taken)) => {
                        self.trace
                            .record(format!("{} n{id} took snapshot {taken}", self.now));
                        node.snapshots_taken += 1;
                    }
                    Ok(None) => {}
                    Err(e) => self.fail(format!("node {id}: {e}")),
                }
            }
            node.peak_log_bytes = node.peak_log_bytes.max(raft.log_bytes());
            if !progressed {
                return;
            }
        }
    }

    pub(crate) fn next_event_time(&self) -> Option<Instant> {
        let mut next = self.network.next_arrival();
        for n in &self.nodes {
            let Some(raft) = n.raft.as_ref() else {
                continue;
            };
            if n.paused {
                continue;
            }
            let candidates = [
                n.disk.next_completion(),
                raft.poll_timeout().map(|t| self.global_time(n, t)),
            ];
            for t in candidates.into_iter().flatten() {
                next = Some(next.map_or(t, |x: Instant| x.min(t)));
            }
        }
        next
    }

    /// Node `id`'s clock reading now (virtual time skewed by its drift)
    pub(crate) fn local_time(&self, id: NodeId) -> Instant {
        let drift = self.nodes[(id - 1) as usize].drift_ppm;
        skew(self.now, drift)
    }

    /// The global time at which node `n`'s clock reads `local`
    pub(crate) fn global_time(&self, n: &SimNode, local: Instant) -> Instant {
        unskew(self.now, n.drift_ppm, local)
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
        done: impl FnMut(&Sim) -> bool,
    ) -> Result<(), SimError> {
        crate::clock::run_until(self, budget, what, done)
    }

    /// An error for this run at this time
    pub fn error(&self, message: String) -> SimError {
        SimError {
            seed: self.config.seed,
            message,
            at: self.now,
        }
    }

    /// Reports an invariant violation: panics with the seed and the recent trace
    pub(crate) fn fail(&self, message: String) -> ! {
        panic!(
            "INVARIANT VIOLATED: {message}\nseed {seed} at {now}; replay with SHALE_SEED={seed}\nrecent events:\n{tail}",
            seed = self.config.seed,
            now = self.now,
            tail = self.trace.tail()
        );
    }
}

/// The global time at which a clock drifting by `drift_ppm` reads `local` (never before `now`)
pub(crate) fn unskew(now: Instant, drift_ppm: i64, local: Instant) -> Instant {
    if drift_ppm == 0 {
        return local;
    }
    let micros = local.as_micros() as i128 * 1_000_000 / (1_000_000 + drift_ppm as i128);
    let mut t = Instant::from_micros(micros.max(0) as u64);
    // Round up so the node's clock has really reached `local` at `t`.
    while skew(t, drift_ppm) < local {
        t += Duration::from_micros(1);
    }
    t.max(now)
}

/// What a clock drifting by `drift_ppm` reads at global time `t`
pub(crate) fn skew(t: Instant, drift_ppm: i64) -> Instant {
    if drift_ppm == 0 {
        return t;
    }
    let micros = t.as_micros() as i128 + t.as_micros() as i128 * drift_ppm as i128 / 1_000_000;
    Instant::from_micros(micros.max(0) as u64)
}

impl crate::clock::VirtualTime for Sim {
    fn clock(&mut self) -> &mut Instant {
        &mut self.now
    }

    fn next_event_time(&self) -> Option<Instant> {
        Sim::next_event_time(self)
    }

    fn step(&mut self) -> bool {
        Sim::step(self)
    }

    fn error(&self, message: String) -> SimError {
        Sim::error(self, message)
    }
}
