//! Writers of distinct keys: each acknowledged `SET` is recorded and must survive anything

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{Counters, Rng, RoamingConnection, connect, is_connection_error, query};

/// Pause after each answered operation
const PACE: Duration = Duration::from_millis(8);

/// What the writers share
#[derive(Default)]
pub struct Shared {
    /// Acknowledged key -> value
    pub acked: Mutex<BTreeMap<String, String>>,
    /// Reads of an acknowledged key that did not return its value: `(key, expected, got)`
    pub bad_reads: Mutex<Vec<String>>,
    /// Per-outcome counts
    pub counters: Counters,
    stop: AtomicBool,
}

impl Shared {
    /// Number of acknowledged writes so far
    pub fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }
}

/// A running set of writer threads
pub struct Writers {
    /// Their shared record
    pub shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Writers {
    /// Starts `n` writers, writer `w` first connecting to `addrs[w % len]`; keys are
    /// `<prefix>w<w>-<n>`
    pub fn start(n: usize, addrs: &[SocketAddr], prefix: &str) -> Writers {
        let shared = Arc::new(Shared::default());
        let threads = (0..n)
            .map(|w| {
                let (shared, addrs, prefix) =
                    (Arc::clone(&shared), addrs.to_vec(), prefix.to_owned());
                thread::spawn(move || run(w, &prefix, addrs, &shared))
            })
            .collect();
        Writers { shared, threads }
    }

    /// Waits until at least `count` writes are acknowledged; false at the deadline
    pub fn wait_acked(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.shared.acked_count() < count {
            if Instant::now() > deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Stops and joins the writers (each finishes its operation in flight, which is bounded
    /// by the reply timeout)
    pub fn stop(self) -> Arc<Shared> {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("writer thread panicked");
        }
        self.shared
    }
}

fn run(w: usize, prefix: &str, addrs: Vec<SocketAddr>, shared: &Shared) {
    let mut con = RoamingConnection::new(addrs, w);
    let mut rng = Rng::new(w as u64 + 7);
    let mut n = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        let Some(c) = con.get(&shared.counters) else {
            continue;
        };
        // Mostly writes of new keys, some reads of an acknowledged key of this writer.
        let read = n > 0 && rng.below(4) == 0;
        let result = if read {
            let key = format!("{prefix}w{w}-{}", rng.below(n));
            let expected = shared.acked.lock().unwrap().get(&key).cloned();
            query(c, &["GET", &key]).map(|v| {
                if let Some(expected) = expected {
                    let got: Option<String> = match v {
                        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into()),
                        _ => None,
                    };
                    if got.as_deref() != Some(expected.as_str()) {
                        shared.bad_reads.lock().unwrap().push(format!(
                            "GET {key} on node index {} returned {got:?}, acknowledged {expected:?}",
                            con.at
                        ));
                    }
                }
            })
        } else {
            let key = format!("{prefix}w{w}-{n}");
            let value = format!("v{w}-{n}-{}", rng.below(1_000_000));
            n += 1;
            query(c, &["SET", &key, &value]).map(|_| {
                shared.acked.lock().unwrap().insert(key, value);
            })
        };
        match result {
            Ok(()) => {
                shared.counters.ok.fetch_add(1, Ordering::SeqCst);
                // Paced, so the acknowledged set stays small enough to read back quickly.
                thread::sleep(PACE);
            }
            Err(e) => {
                shared.counters.count_error(&e);
                if is_connection_error(&e) {
                    con.reset();
                } else {
                    thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// Reads every acknowledged key from node `addr` in `MGET` batches (retrying TRYAGAIN and
/// IO errors until `deadline`); returns the mismatches, or Err if it ran out of time
pub fn verify(
    addr: SocketAddr,
    acked: &BTreeMap<String, String>,
    deadline: Instant,
) -> Result<Vec<String>, String> {
    let pairs: Vec<(&String, &String)> = acked.iter().collect();
    let mut missing = Vec::new();
    let mut last_error = String::new();
    let mut con = None;
    for batch in pairs.chunks(200) {
        loop {
            if Instant::now() > deadline {
                return Err(format!("verification of {addr} timed out: {last_error}"));
            }
            if con.is_none() {
                match connect(addr) {
                    Ok(c) => con = Some(c),
                    Err(e) => {
                        last_error = e.to_string();
                        thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                }
            }
            let mut cmd = redis::cmd("MGET");
            for (k, _) in batch {
                cmd.arg(k.as_str());
            }
            match cmd.query::<Vec<Option<String>>>(con.as_mut().unwrap()) {
                Ok(values) => {
                    for ((k, v), got) in batch.iter().zip(values) {
                        if got.as_deref() != Some(v.as_str()) {
                            missing.push(format!("{k}: acknowledged {v:?}, read {got:?}"));
                        }
                    }
                    break;
                }
                Err(e) => {
                    last_error = e.to_string();
                    if is_connection_error(&e) {
                        con = None;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    Ok(missing)
}
