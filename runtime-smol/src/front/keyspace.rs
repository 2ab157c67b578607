//! Commands over the whole keyspace: `SCAN` (`MATCH`, `COUNT`, `TYPE`), `KEYS`, `RANDOMKEY`,
//! `FLUSHALL`, `FLUSHDB`, and `CLUSTER COUNTKEYSINSLOT` / `GETKEYSINSLOT`
//!
//! Each runs shard by shard as [`KvOp::Scan`] (or [`KvOp::Flush`]) operations, each bounded
//! ([`SCAN_COUNT_MAX`] keys looked at), routed by a key of the shard ([`route_key`]). A scan
//! is a linearizable read of its piece of one shard; the command as a whole is not a
//! snapshot, as in Redis: a key present for the whole scan is returned, one added or removed
//! meanwhile may or may not be.
//!
//! `SCAN` cursors are numbers this node hands out: each stands for a shard and the last key
//! looked at in it, kept in a table of [`SCAN_CURSORS_MAX`] entries (the oldest forgotten
//! first). A cursor this node does not know (forgotten, or from another node) starts over
//! at the first shard, so a scan may then return keys twice, which `SCAN` allows.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};

use shale_core::shard::{KvOp, KvResult, SCAN_COUNT_MAX, key_shard, slot_shard};

use super::commands::{not_integer, run, syntax_error, wrong_args};
use super::{Conn, FrontConfig};
use crate::node::NodeClient;
use crate::resp::Reply;

/// `SCAN` cursors a node remembers, at most
pub const SCAN_CURSORS_MAX: usize = 65_536;

/// Keys `SCAN` looks at per call unless told otherwise (Redis's default)
const SCAN_COUNT_DEFAULT: u32 = 10;

/// The cursors of the scans under way: id -> (shard, last key looked at)
#[derive(Debug, Default)]
pub struct ScanCursors {
    next_id: u64,
    open: BTreeMap<u64, (u32, Option<Vec<u8>>)>,
    order: VecDeque<u64>,
}

impl ScanCursors {
    fn open(&mut self, shard: u32, after: Option<Vec<u8>>) -> u64 {
        self.next_id = self.next_id.max(1) + 1;
        let id = self.next_id;
        self.open.insert(id, (shard, after));
        self.order.push_back(id);
        while self.order.len() > SCAN_CURSORS_MAX {
            if let Some(old) = self.order.pop_front() {
                self.open.remove(&old);
            }
        }
        id
    }

    fn take(&mut self, id: u64) -> Option<(u32, Option<Vec<u8>>)> {
        self.open.remove(&id)
    }
}

/// One routing key per shard, by shard
type RouteKeys = Vec<Vec<u8>>;

/// A key of shard `shard` of `shard_count` (`{n}` for the smallest such `n`), to route an
/// operation on the whole shard to its group
pub fn route_key(shard: u32, shard_count: u32) -> Vec<u8> {
    static ROUTES: OnceLock<Mutex<BTreeMap<u32, Arc<RouteKeys>>>> = OnceLock::new();
    let table = {
        let mut all = ROUTES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.entry(shard_count)
            .or_insert_with(|| {
                let mut keys: Vec<Option<Vec<u8>>> = vec![None; shard_count as usize];
                let mut missing = shard_count as usize;
                let mut n: u64 = 0;
                while missing > 0 {
                    let key = format!("{{{n}}}").into_bytes();
                    let s = key_shard(&key, shard_count) as usize;
                    if keys[s].is_none() {
                        keys[s] = Some(key);
                        missing -= 1;
                    }
                    n += 1;
                }
                Arc::new(keys.into_iter().map(Option::unwrap_or_default).collect())
            })
            .clone()
    };
    table.get(shard as usize).cloned().unwrap_or_default()
}

/// One scan operation's outcome: the next key to go on from and the keys found
async fn scan_once(
    node: &NodeClient,
    conn: &mut Conn,
    shard_count: u32,
    shard: u32,
    after: Option<Vec<u8>>,
    count: u32,
    filters: &Filters,
) -> Result<(Option<Vec<u8>>, Vec<Vec<u8>>), Reply> {
    let op = KvOp::Scan {
        route: route_key(shard, shard_count),
        after,
        count,
        pattern: filters.pattern.clone(),
        kind: filters.kind.clone(),
        slot: filters.slot,
    };
    match run(node, conn, op).await? {
        KvResult::Scanned { next, keys } => Ok((next, keys)),
        other => Err(Reply::error(format!(
            "ERR internal: unexpected result {other:?}"
        ))),
    }
}

#[derive(Debug, Default)]
struct Filters {
    pattern: Option<Vec<u8>>,
    kind: Option<Vec<u8>>,
    slot: Option<u16>,
}

fn bulks(keys: Vec<Vec<u8>>) -> Reply {
    Reply::Array(Some(
        keys.into_iter().map(|k| Reply::Bulk(Some(k))).collect(),
    ))
}

/// Runs one of this module's commands, `None` if `name` is not one of them
pub(crate) async fn execute(
    node: &NodeClient,
    config: &FrontConfig,
    conn: &mut Conn,
    name: &str,
    args: &[Vec<u8>],
) -> Option<Reply> {
    let n = config.shard_count;
    let argc = args.len();
    Some(match name {
        "SCAN" if argc >= 2 => {
            let Some(cursor) = std::str::from_utf8(&args[1])
                .ok()
                .and_then(|c| c.parse::<u64>().ok())
            else {
                return Some(Reply::error("ERR invalid cursor"));
            };
            let mut filters = Filters::default();
            let mut count = SCAN_COUNT_DEFAULT;
            for pair in args[2..].chunks(2) {
                let Some(value) = pair.get(1) else {
                    return Some(syntax_error());
                };
                match pair[0].to_ascii_uppercase().as_slice() {
                    b"MATCH" => filters.pattern = Some(value.clone()),
                    b"TYPE" => filters.kind = Some(value.to_ascii_lowercase()),
                    b"COUNT" => match std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse::<i64>().ok())
                    {
                        Some(c) if c >= 1 => {
                            count = u32::try_from(c.min(i64::from(SCAN_COUNT_MAX)))
                                .unwrap_or(SCAN_COUNT_MAX)
                        }
                        Some(_) => return Some(syntax_error()),
                        None => return Some(not_integer()),
                    },
                    _ => return Some(syntax_error()),
                }
            }
            let (shard, after) = if cursor == 0 {
                (0, None)
            } else {
                let known = config
                    .scans
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take(cursor);
                known.unwrap_or((0, None))
            };
            match scan_once(node, conn, n, shard, after, count, &filters).await {
                Err(reply) => reply,
                Ok((next, keys)) => {
                    let resume = match next {
                        Some(k) => Some((shard, Some(k))),
                        None if shard + 1 < n => Some((shard + 1, None)),
                        None => None,
                    };
                    let id = resume.map_or(0, |(s, a)| {
                        config
                            .scans
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .open(s, a)
                    });
                    Reply::Array(Some(vec![Reply::bulk(id.to_string()), bulks(keys)]))
                }
            }
        }
        "KEYS" if argc == 2 => {
            let filters = Filters {
                pattern: Some(args[1].clone()),
                ..Filters::default()
            };
            let mut found = Vec::new();
            for shard in 0..n {
                let mut after = None;
                loop {
                    match scan_once(node, conn, n, shard, after, SCAN_COUNT_MAX, &filters).await {
                        Err(reply) => return Some(reply),
                        Ok((next, keys)) => {
                            found.extend(keys);
                            match next {
                                Some(k) => after = Some(k),
                                None => break,
                            }
                        }
                    }
                }
            }
            bulks(found)
        }
        "RANDOMKEY" if argc == 1 => {
            let seed = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(7, |d| d.as_nanos() as u64);
            let mut rng = shale_core::rng::Rng::new(seed);
            let first = rng.below(u64::from(n)) as u32;
            for i in 0..n {
                let shard = (first + i) % n;
                let probe = rng.next_u64().to_be_bytes().to_vec();
                for after in [Some(probe), None] {
                    match scan_once(node, conn, n, shard, after, 16, &Filters::default()).await {
                        Err(reply) => return Some(reply),
                        Ok((_, keys)) if !keys.is_empty() => {
                            return Some(Reply::Bulk(keys.into_iter().next()));
                        }
                        Ok(_) => {}
                    }
                }
            }
            Reply::Bulk(None)
        }
        "FLUSHALL" | "FLUSHDB" if argc <= 2 => {
            if let Some(mode) = args.get(1)
                && !matches!(mode.to_ascii_uppercase().as_slice(), b"ASYNC" | b"SYNC")
            {
                return Some(syntax_error());
            }
            for shard in 0..n {
                let op = KvOp::Flush {
                    route: route_key(shard, n),
                };
                if let Err(reply) = run(node, conn, op).await {
                    return Some(reply);
                }
            }
            Reply::ok()
        }
        "CLUSTER" if argc >= 3 => {
            let sub = args[1].to_ascii_uppercase();
            let want = match (sub.as_slice(), argc) {
                (b"COUNTKEYSINSLOT", 3) => None,
                (b"GETKEYSINSLOT", 4) => match std::str::from_utf8(&args[3])
                    .ok()
                    .and_then(|c| c.parse::<usize>().ok())
                {
                    Some(c) => Some(c),
                    None => return Some(Reply::error("ERR Invalid number of keys")),
                },
                _ => return None,
            };
            let Some(slot) = std::str::from_utf8(&args[2])
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
                .filter(|&s| s < shale_core::shard::SLOT_COUNT)
            else {
                return Some(Reply::error("ERR Invalid slot"));
            };
            keys_in_slot(node, config, conn, slot, want).await
        }
        "SCAN" | "KEYS" | "RANDOMKEY" | "FLUSHALL" | "FLUSHDB" => wrong_args(name),
        _ => return None,
    })
}

/// `CLUSTER COUNTKEYSINSLOT slot` (`limit`: `None`) or `CLUSTER GETKEYSINSLOT slot count`
async fn keys_in_slot(
    node: &NodeClient,
    config: &FrontConfig,
    conn: &mut Conn,
    slot: u16,
    limit: Option<usize>,
) -> Reply {
    let n = config.shard_count;
    let shard = slot_shard(slot, n);
    let filters = Filters {
        slot: Some(slot),
        ..Filters::default()
    };
    let (mut found, mut counted) = (Vec::new(), 0i64);
    let mut after = None;
    loop {
        if limit.is_some_and(|l| found.len() >= l) {
            break;
        }
        match scan_once(node, conn, n, shard, after, SCAN_COUNT_MAX, &filters).await {
            Err(reply) => return reply,
            Ok((next, keys)) => {
                counted += keys.len() as i64;
                if limit.is_some() {
                    found.extend(keys);
                }
                match next {
                    Some(k) => after = Some(k),
                    None => break,
                }
            }
        }
    }
    match limit {
        None => Reply::Integer(counted),
        Some(l) => {
            found.truncate(l);
            bulks(found)
        }
    }
}
