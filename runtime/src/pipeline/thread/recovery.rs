//! What a processing thread does when something fails: go back to the last
//! checkpoint (a transaction refused), replace its producers (fenced, or left hanging
//! by librdkafka), or give up the tasks of the pipelines a failure stops.

use std::collections::BTreeSet;
use std::time::Instant;

use rdkafka::consumer::ConsumerContext;

use super::{ProcessingThread, RunId, TaskError, ThreadFailure, release_metrics};

impl<C: ConsumerContext + 'static> ProcessingThread<C> {
    /// Go back to the last checkpoint after a Kafka failure the thread survives: a
    /// refused transaction is aborted; a producer the broker fenced (or librdkafka left
    /// hanging) is replaced. Other failures are returned, for [`fail`](Self::fail).
    pub(super) fn recover(&mut self, failure: ThreadFailure) -> Result<(), ThreadFailure> {
        match &failure.error {
            TaskError::Kafka(kafka) if kafka.is_recoverable() => {
                let why = kafka.to_string();
                self.rewind_all(&why)
            }
            TaskError::Kafka(kafka) if kafka.needs_new_producer() => {
                let why = kafka.to_string();
                self.renew_producers(&why)
            }
            _ => Err(failure),
        }
    }

    /// Abort the transaction and send every task back to its last checkpoint.
    pub(super) fn rewind_all(&mut self, why: &str) -> Result<(), ThreadFailure> {
        tracing::warn!(
            thread = self.index,
            partitions = self.tasks.len(),
            reason = %why,
            "going back to the last checkpoint"
        );
        match self.producers.abort() {
            Ok(()) => {}
            // Fenced since, or librdkafka left the abort unanswered: a new producer
            // ends the transaction for good.
            Err(failure) if failure.needs_new_producer() => {
                return self.renew_producers(&failure.to_string());
            }
            Err(failure) => return Err(failure.into()),
        }
        self.fit_transaction_timeout();
        for i in 0..self.tasks.len() {
            self.tasks[i].rewind().map_err(|e| self.blame(i, e))?;
        }
        self.deadline = Instant::now() + self.interval;
        self.ensure_producers()
    }

    /// Between transactions (after an abort): replace the transactional producer if
    /// its timeout is too short for the thread's commit interval now (the pipelines
    /// with shorter ones left), or the broker would abort the next transaction.
    fn fit_transaction_timeout(&mut self) {
        if self.producers.outgrown(self.interval) {
            self.producers.drop_exactly_once();
        }
    }

    /// Replace producers the broker fenced: a transaction of this thread outlived
    /// `transaction.timeout.ms` (the broker aborted it), or librdkafka left a call
    /// unanswered. The new transactional producer has the same transactional id, so
    /// its initialisation fences the old one for good. Every task goes back to its
    /// last checkpoint and commits around each batch until past where it had fetched,
    /// so the same slow records do not time out again.
    pub(super) fn renew_producers(&mut self, why: &str) -> Result<(), ThreadFailure> {
        tracing::warn!(
            thread = self.index,
            partitions = self.tasks.len(),
            reason = %why,
            "producer fenced: the broker aborted this thread's transaction (it outlived \
             transaction.timeout.ms) or librdkafka left it hanging; starting the thread's \
             partitions again from their last checkpoint with a new producer"
        );
        self.producers.drop_all();
        for i in 0..self.tasks.len() {
            let task = &mut self.tasks[i];
            let until = task.fetched_to();
            task.set_careful_until(until);
            task.assigned.metrics.restarts.inc();
            task.rewind().map_err(|e| self.blame(i, e))?;
        }
        self.deadline = Instant::now() + self.interval;
        self.ensure_producers()
    }

    /// Give up the tasks a failure costs, and tell their pipelines (each stops, and
    /// the daemon restarts it): the pipeline of the partition at fault, or every
    /// pipeline on the thread when the failure is the thread's (its producer or
    /// transaction). The transaction is aborted, since it holds the failed tasks'
    /// outputs, and the tasks staying go back to their last checkpoint: a pipeline's
    /// failure costs its neighbours on the thread at most one commit interval redone.
    pub(super) fn fail(&mut self, failure: ThreadFailure) {
        let mut pending = vec![failure];
        while let Some(failure) = pending.pop() {
            let runs: BTreeSet<RunId> = match &failure.partition {
                Some(at) => BTreeSet::from([at.0]),
                None => self.tasks.iter().map(|t| t.assigned.run).collect(),
            };
            let at = failure.partition.as_ref().map(|at| &at.1);
            tracing::error!(
                thread = self.index,
                topic = at.map(|(topic, _)| topic.as_str()),
                partition = at.map(|(_, partition)| *partition),
                pipelines = runs.len(),
                error = %failure.error,
                "processing thread gave up a pipeline's partitions"
            );
            let (leaving, staying): (Vec<_>, Vec<_>) = std::mem::take(&mut self.tasks)
                .into_iter()
                .partition(|t| runs.contains(&t.assigned.run));
            self.tasks = staying;
            self.next_task = 0;
            if self.producers.abort().is_err() {
                // The next producer's initialisation ends the transaction instead.
                self.producers.drop_all();
            }
            // The failure goes to the run at fault (or the first); the others on the
            // thread learn what it was.
            let message = failure.error.to_string();
            let mut failure = Some(failure);
            let mut told = BTreeSet::new();
            for mut task in leaving {
                task.discard();
                release_metrics(&task);
                let run = task.assigned.run;
                if !told.insert(run) {
                    continue;
                }
                let at_fault = failure
                    .as_ref()
                    .is_some_and(|f| f.partition.as_ref().is_none_or(|at| at.0 == run));
                let told_failure = if at_fault {
                    failure.take().expect("checked")
                } else {
                    ThreadFailure {
                        partition: None,
                        error: TaskError::Neighbour(message.clone()),
                    }
                };
                task.assigned.failure.set(Some(self.index), told_failure);
            }
            self.retime();
            self.fit_transaction_timeout();
            self.deadline = Instant::now() + self.interval;
            for i in 0..self.tasks.len() {
                if let Err(error) = self.tasks[i].rewind() {
                    pending.push(self.blame(i, error));
                    break;
                }
            }
            if pending.is_empty()
                && let Err(failure) = self.ensure_producers()
            {
                pending.push(failure);
            }
        }
    }
}
