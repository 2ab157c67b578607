//! Routing of application messages: requests between groups, the controller and clients
//!
//! What a node does with each [`AppMessage`] (the same protocol the simulator proves):
//! `Query` is answered from the local controller replica's **applied** state (configuration
//! `num` is the same on every replica that has it); `Fetch` and `Delete` go to the local
//! replica of the asked group; `Client` goes to the local replica of the group, and its reply
//! travels back to the node that forwarded it; `Admin` is proposed if this node leads the
//! controller, and answered `None` otherwise.

use alloc::vec::Vec;

use crate::controller::GroupId;
use crate::group::{Addressed, AppMessage, GroupError, GroupRequest};
use crate::raft::{NodeId, Role};
use crate::time::Instant;

use super::host::{CONTROLLER_GROUP, Host, HostedReplica, ReplyTo};
use super::machines::HostMachines;

impl<M: HostMachines> Host<M> {
    /// An application message arrived from node `from`
    pub fn handle_app(&mut self, now: Instant, from: NodeId, message: AppMessage) {
        self.observe(now);
        match message {
            AppMessage::Client {
                gid,
                token,
                request,
            } => {
                let local = self.token();
                let accepted = self
                    .replicas
                    .get_mut(&gid)
                    .and_then(HostedReplica::driver_mut)
                    .map(|d| d.handle_client(now, local, request).is_ok());
                if accepted == Some(true) {
                    let route = ReplyTo::Remote { node: from, token };
                    self.routes.insert(local, (route, now));
                } else {
                    let outcome = Err(GroupError::Retry);
                    self.send_app(from, AppMessage::Reply { token, outcome });
                }
            }
            AppMessage::Reply { token, outcome } => self.session_reply(now, token, outcome),
            AppMessage::Query { num, for_gid } => {
                let config = self
                    .replicas
                    .get(&CONTROLLER_GROUP)
                    .and_then(HostedReplica::controller)
                    .and_then(|c| match num {
                        Some(n) => c.config(n).cloned(),
                        None => Some(c.latest().clone()),
                    });
                if let Some(config) = config {
                    self.send_app(from, AppMessage::Config { for_gid, config });
                }
            }
            AppMessage::Config {
                for_gid: None,
                config,
            } => self.session_config(now, config),
            // Configurations for a group, shard requests and their answers: the driver's.
            AppMessage::Config { .. }
            | AppMessage::Fetch { .. }
            | AppMessage::Fetched { .. }
            | AppMessage::FetchKeys { .. }
            | AppMessage::KeysFetched { .. }
            | AppMessage::Delete { .. }
            | AppMessage::Deleted { .. } => {
                if let Some(by) = message.answered_by() {
                    self.answered_last.insert(by, from);
                }
                let driver = message
                    .driver_group()
                    .and_then(|gid| self.replicas.get_mut(&gid))
                    .and_then(HostedReplica::driver_mut);
                if let Some(answer) = driver.and_then(|d| d.handle_app(now, message)) {
                    self.send_app(from, answer);
                }
            }
            AppMessage::Admin { token, command } => {
                let local = self.token();
                let proposed = match self.replicas.get_mut(&CONTROLLER_GROUP) {
                    Some(HostedReplica::Controller(r)) if r.raft().role() == Role::Leader => {
                        r.propose(now, local, &command).is_ok()
                    }
                    _ => false,
                };
                if proposed {
                    let route = ReplyTo::Remote { node: from, token };
                    self.routes.insert(local, (route, now));
                } else {
                    self.send_app(
                        from,
                        AppMessage::AdminReply {
                            token,
                            result: None,
                        },
                    );
                }
            }
            AppMessage::AdminReply { token, result } => self.admin_reply(now, token, result),
        }
    }

    /// Routes what the replica of `gid` produced for other groups and clients
    pub(super) fn route(&mut self, now: Instant, gid: GroupId) {
        let mut requests = Vec::new();
        let mut replies = Vec::new();
        let mut admin = Vec::new();
        match self.replicas.get_mut(&gid) {
            Some(HostedReplica::Group(d)) => {
                while let Some(request) = d.poll_request() {
                    requests.push(request);
                }
                while let Some(reply) = d.poll_reply() {
                    replies.push(reply);
                }
            }
            Some(HostedReplica::Controller(r)) => {
                while let Some(applied) = r.poll_result() {
                    // No output: the proposal was lost to another entry; ask again.
                    admin.push((applied.token, applied.output));
                }
            }
            None => return,
        }
        for reply in replies {
            match self.routes.remove(&reply.token) {
                Some((ReplyTo::Remote { node, token }, _)) => {
                    let outcome = reply.outcome;
                    self.send_app(node, AppMessage::Reply { token, outcome });
                }
                Some((ReplyTo::Local, _)) => self.session_reply(now, reply.token, reply.outcome),
                None => {}
            }
        }
        for (token, result) in admin {
            match self.routes.remove(&token) {
                Some((ReplyTo::Remote { node, token }, _)) => {
                    self.send_app(node, AppMessage::AdminReply { token, result });
                }
                Some((ReplyTo::Local, _)) => self.admin_reply(now, token, result),
                None => {}
            }
        }
        for request in requests {
            self.send_request(gid, request);
        }
    }

    /// Sends a group driver's request to the replicas that can answer it
    fn send_request(&mut self, gid: GroupId, request: GroupRequest) {
        // A configuration the local controller replica has already made is answered here.
        let local_has = match &request {
            GroupRequest::QueryConfig { num } => self
                .replicas
                .get(&CONTROLLER_GROUP)
                .and_then(HostedReplica::controller)
                .is_some_and(|c| c.config(*num).is_some()),
            _ => false,
        };
        let Addressed {
            target,
            replicas,
            lane,
            message,
        } = request.address(gid);
        let Some(target) = target else {
            // The local controller replica answers best, with no network at all, when it has
            // made the configuration; otherwise the voters take turns (the local replica may
            // lag, be restoring, or no longer be a member at all).
            let voters = self.config.controller_voters.clone();
            if voters.is_empty() {
                return; // no controller to ask: the driver asks again next poll
            }
            let to = if local_has && voters.contains(&self.id()) {
                self.id()
            } else {
                self.take_turn(&voters, (CONTROLLER_GROUP, lane))
            };
            self.send_app(to, message);
            return;
        };
        self.send_to_group(target, &replicas, lane, message);
    }

    /// The replica whose turn it is in `lane` (`replicas` must not be empty; 0 if it is)
    pub(super) fn take_turn(&mut self, replicas: &[NodeId], lane: (GroupId, u64)) -> NodeId {
        let turn = self.turns.entry(lane).or_insert(0);
        *turn += 1;
        replicas
            .get(*turn % replicas.len().max(1))
            .copied()
            .unwrap_or(0)
    }

    /// Sends `message` to the replica of `target` that answered last, if any, and to the one
    /// whose turn it is
    fn send_to_group(
        &mut self,
        target: GroupId,
        replicas: &[NodeId],
        lane: u64,
        message: AppMessage,
    ) {
        if replicas.is_empty() {
            return;
        }
        let next = self.take_turn(replicas, (target, lane));
        if let Some(&hint) = self.answered_last.get(&target)
            && hint != next
            && replicas.contains(&hint)
        {
            self.send_app(hint, message.clone());
        }
        self.send_app(next, message);
    }
}
