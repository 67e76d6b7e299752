//! A processing-time clock that moves only when told: `weir test` runs processing
//! time from its fixtures, so a transform's processing-time timers and its wall clock
//! read the same, reproducible time.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// A shared clock, in milliseconds since the Unix epoch. Clones read the same time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn starting_at(ms: i64) -> Self {
        Self(Arc::new(AtomicI64::new(ms)))
    }

    pub fn now(&self) -> i64 {
        self.0.load(Ordering::Acquire)
    }

    /// Move the clock to `to`; it never goes back: `Err(now)` if `to` is earlier.
    pub fn advance_to(&self, to: i64) -> Result<(), i64> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| {
                (to >= now).then_some(to)
            })
            .map(|_| ())
    }
}

/// Two handles are equal when they are the same clock.
impl PartialEq for ManualClock {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for ManualClock {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_moves_forward_only_and_clones_share_it() {
        let clock = ManualClock::starting_at(10);
        let shared = clock.clone();
        assert_eq!(clock.advance_to(25), Ok(()));
        assert_eq!(shared.now(), 25);
        assert_eq!(shared.advance_to(20), Err(25));
        assert_eq!(clock.now(), 25);
        assert_ne!(clock, ManualClock::starting_at(25));
    }
}
