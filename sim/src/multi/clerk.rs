//! Clerks: clients that call a group the way a real client would, retrying against whichever
//! replica leads
//!
//! A clerk knows the group's voters, not who leads. It sends its command to the replica it
//! believes leads (at first, and after a refusal without a hint, the next voter in turn),
//! follows `NotLeader` hints, and gives an attempt up when the replica crashes, stops leading
//! the term it accepted the command in, or does not answer within the largest election
//! timeout; then it tries again. On a lossy network ([`crate::NetworkConfig`] with drops) the
//! clerk's request, or the reply, is lost at the network's drop rate (drawn from the
//! workload stream): a lost reply means the command may have been applied although the clerk
//! retries it.
//!
//! Commands are therefore applied at least once. The shard controller's commands are
//! idempotent except Join and Leave, whose repetition is refused: a *retried* Join refused as
//! `AlreadyJoined` for one of its own groups, or a retried Leave refused as `UnknownGroup` for
//! one of its own, means an earlier attempt was applied, and the clerk then answers with a
//! fresh `Query(None)` instead (see `retry_follow_up`). This is enough for scenarios where
//! each group id is joined and left by one clerk; it is not exactly-once (a client id and
//! sequence number in the controller's commands would be).

use shale_core::controller::{Configuration, ControllerCommand, ControllerError, GroupId};
use shale_core::raft::{NodeId, ProposeError, Role, Term};
use shale_core::time::{Duration, Instant};

use super::machine::retry_follow_up;
use super::{CONTROLLER, HostedCommand, HostedOutput, MultiSim};
use crate::SimError;

/// How often [`Clerk::call`] checks on its call, in virtual time
pub const CLERK_POLL: Duration = Duration::from_millis(1);

/// How long a clerk waits before trying again after a refusal
const BACKOFF: Duration = Duration::from_millis(10);

/// One attempt: the command went to `node`, which accepted it in `term` under `token`
#[derive(Clone, Debug)]
struct Attempt {
    node: NodeId,
    token: u64,
    term: Term,
    deadline: Instant,
    /// The reply will be lost: wait until the deadline whatever happens
    reply_lost: bool,
}

/// A call in progress
#[derive(Clone, Debug)]
struct Call {
    command: HostedCommand,
    attempt: Option<Attempt>,
    /// Some attempt of this call was accepted by a replica (and may be applied)
    proposed: bool,
    /// The current attempt follows one that was accepted
    retried: bool,
    not_before: Instant,
}

/// A client of one group (see the module docs)
#[derive(Clone, Debug)]
pub struct Clerk {
    group: GroupId,
    hint: Option<NodeId>,
    next: usize,
    call: Option<Call>,
    attempts: u64,
    duplicates: u64,
}

impl Clerk {
    /// A clerk of group `group`, with no idea who leads
    pub fn new(group: GroupId) -> Self {
        Clerk {
            group,
            hint: None,
            next: 0,
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

    /// Retried calls whose refusal showed an earlier attempt had been applied (answered by a
    /// follow-up query), over every call
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Starts a call; drive it with [`Clerk::poll`]
    ///
    /// # Panics
    ///
    /// If a call is in progress.
    pub fn start(&mut self, command: HostedCommand) {
        assert!(self.call.is_none(), "the clerk is busy");
        self.call = Some(Call {
            command,
            attempt: None,
            proposed: false,
            retried: false,
            not_before: Instant::ZERO,
        });
    }

    /// Abandons the call in progress, if any
    pub fn cancel(&mut self) {
        self.call = None;
    }

    /// Moves the call on at the simulation's current time; its output once it is done
    pub fn poll(&mut self, sim: &mut MultiSim) -> Option<HostedOutput> {
        let now = sim.now();
        let call = self.call.as_mut()?;
        if let Some(a) = call.attempt.clone() {
            let result = sim.take_result(a.token);
            if a.reply_lost {
                if now < a.deadline {
                    return None;
                }
                call.attempt = None;
            } else {
                match result {
                    Some(Some(output)) => {
                        self.hint = Some(a.node);
                        match retry_follow_up(&call.command, &output).filter(|_| call.retried) {
                            Some(query) => {
                                self.duplicates += 1;
                                call.command = query;
                                call.attempt = None;
                                call.retried = false;
                                call.proposed = false;
                            }
                            None => {
                                self.call = None;
                                return Some(output);
                            }
                        }
                    }
                    Some(None) => call.attempt = None, // lost to another entry: retry at once
                    None => {
                        let leads = sim
                            .raft(self.group, a.node)
                            .is_some_and(|r| r.role() == Role::Leader && r.term() == a.term);
                        if leads && now < a.deadline {
                            return None;
                        }
                        if !leads {
                            self.hint = None;
                            self.next += 1;
                        }
                        call.attempt = None;
                    }
                }
            }
        }
        if now < call.not_before {
            return None;
        }
        let voters = sim.group(self.group)?.voters.clone();
        let target = self
            .hint
            .filter(|h| voters.contains(h))
            .unwrap_or(voters[self.next % voters.len()]);
        self.attempts += 1;
        let drop = sim.config.network.drop_per_million;
        let timeout = sim.config.raft.election_timeout_max;
        if sim.workload_rng.chance(drop, 1_000_000) {
            // The request is lost: the clerk hears nothing until its timeout.
            call.not_before = now + timeout;
            self.hint = None;
            self.next += 1;
            return None;
        }
        match sim.propose(self.group, target, call.command.clone()) {
            Ok(token) => {
                let term = sim.raft(self.group, target).map_or(0, |r| r.term());
                let reply_lost = sim.workload_rng.chance(drop, 1_000_000);
                call.retried = call.proposed;
                call.proposed = true;
                call.attempt = Some(Attempt {
                    node: target,
                    token,
                    term,
                    deadline: now + timeout,
                    reply_lost,
                });
            }
            Err(ProposeError::NotLeader { hint }) => {
                self.hint = hint.filter(|&h| h != target);
                if self.hint.is_none() {
                    self.next += 1;
                    call.not_before = now + BACKOFF;
                }
            }
            Err(ProposeError::Transferring { target }) => {
                self.hint = Some(target);
                call.not_before = now + BACKOFF;
            }
            Err(_) => call.not_before = now + BACKOFF,
        }
        None
    }

    /// Calls the group with `command` and runs the simulation until the answer comes, or
    /// fails once `budget` has passed
    pub fn call(
        &mut self,
        sim: &mut MultiSim,
        command: HostedCommand,
        budget: Duration,
    ) -> Result<HostedOutput, SimError> {
        let what = format!("{command:?}");
        self.start(command);
        let deadline = sim.now() + budget;
        loop {
            if let Some(output) = self.poll(sim) {
                return Ok(output);
            }
            if sim.now() >= deadline {
                self.cancel();
                return Err(sim.error(format!(
                    "g{}: no answer to {what} within {budget}",
                    self.group
                )));
            }
            sim.run_for(CLERK_POLL);
        }
    }
}

impl MultiSim {
    /// Calls the controller group ([`CONTROLLER`]) with `command` through a clerk (kept across
    /// calls for its leader hint), running the simulation until the answer comes or `budget`
    /// has passed
    pub fn controller_call(
        &mut self,
        command: ControllerCommand,
        budget: Duration,
    ) -> Result<Result<Configuration, ControllerError>, SimError> {
        let mut clerk = self
            .controller_clerk
            .take()
            .unwrap_or_else(|| Clerk::new(CONTROLLER));
        let output = clerk.call(self, HostedCommand::Controller(command), budget);
        self.controller_clerk = Some(clerk);
        output?
            .into_controller()
            .map_err(|other| self.error(format!("the controller answered {other:?}")))
    }
}
