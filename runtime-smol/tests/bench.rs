//! The `shale bench` load generator against a tiny in-test RESP server

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use shale_runtime_smol::bench::reply::{Reply, ReplyError, ReplyReader};
use shale_runtime_smol::bench::{self, BenchConfig, BenchError, BenchReport};

/// Measured window of every run in these tests
const RUN_DURATION: Duration = Duration::from_millis(300);

/// Longest a test run may take from `run` to report, setup and drain included
const RUN_WALL_MAX: Duration = Duration::from_secs(2);

/// How the fake server behaves
#[derive(Clone, Default)]
struct FakeOptions {
    /// Commands other than AUTH get `-NOAUTH` until this password is given
    password: Option<String>,
    /// Keys `key:<n>` with `n % error_every == 0` are answered with `-ERR`
    error_every: Option<u64>,
    /// Close each connection after this many commands
    close_after: Option<u64>,
}

/// A thread-per-connection RESP server over a shared map
struct FakeServer {
    addr: SocketAddr,
    store: Arc<Mutex<HashMap<Vec<u8>, Vec<u8>>>>,
    auths_ok: Arc<AtomicU64>,
}

impl FakeServer {
    fn start(options: FakeOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test port");
        let server = Self {
            addr: listener.local_addr().expect("local addr"),
            store: Arc::default(),
            auths_ok: Arc::default(),
        };
        let (store, auths_ok) = (Arc::clone(&server.store), Arc::clone(&server.auths_ok));
        // Accepting threads are left behind when the test ends; the process exit reaps them.
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (store, auths_ok, options) =
                    (Arc::clone(&store), Arc::clone(&auths_ok), options.clone());
                thread::spawn(move || serve(stream, &store, &auths_ok, &options));
            }
        });
        server
    }

    fn keys(&self) -> usize {
        self.store.lock().unwrap().len()
    }
}

fn serve(
    stream: TcpStream,
    store: &Mutex<HashMap<Vec<u8>, Vec<u8>>>,
    auths_ok: &AtomicU64,
    options: &FakeOptions,
) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut writer = BufWriter::new(stream);
    let mut authed = options.password.is_none();
    let mut served = 0;
    while let Some(args) = read_command(&mut reader) {
        if options.close_after.is_some_and(|limit| served >= limit) {
            return;
        }
        served += 1;
        let is_error_key = |key: &[u8]| {
            let n: u64 = std::str::from_utf8(&key[4..]).unwrap().parse().unwrap();
            options
                .error_every
                .is_some_and(|every| n.is_multiple_of(every))
        };
        let reply: Vec<u8> = match (args[0].as_slice(), args.len()) {
            (b"AUTH", 2)
                if Some(args[1].as_slice()) == options.password.as_deref().map(str::as_bytes) =>
            {
                authed = true;
                auths_ok.fetch_add(1, Ordering::Relaxed);
                b"+OK\r\n".to_vec()
            }
            (b"AUTH", _) => b"-WRONGPASS invalid password\r\n".to_vec(),
            _ if !authed => b"-NOAUTH Authentication required.\r\n".to_vec(),
            (b"SET" | b"GET", _) if is_error_key(&args[1]) => b"-ERR injected\r\n".to_vec(),
            (b"SET", 3) => {
                store
                    .lock()
                    .unwrap()
                    .insert(args[1].clone(), args[2].clone());
                b"+OK\r\n".to_vec()
            }
            (b"GET", 2) => match store.lock().unwrap().get(&args[1]) {
                Some(value) => {
                    let mut out = format!("${}\r\n", value.len()).into_bytes();
                    out.extend_from_slice(value);
                    out.extend_from_slice(b"\r\n");
                    out
                }
                None => b"$-1\r\n".to_vec(),
            },
            _ => b"-ERR unknown command\r\n".to_vec(),
        };
        if writer.write_all(&reply).is_err() {
            return;
        }
        // Flush once all pipelined requests already received are answered.
        if reader.buffer().is_empty() && writer.flush().is_err() {
            return;
        }
    }
}

/// One RESP array of bulk strings, or `None` when the client is gone
fn read_command(reader: &mut BufReader<TcpStream>) -> Option<Vec<Vec<u8>>> {
    let count: usize = header(reader, b'*')?;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let len: usize = header(reader, b'$')?;
        let mut arg = vec![0; len + 2];
        reader.read_exact(&mut arg).ok()?;
        arg.truncate(len);
        args.push(arg);
    }
    Some(args)
}

fn header(reader: &mut BufReader<TcpStream>, prefix: u8) -> Option<usize> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    assert_eq!(line.as_bytes()[0], prefix, "client sent {line:?}");
    line[1..].trim_end().parse().ok()
}

fn config(server: &FakeServer) -> BenchConfig {
    let mut config = BenchConfig::new(vec![server.addr]);
    config.clients = 4;
    config.keyspace = 1000;
    config.value_bytes = 16;
    config.duration = RUN_DURATION;
    config.warmup = Duration::from_millis(50);
    config
}

/// Runs `config`, checking the run's wall time and the report's internal consistency
fn run_checked(config: &BenchConfig) -> BenchReport {
    let started = Instant::now();
    let report = bench::run(config).expect("bench run");
    let wall = started.elapsed();
    assert!(wall < RUN_WALL_MAX, "run took {wall:?}");
    assert!(
        wall >= config.warmup + config.duration,
        "run took only {wall:?}"
    );
    assert!(report.elapsed >= config.duration);
    assert!(report.elapsed < config.duration + Duration::from_millis(500));
    assert!(report.ops > 0, "no ops: {report:?}");
    assert_eq!(report.ops, report.reads + report.writes);
    assert_eq!(report.errors, report.read_errors + report.write_errors);
    assert_eq!(report.latency.count, report.ops);
    assert_eq!(report.read_latency.count, report.reads);
    assert_eq!(report.write_latency.count, report.writes);
    assert_eq!(report.unanswered, 0);
    let l = report.latency;
    assert!(1 <= l.p50_us && l.p50_us <= l.p99_us && l.p99_us <= l.p999_us);
    assert!(l.p999_us <= l.max_us);
    assert_eq!(report.clients, config.clients);
    assert_eq!(report.pipeline, config.pipeline);
    report
}

#[test]
fn mixed_run_counts_add_up() {
    let server = FakeServer::start(FakeOptions::default());
    let mut config = config(&server);
    config.read_ratio = 0.7;
    let report = run_checked(&config);
    assert!(
        report.ops >= 100,
        "too few ops to check the mix: {report:?}"
    );
    let read_share = report.reads as f64 / report.ops as f64;
    assert!((read_share - 0.7).abs() < 0.1, "read share {read_share}");
    assert_eq!(report.errors, 0);
    assert!(report.read_hits() + report.read_misses == report.reads);
    let ops_per_sec = report.ops as f64 / report.elapsed.as_secs_f64();
    assert!((report.ops_per_sec() - ops_per_sec).abs() < 1e-6);

    let text = report.to_string();
    println!("{text}");
    assert!(text.starts_with("throughput: "), "{text}");
    assert!(text.contains("4 clients, pipeline 1"), "{text}");
    assert!(text.contains("latency (ms): p50 "), "{text}");
    assert!(text.contains("errors: 0 (reads 0, writes 0)"), "{text}");
}

#[test]
fn pipelined_run_works() {
    let server = FakeServer::start(FakeOptions::default());
    let mut config = config(&server);
    config.clients = 2;
    config.pipeline = 16;
    config.value_bytes = 100;
    config.progress = true;
    let report = run_checked(&config);
    assert!(report.ops >= 16, "{report:?}");
    assert_eq!(report.errors, 0);
}

#[test]
fn clients_spread_over_targets() {
    let (a, b) = (
        FakeServer::start(FakeOptions::default()),
        FakeServer::start(FakeOptions::default()),
    );
    let mut config = config(&a);
    config.targets.push(b.addr);
    config.read_ratio = 0.0;
    run_checked(&config);
    assert!(a.keys() > 0);
    assert!(b.keys() > 0);
}

#[test]
fn reads_after_writes_all_hit() {
    let server = FakeServer::start(FakeOptions::default());
    let mut config = config(&server);
    config.keyspace = 16;
    config.read_ratio = 0.0;
    let writes = run_checked(&config);
    assert_eq!(writes.reads, 0);
    assert_eq!(server.keys(), 16, "the write run missed keys: {writes:?}");

    config.read_ratio = 1.0;
    config.seed = 99;
    let reads = run_checked(&config);
    assert_eq!(reads.writes, 0);
    assert_eq!(reads.read_misses, 0);
    assert_eq!(reads.read_hits(), reads.reads);
}

#[test]
fn error_replies_are_counted_per_kind() {
    let server = FakeServer::start(FakeOptions {
        error_every: Some(4),
        ..FakeOptions::default()
    });
    let mut config = config(&server);
    config.read_ratio = 0.5;
    config.pipeline = 4;
    let report = run_checked(&config);
    assert!(report.read_errors > 0, "{report:?}");
    assert!(report.write_errors > 0, "{report:?}");
    let error_share = report.errors as f64 / report.ops as f64;
    assert!(
        (error_share - 0.25).abs() < 0.1,
        "error share {error_share}"
    );
    assert!(
        report
            .to_string()
            .contains(&format!("errors: {} (", report.errors))
    );
}

#[test]
fn auth_is_sent_first() {
    let server = FakeServer::start(FakeOptions {
        password: Some("hunter2".into()),
        ..FakeOptions::default()
    });
    let mut config = config(&server);
    config.password = Some("hunter2".into());
    let report = run_checked(&config);
    assert_eq!(report.errors, 0, "requests were refused: {report:?}");
    assert_eq!(server.auths_ok.load(Ordering::Relaxed), 4);
}

#[test]
fn wrong_password_names_the_address() {
    let server = FakeServer::start(FakeOptions {
        password: Some("hunter2".into()),
        ..FakeOptions::default()
    });
    let mut config = config(&server);
    config.password = Some("guess".into());
    let err = bench::run(&config).expect_err("AUTH must fail");
    assert!(
        matches!(err, BenchError::Auth { addr, .. } if addr == server.addr),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains(&server.addr.to_string()), "{text}");
    assert!(text.contains("WRONGPASS"), "{text}");
}

#[test]
fn unreachable_address_is_a_connect_error() {
    let addr = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let mut config = BenchConfig::new(vec![addr]);
    config.duration = RUN_DURATION;
    let started = Instant::now();
    let err = bench::run(&config).expect_err("nothing listens there");
    assert!(started.elapsed() < RUN_WALL_MAX);
    assert!(
        matches!(err, BenchError::Connect { addr: a, .. } if a == addr),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to {addr}: ")),
        "{err}"
    );
}

#[test]
fn connection_closed_mid_run_fails_the_run() {
    let server = FakeServer::start(FakeOptions {
        close_after: Some(50),
        ..FakeOptions::default()
    });
    let config = config(&server);
    let started = Instant::now();
    let err = bench::run(&config).expect_err("the server hangs up");
    assert!(started.elapsed() < RUN_WALL_MAX);
    assert!(
        matches!(err, BenchError::Broken { addr, .. } if addr == server.addr),
        "{err:?}"
    );
    assert!(err.to_string().contains(&server.addr.to_string()), "{err}");
}

#[test]
fn validate_rejects_bad_configs() {
    let addr: SocketAddr = "127.0.0.1:6379".parse().unwrap();
    let good = BenchConfig::new(vec![addr]);
    assert_eq!(good.validate(), Ok(()));
    type Spoil = fn(&mut BenchConfig);
    let cases: [(&str, Spoil); 9] = [
        ("no targets", |c| c.targets.clear()),
        ("clients must be in 1..=", |c| c.clients = 0),
        ("pipeline must be in 1..=", |c| c.pipeline = 0),
        ("keyspace must be at least 1", |c| c.keyspace = 0),
        ("read ratio must be in 0.0..=1.0", |c| c.read_ratio = 1.5),
        ("read ratio must be in 0.0..=1.0", |c| c.read_ratio = -0.1),
        ("read ratio must be in 0.0..=1.0", |c| {
            c.read_ratio = f64::NAN
        }),
        ("duration must be longer than zero", |c| {
            c.duration = Duration::ZERO
        }),
        ("value size must be at most", |c| c.value_bytes = usize::MAX),
    ];
    for (expected, spoil) in cases {
        let mut config = good.clone();
        spoil(&mut config);
        let message = config.validate().expect_err(expected);
        assert!(message.starts_with(expected), "{message:?} vs {expected:?}");
    }
    let mut config = good;
    config.clients = 0;
    let err = bench::run(&config).expect_err("invalid");
    assert!(matches!(err, BenchError::Config(_)), "{err:?}");
}

// ---- the reply reader ----

const ALL_KINDS: &[u8] = b"+OK\r\n-ERR bad thing\r\n:-42\r\n$5\r\nhe\r\nl\r\n$0\r\n\r\n$-1\r\n\
*3\r\n:1\r\n*2\r\n+a\r\n$1\r\nb\r\n$-1\r\n*-1\r\n*0\r\n";

fn all_kinds_replies() -> Vec<Reply> {
    vec![
        Reply::Simple(b"OK".to_vec()),
        Reply::Error(b"ERR bad thing".to_vec()),
        Reply::Integer(-42),
        Reply::Bulk(b"he\r\nl".to_vec()),
        Reply::Bulk(Vec::new()),
        Reply::Null,
        Reply::Array(vec![
            Reply::Integer(1),
            Reply::Array(vec![
                Reply::Simple(b"a".to_vec()),
                Reply::Bulk(b"b".to_vec()),
            ]),
            Reply::Null,
        ]),
        Reply::Null,
        Reply::Array(Vec::new()),
    ]
}

fn read_in_pieces(input: &[u8], piece: usize) -> Result<Vec<Reply>, ReplyError> {
    let mut reader = ReplyReader::new();
    let mut replies = Vec::new();
    for chunk in input.chunks(piece) {
        reader.feed(chunk);
        while let Some(reply) = reader.next_reply()? {
            replies.push(reply);
        }
    }
    assert_eq!(reader.buffered_bytes(), 0);
    Ok(replies)
}

#[test]
fn reply_reader_handles_every_split() {
    for piece in 1..=ALL_KINDS.len() {
        assert_eq!(
            read_in_pieces(ALL_KINDS, piece),
            Ok(all_kinds_replies()),
            "pieces of {piece} bytes"
        );
    }
}

#[test]
fn reply_reader_reads_from_a_stream() {
    let mut src = ALL_KINDS;
    let mut reader = ReplyReader::new();
    let mut replies = Vec::new();
    while reader.fill_from(&mut src).unwrap() > 0 {
        while let Some(reply) = reader.next_reply().unwrap() {
            replies.push(reply);
        }
    }
    assert_eq!(replies, all_kinds_replies());
}

#[test]
fn reply_reader_rejects_bad_input_before_allocating() {
    let reject = |input: &[u8]| {
        let mut reader = ReplyReader::new();
        reader.feed(input);
        reader.next_reply().expect_err("must be rejected")
    };
    assert_eq!(
        reject(b"$600000000\r\n"),
        ReplyError::BulkTooLong(600_000_000)
    );
    assert_eq!(
        reject(b"*9999999999\r\n"),
        ReplyError::ArrayTooLong(9_999_999_999)
    );
    assert_eq!(reject(b"!3\r\nabc\r\n"), ReplyError::UnknownType(b'!'));
    assert_eq!(reject(b":12x\r\n"), ReplyError::BadNumber);
    assert_eq!(reject(b"$-2\r\n"), ReplyError::BadNumber);
    assert_eq!(reject(b"$3\r\nabcd\r\n"), ReplyError::MissingCrlf);
    assert_eq!(reject(&[b'+'; 70_000]), ReplyError::LineTooLong);
    assert_eq!(reject(&b"*1\r\n".repeat(9)), ReplyError::TooDeep);
    assert_eq!(
        Reply::Bulk(vec![0; 1 << 20]).describe(),
        "bulk string of 1048576 bytes"
    );
    assert!(Reply::Error(vec![b'E'; 1 << 20]).describe().len() < 80);
    // A bulk that announces a legal but large size is just incomplete, not allocated up front.
    let mut reader = ReplyReader::new();
    reader.feed(b"$500000000\r\nabc");
    assert_eq!(reader.next_reply(), Ok(None));
    assert!(reader.buffered_bytes() < 64);
}
