//! `CLUSTER`: what Redis Cluster clients ask a node about the cluster
//!
//! - `CLUSTER KEYSLOT key`: the key's slot (see `shale_core::shard::key_slot`);
//! - `CLUSTER MYID`: this node's id as 40 hexadecimal digits;
//! - `CLUSTER SLOTS`, `CLUSTER SHARDS`, `CLUSTER NODES`, `CLUSTER INFO`: the slot ranges of
//!   the [`Topology`], each with its group's leader first, then its other replicas, at the
//!   nodes' cluster addresses (`--clients`). Every node is shown as a master: the slots it
//!   leads are its own, and it replicates the others' (Redis's one-master-per-node picture
//!   does not fit groups that share nodes; clients only need the ranges). Without the
//!   cluster addresses a node presents itself alone, as the master of every slot, at the
//!   address the client reached it on: true to what it serves, since it forwards every key.
//!
//! Asking for the slot map makes the connection cluster-aware (see the front door's docs).

use std::net::SocketAddr;

use shale_core::shard::{SLOT_COUNT, key_slot};

use super::topology::{SlotRange, Topology};
use super::{Conn, FrontConfig};
use crate::resp::Reply;

/// A node id as Redis Cluster shows one: 40 hexadecimal digits
pub fn node_id_hex(id: u64) -> String {
    format!("{id:040x}")
}

/// Runs `CLUSTER <args...>`
pub(crate) fn execute(config: &FrontConfig, conn: &mut Conn, args: &[Vec<u8>]) -> Reply {
    let sub = args
        .get(1)
        .map(|a| a.to_ascii_uppercase())
        .unwrap_or_default();
    let argc = args.len();
    match (sub.as_slice(), argc) {
        (b"KEYSLOT", 3) => return Reply::Integer(i64::from(key_slot(&args[2]))),
        (b"MYID" | b"SLOTS" | b"NODES" | b"INFO" | b"SHARDS", 2) => {}
        (b"KEYSLOT" | b"MYID" | b"SLOTS" | b"NODES" | b"INFO" | b"SHARDS", _) => {
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
    if matches!(sub.as_slice(), b"SLOTS" | b"NODES" | b"SHARDS") {
        conn.cluster_aware = true;
    }
    let map = SlotMap::new(config, conn.local);
    match sub.as_slice() {
        b"MYID" => Reply::bulk(node_id_hex(config.node_id)),
        b"SLOTS" => map.slots(),
        b"SHARDS" => map.shards(),
        b"NODES" => Reply::bulk(map.nodes_text()),
        _ => Reply::bulk(map.info_text()),
    }
}

fn wrong_args(sub: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for 'cluster|{sub}' command"
    ))
}

/// The slot map as one connection is shown it
struct SlotMap {
    me: u64,
    epoch: u64,
    ranges: Vec<SlotRange>,
    /// Node ids and their addresses, this one first
    nodes: Vec<(u64, SocketAddr)>,
}

impl SlotMap {
    fn new(config: &FrontConfig, local: Option<SocketAddr>) -> SlotMap {
        let topology: std::sync::Arc<Topology> = config.topology.get();
        let me = config.node_id;
        let ready = topology.ready();
        if config.cluster_clients.is_empty() || !config.cluster_clients.contains_key(&me) {
            // Alone: this node serves every slot (it forwards), at the address it was reached.
            let addr = local.unwrap_or(config.addr);
            let ranges = if ready {
                vec![SlotRange {
                    first: 0,
                    last: SLOT_COUNT - 1,
                    gid: 0,
                    nodes: vec![me],
                    leader_known: true,
                }]
            } else {
                Vec::new()
            };
            return SlotMap {
                me,
                epoch: topology.epoch,
                ranges,
                nodes: vec![(me, addr)],
            };
        }
        let mut nodes: Vec<(u64, SocketAddr)> = config
            .cluster_clients
            .iter()
            .map(|(&id, &addr)| (id, addr))
            .collect();
        nodes.sort_by_key(|&(id, _)| id != me);
        SlotMap {
            me,
            epoch: topology.epoch,
            ranges: if ready {
                topology.ranges.clone()
            } else {
                Vec::new()
            },
            nodes,
        }
    }

    fn addr(&self, id: u64) -> Option<SocketAddr> {
        self.nodes.iter().find(|(n, _)| *n == id).map(|&(_, a)| a)
    }

    /// `CLUSTER SLOTS`: per range, its first and last slot, then each node as
    /// `[ip, port, id]`, the leader first
    fn slots(&self) -> Reply {
        let ranges = self
            .ranges
            .iter()
            .filter(|r| !r.nodes.is_empty())
            .map(|r| {
                let mut item = vec![
                    Reply::Integer(i64::from(r.first)),
                    Reply::Integer(i64::from(r.last)),
                ];
                for &id in &r.nodes {
                    if let Some(addr) = self.addr(id) {
                        item.push(Reply::Array(Some(vec![
                            Reply::bulk(addr.ip().to_string()),
                            Reply::Integer(i64::from(addr.port())),
                            Reply::bulk(node_id_hex(id)),
                        ])));
                    }
                }
                Reply::Array(Some(item))
            })
            .collect();
        Reply::Array(Some(ranges))
    }

    /// `CLUSTER SHARDS`: per range, its slots and its nodes (the leader as `master`)
    fn shards(&self) -> Reply {
        let shards = self
            .ranges
            .iter()
            .filter(|r| !r.nodes.is_empty())
            .map(|r| {
                let nodes = r
                    .nodes
                    .iter()
                    .enumerate()
                    .filter_map(|(i, &id)| {
                        let addr = self.addr(id)?;
                        let role = if i == 0 { "master" } else { "replica" };
                        Some(Reply::Map(vec![
                            (Reply::bulk("id"), Reply::bulk(node_id_hex(id))),
                            (Reply::bulk("port"), Reply::Integer(i64::from(addr.port()))),
                            (Reply::bulk("ip"), Reply::bulk(addr.ip().to_string())),
                            (Reply::bulk("endpoint"), Reply::bulk(addr.ip().to_string())),
                            (Reply::bulk("role"), Reply::bulk(role)),
                            (Reply::bulk("replication-offset"), Reply::Integer(0)),
                            (Reply::bulk("health"), Reply::bulk("online")),
                        ]))
                    })
                    .collect();
                Reply::Map(vec![
                    (
                        Reply::bulk("slots"),
                        Reply::Array(Some(vec![
                            Reply::Integer(i64::from(r.first)),
                            Reply::Integer(i64::from(r.last)),
                        ])),
                    ),
                    (Reply::bulk("nodes"), Reply::Array(Some(nodes))),
                ])
            })
            .collect();
        Reply::Array(Some(shards))
    }

    /// `CLUSTER NODES`: one line per node: id, `ip:port@cport`, flags, master, ping and pong
    /// times, epoch, link state, then the slot ranges it leads
    fn nodes_text(&self) -> String {
        let mut text = String::new();
        for &(id, addr) in &self.nodes {
            let flags = if id == self.me {
                "myself,master"
            } else {
                "master"
            };
            let mut line = format!(
                "{} {}:{}@0 {flags} - 0 0 {} connected",
                node_id_hex(id),
                addr.ip(),
                addr.port(),
                self.epoch
            );
            for r in self.ranges.iter().filter(|r| r.nodes.first() == Some(&id)) {
                if r.first == r.last {
                    line.push_str(&format!(" {}", r.first));
                } else {
                    line.push_str(&format!(" {}-{}", r.first, r.last));
                }
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    }

    /// The text of `CLUSTER INFO`
    fn info_text(&self) -> String {
        let slots: u32 = self
            .ranges
            .iter()
            .map(|r| u32::from(r.last - r.first) + 1)
            .sum();
        let state = if slots == u32::from(SLOT_COUNT) {
            "ok"
        } else {
            "fail"
        };
        let masters = self
            .nodes
            .iter()
            .filter(|(id, _)| self.ranges.iter().any(|r| r.nodes.first() == Some(id)))
            .count();
        [
            format!("cluster_state:{state}"),
            format!("cluster_slots_assigned:{slots}"),
            format!("cluster_slots_ok:{slots}"),
            "cluster_slots_pfail:0".to_owned(),
            "cluster_slots_fail:0".to_owned(),
            format!("cluster_known_nodes:{}", self.nodes.len()),
            format!("cluster_size:{masters}"),
            format!("cluster_current_epoch:{}", self.epoch),
            format!("cluster_my_epoch:{}", self.epoch),
            "cluster_stats_messages_sent:0".to_owned(),
            "cluster_stats_messages_received:0".to_owned(),
            "total_cluster_links_buffer_limit_exceeded:0".to_owned(),
        ]
        .iter()
        .map(|l| format!("{l}\r\n"))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(ranges: Vec<SlotRange>) -> SlotMap {
        SlotMap {
            me: 1,
            epoch: 4,
            ranges,
            nodes: vec![
                (1, "127.0.0.1:7301".parse().unwrap()),
                (2, "127.0.0.1:7302".parse().unwrap()),
                (3, "127.0.0.1:7303".parse().unwrap()),
            ],
        }
    }

    fn range(first: u16, last: u16, nodes: Vec<u64>) -> SlotRange {
        SlotRange {
            first,
            last,
            gid: 1,
            nodes,
            leader_known: true,
        }
    }

    #[test]
    fn nodes_lines_list_each_node_with_the_ranges_it_leads() {
        assert_eq!(node_id_hex(3).len(), 40);
        assert!(node_id_hex(3).ends_with("03"));
        let m = map(vec![
            range(0, 8191, vec![2, 1, 3]),
            range(8192, 8192, vec![3, 1, 2]),
            range(8193, 16383, vec![2, 1, 3]),
        ]);
        let text = m.nodes_text();
        let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split(' ').collect()).collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[0][1], "127.0.0.1:7301@0");
        assert_eq!(lines[0][2], "myself,master");
        assert_eq!(lines[0].len(), 8, "node 1 leads nothing: {text}");
        assert_eq!(lines[1][2], "master");
        assert_eq!(&lines[1][8..], ["0-8191", "8193-16383"]);
        assert_eq!(&lines[2][8..], ["8192"]);
        let info = m.info_text();
        assert!(info.starts_with("cluster_state:ok\r\n"), "{info}");
        assert!(info.contains("cluster_slots_assigned:16384\r\n"));
        assert!(info.contains("cluster_size:2\r\n"));
        assert!(
            map(Vec::new())
                .info_text()
                .starts_with("cluster_state:fail\r\n")
        );
    }

    #[test]
    fn slots_list_the_leader_first_then_the_replicas() {
        let m = map(vec![range(0, 16383, vec![3, 1, 2])]);
        let Reply::Array(Some(ranges)) = m.slots() else {
            panic!("not an array");
        };
        let Reply::Array(Some(first)) = &ranges[0] else {
            panic!("not an array");
        };
        assert_eq!(first.len(), 5);
        assert_eq!(first[0], Reply::Integer(0));
        assert_eq!(first[1], Reply::Integer(16383));
        let Reply::Array(Some(leader)) = &first[2] else {
            panic!("not an array");
        };
        assert_eq!(leader[1], Reply::Integer(7303));
        assert_eq!(leader[2], Reply::bulk(node_id_hex(3)));
    }
}
