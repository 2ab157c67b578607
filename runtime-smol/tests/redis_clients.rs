//! The `redis` crate as a client of an in-process 3-node cluster: every command of the front
//! door, errors, pipelining, AUTH and RESP3

mod common;

use std::time::Duration;

use common::TestCluster;
use redis::{Connection, RedisResult, Value};

fn connect(cluster: &TestCluster, i: usize) -> Connection {
    let client = redis::Client::open(cluster.url(i)).unwrap();
    let con = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .unwrap();
    con.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    con
}

fn q<T: redis::FromRedisValue>(con: &mut Connection, args: &[&str]) -> RedisResult<T> {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(con)
}

fn err_text(result: RedisResult<Value>) -> String {
    match result {
        Err(e) => e.to_string(),
        Ok(v) => panic!("expected an error, got {v:?}"),
    }
}

#[test]
fn every_command_through_any_node() {
    let cluster = TestCluster::start(3, 2, None);
    let mut a = connect(&cluster, 0);
    let mut b = connect(&cluster, 1);
    let mut c = connect(&cluster, 2);

    // Written through one node, read through the others (linearizable reads).
    assert_eq!(
        q::<String>(&mut a, &["SET", "greeting", "hello"]).unwrap(),
        "OK"
    );
    assert_eq!(q::<String>(&mut b, &["GET", "greeting"]).unwrap(), "hello");
    assert_eq!(
        q::<Option<String>>(&mut c, &["GET", "missing"]).unwrap(),
        None
    );
    assert_eq!(
        q::<i64>(&mut c, &["APPEND", "greeting", " world"]).unwrap(),
        11
    );
    assert_eq!(
        q::<String>(&mut a, &["GET", "greeting"]).unwrap(),
        "hello world"
    );

    // Key slots as Redis Cluster computes them; hash tags pin keys to one slot.
    assert_eq!(
        q::<i64>(&mut a, &["CLUSTER", "KEYSLOT", "foo"]).unwrap(),
        12182
    );
    assert_eq!(
        q::<i64>(&mut b, &["cluster", "keyslot", "hello"]).unwrap(),
        866
    );
    assert_eq!(
        q::<i64>(&mut c, &["CLUSTER", "KEYSLOT", "{user1000}.following"]).unwrap(),
        q::<i64>(&mut c, &["CLUSTER", "KEYSLOT", "user1000"]).unwrap()
    );
    assert!(q::<i64>(&mut a, &["CLUSTER", "KEYSLOT"]).is_err());
    assert!(q::<String>(&mut a, &["CLUSTER", "NOSUCH"]).is_err());

    // SET options.
    assert_eq!(
        q::<Option<String>>(&mut a, &["SET", "greeting", "x", "NX"]).unwrap(),
        None
    );
    assert_eq!(
        q::<Option<String>>(&mut a, &["SET", "fresh", "1", "XX"]).unwrap(),
        None
    );
    assert_eq!(
        q::<Option<String>>(&mut b, &["GET", "fresh"]).unwrap(),
        None
    );
    assert_eq!(
        q::<String>(&mut a, &["SET", "fresh", "1", "NX"]).unwrap(),
        "OK"
    );
    assert_eq!(
        q::<Option<String>>(&mut b, &["SET", "fresh", "2", "XX", "GET"]).unwrap(),
        Some("1".into())
    );
    assert!(err_text(q(&mut a, &["SET", "k", "v", "EX", "-1"])).contains("invalid expire time"));
    assert!(err_text(q(&mut a, &["SET", "k", "v", "NX", "XX"])).contains("syntax error"));

    // Counters.
    assert_eq!(q::<i64>(&mut a, &["INCR", "n"]).unwrap(), 1);
    assert_eq!(q::<i64>(&mut b, &["INCRBY", "n", "41"]).unwrap(), 42);
    assert_eq!(q::<i64>(&mut c, &["DECR", "n"]).unwrap(), 41);
    assert_eq!(q::<i64>(&mut c, &["DECRBY", "n", "40"]).unwrap(), 1);
    assert!(err_text(q(&mut a, &["INCR", "greeting"])).contains("not an integer"));
    assert!(err_text(q(&mut a, &["INCRBY", "n", "x"])).contains("not an integer"));
    q::<()>(&mut a, &["SET", "big", &i64::MAX.to_string()]).unwrap();
    assert!(err_text(q(&mut a, &["INCR", "big"])).contains("overflow"));

    // Several keys (spread over both groups).
    assert_eq!(
        q::<String>(&mut a, &["MSET", "k1", "v1", "k2", "v2", "k3", "v3"]).unwrap(),
        "OK"
    );
    assert_eq!(
        q::<Vec<Option<String>>>(&mut b, &["MGET", "k1", "nope", "k3"]).unwrap(),
        vec![Some("v1".into()), None, Some("v3".into())]
    );
    // Keys with one {hash tag} share a shard: their MSET is one atomic operation.
    assert_eq!(
        q::<String>(&mut b, &["MSET", "{t}a", "1", "{t}b", "2"]).unwrap(),
        "OK"
    );
    assert_eq!(
        q::<Vec<Option<String>>>(&mut c, &["MGET", "{t}b", "{t}a", "k2"]).unwrap(),
        vec![Some("2".into()), Some("1".into()), Some("v2".into())]
    );
    assert_eq!(
        q::<i64>(&mut c, &["EXISTS", "k1", "k2", "nope"]).unwrap(),
        2
    );
    assert_eq!(q::<i64>(&mut c, &["DEL", "k1", "k2", "nope"]).unwrap(), 2);
    assert_eq!(q::<i64>(&mut a, &["EXISTS", "k1", "k2"]).unwrap(), 0);

    // Compare-and-swap.
    assert_eq!(q::<i64>(&mut a, &["CAS", "k3", "v3", "w3"]).unwrap(), 1);
    assert_eq!(q::<i64>(&mut b, &["CAS", "k3", "v3", "x3"]).unwrap(), 0);
    assert_eq!(q::<String>(&mut c, &["GET", "k3"]).unwrap(), "w3");

    // Connection and server commands.
    assert_eq!(q::<String>(&mut a, &["PING"]).unwrap(), "PONG");
    assert_eq!(q::<String>(&mut a, &["ECHO", "hi"]).unwrap(), "hi");
    assert_eq!(q::<String>(&mut a, &["SELECT", "0"]).unwrap(), "OK");
    assert!(err_text(q(&mut a, &["SELECT", "1"])).contains("out of range"));
    assert_eq!(
        q::<String>(&mut a, &["CLIENT", "SETNAME", "tester"]).unwrap(),
        "OK"
    );
    assert_eq!(
        q::<String>(&mut a, &["CLIENT", "GETNAME"]).unwrap(),
        "tester"
    );
    assert!(q::<i64>(&mut a, &["CLIENT", "ID"]).unwrap() > 0);
    let info: String = q(&mut a, &["INFO"]).unwrap();
    assert!(
        info.contains("# Replication") && info.contains("shale_config_num:"),
        "{info}"
    );
    assert!(q::<i64>(&mut a, &["DBSIZE"]).unwrap() >= 1);
    let config: Vec<String> = q(&mut a, &["CONFIG", "GET", "appendonly"]).unwrap();
    assert_eq!(config, vec!["appendonly".to_owned(), "yes".to_owned()]);
    let status: String = q(&mut b, &["SHALE", "STATUS"]).unwrap();
    assert!(
        status.contains("configuration") && status.contains("g1"),
        "{status}"
    );

    // Bad input gets a clear error and the connection keeps working.
    assert!(err_text(q(&mut a, &["NOSUCHCOMMAND", "x"])).contains("unknown command"));
    assert!(err_text(q(&mut a, &["GET"])).contains("wrong number of arguments"));
    assert!(err_text(q(&mut a, &["SHALE", "JOIN", "x"])).contains("unknown SHALE subcommand"));
    assert!(err_text(q(&mut a, &["SHALE", "MAX-MOVES", "-1"])).contains("usage"));
    assert_eq!(q::<String>(&mut a, &["GET", "k3"]).unwrap(), "w3");

    // The moves per configuration change through the controller's log: no new configuration.
    let before: i64 = q(&mut a, &["SHALE", "MAX-MOVES", "2"]).unwrap();
    let again: i64 = q(&mut a, &["SHALE", "MAX-MOVES", "1"]).unwrap();
    assert_eq!(
        before, again,
        "setting the moves per configuration made a configuration"
    );
}

#[test]
fn pipelines_answer_in_order() {
    let cluster = TestCluster::start(3, 2, None);
    let mut con = connect(&cluster, 1);
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("SET").arg(format!("p{i}")).arg(i).ignore();
    }
    for i in 0..200 {
        pipe.cmd("GET").arg(format!("p{i}"));
    }
    let values: Vec<i64> = pipe.query(&mut con).unwrap();
    assert_eq!(values, (0..200).collect::<Vec<_>>());
}

/// Clients retry `TRYAGAIN` (it means "not executed"), so an operation whose outcome is
/// unknown must answer otherwise: here a majority is gone, the INCR reaches no quorum, and
/// the answer says its outcome is unknown
#[test]
fn an_operation_that_may_have_been_applied_does_not_answer_tryagain() {
    let mut cluster = TestCluster::start(3, 1, None);
    let mut con = connect(&cluster, 0);
    assert_eq!(q::<i64>(&mut con, &["INCR", "counter"]).unwrap(), 1);
    let rt = cluster.rt.take().expect("running");
    for server in cluster.servers.drain(1..) {
        rt.block_on(server.stop()).unwrap();
    }
    cluster.rt = Some(rt);
    let reply = err_text(q(&mut con, &["INCR", "counter"]));
    assert!(
        !reply.to_ascii_uppercase().contains("TRYAGAIN"),
        "an operation that may have been applied answered {reply:?}"
    );
    assert!(
        reply.contains("UNKNOWN"),
        "the answer names the unknown outcome: {reply:?}"
    );
}

#[test]
fn a_password_is_required_before_anything_else() {
    let cluster = TestCluster::start(3, 1, Some("s3cret"));
    let mut con = connect(&cluster, 0);
    assert!(err_text(q(&mut con, &["GET", "k"])).contains("NOAUTH"));
    assert!(err_text(q(&mut con, &["AUTH", "wrong"])).contains("WRONGPASS"));
    assert_eq!(q::<String>(&mut con, &["AUTH", "s3cret"]).unwrap(), "OK");
    assert_eq!(q::<String>(&mut con, &["SET", "k", "v"]).unwrap(), "OK");
    // The redis crate authenticates itself from the URL.
    let url = format!("redis://:s3cret@{}/", cluster.servers[2].client_addr());
    let mut other = redis::Client::open(url).unwrap().get_connection().unwrap();
    assert_eq!(q::<String>(&mut other, &["GET", "k"]).unwrap(), "v");
}

#[test]
fn hello_3_switches_to_resp3() {
    let cluster = TestCluster::start(3, 1, None);
    let mut con = connect(&cluster, 0);
    let hello: Value = q(&mut con, &["HELLO", "3"]).unwrap();
    assert!(matches!(hello, Value::Map(_)), "{hello:?}");
    let missing: Value = q(&mut con, &["GET", "nothing"]).unwrap();
    assert_eq!(missing, Value::Nil);
    assert!(err_text(q(&mut con, &["HELLO", "4"])).contains("NOPROTO"));
}

/// The node that leads group `gid`, as its own status says
fn leader_of(cluster: &TestCluster, gid: u64) -> Option<usize> {
    let name = format!("g{gid}");
    (0..cluster.servers.len()).find(|&i| {
        let mut con = connect(cluster, i);
        let status: String = q(&mut con, &["SHALE", "STATUS"]).unwrap_or_default();
        status.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.first() == Some(&name.as_str()) && cols.get(1) == Some(&"leader")
        })
    })
}

/// Retries `args` on node `i` until it succeeds (a change may wait for the previous one)
fn until_ok(cluster: &TestCluster, i: usize, args: &[&str]) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut con = connect(cluster, i);
        match q::<String>(&mut con, args) {
            Ok(done) => return done,
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "{args:?} kept failing: {e}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn leadership_and_replicas_change_through_admin_commands() {
    let cluster = TestCluster::start(3, 1, None);
    let leader = leader_of(&cluster, 1).expect("group 1 has a leader");
    let other = (leader + 1) % 3;
    let third = (leader + 2) % 3;
    // Only the leader takes the command; the others name it.
    let mut con = connect(&cluster, other);
    let refused = err_text(q(&mut con, &["SHALE", "TRANSFER", "1", "1"]));
    assert!(refused.contains("does not lead"), "{refused}");
    let node = |i: usize| (i + 1).to_string();
    let done = until_ok(&cluster, leader, &["SHALE", "TRANSFER", "1", &node(other)]);
    assert!(done.contains("transferring"), "{done}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while leader_of(&cluster, 1) != Some(other) {
        assert!(
            std::time::Instant::now() < deadline,
            "leadership did not move"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Remove a replica, write, then add it back as a learner and promote it.
    until_ok(
        &cluster,
        other,
        &["SHALE", "REMOVE-REPLICA", "1", &node(third)],
    );
    let mut con = connect(&cluster, other);
    assert_eq!(
        q::<String>(&mut con, &["SET", "after", "removal"]).unwrap(),
        "OK"
    );
    let learner = until_ok(
        &cluster,
        other,
        &["SHALE", "ADD-REPLICA", "1", &node(third)],
    );
    assert!(
        learner.contains("learners [") && !learner.contains("learners []"),
        "{learner}"
    );
    let voter = until_ok(
        &cluster,
        other,
        &["SHALE", "ADD-REPLICA", "1", &node(third)],
    );
    assert!(voter.contains("learners []"), "{voter}");
    assert_eq!(q::<String>(&mut con, &["GET", "after"]).unwrap(), "removal");
    // Any replica snapshots itself on request, then keeps serving.
    let snap = until_ok(&cluster, third, &["SHALE", "SNAPSHOT", "1"]);
    assert!(snap.contains("snapshot at index"), "{snap}");
    let mut con = connect(&cluster, third);
    assert_eq!(q::<String>(&mut con, &["GET", "after"]).unwrap(), "removal");
}

/// `GET /metrics` from `addr`, as text
fn scrape(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn the_metrics_endpoint_reports_requests_raft_and_the_wal() {
    let cluster = TestCluster::start(3, 1, None);
    let mut con = connect(&cluster, 0);
    for i in 0..20 {
        q::<()>(&mut con, &["SET", &format!("m{i}"), "v"]).unwrap();
    }
    let addr = cluster.servers[0].admin_addr().expect("metrics endpoint");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = scrape(addr);
        let has = |needle: &str| text.lines().any(|l| l.starts_with(needle));
        let nonzero = |prefix: &str| {
            text.lines()
                .filter(|l| l.starts_with(prefix))
                .any(|l| l.rsplit(' ').next().is_some_and(|v| v != "0"))
        };
        if has("shale_raft_term{group=\"1\"}")
            && nonzero("shale_requests_total{command=\"set\"}")
            && nonzero("shale_wal_fsync_duration_seconds_count")
            && nonzero("shale_wal_bytes_total")
            && nonzero("shale_config_num")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics missing:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `CLUSTER NODES` on node `i` once the leaders have spread over the nodes: each group led
/// by its preferred voter (of 3 nodes, group 1 by node 2 and group 2 by node 3)
fn wait_for_masters(cluster: &TestCluster, i: usize, masters: usize) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut con = connect(cluster, i);
        let nodes: String = q(&mut con, &["CLUSTER", "NODES"]).unwrap();
        let leading: Vec<usize> = nodes
            .lines()
            .enumerate()
            .filter(|(_, l)| l.split(' ').count() > 8)
            .map(|(n, _)| n)
            .collect();
        let node_1 = nodes
            .lines()
            .position(|l| l.starts_with(&"0".repeat(39)) && l[39..].starts_with('1'));
        if leading.len() == masters && node_1.is_some_and(|n| !leading.contains(&n)) {
            return nodes;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "leaders never spread: {nodes}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Cluster-aware clients learn where slots live: every slot range lists its group's leader
/// first, at the nodes' cluster ports; every node shows the same map
#[test]
fn cluster_commands_show_each_range_at_its_leader() {
    let cluster = TestCluster::start(3, 2, None);
    let cluster_addrs = cluster.cluster_addrs();
    wait_for_masters(&cluster, 0, 2);
    let mut maps = Vec::new();
    for i in 0..3 {
        let mut con = connect(&cluster, i);
        let id: String = q(&mut con, &["CLUSTER", "MYID"]).unwrap();
        assert_eq!(id.len(), 40, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        let slots: Vec<Vec<Value>> = q(&mut con, &["CLUSTER", "SLOTS"]).unwrap();
        let mut next = 0;
        let mut leaders = Vec::new();
        for range in &slots {
            let first: i64 = redis::from_redis_value(&range[0]).unwrap();
            let last: i64 = redis::from_redis_value(&range[1]).unwrap();
            assert_eq!(first, next, "ranges are contiguous: {slots:?}");
            next = last + 1;
            let nodes: Vec<(String, u16, String)> = range[2..]
                .iter()
                .map(|n| redis::from_redis_value(n).unwrap())
                .collect();
            assert_eq!(nodes.len(), 3, "every replica is listed: {nodes:?}");
            for (ip, port, _) in &nodes {
                let addr: std::net::SocketAddr = format!("{ip}:{port}").parse().unwrap();
                assert!(cluster_addrs.contains(&addr), "{addr} is a cluster port");
            }
            leaders.push(nodes[0].2.clone());
        }
        assert_eq!(next, 16384, "every slot is covered: {slots:?}");
        leaders.sort();
        leaders.dedup();
        assert_eq!(leaders.len(), 2, "two groups, two leaders: {slots:?}");
        let nodes: String = q(&mut con, &["CLUSTER", "NODES"]).unwrap();
        assert_eq!(nodes.lines().count(), 3, "{nodes}");
        let mine = nodes.lines().find(|l| l.starts_with(&id)).unwrap();
        let cols: Vec<&str> = mine.split(' ').collect();
        assert_eq!(cols[1], format!("{}@0", cluster_addrs[i]));
        assert_eq!(cols[2], "myself,master");
        let shards: Vec<Value> = q(&mut con, &["CLUSTER", "SHARDS"]).unwrap();
        assert_eq!(shards.len(), slots.len(), "{shards:?}");
        let info: String = q(&mut con, &["CLUSTER", "INFO"]).unwrap();
        assert!(info.starts_with("cluster_state:ok\r\n"), "{info}");
        assert!(info.contains("cluster_slots_assigned:16384\r\n"), "{info}");
        assert!(info.contains("cluster_known_nodes:3\r\n"), "{info}");
        assert!(err_text(q(&mut con, &["CLUSTER", "SLOTS", "x"])).contains("wrong number"));
        maps.push(slots);
    }
    assert!(maps.windows(2).all(|w| w[0] == w[1]), "{maps:?}");
}

/// On a node's cluster port a key led elsewhere is answered `-MOVED slot host:port` with
/// the leader's cluster address; the plain port serves it (forwarding); `READONLY` lets reads
/// through, `READWRITE` ends that
#[test]
fn the_cluster_port_redirects_to_the_leader_and_the_plain_port_serves() {
    let cluster = TestCluster::start(3, 2, None);
    let nodes = wait_for_masters(&cluster, 0, 2);
    // Node 1 leads no replica group (the controller prefers it, the groups prefer 2 and 3).
    let mine = nodes.lines().find(|l| l.contains("myself")).unwrap();
    assert_eq!(mine.split(' ').count(), 8, "node 1 leads no slots: {nodes}");
    let url = format!("redis://{}/", cluster.cluster_addrs()[0]);
    let mut aware = redis::Client::open(url).unwrap().get_connection().unwrap();
    let slot = shale_core::shard::key_slot(b"k");
    let to = moved(q(&mut aware, &["SET", "k", "v"])).expect("SET redirected");
    assert_eq!(to.1, slot);
    assert!(
        cluster.cluster_addrs()[1..]
            .iter()
            .any(|a| a.to_string() == to.0),
        "{to:?}"
    );
    let mut leader = redis::Client::open(format!("redis://{}/", to.0))
        .unwrap()
        .get_connection()
        .unwrap();
    assert_eq!(q::<String>(&mut leader, &["SET", "k", "v"]).unwrap(), "OK");
    assert_eq!(q::<String>(&mut leader, &["GET", "k"]).unwrap(), "v");
    let mut plain = connect(&cluster, 0);
    assert_eq!(q::<String>(&mut plain, &["GET", "k"]).unwrap(), "v");
    assert_eq!(q::<String>(&mut aware, &["READONLY"]).unwrap(), "OK");
    assert_eq!(q::<String>(&mut aware, &["GET", "k"]).unwrap(), "v");
    assert!(moved(q(&mut aware, &["SET", "k", "w"])).is_some());
    assert_eq!(q::<String>(&mut aware, &["READWRITE"]).unwrap(), "OK");
    assert!(moved(q(&mut aware, &["GET", "k"])).is_some());
    // Inside MULTI nothing is redirected: a redirected command would leave the transaction
    // (found by review); the queued commands are forwarded when EXEC runs.
    let _: String = q(&mut aware, &["MULTI"]).unwrap();
    assert_eq!(
        q::<String>(&mut aware, &["SET", "k", "t"]).unwrap(),
        "QUEUED"
    );
    let _: Value = q(&mut aware, &["EXEC"]).unwrap();
    assert_eq!(q::<String>(&mut plain, &["GET", "k"]).unwrap(), "t");
    // A plain connection that asks for the slot map is cluster-aware from then on.
    assert!(q::<Value>(&mut plain, &["GET", "k"]).is_ok());
    let _: Value = q(&mut plain, &["CLUSTER", "SLOTS"]).unwrap();
    assert!(moved(q(&mut plain, &["GET", "k"])).is_some());
}

/// Where a `-MOVED` error sends the client: (address, slot)
fn moved(result: RedisResult<Value>) -> Option<(String, u16)> {
    let e = result.err()?;
    let (addr, slot) = e.redirect_node()?;
    (e.code() == Some("MOVED")).then(|| (addr.to_owned(), slot))
}

fn forwarded(cluster: &TestCluster) -> u64 {
    let mut total = 0;
    for s in &cluster.servers {
        let text = scrape(s.admin_addr().expect("metrics endpoint"));
        let line = text
            .lines()
            .find(|l| l.starts_with("shale_forwarded_requests_total "))
            .unwrap_or_else(|| panic!("no forward counter:\n{text}"));
        total += line.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
    }
    total
}

/// The `redis` crate's cluster client, given one node's plain address, reaches every key's
/// leader directly: in a steady cluster nothing is forwarded between nodes. Leadership then
/// moves while it writes, and every acknowledged increment is there at the end.
#[test]
fn a_cluster_client_reaches_leaders_directly_and_loses_nothing_when_leadership_moves() {
    let cluster = TestCluster::start(3, 2, None);
    wait_for_masters(&cluster, 0, 2);
    let client = redis::cluster::ClusterClient::new(vec![cluster.url(0)]).unwrap();
    let mut con = client.get_connection().unwrap();
    // Let the metrics catch up with the start-up traffic, then count.
    std::thread::sleep(Duration::from_millis(1_500));
    let before = forwarded(&cluster);
    let keys: Vec<String> = (0..64).map(|i| format!("counter-{i}")).collect();
    for key in &keys {
        let _: () = redis::cmd("SET").arg(key).arg(0).query(&mut con).unwrap();
        let n: i64 = redis::cmd("INCR").arg(key).query(&mut con).unwrap();
        assert_eq!(n, 1);
        let v: String = redis::cmd("GET").arg(key).query(&mut con).unwrap();
        assert_eq!(v, "1");
    }
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(
        forwarded(&cluster),
        before,
        "a cluster client in a steady cluster made nodes forward"
    );
    // Move group 1's leadership away from its preferred node while writing; balancing moves
    // it back a moment later: two changes of leader under load.
    let mut acknowledged = vec![1i64; keys.len()];
    let leader = leader_of(&cluster, 1).expect("group 1 has a leader");
    let other = (0..3).find(|&i| i != leader).unwrap();
    let transfer = std::thread::spawn({
        let url = cluster.url(leader);
        let to = (other + 1).to_string();
        move || {
            std::thread::sleep(Duration::from_millis(200));
            let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
            redis::cmd("SHALE")
                .arg("TRANSFER")
                .arg("1")
                .arg(to)
                .query::<Value>(&mut con)
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut round = 0;
    while std::time::Instant::now() < deadline {
        let i = round % keys.len();
        round += 1;
        if let Ok(n) = redis::cmd("INCR").arg(&keys[i]).query::<i64>(&mut con) {
            assert!(n > acknowledged[i], "{} went back to {n}", keys[i]);
            acknowledged[i] = n;
        }
    }
    let _ = transfer.join().unwrap();
    for (key, &n) in keys.iter().zip(&acknowledged) {
        let v: i64 = redis::cmd("GET").arg(key).query(&mut con).unwrap();
        assert!(v >= n, "{key} holds {v}, {n} was acknowledged");
    }
    assert!(round > 100, "only {round} increments in 5 s");
}

/// Expiry as Redis clients use it: `SET ... EX/PX/EXAT/PXAT/KEEPTTL`, `SETEX`, `PSETEX`, the
/// `EXPIRE` family with its conditions, `TTL`, `PTTL`, `EXPIRETIME`, `PERSIST`, `GETEX`,
/// `GETDEL`; expired keys are absent at once and their memory is freed by the leaders' sweep
#[test]
fn keys_expire_as_in_redis_and_are_swept_away() {
    let cluster = TestCluster::start(3, 2, None);
    let mut con = connect(&cluster, 0);
    let ok = |r: RedisResult<String>| assert_eq!(r.unwrap(), "OK");
    ok(q(&mut con, &["SET", "a", "1", "EX", "100"]));
    let ttl: i64 = q(&mut con, &["TTL", "a"]).unwrap();
    assert!((99..=100).contains(&ttl), "{ttl}");
    let pttl: i64 = q(&mut con, &["PTTL", "a"]).unwrap();
    assert!((98_000..=100_000).contains(&pttl), "{pttl}");
    let at: i64 = q(&mut con, &["EXPIRETIME", "a"]).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now + 98..=now + 101).contains(&at), "{at} vs {now}");
    assert_eq!(q::<i64>(&mut con, &["TTL", "nosuch"]).unwrap(), -2);
    ok(q(&mut con, &["SET", "b", "1"]));
    assert_eq!(q::<i64>(&mut con, &["TTL", "b"]).unwrap(), -1);
    // Conditions: NX on a key without expiry sets one; GT never beats "forever".
    assert_eq!(q::<i64>(&mut con, &["EXPIRE", "b", "50", "GT"]).unwrap(), 0);
    assert_eq!(q::<i64>(&mut con, &["EXPIRE", "b", "50", "NX"]).unwrap(), 1);
    assert_eq!(q::<i64>(&mut con, &["EXPIRE", "b", "60", "NX"]).unwrap(), 0);
    assert_eq!(q::<i64>(&mut con, &["EXPIRE", "b", "60", "GT"]).unwrap(), 1);
    assert_eq!(q::<i64>(&mut con, &["PERSIST", "b"]).unwrap(), 1);
    assert_eq!(q::<i64>(&mut con, &["PERSIST", "b"]).unwrap(), 0);
    assert_eq!(q::<i64>(&mut con, &["EXPIRE", "nosuch", "10"]).unwrap(), 0);
    // KEEPTTL keeps it, a plain SET clears it.
    ok(q(&mut con, &["SET", "a", "2", "KEEPTTL"]));
    assert!(q::<i64>(&mut con, &["TTL", "a"]).unwrap() > 0);
    ok(q(&mut con, &["SET", "a", "3"]));
    assert_eq!(q::<i64>(&mut con, &["TTL", "a"]).unwrap(), -1);
    // Short lives end: PX, PSETEX, SETEX, GETEX, PEXPIREAT in the past deletes at once.
    ok(q(&mut con, &["SET", "p", "x", "PX", "150"]));
    ok(q(&mut con, &["PSETEX", "q", "150", "y"]));
    ok(q(&mut con, &["SETEX", "r", "100", "z"]));
    assert_eq!(
        q::<String>(&mut con, &["GETEX", "r", "PX", "150"]).unwrap(),
        "z"
    );
    assert_eq!(q::<i64>(&mut con, &["PEXPIREAT", "b", "1"]).unwrap(), 1);
    assert_eq!(q::<Option<String>>(&mut con, &["GET", "b"]).unwrap(), None);
    assert_eq!(q::<String>(&mut con, &["GET", "p"]).unwrap(), "x");
    std::thread::sleep(Duration::from_millis(300));
    for key in ["p", "q", "r"] {
        assert_eq!(
            q::<Option<String>>(&mut con, &["GET", key]).unwrap(),
            None,
            "{key}"
        );
        assert_eq!(q::<i64>(&mut con, &["EXISTS", key]).unwrap(), 0, "{key}");
    }
    assert_eq!(
        q::<i64>(&mut con, &["INCR", "p"]).unwrap(),
        1,
        "expired counts as absent"
    );
    // GETDEL, STRLEN, GETRANGE, SETRANGE, TYPE
    assert_eq!(q::<String>(&mut con, &["GETDEL", "a"]).unwrap(), "3");
    assert_eq!(
        q::<Option<String>>(&mut con, &["GETDEL", "a"]).unwrap(),
        None
    );
    ok(q(&mut con, &["SET", "s", "Hello World"]));
    assert_eq!(q::<i64>(&mut con, &["STRLEN", "s"]).unwrap(), 11);
    assert_eq!(
        q::<String>(&mut con, &["GETRANGE", "s", "-5", "-1"]).unwrap(),
        "World"
    );
    assert_eq!(
        q::<i64>(&mut con, &["SETRANGE", "s", "6", "Redis"]).unwrap(),
        11
    );
    assert_eq!(q::<String>(&mut con, &["GET", "s"]).unwrap(), "Hello Redis");
    assert_eq!(q::<String>(&mut con, &["TYPE", "s"]).unwrap(), "string");
    assert_eq!(q::<String>(&mut con, &["TYPE", "nosuch"]).unwrap(), "none");
    // Errors as Redis words them
    assert!(
        err_text(q(&mut con, &["SET", "k", "v", "EX", "0"]))
            .contains("invalid expire time in 'set'")
    );
    assert!(err_text(q(&mut con, &["SET", "k", "v", "EX", "x"])).contains("not an integer"));
    assert!(
        err_text(q(&mut con, &["SET", "k", "v", "EX", "1", "PX", "1"])).contains("syntax error")
    );
    assert!(err_text(q(&mut con, &["EXPIRE", "k", "1", "ZZ"])).contains("Unsupported option"));
    assert!(err_text(q(&mut con, &["TTL"])).contains("wrong number"));
    // The sweep frees what expired: many short-lived keys leave nothing behind.
    let before: i64 = q(&mut con, &["DBSIZE"]).unwrap();
    for i in 0..200 {
        ok(q(
            &mut con,
            &["SET", &format!("short-{i}"), "v", "PX", "100"],
        ));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let size: i64 = q(&mut con, &["DBSIZE"]).unwrap();
        if size <= before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "expired keys were never swept: {size} keys, {before} before"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `MULTI`/`EXEC` applies its commands as one; `WATCH` aborts it (nil) when a watched key
/// changed; a malformed command aborts it (`EXECABORT`); keys of several shards are refused
/// (`CROSSSLOT`)
#[test]
fn transactions_apply_at_once_and_watch_aborts_them() {
    let cluster = TestCluster::start(3, 2, None);
    let mut a = connect(&cluster, 0);
    let mut b = connect(&cluster, 2);
    let exec = |con: &mut Connection, cmds: &[&[&str]]| -> RedisResult<Value> {
        let _: String = q(con, &["MULTI"])?;
        for cmd in cmds {
            let queued: String = q(con, cmd)?;
            assert_eq!(queued, "QUEUED");
        }
        q(con, &["EXEC"])
    };
    let v = exec(
        &mut a,
        &[
            &["SET", "{u}n", "1"],
            &["INCR", "{u}n"],
            &["RPUSH", "{u}l", "x", "y"],
            &["LRANGE", "{u}l", "0", "-1"],
        ],
    )
    .unwrap();
    let Value::Array(replies) = v else {
        panic!("{v:?}")
    };
    assert_eq!(replies.len(), 4);
    assert_eq!(replies[1], Value::Int(2));
    assert_eq!(replies[2], Value::Int(2));
    // An error inside stays inside: the other commands of the transaction still apply.
    let failed = exec(
        &mut a,
        &[&["HSET", "{u}n", "f", "v"], &["SET", "{u}m", "1"]],
    );
    assert!(err_text(failed).contains("WRONGTYPE"));
    assert_eq!(q::<i64>(&mut a, &["GET", "{u}m"]).unwrap(), 1);
    // WATCH: untouched, the transaction runs; touched by another client, it does not.
    let _: String = q(&mut a, &["WATCH", "{u}n"]).unwrap();
    let ran = exec(&mut a, &[&["INCR", "{u}n"]]).unwrap();
    assert_eq!(ran, Value::Array(vec![Value::Int(3)]));
    let _: String = q(&mut a, &["WATCH", "{u}n"]).unwrap();
    let _: i64 = q(&mut b, &["INCR", "{u}n"]).unwrap();
    let aborted = exec(&mut a, &[&["INCR", "{u}n"]]).unwrap();
    assert_eq!(aborted, Value::Nil, "a watched key changed");
    assert_eq!(q::<i64>(&mut a, &["GET", "{u}n"]).unwrap(), 4);
    // UNWATCH forgets.
    let _: String = q(&mut a, &["WATCH", "{u}n"]).unwrap();
    let _: i64 = q(&mut b, &["INCR", "{u}n"]).unwrap();
    let _: String = q(&mut a, &["UNWATCH"]).unwrap();
    assert_eq!(
        exec(&mut a, &[&["INCR", "{u}n"]]).unwrap(),
        Value::Array(vec![Value::Int(6)])
    );
    // A malformed command aborts the whole transaction.
    let _: String = q(&mut a, &["MULTI"]).unwrap();
    let _: String = q(&mut a, &["SET", "{u}n", "9"]).unwrap();
    assert!(err_text(q(&mut a, &["INCRBY", "{u}n"])).contains("wrong number"));
    let aborted = err_text(q(&mut a, &["EXEC"]));
    assert!(
        aborted.contains("EXECABORT") || aborted.contains("ExecAbort"),
        "{aborted}"
    );
    assert_eq!(
        q::<i64>(&mut a, &["GET", "{u}n"]).unwrap(),
        6,
        "nothing ran"
    );
    // Keys of different shards cannot be one operation.
    let far = (0..)
        .map(|i| format!("far{i}"))
        .find(|k| {
            shale_core::shard::key_shard(k.as_bytes(), 8)
                != shale_core::shard::key_shard(b"{u}n", 8)
        })
        .unwrap();
    let _: String = q(&mut a, &["MULTI"]).unwrap();
    let _: String = q(&mut a, &["SET", "{u}n", "9"]).unwrap();
    let _: String = q(&mut a, &["SET", &far, "9"]).unwrap();
    let refused = err_text(q(&mut a, &["EXEC"]));
    assert!(refused.to_uppercase().contains("CROSSSLOT"), "{refused}");
    assert!(err_text(q(&mut a, &["EXEC"])).contains("without MULTI"));
    assert!(err_text(q(&mut a, &["DISCARD"])).contains("without MULTI"));
    let _: String = q(&mut a, &["MULTI"]).unwrap();
    assert!(err_text(q(&mut a, &["MULTI"])).contains("nested"));
    assert!(err_text(q(&mut a, &["WATCH", "x"])).contains("inside MULTI"));
    assert_eq!(q::<String>(&mut a, &["DISCARD"]).unwrap(), "OK");
    // Too large for one log entry: refused at once, not retried until the deadline (found
    // by review).
    let big = "x".repeat(1024 * 1024);
    let started = std::time::Instant::now();
    let _: String = q(&mut a, &["MULTI"]).unwrap();
    for k in ["{u}b1", "{u}b2", "{u}b3"] {
        let _: String = q(&mut a, &["SET", k, &big]).unwrap();
    }
    assert!(err_text(q(&mut a, &["EXEC"])).contains("exceeds the limit"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        q::<Option<String>>(&mut a, &["GET", "{u}b1"]).unwrap(),
        None
    );
}

/// The `redis` crate's atomic pipeline (`MULTI`/`EXEC` underneath), as applications use it
#[test]
fn the_redis_crate_atomic_pipeline_works() {
    let cluster = TestCluster::start(3, 1, None);
    let mut con = connect(&cluster, 1);
    let (n, list): (i64, Vec<String>) = redis::pipe()
        .atomic()
        .cmd("INCRBY")
        .arg("{p}counter")
        .arg(5)
        .cmd("LPUSH")
        .arg("{p}list")
        .arg("a")
        .ignore()
        .cmd("LRANGE")
        .arg("{p}list")
        .arg(0)
        .arg(-1)
        .query(&mut con)
        .unwrap();
    assert_eq!((n, list), (5, vec!["a".to_owned()]));
}

/// `SCAN` walks every shard (each key once when nothing changes), with `MATCH`, `COUNT` and
/// `TYPE`; `KEYS`, `RANDOMKEY`, `CLUSTER COUNTKEYSINSLOT`/`GETKEYSINSLOT`, `FLUSHALL`
#[test]
fn scan_keys_and_flushall_cover_every_shard() {
    let cluster = TestCluster::start(3, 2, None);
    let mut con = connect(&cluster, 0);
    let _: String = q(&mut con, &["FLUSHALL"]).unwrap();
    let mut expected = std::collections::BTreeSet::new();
    for i in 0..300 {
        let key = format!("scan-{i}");
        let _: () = q(&mut con, &["SET", &key, "v"]).unwrap();
        expected.insert(key);
    }
    let _: i64 = q(&mut con, &["SADD", "scan-set", "m"]).unwrap();
    let mut seen = Vec::new();
    let mut cursor = "0".to_owned();
    let mut calls = 0;
    loop {
        let (next, keys): (String, Vec<String>) = q(
            &mut con,
            &["SCAN", &cursor, "MATCH", "scan-[0-9]*", "COUNT", "50"],
        )
        .unwrap();
        seen.extend(keys);
        calls += 1;
        assert!(calls < 1_000, "SCAN never finished");
        if next == "0" {
            break;
        }
        cursor = next;
    }
    let distinct: std::collections::BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(distinct.len(), seen.len(), "a key twice in one quiet scan");
    assert_eq!(distinct, expected);
    let (_, sets): (String, Vec<String>) =
        q(&mut con, &["SCAN", "0", "TYPE", "set", "COUNT", "10000"]).unwrap();
    assert!(sets.iter().all(|k| k == "scan-set"), "{sets:?}");
    let mut keys: Vec<String> = q(&mut con, &["KEYS", "scan-1?"]).unwrap();
    keys.sort();
    let mut want: Vec<String> = (10..20).map(|i| format!("scan-{i}")).collect();
    want.sort();
    assert_eq!(keys, want);
    let random: Option<String> = q(&mut con, &["RANDOMKEY"]).unwrap();
    assert!(random.is_some_and(|k| k.starts_with("scan-")));
    let slot = shale_core::shard::key_slot(b"scan-7").to_string();
    let in_slot: i64 = q(&mut con, &["CLUSTER", "COUNTKEYSINSLOT", &slot]).unwrap();
    let listed: Vec<String> = q(&mut con, &["CLUSTER", "GETKEYSINSLOT", &slot, "1000"]).unwrap();
    assert_eq!(in_slot as usize, listed.len());
    assert!(listed.contains(&"scan-7".to_owned()), "{listed:?}");
    assert!(err_text(q(&mut con, &["SCAN", "x"])).contains("invalid cursor"));
    assert!(
        err_text(q(&mut con, &["CLUSTER", "COUNTKEYSINSLOT", "16384"])).contains("Invalid slot")
    );
    // RENAME, COPY, MSETNX, INCRBYFLOAT (one slot each)
    let _: () = q(&mut con, &["SET", "{r}a", "1"]).unwrap();
    let _: String = q(&mut con, &["RENAME", "{r}a", "{r}b"]).unwrap();
    assert_eq!(q::<i64>(&mut con, &["COPY", "{r}b", "{r}c"]).unwrap(), 1);
    assert_eq!(
        q::<i64>(&mut con, &["MSETNX", "{r}c", "x", "{r}d", "y"]).unwrap(),
        0
    );
    assert_eq!(
        q::<String>(&mut con, &["INCRBYFLOAT", "{r}c", "1.5"]).unwrap(),
        "2.5"
    );
    assert!(err_text(q(&mut con, &["RENAME", "{r}nope", "{r}x"])).contains("no such key"));
    let _: String = q(&mut con, &["FLUSHALL"]).unwrap();
    assert_eq!(q::<Option<String>>(&mut con, &["RANDOMKEY"]).unwrap(), None);
    let (next, left): (String, Vec<String>) =
        q(&mut con, &["SCAN", "0", "COUNT", "10000"]).unwrap();
    assert!(left.is_empty(), "{next} {left:?}");
}
