//! Snapshots as streams: a frozen view of a state machine encoded a bounded piece at a time,
//! and a decoder that builds the state again from pieces
//!
//! Taking a snapshot must not stall the loop that also sends heartbeats, however large the
//! state. So [`StateMachine::snapshot`](super::StateMachine::snapshot) only freezes a view
//! (O(1) or O(log n): the state's maps share their structure with the view, and later writes
//! copy what they change), and returns a [`SnapshotEncoder`] that the runtime drives where it
//! likes: on a worker thread, or in bounded steps between rounds of its loop. Restoring is the
//! mirror image: [`StateMachine::restorer`](super::StateMachine::restorer) returns a
//! [`SnapshotDecoder`] that is fed the stored bytes in pieces of any size and builds a whole new
//! state, which the loop then swaps in at once ([`Replica::install`](super::Replica::install)).
//!
//! ```
//! use shale_core::controller::{ControllerCommand, ShardController};
//! use shale_core::rsm::{StateMachine, encode_to_vec};
//!
//! let mut ctl = ShardController::new(4);
//! ctl.apply(&ControllerCommand::Join(vec![(1, vec![1])])).unwrap();
//! let bytes = encode_to_vec(ctl.snapshot(), 16);
//! let mut decoder = ctl.restorer();
//! for piece in bytes.chunks(5) {
//!     decoder.decode(piece).unwrap();
//! }
//! let restored: ShardController = decoder.finish().unwrap().downcast().unwrap();
//! assert_eq!(restored, ctl);
//! ```

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::any::Any;
use core::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes a frozen view of a state machine, a bounded piece at a time
pub trait SnapshotEncoder: Send {
    /// Appends the next piece to `out`: about `max_bytes`, never less than one whole record
    /// (so a record larger than `max_bytes` makes a larger piece); `false` once the whole
    /// snapshot has been written (the call that returns `false` may still have appended the
    /// last piece)
    fn encode(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> bool;
}

/// Builds a state machine from snapshot bytes fed in pieces of any size
pub trait SnapshotDecoder: Send {
    /// Takes the next bytes of the snapshot
    fn decode(&mut self, bytes: &[u8]) -> Result<(), SnapshotError>;
    /// The state built from every byte fed, if they made a whole snapshot
    fn finish(self: Box<Self>) -> Result<RestoredState, SnapshotError>;
}

impl fmt::Debug for dyn SnapshotEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SnapshotEncoder")
    }
}

impl fmt::Debug for dyn SnapshotDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SnapshotDecoder")
    }
}

/// Why snapshot bytes did not make a state
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotError {
    /// A record did not decode, or came out of order; `offset` is where in the snapshot
    Malformed {
        /// Byte offset of the record
        offset: u64,
        /// What was wrong
        reason: &'static str,
    },
    /// The bytes ended before the snapshot did
    Truncated,
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Malformed { offset, reason } => {
                write!(f, "malformed snapshot at byte {offset}: {reason}")
            }
            SnapshotError::Truncated => f.write_str("the snapshot ends too early"),
        }
    }
}

impl core::error::Error for SnapshotError {}

/// A state built by a [`SnapshotDecoder`], of the state machine's own type (see
/// [`downcast`](Self::downcast))
pub struct RestoredState(Box<dyn Any + Send>);

impl fmt::Debug for RestoredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RestoredState")
    }
}

impl RestoredState {
    /// Wraps a built state
    pub fn new<S: Any + Send>(state: S) -> Self {
        RestoredState(Box::new(state))
    }

    /// The state, if it is an `S`
    pub fn downcast<S: Any>(self) -> Result<S, RestoredState> {
        self.0.downcast::<S>().map(|s| *s).map_err(RestoredState)
    }
}

/// Something a state machine let go of (a deleted shard, a replaced state): dropping it frees
/// memory in proportion to the data it held, so the runtime drops it off its loop
pub struct Release(Box<dyn Any + Send>);

impl fmt::Debug for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Release")
    }
}

impl Release {
    /// Wraps what to drop
    pub fn new<T: Any + Send>(garbage: T) -> Self {
        Release(Box::new(garbage))
    }

    /// What it holds
    pub fn into_inner(self) -> Box<dyn Any + Send> {
        self.0
    }
}

/// Runs `encoder` to the end in pieces of `piece_bytes`, collecting every byte (for small
/// states, tests and simulations; a runtime writes the pieces out as they come)
pub fn encode_to_vec(mut encoder: Box<dyn SnapshotEncoder>, piece_bytes: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while encoder.encode(&mut out, piece_bytes) {}
    out
}

/// Feeds `bytes` to `decoder` and finishes it
pub fn decode_all(
    mut decoder: Box<dyn SnapshotDecoder>,
    bytes: &[u8],
) -> Result<RestoredState, SnapshotError> {
    decoder.decode(bytes)?;
    decoder.finish()
}

/// A snapshot of a small state taken whole: the view is a clone, encoded as one postcard
/// value (for state machines whose size does not grow with the data, such as the shard
/// controller)
pub struct WholeEncoder<T> {
    state: Option<T>,
    bytes: Vec<u8>,
    at: usize,
}

impl<T: Serialize + Send> WholeEncoder<T> {
    /// An encoder of `state`
    pub fn new(state: T) -> Self {
        WholeEncoder {
            state: Some(state),
            bytes: Vec::new(),
            at: 0,
        }
    }
}

impl<T: Serialize + Send> SnapshotEncoder for WholeEncoder<T> {
    fn encode(&mut self, out: &mut Vec<u8>, max_bytes: usize) -> bool {
        if let Some(state) = self.state.take() {
            self.bytes = postcard::to_allocvec(&state).unwrap_or_default();
        }
        let end = self
            .at
            .saturating_add(max_bytes.max(1))
            .min(self.bytes.len());
        out.extend_from_slice(&self.bytes[self.at..end]);
        self.at = end;
        self.at < self.bytes.len()
    }
}

/// The decoder of a [`WholeEncoder`]'s bytes
pub struct WholeDecoder<T> {
    bytes: Vec<u8>,
    _state: core::marker::PhantomData<fn() -> T>,
}

impl<T> Default for WholeDecoder<T> {
    fn default() -> Self {
        WholeDecoder {
            bytes: Vec::new(),
            _state: core::marker::PhantomData,
        }
    }
}

impl<T: DeserializeOwned + Send + 'static> SnapshotDecoder for WholeDecoder<T> {
    fn decode(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.bytes.extend_from_slice(bytes);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<RestoredState, SnapshotError> {
        postcard::from_bytes::<T>(&self.bytes)
            .map(RestoredState::new)
            .map_err(|_| SnapshotError::Malformed {
                offset: 0,
                reason: "the state does not decode",
            })
    }
}
