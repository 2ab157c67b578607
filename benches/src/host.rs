//! [`Host`]: what each node's runtime keeps beside its [`Raft`]

use shale_core::raft::{Index, Payload, ReadState, SnapshotChunk, SnapshotMeta};
#[cfg(doc)]
use shale_core::raft::{Raft, SnapshotTask};

/// What one node's runtime keeps beside its [`Raft`]: its stored snapshot, the snapshot it is
/// receiving, the reads that came out, and the snapshot work it was asked for
#[derive(Debug, Default)]
pub struct Host {
    /// The node's current snapshot (taken here or received) and its bytes
    snapshot: Option<(SnapshotMeta, Stored)>,
    /// Bytes of the snapshot being received, stored from the writes' `snapshot_chunks`
    receiving: Vec<u8>,
    /// The last index of the snapshot the "state machine" was last restored from
    pub restored: Option<Index>,
    /// The applied index of the last [`SnapshotTask::Take`] not yet answered
    pub take_asked: Option<Index>,
    /// Reads that came out of [`Raft::poll_read`], oldest first
    pub reads: Vec<ReadState>,
}

/// The bytes of a stored snapshot: shared with the caller that took it, or received in chunks
/// (kept as written, so installing copies nothing)
#[derive(Debug)]
enum Stored {
    Taken(Payload),
    Received(Vec<u8>),
}

impl Host {
    /// The node's current snapshot and its bytes, if it has one
    pub fn snapshot(&self) -> Option<(&SnapshotMeta, &[u8])> {
        self.snapshot.as_ref().map(|(meta, stored)| {
            let bytes = match stored {
                Stored::Taken(payload) => payload.as_bytes(),
                Stored::Received(bytes) => bytes.as_slice(),
            };
            (meta, bytes)
        })
    }

    /// Stores the snapshot `meta` the application just took, with its bytes
    pub(crate) fn store_taken(&mut self, meta: SnapshotMeta, data: Payload) {
        self.snapshot = Some((meta, Stored::Taken(data)));
    }

    /// Stores one chunk from a write, in order; the `install` chunk makes the received bytes
    /// the node's snapshot
    pub(crate) fn store_chunk(&mut self, chunk: SnapshotChunk) {
        if chunk.offset == 0 {
            self.receiving.clear();
            self.receiving.reserve(chunk.meta.size_bytes as usize);
        }
        assert_eq!(
            chunk.offset,
            self.receiving.len() as u64,
            "chunks are written in order"
        );
        self.receiving.extend_from_slice(chunk.data.as_bytes());
        if chunk.install {
            assert_eq!(self.receiving.len() as u64, chunk.meta.size_bytes);
            let bytes = std::mem::take(&mut self.receiving);
            self.snapshot = Some((chunk.meta, Stored::Received(bytes)));
        }
    }

    /// Loads the "state machine" from the snapshot `meta`, which must be the stored one
    pub(crate) fn restore(&mut self, meta: &SnapshotMeta) {
        let (stored, bytes) = self.snapshot().expect("restoring a stored snapshot");
        assert_eq!(stored, meta, "restoring the snapshot that was installed");
        assert_eq!(bytes.len() as u64, meta.size_bytes);
        self.restored = Some(meta.last.index);
    }

    /// The bytes `offset..offset + max_bytes` of the stored snapshot ending at `index`, copied
    /// as a runtime reading them from disk would
    pub(crate) fn read_chunk(
        &self,
        index: Index,
        offset: u64,
        max_bytes: usize,
    ) -> Option<Payload> {
        let (meta, bytes) = self.snapshot()?;
        if meta.last.index != index {
            return None;
        }
        let start = (offset as usize).min(bytes.len());
        let end = start.saturating_add(max_bytes).min(bytes.len());
        Some(Payload::from(&bytes[start..end]))
    }
}
