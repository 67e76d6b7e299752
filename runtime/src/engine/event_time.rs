//! Event time in an instance of a 0.3 guest: the watermark each record meets, where a
//! batch must be cut for the timers pending, and firing them.
//!
//! The partition's stream time and its timers are state entries ([`crate::time`]), so
//! all of it happens inside the caller's state scopes: a batch that is rolled back
//! takes its clock advance, the timers it set and the timers it fired with it, and
//! its replay decides the same again. The caller (`pipeline::batch`) runs the records
//! up to each cut and fires the timers due there, so that a failing timer and a
//! failing record are told apart.

use std::time::{SystemTime, UNIX_EPOCH};

use super::contract::CallResult;
use super::processor::{FireError, Fired, TimerFault};
use super::{GuestFault, InputRecord, Instance, MAX_REJECTION_BYTES, OutputRecord, ProcessError};
use super::{Processor, records, text};
use crate::state::{PartitionState, StateError};
use crate::time::timers::CLOCK_KEY;
use crate::time::{EventClock, TimeDomain, Timer, segment};

/// Most timers one `on-timers` call gets.
pub(super) const TIMERS_PER_CALL: usize = 256;

impl Processor for Instance {
    /// The contract's batches hold one topic and partition, so `records` goes to the
    /// guest one run of those at a time; a rejection's index is then shifted back to
    /// a position in `records`.
    fn process(&mut self, records: &[InputRecord]) -> Result<Vec<OutputRecord>, ProcessError> {
        // One clock for the call: the watermark each record meets, worked out once.
        let mut clock = None;
        let mut met = Vec::new();
        if self.module.contract().has_event_time() {
            let mut started = self.clock().map_err(ProcessError::Host)?;
            let host = self.store.data_mut();
            host.cut_floor = started.watermark();
            host.earliest_cut = None;
            let before = started.stream_time();
            met = started.watermarks_met(timestamps(records));
            clock = Some((started, before));
        }
        let mut outputs = Vec::with_capacity(records.len());
        let mut base = 0;
        for run in records::runs(records) {
            let run_met = met.get(base..base + run.len()).unwrap_or_default();
            match self.process_run(run, run_met, &mut outputs) {
                Err(ProcessError::Rejected { index, message }) => {
                    return Err(ProcessError::Rejected {
                        index: base + index,
                        message,
                    });
                }
                other => other?,
            }
            base += run.len();
        }
        if let Some((clock, before)) = clock {
            if clock.stream_time() != before {
                self.state()
                    .put(CLOCK_KEY.to_vec(), clock.encode().to_vec());
            }
            if let Some(at) = self.cut_within(&met) {
                return Err(ProcessError::Cut { at });
            }
        }
        Ok(outputs)
    }

    fn state(&mut self) -> &mut PartitionState {
        &mut self.store.data_mut().state
    }

    fn run_end(&mut self, records: &[InputRecord]) -> Result<usize, StateError> {
        if !self.module.contract().has_event_time() {
            return Ok(records.len());
        }
        let Some(next) = self.next_cut()? else {
            return Ok(records.len());
        };
        let met = self.clock()?.watermarks_met(timestamps(records));
        Ok(segment::run_end(&met, 0, Some(next)))
    }

    fn fire_timers(&mut self) -> Result<Option<Fired>, FireError> {
        if !self.module.contract().has_event_time() {
            return Ok(None);
        }
        // Asked at every firing point: without timers (the queue knows, mostly without
        // reading the store), the clock need not be read and decoded.
        let mut pending = false;
        for domain in [TimeDomain::Event, TimeDomain::Processing] {
            pending |= self.next_timer(domain).map_err(FireError::Host)?.is_some();
        }
        if !pending {
            return Ok(None);
        }
        let clock = self.clock().map_err(FireError::Host)?;
        let watermark = clock.watermark();
        let now = self.processing_time(&clock);
        for (domain, upto) in [
            (TimeDomain::Event, watermark),
            (TimeDomain::Processing, now),
        ] {
            let limit = self.timers_per_call;
            let host = self.store.data_mut();
            let due = host
                .timers
                .take_due(&mut host.state, domain, upto, limit)
                .map_err(FireError::Host)?;
            if due.is_empty() {
                continue;
            }
            let outputs = self.call_on_timers(&due, watermark)?;
            return Ok(Some(Fired {
                timers: due,
                outputs,
            }));
        }
        Ok(None)
    }

    fn isolate_timers(&mut self, one_at_a_time: bool) {
        self.timers_per_call = if one_at_a_time { 1 } else { TIMERS_PER_CALL };
    }

    fn delete_timer(&mut self, timer: &Timer) {
        let host = self.store.data_mut();
        host.timers.delete(&mut host.state, timer);
    }
}

fn timestamps(records: &[InputRecord]) -> impl Iterator<Item = i64> + '_ {
    records.iter().map(|record| record.timestamp)
}

impl Instance {
    /// The partition's watermark (contract 0.3), once a record with a timestamp has
    /// been seen.
    pub fn watermark(&mut self) -> Result<Option<i64>, StateError> {
        if !self.module.contract().has_event_time() {
            return Ok(None);
        }
        let watermark = self.clock()?.watermark();
        Ok((watermark != crate::time::watermark::NO_TIME).then_some(watermark))
    }

    /// The partition's stream time (contract 0.3): the largest record timestamp it
    /// has processed, as committed with its state (so a rewind or a restore brings
    /// it back with the records).
    pub fn stream_time(&mut self) -> Result<Option<i64>, StateError> {
        if !self.module.contract().has_event_time() {
            return Ok(None);
        }
        let time = self.clock()?.stream_time();
        Ok((time != crate::time::watermark::NO_TIME).then_some(time))
    }

    /// Move the partition's watermark to `to`, as a record `to` plus the allowed
    /// out-of-orderness would (never back); the timers due then fire at the next
    /// firing point (a batch, even an empty one). `false` for a module of a contract
    /// without event time. `weir test` does this for its fixtures' watermark lines.
    pub fn advance_watermark(&mut self, to: i64) -> Result<bool, StateError> {
        if !self.module.contract().has_event_time() {
            return Ok(false);
        }
        let allowance = i64::try_from(self.limits.max_out_of_orderness_ms).unwrap_or(i64::MAX);
        let mut clock = self.clock()?;
        let before = clock.stream_time();
        clock.observe(to.saturating_add(allowance));
        if clock.stream_time() != before {
            self.state()
                .put(CLOCK_KEY.to_vec(), clock.encode().to_vec());
        }
        Ok(true)
    }

    /// Whether a processing-time timer is due now: a partition that receives no
    /// records still fires those (the processing thread asks now and then).
    pub fn processing_timer_due(&mut self) -> Result<bool, StateError> {
        if !self.module.contract().has_event_time() {
            return Ok(false);
        }
        let Some(at) = self.next_timer(TimeDomain::Processing)? else {
            return Ok(false);
        };
        let clock = self.clock()?;
        Ok(at <= self.processing_time(&clock))
    }

    /// The first record after the first whose watermark (`met`) passes a timer set
    /// during the call for a later time than the call began at: the caller cut the run
    /// before the timers known when it started.
    fn cut_within(&mut self, met: &[i64]) -> Option<usize> {
        let due = self.store.data_mut().earliest_cut.take()?;
        let end = segment::run_end(met, 0, Some(due));
        (end < met.len()).then_some(end)
    }

    /// The partition's clock, resumed from its state.
    fn clock(&mut self) -> Result<EventClock, StateError> {
        let allowed = self.limits.max_out_of_orderness_ms;
        let stored = self.state().get(CLOCK_KEY)?;
        Ok(
            match stored.as_deref().and_then(EventClock::decode_stream_time) {
                Some(stream_time) => EventClock::resumed(allowed, stream_time),
                None => EventClock::new(allowed),
            },
        )
    }

    /// Processing time for timers: the wall clock, or the stream time for a
    /// `deterministic` pipeline, whose replays must not depend on when they run.
    fn processing_time(&self, clock: &EventClock) -> i64 {
        if self.limits.deterministic {
            return clock.stream_time();
        }
        if let Some(manual) = &self.limits.manual_clock {
            return manual.now();
        }
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64)
    }

    /// The watermark at which the next timer falls due: the earliest event-time
    /// timer, and under `deterministic` the earliest processing-time one too (whose
    /// clock is then the stream time, the watermark plus the allowance), so that where
    /// those fire does not depend on batch boundaries either.
    fn next_cut(&mut self) -> Result<Option<i64>, StateError> {
        let event = self.next_timer(TimeDomain::Event)?;
        if !self.limits.deterministic {
            return Ok(event);
        }
        let allowance = i64::try_from(self.limits.max_out_of_orderness_ms).unwrap_or(i64::MAX);
        let processing = self
            .next_timer(TimeDomain::Processing)?
            .map(|at| at.saturating_sub(allowance));
        Ok(event.into_iter().chain(processing).min())
    }

    /// When the earliest timer of `domain` is set for.
    fn next_timer(&mut self, domain: TimeDomain) -> Result<Option<i64>, StateError> {
        let host = self.store.data_mut();
        host.timers.next(&mut host.state, domain)
    }

    /// One `on-timers` call with `due`: their outputs.
    fn call_on_timers(
        &mut self,
        due: &[Timer],
        watermark: i64,
    ) -> Result<Vec<OutputRecord>, FireError> {
        let whole_group = |fault| FireError::Failed {
            timers: due.to_vec(),
            reason: TimerFault::Fault(fault),
        };
        let fired = records::encode_fired(due, watermark).map_err(|_| {
            whole_group(GuestFault::Contract {
                message: "timer keys too large for the contract's 32-bit lengths".to_owned(),
            })
        })?;
        // A restart or a call fails as a fault of the whole group, or of the host.
        let failed = |error: ProcessError| match error {
            ProcessError::Fault(fault) => whole_group(fault),
            ProcessError::Host(error) => FireError::Host(error),
            ProcessError::Restart(error) => FireError::Restart(error),
            // Neither comes from a restart or a call; kept apart from the guest's faults.
            other @ (ProcessError::Rejected { .. } | ProcessError::Cut { .. }) => {
                whole_group(GuestFault::Trap {
                    message: other.to_string(),
                })
            }
        };
        if self.bindings.is_none() {
            self.restart().map_err(&failed)?;
        }
        let bindings = self.bindings.take().expect("started above");
        let outcome: CallResult = self
            .call(|store| bindings.call_on_timers(store, &fired))
            .map_err(&failed)?;
        // The guest returned normally, so its instance is still sound.
        self.bindings = Some(bindings);
        let mut outputs = Vec::new();
        match outcome {
            Ok(batch) => records::decode(&batch, &mut outputs)
                .map(|()| outputs)
                .map_err(|message| whole_group(GuestFault::Contract { message })),
            Err(mut rejected) => match due.get(rejected.index as usize) {
                Some(timer) => {
                    text::cut(&mut rejected.message, MAX_REJECTION_BYTES);
                    Err(FireError::Failed {
                        timers: vec![timer.clone()],
                        reason: TimerFault::Rejected {
                            message: rejected.message,
                        },
                    })
                }
                None => Err(whole_group(GuestFault::Contract {
                    message: format!(
                        "on-timers reported an error for timer {} of {}: {}",
                        rejected.index,
                        due.len(),
                        rejected.message
                    ),
                })),
            },
        }
    }
}
