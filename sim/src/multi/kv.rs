//! KV clients of a sharded cluster: the core's sans-IO [`Clerk`] over the simulated network
//!
//! A [`KvClient`] owns one client session (ids handed out in increasing order by the
//! simulator, as sessions require) and a network address from [`CLIENT_BASE`] up. It does
//! what its clerk asks: send the request to a replica ([`AppMessage::Client`]) or ask a
//! controller replica for the latest configuration ([`AppMessage::Query`], to each replica in
//! turn). An attempt not answered within [`ATTEMPT_TIMEOUT`] is a timeout for the clerk, which
//! tries the next replica with the same sequence number; after [`SILENT_ROUND`] timeouts in a
//! row the client asks the controller for the latest configuration before going on. After a refusal (wrong group, shard
//! still moving, not the leader) it waits [`BACKOFF`] before the next attempt.
//!
//! A client that gives up on an operation must not reuse its session for the next one (the
//! abandoned request may still be applied later): make a new client with
//! [`KvClient::successor`].

use shale_core::clerk::{Clerk, ClerkAction, ClerkStep};
use shale_core::controller::Configuration;
use shale_core::raft::NodeId;
use shale_core::shard::{ClientId, KvError, KvOp, KvResult};
use shale_core::time::{Duration, Instant};

use super::route::{AppMessage, CLIENT_BASE};
use super::{CONTROLLER, MultiSim};

/// How long a client waits for one attempt's answer
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(400);

/// How long a client waits after a refusal before trying again
pub const BACKOFF: Duration = Duration::from_millis(20);

/// Attempts in a row that may time out before the client asks for the latest configuration
/// (the core clerk only moves to the next replica on a timeout)
pub const SILENT_ROUND: u32 = 3;

/// What the client waits for
#[derive(Clone, Debug)]
enum Waiting {
    /// A reply to the request sent under this token
    Reply(u64),
    /// A configuration from the controller
    Config,
}

/// A KV client (see the module docs)
#[derive(Clone, Debug)]
pub struct KvClient {
    addr: NodeId,
    clerk: Clerk,
    shards: u32,
    /// The next action, once `not_before` has come and nothing is awaited
    next: Option<ClerkAction>,
    waiting: Option<(Waiting, Instant)>,
    not_before: Instant,
    controller_turn: usize,
    attempts: u64,
    /// Attempts in a row that timed out
    silent: u32,
}

impl KvClient {
    /// A client with a new session in a cluster of `shards` shards
    pub fn new(sim: &mut MultiSim, shards: u32) -> Self {
        let id = sim.next_client;
        sim.next_client += 1;
        KvClient {
            addr: CLIENT_BASE + id,
            clerk: Clerk::new(id, shards),
            shards,
            next: None,
            waiting: None,
            not_before: Instant::ZERO,
            controller_turn: id as usize,
            attempts: 0,
            silent: 0,
        }
    }

    /// A client with a new session that starts from this one's configuration (for a client
    /// that gave up on an operation)
    pub fn successor(&self, sim: &mut MultiSim) -> Self {
        let mut next = KvClient::new(sim, self.shards);
        if let Some(config) = self.clerk.config() {
            next.clerk.handle_config(config.clone());
        }
        next
    }

    /// Makes the client route by `config` from now on (a stale or forged one, for tests of
    /// refusals), as if the controller had answered with it
    pub fn set_config(&mut self, config: Configuration) {
        self.clerk.handle_config(config);
    }

    /// The session id
    pub fn client(&self) -> ClientId {
        self.clerk.client()
    }

    /// The configuration the client routes by
    pub fn config(&self) -> Option<&Configuration> {
        self.clerk.config()
    }

    /// Attempts sent so far
    pub fn attempts(&self) -> u64 {
        self.attempts
    }

    /// Whether an operation is in progress
    pub fn is_busy(&self) -> bool {
        self.next.is_some() || self.waiting.is_some()
    }

    /// Starts `op`; drive it with [`KvClient::poll`]
    pub fn start(&mut self, sim: &mut MultiSim, op: KvOp) {
        self.waiting = None;
        self.next = Some(self.clerk.start(op));
        self.send(sim);
    }

    /// Abandons the operation in progress (its session should not be used again)
    pub fn cancel(&mut self) {
        self.next = None;
        self.waiting = None;
    }

    /// Moves the operation on at the simulation's current time; its result once it is done
    pub fn poll(&mut self, sim: &mut MultiSim) -> Option<Result<KvResult, KvError>> {
        let now = sim.now();
        let inbox = sim.client_inbox.remove(&self.addr).unwrap_or_default();
        for message in inbox {
            let step = match (message, &self.waiting) {
                (AppMessage::Reply { token, outcome }, Some((Waiting::Reply(t), _)))
                    if token == *t =>
                {
                    let refused = outcome.is_err();
                    self.waiting = None;
                    self.silent = 0;
                    if refused {
                        self.not_before = now + BACKOFF;
                    }
                    self.clerk.handle_reply(outcome)
                }
                (
                    AppMessage::Config {
                        for_gid: None,
                        config,
                    },
                    Some((Waiting::Config, _)),
                ) => {
                    self.waiting = None;
                    self.clerk.handle_config(config)
                }
                _ => continue,
            };
            match step {
                ClerkStep::Done(result) => {
                    self.next = None;
                    self.waiting = None;
                    return Some(result);
                }
                ClerkStep::Act(action) => self.next = Some(action),
            }
        }
        if let Some((waiting, deadline)) = &self.waiting
            && now >= *deadline
        {
            self.next = match waiting {
                Waiting::Config => Some(ClerkAction::QueryConfig { num: None }),
                // A whole group's worth of silence: the group may be gone from the
                // configuration the clerk routes by, so ask for the latest first.
                Waiting::Reply(_) if self.silent >= SILENT_ROUND => {
                    self.silent = 0;
                    Some(ClerkAction::QueryConfig { num: None })
                }
                Waiting::Reply(_) => {
                    self.silent += 1;
                    match self.clerk.handle_timeout() {
                        ClerkStep::Act(action) => Some(action),
                        ClerkStep::Done(result) => return Some(result),
                    }
                }
            };
            self.waiting = None;
        }
        self.send(sim);
        None
    }

    /// Sends the next action if it is time
    fn send(&mut self, sim: &mut MultiSim) {
        let now = sim.now();
        if self.waiting.is_some() || now < self.not_before {
            return;
        }
        let Some(action) = self.next.take() else {
            return;
        };
        self.attempts += 1;
        let deadline = now + ATTEMPT_TIMEOUT;
        match action {
            ClerkAction::Send { gid, node, request } => {
                let token = sim.next_token;
                sim.next_token += 1;
                let message = AppMessage::Client {
                    gid,
                    token,
                    request,
                };
                sim.send_app(self.addr, node, &message);
                self.waiting = Some((Waiting::Reply(token), deadline));
            }
            ClerkAction::QueryConfig { num } => {
                let Some(voters) = sim.group(CONTROLLER).map(|g| g.voters.clone()) else {
                    return;
                };
                self.controller_turn += 1;
                let to = voters[self.controller_turn % voters.len()];
                let message = AppMessage::Query { num, for_gid: None };
                sim.send_app(self.addr, to, &message);
                self.waiting = Some((Waiting::Config, deadline));
            }
        }
    }
}
