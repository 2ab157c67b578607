//! One node of a replicated key-value cluster on the blocking-thread runtime, for tests and
//! demonstrations: every node hosts the shard controller and the replica groups, and serves
//! the postcard front door (`shale_runtime_std::node::FrontClient`) on its client address.
//!
//! ```text
//! shale-std-node --id 1 --data DIR --peer-addr 127.0.0.1:7001 --client-addr 127.0.0.1:7101 \
//!     --peers 1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003 [--groups 1] [--shards 8]
//! ```
//!
//! It prints `ready <peer addr> <client addr>` once it serves, and stops when its standard
//! input closes. Every error ends the process with one line on standard error and status 2.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;

use shale_runtime_std::node::{CONTROLLER_GROUP, GroupSpec, Node, NodeConfig, serve_clients};

struct Args {
    id: u64,
    data: PathBuf,
    peer_addr: SocketAddr,
    client_addr: SocketAddr,
    peers: BTreeMap<u64, SocketAddr>,
    groups: u64,
    shards: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut flags: BTreeMap<String, String> = BTreeMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let Some(name) = flag.strip_prefix("--") else {
            return Err(format!("unexpected argument {flag:?}"));
        };
        let value = it.next().ok_or(format!("--{name} needs a value"))?;
        flags.insert(name.to_owned(), value);
    }
    let mut take = |name: &str| flags.remove(name).ok_or(format!("--{name} is required"));
    let number = |name: &str, v: String| {
        v.parse::<u64>()
            .map_err(|_| format!("--{name}: {v:?} is not a number"))
    };
    let addr = |name: &str, v: String| {
        v.parse::<SocketAddr>()
            .map_err(|_| format!("--{name}: {v:?} is not an address like 127.0.0.1:7001"))
    };
    let id = number("id", take("id")?)?;
    let data = PathBuf::from(take("data")?);
    let peer_addr = addr("peer-addr", take("peer-addr")?)?;
    let client_addr = addr("client-addr", take("client-addr")?)?;
    let mut peers = BTreeMap::new();
    for item in take("peers")?.split(',') {
        let (pid, paddr) = item
            .split_once('=')
            .ok_or(format!("--peers: {item:?} is not id=address"))?;
        peers.insert(
            number("peers", pid.to_owned())?,
            addr("peers", paddr.to_owned())?,
        );
    }
    let groups = take("groups").map_or(Ok(1), |v| number("groups", v))?;
    let shards = take("shards").map_or(Ok(8), |v| number("shards", v))?;
    if let Some(unknown) = flags.keys().next() {
        return Err(format!("unknown flag --{unknown}"));
    }
    let shards = u32::try_from(shards).map_err(|_| "--shards is too large".to_owned())?;
    Ok(Args {
        id,
        data,
        peer_addr,
        client_addr,
        peers,
        groups,
        shards,
    })
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let voters: Vec<u64> = args.peers.keys().copied().collect();
    if !voters.contains(&args.id) {
        return Err(format!("--peers must list this node ({})", args.id));
    }
    let mut config = NodeConfig::new(args.id, args.data, args.peer_addr);
    config.peers = args.peers;
    config.shard_count = args.shards;
    config.controller_voters = voters.clone();
    config.groups = vec![GroupSpec {
        gid: CONTROLLER_GROUP,
        voters: voters.clone(),
    }];
    for gid in 1..=args.groups {
        config.groups.push(GroupSpec {
            gid,
            voters: voters.clone(),
        });
        config.bootstrap_groups.push((gid, voters.clone()));
    }
    let listener = TcpListener::bind(args.client_addr)
        .map_err(|e| format!("cannot listen for clients on {}: {e}", args.client_addr))?;
    let client_addr = listener.local_addr().map_err(|e| e.to_string())?;
    let mut node = Node::start(config).map_err(|e| e.to_string())?;
    let handle = node.handle();
    std::thread::spawn(move || serve_clients(listener, handle));
    println!("ready {} {client_addr}", node.peer_addr());
    // Stop when standard input closes, or when the node stops by itself.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = tx.send(());
    });
    loop {
        if rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_ok()
        {
            return node.stop().map_err(|e| e.to_string());
        }
        if node.handle().status().is_err() {
            return node.join().map_err(|e| e.to_string());
        }
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("shale-std-node: {e}");
        std::process::exit(2);
    }
}
