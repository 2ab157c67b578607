//! The text of `INFO`

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use shale_runtime_std::node::NodeStatus;

use super::FrontConfig;

/// Which part of `INFO` was asked for
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Section {
    All,
    Server,
    Clients,
    Cluster,
    Replication,
    Keyspace,
    /// A section this server does not have: empty, as in Redis
    Unknown,
}

impl Section {
    pub(crate) fn parse(name: &[u8]) -> Section {
        match name.to_ascii_lowercase().as_slice() {
            b"all" | b"everything" | b"default" => Section::All,
            b"server" => Section::Server,
            b"clients" => Section::Clients,
            b"cluster" => Section::Cluster,
            b"replication" => Section::Replication,
            b"keyspace" => Section::Keyspace,
            _ => Section::Unknown,
        }
    }
}

/// `INFO` as Redis formats it: `# Section` headers and `field:value` lines, CRLF-terminated
pub(crate) fn render(config: &FrontConfig, status: &NodeStatus, section: Section) -> String {
    let mut out = String::new();
    let want = |s: Section| section == Section::All || section == s;
    if want(Section::Server) {
        let _ = write!(
            out,
            "# Server\r\nredis_version:7.0.0\r\nshale_version:{}\r\nredis_mode:cluster\r\n\
             node_id:{}\r\ntcp_port:{}\r\n\r\n",
            env!("CARGO_PKG_VERSION"),
            status.id,
            config.addr.port()
        );
    }
    if want(Section::Clients) {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\n\r\n",
            config.connected.load(Ordering::Relaxed)
        );
    }
    if want(Section::Cluster) {
        let num = status.config.as_ref().map_or(0, |c| c.num);
        let _ = write!(
            out,
            "# Cluster\r\ncluster_enabled:0\r\nshale_config_num:{num}\r\n"
        );
        if let Some(c) = &status.config {
            for (gid, replicas) in &c.groups {
                let shards = c.shards.iter().filter(|&&g| g == *gid).count();
                let _ = write!(
                    out,
                    "shale_group_{gid}:replicas={replicas:?},shards={shards}\r\n"
                );
            }
        }
        out.push_str("\r\n");
    }
    if want(Section::Replication) {
        out.push_str("# Replication\r\n");
        let leading = status.groups.iter().filter(|g| g.role == "leader").count();
        let _ = write!(out, "role:master\r\nleading_groups:{leading}\r\n");
        for g in &status.groups {
            let _ = write!(
                out,
                "group_{}:role={},term={},leader={},commit={},applied={},last_index={}\r\n",
                g.gid,
                g.role,
                g.term,
                g.leader.map_or("none".to_owned(), |l| l.to_string()),
                g.commit,
                g.applied,
                g.last_index
            );
        }
        out.push_str("\r\n");
    }
    if want(Section::Keyspace) {
        let keys: u64 = status.groups.iter().map(|g| g.keys).sum();
        let _ = write!(
            out,
            "# Keyspace\r\ndb0:keys={keys},expires=0,avg_ttl=0\r\n\r\n"
        );
    }
    out
}
