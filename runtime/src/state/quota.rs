//! [`StateQuota`]: the disk one pipeline's partition stores may take on this daemon.
//!
//! The size is measured, not predicted: the pipeline's state directory (every store
//! in it, those of partitions that moved away included, since their files stay until
//! the partition comes back) is walked every second. A store's size on disk lags its
//! writes (memtables flush later, compaction shrinks later), so the bound is soft by
//! what a pipeline can write between two measurements; it exists to keep a runaway
//! transform from filling the disk every pipeline of the daemon shares, not to account
//! bytes exactly. Past it, state writes that set a value are refused; deletes stay
//! allowed, so a transform can still clean up, and a restore always completes (its
//! data is already committed).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// What one pipeline's stores take on this daemon's disk, against an optional limit.
#[derive(Debug, Default)]
pub struct StateQuota {
    limit: Option<u64>,
    /// Bytes measured last.
    used: AtomicU64,
}

/// The quota was reached: state writes that set a value are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaReached {
    pub used: u64,
    pub limit: u64,
}

impl StateQuota {
    /// A quota of `limit` bytes; `None` only measures.
    pub fn new(limit: Option<u64>) -> Self {
        Self {
            limit,
            used: AtomicU64::new(0),
        }
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// The pipeline's stores take `bytes` now.
    pub fn measured(&self, bytes: u64) {
        self.used.store(bytes, Ordering::Relaxed);
    }

    /// Bytes the pipeline's stores took when last measured.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether writes that set a value must be refused now.
    pub fn reached(&self) -> Option<QuotaReached> {
        let limit = self.limit?;
        let used = self.used();
        (used >= limit).then_some(QuotaReached { used, limit })
    }
}

/// Bytes of the files in one store's directory (RocksDB keeps a flat directory).
pub fn store_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Bytes of every store under a pipeline's state directory (one directory per store).
pub fn stores_size(state_dir: &Path) -> u64 {
    std::fs::read_dir(state_dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| store_size(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_is_reached_at_its_limit() {
        let quota = StateQuota::new(Some(100));
        quota.measured(99);
        assert_eq!(quota.reached(), None);
        quota.measured(100);
        assert_eq!(
            quota.reached(),
            Some(QuotaReached {
                used: 100,
                limit: 100
            })
        );
        // Measured again after deletes and a compaction: under it again.
        quota.measured(60);
        assert_eq!(quota.reached(), None);
    }

    #[test]
    fn without_a_limit_the_quota_only_measures() {
        let quota = StateQuota::new(None);
        quota.measured(u64::MAX / 2);
        assert_eq!(quota.used(), u64::MAX / 2);
        assert_eq!(quota.reached(), None);
    }

    #[test]
    fn every_store_of_the_pipeline_counts() {
        let dir = tempfile::tempdir().unwrap();
        for (store, bytes) in [("text-0", 10), ("text-1", 32)] {
            std::fs::create_dir(dir.path().join(store)).unwrap();
            std::fs::write(dir.path().join(store).join("000001.log"), vec![0; bytes]).unwrap();
        }
        std::fs::write(dir.path().join("stray"), [0; 1000]).unwrap();
        assert_eq!(store_size(&dir.path().join("text-1")), 32);
        assert_eq!(stores_size(dir.path()), 42);
        assert_eq!(stores_size(&dir.path().join("missing")), 0);
    }
}
