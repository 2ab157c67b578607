//! Operating errors: small enums per operation, with `Display` and `core::error::Error`

use core::fmt;

use super::types::{Index, NodeId, Term};

/// Why a proposal was refused; nothing was appended
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProposeError {
    /// This node is not the leader; `hint` is the leader it knows of, if any
    NotLeader {
        /// The current leader as far as this node knows
        hint: Option<NodeId>,
    },
    /// Back-pressure: too many uncommitted bytes or a full output queue; retry later
    Busy,
    /// Leadership is being handed to `target`; retry there, or here once the transfer ends
    /// (within an election timeout)
    Transferring {
        /// The node taking over
        target: NodeId,
    },
    /// The command is larger than `max_entry_bytes`
    TooLarge {
        /// Size of the refused command, in bytes
        size_bytes: usize,
        /// The configured limit, in bytes
        max_bytes: usize,
    },
}

impl fmt::Display for ProposeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProposeError::NotLeader { hint: Some(id) } => {
                write!(f, "not the leader; try node {id}")
            }
            ProposeError::NotLeader { hint: None } => f.write_str("not the leader; leader unknown"),
            ProposeError::Busy => f.write_str("busy: too much uncommitted or unsent work; retry"),
            ProposeError::Transferring { target } => {
                write!(f, "leadership is moving to node {target}; retry there")
            }
            ProposeError::TooLarge {
                size_bytes,
                max_bytes,
            } => write!(
                f,
                "command of {size_bytes} bytes exceeds the limit of {max_bytes} bytes"
            ),
        }
    }
}

impl core::error::Error for ProposeError {}

/// Back-pressure on an input: the output queue is full; drain the `poll_*` outputs and retry
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy;

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("busy: output queue full; drain outputs and retry")
    }
}

impl core::error::Error for Busy {}

/// A configuration that cannot work; names the field at fault
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The field at fault
    pub field: &'static str,
    /// What is wrong with it
    pub reason: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid raft config: {}: {}", self.field, self.reason)
    }
}

impl core::error::Error for ConfigError {}

/// Recovered state that cannot be right (a corrupt or mixed-up disk); the node refuses to start
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecoveryError {
    /// The entry at position `position` of the recovered log has index `found`, not `expected`
    NotContiguous {
        /// Position in the recovered entries
        position: usize,
        /// The index that entry should have
        expected: Index,
        /// The index it has
        found: Index,
    },
    /// An entry's term is lower than the entry before it
    TermsOutOfOrder {
        /// The index of the entry
        index: Index,
    },
    /// An entry's term is above the recovered hard state's term
    TermAheadOfHardState {
        /// The index of the entry
        index: Index,
        /// The entry's term
        entry_term: Term,
        /// The hard state's term
        hard_state_term: Term,
    },
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryError::NotContiguous {
                position,
                expected,
                found,
            } => write!(
                f,
                "recovered log is not contiguous: entry #{position} has index {found}, expected {expected}"
            ),
            RecoveryError::TermsOutOfOrder { index } => {
                write!(
                    f,
                    "recovered log has a term going backwards at index {index}"
                )
            }
            RecoveryError::TermAheadOfHardState {
                index,
                entry_term,
                hard_state_term,
            } => write!(
                f,
                "recovered entry {index} has term {entry_term}, above the hard state's term {hard_state_term}"
            ),
        }
    }
}

impl core::error::Error for RecoveryError {}

/// Why a read cannot be served
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadError {
    /// No leader to confirm the read through; `hint` is the leader this node knows of, if any
    NotLeader {
        /// The current leader as far as this node knows
        hint: Option<NodeId>,
    },
    /// Too many reads are waiting for confirmation; retry later
    Busy,
    /// Leadership changed before the read was confirmed; retry
    LeaderChanged,
    /// The leader did not answer a forwarded read within an election timeout; retry
    TimedOut,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::NotLeader { hint: Some(id) } => {
                write!(f, "no leader to confirm the read here; try node {id}")
            }
            ReadError::NotLeader { hint: None } => {
                f.write_str("no leader known to confirm the read")
            }
            ReadError::Busy => f.write_str("busy: too many reads waiting; retry"),
            ReadError::LeaderChanged => {
                f.write_str("leadership changed before the read was confirmed; retry")
            }
            ReadError::TimedOut => f.write_str("the leader did not answer the read in time; retry"),
        }
    }
}

impl core::error::Error for ReadError {}

/// Why a leadership transfer was refused or ended without success
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferError {
    /// Only the leader can hand leadership over
    NotLeader {
        /// The current leader as far as this node knows
        hint: Option<NodeId>,
    },
    /// The target is not a voter of the group (or is this node)
    NotAVoter {
        /// The refused target
        target: NodeId,
    },
    /// Another transfer is already under way
    InProgress {
        /// Its target
        target: NodeId,
    },
}

impl fmt::Display for TransferError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransferError::NotLeader { hint: Some(id) } => {
                write!(f, "not the leader; try node {id}")
            }
            TransferError::NotLeader { hint: None } => {
                f.write_str("not the leader; leader unknown")
            }
            TransferError::NotAVoter { target } => {
                write!(f, "node {target} is not another voter of this group")
            }
            TransferError::InProgress { target } => {
                write!(f, "a transfer to node {target} is already under way")
            }
        }
    }
}

impl core::error::Error for TransferError {}

/// Why a membership change was refused; nothing was appended
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeError {
    /// Only the leader changes membership
    NotLeader {
        /// The current leader as far as this node knows
        hint: Option<NodeId>,
    },
    /// The leader has not yet committed an entry of its own term (changing membership before
    /// that is unsafe); retry shortly
    NotReady,
    /// Another change (or the automatic end of a joint configuration) is not yet committed
    InProgress,
    /// A learner to promote has not caught up with the commit index
    LearnerBehind {
        /// The learner
        id: NodeId,
        /// What it is known to hold
        match_index: Index,
        /// The leader's commit index
        commit: Index,
    },
    /// The target has no voters
    NoVoters,
    /// A leadership transfer is under way
    Transferring,
}

impl fmt::Display for ChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeError::NotLeader { hint: Some(id) } => write!(f, "not the leader; try node {id}"),
            ChangeError::NotLeader { hint: None } => f.write_str("not the leader; leader unknown"),
            ChangeError::NotReady => {
                f.write_str("the leader has not committed an entry of its term yet; retry")
            }
            ChangeError::InProgress => f.write_str("another membership change is in progress"),
            ChangeError::LearnerBehind {
                id,
                match_index,
                commit,
            } => write!(
                f,
                "learner {id} holds entries up to {match_index}, behind the commit index {commit}; \
                 promote it once it has caught up"
            ),
            ChangeError::NoVoters => f.write_str("a membership needs at least one voter"),
            ChangeError::Transferring => f.write_str("a leadership transfer is under way"),
        }
    }
}

impl core::error::Error for ChangeError {}
