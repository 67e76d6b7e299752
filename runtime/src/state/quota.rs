//! [`StateQuota`]: the disk one pipeline's partition stores may take on this daemon.
//!
//! The size is measured, not predicted: each partition reports what its store's
//! directory holds now and then, and the quota adds the reports up. A store's size on
//! disk lags its writes (memtables flush later, compaction shrinks later), so the bound
//! is soft by what a pipeline can write between two measurements; it exists to keep a
//! runaway transform from filling the disk every pipeline of the daemon shares, not to
//! account bytes exactly. Only writes that add state are refused past it: deletes
//! stay allowed, so a transform can still clean up, and a restore always completes
//! (its data is already committed).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What one pipeline's stores take on this daemon's disk, against an optional limit.
#[derive(Debug, Default)]
pub struct StateQuota {
    limit: Option<u64>,
    /// The last size reported for each store directory.
    sizes: Mutex<HashMap<PathBuf, u64>>,
    /// The sum of `sizes`, readable without the lock on every state write.
    used: AtomicU64,
}

/// The quota was reached: state writes that add data are refused.
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
            ..Self::default()
        }
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// The store at `store` now takes `bytes`. Returns the pipeline's total.
    pub fn report(&self, store: &Path, bytes: u64) -> u64 {
        let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        sizes.insert(store.to_path_buf(), bytes);
        self.sum(&sizes)
    }

    /// The store at `store` left this daemon (its partition was revoked): its disk is
    /// no longer the pipeline's here. Returns the pipeline's total.
    pub fn forget(&self, store: &Path) -> u64 {
        let mut sizes = self.sizes.lock().unwrap_or_else(|e| e.into_inner());
        sizes.remove(store);
        self.sum(&sizes)
    }

    fn sum(&self, sizes: &HashMap<PathBuf, u64>) -> u64 {
        let total = sizes.values().sum();
        self.used.store(total, Ordering::Relaxed);
        total
    }

    /// Bytes the pipeline's stores took when last measured.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Whether writes that add state must be refused now.
    pub fn reached(&self) -> Option<QuotaReached> {
        let limit = self.limit?;
        let used = self.used();
        (used >= limit).then_some(QuotaReached { used, limit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_adds_up_the_latest_size_of_each_store() {
        let quota = StateQuota::new(Some(100));
        assert_eq!(quota.report(Path::new("a"), 30), 30);
        assert_eq!(quota.report(Path::new("b"), 50), 80);
        assert_eq!(quota.reached(), None);
        // A new measurement replaces the old one; it does not add to it.
        assert_eq!(quota.report(Path::new("a"), 60), 110);
        assert_eq!(
            quota.reached(),
            Some(QuotaReached {
                used: 110,
                limit: 100
            })
        );
        // A revoked partition's store no longer counts.
        assert_eq!(quota.forget(Path::new("b")), 60);
        assert_eq!(quota.reached(), None);
    }

    #[test]
    fn without_a_limit_the_quota_only_measures() {
        let quota = StateQuota::new(None);
        quota.report(Path::new("a"), u64::MAX / 2);
        assert_eq!(quota.used(), u64::MAX / 2);
        assert_eq!(quota.reached(), None);
    }
}
