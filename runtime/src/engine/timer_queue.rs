//! The partition's pending timers in firing order: state entries
//! ([`crate::time::timers`]) with the earliest of each domain held in memory
//! ([`TimerHead`]), so that the next timer and the timers due are found without a
//! scan of the state on every batch.
//!
//! Every timer the engine sets, deletes or fires goes through here, which keeps the
//! heads in step with the state; a rollback or discard of writes (which may undo any
//! of them) is seen through [`PartitionState::undos`] and makes the heads start over
//! from the state.

use crate::state::{PartitionState, StateError};
use crate::time::queue::{PAGE, TimerHead};
use crate::time::timers::domain_prefix;
use crate::time::{TimeDomain, Timer};

#[derive(Debug, Default)]
pub(crate) struct TimerQueue {
    event: TimerHead,
    processing: TimerHead,
    /// The state's [`undos`](PartitionState::undos) the heads are in step with.
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
        if state.undos() != self.undos {
            self.event.forget();
            self.processing.forget();
            self.undos = state.undos();
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
            let after = after.map(Timer::state_key);
            let page = state.scan(&domain_prefix(domain), after.as_deref(), PAGE)?;
            let complete = page.len() < PAGE;
            let timers = page
                .iter()
                .filter_map(|entry| Timer::from_state_key(&entry.key))
                .collect();
            head.add_page(timers, complete);
        }
        Ok(head)
    }
}
