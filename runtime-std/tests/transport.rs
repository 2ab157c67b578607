//! The TCP transport on loopback: delivery, handshakes, bad input, a peer that is down, and a
//! property test of the decoders. Every wait is bounded.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use embedded_io_adapters::std::FromStd;
use proptest::prelude::*;
use shale_core::raft::{Message, NodeId, Outgoing};
use shale_core::wire::{read_frame, write_frame};
use shale_runtime_std::transport::auth;
use shale_runtime_std::transport::handshake::{
    Hello, Refusal, Reply, decode_challenge, decode_hello, decode_reply, encode_challenge,
    encode_hello, encode_reply,
};
use shale_runtime_std::transport::{
    APP_GROUP, Delivery, Envelope, Sink, Transport, TransportConfig, decode_envelope,
    encode_envelope,
};

const CLUSTER: u64 = 42;
const WAIT: Duration = Duration::from_secs(5);

fn config(cluster_id: u64, node_id: NodeId) -> TransportConfig {
    TransportConfig {
        backoff_min: Duration::from_millis(5),
        backoff_max: Duration::from_millis(40),
        handshake_timeout: Duration::from_secs(2),
        ..TransportConfig::new(cluster_id, node_id)
    }
}

fn listen(cluster_id: u64, node_id: NodeId) -> Transport {
    Transport::listen("127.0.0.1:0", config(cluster_id, node_id)).unwrap()
}

fn msg(from: NodeId, to: NodeId, n: u64) -> Outgoing {
    Outgoing {
        from,
        to,
        message: Message::HeartbeatResponse { term: n, round: n },
    }
}

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

/// Receives `n` envelopes or fails after [`WAIT`]
fn recv_n(t: &Transport, n: usize) -> Vec<Envelope> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "received {} of {n} messages", got.len());
        if let Some(e) = t
            .recv_timeout(left.min(Duration::from_millis(100)))
            .and_then(|d| d.into_raft())
        {
            got.push(e);
        }
    }
    got
}

#[test]
fn two_transports_exchange_messages_of_several_groups_both_ways() {
    let mut a = listen(CLUSTER, 1);
    let mut b = listen(CLUSTER, 2);
    assert!(a.add_peer(2, b.local_addr()).unwrap());
    assert!(b.add_peer(1, a.local_addr()).unwrap());
    assert!(!a.add_peer(2, b.local_addr()).unwrap());
    for n in 0..20 {
        for group in [0, 7, u64::MAX - 1] {
            assert!(a.send(2, group, msg(1, 2, n)));
            assert!(b.send(1, group, msg(2, 1, n)));
        }
    }
    for (t, from) in [(&a, 2), (&b, 1)] {
        let mut per_group: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for e in recv_n(t, 60) {
            assert_eq!(e.message.from, from);
            let Message::HeartbeatResponse { term, .. } = e.message.message else {
                panic!("unexpected message {e:?}");
            };
            per_group.entry(e.group).or_default().push(term);
        }
        assert_eq!(per_group.len(), 3);
        for terms in per_group.values() {
            assert_eq!(*terms, (0..20).collect::<Vec<_>>(), "in order, none lost");
        }
    }
    // The writer counts a message once written; wait rather than race it.
    assert!(
        wait_until(|| a.stats().sent == 60),
        "sent: {}",
        a.stats().sent
    );
    assert_eq!(a.stats().received, 60);
    assert!(!a.send(9, 0, msg(1, 9, 0)));
    assert_eq!(a.stats().dropped_unknown_peer, 1);
    // The same, per peer: node 2's frames, and node 9 (not a peer) for the dropped send.
    let peers = a.peer_stats();
    assert_eq!(peers.keys().copied().collect::<Vec<_>>(), [2, 9]);
    let two = peers[&2];
    assert_eq!(
        (two.sent, two.received, two.connects),
        (60, 60, 1),
        "{two:?}"
    );
    assert_eq!(two.dropped_full + two.dropped_unknown_peer, 0, "{two:?}");
    assert_eq!(peers[&9].dropped_unknown_peer, 1);
    assert_eq!(peers[&9].sent, 0);
    a.shutdown();
    b.shutdown();
}

#[test]
fn app_frames_and_raft_messages_share_the_connection_and_reach_a_sink() {
    let (tx, rx) = std::sync::mpsc::channel();
    let sink: Sink = std::sync::Arc::new(move |d| tx.send(d).is_ok());
    let b = Transport::listen_into("127.0.0.1:0", config(CLUSTER, 2), sink).unwrap();
    let mut a = listen(CLUSTER, 1);
    a.add_peer(2, b.local_addr()).unwrap();
    assert!(a.send_app(2, b"first".to_vec()));
    assert!(a.send(2, 5, msg(1, 2, 1)));
    assert!(
        !a.send(2, APP_GROUP, msg(1, 2, 2)),
        "the app group id is reserved"
    );
    let first = rx.recv_timeout(WAIT).expect("app frame");
    assert_eq!(
        first,
        Delivery::App {
            from: 1,
            bytes: b"first".to_vec()
        }
    );
    let second = rx.recv_timeout(WAIT).ok().and_then(Delivery::into_raft);
    assert_eq!(
        second.map(|e| (e.group, e.message)),
        Some((5, msg(1, 2, 1)))
    );
    assert!(
        b.recv_timeout(Duration::from_millis(10)).is_none(),
        "a sink takes everything"
    );
    a.shutdown();
    b.shutdown();
}

#[test]
fn wrong_cluster_or_node_is_refused_and_the_right_peer_works() {
    let a = listen(CLUSTER, 1);
    let mut other_cluster = listen(CLUSTER + 1, 2);
    other_cluster.add_peer(1, a.local_addr()).unwrap();
    other_cluster.send(1, 0, msg(2, 1, 1));
    let mut wrong_node = listen(CLUSTER, 3);
    // Expects node 9 at node 1's address.
    wrong_node.add_peer(9, a.local_addr()).unwrap();
    wrong_node.send(9, 0, msg(3, 9, 1));

    // The refusal is counted before its reason is logged: wait for both.
    assert!(wait_until(|| a.stats().refused_handshakes >= 2
        && other_cluster.stats().refused_by_peer >= 1
        && wrong_node.stats().refused_by_peer >= 1
        && other_cluster.last_close_reason().is_some()
        && wrong_node.last_close_reason().is_some()));
    let reason = other_cluster.last_close_reason().unwrap();
    assert!(reason.contains("wrong cluster id"), "{reason}");
    let reason = wrong_node.last_close_reason().unwrap();
    assert!(reason.contains("wrong node id"), "{reason}");
    // Counted for the peer that refused: node 1, and node 9 (as node 1's address was named).
    let refused = other_cluster.peer_stats()[&1];
    assert!(refused.refused_by_peer >= 1, "{refused:?}");
    assert!(refused.connect_failures >= 1, "{refused:?}");
    assert_eq!(refused.connects, 0, "{refused:?}");
    assert!(wrong_node.peer_stats()[&9].refused_by_peer >= 1);

    let mut good = listen(CLUSTER, 4);
    good.add_peer(1, a.local_addr()).unwrap();
    assert!(good.send(1, 5, msg(4, 1, 77)));
    let got = recv_n(&a, 1);
    assert_eq!(
        got[0],
        Envelope {
            group: 5,
            message: msg(4, 1, 77)
        }
    );
    assert_eq!(a.stats().received, 1, "nothing from refused peers");
    for t in [a, other_cluster, wrong_node, good] {
        t.shutdown();
    }
}

/// Opens a raw connection and performs the handshake as node `from`
fn raw_handshake(addr: SocketAddr, from: NodeId, to: NodeId) -> TcpStream {
    raw_handshake_with(addr, from, to, b"", Reply::Accept)
}

/// Performs the handshake as node `from` proving `secret`, expecting `expect`
fn raw_handshake_with(
    addr: SocketAddr,
    from: NodeId,
    to: NodeId,
    secret: &[u8],
    expect: Reply,
) -> TcpStream {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let hello = Hello {
        cluster_id: CLUSTER,
        from,
        to,
    };
    let mut io = FromStd::new(&stream);
    let hello_bytes = encode_hello(&hello);
    write_frame(&mut io, &hello_bytes).unwrap();
    let mut buf = Vec::new();
    read_frame(&mut io, &mut buf, 64).unwrap();
    let nonce = decode_challenge(&buf).expect("a challenge");
    let proof = auth::prove(&auth::secret_key(secret), &nonce, &hello_bytes);
    write_frame(&mut io, &encode_challenge(&proof)).unwrap();
    read_frame(&mut io, &mut buf, 64).unwrap();
    assert_eq!(decode_reply(&buf), Ok(expect));
    stream
}

/// Asserts the other side closes `stream` (within [`WAIT`]), skipping any bytes it sends
fn assert_closed(mut stream: &TcpStream) {
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => continue,
            Err(e) => {
                assert!(
                    e.kind() == std::io::ErrorKind::ConnectionReset,
                    "connection not closed: {e}"
                );
                return;
            }
        }
    }
}

#[test]
fn peers_must_prove_the_cluster_secret() {
    let with_secret = |id| TransportConfig {
        secret: b"s3cret".to_vec(),
        ..config(CLUSTER, id)
    };
    let mut a = Transport::listen("127.0.0.1:0", with_secret(1)).unwrap();
    let b = Transport::listen("127.0.0.1:0", with_secret(2)).unwrap();
    let mut stranger = listen(CLUSTER, 3);
    a.add_peer(2, b.local_addr()).unwrap();
    stranger.add_peer(2, b.local_addr()).unwrap();
    assert!(a.send(2, 1, msg(1, 2, 1)));
    assert!(stranger.send(2, 1, msg(3, 2, 2)));
    let got = recv_n(&b, 1);
    assert_eq!(got[0].message, msg(1, 2, 1));
    assert!(
        wait_until(|| stranger.stats().refused_by_peer > 0),
        "the stranger was not refused"
    );
    // A raw client with the wrong secret is refused with that reason; the right one gets in.
    let wrong = raw_handshake_with(
        b.local_addr(),
        5,
        2,
        b"guess",
        Reply::Refuse(Refusal::BadSecret),
    );
    assert_closed(&wrong);
    let _right = raw_handshake_with(b.local_addr(), 5, 2, b"s3cret", Reply::Accept);
    assert!(b.recv_timeout(Duration::from_millis(100)).is_none());
    for t in [a, b, stranger] {
        t.shutdown();
    }
}

#[test]
fn bad_input_closes_the_connection_and_the_transport_keeps_serving() {
    let a = Transport::listen(
        "127.0.0.1:0",
        TransportConfig {
            max_frame_bytes: 1024,
            ..config(CLUSTER, 1)
        },
    )
    .unwrap();
    let addr = a.local_addr();

    // An oversize frame after a good handshake.
    let raw = raw_handshake(addr, 2, 1);
    (&raw).write_all_bytes(&1_000_000u32.to_le_bytes());
    assert_closed(&raw);
    assert!(wait_until(|| a.stats().oversize_frames == 1));

    // A frame of garbage after a good handshake.
    let raw = raw_handshake(addr, 2, 1);
    write_frame(&mut FromStd::new(&raw), &[0xff; 20]).unwrap();
    assert_closed(&raw);
    assert!(wait_until(|| a.stats().bad_frames == 1));

    // A well-formed message whose sender does not match the handshake.
    let raw = raw_handshake(addr, 2, 1);
    let mut env = Vec::new();
    encode_envelope(0, &msg(3, 1, 1), &mut env);
    write_frame(&mut FromStd::new(&raw), &env).unwrap();
    assert_closed(&raw);
    assert!(wait_until(|| a.stats().bad_frames == 2));

    // Garbage instead of a hello: refused with a reason.
    let raw = TcpStream::connect(addr).unwrap();
    (&raw).write_all_bytes(b"GET / HTTP/1.1\r\n\r\n");
    raw.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = Vec::new();
    read_frame(&mut FromStd::new(&raw), &mut buf, 64).unwrap();
    assert_eq!(decode_reply(&buf), Ok(Reply::Refuse(Refusal::Malformed)));
    assert_closed(&raw);
    assert!(wait_until(|| a.stats().refused_handshakes == 1));

    // A connection that closes mid-handshake.
    let raw = TcpStream::connect(addr).unwrap();
    (&raw).write_all_bytes(&[29, 0]);
    drop(raw);
    assert!(wait_until(|| a.stats().refused_handshakes == 2));

    // A good peer is still served.
    let mut good = listen(CLUSTER, 2);
    good.add_peer(1, addr).unwrap();
    good.send(1, 3, msg(2, 1, 5));
    assert_eq!(recv_n(&a, 1)[0].message, msg(2, 1, 5));
    assert_eq!(a.stats().received, 1);
    good.shutdown();
    a.shutdown();
}

trait WriteAllBytes {
    fn write_all_bytes(self, bytes: &[u8]);
}

impl WriteAllBytes for &TcpStream {
    fn write_all_bytes(mut self, bytes: &[u8]) {
        std::io::Write::write_all(&mut self, bytes).unwrap();
    }
}

#[test]
fn a_down_peer_does_not_block_sends_and_delivery_resumes_when_it_listens() {
    // Reserve a port, then free it: node 2 is down.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut a = Transport::listen(
        "127.0.0.1:0",
        TransportConfig {
            outbound_queue_capacity: 8,
            ..config(CLUSTER, 1)
        },
    )
    .unwrap();
    a.add_peer(2, addr).unwrap();

    let start = Instant::now();
    let queued = (0..100).filter(|&n| a.send(2, 1, msg(1, 2, n))).count();
    assert!(start.elapsed() < Duration::from_secs(1), "sends blocked");
    assert_eq!(queued, 8);
    assert_eq!(a.stats().dropped_full, 92);
    assert!(wait_until(|| a.stats().connect_failures >= 5));
    let down = a.peer_stats()[&2];
    assert_eq!(down.dropped_full, 92, "{down:?}");
    assert!(down.connect_failures >= 5, "{down:?}");
    assert_eq!(
        down.refused_by_peer, 0,
        "nobody listened to refuse: {down:?}"
    );

    let b = Transport::listen(addr, config(CLUSTER, 2)).unwrap();
    // Backoff is capped at 40 ms, so the writer reconnects soon after.
    let queued_msgs = recv_n(&b, 8);
    let terms: Vec<u64> = queued_msgs
        .iter()
        .map(|e| match e.message.message {
            Message::HeartbeatResponse { term, .. } => term,
            _ => panic!("unexpected message"),
        })
        .collect();
    assert_eq!(terms, (0..8).collect::<Vec<_>>());
    assert_eq!(a.stats().connects, 1);
    // Fresh messages flow too (no more than the queue holds at once).
    for n in 100..108 {
        assert!(a.send(2, 1, msg(1, 2, n)));
    }
    assert_eq!(recv_n(&b, 8).len(), 8);
    assert!(b.try_recv().is_none());
    a.shutdown();
    b.shutdown();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
        let _ = decode_envelope(&bytes);
        let _ = decode_hello(&bytes);
        let _ = decode_reply(&bytes);
        // Also through the frame reader, with a small limit.
        let mut reader: &[u8] = &bytes;
        let mut frame = Vec::new();
        while read_frame(&mut reader, &mut frame, 64).is_ok() {
            let _ = decode_envelope(&frame);
        }
    }

    #[test]
    fn valid_values_round_trip(group in any::<u64>(), from in any::<u64>(), to in any::<u64>(),
                               term in any::<u64>(), cluster_id in any::<u64>()) {
        let message = msg(from, to, term);
        let mut buf = Vec::new();
        encode_envelope(group, &message, &mut buf);
        prop_assert_eq!(decode_envelope(&buf), Ok(Envelope { group, message }));
        let hello = Hello { cluster_id, from, to };
        prop_assert_eq!(decode_hello(&encode_hello(&hello)), Ok(hello));
        let reply = Reply::Refuse(Refusal::WrongCluster);
        prop_assert_eq!(decode_reply(&encode_reply(reply)), Ok(reply));
    }
}
