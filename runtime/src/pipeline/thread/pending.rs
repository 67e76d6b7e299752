//! [`PendingBudget`]: the memory every processing thread's uncommitted state writes hold
//! together, against `[memory] pending_state_bytes`.
//!
//! Each partition's writes are bounded on their own (`limits.max_pending_state_bytes`),
//! but a thousand partitions within their bounds can still hold the host's memory many
//! times over. Each thread publishes what its partitions hold after every round; when
//! the threads together pass half of the budget, each thread holding more than its
//! even part of that half checkpoints at once, which empties it (at least one does:
//! the parts add up to the half). That is back-pressure by earlier, smaller
//! transactions, not a refusal: no record fails because a neighbour wrote a lot, and a
//! thread holding little is not made to commit after every round while a busy one is
//! in a long batch.

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
    /// hold more than half the budget and this one more than its part of that half:
    /// it should checkpoint.
    pub fn hold(&self, thread: usize, bytes: u64) -> bool {
        if let Some(slot) = self.held.get(thread) {
            slot.store(bytes, Ordering::Relaxed);
        }
        let half = self.budget / 2;
        bytes > half / self.held.len() as u64 && self.held() > half
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
    fn threads_over_their_part_checkpoint_once_together_they_hold_half_the_budget() {
        // A half of 150 in three parts of 50.
        let budget = PendingBudget::new(300, 3);
        assert!(!budget.hold(0, 100), "100 of 300 is not past half");
        assert!(!budget.hold(1, 40));
        // Past half: the threads over their part checkpoint when they next publish;
        // the others go on.
        assert!(!budget.hold(2, 20), "20 is under its part");
        assert!(budget.hold(0, 100));
        assert!(!budget.hold(1, 40));
        // A checkpoint empties a thread's share.
        assert!(!budget.hold(0, 0));
        assert_eq!(budget.held(), 60);
    }
}
