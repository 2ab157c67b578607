//! The application messages nodes exchange besides Raft traffic
//!
//! Replica groups, the shard controller and client front doors talk to each other with
//! [`AppMessage`]s: a group's driver asks the controller for configurations and other groups
//! for shards ([`GroupRequest`](super::GroupRequest)), and a node that accepted a client's
//! request forwards it to a replica of the group that owns the key. Every message is an
//! idempotent request or an answer to one, so a runtime may drop, duplicate or reorder them;
//! whoever asked asks again.
//!
//! ```
//! use shale_core::group::AppMessage;
//!
//! let message = AppMessage::Query { num: Some(3), for_gid: Some(1) };
//! let bytes = message.encode();
//! assert_eq!(AppMessage::decode(&bytes), Some(message));
//! assert_eq!(AppMessage::decode(&[0xff; 3]), None);
//! ```

use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

use super::driver::GroupRequest;
use super::state::ClientOutcome;
use crate::controller::{Configuration, ControllerCommand, ControllerError, GroupId, ShardId};
use crate::raft::NodeId;
use crate::shard::{Bytes, ClientRequest, ShardChunk, ShardCursor};

/// A message between replicas of different groups, the controller and clients
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AppMessage {
    /// A client's request for group `gid`
    Client {
        /// The group addressed
        gid: GroupId,
        /// The sender's handle for the reply
        token: u64,
        /// The request
        request: ClientRequest,
    },
    /// A replica's answer to a client
    Reply {
        /// The token of the request
        token: u64,
        /// What happened
        outcome: ClientOutcome,
    },
    /// Ask a controller replica for configuration `num` (`None`: the latest it has)
    Query {
        /// The configuration wanted
        num: Option<u64>,
        /// The group whose replica asks (`None`: a client)
        for_gid: Option<GroupId>,
    },
    /// A controller replica's answer
    Config {
        /// The group whose replica asked (`None`: a client)
        for_gid: Option<GroupId>,
        /// The configuration
        config: Configuration,
    },
    /// Group `requester` asks group `gid` for the chunk of `shard` (as of configuration
    /// `num`) that starts at `from`
    Fetch {
        /// The group asked (the previous owner)
        gid: GroupId,
        /// The group asking
        requester: GroupId,
        /// The shard
        shard: ShardId,
        /// The configuration in which the requester gained it
        num: u64,
        /// Where the chunk starts
        from: ShardCursor,
        /// About how many bytes the chunk may carry (the answering side caps it too)
        max_bytes: u32,
    },
    /// A chunk of the shard's data and sessions, for group `gid`
    Fetched {
        /// The group that asked
        gid: GroupId,
        /// The group that answered
        by: GroupId,
        /// The shard
        shard: ShardId,
        /// The configuration in which `gid` gained it
        num: u64,
        /// The chunk
        chunk: ShardChunk,
    },
    /// Group `requester` asks group `gid` to delete its copy of `shard`
    Delete {
        /// The group asked (the previous owner)
        gid: GroupId,
        /// The group asking
        requester: GroupId,
        /// The shard
        shard: ShardId,
        /// The configuration in which the requester gained it
        num: u64,
    },
    /// Group `gid`'s previous owner deleted its copy of `shard`
    Deleted {
        /// The group that asked
        gid: GroupId,
        /// The group that answered
        by: GroupId,
        /// The shard
        shard: ShardId,
        /// The configuration in which `gid` gained it
        num: u64,
    },
    /// An administrative command for the controller's leader
    Admin {
        /// The sender's handle for the reply
        token: u64,
        /// The command
        command: ControllerCommand,
    },
    /// The controller's answer to an [`AppMessage::Admin`]; `None` when the receiver is not
    /// the controller's leader (ask another replica)
    AdminReply {
        /// The token of the command
        token: u64,
        /// The new (or, for a query, the asked) configuration or why the command was refused
        result: Option<Result<Configuration, ControllerError>>,
    },
    /// Group `requester` asks group `gid` for some keys of `shard` (as of configuration
    /// `num`) ahead of their chunk, for clients waiting on them
    FetchKeys {
        /// The group asked (the previous owner)
        gid: GroupId,
        /// The group asking
        requester: GroupId,
        /// The shard
        shard: ShardId,
        /// The configuration in which the requester gained it
        num: u64,
        /// The keys
        keys: Vec<Bytes>,
    },
    /// The values of keys fetched ahead, for group `gid`
    KeysFetched {
        /// The group that asked
        gid: GroupId,
        /// The group that answered
        by: GroupId,
        /// The shard
        shard: ShardId,
        /// The configuration in which `gid` gained it
        num: u64,
        /// The keys and their values (`None`: absent)
        entries: Vec<(Bytes, Option<Bytes>)>,
    },
}

/// A group driver's request as a message, and where it goes
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addressed {
    /// The group asked (`None`: the controller)
    pub target: Option<GroupId>,
    /// Its replicas as the request names them (empty for the controller: the runtime knows
    /// its voters)
    pub replicas: Vec<NodeId>,
    /// Requests of one lane take turns through the replicas, so requests made together do
    /// not always land on the same one
    pub lane: u64,
    /// The message to send
    pub message: AppMessage,
}

impl GroupRequest {
    /// The message that carries this request of group `gid`, and where it goes
    pub fn address(self, gid: GroupId) -> Addressed {
        match self {
            GroupRequest::QueryConfig { num } => Addressed {
                target: None,
                replicas: Vec::new(),
                lane: gid,
                message: AppMessage::Query {
                    num: Some(num),
                    for_gid: Some(gid),
                },
            },
            GroupRequest::FetchShard {
                from,
                replicas,
                shard,
                num,
                cursor,
                max_bytes,
            } => Addressed {
                target: Some(from),
                replicas,
                lane: u64::from(shard),
                message: AppMessage::Fetch {
                    gid: from,
                    requester: gid,
                    shard,
                    num,
                    from: cursor,
                    max_bytes,
                },
            },
            GroupRequest::SendChunk {
                to,
                replicas,
                shard,
                num,
                chunk,
            } => Addressed {
                target: Some(to),
                replicas,
                lane: u64::from(shard),
                message: AppMessage::Fetched {
                    gid: to,
                    by: gid,
                    shard,
                    num,
                    chunk,
                },
            },
            GroupRequest::FetchKeys {
                from,
                replicas,
                shard,
                num,
                keys,
            } => Addressed {
                target: Some(from),
                replicas,
                lane: u64::from(shard),
                message: AppMessage::FetchKeys {
                    gid: from,
                    requester: gid,
                    shard,
                    num,
                    keys,
                },
            },
            GroupRequest::DeleteShard {
                at,
                replicas,
                shard,
                num,
            } => Addressed {
                target: Some(at),
                replicas,
                lane: u64::from(shard),
                message: AppMessage::Delete {
                    gid: at,
                    requester: gid,
                    shard,
                    num,
                },
            },
        }
    }
}

impl AppMessage {
    /// The replica group whose driver handles this message ([`GroupDriver::handle_app`]):
    /// a configuration for a group, a shard request or its answer; `None` for the others
    ///
    /// [`GroupDriver::handle_app`]: super::GroupDriver::handle_app
    pub fn driver_group(&self) -> Option<GroupId> {
        match self {
            AppMessage::Config {
                for_gid: Some(gid), ..
            }
            | AppMessage::Fetch { gid, .. }
            | AppMessage::Fetched { gid, .. }
            | AppMessage::FetchKeys { gid, .. }
            | AppMessage::KeysFetched { gid, .. }
            | AppMessage::Delete { gid, .. }
            | AppMessage::Deleted { gid, .. } => Some(*gid),
            _ => None,
        }
    }

    /// The group that answered, for a shard answer (the runtime may prefer the replica that
    /// sent it next time)
    pub fn answered_by(&self) -> Option<GroupId> {
        match self {
            AppMessage::Fetched { by, .. }
            | AppMessage::KeysFetched { by, .. }
            | AppMessage::Deleted { by, .. } => Some(*by),
            _ => None,
        }
    }

    /// The message's bytes (postcard)
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// The message in `bytes`, or `None` if they do not decode
    pub fn decode(bytes: &[u8]) -> Option<AppMessage> {
        postcard::from_bytes(bytes).ok()
    }
}
