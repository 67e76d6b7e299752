//! One batch through a transform, with failures isolated to the records that cause them.
//!
//! A batch runs as one state scope. If the transform rejects record `i`, the scope is
//! rolled back, records before `i` are replayed (their writes went with the rollback),
//! the policy is applied to `i`, and the rest runs as a new batch. A fault (a trap)
//! does not say which record caused it, so the batch is re-run one record at a time up
//! to the first record that fails. Either way a failing record's state writes and
//! outputs never survive, and every other record's take effect exactly once. Outputs
//! the pipeline may not send ([`OutputRules`]: a topic outside its list, too many
//! bytes) fail their record the same way: outputs are not tied to their inputs, so a
//! batch holding one is re-run record by record to find it.
//!
//! Timers (contract 0.3) fire between runs of records: a batch is cut where the
//! watermark passes a pending timer, and after its last record. Each group of timers
//! fires in a state scope of its own; one that fails is handled by the policy like a
//! record (and deleted, so it does not fire again), and a fault in a group is found by
//! firing its timers one at a time.

use crate::engine::{EngineError, FireError, GuestFault, TimerFault};
use crate::engine::{InputRecord, OutputRecord};
use crate::state::StateError;
use crate::time::Timer;

use super::outputs::{OutputRefusal, OutputRules};
use super::{ErrorPolicy, ProcessError, Processor};

/// Why a record could not be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailureReason {
    #[error("rejected by the transform: {message}")]
    Rejected { message: String },
    #[error(transparent)]
    Fault(GuestFault),
    #[error(transparent)]
    Output(OutputRefusal),
}

impl FailureReason {
    /// Short machine-readable kind, for metrics and dead-letter headers.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rejected { .. } => "rejected",
            Self::Fault(fault) => fault.kind(),
            Self::Output(refusal) => refusal.kind(),
        }
    }
}

/// A record the policy skipped or set aside for the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFailure {
    /// Position of the record in the batch.
    pub index: usize,
    pub reason: FailureReason,
}

impl From<TimerFault> for FailureReason {
    fn from(fault: TimerFault) -> Self {
        match fault {
            TimerFault::Rejected { message } => FailureReason::Rejected { message },
            TimerFault::Fault(fault) => FailureReason::Fault(fault),
        }
    }
}

/// A timer the policy skipped or set aside for the dead-letter topic; it is deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerFailure {
    pub timer: Timer,
    pub reason: FailureReason,
}

/// What a batch produced.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Outputs in input order, timers' outputs between the records around them.
    pub outputs: Vec<OutputRecord>,
    /// Records that failed, in input order; what to do with them is the policy's.
    pub failures: Vec<RecordFailure>,
    /// Timers that failed, in firing order; likewise.
    pub timer_failures: Vec<TimerFailure>,
}

/// The batch cannot complete. The partition's uncommitted state must be discarded.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("record {index} of the batch failed and the error policy is `fail`: {reason}")]
    RecordFailed { index: usize, reason: FailureReason },
    #[error(
        "the {domain} timer at {at} failed and the error policy is `fail`: {reason}",
        domain = timer.domain, at = timer.at
    )]
    TimerFailed { timer: Timer, reason: FailureReason },
    #[error(transparent)]
    Host(#[from] StateError),
    #[error(transparent)]
    Restart(EngineError),
}

impl BatchError {
    /// Why the record or timer failed, when one failed under `fail`.
    pub fn failure(&self) -> Option<&FailureReason> {
        match self {
            Self::RecordFailed { reason, .. } | Self::TimerFailed { reason, .. } => Some(reason),
            Self::Host(_) | Self::Restart(_) => None,
        }
    }
}

/// Run `records` through `processor`, applying `policy` to each record that fails;
/// outputs may go to any topic (`weir test`, benches).
pub fn run_batch<P: Processor + ?Sized>(
    processor: &mut P,
    records: &[InputRecord],
    policy: ErrorPolicy,
) -> Result<BatchOutcome, BatchError> {
    run_batch_within(processor, records, policy, &OutputRules::any())
}

/// [`run_batch`] for a pipeline: a record whose outputs break `rules` fails under
/// `policy`.
pub fn run_batch_within<P: Processor + ?Sized>(
    processor: &mut P,
    records: &[InputRecord],
    policy: ErrorPolicy,
    rules: &OutputRules,
) -> Result<BatchOutcome, BatchError> {
    let mut run = Run {
        processor,
        policy,
        rules,
        output_bytes: 0,
        timer_output_bytes: 0,
        isolating_timers: false,
        outcome: BatchOutcome::default(),
    };
    let result = run.batch(records);
    if run.isolating_timers {
        run.processor.isolate_timers(false);
    }
    result.map(|()| run.outcome)
}

enum Attempt {
    Done,
    Rejected {
        at: usize,
        message: String,
    },
    /// Like a fault, it does not say which record it came from.
    Unattributed(FailureReason),
    /// A timer set on the way falls due before record `.0`: redo up to there.
    Cut(usize),
}

/// Most timers one firing point fires. A firing point fires every timer due, those
/// that firing sets for a time already passed too, so that what fires where does not
/// depend on batch boundaries; only a guest that keeps setting timers already due
/// reaches this, and its rest wait for the next point (logged).
const MAX_TIMERS_PER_POINT: usize = 100_000;

struct Run<'p, P: ?Sized> {
    processor: &'p mut P,
    policy: ErrorPolicy,
    rules: &'p OutputRules,
    /// Bytes of the outputs kept so far, which the batch's output bound counts.
    output_bytes: u64,
    /// Bytes of the timers' outputs kept so far: they have a bound of their own (the
    /// same size), so that a window's result never fails for the records before it.
    timer_output_bytes: u64,
    /// The processor was asked to fire timers one at a time, until the batch ends.
    isolating_timers: bool,
    outcome: BatchOutcome,
}

impl<P: Processor + ?Sized> Run<'_, P> {
    /// The batch, in runs cut where timers fall due, firing them between the runs and
    /// after the last.
    fn batch(&mut self, records: &[InputRecord]) -> Result<(), BatchError> {
        let mut from = 0;
        loop {
            self.timers()?;
            let rest = &records[from..];
            if rest.is_empty() {
                return Ok(());
            }
            let end = self.processor.run_end(rest)?.clamp(1, rest.len());
            from += self.records(&rest[..end], from)?;
        }
    }

    /// Fire the timers due now, a group at a time, each in a state scope of its own.
    /// The timers' outputs of one batch have a bound of their own
    /// (`max_batch_output_bytes`): when a group would pass it, it waits (not failed) for
    /// the next batch, and only then does where it fires depend on batch boundaries.
    fn timers(&mut self) -> Result<(), BatchError> {
        let mut fired_here = 0;
        while fired_here < MAX_TIMERS_PER_POINT {
            self.processor.state().begin_batch();
            let (timers, reason) = match self.processor.fire_timers() {
                Ok(None) => {
                    self.processor.state().commit_batch();
                    return Ok(());
                }
                Ok(Some(fired)) => {
                    match self.rules.check(&fired.outputs, self.timer_output_bytes) {
                        Ok(bytes) => {
                            self.timer_output_bytes += bytes;
                            fired_here += fired.timers.len();
                            self.processor.state().commit_batch();
                            self.outcome.outputs.extend(fired.outputs);
                            continue;
                        }
                        Err(OutputRefusal::CallTooLarge { .. }) if self.timer_output_bytes > 0 => {
                            self.processor.state().rollback_batch();
                            return Ok(());
                        }
                        Err(refusal) => (fired.timers, FailureReason::Output(refusal)),
                    }
                }
                Err(FireError::Failed { timers, reason }) => (timers, reason.into()),
                Err(FireError::Host(error)) => {
                    self.processor.state().rollback_batch();
                    return Err(BatchError::Host(error));
                }
                Err(FireError::Restart(error)) => {
                    self.processor.state().rollback_batch();
                    return Err(BatchError::Restart(error));
                }
            };
            self.processor.state().rollback_batch();
            fired_here += 1;
            self.timers_failed(timers, reason)?;
        }
        tracing::warn!(
            fired = fired_here,
            "the transform keeps setting timers already due: the rest wait for the next firing point"
        );
        Ok(())
    }

    /// Process `rest`, whose first record is at `base` in the whole batch, up to its
    /// end, a cut (a timer set on the way falls due before a later record), or a failed
    /// record: returns how many records are done, the failed one included. The caller
    /// fires the timers due before going on, so a timer set by the records before a
    /// failure still fires before the records after it.
    fn records(&mut self, rest: &[InputRecord], base: usize) -> Result<usize, BatchError> {
        let (at, reason) = match self.attempt(rest)? {
            Attempt::Done => return Ok(rest.len()),
            // The records before the cut go again, alone; the caller then fires the
            // timer. (The cut is never before the record that set the timer: timers set
            // for a time the call's first record had passed do not cut.)
            Attempt::Cut(at) => {
                debug_assert!(0 < at && at < rest.len(), "a cut inside the call");
                return self.records(&rest[..at.clamp(1, rest.len())], base);
            }
            // The records before it go again alone; it runs again after the timers
            // they leave due (and then fails here, at 0).
            Attempt::Rejected { at, .. } if at > 0 => return self.records(&rest[..at], base),
            Attempt::Rejected { at, message } => (at, FailureReason::Rejected { message }),
            Attempt::Unattributed(reason) if rest.len() == 1 => (0, reason),
            Attempt::Unattributed(_) => match self.singly(rest)? {
                (done, None) => return Ok(done),
                (_, Some(found)) => found,
            },
        };
        self.fail(base + at, reason)?;
        Ok(at + 1)
    }

    /// Run `records` in one state scope, keeping its effects only if all succeed.
    fn attempt(&mut self, records: &[InputRecord]) -> Result<Attempt, BatchError> {
        self.processor.state().begin_batch();
        match self.processor.process(records) {
            Ok(outputs) => {
                match self.rules.check(&outputs, self.output_bytes) {
                    Ok(bytes) => self.output_bytes += bytes,
                    Err(refusal) => {
                        self.processor.state().rollback_batch();
                        return Ok(Attempt::Unattributed(FailureReason::Output(refusal)));
                    }
                }
                self.processor.state().commit_batch();
                self.outcome.outputs.extend(outputs);
                Ok(Attempt::Done)
            }
            Err(error) => {
                self.processor.state().rollback_batch();
                match error {
                    ProcessError::Rejected { index, message } => {
                        Ok(Attempt::Rejected { at: index, message })
                    }
                    ProcessError::Cut { at } => Ok(Attempt::Cut(at)),
                    ProcessError::Fault(fault) => {
                        Ok(Attempt::Unattributed(FailureReason::Fault(fault)))
                    }
                    ProcessError::Host(error) => Err(BatchError::Host(error)),
                    ProcessError::Restart(error) => Err(BatchError::Restart(error)),
                }
            }
        }
    }

    /// Run `records` one at a time, keeping each success, until one fails (its index
    /// and why), firing the timers each leaves due before the next: how many ran.
    fn singly(
        &mut self,
        records: &[InputRecord],
    ) -> Result<(usize, Option<(usize, FailureReason)>), BatchError> {
        for (i, record) in records.iter().enumerate() {
            if i > 0 {
                self.timers()?;
            }
            let failed = match self.attempt(std::slice::from_ref(record))? {
                Attempt::Done => continue,
                Attempt::Rejected { message, .. } => FailureReason::Rejected { message },
                Attempt::Unattributed(reason) => reason,
                Attempt::Cut(_) => unreachable!("a call of one record is never cut"),
            };
            return Ok((i + 1, Some((i, failed))));
        }
        // Every record succeeded (a fault that did not recur record by record).
        Ok((records.len(), None))
    }

    /// Timers failed: one is handled by the policy; a group (a fault, which does not
    /// say which timer) makes the rest of the batch fire timers one at a time, so that
    /// the culprit fails alone when they fire again.
    fn timers_failed(
        &mut self,
        mut timers: Vec<Timer>,
        reason: FailureReason,
    ) -> Result<(), BatchError> {
        if timers.len() == 1 {
            self.fail_timer(timers.remove(0), reason)
        } else {
            self.isolating_timers = true;
            self.processor.isolate_timers(true);
            Ok(())
        }
    }

    /// Apply the policy to a failed timer; unless it stops the batch, the timer is
    /// deleted, so that it does not fire again.
    fn fail_timer(&mut self, timer: Timer, reason: FailureReason) -> Result<(), BatchError> {
        if self.policy == ErrorPolicy::Fail {
            return Err(BatchError::TimerFailed { timer, reason });
        }
        self.processor.state().begin_batch();
        self.processor.delete_timer(&timer);
        self.processor.state().commit_batch();
        self.outcome
            .timer_failures
            .push(TimerFailure { timer, reason });
        Ok(())
    }

    fn fail(&mut self, index: usize, reason: FailureReason) -> Result<(), BatchError> {
        match self.policy {
            ErrorPolicy::Fail => Err(BatchError::RecordFailed { index, reason }),
            ErrorPolicy::Skip | ErrorPolicy::DeadLetter => {
                self.outcome.failures.push(RecordFailure { index, reason });
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::PartitionState;

    /// A native transform: counts records in state, echoes them, and misbehaves on
    /// the values "reject" and "trap" *after* writing state, so rollback is visible.
    #[derive(Default)]
    struct Counter {
        state: PartitionState,
        calls: usize,
    }

    fn count(state: &mut PartitionState, key: &str) -> u64 {
        state
            .get(key.as_bytes())
            .unwrap()
            .map_or(0, |v| String::from_utf8(v).unwrap().parse().unwrap())
    }

    impl Processor for Counter {
        fn process(&mut self, records: &[InputRecord]) -> Result<Vec<OutputRecord>, ProcessError> {
            self.calls += 1;
            let mut outputs = Vec::new();
            for (index, record) in records.iter().enumerate() {
                let value = record.value.clone().unwrap_or_default();
                let key = String::from_utf8(value.clone()).unwrap();
                let n = count(&mut self.state, &key) + 1;
                self.state
                    .put(key.clone().into_bytes(), n.to_string().into_bytes());
                match key.as_str() {
                    "reject" => {
                        return Err(ProcessError::Rejected {
                            index,
                            message: "no".into(),
                        });
                    }
                    "trap" => {
                        return Err(ProcessError::Fault(GuestFault::Trap {
                            message: "boom".into(),
                        }));
                    }
                    // "to:T" goes to topic T, the rest to the default output.
                    _ => outputs.push(OutputRecord {
                        key: None,
                        topic: key.strip_prefix("to:").map(str::to_owned),
                        value: Some(value),
                        headers: vec![],
                        timestamp: None,
                    }),
                }
            }
            Ok(outputs)
        }

        fn state(&mut self) -> &mut PartitionState {
            &mut self.state
        }
    }

    fn records(values: &[&str]) -> Vec<InputRecord> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| InputRecord::from_value("in", 0, i as i64, *v))
            .collect()
    }

    fn values(outcome: &BatchOutcome) -> Vec<String> {
        outcome
            .outputs
            .iter()
            .map(|o| String::from_utf8(o.value.clone().unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn a_clean_batch_is_one_call() {
        let mut p = Counter::default();
        let outcome = run_batch(&mut p, &records(&["a", "b", "a"]), ErrorPolicy::Fail).unwrap();
        assert_eq!(values(&outcome), ["a", "b", "a"]);
        assert_eq!(p.calls, 1);
        assert_eq!(count(&mut p.state, "a"), 2);
    }

    #[test]
    fn a_rejected_record_is_skipped_and_the_rest_applied_once() {
        let mut p = Counter::default();
        let input = records(&["a", "b", "reject", "a", "c"]);
        let outcome = run_batch(&mut p, &input, ErrorPolicy::Skip).unwrap();
        assert_eq!(values(&outcome), ["a", "b", "a", "c"]);
        assert_eq!(
            outcome.failures,
            [RecordFailure {
                index: 2,
                reason: FailureReason::Rejected {
                    message: "no".into()
                }
            }]
        );
        assert_eq!(
            count(&mut p.state, "a"),
            2,
            "the replayed prefix counts once"
        );
        assert_eq!(count(&mut p.state, "b"), 1);
        assert_eq!(
            count(&mut p.state, "reject"),
            0,
            "the failing record's writes are gone"
        );
    }

    #[test]
    fn a_fault_is_isolated_to_its_record() {
        let mut p = Counter::default();
        let input = records(&["a", "trap", "b", "trap", "c"]);
        let outcome = run_batch(&mut p, &input, ErrorPolicy::DeadLetter).unwrap();
        assert_eq!(values(&outcome), ["a", "b", "c"]);
        let failed: Vec<usize> = outcome.failures.iter().map(|f| f.index).collect();
        assert_eq!(failed, [1, 3]);
        assert!(matches!(
            outcome.failures[0].reason,
            FailureReason::Fault(GuestFault::Trap { .. })
        ));
        for key in ["a", "b", "c"] {
            assert_eq!(count(&mut p.state, key), 1, "{key}");
        }
        assert_eq!(count(&mut p.state, "trap"), 0);
    }

    #[test]
    fn the_fail_policy_stops_at_the_first_failure() {
        let mut p = Counter::default();
        let err = run_batch(
            &mut p,
            &records(&["a", "b", "reject", "c"]),
            ErrorPolicy::Fail,
        )
        .unwrap_err();
        assert!(
            matches!(err, BatchError::RecordFailed { index: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn failures_at_the_edges_of_a_batch() {
        let mut p = Counter::default();
        let outcome = run_batch(
            &mut p,
            &records(&["reject", "x", "trap"]),
            ErrorPolicy::Skip,
        )
        .unwrap();
        assert_eq!(values(&outcome), ["x"]);
        assert_eq!(
            outcome.failures.iter().map(|f| f.index).collect::<Vec<_>>(),
            [0, 2]
        );
        assert_eq!(count(&mut p.state, "x"), 1);
        let outcome = run_batch(&mut p, &records(&["trap"]), ErrorPolicy::Skip).unwrap();
        assert!(outcome.outputs.is_empty());
        assert_eq!(outcome.failures.len(), 1);
    }

    #[test]
    fn an_output_to_a_forbidden_topic_fails_only_its_record() {
        let mut p = Counter::default();
        let limits = crate::engine::Limits::default();
        let topics = OutputRules::pipeline("out", &["side".to_owned()], &limits);
        let input = records(&["a", "to:side", "to:weir.wc-in-changelog", "to:out", "b"]);
        let outcome = run_batch_within(&mut p, &input, ErrorPolicy::DeadLetter, &topics).unwrap();
        assert_eq!(values(&outcome), ["a", "to:side", "to:out", "b"]);
        assert_eq!(outcome.failures.len(), 1);
        assert_eq!(outcome.failures[0].index, 2);
        assert_eq!(outcome.failures[0].reason.kind(), "forbidden_output");
        assert_eq!(
            count(&mut p.state, "to:weir.wc-in-changelog"),
            0,
            "the refused record's writes are gone"
        );
        for key in ["a", "to:side", "to:out", "b"] {
            assert_eq!(count(&mut p.state, key), 1, "{key}");
        }
        let err = run_batch_within(
            &mut p,
            &records(&["to:__consumer_offsets"]),
            ErrorPolicy::Fail,
            &topics,
        )
        .unwrap_err();
        assert!(
            matches!(err, BatchError::RecordFailed { index: 0, .. }),
            "{err}"
        );
    }
}
