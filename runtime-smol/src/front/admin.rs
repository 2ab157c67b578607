//! `SHALE <subcommand>`: the administrative commands behind `shale ctl`
//!
//! - `SHALE STATUS`: this node's groups (role, term, leader, commit and applied indexes,
//!   lag, keys), the shards moving into or out of them with their progress, and the shard map
//!   of the latest configuration it applied, as text;
//! - `SHALE GROUPS`: the same for programs, as nested arrays (see [`groups_reply`]);
//! - `SHALE JOIN <gid> <node,node,...>`, `SHALE LEAVE <gid>`, `SHALE MOVE <shard> <gid>`:
//!   controller commands, run through the controller's leader; they answer the new
//!   configuration's number;
//! - `SHALE TRANSFER <gid> <node>`, `SHALE ADD-REPLICA <gid> <node>`,
//!   `SHALE REMOVE-REPLICA <gid> <node>`: changes to one group's Raft leader or members, run
//!   on the node that leads the group (any other answers an error naming the leader);
//! - `SHALE SNAPSHOT <gid>`: this node's replica of the group snapshots its state now and
//!   compacts its log;
//! - `SHALE DIGEST`: digests of every replica on this node, for `shale ctl verify` (see
//!   [`super::digest`]).

use std::fmt::Write as _;

use shale_core::controller::{ControllerCommand, UNASSIGNED};
use shale_runtime_std::node::{AdminError, GroupAdmin, HandoverStatus, NodeStatus};

use super::commands::UNKNOWN_OUTCOME;
use crate::node::NodeClient;
use crate::resp::Reply;

fn number(arg: &[u8]) -> Option<u64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// Runs `SHALE <args...>`
pub(crate) async fn execute(node: &NodeClient, args: &[Vec<u8>]) -> Reply {
    let sub = args
        .get(1)
        .map(|a| a.to_ascii_uppercase())
        .unwrap_or_default();
    let command = match (sub.as_slice(), args.len()) {
        (b"STATUS", 2) => {
            return match node.status().await {
                Ok(status) => Reply::bulk(render_status(&status)),
                Err(e) => Reply::error(format!("TRYAGAIN {e}")),
            };
        }
        (b"DIGEST", 2) => return super::digest::execute(node).await,
        (b"GROUPS", 2) => {
            return match node.status().await {
                Ok(status) => groups_reply(&status),
                Err(e) => Reply::error(format!("TRYAGAIN {e}")),
            };
        }
        (b"JOIN", 4) => {
            let nodes: Option<Vec<u64>> = std::str::from_utf8(&args[3])
                .ok()
                .and_then(|s| s.split(',').map(|n| n.trim().parse().ok()).collect());
            match (number(&args[2]), nodes) {
                (Some(gid), Some(nodes)) => ControllerCommand::Join(vec![(gid, nodes)]),
                _ => return Reply::error("ERR usage: SHALE JOIN <gid> <node,node,...>"),
            }
        }
        (b"TRANSFER" | b"ADD-REPLICA" | b"REMOVE-REPLICA", 4) => {
            let (Some(gid), Some(node_id)) = (number(&args[2]), number(&args[3])) else {
                return Reply::error(
                    "ERR usage: SHALE TRANSFER|ADD-REPLICA|REMOVE-REPLICA <gid> <node>",
                );
            };
            let admin = match sub.as_slice() {
                b"TRANSFER" => GroupAdmin::TransferLeader { gid, to: node_id },
                b"ADD-REPLICA" => GroupAdmin::AddReplica { gid, node: node_id },
                _ => GroupAdmin::RemoveReplica { gid, node: node_id },
            };
            return match node.group_admin(admin).await {
                Ok(Ok(done)) => Reply::Simple(done),
                Ok(Err(why)) => Reply::error(format!("ERR {why}")),
                Err(e) => super::commands::node_error(&e),
            };
        }
        (b"SNAPSHOT", 3) => {
            let Some(gid) = number(&args[2]) else {
                return Reply::error("ERR usage: SHALE SNAPSHOT <gid>");
            };
            return match node.group_admin(GroupAdmin::Snapshot { gid }).await {
                Ok(Ok(done)) => Reply::Simple(done),
                Ok(Err(why)) => Reply::error(format!("ERR {why}")),
                Err(e) => super::commands::node_error(&e),
            };
        }
        (b"LEAVE", 3) => match number(&args[2]) {
            Some(gid) => ControllerCommand::Leave(vec![gid]),
            None => return Reply::error("ERR usage: SHALE LEAVE <gid>"),
        },
        (b"MAX-MOVES", 3) => match number(&args[2]).and_then(|n| u32::try_from(n).ok()) {
            Some(max) => ControllerCommand::SetMaxMovesPerConfig(max),
            None => return Reply::error("ERR usage: SHALE MAX-MOVES <shards per configuration>"),
        },
        (b"MOVE", 4) => match (
            number(&args[2]).and_then(|s| u32::try_from(s).ok()),
            number(&args[3]),
        ) {
            (Some(shard), Some(gid)) => ControllerCommand::Move { shard, gid },
            _ => return Reply::error("ERR usage: SHALE MOVE <shard> <gid>"),
        },
        _ => {
            return Reply::error(
                "ERR unknown SHALE subcommand or wrong arguments (STATUS, GROUPS, JOIN, LEAVE, MOVE, MAX-MOVES, TRANSFER, ADD-REPLICA, REMOVE-REPLICA, SNAPSHOT, DIGEST)",
            );
        }
    };
    match node.admin(command).await {
        Ok(Ok(config)) => Reply::Integer(config.num as i64),
        Ok(Err(AdminError::Refused(e))) => Reply::error(format!("ERR refused: {e}")),
        Ok(Err(AdminError::Unavailable)) => Reply::error(format!(
            "{UNKNOWN_OUTCOME} no controller leader answered in time; the command may or may \
             not have been applied"
        )),
        Err(e) => super::commands::node_error(&e),
    }
}

/// The reply to `SHALE GROUPS`: `[node id, latest configuration number (-1: unknown),
/// [[gid, term, role, configuration applied, shards moving in or out, keys], ...],
/// [owner of shard 0, owner of shard 1, ...]]`
pub fn groups_reply(status: &NodeStatus) -> Reply {
    let int = |v: u64| Reply::Integer(i64::try_from(v).unwrap_or(i64::MAX));
    let groups = status
        .groups
        .iter()
        .map(|g| {
            Reply::Array(Some(vec![
                int(g.gid),
                int(g.term),
                Reply::bulk(g.role.clone()),
                int(g.config_num),
                int(g.handovers.len() as u64),
                int(g.keys),
            ]))
        })
        .collect();
    let (num, owners) = match &status.config {
        Some(c) => (int(c.num), c.shards.iter().map(|&g| int(g)).collect()),
        None => (Reply::Integer(-1), Vec::new()),
    };
    Reply::Array(Some(vec![
        int(status.id),
        num,
        Reply::Array(Some(groups)),
        Reply::Array(Some(owners)),
    ]))
}

/// The text of `SHALE STATUS`
pub fn render_status(status: &NodeStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "node {}", status.id);
    let _ = writeln!(
        out,
        "  {:<10} {:<13} {:>6} {:>6} {:>9} {:>9} {:>5} {:>8}",
        "group", "role", "term", "leader", "commit", "applied", "lag", "keys"
    );
    for g in &status.groups {
        let name = if g.gid == 0 {
            "controller".to_owned()
        } else {
            format!("g{}", g.gid)
        };
        let leader = g.leader.map_or("-".to_owned(), |l| l.to_string());
        let _ = writeln!(
            out,
            "  {:<10} {:<13} {:>6} {:>6} {:>9} {:>9} {:>5} {:>8}",
            name,
            g.role,
            g.term,
            leader,
            g.commit,
            g.applied,
            g.commit.saturating_sub(g.applied),
            g.keys
        );
    }
    render_handovers(&mut out, status);
    match &status.config {
        None => {
            let _ = writeln!(out, "configuration: unknown (no controller replica here)");
        }
        Some(c) => {
            let _ = writeln!(out, "configuration {}", c.num);
            for (gid, replicas) in &c.groups {
                let shards: Vec<String> = c
                    .shards
                    .iter()
                    .enumerate()
                    .filter(|&(_, g)| g == gid)
                    .map(|(s, _)| s.to_string())
                    .collect();
                let _ = writeln!(
                    out,
                    "  g{gid}: replicas {replicas:?}, shards [{}]",
                    shards.join(" ")
                );
            }
            let unassigned = c.shards.iter().filter(|&&g| g == UNASSIGNED).count();
            if unassigned > 0 {
                let _ = writeln!(out, "  unassigned shards: {unassigned}");
            }
        }
    }
    out
}

/// The shards moving into or out of this node's groups, with their progress
fn render_handovers(out: &mut String, status: &NodeStatus) {
    let moving: Vec<(u64, &HandoverStatus)> = status
        .groups
        .iter()
        .flat_map(|g| g.handovers.iter().map(move |h| (g.gid, h)))
        .collect();
    if moving.is_empty() {
        return;
    }
    let _ = writeln!(out, "  moving shards");
    for (gid, h) in moving {
        let line = if h.incoming {
            let total = h.total.map_or_else(
                || "size not known yet".to_owned(),
                |(keys, bytes)| format!("of {keys} keys, {}", human_bytes(bytes)),
            );
            format!(
                "g{gid} shard {} <- g{}: {} keys, {} {total}",
                h.shard,
                h.peer,
                h.keys,
                human_bytes(h.bytes)
            )
        } else {
            format!(
                "g{gid} shard {} -> g{}: offered, {} keys, {}",
                h.shard,
                h.peer,
                h.keys,
                human_bytes(h.bytes)
            )
        };
        let _ = writeln!(out, "    {line}");
    }
}

/// `bytes` with a binary unit
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shale_runtime_std::node::GroupStatus;

    fn group(gid: u64, handovers: Vec<HandoverStatus>) -> GroupStatus {
        GroupStatus {
            gid,
            role: "leader".into(),
            term: 2,
            leader: Some(1),
            commit: 10,
            applied: 10,
            last_index: 10,
            keys: 5,
            snapshot_index: 0,
            snapshot_bytes: 0,
            handovers,
            received_keys: 0,
            received_bytes: 0,
            propose_failures: 0,
            restoring: false,
            config_num: 1,
        }
    }

    #[test]
    fn status_shows_each_moving_shard_its_direction_and_progress() {
        let incoming = HandoverStatus {
            shard: 5,
            incoming: true,
            peer: 1,
            keys: 1200,
            bytes: 3 << 20,
            total: Some((4000, 10 << 20)),
        };
        let outgoing = HandoverStatus {
            shard: 7,
            incoming: false,
            peer: 2,
            keys: 300,
            bytes: 2048,
            total: Some((300, 2048)),
        };
        let status = NodeStatus {
            id: 1,
            groups: vec![group(1, vec![outgoing]), group(2, vec![incoming])],
            config: None,
            forwarded_requests: 0,
        };
        let text = render_status(&status);
        assert!(
            text.contains("g2 shard 5 <- g1: 1200 keys, 3.0 MiB of 4000 keys, 10.0 MiB"),
            "{text}"
        );
        assert!(
            text.contains("g1 shard 7 -> g2: offered, 300 keys, 2.0 KiB"),
            "{text}"
        );
        let quiet = NodeStatus {
            id: 1,
            groups: vec![group(1, vec![])],
            config: None,
            forwarded_requests: 0,
        };
        assert!(!render_status(&quiet).contains("moving"));
        assert_eq!(human_bytes(999), "999 B");
    }
}
