//! `shale ctl verify`: compares the replicas of every group, shard by shard
//!
//! Asks every node given (`SHALE DIGEST`) for the digests of its replicas, each at its own
//! applied index, until every replica of a group reports the same index (a group that takes
//! writes meanwhile may take several tries; stop the writes for a verdict at once). Then
//! compares, per group, the header digests and every shard's status, key count and digest,
//! and prints one line per group and one per difference. It fails when a node does not
//! answer, when the replicas of a group never reach one applied index, or on any difference.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::say;
use crate::bench::call::call_waiting;
use crate::bench::reply::Reply;

/// One replica's digests, as read from `SHALE DIGEST`
#[derive(Clone, Debug, PartialEq, Eq)]
struct Replica {
    node: u64,
    applied: u64,
    restoring: bool,
    header: String,
    /// shard → (status, keys, digest)
    shards: BTreeMap<u64, (String, u64, String)>,
}

fn int(r: &Reply) -> Result<u64, String> {
    match r {
        Reply::Integer(i) => u64::try_from(*i).map_err(|_| format!("negative number {i}")),
        other => Err(format!("expected a number, got {}", other.describe())),
    }
}

fn text(r: &Reply) -> Result<String, String> {
    match r {
        Reply::Bulk(b) => Ok(String::from_utf8_lossy(b).into_owned()),
        other => Err(format!("expected text, got {}", other.describe())),
    }
}

fn array(r: &Reply) -> Result<&[Reply], String> {
    match r {
        Reply::Array(items) => Ok(items),
        other => Err(format!("expected an array, got {}", other.describe())),
    }
}

/// Parses a `SHALE DIGEST` reply into (gid, replica) pairs
fn parse(reply: &Reply) -> Result<Vec<(u64, Replica)>, String> {
    let top = array(reply)?;
    let [node, groups] = top else {
        return Err("a digest reply has two elements".into());
    };
    let node = int(node)?;
    let mut out = Vec::new();
    for g in array(groups)? {
        let [gid, applied, restoring, header, shards] = array(g)? else {
            return Err("a group's digest has five elements".into());
        };
        let mut by_shard = BTreeMap::new();
        for s in array(shards)? {
            let [shard, status, keys, digest] = array(s)? else {
                return Err("a shard's digest has four elements".into());
            };
            by_shard.insert(int(shard)?, (text(status)?, int(keys)?, text(digest)?));
        }
        out.push((
            int(gid)?,
            Replica {
                node,
                applied: int(applied)?,
                restoring: int(restoring)? != 0,
                header: text(header)?,
                shards: by_shard,
            },
        ));
    }
    Ok(out)
}

/// How long a node may take to digest its replicas (it reads all of its data)
const DIGEST_TIMEOUT: Duration = Duration::from_secs(600);

/// Every node's replicas, by group; an error names a node that did not answer
fn collect(
    addrs: &[SocketAddr],
    password: Option<&str>,
) -> Result<BTreeMap<u64, Vec<Replica>>, String> {
    let mut groups: BTreeMap<u64, Vec<Replica>> = BTreeMap::new();
    for &addr in addrs {
        let reply = call_waiting(addr, password, &["SHALE", "DIGEST"], DIGEST_TIMEOUT)?;
        if let Reply::Error(e) = &reply {
            return Err(format!("{addr}: {}", String::from_utf8_lossy(e)));
        }
        for (gid, replica) in parse(&reply).map_err(|e| format!("{addr}: {e}"))? {
            groups.entry(gid).or_default().push(replica);
        }
    }
    Ok(groups)
}

/// Why a group's replicas cannot be compared yet, if they cannot
fn not_aligned(replicas: &[Replica]) -> Option<String> {
    let restoring: Vec<String> = replicas
        .iter()
        .filter(|r| r.restoring)
        .map(|r| format!("node {}", r.node))
        .collect();
    if !restoring.is_empty() {
        return Some(format!("restoring a snapshot: {}", restoring.join(", ")));
    }
    let first = replicas.first()?.applied;
    replicas.iter().any(|r| r.applied != first).then(|| {
        let at: Vec<String> = replicas
            .iter()
            .map(|r| format!("node {} at {}", r.node, r.applied))
            .collect();
        format!("applied indexes differ: {}", at.join(", "))
    })
}

/// The differences between a group's replicas (all at one applied index)
fn differences(replicas: &[Replica]) -> Vec<String> {
    let Some(base) = replicas.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in &replicas[1..] {
        let (a, b) = (base.node, r.node);
        if r.header != base.header {
            out.push(format!(
                "group state: node {a} {} vs node {b} {}",
                base.header, r.header
            ));
        }
        let shards: std::collections::BTreeSet<u64> =
            base.shards.keys().chain(r.shards.keys()).copied().collect();
        for shard in shards {
            match (base.shards.get(&shard), r.shards.get(&shard)) {
                (Some(x), Some(y)) if x == y => {}
                (Some((sx, kx, dx)), Some((sy, ky, dy))) => out.push(format!(
                    "shard {shard}: node {a} {sx} {kx} keys {dx} vs node {b} {sy} {ky} keys {dy}"
                )),
                (Some(_), None) => out.push(format!("shard {shard}: on node {a}, not on node {b}")),
                (None, Some(_)) => out.push(format!("shard {shard}: on node {b}, not on node {a}")),
                (None, None) => {}
            }
        }
    }
    out
}

/// Runs `shale ctl verify`: up to `attempts` tries, `pause` apart, for the replicas to align
pub fn run(
    addrs: &[SocketAddr],
    password: Option<&str>,
    attempts: u32,
    pause: Duration,
) -> Result<(), String> {
    let mut tries = 0;
    let groups = loop {
        tries += 1;
        let groups = match collect(addrs, password) {
            Ok(groups) => groups,
            // A node busy with another digest, or without a controller leader yet
            Err(e) if e.contains("TRYAGAIN") && tries < attempts.max(1) => {
                std::thread::sleep(pause);
                continue;
            }
            Err(e) => return Err(e),
        };
        let waiting: Vec<String> = groups
            .iter()
            .filter_map(|(gid, rs)| not_aligned(rs).map(|why| format!("g{gid}: {why}")))
            .collect();
        if waiting.is_empty() {
            break groups;
        }
        if tries >= attempts.max(1) {
            return Err(format!(
                "replicas did not reach one applied index after {tries} tries: {}",
                waiting.join("; ")
            ));
        }
        std::thread::sleep(pause);
    };
    let mut differing = 0;
    let mut alone = Vec::new();
    for (gid, replicas) in &groups {
        let name = if *gid == 0 {
            "controller".to_owned()
        } else {
            format!("g{gid}")
        };
        let nodes: Vec<String> = replicas.iter().map(|r| r.node.to_string()).collect();
        let applied = replicas.first().map_or(0, |r| r.applied);
        let diffs = differences(replicas);
        let keys: u64 = replicas
            .first()
            .map_or(0, |r| r.shards.values().map(|(_, k, _)| k).sum());
        let verdict = if diffs.is_empty() {
            "identical"
        } else {
            "DIFFER"
        };
        say!(
            "{name}: {verdict} at index {applied} on nodes {} ({} shards, {keys} keys)",
            nodes.join(","),
            replicas.first().map_or(0, |r| r.shards.len())
        );
        for d in &diffs {
            say!("  {d}");
        }
        differing += usize::from(!diffs.is_empty());
        if replicas.len() < 2 {
            alone.push(name);
        }
    }
    if differing > 0 {
        Err(format!("the replicas of {differing} group(s) differ"))
    } else if !alone.is_empty() {
        Err(format!(
            "only one node answered for {}: nothing to compare (give every node with --addr)",
            alone.join(", ")
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(node: u64, applied: u64, digest: &str) -> Replica {
        Replica {
            node,
            applied,
            restoring: false,
            header: "h".into(),
            shards: [(3, ("Serving".into(), 10, digest.into()))].into(),
        }
    }

    #[test]
    fn a_shard_digest_that_differs_is_reported_and_equal_ones_are_not() {
        let same = [replica(1, 9, "aa"), replica(2, 9, "aa")];
        assert!(differences(&same).is_empty());
        let other = [replica(1, 9, "aa"), replica(2, 9, "ab")];
        let d = differences(&other);
        assert_eq!(d.len(), 1);
        assert!(d[0].contains("shard 3") && d[0].contains("node 2"), "{d:?}");
    }

    #[test]
    fn replicas_at_different_indexes_are_not_compared() {
        assert!(not_aligned(&[replica(1, 9, "aa"), replica(2, 9, "aa")]).is_none());
        let why = not_aligned(&[replica(1, 9, "aa"), replica(2, 8, "aa")]).unwrap();
        assert!(why.contains("node 2 at 8"), "{why}");
    }

    #[test]
    fn the_reply_of_shale_digest_parses() {
        let int = |i: i64| Reply::Integer(i);
        let bulk = |s: &str| Reply::Bulk(s.as_bytes().to_vec());
        let reply = Reply::Array(vec![
            int(2),
            Reply::Array(vec![Reply::Array(vec![
                int(1),
                int(40),
                int(0),
                bulk("00ff"),
                Reply::Array(vec![Reply::Array(vec![
                    int(3),
                    bulk("Serving"),
                    int(10),
                    bulk("aa"),
                ])]),
            ])]),
        ]);
        let parsed = parse(&reply).unwrap();
        assert_eq!(
            parsed,
            vec![(1, {
                let mut r = replica(2, 40, "aa");
                r.header = "00ff".into();
                r
            })]
        );
        assert!(parse(&int(1)).is_err());
    }
}
