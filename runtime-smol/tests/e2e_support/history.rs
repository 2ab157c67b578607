//! Clients that record a history of GET / SET / APPEND / CAS / DEL / INCRBY / MSET / MGET on a
//! few keys (each with a partner and a counter in its shard) for the linearizability checker;
//! a multi-key command is recorded as one operation per key with the command's times
//!
//! Times are microseconds of one monotonic clock since the recording started. An operation
//! is invoked (clock read) just before its request is sent and completed just after its reply
//! arrives. An operation answered TRYAGAIN or lost to an IO error or timeout has an unknown
//! outcome: it is left open (`timeout`) and the client continues under a new id.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use shale_core::time::Instant as ShaleInstant;
use shale_sim::linearizability::{
    CheckResult, History, HistoryRecorder, KvInput, KvOutput, OpId, check,
};

use super::{Counters, Rng, RoamingConnection, is_connection_error, query};

/// Search budget per key: generous, as an Unknown verdict is a failure
pub const BUDGET: u64 = 50_000_000;

/// What the clients share
pub struct Shared {
    recorder: Mutex<HistoryRecorder>,
    start: Instant,
    /// Per-outcome counts
    pub counters: Counters,
    /// Replies of an unexpected shape (a harness or product bug)
    pub odd_replies: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Shared {
    fn now(&self) -> ShaleInstant {
        ShaleInstant::from_micros(self.start.elapsed().as_micros() as u64)
    }
}

/// Running history clients
pub struct Clients {
    /// Their shared record
    pub shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Clients {
    /// Starts `n` clients over `keys`, client `c` first connecting to `addrs[c % len]`
    pub fn start(n: usize, addrs: &[SocketAddr], keys: &[String]) -> Clients {
        let shared = Arc::new(Shared {
            recorder: Mutex::new(HistoryRecorder::new()),
            start: Instant::now(),
            counters: Counters::default(),
            odd_replies: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let threads = (0..n)
            .map(|c| {
                let (shared, addrs, keys) = (Arc::clone(&shared), addrs.to_vec(), keys.to_vec());
                thread::spawn(move || run(c, addrs, &keys, &shared))
            })
            .collect();
        Clients { shared, threads }
    }

    /// Completed operations so far
    pub fn ok_count(&self) -> u64 {
        self.shared.counters.ok.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` operations completed; false at the deadline
    pub fn wait_ok(&self, count: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.ok_count() < count {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Stops and joins the clients; returns the history and the counters' summary
    pub fn stop(self) -> (History, String, Vec<String>) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("history client panicked");
        }
        let shared = Arc::into_inner(self.shared).expect("clients joined");
        let summary = shared.counters.summary();
        let odd = shared.odd_replies.into_inner().unwrap();
        (shared.recorder.into_inner().unwrap().finish(), summary, odd)
    }
}

fn run(c: usize, addrs: Vec<SocketAddr>, keys: &[String], shared: &Shared) {
    let mut con = RoamingConnection::new(addrs, c);
    let mut rng = Rng::new(c as u64 * 31 + 3);
    let mut client = shared.recorder.lock().unwrap().new_client();
    let mut seq = 0u64;
    // The last value this client saw per key, to give CAS a fair chance of swapping
    let mut seen: Vec<Option<String>> = vec![None; keys.len()];
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(conn) = con.get(&shared.counters) else {
            continue;
        };
        let k = rng.below(keys.len() as u64) as usize;
        seq += 1;
        let tag = format!("c{c}.{seq}");
        let (inputs, args) = pick(&keys[k], seen[k].as_deref(), &tag, &mut rng);
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        // One recorded operation per key; the keys after the first under clients of their own
        let ids: Vec<OpId> = {
            let mut rec = shared.recorder.lock().unwrap();
            let now = shared.now();
            inputs
                .iter()
                .enumerate()
                .map(|(i, input)| {
                    let who = if i == 0 { client } else { rec.new_client() };
                    rec.invoke(who, input.clone(), now)
                })
                .collect()
        };
        let result = query(conn, &arg_refs);
        let mut rec = shared.recorder.lock().unwrap();
        let now = shared.now();
        let outputs = match result {
            Ok(reply) => match outputs(&inputs, reply) {
                Ok(outs) => Ok(outs),
                Err(odd) => {
                    shared.odd_replies.lock().unwrap().push(odd);
                    Err(None)
                }
            },
            // INCR of a value that is not a number: a definite answer
            Err(e) if matches!(inputs[0], KvInput::Incr { .. }) && is_not_an_integer(&e) => {
                Ok(vec![KvOutput::Int(None)])
            }
            Err(e) => Err(Some(e)),
        };
        match outputs {
            Ok(outs) => {
                if let (KvInput::Get { .. }, Some(KvOutput::Value(Some(v)))) =
                    (&inputs[0], outs.first())
                {
                    seen[k] = Some(String::from_utf8_lossy(v).into_owned());
                }
                for (id, out) in ids.iter().zip(outs) {
                    rec.complete(*id, out, now);
                }
                shared.counters.ok.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                for id in ids {
                    rec.timeout(id);
                }
                client = rec.new_client();
                drop(rec);
                match e {
                    Some(e) => {
                        shared.counters.count_error(&e);
                        if is_connection_error(&e) {
                            con.reset();
                        } else {
                            thread::sleep(Duration::from_millis(20));
                        }
                    }
                    None => {
                        shared.counters.other.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        }
    }
}

fn is_not_an_integer(e: &redis::RedisError) -> bool {
    e.to_string().contains("not an integer")
}

/// The next operation on `key` (its partner `{key}m` shares its shard through the hash tag,
/// and so does its counter `{key}n`): what is recorded, one input per key, and the command
fn pick(key: &str, seen: Option<&str>, tag: &str, rng: &mut Rng) -> (Vec<KvInput>, Vec<String>) {
    let partner = format!("{{{key}}}m");
    let counter = format!("{{{key}}}n");
    let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
    match rng.below(20) {
        0..=5 => (vec![KvInput::get(key)], args(&["GET", key])),
        6..=8 => (vec![KvInput::put(key, tag)], args(&["SET", key, tag])),
        9..=10 => {
            let suffix = format!("+{tag}");
            (
                vec![KvInput::append(key, &suffix)],
                args(&["APPEND", key, &suffix]),
            )
        }
        11..=12 => {
            let expected = seen.unwrap_or("none");
            (
                vec![KvInput::cas(key, Some(expected.as_bytes()), tag)],
                args(&["CAS", key, expected, tag]),
            )
        }
        13 => {
            let target = if rng.below(2) == 0 { key } else { &partner };
            (vec![KvInput::delete(target)], args(&["DEL", target]))
        }
        14..=15 => {
            let by = 1 + rng.below(3);
            (
                vec![KvInput::incr(&counter, by as i64)],
                args(&["INCRBY", &counter, &by.to_string()]),
            )
        }
        16..=17 => {
            let (a, b) = (format!("m{tag}"), format!("n{tag}"));
            (
                vec![KvInput::put(key, &a), KvInput::put(&partner, &b)],
                args(&["MSET", key, &a, &partner, &b]),
            )
        }
        _ => (
            vec![
                KvInput::get(key),
                KvInput::get(&partner),
                KvInput::get(&counter),
            ],
            args(&["MGET", key, &partner, &counter]),
        ),
    }
}

/// What each recorded input of an operation returned, or a description of an odd reply
fn outputs(inputs: &[KvInput], reply: redis::Value) -> Result<Vec<KvOutput>, String> {
    let value = |v: &redis::Value| match v {
        redis::Value::Nil => Some(KvOutput::MISSING),
        redis::Value::BulkString(b) => Some(KvOutput::value(b)),
        _ => None,
    };
    let one = |o: Option<KvOutput>| o.map(|o| vec![o]);
    let outs = match (&inputs[0], &reply) {
        (KvInput::Get { .. }, redis::Value::Array(items)) if items.len() == inputs.len() => {
            items.iter().map(value).collect::<Option<Vec<_>>>()
        }
        (KvInput::Get { .. }, v) if inputs.len() == 1 => one(value(v)),
        (KvInput::Put { .. }, redis::Value::Okay) => Some(vec![KvOutput::Done; inputs.len()]),
        (KvInput::Append { .. }, redis::Value::Int(_)) => one(Some(KvOutput::Done)),
        (KvInput::Cas { .. }, redis::Value::Int(n)) => one(Some(KvOutput::Cas(*n == 1))),
        (KvInput::Delete { .. }, redis::Value::Int(n)) => one(Some(KvOutput::Deleted(*n == 1))),
        (KvInput::Incr { .. }, redis::Value::Int(n)) => one(Some(KvOutput::Int(Some(*n)))),
        _ => None,
    };
    outs.ok_or_else(|| {
        let what: Vec<String> = inputs.iter().map(ToString::to_string).collect();
        format!("{} answered {reply:?}", what.join(" + "))
    })
}

/// Checks `history`; on failure returns a message with the verdict and a summary
pub fn check_history(history: &History, summary: &str) -> Result<String, String> {
    let started = Instant::now();
    let verdict = check(history, BUDGET);
    let open = history
        .ops()
        .iter()
        .filter(|o| o.returned.is_none())
        .count();
    let line = format!(
        "{} operations ({} with unknown outcome; {summary}); checked in {:?}",
        history.len(),
        open,
        started.elapsed()
    );
    match verdict {
        CheckResult::Ok => Ok(line),
        CheckResult::Illegal { key, explanation } => Err(format!(
            "history is NOT linearizable on key {}: {line}\n{explanation}",
            String::from_utf8_lossy(&key)
        )),
        other => Err(format!(
            "linearizability check inconclusive: {line}\n{other:?}"
        )),
    }
}
