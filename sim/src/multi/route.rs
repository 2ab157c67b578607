//! The link between replica groups, the controller and KV clients: application messages over
//! the simulated network
//!
//! Raft traffic travels in `(group id, message)` envelopes (see `events.rs`). Everything else
//! travels on a channel of its own: the reserved group id [`APP_CHANNEL`], then an
//! [`AppMessage`] in postcard, sent with the network's real byte counts, drops, duplicates,
//! delays and cut links. What each side does with them:
//!
//! - a replica group driver's [`GroupRequest`]s leave through [`MultiSim::route_outputs`]
//!   after every event. `QueryConfig` goes to a controller replica (in turn), which answers
//!   from its **applied** state: configuration `num` is the same on every replica that has
//!   it, so no log round trip is needed, and a replica that lacks it stays silent (the driver
//!   asks again next poll). `FetchShard` and `DeleteShard` go to the replica of the other
//!   group that answered last (the leader hint) and to the next replica in turn; whichever
//!   receives one answers with [`GroupDriver::fetch`] or [`GroupDriver::delete`].
//! - answers come back to the sending node and are handed to the requesting group's replica
//!   there ([`GroupDriver::handle_config`], [`GroupDriver::handle_fetched`],
//!   [`GroupDriver::handle_deleted`]).
//! - KV clients live at addresses from [`CLIENT_BASE`] up; partitions never cut them. A
//!   client's request is handed to [`GroupDriver::handle_client`] with its token, and the
//!   reply from [`GroupDriver::poll_reply`] travels back to the client's address; a replica
//!   that cannot take the request at all (not the leader) answers `Retry` at once.
//!
//! [`GroupDriver::fetch`]: shale_core::group::GroupDriver::fetch
//! [`GroupDriver::delete`]: shale_core::group::GroupDriver::delete
//! [`GroupDriver::handle_config`]: shale_core::group::GroupDriver::handle_config
//! [`GroupDriver::handle_fetched`]: shale_core::group::GroupDriver::handle_fetched
//! [`GroupDriver::handle_deleted`]: shale_core::group::GroupDriver::handle_deleted
//! [`GroupDriver::handle_client`]: shale_core::group::GroupDriver::handle_client
//! [`GroupDriver::poll_reply`]: shale_core::group::GroupDriver::poll_reply

use shale_core::controller::{GroupId, ShardController};
pub use shale_core::group::AppMessage;
use shale_core::group::{Addressed, GroupError};
use shale_core::raft::NodeId;

use super::{CONTROLLER, MultiSim, SimDriver};

/// The reserved group id that marks an application message rather than Raft traffic
pub const APP_CHANNEL: GroupId = u64::MAX;

/// The first network address of KV clients (node ids stay below it)
pub const CLIENT_BASE: NodeId = 1_000_000;

/// Appends `message` on the application channel to `buf`
pub(crate) fn encode_app(message: &AppMessage, buf: &mut Vec<u8>) {
    let mut v = APP_CHANNEL;
    while v >= 0x80 {
        buf.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
    buf.extend(postcard::to_allocvec(message).unwrap_or_default());
}

/// The application message in `bytes`, if they are on the application channel (`None`:
/// Raft traffic); `Some(None)` if they are but do not decode
pub(crate) fn decode_app(bytes: &[u8]) -> Option<Option<AppMessage>> {
    let mut prefix = Vec::with_capacity(10);
    let mut v = APP_CHANNEL;
    while v >= 0x80 {
        prefix.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    prefix.push(v as u8);
    let rest = bytes.strip_prefix(prefix.as_slice())?;
    Some(postcard::from_bytes(rest).ok())
}

impl MultiSim {
    /// Sends `message` from `from` to `to` over the network
    pub(crate) fn send_app(&mut self, from: NodeId, to: NodeId, message: &AppMessage) {
        self.buf.clear();
        encode_app(message, &mut self.buf);
        self.network.send_bytes(self.now, from, to, &self.buf);
    }

    fn driver_mut(&mut self, id: NodeId, gid: GroupId) -> Option<&mut SimDriver> {
        let node = self.nodes.get_mut((id as usize).wrapping_sub(1))?;
        if !node.up {
            return None;
        }
        node.groups.get_mut(&gid)?.replica.as_mut()?.driver_mut()
    }

    /// Node `to` received `message` from `from`
    pub(crate) fn deliver_app(&mut self, from: NodeId, to: NodeId, message: AppMessage) {
        if to >= CLIENT_BASE {
            self.client_inbox.entry(to).or_default().push(message);
            return;
        }
        let local = self.local_time(to);
        match message {
            AppMessage::Client {
                gid,
                token,
                request,
            } => {
                let Some(driver) = self.driver_mut(to, gid) else {
                    return;
                };
                match driver.handle_client(local, token, request) {
                    Ok(()) => {
                        self.reply_to.insert((to, gid, token), from);
                    }
                    Err(_) => {
                        let outcome = Err(GroupError::Retry);
                        self.send_app(to, from, &AppMessage::Reply { token, outcome });
                    }
                }
                self.after_event(to, gid);
            }
            AppMessage::Query { num, for_gid } => {
                let Some(ctl) = self.machine::<ShardController>(CONTROLLER, to) else {
                    return;
                };
                let config = match num {
                    Some(n) => ctl.config(n).cloned(),
                    None => Some(ctl.latest().clone()),
                };
                if let Some(config) = config {
                    self.send_app(to, from, &AppMessage::Config { for_gid, config });
                }
            }
            // Configurations for a group, shard requests and their answers: the driver's.
            AppMessage::Config {
                for_gid: Some(_), ..
            }
            | AppMessage::Fetch { .. }
            | AppMessage::Fetched { .. }
            | AppMessage::Delete { .. }
            | AppMessage::Deleted { .. } => {
                if let Some(by) = message.answered_by() {
                    self.answered_last.insert(by, from);
                }
                let Some(gid) = message.driver_group() else {
                    return;
                };
                let Some(driver) = self.driver_mut(to, gid) else {
                    return;
                };
                let answer = driver.handle_app(local, message);
                self.after_event(to, gid);
                if let Some(answer) = answer {
                    self.send_app(to, from, &answer);
                }
            }
            AppMessage::Reply { .. }
            | AppMessage::Config { for_gid: None, .. }
            | AppMessage::Admin { .. }
            | AppMessage::AdminReply { .. } => {}
        }
    }

    /// Sends what the replica group driver of `gid` on `id` has for other groups and clients
    pub(crate) fn route_outputs(&mut self, id: NodeId, gid: GroupId) {
        let mut out = Vec::new();
        let mut replies = Vec::new();
        {
            let Some(driver) = self.driver_mut(id, gid) else {
                return;
            };
            while let Some(request) = driver.poll_request() {
                out.push(request);
            }
            while let Some(reply) = driver.poll_reply() {
                replies.push(reply);
            }
        }
        for reply in replies {
            if let Some(client) = self.reply_to.remove(&(id, gid, reply.token)) {
                let message = AppMessage::Reply {
                    token: reply.token,
                    outcome: reply.outcome,
                };
                self.send_app(id, client, &message);
            }
        }
        for request in out {
            // Each kind of request takes its own turns through the replicas, so requests
            // made together every poll do not always land on the same replica.
            let Addressed {
                target,
                replicas,
                lane,
                message,
            } = request.address(gid);
            let turn = self
                .route_turns
                .entry((target.unwrap_or(CONTROLLER), lane))
                .or_insert(0);
            *turn += 1;
            let turn = *turn as usize;
            match target {
                None => {
                    let Some(voters) = self.groups.get(&CONTROLLER).map(|g| g.voters.clone())
                    else {
                        continue;
                    };
                    let to = voters[turn % voters.len()];
                    self.send_app(id, to, &message);
                }
                Some(target) => self.send_to_group(id, target, &replicas, turn, &message),
            }
        }
    }

    /// Sends `message` to the replica of `target` that answered last, if any, and to the
    /// replica whose turn it is
    fn send_to_group(
        &mut self,
        from: NodeId,
        target: GroupId,
        replicas: &[NodeId],
        turn: usize,
        message: &AppMessage,
    ) {
        if replicas.is_empty() {
            return;
        }
        let next = replicas[turn % replicas.len()];
        if let Some(&hint) = self.answered_last.get(&target)
            && hint != next
            && replicas.contains(&hint)
        {
            self.send_app(from, hint, message);
        }
        self.send_app(from, next, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_messages_round_trip_apart_from_raft_traffic() {
        let message = AppMessage::Deleted {
            gid: 100,
            by: 101,
            shard: 3,
            num: 7,
        };
        let mut buf = Vec::new();
        encode_app(&message, &mut buf);
        assert_eq!(decode_app(&buf), Some(Some(message)));
        assert_eq!(
            decode_app(&[0x05, 0x00]),
            None,
            "group 5's traffic is not an app message"
        );
        buf.truncate(11);
        assert_eq!(decode_app(&buf), Some(None));
    }
}
