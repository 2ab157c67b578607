//! The front door's client sessions: one [`Clerk`] per session routes each operation to the
//! group that owns its key, retries, and keeps it exactly-once; and administrative commands
//! for the controller's leader

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;

use crate::clerk::{Clerk, ClerkAction, ClerkStep};
use crate::controller::{Configuration, ControllerCommand, ControllerError};
use crate::group::{AppMessage, ClientOutcome, GroupError};
use crate::shard::{ClientId, KvOp};
use crate::time::Instant;

use super::host::{CONTROLLER_GROUP, Host, HostOutput, HostedReplica, OpId, ReplyTo};
use super::machines::HostMachines;
use crate::raft::Role;

/// A front-door session's handle, from [`Host::open_session`]
pub type SessionId = u64;

/// Why [`Host::start_op`] refused an operation
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionError {
    /// No such session (never opened, or closed)
    Unknown,
    /// The session's previous operation has not finished
    Busy,
    /// No replica answered before the operation's deadline: it may or may not have been
    /// applied (a retry in the same session is refused as stale, never applied twice)
    TimedOut,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Unknown => f.write_str("unknown session"),
            SessionError::Busy => f.write_str("the session's previous operation is running"),
            SessionError::TimedOut => f.write_str(
                "no replica answered in time; the operation may or may not have been applied",
            ),
        }
    }
}

impl core::error::Error for SessionError {}

/// Why an administrative command did not take effect
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminError {
    /// The controller refused it; nothing changed
    Refused(ControllerError),
    /// No controller leader answered within the deadline; it may or may not have been applied
    Unavailable,
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Refused(e) => write!(f, "refused by the controller: {e:?}"),
            AdminError::Unavailable => f.write_str("no controller leader answered in time"),
        }
    }
}

impl core::error::Error for AdminError {}

#[derive(Debug)]
enum Waiting {
    Idle,
    /// For the answer to the attempt sent with this token
    Reply(u64),
    /// For a configuration
    Config,
    /// Until the time comes to take the action
    Delayed(ClerkAction),
}

#[derive(Debug)]
struct Session {
    clerk: Clerk,
    op: Option<OpId>,
    waiting: Waiting,
    /// When the current attempt or pause ends
    deadline: Instant,
    /// When the current operation is given up on
    op_deadline: Instant,
}

#[derive(Debug)]
struct AdminOp {
    op: OpId,
    command: ControllerCommand,
    /// The token of the attempt in flight
    token: u64,
    /// When to try again (another replica)
    retry_at: Instant,
    /// When to give up
    give_up_at: Instant,
    /// Attempts sent so far
    sent: u32,
}

/// Every session and admin command of a node
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    sessions: BTreeMap<SessionId, Session>,
    /// Attempt token → session
    by_token: BTreeMap<u64, SessionId>,
    admin: Vec<AdminOp>,
    next_session: SessionId,
    next_op: OpId,
}

impl Sessions {
    /// The earliest deadline of any session or admin command
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let attempts = self
            .sessions
            .values()
            .filter(|s| !matches!(s.waiting, Waiting::Idle))
            .map(|s| s.deadline);
        let ops = self
            .sessions
            .values()
            .filter(|s| s.op.is_some())
            .map(|s| s.op_deadline);
        let sessions = attempts.chain(ops);
        let admin = self.admin.iter().map(|a| a.retry_at.min(a.give_up_at));
        sessions.chain(admin).min()
    }
}

impl<M: HostMachines> Host<M> {
    /// Opens a session for client `client`: its id must be unique in the cluster and larger
    /// than every id its issuer (its low bits, see [`crate::shard::client_issuer`]; use this
    /// node's id) handed out before, restarts included: sessions expire lowest id first
    pub fn open_session(&mut self, client: ClientId) -> SessionId {
        let s = &mut self.sessions;
        s.next_session += 1;
        let id = s.next_session;
        let clerk = Clerk::new(client, self.config.shard_count);
        let session = Session {
            clerk,
            op: None,
            waiting: Waiting::Idle,
            deadline: self.now,
            op_deadline: self.now,
        };
        s.sessions.insert(id, session);
        id
    }

    /// Closes a session; an operation in flight is abandoned (it may still be applied)
    pub fn close_session(&mut self, session: SessionId) {
        self.sessions.sessions.remove(&session);
    }

    /// Starts `op` in `session`; it finishes as [`HostOutput::Done`] with the returned id
    pub fn start_op(
        &mut self,
        now: Instant,
        session: SessionId,
        op: KvOp,
    ) -> Result<OpId, SessionError> {
        self.observe(now);
        let s = self
            .sessions
            .sessions
            .get_mut(&session)
            .ok_or(SessionError::Unknown)?;
        if s.op.is_some() {
            return Err(SessionError::Busy);
        }
        self.sessions.next_op += 1;
        let id = self.sessions.next_op;
        s.op = Some(id);
        s.op_deadline = now + self.config.op_timeout;
        let action = s.clerk.start(op);
        self.act(now, session, action);
        Ok(id)
    }

    /// Starts an administrative command for the controller; it finishes as
    /// [`HostOutput::AdminDone`] with the returned id
    pub fn start_admin(&mut self, now: Instant, command: ControllerCommand) -> OpId {
        self.observe(now);
        self.sessions.next_op += 1;
        let op = self.sessions.next_op;
        let give_up_at = now + self.config.admin_timeout;
        self.sessions.admin.push(AdminOp {
            op,
            command,
            token: 0,
            retry_at: now,
            give_up_at,
            sent: 0,
        });
        self.admin_attempts(now);
        op
    }

    /// Takes the clerk's next action for `session`
    fn act(&mut self, now: Instant, session: SessionId, action: ClerkAction) {
        let attempt_deadline = now + self.config.attempt_timeout;
        match action {
            ClerkAction::Send { gid, node, request } => {
                let token = self.token();
                self.sessions.by_token.insert(token, session);
                if let Some(s) = self.sessions.sessions.get_mut(&session) {
                    s.waiting = Waiting::Reply(token);
                    s.deadline = attempt_deadline;
                }
                // The local replica leads the group: serve here, whatever replica the clerk
                // last heard from (it may prefer a follower that served a read).
                let local_leader = self
                    .replicas
                    .get(&gid)
                    .is_some_and(|r| r.raft().role() == crate::raft::Role::Leader);
                if node == self.id() || local_leader {
                    let accepted = self
                        .replicas
                        .get_mut(&gid)
                        .and_then(HostedReplica::driver_mut)
                        .map(|d| d.handle_client(now, token, request).is_ok());
                    if accepted == Some(true) {
                        self.routes.insert(token, (ReplyTo::Local, now));
                    } else {
                        let outcome = Err(GroupError::Retry);
                        self.loopback
                            .push_back(AppMessage::Reply { token, outcome });
                    }
                } else {
                    self.forwarded_requests += 1;
                    self.send_app(
                        node,
                        AppMessage::Client {
                            gid,
                            token,
                            request,
                        },
                    );
                }
            }
            ClerkAction::QueryConfig { num } => {
                let local = match num {
                    None => self.local_config().cloned(),
                    Some(n) => self
                        .replicas
                        .get(&CONTROLLER_GROUP)
                        .and_then(HostedReplica::controller)
                        .and_then(|c| c.config(n).cloned()),
                };
                match local {
                    Some(config) if !config.groups.is_empty() => {
                        let step = match self.sessions.sessions.get_mut(&session) {
                            Some(s) => s.clerk.handle_config(config),
                            None => return,
                        };
                        self.step(now, session, step);
                    }
                    Some(_) => {
                        // A new cluster: no group has joined yet. Ask again shortly, for the
                        // latest (an older configuration without groups never gets any).
                        let at = now + self.config.bootstrap_interval;
                        if let Some(s) = self.sessions.sessions.get_mut(&session) {
                            s.waiting = Waiting::Delayed(ClerkAction::QueryConfig { num: None });
                            s.deadline = at;
                        }
                    }
                    None => {
                        let voters = self.config.controller_voters.clone();
                        if voters.is_empty() {
                            return;
                        }
                        let to = self.take_turn(&voters, (CONTROLLER_GROUP, u64::MAX));
                        if let Some(s) = self.sessions.sessions.get_mut(&session) {
                            s.waiting = Waiting::Config;
                            s.deadline = attempt_deadline;
                        }
                        let query = AppMessage::Query { num, for_gid: None };
                        self.send_app(to, query);
                    }
                }
            }
        }
    }

    fn step(&mut self, now: Instant, session: SessionId, step: ClerkStep) {
        match step {
            ClerkStep::Act(action) => self.act(now, session, action),
            ClerkStep::Done(result) => {
                let Some(s) = self.sessions.sessions.get_mut(&session) else {
                    return;
                };
                s.waiting = Waiting::Idle;
                if let Some(op) = s.op.take() {
                    self.outputs.push_back(HostOutput::Done { op, result });
                }
            }
        }
    }

    /// A replica answered the attempt sent with `token`
    pub(crate) fn session_reply(&mut self, now: Instant, token: u64, outcome: ClientOutcome) {
        let Some(session) = self.sessions.by_token.remove(&token) else {
            return;
        };
        let retry_delay = self.config.retry_delay;
        let Some(s) = self.sessions.sessions.get_mut(&session) else {
            return;
        };
        if !matches!(s.waiting, Waiting::Reply(t) if t == token) {
            return; // an answer to an attempt already given up on
        }
        let again = matches!(
            outcome,
            Err(GroupError::Retry
                | GroupError::ShardMoving { .. }
                | GroupError::ShardPending { .. }
                | GroupError::WrongGroup { .. })
        );
        let step = s.clerk.handle_reply(outcome);
        match step {
            // Pause before asking again, so an election or a moving shard is not hammered.
            ClerkStep::Act(action) if again => {
                s.waiting = Waiting::Delayed(action);
                s.deadline = now + retry_delay;
            }
            step => self.step(now, session, step),
        }
    }

    /// A controller replica answered a session's query
    pub(crate) fn session_config(&mut self, now: Instant, config: Configuration) {
        let waiting: Vec<SessionId> = self
            .sessions
            .sessions
            .iter()
            .filter(|(_, s)| matches!(s.waiting, Waiting::Config))
            .map(|(id, _)| *id)
            .collect();
        for session in waiting {
            if config.groups.is_empty() {
                continue; // nothing to route to yet: the deadline asks again
            }
            let step = match self.sessions.sessions.get_mut(&session) {
                Some(s) => s.clerk.handle_config(config.clone()),
                None => continue,
            };
            self.step(now, session, step);
        }
    }

    /// The controller answered an admin attempt (`None`: not the leader, or lost)
    pub(crate) fn admin_reply(
        &mut self,
        now: Instant,
        token: u64,
        result: Option<Result<Configuration, ControllerError>>,
    ) {
        let Some(pos) = self.sessions.admin.iter().position(|a| a.token == token) else {
            return;
        };
        // A retried Join refused as "already joined" (or Leave as "unknown group") for one of
        // its own groups says an earlier attempt was applied and its answer lost: the command
        // has taken effect, so answer with the configuration as it is now.
        if let Some(Err(e)) = &result
            && self.sessions.admin[pos].sent > 1
            && self.sessions.admin[pos].command.refusal_means_applied(e)
        {
            let a = &mut self.sessions.admin[pos];
            a.command = ControllerCommand::Query(None);
            a.retry_at = now;
            return;
        }
        match result {
            Some(result) => {
                let a = self.sessions.admin.remove(pos);
                let result = result.map_err(AdminError::Refused);
                self.outputs
                    .push_back(HostOutput::AdminDone { op: a.op, result });
            }
            None => {
                self.sessions.admin[pos].retry_at = now + self.config.retry_delay;
            }
        }
    }

    /// Fires the deadlines of sessions and admin commands
    pub(crate) fn sessions_timeout(&mut self, now: Instant) {
        let expired: Vec<SessionId> = self
            .sessions
            .sessions
            .iter()
            .filter(|(_, s)| s.op.is_some() && s.op_deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for session in expired {
            let Some(s) = self.sessions.sessions.get_mut(&session) else {
                continue;
            };
            if let Waiting::Reply(token) = core::mem::replace(&mut s.waiting, Waiting::Idle) {
                self.sessions.by_token.remove(&token);
            }
            if let Some(op) = s.op.take() {
                self.outputs.push_back(HostOutput::TimedOut { op });
            }
        }
        let due: Vec<SessionId> = self
            .sessions
            .sessions
            .iter()
            .filter(|(_, s)| !matches!(s.waiting, Waiting::Idle) && s.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for session in due {
            let Some(s) = self.sessions.sessions.get_mut(&session) else {
                continue;
            };
            match core::mem::replace(&mut s.waiting, Waiting::Idle) {
                Waiting::Delayed(action) => self.act(now, session, action),
                Waiting::Reply(token) => {
                    self.sessions.by_token.remove(&token);
                    let step = s.clerk.handle_timeout();
                    self.step(now, session, step);
                }
                Waiting::Config => {
                    let step = s.clerk.handle_timeout();
                    self.step(now, session, step);
                }
                Waiting::Idle => {}
            }
        }
        self.admin_attempts(now);
    }

    /// Sends the admin commands whose retry time came; gives up on those past their deadline
    fn admin_attempts(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.sessions.admin.len() {
            if self.sessions.admin[i].give_up_at <= now {
                let a = self.sessions.admin.remove(i);
                let result = Err(AdminError::Unavailable);
                self.outputs
                    .push_back(HostOutput::AdminDone { op: a.op, result });
                continue;
            }
            if self.sessions.admin[i].retry_at <= now {
                let token = self.token();
                let command = self.sessions.admin[i].command.clone();
                self.sessions.admin[i].token = token;
                self.sessions.admin[i].sent += 1;
                self.sessions.admin[i].retry_at = now + self.config.attempt_timeout;
                self.send_admin(now, token, command);
            }
            i += 1;
        }
    }

    /// Proposes locally when this node leads the controller, else asks the leader it knows
    /// of (or the next voter)
    fn send_admin(&mut self, now: Instant, token: u64, command: ControllerCommand) {
        let local = match self.replicas.get_mut(&CONTROLLER_GROUP) {
            Some(HostedReplica::Controller(r)) => {
                if r.raft().role() == Role::Leader {
                    let proposed = r.propose(now, token, &command).is_ok();
                    if proposed {
                        self.routes.insert(token, (ReplyTo::Local, now));
                    }
                    return;
                }
                r.raft().leader_hint()
            }
            _ => None,
        };
        let voters = self.config.controller_voters.clone();
        if voters.is_empty() {
            return;
        }
        let to = match local {
            Some(leader) if leader != self.id() => leader,
            _ => self.take_turn(&voters, (CONTROLLER_GROUP, u64::MAX - 1)),
        };
        self.send_app(to, AppMessage::Admin { token, command });
    }
}
