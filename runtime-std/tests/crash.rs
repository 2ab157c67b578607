//! Crash tests: a writer process is killed with SIGKILL at a random moment while it persists
//! through [`GroupCommit`], the directory is reopened, and nothing it was told is durable may
//! be missing or changed
//!
//! No extra binary: the test binary runs itself as the writer, filtered down to the
//! `crash_child` test, which does nothing unless `SHALE_CRASH_CHILD_DIR` is set. The child
//! prints one line per acknowledged request on stdout (flushed before it makes the next
//! request), so every line the parent reads after the kill was acknowledged before it.
//!
//! Environment:
//!
//! - `SHALE_CRASH_ROUNDS`: kill/reopen rounds per test (default 8);
//! - `SHALE_SEED`: the seed of the kill timings and of the second test's writes (default
//!   fixed); a failure prints it, so `SHALE_SEED=<seed>` replays the same schedule (the
//!   moment the kill lands still depends on the machine).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use shale_core::raft::{Entry, EntryKind, HardState, Index, Payload, Recovered, Term, Write};
use shale_runtime_std::{GroupCommit, GroupCommitConfig, Storage, StorageConfig};

/// Set in the child: its storage directory
const DIR_VAR: &str = "SHALE_CRASH_CHILD_DIR";
/// Set in the child: which workload (`append` or `truncate`)
const MODE_VAR: &str = "SHALE_CRASH_CHILD_MODE";
/// Set in the child: the round number
const ROUND_VAR: &str = "SHALE_CRASH_CHILD_ROUND";
/// Set in the child: the seed of its random choices
const SEED_VAR: &str = "SHALE_CRASH_CHILD_SEED";

const DEFAULT_ROUNDS: u32 = 8;
const DEFAULT_SEED: u64 = 0x5ca1_ab1e_c0ff_ee42;
/// Concurrent appenders in the group commit workload
const WRITERS: u32 = 32;
/// How long the parent waits for the child's first acknowledgement
const FIRST_ACK_TIMEOUT: Duration = Duration::from_secs(20);
/// A child whose parent is gone (and never killed it) stops by itself after this long
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

fn config(mode: Mode) -> StorageConfig {
    StorageConfig {
        max_segment_bytes: match mode {
            Mode::Append => 16 << 10,
            Mode::Truncate => 512,
        },
        // Zeros are written ahead of every append, so kills land in them too.
        ..StorageConfig::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Many threads appending through group commit
    Append,
    /// One thread mixing appends with writes that replace a suffix of the log in a new term
    Truncate,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Append => "append",
            Mode::Truncate => "truncate",
        }
    }
}

// ----- randomness -----

/// SplitMix64's output function
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small seeded generator (SplitMix64)
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `lo..=hi`
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn seed() -> u64 {
    match std::env::var("SHALE_SEED") {
        Ok(s) => {
            let s = s.trim();
            let parsed = match s.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => s.parse(),
            };
            parsed.unwrap_or_else(|_| panic!("SHALE_SEED={s:?} is not a number"))
        }
        Err(_) => DEFAULT_SEED,
    }
}

fn rounds() -> u32 {
    std::env::var("SHALE_CRASH_ROUNDS").map_or(DEFAULT_ROUNDS, |s| {
        s.trim()
            .parse()
            .unwrap_or_else(|_| panic!("SHALE_CRASH_ROUNDS={s:?} is not a number"))
    })
}

// ----- payloads -----

/// The bytes the child stores for `(a, b, c)`: the three numbers, then filler of a length
/// and content derived from them, so a record's size varies and any change to it shows
fn payload(a: u32, b: u32, c: u64, max_filler: u64) -> Vec<u8> {
    let h = mix((u64::from(a) << 40) ^ (u64::from(b) << 24) ^ c ^ max_filler.rotate_left(56));
    let filler = (h % (max_filler + 1)) as usize;
    let mut v = Vec::with_capacity(16 + filler);
    v.extend_from_slice(&a.to_le_bytes());
    v.extend_from_slice(&b.to_le_bytes());
    v.extend_from_slice(&c.to_le_bytes());
    let base = (h >> 32) as u8;
    v.extend((0..filler).map(|i| base ^ (i as u8)));
    v
}

/// The `(a, b, c)` a payload was made from, if it is exactly such a payload
fn decode(bytes: &[u8], max_filler: u64) -> Option<(u32, u32, u64)> {
    let a = u32::from_le_bytes(bytes.get(0..4)?.try_into().ok()?);
    let b = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let c = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
    (payload(a, b, c, max_filler) == bytes).then_some((a, b, c))
}

/// Filler bound of the group commit workload
const APPEND_FILLER: u64 = 600;
/// Filler bound of the truncation workload
const TRUNCATE_FILLER: u64 = 200;

// ----- the child -----

/// Prints one line and flushes it; a child that cannot (its parent is gone) stops
fn say(line: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        std::process::exit(3);
    }
}

/// Reports a failure of the child on stdout and exits (the parent fails the test with it)
fn die(what: std::fmt::Arguments<'_>) -> ! {
    say(format_args!("error {what}"));
    std::process::exit(2);
}

fn child_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| die(format_args!("{name} is not set")))
}

/// The writer process: does nothing unless started by one of the crash tests
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(DIR_VAR) else {
        return;
    };
    let round: u32 = child_var(ROUND_VAR)
        .parse()
        .unwrap_or_else(|e| die(format_args!("bad round: {e}")));
    let seed: u64 = child_var(SEED_VAR)
        .parse()
        .unwrap_or_else(|e| die(format_args!("bad seed: {e}")));
    let deadline = Instant::now() + CHILD_LIFETIME;
    // libtest has printed `test crash_child ... ` without a newline: end that line.
    say(format_args!(""));
    match child_var(MODE_VAR).as_str() {
        "append" => append_child(Path::new(&dir), round, deadline),
        "truncate" => truncate_child(Path::new(&dir), round, seed, deadline),
        other => die(format_args!("unknown mode {other:?}")),
    }
}

/// `WRITERS` threads appending forever; prints `ack <index> <round> <thread> <seq>` after each
/// acknowledged append
fn append_child(dir: &Path, round: u32, deadline: Instant) -> ! {
    let (storage, _) = Storage::open_with(dir, config(Mode::Append))
        .unwrap_or_else(|e| die(format_args!("open: {e}")));
    let gc = GroupCommit::start(storage, GroupCommitConfig::default());
    // Each round is a new term, so the log's terms show which round wrote what.
    gc.write(Write {
        hard_state: Some(HardState {
            term: Term::from(round) + 1,
            vote: Some(1),
        }),
        ..Write::default()
    })
    .unwrap_or_else(|e| die(format_args!("hard state: {e}")));
    std::thread::scope(|s| {
        for thread in 0..WRITERS {
            let gc = &gc;
            s.spawn(move || {
                for seq in 0.. {
                    if Instant::now() > deadline {
                        std::process::exit(4);
                    }
                    let data = Payload::from(payload(round, thread, seq, APPEND_FILLER));
                    let index = gc
                        .append(data)
                        .unwrap_or_else(|e| die(format_args!("append: {e}")));
                    say(format_args!("ack {index} {round} {thread} {seq}"));
                }
            });
        }
    });
    die(format_args!("writers stopped"))
}

/// One thread, forever: appends, or writes replacing a suffix of the log in a new term (with
/// the new hard state). Before each request it prints
/// `intent <a|w> <op> <term> <first index> <count>`, after it `done <op>`.
fn truncate_child(dir: &Path, round: u32, seed: u64, deadline: Instant) -> ! {
    let (storage, recovered) = Storage::open_with(dir, config(Mode::Truncate))
        .unwrap_or_else(|e| die(format_args!("open: {e}")));
    let mut last = recovered.entries.last().map_or(0, |e| e.index);
    let mut term = recovered.hard_state.term;
    let gc = GroupCommit::start(storage, GroupCommitConfig::default());
    let mut rng = Rng(mix(seed ^ u64::from(round)));
    for op in 0u64.. {
        if Instant::now() > deadline {
            std::process::exit(4);
        }
        // The first request of a round is a write: it sets the hard state appends need.
        if op == 0 || rng.range(0, 2) == 0 {
            let back = rng.range(0, last.min(40));
            let first = last + 1 - back;
            let count = rng.range(1, 6);
            let new_term = term + 1;
            say(format_args!("intent w {op} {new_term} {first} {count}"));
            let entries = truncate_entries(round, op, new_term, first, count);
            gc.write(Write {
                id: op + 1,
                hard_state: Some(HardState {
                    term: new_term,
                    vote: Some(1),
                }),
                entries,
                ..Write::default()
            })
            .unwrap_or_else(|e| die(format_args!("write: {e}")));
            last = first + count - 1;
            term = new_term;
        } else {
            say(format_args!("intent a {op} {term} {} 1", last + 1));
            let data = Payload::from(payload(round, 0, op, TRUNCATE_FILLER));
            let index = gc
                .append(data)
                .unwrap_or_else(|e| die(format_args!("append: {e}")));
            if index != last + 1 {
                die(format_args!(
                    "append got index {index}, expected {}",
                    last + 1
                ));
            }
            last = index;
        }
        say(format_args!("done {op}"));
    }
    die(format_args!("ran out of operations"))
}

/// The entries of a request of the truncation workload (entry `i` gets payload
/// `(round, i, op)`)
fn truncate_entries(round: u32, op: u64, term: Term, first: Index, count: u64) -> Vec<Entry> {
    (0..count)
        .map(|i| Entry {
            term,
            index: first + i,
            kind: EntryKind::Command,
            data: payload(round, i as u32, op, TRUNCATE_FILLER).into(),
        })
        .collect()
}

// ----- the parent -----

/// A running child; killed and reaped when dropped, so a failing test leaves none behind
struct ChildGuard {
    child: Child,
    /// Lines of interest read so far (all but libtest's own)
    reader: Option<JoinHandle<Vec<String>>>,
    stderr: Option<JoinHandle<String>>,
    /// Lines starting with `ack ` or `done ` read so far
    acks: Arc<AtomicUsize>,
}

impl ChildGuard {
    fn spawn(dir: &Path, mode: Mode, round: u32, seed: u64) -> ChildGuard {
        let exe = std::env::current_exe().expect("current test binary");
        let mut child = Command::new(exe)
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(DIR_VAR, dir)
            .env(MODE_VAR, mode.name())
            .env(ROUND_VAR, round.to_string())
            .env(SEED_VAR, seed.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().expect("child stdout");
        let stderr = child.stderr.take().expect("child stderr");
        let acks = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&acks);
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(mut line) = line else { break };
                // In case the child's first line still follows libtest's.
                if let Some(rest) = line.strip_prefix("test crash_child ... ") {
                    line = rest.to_owned();
                }
                if line.starts_with("ack ") || line.starts_with("done ") {
                    counter.fetch_add(1, Ordering::Relaxed);
                } else if !line.starts_with("intent ") && !line.starts_with("error ") {
                    continue;
                }
                lines.push(line);
            }
            lines
        });
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        ChildGuard {
            child,
            reader: Some(reader),
            stderr: Some(stderr),
            acks,
        }
    }

    /// Has the child exited by itself?
    fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Kills the child, reaps it, and returns every line it printed (everything it wrote
    /// before dying is still in the pipe) and its stderr
    fn kill(mut self) -> (Vec<String>, String) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let lines = self
            .reader
            .take()
            .map(|r| r.join().expect("stdout reader"))
            .unwrap_or_default();
        let stderr = self
            .stderr
            .take()
            .map(|r| r.join().expect("stderr reader"))
            .unwrap_or_default();
        (lines, stderr)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a child, lets it write for a random while after its first acknowledgement, kills
/// it; returns its lines
fn run_round(dir: &Path, mode: Mode, round: u32, seed: u64, rng: &mut Rng) -> Vec<String> {
    let delay = Duration::from_millis(rng.range(20, 300));
    let min_acks = rng.range(1, 64) as usize;
    let mut child = ChildGuard::spawn(dir, mode, round, seed);
    let started = Instant::now();
    let mut first_ack = None;
    loop {
        let acks = child.acks.load(Ordering::Relaxed);
        let now = Instant::now();
        if acks > 0 && first_ack.is_none() {
            first_ack = Some(now);
        }
        if let Some(at) = first_ack
            && acks >= min_acks
            && now >= at + delay
        {
            break;
        }
        if child.exited() {
            let (lines, stderr) = child.kill();
            let errors: Vec<_> = lines.iter().filter(|l| l.starts_with("error ")).collect();
            panic!(
                "seed {seed} ({mode:?}) round {round}: the child exited by itself \
                 (replay with SHALE_SEED={seed}); its errors: {errors:?}\nstderr:\n{stderr}"
            );
        }
        // The first acknowledgement, or the few wanted before the kill, are overdue: the
        // child is stuck.
        if now > started + FIRST_ACK_TIMEOUT + delay {
            let (_, stderr) = child.kill();
            panic!(
                "seed {seed} ({mode:?}) round {round}: {acks} acknowledgements from the child \
                 within {FIRST_ACK_TIMEOUT:?}, {min_acks} wanted (replay with SHALE_SEED={seed})\
                 \nstderr:\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let (lines, stderr) = child.kill();
    if let Some(error) = lines.iter().find(|l| l.starts_with("error ")) {
        panic!(
            "seed {seed} ({mode:?}) round {round}: the child failed (replay with \
             SHALE_SEED={seed}): {error}\nstderr:\n{stderr}"
        );
    }
    lines
}

fn reopen(dir: &Path, mode: Mode, seed: u64, round: u32) -> Recovered {
    match Storage::open_with(dir, config(mode)) {
        Ok((_storage, recovered)) => recovered,
        Err(e) => panic!(
            "seed {seed} ({mode:?}) round {round}: reopening after the kill failed \
             (replay with SHALE_SEED={seed}): {e}"
        ),
    }
}

/// Size of the newest log segment file (0 if none)
fn last_segment_len(dir: &Path) -> u64 {
    let newest = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max();
    newest.map_or(0, |p| std::fs::metadata(p).expect("stat").len())
}

/// What the parent knows of the group commit workload across rounds
#[derive(Default)]
struct AppendState {
    /// Every acknowledged append: index → (round, thread, seq)
    acked: BTreeMap<Index, (u32, u32, u64)>,
    /// Entries found per (round, thread) after the round in which they were written; later
    /// recoveries must find exactly as many
    found: BTreeMap<(u32, u32), u64>,
}

impl AppendState {
    /// Takes in one round's acknowledgements
    fn record(
        &mut self,
        round: u32,
        lines: &[String],
    ) -> Result<(u64, BTreeMap<u32, u64>), String> {
        let mut acks = 0;
        // Per thread of this round: acknowledged appends (they are acknowledged in seq order).
        let mut printed: BTreeMap<u32, u64> = BTreeMap::new();
        for line in lines.iter().filter(|l| l.starts_with("ack ")) {
            let fields: Vec<u64> = line[4..]
                .split(' ')
                .map(|f| f.parse().map_err(|e| format!("bad line {line:?}: {e}")))
                .collect::<Result<_, _>>()?;
            let &[index, r, thread, seq] = fields.as_slice() else {
                return Err(format!("bad line {line:?}"));
            };
            let (r, thread) = (r as u32, thread as u32);
            if r != round {
                return Err(format!("ack of round {r} in round {round}: {line:?}"));
            }
            let next = printed.entry(thread).or_default();
            if seq != *next {
                return Err(format!(
                    "thread {thread} acknowledged seq {seq}, expected {next}"
                ));
            }
            *next += 1;
            if let Some(old) = self.acked.insert(index, (r, thread, seq)) {
                return Err(format!(
                    "index {index} acknowledged twice: for {old:?}, then for {:?}",
                    (r, thread, seq)
                ));
            }
            acks += 1;
        }
        Ok((acks, printed))
    }

    /// Checks a recovery after round `round`, whose acknowledged appends per thread were
    /// `printed`
    fn check(
        &mut self,
        round: u32,
        printed: &BTreeMap<u32, u64>,
        recovered: &Recovered,
    ) -> Result<(), String> {
        let term = Term::from(round) + 1;
        if recovered.hard_state.term != term {
            return Err(format!(
                "hard state term {}, expected {term}",
                recovered.hard_state.term
            ));
        }
        if recovered.snapshot.is_some() {
            return Err("a snapshot appeared".into());
        }
        let mut decoded = Vec::with_capacity(recovered.entries.len());
        let mut seen = BTreeSet::new();
        let mut counts: BTreeMap<(u32, u32), u64> = BTreeMap::new();
        let mut prev_round = 0;
        for (position, entry) in recovered.entries.iter().enumerate() {
            let index = position as Index + 1;
            if entry.index != index {
                return Err(format!(
                    "log not contiguous from 1: entry {position} has index {}",
                    entry.index
                ));
            }
            let Some((r, thread, seq)) = decode(entry.data.as_bytes(), APPEND_FILLER) else {
                return Err(format!(
                    "entry {index} holds a payload the child never wrote ({} bytes)",
                    entry.data.len()
                ));
            };
            if entry.kind != EntryKind::Command {
                return Err(format!("entry {index} is {:?}", entry.kind));
            }
            if r > round || r < prev_round {
                return Err(format!(
                    "entry {index} is from round {r}, after round {prev_round}, in round {round}"
                ));
            }
            prev_round = r;
            if entry.term != Term::from(r) + 1 {
                return Err(format!(
                    "entry {index} from round {r} has term {}",
                    entry.term
                ));
            }
            if !seen.insert((r, thread, seq)) {
                return Err(format!(
                    "entry {index}: {:?} stored twice",
                    (r, thread, seq)
                ));
            }
            // A writer's appends are made one after the other, so its entries are in seq
            // order with no gaps.
            let count = counts.entry((r, thread)).or_default();
            if seq != *count {
                return Err(format!(
                    "entry {index}: round {r} thread {thread} seq {seq}, expected seq {count}"
                ));
            }
            *count += 1;
            decoded.push((r, thread, seq));
        }
        for (&index, &want) in &self.acked {
            match decoded.get((index - 1) as usize) {
                Some(&got) if got == want => {}
                Some(got) => {
                    return Err(format!(
                        "acknowledged entry {index} {want:?} was replaced by {got:?}"
                    ));
                }
                None => {
                    return Err(format!(
                        "acknowledged entry {index} {want:?} is lost (the log ends at {})",
                        decoded.len()
                    ));
                }
            }
        }
        // Earlier rounds: exactly what was found after them.
        for (&(r, thread), &n) in &self.found {
            let got = counts.get(&(r, thread)).copied().unwrap_or(0);
            if got != n {
                return Err(format!(
                    "round {r} thread {thread}: {got} entries, {n} after round {r}"
                ));
            }
        }
        // This round: every acknowledged append, and at most the one in flight beyond.
        for thread in 0..WRITERS {
            let acked = printed.get(&thread).copied().unwrap_or(0);
            let got = counts.get(&(round, thread)).copied().unwrap_or(0);
            if got != acked && got != acked + 1 {
                return Err(format!(
                    "thread {thread}: {got} entries recovered, {acked} acknowledged"
                ));
            }
            self.found.insert((round, thread), got);
        }
        Ok(())
    }
}

/// Kills a child appending from `WRITERS` threads through group commit (batches of many
/// appends, one `fdatasync` each, segments rolling every 16 KiB) at a random moment, reopens,
/// and checks that every append the child saw acknowledged is in the log with its payload,
/// that the log is contiguous, and that it holds nothing the child did not write; then the
/// next round appends after what was recovered.
///
/// `SHALE_CRASH_ROUNDS` (default 8) sets the number of rounds, `SHALE_SEED` the seed.
#[test]
fn kill_9_during_group_commit_loses_nothing_acknowledged() {
    let seed = seed();
    let rounds = rounds();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(seed);
    let mut state = AppendState::default();
    let mut total_acks = 0;
    let mut torn = 0;
    for round in 0..rounds {
        let lines = run_round(dir.path(), Mode::Append, round, seed, &mut rng);
        let before = last_segment_len(dir.path());
        let recovered = reopen(dir.path(), Mode::Append, seed, round);
        if last_segment_len(dir.path()) != before {
            torn += 1;
        }
        let result = state.record(round, &lines).and_then(|(acks, printed)| {
            total_acks += acks;
            state.check(round, &printed, &recovered)
        });
        if let Err(e) = result {
            panic!(
                "seed {seed} round {round} (replay with SHALE_SEED={seed}): {e}\n\
                 ({} entries recovered, {} acknowledged so far)",
                recovered.entries.len(),
                state.acked.len()
            );
        }
    }
    assert!(total_acks > 0, "seed {seed}: no acknowledgements at all");
    let (storage, recovered) = Storage::open_with(dir.path(), config(Mode::Append)).expect("open");
    println!(
        "seed {seed}: {rounds} rounds, {total_acks} appends acknowledged, {} entries in {} \
         segments; the reopen repaired the log tail after {torn} kills",
        recovered.entries.len(),
        storage.segment_count()
    );
}

/// A request of the truncation workload, as announced by the child
#[derive(Debug)]
struct Intent {
    write: bool,
    op: u64,
    term: Term,
    first: Index,
    count: u64,
}

impl Intent {
    fn parse(line: &str) -> Result<Intent, String> {
        let fields: Vec<&str> = line.split(' ').collect();
        let &["intent", kind, op, term, first, count] = fields.as_slice() else {
            return Err(format!("bad line {line:?}"));
        };
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|e| format!("bad line {line:?}: {e}"))
        };
        Ok(Intent {
            write: kind == "w",
            op: num(op)?,
            term: num(term)?,
            first: num(first)?,
            count: num(count)?,
        })
    }

    /// The log once this request is applied to `log`
    fn apply(&self, round: u32, log: &[Entry]) -> Result<Vec<Entry>, String> {
        let keep = (self.first - 1) as usize;
        if keep > log.len() {
            return Err(format!(
                "{self:?} leaves a gap after a log of {}",
                log.len()
            ));
        }
        let mut out = log[..keep].to_vec();
        if self.write {
            out.extend(truncate_entries(
                round, self.op, self.term, self.first, self.count,
            ));
        } else {
            out.push(Entry {
                term: self.term,
                index: self.first,
                kind: EntryKind::Command,
                data: payload(round, 0, self.op, TRUNCATE_FILLER).into(),
            });
        }
        Ok(out)
    }
}

/// Checks a recovery against the acknowledged log and term and the request in flight
fn check_truncate(
    round: u32,
    log: &[Entry],
    term: Term,
    in_flight: Option<&Intent>,
    recovered: &Recovered,
) -> Result<(), String> {
    let got = &recovered.entries;
    let got_term = recovered.hard_state.term;
    if recovered.snapshot.is_some() {
        return Err("a snapshot appeared".into());
    }
    let Some(intent) = in_flight else {
        if got_term != term {
            return Err(format!("hard state term {got_term}, acknowledged {term}"));
        }
        if got.as_slice() != log {
            return Err(format!(
                "recovered {} entries, differing from the {} acknowledged",
                got.len(),
                log.len()
            ));
        }
        return Ok(());
    };
    // The request in flight may have been persisted in part, in the contract's order: hard
    // state, then the suffix deleted (a whole segment at a time, newest first, or cut in
    // one go), then a prefix of its entries.
    let after = intent.apply(round, log)?;
    let floor = (intent.first - 1) as usize;
    let prefix_of = |full: &[Entry]| got.len() >= floor && full.get(..got.len()) == Some(got);
    if !(prefix_of(log) || prefix_of(&after)) {
        return Err(format!(
            "recovered {} entries: neither the {} acknowledged nor a prefix of them or of the \
             {} after {intent:?} down to {floor}",
            got.len(),
            log.len(),
            after.len()
        ));
    }
    let allowed_terms = if intent.write {
        vec![term, intent.term]
    } else {
        vec![term]
    };
    if !allowed_terms.contains(&got_term) {
        return Err(format!(
            "hard state term {got_term}, expected one of {allowed_terms:?} ({intent:?} in flight)"
        ));
    }
    if got.as_slice() != log && got_term != intent.term {
        return Err(format!(
            "the log changed by {intent:?} but the hard state term is still {got_term}"
        ));
    }
    Ok(())
}

/// Kills a single writer at a random moment while it mixes appends with writes that replace a
/// suffix of the log in a new term with a new hard state (segments roll every 512 bytes, so
/// such a write often deletes whole segments); the recovered state must be the acknowledged
/// one, or that with the request in flight applied in part, in the write contract's order.
///
/// `SHALE_CRASH_ROUNDS` (default 8) sets the number of rounds, `SHALE_SEED` the seed.
#[test]
fn kill_9_during_suffix_replacing_writes_keeps_a_consistent_prefix() {
    let seed = seed();
    let rounds = rounds();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(mix(seed ^ 0x7472_756e_6361_7465));
    let mut log: Vec<Entry> = Vec::new();
    let mut term: Term = 0;
    let mut total_ops = 0;
    let (mut in_flight_kills, mut partial) = (0, 0);
    for round in 0..rounds {
        let lines = run_round(dir.path(), Mode::Truncate, round, seed, &mut rng);
        let recovered = reopen(dir.path(), Mode::Truncate, seed, round);
        let mut in_flight: Option<Intent> = None;
        let result = lines
            .iter()
            .try_for_each(|line| {
                if line.starts_with("intent ") {
                    if let Some(intent) = &in_flight {
                        return Err(format!("{intent:?} never done"));
                    }
                    in_flight = Some(Intent::parse(line)?);
                } else if let Some(op) = line.strip_prefix("done ") {
                    let intent = in_flight
                        .take()
                        .ok_or_else(|| format!("{line:?} without intent"))?;
                    if op != intent.op.to_string() {
                        return Err(format!("{line:?} after {intent:?}"));
                    }
                    log = intent.apply(round, &log)?;
                    if intent.write {
                        term = intent.term;
                    }
                    total_ops += 1;
                }
                Ok(())
            })
            .and_then(|()| check_truncate(round, &log, term, in_flight.as_ref(), &recovered));
        if let Err(e) = result {
            panic!(
                "seed {seed} round {round} (replay with SHALE_SEED={seed}): {e}\n\
                 (in flight: {in_flight:?}; {} entries acknowledged, {} recovered, \
                 term {term} acknowledged, {} recovered)",
                log.len(),
                recovered.entries.len(),
                recovered.hard_state.term
            );
        }
        if in_flight.is_some() {
            in_flight_kills += 1;
            if recovered.entries != log || recovered.hard_state.term != term {
                partial += 1;
            }
        }
        log = recovered.entries;
        term = recovered.hard_state.term;
    }
    assert!(total_ops > 0, "seed {seed}: no request acknowledged at all");
    println!(
        "seed {seed}: {rounds} rounds, {total_ops} requests acknowledged; killed with one in \
         flight {in_flight_kills} times, {partial} of them persisted in part or whole"
    );
}
