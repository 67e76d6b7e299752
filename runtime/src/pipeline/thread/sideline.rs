//! How long a partition whose batch was slow waits while its thread runs the others.
//!
//! A thread runs many partitions one batch at a time, so a batch that takes a second
//! (a transform looping to its call deadline, sleeping, or just heavy) holds every other
//! partition of the thread for that second. After such a batch the partition waits,
//! while the thread has other work, for as long as the batch took: a slow transform
//! then gets as much of its thread as its neighbours, no more. A batch in which a call
//! ran out its deadline waits [`TIMED_OUT_FACTOR`] times as long: that time bought
//! nothing but a failed record (skipped or dead-lettered), and a hostile or broken transform
//! that fails this way record after record keeps a fifth of its thread, its
//! neighbours four fifths. Waiting only yields to work: a thread with nothing else to
//! run goes on with the slow partition at once.

use std::time::Duration;

use crate::pipeline::task::Ran;

/// A batch whose transform takes at least this long makes its partition wait. A normal
/// batch takes a few milliseconds.
pub const SLOW_BATCH: Duration = Duration::from_millis(100);

/// How many times as long as it took a batch with a timed-out call waits.
pub const TIMED_OUT_FACTOR: u32 = 4;

/// How long the batch's partition waits while its thread runs the others, or `None`
/// when the batch was quick.
pub fn wait_after(ran: Ran) -> Option<Duration> {
    if ran.took < SLOW_BATCH {
        return None;
    }
    Some(if ran.timed_out {
        ran.took.saturating_mul(TIMED_OUT_FACTOR)
    } else {
        ran.took
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran(millis: u64, timed_out: bool) -> Ran {
        Ran {
            took: Duration::from_millis(millis),
            timed_out,
        }
    }

    #[test]
    fn a_quick_batch_does_not_wait() {
        assert_eq!(wait_after(ran(99, false)), None);
        // A call that timed out under a tiny deadline is quick all the same.
        assert_eq!(wait_after(ran(20, true)), None);
    }

    #[test]
    fn a_slow_batch_waits_as_long_as_it_took() {
        assert_eq!(
            wait_after(ran(100, false)),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            wait_after(ran(1500, false)),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn a_batch_whose_call_ran_out_its_deadline_waits_four_times_as_long() {
        assert_eq!(wait_after(ran(1000, true)), Some(Duration::from_secs(4)));
    }
}
