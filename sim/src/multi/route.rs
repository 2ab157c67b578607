//! The application channel: how the simulator carries [`AppMessage`]s over its network
//!
//! Raft traffic travels as `(group id, message)` envelopes (see `events.rs`). Everything else
//! travels on a channel of its own: the reserved group id [`APP_CHANNEL`], then an
//! [`AppMessage`] in postcard, sent with the network's real byte counts, drops, duplicates,
//! delays and cut links. What a node does with them is the core's
//! [`Host::handle_app`](shale_core::node::Host::handle_app), the code the `shale` program runs:
//! the simulator only moves bytes.
//!
//! KV clients and controller clerks live at addresses from [`CLIENT_BASE`] up; partitions never
//! cut them. Messages to them wait in their inbox until they poll.

use shale_core::controller::GroupId;
pub use shale_core::group::AppMessage;
use shale_core::raft::NodeId;

use super::MultiSim;

/// The reserved group id that marks an application message rather than Raft traffic
pub const APP_CHANNEL: GroupId = u64::MAX;

/// The first network address of KV clients and clerks (node ids stay below it)
pub const CLIENT_BASE: NodeId = 1_000_000;

/// The varint prefix of [`APP_CHANNEL`]
fn app_prefix() -> Vec<u8> {
    let mut prefix = Vec::with_capacity(10);
    let mut v = APP_CHANNEL;
    while v >= 0x80 {
        prefix.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    prefix.push(v as u8);
    prefix
}

/// Appends `message` on the application channel to `buf`
pub(crate) fn encode_app(message: &AppMessage, buf: &mut Vec<u8>) {
    buf.extend(app_prefix());
    buf.extend(postcard::to_allocvec(message).unwrap_or_default());
}

/// The application message in `bytes`, if they are on the application channel (`None`:
/// Raft traffic); `Some(None)` if they are but do not decode
pub(crate) fn decode_app(bytes: &[u8]) -> Option<Option<AppMessage>> {
    let rest = bytes.strip_prefix(app_prefix().as_slice())?;
    Some(postcard::from_bytes(rest).ok())
}

impl MultiSim {
    /// Sends `message` from `from` to `to` over the network (its encoding stays in the
    /// simulator's buffer)
    pub(crate) fn send_app(&mut self, from: NodeId, to: NodeId, message: &AppMessage) {
        self.buf.clear();
        encode_app(message, &mut self.buf);
        self.network.send_bytes(self.now, from, to, &self.buf);
    }

    /// Takes what arrived for the client at `addr`
    pub(crate) fn take_inbox(&mut self, addr: NodeId) -> Vec<AppMessage> {
        self.client_inbox.remove(&addr).unwrap_or_default()
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
