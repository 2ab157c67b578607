//! `shale ctl`: administration over any node's Redis port

use super::{say, say_raw};
use std::net::SocketAddr;

use crate::bench::call::call;
use crate::bench::reply::Reply;

/// `shale ctl`
#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    /// Nodes' Redis addresses (status asks each; other commands use the first that answers)
    #[arg(long = "addr", default_values = ["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"])]
    pub addrs: Vec<SocketAddr>,
    /// Password, if the cluster requires one
    #[arg(long)]
    pub password: Option<String>,
    /// What to do
    #[command(subcommand)]
    pub command: CtlCommand,
}

/// `shale ctl` subcommands
#[derive(Debug, clap::Subcommand)]
pub enum CtlCommand {
    /// Groups, roles, terms, commit and applied indexes, lag, and the shard map
    Status,
    /// Join replica group GID with its replicas (the nodes hosting it)
    Join {
        /// The group
        gid: u64,
        /// Its replicas, e.g. 1,2,3
        nodes: String,
    },
    /// Have replica group GID leave (its shards move to the others)
    Leave {
        /// The group
        gid: u64,
    },
    /// Give SHARD to group GID
    Move {
        /// The shard
        shard: u32,
        /// The group
        gid: u64,
    },
    /// From now on, a join or leave moves at most SHARDS shards holding data per
    /// configuration (0: all at once); logged by the controller, so every node agrees
    MaxMoves {
        /// Shards per configuration
        shards: u32,
    },
    /// Hand group GID's Raft leadership to NODE
    TransferLeader {
        /// The group
        gid: u64,
        /// The new leader
        node: u64,
    },
    /// Add NODE (which hosts the group) to group GID: as a learner, then, run again once it
    /// caught up, as a voter
    AddReplica {
        /// The group
        gid: u64,
        /// The node
        node: u64,
    },
    /// Remove NODE from group GID's replicas
    RemoveReplica {
        /// The group
        gid: u64,
        /// The node
        node: u64,
    },
    /// Have every node given with --addr snapshot its replica of group GID now
    Snapshot {
        /// The group
        gid: u64,
    },
    /// Compare the replicas of every group on the nodes given with --addr (give them all),
    /// shard by shard, at one applied index; fails on any difference
    Verify {
        /// Tries for the replicas of each group to reach one applied index
        #[arg(long, default_value_t = 40)]
        attempts: u32,
        /// Milliseconds between tries
        #[arg(long, default_value_t = 250)]
        pause_ms: u64,
    },
}

/// Runs `shale ctl`
pub fn run(args: &CtlArgs) -> Result<(), String> {
    let password = args.password.as_deref();
    let command: Vec<String> = match &args.command {
        CtlCommand::Status => {
            let mut any = false;
            for &addr in &args.addrs {
                match call(addr, password, &["SHALE", "STATUS"]) {
                    Ok(Reply::Bulk(text)) => {
                        any = true;
                        say_raw!("{}", String::from_utf8_lossy(&text));
                    }
                    Ok(other) => say!("{addr}: {}", other.describe()),
                    Err(e) => say!("{e}"),
                }
            }
            return if any {
                Ok(())
            } else {
                Err("no node answered".into())
            };
        }
        CtlCommand::Join { gid, nodes } => {
            vec![
                "SHALE".into(),
                "JOIN".into(),
                gid.to_string(),
                nodes.clone(),
            ]
        }
        CtlCommand::Leave { gid } => vec!["SHALE".into(), "LEAVE".into(), gid.to_string()],
        CtlCommand::Move { shard, gid } => {
            vec![
                "SHALE".into(),
                "MOVE".into(),
                shard.to_string(),
                gid.to_string(),
            ]
        }
        CtlCommand::MaxMoves { shards } => {
            vec!["SHALE".into(), "MAX-MOVES".into(), shards.to_string()]
        }
        CtlCommand::TransferLeader { gid, node } => {
            return on_leader("TRANSFER", *gid, *node, args);
        }
        CtlCommand::AddReplica { gid, node } => return on_leader("ADD-REPLICA", *gid, *node, args),
        CtlCommand::RemoveReplica { gid, node } => {
            return on_leader("REMOVE-REPLICA", *gid, *node, args);
        }
        CtlCommand::Snapshot { gid } => return snapshot(*gid, args),
        CtlCommand::Verify { attempts, pause_ms } => {
            return super::verify::run(
                &args.addrs,
                password,
                *attempts,
                std::time::Duration::from_millis(*pause_ms),
            );
        }
    };
    let refs: Vec<&str> = command.iter().map(String::as_str).collect();
    let mut last_error = String::from("no address given");
    for &addr in &args.addrs {
        match call(addr, password, &refs) {
            Ok(Reply::Integer(num)) => {
                say!("ok: configuration {num}");
                return Ok(());
            }
            Ok(Reply::Error(e)) => return Err(String::from_utf8_lossy(&e).into_owned()),
            Ok(other) => return Err(format!("unexpected answer {}", other.describe())),
            Err(e) => last_error = e,
        }
    }
    Err(last_error)
}

/// Runs a group change on whichever node leads the group: every other node refuses it
fn on_leader(sub: &str, gid: u64, node: u64, args: &CtlArgs) -> Result<(), String> {
    let (gid, node) = (gid.to_string(), node.to_string());
    let mut refusals = Vec::new();
    for &addr in &args.addrs {
        match call(addr, args.password.as_deref(), &["SHALE", sub, &gid, &node]) {
            Ok(Reply::Simple(done)) => {
                say!("ok: {}", String::from_utf8_lossy(&done));
                return Ok(());
            }
            Ok(other) => refusals.push(format!("{addr}: {}", other.describe())),
            Err(e) => refusals.push(e),
        }
    }
    Err(refusals.join("; "))
}

/// Asks every node for a snapshot of its replica of `gid`
fn snapshot(gid: u64, args: &CtlArgs) -> Result<(), String> {
    let gid = gid.to_string();
    let mut any = false;
    for &addr in &args.addrs {
        match call(addr, args.password.as_deref(), &["SHALE", "SNAPSHOT", &gid]) {
            Ok(Reply::Simple(done)) => {
                any = true;
                say!("ok: {}", String::from_utf8_lossy(&done));
            }
            Ok(other) => say!("{addr}: {}", other.describe()),
            Err(e) => say!("{e}"),
        }
    }
    if any {
        Ok(())
    } else {
        Err("no node took a snapshot".into())
    }
}
