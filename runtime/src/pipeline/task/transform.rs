//! One batch through the transform: the error policy (`pipeline::batch`), the running
//! version's trial, and the outputs and dead letters queued in the thread's open
//! transaction.

use std::time::{Duration, Instant};

use rdkafka::consumer::ConsumerContext;

use crate::engine::{GuestFault, InputRecord};
use crate::kafka::producer::{Outgoing, RecordKind, ThreadProducer};
use crate::kafka::records::{self, DeadLetter};

use crate::pipeline::{BatchError, FailureReason, TimerFailure, run_batch_within};

use super::{Task, TaskError};

/// How often a partition without records looks for processing-time timers due.
const IDLE_TIMER_CHECK: Duration = Duration::from_secs(1);

/// What one batch cost its thread (see the processing thread's sidelining).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ran {
    /// Time in the transform, re-runs to find a failing record included.
    pub took: Duration,
    /// A call ran out its deadline (`limits.call_timeout_ms`).
    pub timed_out: bool,
}

impl<C: ConsumerContext + 'static> Task<C> {
    /// Process a batch and queue its outputs and dead letters in the transaction. An
    /// empty batch fires the timers due (a partition without records).
    /// Returns what the transform cost the thread: its time (re-runs to find a failing
    /// record included; queueing the outputs not), and whether a call timed out.
    pub fn run_batch(
        &mut self,
        producer: &ThreadProducer,
        batch: &[InputRecord],
    ) -> Result<Ran, TaskError> {
        let this = &self.assigned;
        let ctx = &this.ctx;
        let started = Instant::now();
        let result = run_batch_within(&mut self.instance, batch, ctx.policy, &ctx.output_rules);
        let took = started.elapsed();
        this.metrics.process_seconds.observe(took.as_secs_f64());
        this.metrics
            .guest_log_dropped
            .inc_by(self.instance.take_dropped_log_lines());
        this.metrics.records_in.inc_by(batch.len() as u64);
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(source) => {
                // A record or timer that failed under `fail` fails a trial at once,
                // rather than the pipeline.
                if let Some(reason) = source.failure() {
                    this.metrics.guest_error(reason.kind());
                    if self.judge_trial(1, 1, Some(reason)) {
                        return Err(TaskError::TrialFailed {
                            version: self.active.version,
                        });
                    }
                }
                let offset = match &source {
                    BatchError::RecordFailed { index, .. } => batch[*index].offset,
                    _ => batch.first().map_or(self.next_offset, |r| r.offset),
                };
                return Err(TaskError::Batch { offset, source });
            }
        };
        let mut timed_out = false;
        let failed = outcome.failures.len() + outcome.timer_failures.len();
        for failure in &outcome.timer_failures {
            this.metrics.guest_error(failure.reason.kind());
        }
        for failure in &outcome.failures {
            this.metrics.guest_error(failure.reason.kind());
            timed_out |= matches!(
                failure.reason,
                FailureReason::Fault(GuestFault::Timeout { .. })
            );
        }
        if self.judge_trial(batch.len() as u64, failed as u64, None) {
            return Err(TaskError::TrialFailed {
                version: self.active.version,
            });
        }
        this.metrics
            .records_out
            .inc_by(outcome.outputs.len() as u64);
        let module = self.active.label();
        for output in &outcome.outputs {
            producer.send(Outgoing {
                topic: output.topic.as_deref().unwrap_or(&ctx.output),
                partition: None,
                key: output.key.as_deref(),
                value: output.value.as_deref(),
                headers: Some(records::output_headers(output, &module)),
                timestamp: output.timestamp,
                kind: RecordKind::Output,
            })?;
        }
        for failure in &outcome.failures {
            let record = &batch[failure.index];
            let kind = failure.reason.kind();
            let error = match &failure.reason {
                FailureReason::Rejected { message } => message.clone(),
                FailureReason::Fault(fault) => fault.to_string(),
                FailureReason::Output(refused) => refused.to_string(),
            };
            tracing::warn!(
                pipeline = %ctx.name,
                topic = %record.topic,
                partition = record.partition,
                offset = record.offset,
                kind,
                %error,
                policy = ?ctx.policy,
                "record failed"
            );
            if let Some(topic) = &ctx.dead_letter_topic {
                let why = DeadLetter {
                    pipeline: &ctx.name,
                    module: &module,
                    kind,
                    error: &error,
                };
                producer.send(Outgoing {
                    topic,
                    partition: None,
                    key: record.key.as_deref(),
                    value: record.value.as_deref(),
                    headers: Some(records::dead_letter_headers(record, &why)),
                    timestamp: Some(record.timestamp).filter(|t| *t >= 0),
                    kind: RecordKind::DeadLetter,
                })?;
                this.metrics.dead_letters.inc();
            }
        }
        self.dead_letter_timers(producer, &outcome.timer_failures, &module)?;
        self.publish_watermark();
        Ok(Ran { took, timed_out })
    }

    /// The partition's watermark into its status and metrics (event-time transforms).
    /// A state store that cannot say is the next state access's to report: the batch's
    /// outputs are queued already.
    fn publish_watermark(&mut self) {
        let watermark = match self.instance.watermark() {
            Ok(watermark) => watermark,
            Err(error) => {
                tracing::debug!(%error, "cannot read the partition's watermark");
                return;
            }
        };
        let this = &self.assigned;
        this.status.set_watermark(watermark);
        if let Some(watermark) = watermark {
            this.metrics
                .set_watermark_lag(crate::pipeline::control::watermark_lag_ms(watermark));
        }
    }

    /// Whether this partition, which has no records now, has a processing-time timer
    /// due: asked at most every [`IDLE_TIMER_CHECK`], since it reads the state.
    pub fn idle_timer_due(&mut self) -> Result<bool, TaskError> {
        let now = Instant::now();
        if self
            .idle_checked
            .is_some_and(|at| now < at + IDLE_TIMER_CHECK)
        {
            return Ok(false);
        }
        self.idle_checked = Some(now);
        Ok(self.instance.processing_timer_due()?)
    }

    /// Log the timers the policy skipped, and dead-letter them under `dead-letter`.
    fn dead_letter_timers(
        &self,
        producer: &ThreadProducer,
        failures: &[TimerFailure],
        module: &str,
    ) -> Result<(), TaskError> {
        let this = &self.assigned;
        let ctx = &this.ctx;
        for failure in failures {
            let kind = failure.reason.kind();
            let error = match &failure.reason {
                FailureReason::Rejected { message } => message.clone(),
                other => other.to_string(),
            };
            tracing::warn!(
                pipeline = %ctx.name,
                topic = %this.topic,
                partition = this.partition,
                timer_at = failure.timer.at,
                domain = ?failure.timer.domain,
                kind,
                %error,
                policy = ?ctx.policy,
                "timer failed"
            );
            let Some(topic) = &ctx.dead_letter_topic else {
                continue;
            };
            let why = DeadLetter {
                pipeline: &ctx.name,
                module,
                kind,
                error: &error,
            };
            producer.send(Outgoing {
                topic,
                partition: None,
                key: Some(&failure.timer.key),
                value: None,
                headers: Some(records::timer_dead_letter_headers(
                    &failure.timer,
                    &this.topic,
                    this.partition,
                    &why,
                )),
                timestamp: None,
                kind: RecordKind::DeadLetter,
            })?;
            this.metrics.dead_letters.inc();
        }
        Ok(())
    }

    /// Count a batch against the running version's trial, if it is on one. True when
    /// the version failed its trial (rolled back here or by another partition): the
    /// interval must be redone by the restored version. `fatal` is a failure under the
    /// `fail` policy, which fails the trial at once rather than stopping the pipeline.
    fn judge_trial(&self, records: u64, failures: u64, fatal: Option<&FailureReason>) -> bool {
        let Some(trial) = &self.active.trial else {
            return false;
        };
        let claimed = match fatal {
            Some(_) => trial.fail_now(),
            None => trial.observe(records, failures),
        };
        if claimed {
            let reason = match fatal {
                Some(reason) => {
                    format!("a record failed under on_error = \"fail\" during the trial: {reason}")
                }
                None => trial.describe_failure(),
            };
            if let Err(error) = self.assigned.ctx.versions.rollback(
                "weir",
                Some(reason),
                true,
                Some(self.active.version),
            ) {
                tracing::error!(pipeline = %self.assigned.ctx.name, %error, "automatic rollback failed");
                return false;
            }
        }
        trial.has_failed()
    }
}
