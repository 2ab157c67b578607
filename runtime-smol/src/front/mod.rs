//! The Redis-protocol front door: one task per client connection
//!
//! Each connection reads whatever the socket gives into a [`RespParser`], runs every complete
//! command in order through its own exactly-once session on the node ([`NodeClient`]), and
//! writes the replies of a whole pipelined batch at once. Any node accepts any key: the
//! node's clerk routes each operation to the leader of the group that owns the key's shard.
//! See [`commands`] for what each command does, and what is and is not atomic.
//!
//! # Two kinds of connection
//!
//! A node can listen on two client ports. On the **plain** port (`--listen`) every key is
//! served, wherever its group's leader is: the node forwards the operation, so `redis-cli`
//! and any Redis client work against any node. On the **cluster** port (`--cluster-listen`)
//! a connection is *cluster-aware*: an operation on a key whose group this node knows is led
//! by another node is answered `-MOVED slot host:port` with that node's cluster address, as
//! Redis Cluster does, so the client sends it there and, from then on, every key of the slot.
//! `CLUSTER SLOTS`, `NODES` and `SHARDS` advertise the cluster ports, so a cluster client
//! given any node's plain address learns the cluster ports and talks only to them; a plain
//! connection that asks for the slot map, or sends `READONLY`, `READWRITE` or `ASKING`, is
//! treated as cluster-aware from then on. `READONLY` lets a cluster-aware connection read
//! on the node it reached (the read is still linearizable: the node forwards it to the
//! leader, which is documented as "possibly stale" only so that a future local read may
//! take its place); `READWRITE` ends that. See [`topology`].

mod admin;
pub mod cluster;
mod collections;
mod command;
pub mod commands;
pub mod digest;
mod info;
pub mod keyspace;
mod multi;
mod plan;
mod strings;
pub mod topology;

pub use admin::render_status;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_executor::Executor;
use async_io::Async;
use futures_lite::{AsyncReadExt, AsyncWriteExt};

use crate::metrics::{Metrics, RequestMetrics};
use crate::node::NodeClient;
use crate::resp::{Protocol, RespLimits, RespParser, encode};
use topology::TopologyCache;

/// Bytes read from a socket at a time
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Pending connections the listener's kernel queue holds
pub const LISTEN_BACKLOG: i32 = 4096;

/// What every connection of a front door shares
#[derive(Debug)]
pub struct FrontConfig {
    /// This node's id (for INFO and HELLO)
    pub node_id: u64,
    /// The cluster's number of shards (to group multi-key commands by shard)
    pub shard_count: u32,
    /// The password clients must give with AUTH first, if any
    pub requirepass: Option<String>,
    /// Parser limits
    pub limits: RespLimits,
    /// The address this front door listens on (for INFO)
    pub addr: SocketAddr,
    /// Client connection ids, counted from 1
    pub(crate) next_client_id: AtomicU64,
    /// Connections open now
    pub(crate) connected: AtomicU64,
    /// Request counts and latencies
    pub metrics: Arc<Metrics>,
    /// Every node's cluster-aware client address (`--clients`), this one's included; empty:
    /// not known, and this node presents itself alone as the master of every slot
    pub cluster_clients: BTreeMap<u64, SocketAddr>,
    /// Where each slot range is served, refreshed in the background
    pub topology: Arc<TopologyCache>,
    /// The `SCAN` cursors handed out
    pub(crate) scans: std::sync::Mutex<keyspace::ScanCursors>,
}

impl FrontConfig {
    /// A front door for node `node_id` at `addr`
    pub fn new(
        node_id: u64,
        shard_count: u32,
        addr: SocketAddr,
        requirepass: Option<String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        FrontConfig {
            node_id,
            shard_count,
            requirepass,
            limits: RespLimits::default(),
            addr,
            next_client_id: AtomicU64::new(1),
            connected: AtomicU64::new(0),
            metrics,
            cluster_clients: BTreeMap::new(),
            topology: Arc::new(TopologyCache::default()),
            scans: std::sync::Mutex::new(keyspace::ScanCursors::default()),
        }
    }
}

/// Binds `addr` with a real listen backlog ([`LISTEN_BACKLOG`]) and `SO_REUSEADDR`
pub fn bind(addr: SocketAddr) -> std::io::Result<Async<std::net::TcpListener>> {
    Async::new(bind_std(addr)?)
}

/// [`bind`] as a blocking listener (to bind before the executor runs, and keep)
pub fn bind_std(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(std::net::TcpListener::from(socket))
}

/// Accepts connections forever, each served by its own task on `ex`; `cluster_aware`: the
/// listener is the cluster port (see the module docs)
pub async fn serve(
    ex: Arc<Executor<'static>>,
    listener: Async<std::net::TcpListener>,
    node: NodeClient,
    config: Arc<FrontConfig>,
    cluster_aware: bool,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors or similar: back off instead of spinning.
            async_io::Timer::after(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.get_ref().set_nodelay(true);
        let (node, config) = (node.clone(), config.clone());
        ex.spawn(async move {
            let _guard = config.metrics.open_connection();
            config.connected.fetch_add(1, Ordering::Relaxed);
            let result = connection(stream, node, &config, cluster_aware).await;
            config.connected.fetch_sub(1, Ordering::Relaxed);
            if let Err(e) = result {
                tracing::debug!("client connection ended: {e}");
            }
        })
        .detach();
    }
}

/// One client's state on its connection
pub(crate) struct Conn {
    pub(crate) id: u64,
    pub(crate) protocol: Protocol,
    pub(crate) authenticated: bool,
    pub(crate) name: Option<Vec<u8>>,
    pub(crate) session: Option<u64>,
    pub(crate) quit: bool,
    /// The address the client reached this node on (what `CLUSTER SLOTS` advertises when
    /// the nodes' cluster addresses are not known)
    pub(crate) local: Option<std::net::SocketAddr>,
    /// Keys led elsewhere are answered `-MOVED` (see the module docs)
    pub(crate) cluster_aware: bool,
    /// `READONLY`: reads are served here, not redirected
    pub(crate) readonly: bool,
    /// The transaction being queued after `MULTI`
    pub(crate) multi: Option<multi::Transaction>,
    /// Keys `WATCH`ed, with the fingerprints of their values then
    pub(crate) watched: Vec<(Vec<u8>, Option<u64>)>,
}

async fn connection(
    mut stream: Async<std::net::TcpStream>,
    node: NodeClient,
    config: &FrontConfig,
    cluster_aware: bool,
) -> std::io::Result<()> {
    let mut conn = Conn {
        id: config.next_client_id.fetch_add(1, Ordering::Relaxed),
        protocol: Protocol::Resp2,
        authenticated: config.requirepass.is_none(),
        name: None,
        session: None,
        quit: false,
        local: stream.get_ref().local_addr().ok(),
        cluster_aware,
        readonly: false,
        multi: None,
        watched: Vec::new(),
    };
    let mut parser = RespParser::new(config.limits);
    // Each command's metrics, looked up once per connection (the registry takes a lock).
    let mut metrics: Vec<(&'static str, Arc<RequestMetrics>)> = Vec::new();
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    let mut out = Vec::new();
    // Whether the last read most likely took everything the client had sent (it did not fill
    // the buffer), so that the client now waits for our replies and reading at once would only
    // find nothing, a wasted system call: then wait for the socket to be readable first.
    let mut drained = false;
    let result = loop {
        if drained
            && parser.buffered_bytes() == 0
            && let Err(e) = stream.readable().await
        {
            break Err(e);
        }
        let n = match stream.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        parser.handle_bytes(&buf[..n]);
        let mut close = false;
        loop {
            match parser.poll_command() {
                Ok(Some(args)) => {
                    let started = std::time::Instant::now();
                    let command = commands::metric_name(&args);
                    let reply = commands::execute(&node, config, &mut conn, args).await;
                    let ok = !matches!(reply, crate::resp::Reply::Error(_));
                    let recorder = match metrics.iter().find(|(name, _)| *name == command) {
                        Some((_, m)) => m.clone(),
                        None => {
                            let m = config.metrics.request(command);
                            metrics.push((command, m.clone()));
                            m
                        }
                    };
                    recorder.record(started.elapsed(), ok);
                    encode(&reply, conn.protocol, &mut out);
                    if conn.quit {
                        close = true;
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    encode(&e.to_reply(), conn.protocol, &mut out);
                    close = e.closes_connection();
                    break;
                }
            }
        }
        if !out.is_empty() {
            if let Err(e) = stream.write_all(&out).await {
                break Err(e);
            }
            out.clear();
        }
        drained = n < buf.len();
        if close {
            break Ok(());
        }
    };
    if let Some(session) = conn.session {
        node.close_session(session);
    }
    result
}
