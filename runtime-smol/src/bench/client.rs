//! One client connection: connect, authenticate, then keep a window of requests in flight

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::error::BenchError;
use super::reply::{Reply, ReplyReader};
use super::report::Tally;
use super::workload::{Kind, Workload, encode};

/// How long a client waits for a TCP connection to be accepted
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a client waits for the reply to `AUTH`
pub const AUTH_REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// How long clients wait for outstanding replies after the run ends before giving up on them
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one blocking write may stall before the connection counts as broken
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a client waiting for replies looks at the clock and the abort flag
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// State shared by all clients of a run and the thread that reports progress
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// Replies recorded so far, across all clients (for the progress bar)
    pub(crate) ops: AtomicU64,
    /// Set by a client that failed, so the others stop early
    pub(crate) abort: AtomicBool,
    /// Set by the caller to stop sending and drain now, as if the stop time had come
    pub(crate) stop: AtomicBool,
}

/// When a run's phases start and end
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    /// End of warmup: replies from here on are recorded
    pub(crate) measure_from: Instant,
    /// No request is sent from here on
    pub(crate) stop_at: Instant,
    /// Outstanding replies are abandoned from here on
    pub(crate) give_up_at: Instant,
}

/// An open, authenticated connection to one target
#[derive(Debug)]
pub(crate) struct Connection {
    addr: SocketAddr,
    stream: TcpStream,
    reader: ReplyReader,
}

impl Connection {
    /// Connects to `addr` with `TCP_NODELAY` and sends `AUTH` if a password is given
    pub(crate) fn open(addr: SocketAddr, password: Option<&str>) -> Result<Self, BenchError> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .map_err(|source| BenchError::Connect { addr, source })?;
        let broken = |source| BenchError::Broken { addr, source };
        stream.set_nodelay(true).map_err(broken)?;
        stream
            .set_write_timeout(Some(WRITE_STALL_TIMEOUT))
            .map_err(broken)?;
        stream
            .set_read_timeout(Some(POLL_INTERVAL))
            .map_err(broken)?;
        let mut conn = Self {
            addr,
            stream,
            reader: ReplyReader::new(),
        };
        if let Some(password) = password {
            conn.auth(password)?;
        }
        Ok(conn)
    }

    fn auth(&mut self, password: &str) -> Result<(), BenchError> {
        let addr = self.addr;
        let mut out = Vec::new();
        encode(&mut out, &[b"AUTH", password.as_bytes()]);
        self.send(&out)?;
        let deadline = Instant::now() + AUTH_REPLY_TIMEOUT;
        match self.wait_reply(deadline)? {
            Some(Reply::Simple(_)) => Ok(()),
            Some(Reply::Error(message)) => Err(BenchError::Auth {
                addr,
                message: String::from_utf8_lossy(&message).into_owned(),
            }),
            Some(other) => Err(BenchError::Protocol {
                addr,
                detail: format!("unexpected reply to AUTH: {}", other.describe()),
            }),
            None => Err(BenchError::Auth {
                addr,
                message: format!("no reply within {AUTH_REPLY_TIMEOUT:?}"),
            }),
        }
    }

    /// Writes `bytes`, failing if the server stops reading for [`WRITE_STALL_TIMEOUT`]
    fn send(&mut self, bytes: &[u8]) -> Result<(), BenchError> {
        let addr = self.addr;
        self.stream.write_all(bytes).map_err(|err| {
            let source = match err.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the server stopped reading for {WRITE_STALL_TIMEOUT:?}"),
                ),
                _ => err,
            };
            BenchError::Broken { addr, source }
        })
    }

    /// The next reply, or `None` if `deadline` passes first
    fn wait_reply(&mut self, deadline: Instant) -> Result<Option<Reply>, BenchError> {
        loop {
            if let Some(reply) = self.next_buffered()? {
                return Ok(Some(reply));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            self.fill()?;
        }
    }

    fn next_buffered(&mut self) -> Result<Option<Reply>, BenchError> {
        let addr = self.addr;
        self.reader
            .next_reply()
            .map_err(|err| BenchError::malformed(addr, err))
    }

    /// Reads whatever arrives within one poll interval
    fn fill(&mut self) -> Result<(), BenchError> {
        let addr = self.addr;
        match self.reader.fill_from(&mut self.stream) {
            Ok(0) => Err(BenchError::Broken {
                addr,
                source: io::Error::new(io::ErrorKind::UnexpectedEof, "closed by the server"),
            }),
            Ok(_) => Ok(()),
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(())
            }
            Err(source) => Err(BenchError::Broken { addr, source }),
        }
    }
}

/// Drives one connection through the schedule, returning what it measured
///
/// The window is refilled after every read, so at most `pipeline` requests are outstanding and
/// each write carries as many requests as replies just arrived.
pub(crate) fn drive(
    mut conn: Connection,
    mut workload: Workload,
    pipeline: usize,
    schedule: Schedule,
    shared: &Arc<Shared>,
) -> Result<Tally, BenchError> {
    assert!(pipeline > 0);
    let addr = conn.addr;
    let mut tally = Tally::new();
    let mut in_flight: VecDeque<(Instant, Kind)> = VecDeque::with_capacity(pipeline);
    let mut out = Vec::new();
    let (mut stop_at, mut give_up_at) = (schedule.stop_at, schedule.give_up_at);
    loop {
        if shared.abort.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        if now < stop_at && shared.stop.load(Ordering::Relaxed) {
            stop_at = now;
            give_up_at = now + DRAIN_TIMEOUT;
        }
        if now >= stop_at {
            if in_flight.is_empty() {
                break;
            }
            if now >= give_up_at {
                tally.unanswered += in_flight.len() as u64;
                break;
            }
        } else if in_flight.len() < pipeline {
            out.clear();
            while in_flight.len() < pipeline {
                let kind = workload.encode_next(&mut out);
                in_flight.push_back((now, kind));
            }
            conn.send(&out)?;
        }
        conn.fill()?;
        let answered = Instant::now();
        let mut recorded = 0;
        while let Some(reply) = conn.next_buffered()? {
            let Some((sent, kind)) = in_flight.pop_front() else {
                return Err(BenchError::Protocol {
                    addr,
                    detail: format!("reply with no request outstanding: {}", reply.describe()),
                });
            };
            let (error, miss) = classify(addr, kind, &reply)?;
            if answered >= schedule.measure_from {
                tally.record(kind, answered - sent, error, miss);
                tally.last_reply = answered - schedule.measure_from;
                recorded += 1;
            }
        }
        debug_assert!(in_flight.len() <= pipeline);
        shared.ops.fetch_add(recorded, Ordering::Relaxed);
    }
    Ok(tally)
}

/// Whether `reply` to a request of `kind` is an error and whether it is a `GET` miss
fn classify(addr: SocketAddr, kind: Kind, reply: &Reply) -> Result<(bool, bool), BenchError> {
    match (kind, reply) {
        (_, Reply::Error(_)) => Ok((true, false)),
        (Kind::Read, Reply::Null) => Ok((false, true)),
        (Kind::Read, Reply::Bulk(_)) => Ok((false, false)),
        (Kind::Write, Reply::Simple(_)) => Ok((false, false)),
        (kind, other) => Err(BenchError::Protocol {
            addr,
            detail: format!(
                "unexpected reply to {}: {}",
                kind.command(),
                other.describe()
            ),
        }),
    }
}
