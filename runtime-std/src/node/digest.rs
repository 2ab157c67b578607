//! Replica digests, to compare the replicas of each group (`shale ctl verify`)
//!
//! [`NodeHandle::digest`](super::NodeHandle::digest) asks the engine for every replica it
//! hosts: on the loop it only notes the applied index and takes a frozen view of the state
//! (O(shards); the controller's snapshot encoder for the controller), and a thread of its own
//! reads the views and hashes them, so the loop never does work in proportion to the data.
//! Replicas at the same applied index must have the same digests. One digest runs at a time
//! in a process: a call while one runs is refused ([`DIGEST_BUSY`]), so a client repeating
//! the call cannot start threads without bound.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use shale_core::controller::GroupId;
use shale_core::group::{Fnv64, GroupState, ShardDigest};
use shale_core::node::HostedReplica;
use shale_core::rsm::{SnapshotEncoder, StateMachine};

use super::engine::Reply;

/// Bytes of the controller's snapshot encoded per piece while digesting
const DIGEST_PIECE_BYTES: usize = 1 << 20;

/// The refusal of a digest asked for while another one runs
pub const DIGEST_BUSY: &str = "a digest is being computed already; try again when it is done";

/// A digest thread runs in this process
static RUNNING: AtomicBool = AtomicBool::new(false);

/// Clears [`RUNNING`] when the digest thread ends, however it ends
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(false, Ordering::Release);
    }
}

/// One replica's digests, as [`NodeHandle::digest`](super::NodeHandle::digest) reports them
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaDigest {
    /// The group
    pub gid: GroupId,
    /// The index the digests are of
    pub applied: u64,
    /// An installed snapshot waits to be restored: the state is not the applied index's, and
    /// no digest was taken
    pub restoring: bool,
    /// FNV-1a of the group's own fields (of the whole state, for the controller)
    pub header: u64,
    /// Every shard slot the group holds (none for the controller)
    pub shards: Vec<ShardDigest>,
}

enum Source {
    Group(Box<GroupState>),
    Encoder(Box<dyn SnapshotEncoder>),
    Nothing,
}

/// Takes what the digests of every replica need (cheap, on the loop), then computes them on
/// a thread of its own and answers `reply` from there
pub(crate) fn start<'a>(
    replicas: impl Iterator<Item = (&'a GroupId, &'a HostedReplica)>,
    reply: Reply<Result<Vec<ReplicaDigest>, String>>,
) {
    if RUNNING.swap(true, Ordering::AcqRel) {
        reply(Err(DIGEST_BUSY.to_owned()));
        return;
    }
    let running = Running;
    let jobs: Vec<(GroupId, u64, bool, Source)> = replicas
        .map(|(&gid, r)| {
            let restoring = r.restore_wanted().is_some();
            let source = if restoring {
                Source::Nothing
            } else if let Some(driver) = r.driver() {
                Source::Group(Box::new(driver.state().view()))
            } else if let Some(controller) = r.controller() {
                Source::Encoder(controller.snapshot())
            } else {
                Source::Nothing
            };
            (gid, r.raft().applied_index(), restoring, source)
        })
        .collect();
    // The reply is shared with the thread: a thread that cannot start, or a digest that
    // panics, still gets an answer out (whoever takes it first answers).
    let slot: ReplySlot = Arc::new(Mutex::new(Some(reply)));
    let thread_slot = Arc::clone(&slot);
    let spawned = std::thread::Builder::new()
        .name("shale-digest".into())
        .spawn(move || {
            let _running = running;
            let unwinding = AnswerOnUnwind(Arc::clone(&thread_slot));
            let digests = jobs.into_iter().map(digest).collect();
            answer(&thread_slot, Ok(digests));
            drop(unwinding);
        });
    if let Err(e) = spawned {
        answer(&slot, Err(format!("cannot start a digest thread: {e}")));
    }
}

/// A digest's reply, until someone answers it
type ReplySlot = Arc<Mutex<Option<Reply<Result<Vec<ReplicaDigest>, String>>>>>;

/// Answers `result` unless the reply was answered already
fn answer(slot: &ReplySlot, result: Result<Vec<ReplicaDigest>, String>) {
    if let Some(reply) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
        reply(result);
    }
}

/// Answers an error if the digest thread unwinds before answering
struct AnswerOnUnwind(ReplySlot);

impl Drop for AnswerOnUnwind {
    fn drop(&mut self) {
        answer(
            &self.0,
            Err("the digest failed (see the node's log)".to_owned()),
        );
    }
}

/// One replica's digests from what was taken on the loop
fn digest((gid, applied, restoring, source): (GroupId, u64, bool, Source)) -> ReplicaDigest {
    let (header, shards) = match source {
        Source::Group(view) => {
            let d = view.digest();
            (d.header, d.shards)
        }
        Source::Encoder(mut encoder) => {
            let mut h = Fnv64::default();
            let mut piece = Vec::new();
            loop {
                piece.clear();
                let more = encoder.encode(&mut piece, DIGEST_PIECE_BYTES);
                h.write(&piece);
                if !more {
                    break;
                }
            }
            (h.finish(), Vec::new())
        }
        Source::Nothing => (0, Vec::new()),
    };
    ReplicaDigest {
        gid,
        applied,
        restoring,
        header,
        shards,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_asked_for_while_one_runs_is_refused_and_the_next_runs() {
        let (tx, rx) = std::sync::mpsc::channel();
        RUNNING.store(true, Ordering::Release);
        let answer = tx.clone();
        start(
            std::iter::empty(),
            Box::new(move |r| answer.send(r).unwrap()),
        );
        assert_eq!(rx.recv().unwrap(), Err(DIGEST_BUSY.to_owned()));
        RUNNING.store(false, Ordering::Release);
        start(std::iter::empty(), Box::new(move |r| tx.send(r).unwrap()));
        assert_eq!(rx.recv().unwrap(), Ok(Vec::new()));
        // The thread cleared the flag as it ended.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while RUNNING.load(Ordering::Acquire) {
            assert!(std::time::Instant::now() < deadline, "the flag stays set");
            std::thread::yield_now();
        }
    }
}
