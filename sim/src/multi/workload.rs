//! Concurrent KV users of a [`ShardedCluster`], with their history recorded for the
//! linearizability checker
//!
//! Each user runs one operation at a time through its own [`KvClient`]. With
//! [`Workload::OwnKeyAppends`], user `u` appends `x u j y` to its own key for `j = 0, 1, ...`,
//! so the final value of its key must be exactly its appends, each once, in order
//! ([`KvWorkload::check_appends`]). With [`Workload::Random`], users pick keys from a small set
//! and do 50% appends, 5% puts and otherwise gets. Every operation is recorded with its call
//! and return times; a user that gives up ([`KvWorkload::new`]'s `give_up`) leaves the
//! operation unknown and continues with a new session and a new history client.

use shale_core::shard::{KvOp, KvResult};
use shale_core::time::{Duration, Instant};

use super::{CLERK_POLL, KvClient, ShardedCluster};
use crate::SimError;
use crate::linearizability::{
    CheckResult, DEFAULT_BUDGET, HistoryRecorder, KvInput, KvOutput, OpId, check,
};

/// What the users do
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Each user appends unique values to its own key
    OwnKeyAppends,
    /// Users read, append and put on these shared keys
    Random(Vec<Vec<u8>>),
}

#[derive(Debug)]
struct User {
    client: KvClient,
    hist: u64,
    op: Option<(OpId, KvInput, Instant)>,
    key: Vec<u8>,
    next_value: u64,
    next_at: Instant,
}

/// Users running operations concurrently (see the module docs)
#[derive(Debug)]
pub struct KvWorkload {
    users: Vec<User>,
    recorder: HistoryRecorder,
    kind: Workload,
    give_up: Option<Duration>,
    /// The gap between one user's operations
    pub think: Duration,
    /// Operations completed
    pub completed: u64,
    /// Operations given up (outcome unknown)
    pub unknown: u64,
    /// The longest an operation took to complete, from its start (virtual time)
    pub max_latency: Duration,
}

impl KvWorkload {
    /// `users` users of `cluster`; with `give_up`, an operation not done in that time is
    /// abandoned (outcome unknown) and the user continues under a new session
    pub fn new(
        cluster: &mut ShardedCluster,
        users: usize,
        kind: Workload,
        give_up: Option<Duration>,
    ) -> Self {
        let mut recorder = HistoryRecorder::new();
        let users = (0..users)
            .map(|u| User {
                client: cluster.client(),
                hist: recorder.new_client(),
                op: None,
                key: format!("user-{u}").into_bytes(),
                next_value: 0,
                next_at: Instant::ZERO,
            })
            .collect();
        KvWorkload {
            users,
            recorder,
            kind,
            give_up,
            think: Duration::from_millis(10),
            completed: 0,
            unknown: 0,
            max_latency: Duration::ZERO,
        }
    }

    /// Moves every user on at the current time; with `start`, idle users begin new operations
    pub fn tick(&mut self, c: &mut ShardedCluster, start: bool) -> Result<(), SimError> {
        let now = c.sim.now();
        for u in 0..self.users.len() {
            let user = &mut self.users[u];
            if let Some((id, input, called)) = user.op.clone() {
                if let Some(result) = user.client.poll(&mut c.sim) {
                    let output = match (&input, result) {
                        (KvInput::Get { .. }, Ok(KvResult::Value(v))) => KvOutput::Value(v),
                        (KvInput::Append { .. }, Ok(KvResult::Length(_)))
                        | (KvInput::Put { .. }, Ok(KvResult::Done)) => KvOutput::Done,
                        (_, other) => {
                            return Err(c.sim.error(format!("{input} answered {other:?}")));
                        }
                    };
                    self.recorder.complete(id, output, c.sim.now());
                    self.completed += 1;
                    self.max_latency = self.max_latency.max(now.saturating_since(called));
                    user.op = None;
                    user.next_at = now + self.think;
                } else if self.give_up.is_some_and(|g| now >= called + g) {
                    self.recorder.timeout(id);
                    self.unknown += 1;
                    user.client.cancel();
                    user.client = user.client.successor(&mut c.sim);
                    user.hist = self.recorder.new_client();
                    user.op = None;
                }
            }
            let user = &mut self.users[u];
            if start && user.op.is_none() && now >= user.next_at {
                let j = user.next_value;
                user.next_value += 1;
                let (input, op) = match &self.kind {
                    Workload::OwnKeyAppends => append(&user.key, format!("x {u} {j} y")),
                    Workload::Random(keys) => {
                        let rng = c.sim.workload_rng();
                        let key = keys[rng.range(0, keys.len() as u64) as usize].clone();
                        match rng.range(0, 100) {
                            0..50 => append(&key, format!("{u}.{j};")),
                            50..55 => {
                                let value = format!("p{u}.{j};").into_bytes();
                                let input = KvInput::put(&key, &value);
                                (input, KvOp::Put { key, value })
                            }
                            _ => (KvInput::get(&key), KvOp::Get { key }),
                        }
                    }
                };
                let id = self.recorder.invoke(user.hist, input.clone(), now);
                user.op = Some((id, input, now));
                user.client.start(&mut c.sim, op);
            }
        }
        Ok(())
    }

    /// Runs the users for `duration`
    pub fn run_for(&mut self, c: &mut ShardedCluster, duration: Duration) -> Result<(), SimError> {
        let end = c.sim.now() + duration;
        while c.sim.now() < end {
            self.tick(c, true)?;
            c.sim.run_for(CLERK_POLL);
        }
        Ok(())
    }

    /// Lets the operations in flight finish (or be given up) without starting new ones; an
    /// error if some are still running after `budget`
    pub fn drain(&mut self, c: &mut ShardedCluster, budget: Duration) -> Result<(), SimError> {
        let end = c.sim.now() + budget;
        loop {
            self.tick(c, false)?;
            if self.users.iter().all(|u| u.op.is_none()) {
                return Ok(());
            }
            if c.sim.now() >= end {
                return Err(c
                    .sim
                    .error(format!("operations still running after {budget}")));
            }
            c.sim.run_for(CLERK_POLL);
        }
    }

    /// Reads every user's key and requires exactly its appends, each once, in order (for
    /// [`Workload::OwnKeyAppends`] without giving up)
    pub fn check_appends(&self, c: &mut ShardedCluster) -> Result<(), SimError> {
        for (u, user) in self.users.iter().enumerate() {
            let expected: String = (0..user.next_value)
                .map(|j| format!("x {u} {j} y"))
                .collect();
            let got = c.get(&user.key)?.unwrap_or_default();
            if got != expected.as_bytes() {
                return Err(c.sim.error(format!(
                    "user {u}: key holds {:?}, expected {expected:?}",
                    String::from_utf8_lossy(&got)
                )));
            }
        }
        Ok(())
    }

    /// Checks the recorded history for linearizability (per key); `Illegal` or `Unknown` is
    /// an error
    pub fn check_linearizable(self, c: &ShardedCluster) -> Result<(), SimError> {
        let history = self.recorder.finish();
        let result = check(&history, DEFAULT_BUDGET);
        if result == CheckResult::Ok {
            Ok(())
        } else {
            Err(c
                .sim
                .error(format!("history of {} ops: {result:?}", history.len())))
        }
    }
}

fn append(key: &[u8], value: String) -> (KvInput, KvOp) {
    let input = KvInput::append(key, &value);
    let op = KvOp::Append {
        key: key.to_vec(),
        value: value.into_bytes(),
    };
    (input, op)
}
