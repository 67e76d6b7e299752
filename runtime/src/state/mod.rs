//! Keyed state: the [`StateStore`] trait, its RocksDB and in-memory implementations,
//! and [`PartitionState`], the per-partition write buffer that makes checkpoints atomic.
//!
//! A store holds *committed* state only. Everything a transform writes lands in the
//! partition's buffer first (reads see the buffer before the store), and
//! [`PartitionState::checkpoint`] applies the buffer together with the caller's metadata
//! (the Kafka layer stores input offsets there) in one atomic write. That ordering is what
//! lets a crash leave local state at or behind Kafka, never ahead of it.
//!
//! This module knows nothing about guests or Kafka.

mod buffer;
pub mod changelog;
mod committer;
#[cfg(test)]
mod conformance;
mod memory;
mod quota;
mod rocks;

pub use buffer::{CheckpointStats, PartitionState, WriteSet};
pub use memory::MemoryStore;
pub use quota::{QuotaReached, StateQuota, store_size, stores_size};
pub use rocks::{RocksMemory, RocksStore};

use std::path::PathBuf;

/// One key and its value, as returned by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// Committed keyed state of one partition.
///
/// Implementations must make [`commit`](StateStore::commit) atomic: after a crash either
/// all of a commit's writes and metadata are visible, or none are.
pub trait StateStore: Send {
    /// The committed value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;

    /// Up to `limit` entries whose key starts with `prefix`, in ascending key order,
    /// strictly after `start_after` when given.
    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StateError>;

    /// Apply `writes` (a `None` value deletes the key) and `metadata` in one atomic step.
    fn commit(&mut self, writes: &WriteSet, metadata: &[(&str, &[u8])]) -> Result<(), StateError>;

    /// Metadata stored by an earlier commit, kept apart from the transform's keys.
    fn metadata(&self, name: &str) -> Result<Option<Vec<u8>>, StateError>;
}

/// A state store could not do what was asked. These are host failures, never the
/// transform's fault: a pipeline stops rather than blame a record for them.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "cannot open the state store at {path}: {source}. Check that the directory is \
         writable and that no other Weir process is using it"
    )]
    Open {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("the state store at {path} failed to {operation}: {source}")]
    Io {
        path: PathBuf,
        operation: &'static str,
        source: rocksdb::Error,
    },
    #[error(
        "an earlier checkpoint failed to reach the state store ({0}); the partition must \
         restart from its last committed checkpoint"
    )]
    EarlierCommitFailed(String),
}
