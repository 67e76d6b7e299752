//! The partition's pending timers in firing order: state entries
//! ([`crate::time::timers`]) with the earliest of each domain held in memory
//! ([`TimerHead`]), so that the next timer and the timers due are found without a
//! scan of the state on every batch.
//!
//! Every timer the engine sets, deletes or fires goes through here, which keeps the
//! heads in step with the state; a rollback or discard that undoes a timer write is
//! seen through [`PartitionState::timer_undos`] and makes the heads start over from
//! the state.

use crate::state::{PartitionState, StateError};
use crate::time::queue::{PAGE, PAGE_BYTES, SMALL_PAGE, TimerHead};
use crate::time::timers::domain_prefix;
use crate::time::{TimeDomain, Timer};

#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    event: TimerHead,
    processing: TimerHead,
    /// The state's [`timer_undos`](PartitionState::timer_undos) the heads are
    /// in step with.
    undos: u64,
}

impl TimerQueue {
    pub(crate) fn set(&mut self, state: &mut PartitionState, timer: Timer) {
        state.put(timer.state_key(), Vec::new());
        self.head(state, timer.domain).set(timer);
    }

    pub(crate) fn delete(&mut self, state: &mut PartitionState, timer: &Timer) {
        state.delete(timer.state_key());
        self.head(state, timer.domain).delete(timer);
    }

    /// When the earliest timer of `domain` is set for.
    pub(crate) fn next(
        &mut self,
        state: &mut PartitionState,
        domain: TimeDomain,
    ) -> Result<Option<i64>, StateError> {
        Ok(self.filled(state, domain)?.first().map(|timer| timer.at))
    }

    /// Up to `limit` timers of `domain` due at `upto`, earliest first, deleted from the
    /// state: they are firing.
    pub(crate) fn take_due(
        &mut self,
        state: &mut PartitionState,
        domain: TimeDomain,
        upto: i64,
        limit: usize,
    ) -> Result<Vec<Timer>, StateError> {
        let mut due = Vec::new();
        while due.len() < limit {
            let Some(timer) = self.filled(state, domain)?.pop_if(|t| t.at <= upto) else {
                break;
            };
            state.delete(timer.state_key());
            due.push(timer);
        }
        Ok(due)
    }

    /// The head of `domain`, forgotten first if writes were undone since it was last
    /// in step.
    fn head(&mut self, state: &PartitionState, domain: TimeDomain) -> &mut TimerHead {
        if state.timer_undos() != self.undos {
            self.event.forget();
            self.processing.forget();
            self.undos = state.timer_undos();
        }
        match domain {
            TimeDomain::Event => &mut self.event,
            TimeDomain::Processing => &mut self.processing,
        }
    }

    /// The head of `domain`, with its next page read from the state if it needs one.
    fn filled(
        &mut self,
        state: &mut PartitionState,
        domain: TimeDomain,
    ) -> Result<&mut TimerHead, StateError> {
        let head = self.head(state, domain);
        if let Some(after) = head.wants_page() {
            let (prefix, after) = (domain_prefix(domain), after.map(Timer::state_key));
            // A page of small timers, or a few when their keys are large.
            let (page, size) =
                match state.scan_within(&prefix, after.as_deref(), PAGE, PAGE_BYTES)? {
                    Some(page) => (page, PAGE),
                    None => (
                        state.scan(&prefix, after.as_deref(), SMALL_PAGE)?,
                        SMALL_PAGE,
                    ),
                };
            let complete = page.len() < size;
            let timers = page
                .iter()
                .filter_map(|entry| Timer::from_state_key(&entry.key))
                .collect();
            head.add_page(timers, complete);
        }
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(at: i64) -> Timer {
        Timer::new(TimeDomain::Event, at, b"k".to_vec())
    }

    fn due(queue: &mut TimerQueue, state: &mut PartitionState, upto: i64) -> Vec<i64> {
        let due = queue.take_due(state, TimeDomain::Event, upto, 100).unwrap();
        due.iter().map(|timer| timer.at).collect()
    }

    #[test]
    fn undone_writes_of_timers_are_undone_in_the_queue_too() {
        let mut state = PartitionState::default();
        let mut queue = TimerQueue::default();
        for at in [30, 10, 20] {
            queue.set(&mut state, timer(at));
        }
        state.checkpoint(&[]).unwrap();
        assert_eq!(queue.next(&mut state, TimeDomain::Event).unwrap(), Some(10));

        // A batch fires two and sets one, then rolls back: as if it never ran.
        state.begin_batch();
        assert_eq!(due(&mut queue, &mut state, 20), [10, 20]);
        queue.set(&mut state, timer(5));
        assert_eq!(queue.next(&mut state, TimeDomain::Event).unwrap(), Some(5));
        state.rollback_batch();
        assert_eq!(queue.next(&mut state, TimeDomain::Event).unwrap(), Some(10));

        // Fired since the checkpoint, then discarded: pending again.
        assert_eq!(due(&mut queue, &mut state, 10), [10]);
        state.discard_uncommitted();
        assert_eq!(due(&mut queue, &mut state, i64::MAX), [10, 20, 30]);
        assert_eq!(queue.next(&mut state, TimeDomain::Event).unwrap(), None);
    }

    #[test]
    fn undoing_other_keys_than_timers_keeps_the_heads() {
        let mut state = PartitionState::default();
        let mut queue = TimerQueue::default();
        queue.set(&mut state, timer(10));
        let undos = state.timer_undos();
        state.begin_batch();
        state.put(b"user-key".to_vec(), b"1".to_vec());
        state.put(crate::time::timers::CLOCK_KEY.to_vec(), b"5".to_vec());
        state.rollback_batch();
        assert_eq!(state.timer_undos(), undos, "neither is a timer");
        state.begin_batch();
        queue.delete(&mut state, &timer(10));
        state.rollback_batch();
        assert_eq!(state.timer_undos(), undos + 1);
        assert_eq!(queue.next(&mut state, TimeDomain::Event).unwrap(), Some(10));
    }
}
