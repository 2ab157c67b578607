//! The smol runtime's peer transport ([`SmolTransport`]) on loopback: delivery of Raft messages
//! and application bytes both ways, many messages in order, the cluster secret, bad input from
//! a peer that passed the handshake, reconnecting to a restarted peer on the same port, a peer
//! that is down, the inbound connection limit, the sends that are refused or dropped, and the
//! counters kept per peer for each of them. Every wait is bounded, so a broken transport fails
//! a test instead of hanging it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use async_channel::Receiver;
use async_io::Timer;
use futures_lite::future;
use shale_core::raft::{Message, NodeId, Outgoing};
use shale_runtime_smol::runtime::Runtime;
use shale_runtime_smol::transport::SmolTransport;
use shale_runtime_std::node::Input;
use shale_runtime_std::transport::{
    APP_GROUP, Delivery, Envelope, PeerCounters, PeerLinks, PeerStats, TransportConfig,
    TransportCounters, connect, encode_app, encode_envelope,
};

const CLUSTER: u64 = 42;
/// Longest wait for something that should happen
const WAIT: Duration = Duration::from_secs(3);
/// How long to watch for something that should not happen
const QUIET: Duration = Duration::from_millis(100);

fn config(node_id: NodeId) -> TransportConfig {
    TransportConfig {
        backoff_min: Duration::from_millis(5),
        backoff_max: Duration::from_millis(40),
        handshake_timeout: Duration::from_secs(2),
        ..TransportConfig::new(CLUSTER, node_id)
    }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A transport and the inbox its readers deliver to
struct Node {
    t: SmolTransport,
    inbox: Receiver<Input>,
}

impl Node {
    fn addr(&self) -> SocketAddr {
        self.t.local_addr()
    }

    fn shutdown(self) {
        Box::new(self.t).shutdown();
    }
}

fn listen_at(rt: &Runtime, addr: SocketAddr, config: TransportConfig) -> std::io::Result<Node> {
    let (tx, inbox) = async_channel::unbounded();
    let t = SmolTransport::listen(rt.executor(), addr, config, tx)?;
    Ok(Node { t, inbox })
}

fn listen(rt: &Runtime, config: TransportConfig) -> Node {
    listen_at(rt, any_port(), config).unwrap()
}

fn msg(from: NodeId, to: NodeId, n: u64) -> Outgoing {
    Outgoing {
        from,
        to,
        message: Message::HeartbeatResponse { term: n, round: n },
    }
}

fn raft(group: u64, message: Outgoing) -> Delivery {
    Delivery::Raft(Envelope { group, message })
}

fn app(from: NodeId, bytes: &[u8]) -> Delivery {
    Delivery::App {
        from,
        bytes: bytes.to_vec(),
    }
}

/// The term of a delivered heartbeat response
fn term_of(d: &Delivery) -> u64 {
    match d {
        Delivery::Raft(Envelope {
            message:
                Outgoing {
                    message: Message::HeartbeatResponse { term, .. },
                    ..
                },
            ..
        }) => *term,
        other => panic!("unexpected delivery {other:?}"),
    }
}

/// The next delivery in `inbox`, or `None` after `wait`
fn recv_within(rt: &Runtime, inbox: &Receiver<Input>, wait: Duration) -> Option<Delivery> {
    let input = rt.block_on(future::or(async { inbox.recv().await.ok() }, async {
        Timer::after(wait).await;
        None
    }))?;
    match input {
        Input::Peer(delivery) => Some(delivery),
        _ => panic!("the transport put something other than a peer frame in the inbox"),
    }
}

/// The next delivery in `inbox`; fails the test after [`WAIT`]
fn recv(rt: &Runtime, inbox: &Receiver<Input>) -> Delivery {
    recv_within(rt, inbox, WAIT).expect("no delivery within the wait")
}

/// Receives `n` deliveries; fails the test if they do not all arrive within [`WAIT`]
fn recv_n(rt: &Runtime, inbox: &Receiver<Input>, n: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match recv_within(rt, inbox, left) {
            Some(d) => got.push(d),
            None => panic!("received {} of {n} deliveries", got.len()),
        }
    }
    got
}

/// What `node`'s transport counted for node `peer` (all zero if it never heard of it)
fn peer_stats(node: &Node, peer: NodeId) -> PeerStats {
    node.t.peer_stats().get(&peer).copied().unwrap_or_default()
}

/// Polls `cond` until it holds or [`WAIT`] passes; returns whether it held
fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// Connects to node `to` at `addr` as node `from` with runtime-std's handshake: a blocking
/// stream on which frames may follow
fn raw_peer(config: &TransportConfig, to: NodeId, addr: SocketAddr) -> TcpStream {
    let stream = connect::connect(
        config,
        &TransportCounters::default(),
        &PeerCounters::default(),
        to,
        addr,
    )
    .unwrap_or_else(|e| panic!("handshake failed: {e}"));
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

/// Writes one frame (4-byte little-endian length, then `body`)
fn write_frame(mut stream: &TcpStream, body: &[u8]) {
    let mut frame = (body.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(body);
    stream.write_all(&frame).unwrap();
}

/// Asserts the other side closes `stream` within [`WAIT`] (it sends nothing after the
/// handshake)
fn assert_closed(mut stream: &TcpStream) {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("the transport sent {n} bytes on a peer connection"),
        Err(e) => assert!(
            e.kind() == std::io::ErrorKind::ConnectionReset,
            "connection not closed: {e}"
        ),
    }
}

#[test]
fn two_transports_exchange_raft_messages_and_app_bytes_both_ways() {
    let rt = Runtime::start(2).unwrap();
    let mut a = listen(&rt, config(1));
    let mut b = listen(&rt, config(2));
    assert!(a.t.add_peer(2, b.addr()));
    assert!(b.t.add_peer(1, a.addr()));
    assert!(!a.t.add_peer(2, b.addr()), "node 2 is already a peer");

    assert!(a.t.send(2, 7, msg(1, 2, 11)));
    assert!(a.t.send_app(2, b"hello from 1".to_vec()));
    assert!(a.t.send(2, APP_GROUP - 1, msg(1, 2, 12)));
    assert!(b.t.send_app(1, b"hello from 2".to_vec()));
    assert!(b.t.send(1, 0, msg(2, 1, 21)));
    assert!(b.t.send_app(1, Vec::new()));

    assert_eq!(
        recv_n(&rt, &b.inbox, 3),
        [
            raft(7, msg(1, 2, 11)),
            app(1, b"hello from 1"),
            raft(APP_GROUP - 1, msg(1, 2, 12)),
        ]
    );
    assert_eq!(
        recv_n(&rt, &a.inbox, 3),
        [app(2, b"hello from 2"), raft(0, msg(2, 1, 21)), app(2, b"")]
    );
    assert!(recv_within(&rt, &a.inbox, QUIET).is_none());
    assert!(recv_within(&rt, &b.inbox, QUIET).is_none());

    for node in [&a, &b] {
        // The writer counts after encoding; the reader before delivering: wait, do not race.
        assert!(
            wait_until(|| node.t.stats().sent == 3),
            "{:?}",
            node.t.stats()
        );
        let stats = node.t.stats();
        assert_eq!(stats.received, 3, "{stats:?}");
        assert_eq!(stats.connects, 1, "{stats:?}");
        assert_eq!(stats.accepted, 1, "{stats:?}");
        assert_eq!(stats.connect_failures, 0, "{stats:?}");
        assert_eq!(stats.dropped_full + stats.dropped_unknown_peer, 0);
        assert_eq!(
            stats.bad_frames + stats.oversize_frames + stats.io_errors,
            0
        );
    }
    // Per peer: each node's only peer accounts for all of it.
    for (node, peer) in [(&a, 2), (&b, 1)] {
        assert_eq!(node.t.peer_stats().len(), 1);
        let stats = peer_stats(node, peer);
        let expected = PeerStats {
            sent: 3,
            received: 3,
            connects: 1,
            ..PeerStats::default()
        };
        assert_eq!(stats, expected);
    }
    a.shutdown();
    b.shutdown();
}

#[test]
fn many_messages_arrive_complete_and_in_order() {
    const N: u64 = 2_000;
    let rt = Runtime::start(2).unwrap();
    let mut a = listen(
        &rt,
        TransportConfig {
            outbound_queue_capacity: 4 * N as usize,
            ..config(1)
        },
    );
    let b = listen(&rt, config(2));
    a.t.add_peer(2, b.addr());
    // Raft messages of two groups, and every tenth an app frame of up to ~5 KB, so frames
    // straddle the reader's buffer and the writer's batches.
    let app_bytes = |i: u64| -> Vec<u8> { (0..(i * 37) % 5_000).map(|j| (i + j) as u8).collect() };
    let mut expected = Vec::new();
    for i in 0..N {
        if i % 10 == 0 {
            assert!(a.t.send_app(2, app_bytes(i)));
            expected.push(app(1, &app_bytes(i)));
        } else {
            assert!(a.t.send(2, i % 2, msg(1, 2, i)), "send {i} dropped");
            expected.push(raft(i % 2, msg(1, 2, i)));
        }
    }
    let got = recv_n(&rt, &b.inbox, N as usize);
    if let Some(i) = (0..got.len()).find(|&i| got[i] != expected[i]) {
        panic!("delivery {i} is {:?}, expected {:?}", got[i], expected[i]);
    }
    assert!(
        recv_within(&rt, &b.inbox, QUIET).is_none(),
        "more than sent"
    );
    assert!(wait_until(|| a.t.stats().sent == N), "{:?}", a.t.stats());
    assert_eq!(b.t.stats().received, N);
    assert_eq!(a.t.stats().connects, 1);
    assert_eq!(a.t.stats().dropped_full, 0);
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_peer_with_another_cluster_secret_is_refused() {
    let rt = Runtime::start(2).unwrap();
    let with_secret = |id, secret: &[u8]| TransportConfig {
        secret: secret.to_vec(),
        ..config(id)
    };
    let b = listen(&rt, with_secret(2, b"s3cret"));
    let mut friend = listen(&rt, with_secret(1, b"s3cret"));
    let mut stranger = listen(&rt, with_secret(3, b"guess"));
    friend.t.add_peer(2, b.addr());
    stranger.t.add_peer(2, b.addr());
    assert!(stranger.t.send(2, 1, msg(3, 2, 666)));
    assert!(stranger.t.send_app(2, b"let me in".to_vec()));

    assert!(
        wait_until(|| b.t.stats().refused_handshakes >= 1),
        "{:?}",
        b.t.stats()
    );
    assert!(
        wait_until(|| {
            let s = stranger.t.stats();
            s.refused_by_peer >= 1 && s.connect_failures >= 1
        }),
        "{:?}",
        stranger.t.stats()
    );
    let s = stranger.t.stats();
    assert_eq!((s.connects, s.sent), (0, 0), "{s:?}");
    let s = peer_stats(&stranger, 2);
    assert!(s.refused_by_peer >= 1 && s.connect_failures >= 1, "{s:?}");
    assert_eq!((s.connects, s.sent), (0, 0), "{s:?}");

    // The friend, with the right secret, gets through; nothing of the stranger's does.
    assert!(friend.t.send(2, 1, msg(1, 2, 7)));
    assert_eq!(recv(&rt, &b.inbox), raft(1, msg(1, 2, 7)));
    assert!(recv_within(&rt, &b.inbox, QUIET).is_none());
    assert_eq!(b.t.stats().received, 1);
    assert_eq!(friend.t.stats().connects, 1);

    // A raw client with the wrong secret is refused too.
    let peer_counters = PeerCounters::default();
    let refused = connect::connect(
        &with_secret(4, b"wrong"),
        &TransportCounters::default(),
        &peer_counters,
        2,
        b.addr(),
    );
    let err = refused.expect_err("a wrong secret passed the handshake");
    assert!(err.contains("wrong cluster secret"), "{err}");
    assert_eq!(peer_counters.snapshot().refused_by_peer, 1);
    for node in [b, friend, stranger] {
        node.shutdown();
    }
}

#[test]
fn bad_frames_close_their_connection_and_the_transport_keeps_serving() {
    let rt = Runtime::start(2).unwrap();
    let b = listen(
        &rt,
        TransportConfig {
            max_frame_bytes: 1024,
            ..config(1)
        },
    );
    let addr = b.addr();
    let as_node_2 = config(2);

    // A good frame on a raw connection is delivered; then garbage closes it.
    let raw = raw_peer(&as_node_2, 1, addr);
    let mut body = Vec::new();
    encode_app(b"raw hello", &mut body);
    write_frame(&raw, &body);
    assert_eq!(recv(&rt, &b.inbox), app(2, b"raw hello"));
    write_frame(&raw, &[0x05, 0xff, 0xfe, 0xfd, 0xfc, 0xfb]);
    assert_closed(&raw);
    assert!(
        wait_until(|| b.t.stats().bad_frames == 1),
        "{:?}",
        b.t.stats()
    );

    // A frame over max_frame_bytes (only its length is sent).
    let raw = raw_peer(&as_node_2, 1, addr);
    (&raw).write_all(&1025u32.to_le_bytes()).unwrap();
    assert_closed(&raw);
    assert!(
        wait_until(|| b.t.stats().oversize_frames == 1),
        "{:?}",
        b.t.stats()
    );

    // A well-formed Raft message whose sender is not the node of the handshake.
    let raw = raw_peer(&as_node_2, 1, addr);
    let mut body = Vec::new();
    encode_envelope(0, &msg(3, 1, 9), &mut body);
    write_frame(&raw, &body);
    assert_closed(&raw);
    assert!(
        wait_until(|| b.t.stats().bad_frames == 2),
        "{:?}",
        b.t.stats()
    );

    // A frame of exactly max_frame_bytes is fine (the app group id takes 10 bytes).
    let raw = raw_peer(&as_node_2, 1, addr);
    let mut body = Vec::new();
    encode_app(&[7u8; 1014], &mut body);
    assert_eq!(body.len(), 1024);
    write_frame(&raw, &body);
    assert_eq!(recv(&rt, &b.inbox), app(2, &[7u8; 1014]));
    drop(raw);

    // None of the bad frames was delivered, and a normal peer is still served.
    let mut good = listen(&rt, config(2));
    good.t.add_peer(1, addr);
    assert!(good.t.send(1, 3, msg(2, 1, 5)));
    assert_eq!(recv(&rt, &b.inbox), raft(3, msg(2, 1, 5)));
    assert!(recv_within(&rt, &b.inbox, QUIET).is_none());
    let stats = b.t.stats();
    assert_eq!(stats.received, 3, "{stats:?}");
    assert_eq!(stats.accepted, 5, "{stats:?}");
    assert_eq!(
        (stats.bad_frames, stats.oversize_frames),
        (2, 1),
        "{stats:?}"
    );
    good.shutdown();
    b.shutdown();
}

#[test]
fn a_restarted_peer_on_the_same_port_gets_messages_again() {
    let rt = Runtime::start(2).unwrap();
    let mut a = listen(&rt, config(1));
    let b = listen(&rt, config(2));
    let addr = b.addr();
    a.t.add_peer(2, addr);
    assert!(a.t.send(2, 1, msg(1, 2, 1)));
    assert_eq!(recv(&rt, &b.inbox), raft(1, msg(1, 2, 1)));

    let old_inbox = b.inbox.clone();
    let stopping = Instant::now();
    b.shutdown();
    assert!(
        stopping.elapsed() < Duration::from_secs(1),
        "shutdown blocked"
    );
    // Every task of the stopped transport lets go of its inbox.
    let closed = rt.block_on(future::or(
        async { old_inbox.recv().await.is_err() },
        async {
            Timer::after(WAIT).await;
            false
        },
    ));
    assert!(closed, "the stopped transport still holds its inbox");

    // Shutdown returns once the listener is closed: the port is free at once.
    let b = listen_at(&rt, addr, config(2))
        .unwrap_or_else(|e| panic!("cannot listen at {addr} again right after shutdown: {e}"));
    assert_eq!(b.addr(), addr);

    // Messages sent while the connection is broken may be lost: send until one arrives.
    let deadline = Instant::now() + WAIT;
    let mut n = 100;
    let first = loop {
        assert!(
            Instant::now() < deadline,
            "nothing arrived after the restart"
        );
        a.t.send(2, 1, msg(1, 2, n));
        n += 1;
        if let Some(d) = recv_within(&rt, &b.inbox, Duration::from_millis(20)) {
            break d;
        }
    };
    let first = term_of(&first);
    assert!((100..n).contains(&first), "term {first}");
    // From now on nothing is lost and the order holds.
    for m in 0..20 {
        assert!(a.t.send(2, 1, msg(1, 2, 10_000 + m)));
    }
    let mut last = first;
    let mut fresh = Vec::new();
    while fresh.len() < 20 {
        let term = term_of(&recv(&rt, &b.inbox));
        assert!(term > last, "term {term} after {last}");
        last = term;
        if term >= 10_000 {
            fresh.push(term);
        }
    }
    assert_eq!(fresh, (10_000..10_020).collect::<Vec<_>>());
    assert_eq!(a.t.stats().connects, 2, "{:?}", a.t.stats());
    a.shutdown();
    b.shutdown();
}

#[test]
fn a_down_peer_does_not_block_sends_and_queued_messages_arrive_when_it_listens() {
    let rt = Runtime::start(2).unwrap();
    // Reserve a port, then free it: node 2 is down.
    let addr = TcpListener::bind(any_port()).unwrap().local_addr().unwrap();
    let mut a = listen(
        &rt,
        TransportConfig {
            outbound_queue_capacity: 8,
            ..config(1)
        },
    );
    a.t.add_peer(2, addr);
    let start = Instant::now();
    let queued = (0..100).filter(|&n| a.t.send(2, 1, msg(1, 2, n))).count();
    assert!(start.elapsed() < Duration::from_secs(1), "sends blocked");
    assert_eq!(queued, 8);
    assert_eq!(a.t.stats().dropped_full, 92);
    assert_eq!(peer_stats(&a, 2).dropped_full, 92);
    assert!(
        wait_until(|| peer_stats(&a, 2).connect_failures >= 3),
        "{:?}",
        a.t.peer_stats()
    );
    assert!(a.t.stats().connect_failures >= 3);

    let b = listen_at(&rt, addr, config(2)).unwrap();
    let terms: Vec<u64> = recv_n(&rt, &b.inbox, 8).iter().map(term_of).collect();
    assert_eq!(terms, (0..8).collect::<Vec<_>>());
    assert!(recv_within(&rt, &b.inbox, QUIET).is_none());
    assert_eq!(a.t.stats().connects, 1);
    a.shutdown();
    b.shutdown();
}

#[test]
fn connections_over_the_limit_are_refused_until_one_closes() {
    let rt = Runtime::start(2).unwrap();
    let b = listen(
        &rt,
        TransportConfig {
            max_inbound_connections: 1,
            ..config(2)
        },
    );
    // A raw peer takes the only slot.
    let raw = raw_peer(&config(3), 2, b.addr());
    let mut a = listen(&rt, config(1));
    a.t.add_peer(2, b.addr());
    assert!(a.t.send(2, 1, msg(1, 2, 1)));
    assert!(
        wait_until(|| b.t.stats().refused_handshakes >= 1 && a.t.stats().connect_failures >= 1),
        "{:?} {:?}",
        b.t.stats(),
        a.t.stats()
    );
    assert_eq!(a.t.stats().connects, 0);
    assert!(recv_within(&rt, &b.inbox, QUIET).is_none());
    // Node 2 refused node 1's handshakes (too many connections): counted for node 2.
    assert!(
        wait_until(|| peer_stats(&a, 2).refused_by_peer >= 1),
        "{:?}",
        a.t.peer_stats()
    );
    // Closing the raw connection frees the slot; the queued message then arrives.
    drop(raw);
    assert_eq!(recv(&rt, &b.inbox), raft(1, msg(1, 2, 1)));
    assert_eq!(a.t.stats().connects, 1);
    assert_eq!(peer_stats(&a, 2).connects, 1);
    assert!(
        wait_until(|| peer_stats(&b, 1).received == 1),
        "{:?}",
        b.t.peer_stats()
    );
    a.shutdown();
    b.shutdown();
}

#[test]
fn sends_to_unknown_peers_and_to_the_app_group_are_refused() {
    let rt = Runtime::start(2).unwrap();
    let mut a = listen(&rt, config(1));
    let b = listen(&rt, config(2));
    a.t.add_peer(2, b.addr());

    assert!(!a.t.send(9, 0, msg(1, 9, 1)));
    assert_eq!(a.t.stats().dropped_unknown_peer, 1);
    assert!(!a.t.send_app(9, b"nobody".to_vec()));
    assert_eq!(a.t.stats().dropped_unknown_peer, 2);

    // The app group id is reserved for app frames, even to a known peer.
    assert!(!a.t.send(2, APP_GROUP, msg(1, 2, 1)));
    assert!(a.t.send(2, 4, msg(1, 2, 2)));
    assert_eq!(recv(&rt, &b.inbox), raft(4, msg(1, 2, 2)));
    assert!(recv_within(&rt, &b.inbox, QUIET).is_none());
    let stats = a.t.stats();
    assert_eq!(stats.dropped_unknown_peer, 2, "{stats:?}");
    assert_eq!(stats.dropped_full, 0, "{stats:?}");
    assert!(wait_until(|| a.t.stats().sent == 1), "{:?}", a.t.stats());
    // Per peer: the drops are node 9's, the frame sent node 2's.
    let nine = peer_stats(&a, 9);
    let expected = PeerStats {
        dropped_unknown_peer: 2,
        ..PeerStats::default()
    };
    assert_eq!(nine, expected);
    assert_eq!(peer_stats(&a, 2).sent, 1);
    assert_eq!(peer_stats(&a, 2).dropped_unknown_peer, 0);
    a.shutdown();
    b.shutdown();
}

#[test]
fn an_oversize_frame_is_dropped_by_the_writer_and_counted_for_its_peer() {
    let rt = Runtime::start(2).unwrap();
    let mut a = listen(
        &rt,
        TransportConfig {
            max_frame_bytes: 1024,
            ..config(1)
        },
    );
    let b = listen(&rt, config(2));
    a.t.add_peer(2, b.addr());
    // Queued (the size is known only once encoded), then dropped by the writer.
    assert!(a.t.send_app(2, vec![0u8; 4096]));
    assert!(a.t.send_app(2, b"small".to_vec()));
    assert_eq!(recv(&rt, &b.inbox), app(1, b"small"));
    assert!(recv_within(&rt, &b.inbox, QUIET).is_none());
    assert!(
        wait_until(|| peer_stats(&a, 2).sent == 1),
        "{:?}",
        a.t.peer_stats()
    );
    assert_eq!(peer_stats(&a, 2).dropped_oversize, 1);
    assert_eq!(a.t.stats().dropped_oversize, 1);
    assert_eq!(peer_stats(&b, 1).received, 1);
    a.shutdown();
    b.shutdown();
}
