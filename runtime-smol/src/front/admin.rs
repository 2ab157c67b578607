//! `SHALE <subcommand>`: the administrative commands behind `shale ctl`
//!
//! - `SHALE STATUS`: this node's groups (role, term, leader, commit and applied indexes,
//!   lag, keys) and the shard map of the latest configuration it applied, as text;
//! - `SHALE JOIN <gid> <node,node,...>`, `SHALE LEAVE <gid>`, `SHALE MOVE <shard> <gid>`:
//!   controller commands, run through the controller's leader; they answer the new
//!   configuration's number;
//! - `SHALE TRANSFER <gid> <node>`, `SHALE ADD-REPLICA <gid> <node>`,
//!   `SHALE REMOVE-REPLICA <gid> <node>`: changes to one group's Raft leader or members, run
//!   on the node that leads the group (any other answers an error naming the leader);
//! - `SHALE SNAPSHOT <gid>`: this node's replica of the group snapshots its state now and
//!   compacts its log.

use std::fmt::Write as _;

use shale_core::controller::{ControllerCommand, UNASSIGNED};
use shale_runtime_std::node::{AdminError, GroupAdmin, NodeStatus};

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
                Err(e) => Reply::error(format!("TRYAGAIN {e}")),
            };
        }
        (b"SNAPSHOT", 3) => {
            let Some(gid) = number(&args[2]) else {
                return Reply::error("ERR usage: SHALE SNAPSHOT <gid>");
            };
            return match node.group_admin(GroupAdmin::Snapshot { gid }).await {
                Ok(Ok(done)) => Reply::Simple(done),
                Ok(Err(why)) => Reply::error(format!("ERR {why}")),
                Err(e) => Reply::error(format!("TRYAGAIN {e}")),
            };
        }
        (b"LEAVE", 3) => match number(&args[2]) {
            Some(gid) => ControllerCommand::Leave(vec![gid]),
            None => return Reply::error("ERR usage: SHALE LEAVE <gid>"),
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
                "ERR unknown SHALE subcommand or wrong arguments (STATUS, JOIN, LEAVE, MOVE, TRANSFER, ADD-REPLICA, REMOVE-REPLICA, SNAPSHOT)",
            );
        }
    };
    match node.admin(command).await {
        Ok(Ok(config)) => Reply::Integer(config.num as i64),
        Ok(Err(AdminError::Refused(e))) => Reply::error(format!("ERR refused: {e}")),
        Ok(Err(AdminError::Unavailable)) => {
            Reply::error("TRYAGAIN no controller leader answered in time")
        }
        Err(e) => Reply::error(format!("TRYAGAIN {e}")),
    }
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
