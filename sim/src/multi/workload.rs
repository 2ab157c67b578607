//! Concurrent KV users of a [`ShardedCluster`], with their history recorded for the
//! linearizability checker
//!
//! Each user runs one operation at a time through its own [`KvClient`]. With
//! [`Workload::OwnKeyAppends`], user `u` appends `x u j y` to its own key for `j = 0, 1, ...`,
//! so the final value of its key must be exactly its appends, each once, in order
//! ([`KvWorkload::check_appends`]). With [`Workload::Random`], users pick a key `k` from a
//! small set and run, on `k`, `{k}m` (its partner, same shard by the hash tag) and `{k}n` (a
//! counter): 40% appends, 5% puts, 5% deletes, 8% increments, 6% multi-sets of `k` and
//! `{k}m`, 8% multi-gets of all three, and otherwise gets. A multi-key operation is recorded
//! as one operation per key, each with the operation's call and return times (under a history
//! client of its own), so every key's history checks what the operation did to that key.
//! Every operation is recorded with its call and return times; a user that gives up
//! ([`KvWorkload::new`]'s `give_up`) leaves the operation unknown and continues with a new
//! session and a new history client.

use shale_core::shard::{KvError, KvOp, KvResult};
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
    /// The operation running: its recorded parts (one per key) and when it was called
    op: Option<(Vec<(OpId, KvInput)>, Instant)>,
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
            if let Some((parts, called)) = user.op.clone() {
                if let Some(result) = user.client.poll(&mut c.sim) {
                    let Some(outputs) = outputs(&parts, &result) else {
                        let what: Vec<String> = parts.iter().map(|(_, i)| i.to_string()).collect();
                        return Err(c
                            .sim
                            .error(format!("{} answered {result:?}", what.join(" + "))));
                    };
                    for ((id, _), output) in parts.iter().zip(outputs) {
                        self.recorder.complete(*id, output, c.sim.now());
                    }
                    self.completed += 1;
                    self.max_latency = self.max_latency.max(now.saturating_since(called));
                    user.op = None;
                    user.next_at = now + self.think;
                } else if self.give_up.is_some_and(|g| now >= called + g) {
                    for (id, _) in &parts {
                        self.recorder.timeout(*id);
                    }
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
                let (inputs, op) = match &self.kind {
                    Workload::OwnKeyAppends => {
                        let (input, op) = append(&user.key, format!("x {u} {j} y"));
                        (vec![input], op)
                    }
                    Workload::Random(keys) => {
                        let rng = c.sim.workload_rng();
                        let key = keys[rng.range(0, keys.len() as u64) as usize].clone();
                        let (roll, pick) = (rng.range(0, 100), rng.range(0, 3));
                        random_op(key, roll, pick, &format!("{u}.{j}"))
                    }
                };
                // The first part under the user's history client, the others (other keys of
                // a multi-key operation) each under a client of its own.
                let mut parts = Vec::with_capacity(inputs.len());
                for (i, input) in inputs.into_iter().enumerate() {
                    let hist = if i == 0 {
                        user.hist
                    } else {
                        self.recorder.new_client()
                    };
                    parts.push((self.recorder.invoke(hist, input.clone(), now), input));
                }
                user.op = Some((parts, now));
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

/// What each recorded part of an operation returned, from the operation's result; `None` if
/// the result does not fit the operation
fn outputs(parts: &[(OpId, KvInput)], result: &Result<KvResult, KvError>) -> Option<Vec<KvOutput>> {
    let one = |output| Some(vec![output]);
    match (&parts.first()?.1, result) {
        (KvInput::Get { .. }, Ok(KvResult::Value(v))) if parts.len() == 1 => {
            one(KvOutput::Value(v.clone()))
        }
        (KvInput::Get { .. }, Ok(KvResult::Values(vs))) if vs.len() == parts.len() => {
            Some(vs.iter().map(|v| KvOutput::Value(v.clone())).collect())
        }
        (KvInput::Put { .. }, Ok(KvResult::Done)) => Some(vec![KvOutput::Done; parts.len()]),
        (KvInput::Append { .. }, Ok(KvResult::Length(_))) => one(KvOutput::Done),
        (KvInput::Delete { .. }, Ok(KvResult::Deleted(existed))) => {
            one(KvOutput::Deleted(*existed))
        }
        (KvInput::Incr { .. }, Ok(KvResult::Integer(n))) => one(KvOutput::Int(Some(*n))),
        (KvInput::Incr { .. }, Err(KvError::NotAnInteger | KvError::Overflow)) => {
            one(KvOutput::Int(None))
        }
        _ => None,
    }
}

/// The operation a [`Workload::Random`] user runs on `key` for a roll of 0..100 (`pick`
/// chooses among the key, its partner and its counter where the operation allows), with
/// `tag` making written values unique; its recorded parts, one per key
fn random_op(key: Vec<u8>, roll: u64, pick: u64, tag: &str) -> (Vec<KvInput>, KvOp) {
    let partner = [b"{".as_slice(), &key, b"}m"].concat();
    let counter = [b"{".as_slice(), &key, b"}n"].concat();
    match roll {
        0..40 => {
            let (input, op) = append(&key, format!("{tag};"));
            (vec![input], op)
        }
        40..45 => {
            let value = format!("p{tag};").into_bytes();
            (vec![KvInput::put(&key, &value)], KvOp::Put { key, value })
        }
        45..50 => {
            let key = if pick == 0 { partner } else { key };
            (vec![KvInput::delete(&key)], KvOp::Delete { key })
        }
        50..58 => {
            let by = 1 + pick as i64;
            let input = KvInput::incr(&counter, by);
            (vec![input], KvOp::Incr { key: counter, by })
        }
        58..64 => {
            let pairs = vec![
                (key, format!("m{tag};").into_bytes()),
                (partner, format!("n{tag};").into_bytes()),
            ];
            let inputs = pairs.iter().map(|(k, v)| KvInput::put(k, v)).collect();
            (inputs, KvOp::MultiSet { pairs })
        }
        64..72 => {
            let keys = vec![key, partner, counter];
            let inputs = keys.iter().map(KvInput::get).collect();
            (inputs, KvOp::MultiGet { keys })
        }
        _ => {
            let key = [key, partner, counter][pick as usize % 3].clone();
            (vec![KvInput::get(&key)], KvOp::Get { key })
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
