//! `CLUSTER`: what Redis Cluster clients ask a node about the cluster
//!
//! - `CLUSTER KEYSLOT key`: the key's slot (see `shale_core::shard::key_slot`);
//! - `CLUSTER MYID`: this node's id as 40 hexadecimal digits;
//! - `CLUSTER SLOTS`, `CLUSTER NODES`, `CLUSTER INFO`: for now every node presents itself as
//!   the one master of all 16384 slots, at the address the client reached it on. That is
//!   true to what it serves (every node takes every key and forwards it to the group that
//!   holds it), so cluster-aware clients work, sending everything to the node they were given;
//!   advertising each slot range's leader, so that they reach it directly, comes next.

use std::net::SocketAddr;

use shale_core::shard::{SLOT_COUNT, key_slot};

use super::Conn;
use super::commands::node_error;
use crate::node::NodeClient;
use crate::resp::Reply;

/// A node id as Redis Cluster shows one: 40 hexadecimal digits
pub fn node_id_hex(id: u64) -> String {
    format!("{id:040x}")
}

/// Runs `CLUSTER <args...>`
pub(crate) async fn execute(node: &NodeClient, conn: &Conn, args: &[Vec<u8>]) -> Reply {
    let sub = args
        .get(1)
        .map(|a| a.to_ascii_uppercase())
        .unwrap_or_default();
    let argc = args.len();
    match (sub.as_slice(), argc) {
        (b"KEYSLOT", 3) => return Reply::Integer(i64::from(key_slot(&args[2]))),
        (b"KEYSLOT", _) => return wrong_args("keyslot"),
        (b"MYID" | b"SLOTS" | b"NODES" | b"INFO", 2) => {}
        (b"MYID" | b"SLOTS" | b"NODES" | b"INFO", _) => {
            return wrong_args(&String::from_utf8_lossy(&sub).to_ascii_lowercase());
        }
        _ => {
            let shown: String = String::from_utf8_lossy(&args[1])
                .chars()
                .take(128)
                .collect();
            return Reply::error(format!(
                "ERR unknown subcommand '{shown}'. Try CLUSTER HELP."
            ));
        }
    }
    let status = match node.status().await {
        Ok(s) => s,
        Err(e) => return node_error(&e),
    };
    let id = node_id_hex(status.id);
    let epoch = status.config.as_ref().map_or(0, |c| c.num);
    let ready = status
        .config
        .as_ref()
        .is_some_and(|c| !c.shards.is_empty() && c.shards.iter().all(|&g| g != 0));
    let addr = conn.local;
    let last = i64::from(SLOT_COUNT - 1);
    match sub.as_slice() {
        b"MYID" => Reply::bulk(id),
        b"SLOTS" => match (ready, addr) {
            (true, Some(addr)) => Reply::Array(Some(vec![Reply::Array(Some(vec![
                Reply::Integer(0),
                Reply::Integer(last),
                Reply::Array(Some(vec![
                    Reply::bulk(addr.ip().to_string()),
                    Reply::Integer(i64::from(addr.port())),
                    Reply::bulk(id),
                ])),
            ]))])),
            _ => Reply::Array(Some(Vec::new())),
        },
        b"NODES" => Reply::bulk(nodes_line(&id, addr, ready, epoch)),
        _ => Reply::bulk(info_text(ready, epoch)),
    }
}

fn wrong_args(sub: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for 'cluster|{sub}' command"
    ))
}

/// The `CLUSTER NODES` line of this node: id, `ip:port@cport`, flags, master, ping and pong
/// times, epoch, link state, slots
fn nodes_line(id: &str, addr: Option<SocketAddr>, ready: bool, epoch: u64) -> String {
    let at = addr.map_or_else(
        || ":0@0".to_owned(),
        |a| format!("{}:{}@0", a.ip(), a.port()),
    );
    let slots = if ready {
        format!(" 0-{}", SLOT_COUNT - 1)
    } else {
        String::new()
    };
    format!("{id} {at} myself,master - 0 0 {epoch} connected{slots}\n")
}

/// The text of `CLUSTER INFO`
fn info_text(ready: bool, epoch: u64) -> String {
    let slots = if ready { SLOT_COUNT } else { 0 };
    let state = if ready { "ok" } else { "fail" };
    [
        format!("cluster_state:{state}"),
        format!("cluster_slots_assigned:{slots}"),
        format!("cluster_slots_ok:{slots}"),
        "cluster_slots_pfail:0".to_owned(),
        "cluster_slots_fail:0".to_owned(),
        "cluster_known_nodes:1".to_owned(),
        format!("cluster_size:{}", u8::from(ready)),
        format!("cluster_current_epoch:{epoch}"),
        format!("cluster_my_epoch:{epoch}"),
        "cluster_stats_messages_sent:0".to_owned(),
        "cluster_stats_messages_received:0".to_owned(),
        "total_cluster_links_buffer_limit_exceeded:0".to_owned(),
    ]
    .iter()
    .map(|l| format!("{l}\r\n"))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_lines_and_info_have_the_redis_cluster_shapes() {
        assert_eq!(node_id_hex(3).len(), 40);
        assert!(node_id_hex(3).ends_with("03"));
        let addr: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let line = nodes_line(&node_id_hex(1), Some(addr), true, 4);
        let cols: Vec<&str> = line.trim_end().split(' ').collect();
        assert_eq!(cols.len(), 9, "{line}");
        assert_eq!(cols[1], "127.0.0.1:7001@0");
        assert_eq!(cols[2], "myself,master");
        assert_eq!(cols[8], "0-16383");
        let info = info_text(true, 4);
        assert!(info.starts_with("cluster_state:ok\r\n"), "{info}");
        assert!(info.contains("cluster_slots_assigned:16384\r\n"));
        assert!(info_text(false, 0).starts_with("cluster_state:fail\r\n"));
    }
}
