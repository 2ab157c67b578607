//! Clerks: clients of the shard controller that call it over the network the way an operator's
//! tool does, retrying against whichever replica leads
//!
//! A clerk has a network address of its own (from [`CLIENT_BASE`] up) and knows the
//! controller's voters, not who leads. It sends its command as an [`AppMessage::Admin`] to the
//! replica it believes leads (at first, and after a refusal, the next voter in turn). The
//! node's host proposes it if it leads the controller and answers with the result once the
//! entry is applied, or answers `None` at once (not the leader, or the entry was lost to
//! another); an attempt not answered within the largest election timeout is given up and
//! tried again. On a lossy network the request or the reply may be lost like any message.
//!
//! Commands are therefore applied at least once (a retry, or the network duplicating a
//! request, may apply one twice). The shard controller's commands are idempotent except Join
//! and Leave, whose repetition is refused: a command refused in a way that only says an
//! earlier copy of it was applied ([`ControllerCommand::refusal_means_applied`]) is answered
//! with a fresh `Query(None)` instead. This is enough for scenarios where each group id is
//! joined and left by one clerk; it is not exactly-once.

use shale_core::controller::{Configuration, ControllerCommand, ControllerError};
use shale_core::raft::NodeId;
use shale_core::time::{Duration, Instant};

use super::route::{AppMessage, CLIENT_BASE};
use super::{CONTROLLER, MultiSim};
use crate::SimError;

/// How often [`Clerk::call`] checks on its call, in virtual time
pub const CLERK_POLL: Duration = Duration::from_millis(1);

/// How long a clerk waits before trying again after a refusal
const BACKOFF: Duration = Duration::from_millis(10);

/// The answer a controller call gets: the configuration, or why the controller refused
pub type ControllerResult = Result<Configuration, ControllerError>;

/// One attempt: the command went to `node` under `token`
#[derive(Clone, Debug)]
struct Attempt {
    node: NodeId,
    token: u64,
    deadline: Instant,
}

/// A call in progress
#[derive(Clone, Debug)]
struct Call {
    command: ControllerCommand,
    attempt: Option<Attempt>,
    not_before: Instant,
}

/// A client of the shard controller (see the module docs)
#[derive(Clone, Debug)]
pub struct Clerk {
    addr: NodeId,
    hint: Option<NodeId>,
    next: usize,
    call: Option<Call>,
    attempts: u64,
    duplicates: u64,
}

impl Clerk {
    /// A clerk of `sim`'s controller, with an address of its own and no idea who leads
    pub fn new(sim: &mut MultiSim) -> Self {
        let id = sim.next_client;
        sim.next_client += 1;
        Clerk {
            addr: CLIENT_BASE + id,
            hint: None,
            next: id as usize,
            call: None,
            attempts: 0,
            duplicates: 0,
        }
    }

    /// Whether no call is in progress
    pub fn is_idle(&self) -> bool {
        self.call.is_none()
    }

    /// Attempts made so far, over every call (each send to a replica counts)
    pub fn attempts(&self) -> u64 {
        self.attempts
    }

    /// Calls whose refusal showed an earlier copy had been applied (answered by a follow-up
    /// query), over every call
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Starts a call; drive it with [`Clerk::poll`]
    ///
    /// # Panics
    ///
    /// If a call is in progress.
    pub fn start(&mut self, command: ControllerCommand) {
        assert!(self.call.is_none(), "the clerk is busy");
        self.call = Some(Call {
            command,
            attempt: None,
            not_before: Instant::ZERO,
        });
    }

    /// Abandons the call in progress, if any
    pub fn cancel(&mut self) {
        self.call = None;
    }

    /// Moves the call on at the simulation's current time; its answer once it is done
    pub fn poll(&mut self, sim: &mut MultiSim) -> Option<ControllerResult> {
        let now = sim.now();
        let inbox = sim.take_inbox(self.addr);
        let call = self.call.as_mut()?;
        for message in inbox {
            let AppMessage::AdminReply { token, result } = message else {
                continue;
            };
            let Some(a) = call.attempt.clone().filter(|a| a.token == token) else {
                continue; // the answer to an attempt given up on
            };
            call.attempt = None;
            match result {
                Some(answer) => {
                    self.hint = Some(a.node);
                    let applied_before = answer
                        .as_ref()
                        .is_err_and(|e| call.command.refusal_means_applied(e));
                    if !applied_before {
                        self.call = None;
                        return Some(answer);
                    }
                    self.duplicates += 1;
                    call.command = ControllerCommand::Query(None);
                }
                None => {
                    // Not the leader, or the entry was lost: ask the next replica shortly.
                    self.hint = None;
                    self.next += 1;
                    call.not_before = now + BACKOFF;
                }
            }
        }
        if let Some(a) = &call.attempt {
            if now < a.deadline {
                return None;
            }
            call.attempt = None;
            self.hint = None;
            self.next += 1;
        }
        if now < call.not_before {
            return None;
        }
        let voters = sim.group(CONTROLLER)?.voters.clone();
        let node = self
            .hint
            .filter(|h| voters.contains(h))
            .unwrap_or(voters[self.next % voters.len()]);
        self.attempts += 1;
        let token = sim.next_token;
        sim.next_token += 1;
        let message = AppMessage::Admin {
            token,
            command: call.command.clone(),
        };
        sim.send_app(self.addr, node, &message);
        call.attempt = Some(Attempt {
            node,
            token,
            deadline: now + sim.config.raft.election_timeout_max,
        });
        None
    }

    /// Calls the controller with `command` and runs the simulation until the answer comes,
    /// or fails once `budget` has passed
    pub fn call(
        &mut self,
        sim: &mut MultiSim,
        command: ControllerCommand,
        budget: Duration,
    ) -> Result<ControllerResult, SimError> {
        let what = format!("{command:?}");
        self.start(command);
        let deadline = sim.now() + budget;
        loop {
            if let Some(answer) = self.poll(sim) {
                return Ok(answer);
            }
            if sim.now() >= deadline {
                self.cancel();
                return Err(sim.error(format!(
                    "the controller did not answer {what} within {budget}"
                )));
            }
            sim.run_for(CLERK_POLL);
        }
    }
}

impl MultiSim {
    /// Calls the controller with `command` through a clerk (kept across calls for its leader
    /// hint), running the simulation until the answer comes or `budget` has passed
    pub fn controller_call(
        &mut self,
        command: ControllerCommand,
        budget: Duration,
    ) -> Result<ControllerResult, SimError> {
        let mut clerk = match self.controller_clerk.take() {
            Some(c) => c,
            None => Clerk::new(self),
        };
        let answer = clerk.call(self, command, budget);
        self.controller_clerk = Some(clerk);
        answer
    }
}
