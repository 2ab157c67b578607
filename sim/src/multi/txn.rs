//! A transactional list-append workload and its checker, in the manner of Elle
//!
//! Users run transactions through [`KvOp::Multi`] (`MULTI`/`EXEC`): an **append**
//! transaction pushes a value unique to it onto one to three lists (`RPUSH`), a **read**
//! transaction reads one to three lists whole (`LRANGE 0 -1`). The lists of one transaction
//! share a hash tag, so they are in one shard. Since every value is unique and lists only
//! grow, each read reveals the order of the appends it saw, and [`TxnWorkload::check`]
//! requires, for every list:
//!
//! - no value twice in a read, and no value no transaction appended;
//! - every two reads ordered by prefix (one order of appends for the list);
//! - a read that began after an append was acknowledged sees it (real time), and an append
//!   acknowledged before another began comes first in the list;
//! - after the run, the final lists hold every acknowledged append;
//!
//! and across the lists of a transaction, that a read sees an append transaction on all the
//! lists they share or on none (no fractured reads: the transaction applied at once).
//! Transactions given up (outcome unknown) may or may not appear, but the same rules hold for
//! what does.

use std::collections::{BTreeMap, BTreeSet};

use shale_core::shard::data::{CollectionOp, DataReply, ListOp};
use shale_core::shard::{KvOp, KvResult};
use shale_core::time::{Duration, Instant};

use super::{CLERK_POLL, KvClient, ShardedCluster};
use crate::SimError;

/// One transaction, as recorded
#[derive(Clone, Debug)]
struct Txn {
    /// Lists appended to (with this transaction's value) or read
    keys: Vec<Vec<u8>>,
    /// The value an append transaction pushed (`None`: a read)
    value: Option<Vec<u8>>,
    /// What a read saw, per key
    read: Vec<Vec<Vec<u8>>>,
    invoked: Instant,
    /// When it was acknowledged (`None`: still running or given up)
    done: Option<Instant>,
}

/// A read of one list: when its transaction was invoked and acknowledged, and what it saw
type Read = (Instant, Instant, Vec<Vec<u8>>);

#[derive(Debug)]
struct TxnUser {
    client: KvClient,
    running: Option<usize>,
    next_at: Instant,
    count: u64,
}

/// Users running list-append transactions (see the module docs)
#[derive(Debug)]
pub struct TxnWorkload {
    users: Vec<TxnUser>,
    txns: Vec<Txn>,
    /// Hash tags of the groups of lists
    tags: Vec<String>,
    give_up: Option<Duration>,
    /// Transactions acknowledged
    pub completed: u64,
    /// Transactions given up
    pub unknown: u64,
}

fn list_key(tag: &str, i: u64) -> Vec<u8> {
    format!("{{{tag}}}list{i}").into_bytes()
}

impl TxnWorkload {
    /// `users` users over lists of `tags.len()` hash tags (four lists each); with `give_up`,
    /// a transaction not done in that time is abandoned (outcome unknown)
    pub fn new(
        cluster: &mut ShardedCluster,
        users: usize,
        tags: Vec<String>,
        give_up: Option<Duration>,
    ) -> Self {
        let users = (0..users)
            .map(|_| TxnUser {
                client: cluster.client(),
                running: None,
                next_at: Instant::ZERO,
                count: 0,
            })
            .collect();
        TxnWorkload {
            users,
            txns: Vec::new(),
            tags,
            give_up,
            completed: 0,
            unknown: 0,
        }
    }

    /// Moves every user on at the current time; with `start`, idle users begin new
    /// transactions
    pub fn tick(&mut self, c: &mut ShardedCluster, start: bool) -> Result<(), SimError> {
        let now = c.sim.now();
        for u in 0..self.users.len() {
            if let Some(t) = self.users[u].running {
                if let Some(result) = self.users[u].client.poll(&mut c.sim) {
                    let txn = &mut self.txns[t];
                    match (&txn.value, result) {
                        (Some(_), Ok(KvResult::Many(Some(results))))
                            if results
                                .iter()
                                .all(|r| matches!(r, Ok(KvResult::Reply(DataReply::Int(_))))) => {}
                        (None, Ok(KvResult::Many(Some(results)))) => {
                            for r in results {
                                let Ok(KvResult::Reply(DataReply::Array(items))) = r else {
                                    return Err(c.sim.error(format!("a read answered {r:?}")));
                                };
                                txn.read.push(
                                    items
                                        .into_iter()
                                        .map(|i| match i {
                                            DataReply::Bulk(b) => b,
                                            other => format!("{other:?}").into_bytes(),
                                        })
                                        .collect(),
                                );
                            }
                        }
                        (_, other) => {
                            return Err(c.sim.error(format!(
                                "transaction on {:?} answered {other:?}",
                                txn.keys
                            )));
                        }
                    }
                    txn.done = Some(c.sim.now());
                    self.completed += 1;
                    self.users[u].running = None;
                    self.users[u].next_at = now + Duration::from_millis(5);
                } else if self
                    .give_up
                    .is_some_and(|g| now >= self.txns[t].invoked + g)
                {
                    self.unknown += 1;
                    let user = &mut self.users[u];
                    user.client.cancel();
                    user.client = user.client.successor(&mut c.sim);
                    user.running = None;
                }
            }
            let user = &mut self.users[u];
            if start && user.running.is_none() && now >= user.next_at {
                let rng = c.sim.workload_rng();
                let tag = self.tags[rng.below(self.tags.len() as u64) as usize].clone();
                let n = 1 + rng.below(3);
                let mut keys: Vec<Vec<u8>> = Vec::new();
                for _ in 0..n {
                    let k = list_key(&tag, rng.below(4));
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
                let append = rng.chance(3, 5);
                user.count += 1;
                let value = append.then(|| format!("{u}.{}", user.count).into_bytes());
                let ops = keys
                    .iter()
                    .map(|k| KvOp::Collection {
                        key: k.clone(),
                        op: CollectionOp::List(match &value {
                            Some(v) => ListOp::Push {
                                values: vec![v.clone()],
                                left: false,
                                only_existing: false,
                            },
                            None => ListOp::Range { start: 0, stop: -1 },
                        }),
                    })
                    .collect();
                self.txns.push(Txn {
                    keys,
                    value,
                    read: Vec::new(),
                    invoked: now,
                    done: None,
                });
                user.running = Some(self.txns.len() - 1);
                user.client.start(
                    &mut c.sim,
                    KvOp::Multi {
                        ops,
                        watched: Vec::new(),
                    },
                );
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

    /// Lets the transactions in flight finish (or be given up); an error if some still run
    /// after `budget`
    pub fn drain(&mut self, c: &mut ShardedCluster, budget: Duration) -> Result<(), SimError> {
        let end = c.sim.now() + budget;
        loop {
            self.tick(c, false)?;
            if self.users.iter().all(|u| u.running.is_none()) {
                return Ok(());
            }
            if c.sim.now() >= end {
                return Err(c
                    .sim
                    .error(format!("transactions still running after {budget}")));
            }
            c.sim.run_for(CLERK_POLL);
        }
    }

    /// Reads every list and checks the history (see the module docs)
    pub fn check(&self, c: &mut ShardedCluster) -> Result<(), SimError> {
        // value -> its append transaction
        let appended: BTreeMap<&[u8], &Txn> = self
            .txns
            .iter()
            .filter_map(|t| t.value.as_deref().map(|v| (v, t)))
            .collect();
        // Reads per key: (invoked, done, list), the final one last
        let mut reads: BTreeMap<Vec<u8>, Vec<Read>> = BTreeMap::new();
        for t in self.txns.iter().filter(|t| t.value.is_none()) {
            if let Some(done) = t.done {
                for (k, list) in t.keys.iter().zip(&t.read) {
                    reads
                        .entry(k.clone())
                        .or_default()
                        .push((t.invoked, done, list.clone()));
                }
            }
        }
        let now = c.sim.now();
        for tag in &self.tags {
            for i in 0..4 {
                let key = list_key(tag, i);
                let op = KvOp::Collection {
                    key: key.clone(),
                    op: CollectionOp::List(ListOp::Range { start: 0, stop: -1 }),
                };
                let list = match c.op(op)? {
                    Ok(KvResult::Reply(DataReply::Array(items))) => items
                        .into_iter()
                        .map(|i| match i {
                            DataReply::Bulk(b) => b,
                            other => format!("{other:?}").into_bytes(),
                        })
                        .collect(),
                    other => return Err(c.sim.error(format!("final read answered {other:?}"))),
                };
                reads.entry(key).or_default().push((now, c.sim.now(), list));
            }
        }
        let fail = |c: &ShardedCluster, what: String| Err(c.sim.error(what));
        for (key, key_reads) in &reads {
            let name = String::from_utf8_lossy(key);
            let longest = key_reads
                .iter()
                .map(|(_, _, l)| l)
                .max_by_key(|l| l.len())
                .cloned()
                .unwrap_or_default();
            for (invoked, _, list) in key_reads {
                let distinct: BTreeSet<&Vec<u8>> = list.iter().collect();
                if distinct.len() != list.len() {
                    return fail(c, format!("{name}: a value twice in {list:?}"));
                }
                if list[..] != longest[..list.len()] {
                    return fail(
                        c,
                        format!("{name}: reads {list:?} and {longest:?} disagree"),
                    );
                }
                for v in list {
                    let Some(t) = appended.get(v.as_slice()) else {
                        return fail(c, format!("{name}: {v:?} was never appended"));
                    };
                    if !t.keys.contains(key) {
                        return fail(c, format!("{name}: {v:?} was appended elsewhere"));
                    }
                }
                // Real time: appends acknowledged before this read began are in it.
                for t in appended.values() {
                    if t.keys.contains(key)
                        && t.done.is_some_and(|d| d < *invoked)
                        && !list.contains(t.value.as_ref().unwrap_or(&Vec::new()))
                    {
                        return fail(
                            c,
                            format!(
                                "{name}: a read begun after {:?} was acknowledged misses it",
                                t.value
                            ),
                        );
                    }
                }
            }
            // Appends acknowledged before another began come first.
            let position: BTreeMap<&[u8], usize> = longest
                .iter()
                .enumerate()
                .map(|(i, v)| (v.as_slice(), i))
                .collect();
            for a in appended.values().filter(|t| t.keys.contains(key)) {
                for b in appended.values().filter(|t| t.keys.contains(key)) {
                    let (Some(pa), Some(pb)) = (
                        a.value.as_deref().and_then(|v| position.get(v)),
                        b.value.as_deref().and_then(|v| position.get(v)),
                    ) else {
                        continue;
                    };
                    if a.done.is_some_and(|d| d < b.invoked) && pa > pb {
                        return fail(
                            c,
                            format!(
                                "{name}: {:?} precedes {:?} acknowledged before it",
                                b.value, a.value
                            ),
                        );
                    }
                }
            }
        }
        // No fractured reads: a read sees an append on all the lists they share, or none.
        for r in self
            .txns
            .iter()
            .filter(|t| t.value.is_none() && t.done.is_some())
        {
            for a in appended.values() {
                let Some(v) = &a.value else { continue };
                let seen: Vec<bool> = r
                    .keys
                    .iter()
                    .zip(&r.read)
                    .filter(|(k, _)| a.keys.contains(k))
                    .map(|(_, list)| list.contains(v))
                    .collect();
                if seen.iter().any(|&s| s) && seen.iter().any(|&s| !s) {
                    return fail(
                        c,
                        format!(
                            "a read of {:?} saw {v:?} on some lists only: {:?}",
                            r.keys, r.read
                        ),
                    );
                }
            }
        }
        Ok(())
    }
}
