//! The commit protocol of a thread's tasks. A checkpoint under exactly-once is, in
//! order:
//!
//! 1. for each task with something new, a marker record naming its checkpoint and
//!    input offset goes to its changelog, then its buffered state writes (the outputs
//!    and dead letters of the interval are already in the open transaction);
//! 2. everything is flushed, so the changelog offsets are known;
//! 3. the input offsets join the transaction with the consumer's group metadata, and
//!    it commits: all of the thread's tasks at once, or none;
//! 4. each task's write buffer and offsets are applied to its RocksDB store in one
//!    WriteBatch.
//!
//! A crash before 3 aborts everything; between 3 and 4 leaves RocksDB behind Kafka, and
//! the restore replays the committed changelog tail. Local state is never ahead.
//!
//! A commit that goes unanswered (the transaction coordinator moving) may have
//! committed or not. Redoing the interval would then count it twice, so the thread
//! settles it first: a new producer with the same transactional id completes or aborts
//! the transaction, and the group's committed offset (read stable) says which.

use std::hash::BuildHasher;
use std::time::Instant;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use crate::failpoint;
use crate::kafka::KafkaFailure;
use crate::kafka::producer::CommitError;
use crate::state::changelog::ROOT;

use super::{ProcessingThread, TaskError};

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
    pub(super) fn checkpoint(&mut self) -> Result<Outcome, TaskError> {
        let dirty: Vec<usize> = (0..self.tasks.len())
            .filter(|&i| self.tasks[i].is_dirty())
            .collect();
        if dirty.is_empty() {
            for task in &mut self.tasks {
                task.observe_position();
            }
            return Ok(Outcome::Committed);
        }
        let producer = self
            .producer
            .as_ref()
            .expect("a thread with tasks has a producer");
        let started = Instant::now();
        let mut blocks = Vec::with_capacity(dirty.len());
        for &i in &dirty {
            let id = new_checkpoint_id();
            let changes = self.tasks[i].write_changelog(producer, id)?;
            blocks.push((i, id, changes));
        }
        let positions = producer.flush()?;
        let flushed = started.elapsed();
        failpoint::hit("checkpoint.before-commit");

        let mut offsets = TopicPartitionList::new();
        for &i in &dirty {
            let assigned = &self.tasks[i].assigned;
            offsets
                .add_partition_offset(
                    &assigned.topic,
                    assigned.partition,
                    Offset::Offset(self.tasks[i].next_offset()),
                )
                .map_err(|e| KafkaFailure::new("cannot build the offset commit", e))?;
        }
        if producer.is_transactional() {
            let group = self.consumer.group_metadata().ok_or_else(|| {
                KafkaFailure::new(
                    "cannot commit: the consumer is not in its group right now",
                    KafkaError::Global(rdkafka::types::RDKafkaErrorCode::UnknownMemberId),
                )
            })?;
            match producer.commit(&offsets, group) {
                Ok(()) => {}
                Err(CommitError::NotCommitted(failure)) => return Err(failure.into()),
                Err(CommitError::InDoubt(failure)) => {
                    let committed = self
                        .settle(&dirty, &failure)
                        .map_err(|e| TaskError::Unsettled(Box::new(e)))?;
                    if !committed {
                        return Ok(Outcome::Rewound);
                    }
                }
            }
        } else {
            self.consumer
                .commit(&offsets, CommitMode::Sync)
                .map_err(|e| KafkaFailure::new("cannot commit input offsets", e))?;
        }
        failpoint::hit("checkpoint.after-commit");
        let committed = started.elapsed();

        let took = committed.as_secs_f64();
        for (i, id, changes) in blocks {
            let task = &mut self.tasks[i];
            let position = positions
                .get(&task.assigned.changelog_topic)
                .and_then(|partitions| partitions.get(&task.assigned.partition))
                .copied();
            task.checkpointed(id, position)?;
            let metrics = &task.assigned.metrics;
            metrics.checkpoint_seconds.observe(took);
            metrics.checkpoint_records.observe(changes as f64);
        }
        for task in &mut self.tasks {
            task.observe_position();
        }
        tracing::debug!(
            pipeline = %self.ctx.name,
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
    /// every task is sent back to its last checkpoint.
    fn settle(&mut self, dirty: &[usize], failure: &KafkaFailure) -> Result<bool, TaskError> {
        tracing::warn!(pipeline = %self.ctx.name, thread = self.index, %failure, "a transaction's commit went unanswered; a new producer settles whether it committed");
        self.producer = None;
        self.producer = Some(self.new_producer()?);
        let first = &self.tasks[dirty[0]];
        let committed = first.assigned.committed(None)? == Some(first.next_offset());
        tracing::warn!(pipeline = %self.ctx.name, thread = self.index, committed, "the unanswered commit is settled");
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
