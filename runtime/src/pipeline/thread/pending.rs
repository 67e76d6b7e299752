//! [`PendingBudget`]: the memory every processing thread's uncommitted state writes hold
//! together, against `[memory] pending_state_bytes`.
//!
//! Each partition's writes are bounded on their own (`limits.max_pending_state_bytes`),
//! but a thousand partitions within their bounds can still hold the host's memory many
//! times over. Each thread publishes what its partitions hold after every round; when
//! the threads together pass half of the budget, every thread holding some checkpoints
//! at once, which empties its share. That is back-pressure by earlier, smaller
//! transactions, not a refusal: no record fails because a neighbour wrote a lot.

use std::sync::atomic::{AtomicU64, Ordering};

/// What each processing thread's partitions hold in uncommitted state writes.
#[derive(Debug)]
pub struct PendingBudget {
    budget: u64,
    held: Box<[AtomicU64]>,
}

impl PendingBudget {
    pub fn new(budget: u64, threads: usize) -> Self {
        Self {
            budget,
            held: (0..threads.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Thread `thread`'s partitions now hold `bytes`. True when the threads together
    /// hold more than half the budget and this one holds some: it should checkpoint.
    pub fn hold(&self, thread: usize, bytes: u64) -> bool {
        if let Some(slot) = self.held.get(thread) {
            slot.store(bytes, Ordering::Relaxed);
        }
        bytes > 0 && self.held() > self.budget / 2
    }

    /// Bytes every thread's partitions hold, as last published.
    pub fn held(&self) -> u64 {
        self.held
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_checkpoint_once_together_they_hold_half_the_budget() {
        let budget = PendingBudget::new(100, 3);
        assert!(!budget.hold(0, 30));
        assert!(!budget.hold(1, 20), "50 of 100 is not past half");
        // Past half: the thread publishing checkpoints, and so does any other that
        // holds some when it next publishes; one holding nothing has nothing to do.
        assert!(budget.hold(2, 1));
        assert!(budget.hold(0, 30));
        assert!(!budget.hold(2, 0));
        // A checkpoint empties a thread's share.
        assert!(!budget.hold(0, 0));
        assert_eq!(budget.held(), 20);
    }
}
