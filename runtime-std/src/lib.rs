//! The blocking-thread runtime for Shale: durable file storage, the TCP transport, and nodes
//!
//! Three layers, each usable alone: [`Storage`] (one group's write-ahead log, hard state and
//! snapshots in a directory), [`transport::Transport`] (peer connections carrying every
//! group's messages), and [`node`] (a node hosting several groups: the sans-IO
//! [`node::Host`], the [`node::NodeEngine`] that adds a WAL thread and the transport, and the
//! blocking [`node::Node`] that runs it on a thread; the `shale-std-node` binary is a node
//! with a small client protocol, for tests and demonstrations).
//!
//! [`Storage`] keeps one node's state for one Raft group in a directory and implements the
//! persistence contract of [`shale_core::raft::Write`]: hard state, then snapshot chunks,
//! then entries, then compaction.
//!
//! # Durability
//!
//! When [`Storage::write`] or [`Storage::write_batch`] returns `Ok`, everything in the
//! write(s) is on stable storage, so a crash (process or power) loses **nothing that was
//! acknowledged**:
//!
//! - **Hard state**: written to `hardstate.tmp`, fsync'd, renamed over `hardstate`, then the
//!   directory is fsync'd, every time it changes. A crash leaves the old or the new value.
//! - **Entries**: appended to the last log segment; one `fdatasync` at the end of the write
//!   (or of the whole batch). A full segment is fdatasync'd before the next is created, and
//!   the directory is fsync'd after segments are created or deleted. A truncation (a new
//!   leader's entries replacing ours) is fdatasync'd before anything is written in its
//!   place, so a crash cannot keep new records followed by the old, longer file's.
//! - **Sync markers**: each group commit after a segment's first begins with a small marker
//!   record naming the offset up to which the segment was synced before it. A marker that
//!   reached the disk proves that every record before that offset was synced and
//!   acknowledged.
//! - **Directories**: a group's directory (and any parent `Storage::open` creates) is made
//!   durable by syncing its parent.
//! - **Snapshots**: chunks are written into `snapshot.partial`; the installing chunk fsyncs
//!   it (with its meta and checksums) and renames it over `snapshot`, then the directory is
//!   fsync'd and the old log segments are deleted. [`Storage::save_snapshot`] writes a
//!   temp file, fsyncs it, renames it and fsyncs the directory.
//!
//! A crash can lose only writes not yet acknowledged, and of the write in progress it keeps
//! a prefix in the contract's order. On [`Storage::open`] a torn record at the end of the
//! last segment is cut off, with the zeros the log writes ahead of its end
//! ([`StorageConfig::preallocate_bytes`], so that an append's sync has no file size to
//! commit); a full segment loses its zeros before the next one is created. A snapshot being
//! received in chunks is not kept across a restart (`snapshot.partial` is deleted on open;
//! the leader sends it again).
//!
//! A bad record of the last segment is a torn append only if no sync marker after it (found
//! by its magic even when the bad record's length is damaged) proves it synced, and it looks
//! like one: incomplete, a header of zeros, followed by nothing but zeros, or holding a whole
//! sector of zeros. Damage is reported, never repaired by guessing: any other bad record, a
//! missing segment, or a snapshot failing its checksum makes [`Storage::open`] fail with a
//! [`StorageError`] naming the file and byte offset, and leaves the directory untouched.
//!
//! Two limits remain, both about the last group commit, which no later marker vouches for:
//! damage inside it that looks like a torn append (a sector of zeros) is cut off like one,
//! even if the commit had been synced; and after a power loss, a drive that wrote its pages
//! out of order can leave garbage followed by good records, which is reported as damage,
//! not cut off. Telling those apart needs a second sync per commit.
//!
//! Durability relies on `fsync`/`fdatasync` doing their job: on macOS they do not flush the
//! drive's cache, and directory fsync does not exist on Windows.
//!
//! # Example
//!
//! ```
//! use shale_core::raft::{Entry, EntryKind, HardState, Write};
//! use shale_runtime_std::Storage;
//!
//! let dir = tempfile::tempdir()?;
//! let (mut storage, recovered) = Storage::open(dir.path())?;
//! assert!(recovered.entries.is_empty());
//! storage.write(&Write {
//!     id: 1,
//!     hard_state: Some(HardState { term: 1, vote: Some(1) }),
//!     entries: vec![Entry { term: 1, index: 1, kind: EntryKind::Noop, data: Default::default() }],
//!     ..Write::default()
//! })?;
//! drop(storage);
//! let (_storage, recovered) = Storage::open(dir.path())?;
//! assert_eq!(recovered.hard_state.term, 1);
//! assert_eq!(recovered.entries.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Group commit
//!
//! [`GroupCommit`] runs a [`Storage`] on its own thread so many writers share each
//! `fdatasync`: the thread takes every queued request (up to a maximum), persists them with
//! one [`Storage::write_batch`], then answers each writer. See [`storage::group_commit`].
//!
//! # Transport
//!
//! [`transport::Transport`] connects the nodes over TCP: one outbound connection per peer
//! carries the messages of every group as `(group id, Outgoing)` envelopes in length-prefixed
//! frames; each connection opens with a handshake checking the cluster id, protocol version
//! and node id. Sends never block (a bounded queue per peer drops and counts overflow), writers
//! reconnect with capped exponential backoff, and bad input closes only the connection it came
//! on, counted in [`transport::TransportStats`].
//!
//! ```
//! use std::time::Duration;
//! use shale_core::raft::{Message, Outgoing};
//! use shale_runtime_std::transport::{Transport, TransportConfig};
//!
//! let mut a = Transport::listen("127.0.0.1:0", TransportConfig::new(7, 1))?;
//! let b = Transport::listen("127.0.0.1:0", TransportConfig::new(7, 2))?;
//! a.add_peer(2, b.local_addr())?;
//! let message = Outgoing { from: 1, to: 2, message: Message::HeartbeatResponse { term: 1, round: 1 } };
//! assert!(a.send(2, 42, message.clone()));
//! let got = b.recv_timeout(Duration::from_secs(5)).and_then(|d| d.into_raft()).expect("delivered");
//! assert_eq!((got.group, got.message), (42, message));
//! a.shutdown();
//! b.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod node;
pub mod storage;
pub mod transport;

pub use storage::{
    DEFAULT_MAX_SEGMENT_BYTES, DEFAULT_PREALLOCATE_BYTES, GroupCommit, GroupCommitConfig,
    GroupCommitError, GroupCommitStats, Storage, StorageConfig, StorageError,
};
