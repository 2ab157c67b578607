//! The new owner's leader, for clients of a shard being pulled: keys fetched ahead of their
//! chunk, and requests that wait here for them (see `arrival` for what the group state does)
//!
//! A request on a key that has not arrived is not refused: the leader asks the previous owner
//! for that key alone ([`GroupRequest::FetchKeys`]), logs the answer
//! ([`GroupCommand::InstallKeys`]) and parks the request until the key has arrived, then
//! proposes it (or, for a read, serves it). A parked request waits at most until the next
//! poll; then it is answered `ShardMoving` and its client asks again.

use alloc::vec::Vec;

use super::driver::{ClientReply, GroupDriver, GroupMachine, GroupRequest};
use super::state::{GroupCommand, GroupError, GroupState, ShardStatus};
use crate::controller::ShardId;
use crate::shard::{Bytes, ClientRequest, KvOp};
use crate::time::Instant;

/// Bytes counted for the encoding of one key and value in an `InstallKeys` entry
const ENTRY_OVERHEAD_BYTES: usize = 16;

/// A client request waiting for keys fetched ahead
#[derive(Debug)]
pub(crate) struct Parked {
    token: u64,
    op: KvOp,
    /// The request to propose, for a write (`None`: a read, whose index is already applied)
    write: Option<ClientRequest>,
}

impl<M: GroupMachine> GroupDriver<M> {
    /// Parks a request on keys that have not arrived, once they are asked for ahead; `false`
    /// (and nothing parked) when this replica cannot do that
    pub(super) fn park(&mut self, token: u64, op: KvOp, write: Option<ClientRequest>) -> bool {
        if self.parked.len() >= self.config.ahead_keys_max || !self.fetch_ahead(&op) {
            return false;
        }
        self.parked.push(Parked { token, op, write });
        true
    }

    /// Goes on with the parked requests whose keys have arrived
    pub(super) fn unpark(&mut self) {
        if self.parked.is_empty() {
            return;
        }
        let now = self.now_seen();
        let parked = core::mem::take(&mut self.parked);
        for p in parked {
            match self.state().check_op(&p.op) {
                Err(GroupError::ShardMoving { .. }) => self.parked.push(p),
                Err(e) => self.reply(p.token, Err(e)),
                Ok(_) => match p.write {
                    Some(mut request) => {
                        request.stamp_ms = self.wall_ms();
                        let proposed =
                            self.replica
                                .propose(now, p.token, &GroupCommand::Client(request));
                        if proposed.is_err() {
                            self.reply(p.token, Err(GroupError::Retry));
                        }
                    }
                    None => {
                        let outcome = self.read_now(&p.op);
                        self.reply(p.token, outcome);
                    }
                },
            }
        }
    }

    /// Answers every parked request `ShardMoving` (their clients ask again)
    pub(super) fn release_parked(&mut self) {
        let config_num = self.state().config.num;
        for p in core::mem::take(&mut self.parked) {
            self.reply(p.token, Err(GroupError::ShardMoving { config_num }));
        }
    }

    fn reply(&mut self, token: u64, outcome: super::ClientOutcome) {
        self.replies.push_back(ClientReply { token, outcome });
    }

    /// Asks the previous owner for the keys of `op` that have not arrived in a shard being
    /// pulled (the leader only, at most [`ahead_keys_max`](super::DriverConfig::ahead_keys_max)
    /// per shard and poll, each once per poll); whether all of them are asked for now
    fn fetch_ahead(&mut self, op: &KvOp) -> bool {
        if !self.is_leader() || self.restoring() {
            return false;
        }
        let state: &GroupState = self.replica.state().borrow();
        let (shard, keys) = state.keys_to_fetch(op);
        if keys.is_empty() {
            return false;
        }
        let asked = self.ahead_asked.entry(shard).or_default();
        let fresh: Vec<Bytes> = keys.into_iter().filter(|k| !asked.contains(k)).collect();
        if fresh.is_empty() {
            return true;
        }
        if asked.len() + fresh.len() > self.config.ahead_keys_max {
            return false;
        }
        asked.extend(fresh.iter().cloned());
        let ShardStatus::Pulling { from } = state.shards[&shard].status else {
            return false;
        };
        let replicas = state.previous_replicas(from);
        self.requests.push_back(GroupRequest::FetchKeys {
            from,
            replicas,
            shard,
            num: state.config.num,
            keys: fresh,
        });
        true
    }

    /// The previous owner answered keys fetched ahead: logged (those still missing)
    pub fn handle_keys_fetched(
        &mut self,
        now: Instant,
        shard: ShardId,
        num: u64,
        entries: Vec<(Bytes, Option<Bytes>)>,
    ) {
        if !self.is_leader() || self.restoring() {
            return;
        }
        let state = self.state();
        let Some(slot) = state.shards.get(&shard) else {
            return;
        };
        if state.config.num != num || !matches!(slot.status, ShardStatus::Pulling { .. }) {
            return;
        }
        let fresh = entries
            .into_iter()
            .filter(|(k, _)| !slot.pull.has_arrived(k));
        // Entries of about a hand-over chunk each, as chunks are: one key and value over the
        // budget at most, which the entry limit has room for.
        let budget = self.config.handover_chunk_bytes;
        let mut batch: Vec<(Bytes, Option<Bytes>)> = Vec::new();
        let mut bytes = 0;
        let mut batches = Vec::new();
        for (key, value) in fresh {
            let size = key.len() + value.as_ref().map_or(0, Vec::len) + ENTRY_OVERHEAD_BYTES;
            if !batch.is_empty() && bytes + size > budget {
                batches.push(core::mem::take(&mut batch));
                bytes = 0;
            }
            bytes += size;
            batch.push((key, value));
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
        for entries in batches {
            let command = GroupCommand::InstallKeys {
                shard,
                num,
                entries,
            };
            self.propose_own(now, &command);
        }
    }
}
