//! The commit protocol of a thread's tasks. A checkpoint under exactly-once is, in
//! order:
//!
//! 1. for each task with something new, a marker record naming its checkpoint and
//!    input offset goes to its changelog, then its buffered state writes (the outputs
//!    and dead letters of the interval are already in the open transaction);
//! 2. everything is flushed, so the changelog offsets are known;
//! 3. the input offsets join the transaction, each pipeline's with its consumer's
//!    group metadata, and it commits: all of the thread's tasks at once, or none;
//! 4. each task's write buffer and offsets are applied to its RocksDB store in one
//!    WriteBatch.
//!
//! A crash before 3 aborts everything; between 3 and 4 leaves RocksDB behind Kafka, and
//! the restore replays the committed changelog tail. Local state is never ahead.
//!
//! Tasks of at-least-once pipelines on the same thread write with the idempotent
//! producer and commit their group's offsets right before step 3: a crash after that
//! redoes their interval (duplicates, which at-least-once allows), and their changelog
//! blocks of intervals that never committed stay off the committed chain.
//!
//! A commit that goes unanswered (the transaction coordinator moving) may have
//! committed or not. Redoing the interval would then count it twice, so the thread
//! settles it first: a new producer with the same transactional id completes or aborts
//! the transaction, and the group's committed offset (read stable) says which.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::time::Instant;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Guarantee;
use crate::failpoint;
use crate::kafka::KafkaFailure;
use crate::kafka::producer::{ChangelogPositions, CommitError};
use crate::state::changelog::ROOT;

use super::{ProcessingThread, RunId, TaskError, ThreadFailure};

/// How a checkpoint ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Committed,
    /// An unanswered commit turned out not to have committed: every task went back to
    /// its last checkpoint.
    Rewound,
}

impl<C: ConsumerContext + 'static> ProcessingThread<C> {
    /// Commit everything since the last checkpoint. See the module docs for the order.
    /// At-least-once tasks (on the thread's idempotent producer) commit their offsets
    /// before the transaction: if the transaction then fails they redo records, which
    /// at-least-once allows; the other way round, a failure after the transaction
    /// committed would send exactly-once tasks back past committed records.
    ///
    /// A failure before the commit that is one pipeline's (its changelog write, its
    /// group's offset commit) is blamed on it, so that only it stops; one after the
    /// commit is the thread's: its tasks cannot go back past what committed.
    pub(super) fn checkpoint(&mut self) -> Result<Outcome, ThreadFailure> {
        let dirty: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| self.tasks[i].is_dirty())
            .collect();
        if dirty.is_empty() {
            for task in &mut self.tasks {
                task.observe_position();
            }
            return Ok(Outcome::Committed);
        }
        let started = Instant::now();
        let guarantee = |task: &crate::pipeline::task::Task<C>| task.assigned.ctx.guarantee;
        let mut blocks = Vec::with_capacity(dirty.len());
        for &i in &dirty {
            let id = new_checkpoint_id();
            let producer = self
                .producers
                .get(guarantee(&self.tasks[i]))
                .expect("a task's producer is made when the task is adopted");
            let written = self.tasks[i].write_changelog(producer, id);
            let changes = written.map_err(|e| self.blame(i, e.into()))?;
            blocks.push((i, id, changes));
        }
        let flush = |kind: Guarantee| -> Result<ChangelogPositions, KafkaFailure> {
            match self.producers.get(kind) {
                Some(producer) if dirty.iter().any(|&i| guarantee(&self.tasks[i]) == kind) => {
                    producer.flush()
                }
                _ => Ok(ChangelogPositions::default()),
            }
        };
        let (plain_positions, transaction_positions) = (
            flush(Guarantee::AtLeastOnce)?,
            flush(Guarantee::ExactlyOnce)?,
        );
        let flushed = started.elapsed();
        failpoint::hit("checkpoint.before-commit");

        // The input offsets, by run: each is a group member with a consumer of its own.
        let mut offsets: BTreeMap<RunId, (usize, TopicPartitionList)> = BTreeMap::new();
        for &i in &dirty {
            let assigned = &self.tasks[i].assigned;
            offsets
                .entry(assigned.run)
                .or_insert_with(|| (i, TopicPartitionList::new()))
                .1
                .add_partition_offset(
                    &assigned.topic,
                    assigned.partition,
                    Offset::Offset(self.tasks[i].next_offset()),
                )
                .map_err(|e| KafkaFailure::new("cannot build the offset commit", e))?;
        }
        let mut transactional = Vec::new();
        for (i, tpl) in offsets.into_values() {
            let assigned = &self.tasks[i].assigned;
            match assigned.ctx.guarantee {
                Guarantee::AtLeastOnce => {
                    let committed = assigned.consumer.commit(&tpl, CommitMode::Sync);
                    if let Err(error) = committed {
                        let failure = KafkaFailure::new("cannot commit input offsets", error);
                        return Err(self.blame(i, failure.into()));
                    }
                }
                Guarantee::ExactlyOnce => {
                    let group = assigned.consumer.group_metadata().ok_or_else(|| {
                        KafkaFailure::new(
                            "cannot commit: the consumer is not in its group right now",
                            KafkaError::Global(rdkafka::types::RDKafkaErrorCode::UnknownMemberId),
                        )
                    })?;
                    transactional.push((i, tpl, group));
                }
            }
        }
        if !transactional.is_empty() {
            let producer = self
                .producers
                .get(Guarantee::ExactlyOnce)
                .expect("exactly-once tasks have the transactional producer");
            let groups = transactional
                .into_iter()
                .map(|(_, tpl, group)| (tpl, group))
                .collect();
            match producer.commit(groups) {
                Ok(()) => {}
                Err(CommitError::NotCommitted(failure)) => return Err(failure.into()),
                Err(CommitError::InDoubt(failure)) => {
                    let committed = self
                        .settle(&blocks, &dirty, &failure)
                        .map_err(|e| TaskError::Unsettled(Box::new(e)))?;
                    if !committed {
                        return Ok(Outcome::Rewound);
                    }
                }
            }
        }
        failpoint::hit("checkpoint.after-commit");
        let committed = started.elapsed();

        let took = committed.as_secs_f64();
        for (i, id, changes) in blocks {
            let task = &mut self.tasks[i];
            let positions = match task.assigned.ctx.guarantee {
                Guarantee::AtLeastOnce => &plain_positions,
                Guarantee::ExactlyOnce => &transaction_positions,
            };
            let position = positions
                .get(&task.assigned.changelog_topic)
                .and_then(|partitions| partitions.get(&task.assigned.partition))
                .copied();
            task.checkpointed(id, position).map_err(TaskError::from)?;
            let metrics = &task.assigned.metrics;
            metrics.checkpoint_seconds.observe(took);
            metrics.checkpoint_records.observe(changes as f64);
        }
        for task in &mut self.tasks {
            task.observe_position();
        }
        tracing::debug!(
            thread = self.index,
            partitions = dirty.len(),
            flush_us = flushed.as_micros() as u64,
            commit_us = (committed - flushed).as_micros() as u64,
            total_us = started.elapsed().as_micros() as u64,
            "thread checkpoint"
        );
        Ok(Outcome::Committed)
    }

    /// Settle a commit that went unanswered: true when it committed; when it did not,
    /// every task is sent back to its last checkpoint. `blocks` are the checkpoint's
    /// (task, checkpoint id, records). A task of the transaction whose input offset
    /// moved tells by its group's committed offset; when none moved (a partition that
    /// only applied table records or fired timers while its input was idle, whose
    /// committed offset is the same either way), by whether its block is in its
    /// changelog for a read_committed reader. The new producer's start has settled the
    /// old transaction by then, one way or the other.
    fn settle(
        &mut self,
        blocks: &[(usize, u64, usize)],
        dirty: &[usize],
        failure: &KafkaFailure,
    ) -> Result<bool, TaskError> {
        tracing::warn!(thread = self.index, %failure, "a transaction's commit went unanswered; a new producer settles whether it committed");
        self.producers.drop_exactly_once();
        self.producers
            .ensure(Guarantee::ExactlyOnce, self.interval)?;
        let in_transaction = blocks
            .iter()
            .filter(|(i, ..)| self.tasks[*i].assigned.ctx.guarantee == Guarantee::ExactlyOnce);
        let moved = in_transaction
            .clone()
            .find(|(i, ..)| self.tasks[*i].offset_moved());
        let committed = if let Some(&(i, ..)) = moved {
            let task = &self.tasks[i];
            task.assigned.committed(None)? == Some(task.next_offset())
        } else {
            let mut blocks = in_transaction;
            let &(i, id, _) = blocks
                .next()
                .expect("an unanswered commit had a transaction");
            self.tasks[i].changelog_holds(id)?
        };
        tracing::warn!(
            thread = self.index,
            committed,
            "the unanswered commit is settled"
        );
        if !committed {
            for &i in dirty {
                self.tasks[i].assigned.metrics.restarts.inc();
            }
            for task in &mut self.tasks {
                task.rewind()?;
            }
        }
        Ok(committed)
    }
}

/// A random, non-zero checkpoint id.
fn new_checkpoint_id() -> u64 {
    loop {
        let id = std::hash::RandomState::new().hash_one(Instant::now());
        if id != ROOT {
            return id;
        }
    }
}
