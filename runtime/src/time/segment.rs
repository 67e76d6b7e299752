//! Where a batch is cut so that event-time timers fire between the right records.
//!
//! A timer at `t` fires as soon as the watermark reaches `t`, which happens on some
//! record of a batch. The host runs the records up to that point, fires the timers
//! due, and goes on with the rest: a timer's outputs land between the records around
//! it, whatever the batch boundaries, and a record that meets a watermark finds every
//! timer before it fired. Cuts are rare (a window's end, not every record), so a batch
//! is still one call in the common case.

/// The end (exclusive) of the run of records that starts at `from`: the first record
/// after `from` that meets a watermark at or past `next_due` (the earliest pending
/// event timer), or the end of the batch. `met[i]` is the watermark record `i` meets
/// ([`super::EventClock::watermarks_met`]). Timers due before record `from` itself are
/// the caller's to fire before running it.
pub fn run_end(met: &[i64], from: usize, next_due: Option<i64>) -> usize {
    let Some(due) = next_due else {
        return met.len();
    };
    (from + 1..met.len())
        .find(|&i| met[i] >= due)
        .unwrap_or(met.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_pending_timer_the_batch_is_one_run() {
        assert_eq!(run_end(&[1, 2, 3], 0, None), 3);
        assert_eq!(run_end(&[], 0, None), 0);
    }

    #[test]
    fn a_run_ends_before_the_record_that_meets_the_timer() {
        let met = [0, 5, 10, 10, 20];
        assert_eq!(run_end(&met, 0, Some(10)), 2);
        assert_eq!(run_end(&met, 2, Some(20)), 4);
        assert_eq!(run_end(&met, 0, Some(21)), 5);
        // A timer already due at `from` is fired before it: the run still makes
        // progress by at least one record.
        assert_eq!(run_end(&met, 2, Some(10)), 3);
    }
}
