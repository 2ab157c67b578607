//! Leadership transfer: bring the target up to date, then tell it to campaign at once
//!
//! While a transfer is under way the leader refuses proposals (for at most an election
//! timeout) so the target can catch up, and serves no lease reads. The transfer ends when the
//! target wins (the old leader sees the new term and steps down) or is abandoned at its
//! deadline: the target is not reachable or did not win in time.
//!
//! Reference: thesis §3.10 (leadership transfer extension).

use super::Raft;
use super::errors::TransferError;
use super::message::Message;
use super::types::{NodeId, Role};
use crate::time::Instant;

/// A leadership transfer under way
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Transfer {
    pub(crate) target: NodeId,
    pub(crate) deadline: Instant,
    pub(crate) timeout_now_sent: bool,
}

impl Raft {
    /// Hands leadership to voter `to`: replicates to it, then sends it `TimeoutNow`
    pub fn transfer_leader(&mut self, now: Instant, to: NodeId) -> Result<(), TransferError> {
        self.observe_time(now);
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader { hint: self.leader });
        }
        if to == self.id() || !self.membership.is_voter(to) {
            return Err(TransferError::NotAVoter { target: to });
        }
        match self.transfer {
            Some(t) if t.target == to => return Ok(()),
            Some(t) => return Err(TransferError::InProgress { target: t.target }),
            None => {}
        }
        self.transfer = Some(Transfer {
            target: to,
            deadline: now + self.config.election_timeout_min,
            timeout_now_sent: false,
        });
        self.maybe_send_timeout_now();
        self.replication_pending = true;
        Ok(())
    }

    /// The target of the transfer under way, if any
    pub fn transfer_target(&self) -> Option<NodeId> {
        self.transfer.map(|t| t.target)
    }

    /// Sends `TimeoutNow` once the target holds the whole log
    pub(super) fn maybe_send_timeout_now(&mut self) {
        let Some(t) = self.transfer else { return };
        if t.timeout_now_sent {
            return;
        }
        let caught_up = self
            .progress(t.target)
            .is_some_and(|p| p.match_index == self.log.last_index());
        if caught_up {
            let term = self.term;
            // The target's election ignores vote leases, so ours ends here for good.
            self.reads.lease_revoked = true;
            self.send_now(t.target, Message::TimeoutNow { term });
            if let Some(t) = self.transfer.as_mut() {
                t.timeout_now_sent = true;
            }
        }
    }

    /// Leader: abandons the transfer once its deadline passed
    pub(super) fn check_transfer_deadline(&mut self) {
        if self.transfer.is_some_and(|t| self.now >= t.deadline) {
            self.transfer = None;
        }
    }

    /// Follower: the leader told us to campaign now
    pub(super) fn handle_timeout_now(&mut self) {
        if self.role == Role::Follower && self.membership.is_voter(self.id()) {
            self.campaign(true);
        }
    }
}
