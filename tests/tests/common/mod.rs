//! Shared by the membership and transfer suites: a workload that keeps proposing while the
//! scenario changes the group, remembers every value it saw committed, and the final checks
//!
//! Each suite includes this module and uses part of it.
#![allow(dead_code)]

use shale_core::raft::{Index, LogId, NodeId, ProposeError};
use shale_core::time::{Duration, Instant};
use shale_sim::{Sim, SimError};
use shale_tests::{ELECTION_TIMEOUT, ensure};

/// How often the workload proposes
pub const PERIOD: Duration = Duration::from_millis(20);

/// Time an election may take
pub fn elect() -> Duration {
    ELECTION_TIMEOUT.saturating_mul(10)
}

/// Time an agreement or a membership change may take
pub fn agree() -> Duration {
    ELECTION_TIMEOUT.saturating_mul(20)
}

/// Proposals made every [`PERIOD`] to whichever node leads, and what became of them
#[derive(Debug, Default)]
pub struct Load {
    count: u64,
    /// Accepted proposals not yet seen committed: (id, value)
    pending: Vec<(LogId, Vec<u8>)>,
    /// Values seen committed (applied somewhere): (id, value)
    pub seen: Vec<(LogId, Vec<u8>)>,
    /// When each value of `seen` was first seen committed
    pub seen_at: Vec<Instant>,
    /// Refused proposals: (when, the node asked, why)
    pub refused: Vec<(Instant, NodeId, ProposeError)>,
}

impl Load {
    /// Proposes one value to the leader (if any), and collects what committed since
    pub fn tick(&mut self, sim: &mut Sim) {
        self.collect(sim);
        let Some(leader) = sim.leader() else { return };
        self.count += 1;
        let value = format!("v{}", self.count).into_bytes();
        match sim.propose(leader, &value) {
            Ok(id) => self.pending.push((id, value)),
            Err(e) => self.refused.push((sim.now(), leader, e)),
        }
    }

    /// Moves every pending value that was applied somewhere to `seen`; drops those lost to a
    /// leader change (another entry committed at their index)
    pub fn collect(&mut self, sim: &Sim) {
        let now = sim.now();
        let (seen, seen_at) = (&mut self.seen, &mut self.seen_at);
        self.pending.retain(|(id, value)| {
            let Some(entry) = sim.n_committed(id.index).1 else {
                return true;
            };
            if entry.log_id() == *id && entry.data.as_bytes() == value.as_slice() {
                seen.push((*id, value.clone()));
                seen_at.push(now);
            }
            false
        });
    }

    /// Runs for `duration`, proposing every [`PERIOD`]
    pub fn run_for(&mut self, sim: &mut Sim, duration: Duration) {
        let end = sim.now() + duration;
        while sim.now() < end {
            sim.run_for(PERIOD.min(end.saturating_since(sim.now())));
            self.tick(sim);
        }
    }

    /// Runs, proposing every [`PERIOD`], until `done` holds (checked after every event); fails
    /// once `budget` has passed
    pub fn run_until(
        &mut self,
        sim: &mut Sim,
        budget: Duration,
        what: &str,
        mut done: impl FnMut(&Sim) -> bool,
    ) -> Result<(), SimError> {
        let end = sim.now() + budget;
        loop {
            if done(sim) {
                self.collect(sim);
                return Ok(());
            }
            let left = end.saturating_since(sim.now());
            if left == Duration::ZERO {
                return Err(sim.error(format!("timed out after {budget} waiting for {what}")));
            }
            if sim.run_until(PERIOD.min(left), what, &mut done).is_ok() {
                self.collect(sim);
                return Ok(());
            }
            self.tick(sim);
        }
    }

    /// Values seen committed so far
    pub fn committed(&self) -> usize {
        self.seen.len()
    }

    /// The longest time between two values seen committed after `since` (and from `since` to
    /// the first one)
    pub fn max_gap_since(&self, since: Instant) -> Duration {
        let mut last = since;
        let mut gap = Duration::ZERO;
        for &at in self.seen_at.iter().filter(|&&at| at >= since) {
            let d = at.saturating_since(last);
            if d.as_micros() > gap.as_micros() {
                gap = d;
            }
            last = at;
        }
        gap
    }

    /// Runs, proposing, until one more value is seen committed; returns its id
    pub fn commit_one(&mut self, sim: &mut Sim, budget: Duration) -> Result<LogId, SimError> {
        let end = sim.now() + budget;
        let before = self.committed();
        while self.committed() == before {
            if sim.now() >= end {
                return Err(sim.error(format!("no value committed within {budget}")));
            }
            self.run_for(sim, PERIOD);
        }
        Ok(self.seen[before..]
            .iter()
            .map(|(id, _)| *id)
            .max_by_key(|id| id.index)
            .expect("one more value"))
    }
}

/// Calls `f` until it succeeds (a change refused as not ready, in progress or behind is
/// retried every [`PERIOD`], proposals running); fails once `budget` has passed
pub fn retry<T, E: std::fmt::Debug>(
    sim: &mut Sim,
    load: &mut Load,
    budget: Duration,
    what: &str,
    mut f: impl FnMut(&mut Sim) -> Result<T, E>,
) -> Result<T, SimError> {
    let end = sim.now() + budget;
    loop {
        match f(sim) {
            Ok(v) => return Ok(v),
            Err(e) if sim.now() >= end => {
                return Err(sim.error(format!("{what}: still refused after {budget}: {e:?}")));
            }
            Err(_) => load.run_for(sim, PERIOD),
        }
    }
}

/// `Err` unless every member applied every value in `load.seen`, which must still be committed
/// at its index, and at least through `through`
pub fn check_seen(
    sim: &Sim,
    load: &Load,
    members: &[NodeId],
    through: Index,
) -> Result<(), SimError> {
    for &(id, ref value) in &load.seen {
        let entry = sim.n_committed(id.index).1;
        ensure(
            sim,
            entry
                .as_ref()
                .is_some_and(|e| e.log_id() == id && e.data.as_bytes() == value.as_slice()),
            || format!("value seen committed at {id} is gone: the entry there is {entry:?}"),
        )?;
    }
    for &m in members {
        let applied = sim.app(m).applied;
        ensure(sim, sim.is_up(m) && applied >= through, || {
            format!("member {m} applied only {applied} of {through}")
        })?;
        let base = sim.applied_base(m);
        for &(id, ref value) in load.seen.iter().filter(|(id, _)| id.index > base) {
            let entry = sim.applied(m).get((id.index - base - 1) as usize);
            ensure(
                sim,
                entry.is_some_and(|e| e.log_id() == id && e.data.as_bytes() == value.as_slice()),
                || format!("member {m} applied {entry:?} where {id} was committed"),
            )?;
        }
    }
    Ok(())
}

/// The final checks of a scenario: heals everything, restarts every crashed node, waits
/// (proposals running) for the membership to settle on `voters` and `learners` on every
/// member, commits a final value there, and checks every value seen committed with
/// [`check_seen`]
pub fn finish(
    sim: &mut Sim,
    load: &mut Load,
    voters: &[NodeId],
    learners: &[NodeId],
) -> Result<(), SimError> {
    sim.heal();
    for id in sim.ids() {
        if !sim.is_up(id) {
            sim.restart(id);
        }
        if sim.is_paused(id) {
            sim.resume(id);
        }
    }
    let target = shale_core::raft::Membership::with_learners(voters, learners);
    load.run_until(sim, agree(), "the final membership", |s| {
        s.settled_membership().as_ref() == Some(&target)
    })?;
    let last = load.commit_one(sim, agree())?;
    let members = target.members();
    sim.run_until(agree(), "every member to apply the final value", |s| {
        members
            .iter()
            .all(|&m| s.is_up(m) && s.app(m).applied >= last.index)
    })?;
    for &m in &members {
        let held = sim.membership(m).cloned();
        ensure(sim, held.as_ref() == Some(&target), || {
            format!("member {m} holds membership {held:?}, not {target:?}")
        })?;
    }
    check_seen(sim, load, &members, last.index)
}
