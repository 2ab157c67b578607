//! Harness for the end-to-end tests: processes ([`cluster`]), a fault-injecting proxy
//! ([`proxy`]) and client workloads ([`history`], [`writers`])

pub mod cluster;
pub mod history;
pub mod proxy;
pub mod writers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Longest a client waits to connect
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest a client waits for one reply before giving up on the operation (outcome unknown)
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(4);

/// A Redis connection to `addr` with bounded connect, read and write waits
pub fn connect(addr: SocketAddr) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://{addr}/"))?;
    let con = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
    con.set_read_timeout(Some(REPLY_TIMEOUT))?;
    con.set_write_timeout(Some(CONNECT_TIMEOUT))?;
    Ok(con)
}

/// Runs one command
pub fn query(con: &mut redis::Connection, args: &[&str]) -> redis::RedisResult<redis::Value> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(con)
}

/// Whether an error leaves the outcome unknown and the connection should be replaced
pub fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_unrecoverable_error()
}

/// A small deterministic random source (xorshift), one per worker
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded with `seed` (any value)
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value below `n`
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Counters a workload keeps, printed in failure messages
#[derive(Debug, Default)]
pub struct Counters {
    /// Operations that got an answer
    pub ok: AtomicU64,
    /// Operations answered TRYAGAIN
    pub tryagain: AtomicU64,
    /// Operations lost to IO errors or timeouts
    pub io: AtomicU64,
    /// Other error replies
    pub other: AtomicU64,
    /// Reconnections
    pub reconnects: AtomicU64,
}

impl Counters {
    /// One line: `ok=.. tryagain=.. io=.. other=.. reconnects=..`
    pub fn summary(&self) -> String {
        format!(
            "ok={} tryagain={} io/timeout={} other-errors={} reconnects={}",
            self.ok.load(Ordering::SeqCst),
            self.tryagain.load(Ordering::SeqCst),
            self.io.load(Ordering::SeqCst),
            self.other.load(Ordering::SeqCst),
            self.reconnects.load(Ordering::SeqCst)
        )
    }

    /// Counts one failed operation by kind
    pub fn count_error(&self, e: &redis::RedisError) {
        let counter = if e.code() == Some("TRYAGAIN") {
            &self.tryagain
        } else if is_connection_error(e) {
            &self.io
        } else {
            &self.other
        };
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

/// A connection that moves to the next node when it breaks
pub struct RoamingConnection {
    addrs: Vec<SocketAddr>,
    next: usize,
    con: Option<redis::Connection>,
    /// The node index the current connection goes to
    pub at: usize,
}

impl RoamingConnection {
    /// Starts at node index `first` of `addrs`
    pub fn new(addrs: Vec<SocketAddr>, first: usize) -> RoamingConnection {
        RoamingConnection {
            addrs,
            next: first,
            con: None,
            at: first,
        }
    }

    /// The live connection, connecting (to the next node in turn) if there is none;
    /// `None` if that connection attempt failed
    pub fn get(&mut self, counters: &Counters) -> Option<&mut redis::Connection> {
        if self.con.is_none() {
            let i = self.next % self.addrs.len();
            self.next += 1;
            self.at = i;
            counters.reconnects.fetch_add(1, Ordering::SeqCst);
            match connect(self.addrs[i]) {
                Ok(c) => self.con = Some(c),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(50));
                    return None;
                }
            }
        }
        self.con.as_mut()
    }

    /// Drops the connection; the next [`get`](Self::get) goes to the next node
    pub fn reset(&mut self) {
        self.con = None;
    }
}
