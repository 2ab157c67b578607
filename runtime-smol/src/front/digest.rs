//! `SHALE DIGEST`: the digests of every replica on this node, which `shale ctl verify`
//! compares across nodes
//!
//! The reply: `[node id, [[gid, applied index, restoring (0 or 1), header digest,
//! [[shard, status, keys, digest], ...]], ...]]`, digests as 16 hexadecimal digits. The
//! digests are computed off the node's loop from a frozen view of each replica at the index
//! it reports (see `shale_runtime_std::node::ReplicaDigest`).

use shale_runtime_std::node::ReplicaDigest;

use crate::node::NodeClient;
use crate::resp::Reply;

/// A digest as it is sent: 16 hexadecimal digits
pub fn hex(digest: u64) -> String {
    format!("{digest:016x}")
}

/// Runs `SHALE DIGEST`
pub(crate) async fn execute(node: &NodeClient) -> Reply {
    let status = match node.status().await {
        Ok(s) => s,
        Err(e) => return super::commands::node_error(&e),
    };
    match node.digest().await {
        Ok(Ok(digests)) => reply(status.id, &digests),
        Ok(Err(busy)) => Reply::error(format!("TRYAGAIN {busy}")),
        Err(e) => super::commands::node_error(&e),
    }
}

fn int(v: u64) -> Reply {
    Reply::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

/// The reply for node `id`'s digests
pub fn reply(id: u64, digests: &[ReplicaDigest]) -> Reply {
    let groups = digests
        .iter()
        .map(|d| {
            let shards = d
                .shards
                .iter()
                .map(|s| {
                    Reply::Array(Some(vec![
                        int(u64::from(s.shard)),
                        Reply::bulk(format!("{:?}", s.status)),
                        int(s.keys),
                        Reply::bulk(hex(s.digest)),
                    ]))
                })
                .collect();
            Reply::Array(Some(vec![
                int(d.gid),
                int(d.applied),
                int(u64::from(d.restoring)),
                Reply::bulk(hex(d.header)),
                Reply::Array(Some(shards)),
            ]))
        })
        .collect();
    Reply::Array(Some(vec![int(id), Reply::Array(Some(groups))]))
}
