//! Per-group invariant checking
//!
//! Each group has its own [`Checker`] (election safety, log matching, leader completeness,
//! monotonic commit, nothing committed lost), fed with that group's writes, messages and
//! steps. Typed replicas apply entries inside [`shale_core::rsm::Replica`], out of the
//! runtime's sight, so state machine safety is checked by digest instead: every hosted state
//! machine keeps a rolling digest of the commands it applied ([`super::Tracked`]), and after
//! every event it must equal the digest of the committed log through the replica's applied
//! index. A replica that skipped, repeated, reordered or invented a command, or restored a
//! snapshot that does not match the committed prefix it claims to cover, fails the check.

use std::collections::BTreeMap;

use shale_core::raft::{EntryKind, Index, NodeId, Raft};

use super::machine::{EMPTY_COMMAND_DIGEST, command_digest_step, command_hash};
use crate::invariants::Checker;

/// The invariant state of one group
#[derive(Debug, Default)]
pub(crate) struct GroupCheck {
    /// The single-group checker, run on this group's replicas only
    pub(crate) checker: Checker,
    /// Command digest of the committed log through each index (position 0 is index 1)
    digests: Vec<u64>,
    /// Applied index of each replica in its current life
    applied: BTreeMap<NodeId, Index>,
}

impl GroupCheck {
    /// The command digest of the committed log through `index`, if known
    pub(crate) fn digest_at(&self, index: Index) -> Option<u64> {
        match index {
            0 => Some(EMPTY_COMMAND_DIGEST),
            i => self.digests.get((i - 1) as usize).copied(),
        }
    }

    /// Extends the committed digests from `raft`'s log through its commit index (call after
    /// [`Checker::on_step`] has checked that log against what is known committed)
    pub(crate) fn learn_committed(&mut self, raft: &Raft) {
        let mut index = self.digests.len() as Index + 1;
        while index <= raft.commit_index() {
            let Some(entry) = raft.entry(index) else {
                return; // compacted here; the node that committed it first was seen with it
            };
            let prev = self.digest_at(index - 1).unwrap_or(EMPTY_COMMAND_DIGEST);
            let next = match entry.kind {
                EntryKind::Command => {
                    command_digest_step(prev, index, command_hash(entry.data.as_bytes()))
                }
                _ => prev,
            };
            self.digests.push(next);
            index += 1;
        }
    }

    /// Checks replica `id` whose state machine applied through `applied` (by the Raft node)
    /// and holds command digest `digest`
    pub(crate) fn check_state(
        &mut self,
        id: NodeId,
        applied: Index,
        digest: u64,
    ) -> Result<(), String> {
        let before = self.applied.get(&id).copied().unwrap_or(0);
        if applied < before {
            return Err(format!(
                "node {id}: applied index went back from {before} to {applied}"
            ));
        }
        let Some(expected) = self.digest_at(applied) else {
            return Err(format!(
                "node {id} applied through {applied}, but only {} entries are known committed",
                self.digests.len()
            ));
        };
        if digest != expected {
            return Err(format!(
                "state machine safety: node {id} applied through {applied} with command digest {digest:x}, the committed log has {expected:x}"
            ));
        }
        self.applied.insert(id, applied);
        Ok(())
    }

    /// Replica `id` restarts from a disk holding `durable_term`
    pub(crate) fn on_restart(&mut self, id: NodeId, durable_term: u64) {
        self.checker.on_restart(id, durable_term);
        self.applied.insert(id, 0);
    }
}
