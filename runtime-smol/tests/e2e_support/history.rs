//! Clients that record a history of GET / SET / APPEND / CAS on a few keys for the
//! linearizability checker
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
use shale_sim::linearizability::{CheckResult, History, HistoryRecorder, KvInput, KvOutput, check};

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
        let key = keys[k].as_str();
        seq += 1;
        let tag = format!("c{c}.{seq}");
        let (input, args): (KvInput, Vec<String>) = match rng.below(10) {
            0..=3 => (KvInput::get(key), vec!["GET".into(), key.into()]),
            4..=5 => (
                KvInput::put(key, &tag),
                vec!["SET".into(), key.into(), tag.clone()],
            ),
            6..=7 => {
                let suffix = format!("+{tag}");
                (
                    KvInput::append(key, &suffix),
                    vec!["APPEND".into(), key.into(), suffix],
                )
            }
            _ => {
                let expected = seen[k].clone().unwrap_or_else(|| "none".into());
                (
                    KvInput::cas(key, Some(expected.as_bytes()), &tag),
                    vec!["CAS".into(), key.into(), expected, tag.clone()],
                )
            }
        };
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let id = {
            let mut rec = shared.recorder.lock().unwrap();
            let now = shared.now();
            rec.invoke(client, input.clone(), now)
        };
        let result = query(conn, &arg_refs);
        let mut rec = shared.recorder.lock().unwrap();
        let now = shared.now();
        let output = match (&input, result) {
            (KvInput::Get { .. }, Ok(redis::Value::Nil)) => Ok(KvOutput::MISSING),
            (KvInput::Get { .. }, Ok(redis::Value::BulkString(b))) => {
                seen[k] = Some(String::from_utf8_lossy(&b).into_owned());
                Ok(KvOutput::value(b))
            }
            (KvInput::Put { .. }, Ok(redis::Value::Okay)) => Ok(KvOutput::Done),
            (KvInput::Append { .. }, Ok(redis::Value::Int(_))) => Ok(KvOutput::Done),
            (KvInput::Cas { .. }, Ok(redis::Value::Int(n))) => Ok(KvOutput::Cas(n == 1)),
            (_, Ok(other)) => {
                shared
                    .odd_replies
                    .lock()
                    .unwrap()
                    .push(format!("{input} answered {other:?}"));
                Err(None)
            }
            (_, Err(e)) => Err(Some(e)),
        };
        match output {
            Ok(out) => {
                rec.complete(id, out, now);
                shared.counters.ok.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                rec.timeout(id);
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
