//! The commit protocol. A checkpoint under exactly-once is, in order:
//!
//! 1. a marker record naming the checkpoint and its input offset goes to the
//!    changelog, then the buffered state writes (the outputs and dead letters of the
//!    interval are already in the open transaction);
//! 2. everything is flushed, so the changelog offsets are known;
//! 3. the input offset joins the transaction, which commits;
//! 4. the write buffer and the offsets are applied to RocksDB in one WriteBatch.
//!
//! A checkpoint that fails in a way the partition survives (a rebalance bumped the
//! group generation, the broker asked for an abort) is aborted and the partition goes
//! back to its last checkpoint: state buffer dropped, input re-read from the committed
//! offset (a rewind).
//!
//! A crash before 3 aborts everything; between 3 and 4 leaves RocksDB behind Kafka, and
//! the restore replays the committed changelog tail. Local state is never ahead.

use std::hash::BuildHasher;
use std::time::Instant;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedHeaders;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::ChangelogFormat;
use crate::failpoint;
use crate::kafka::KafkaFailure;
use crate::kafka::producer::{Outgoing, RecordKind};
use crate::kafka::records::checkpoint_headers;
use crate::state::changelog::{self, ROOT};

use crate::pipeline::Processor as _;

use super::{META_HEAD, META_OFFSET, META_POSITION, Running, Worker, WorkerError};

impl<C: ConsumerContext + 'static> Worker<C> {
    /// End a commit interval: checkpoint and follow the active version, or go back to
    /// the last checkpoint after a failure the partition survives. False when it went
    /// back (the fetch was rewound).
    pub(super) fn end_interval(&self, running: &mut Running) -> Result<bool, WorkerError> {
        match self.checkpoint(running) {
            Ok(()) => {
                self.follow_active(running)?;
                Ok(true)
            }
            Err(WorkerError::Kafka(failure)) if failure.is_recoverable() => {
                self.rewind(running, &failure)?;
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// The checkpoint of a partition being let go (revoked, or the daemon stopping).
    /// Its failure fails nothing else: the records since the last checkpoint are
    /// uncommitted, and whoever owns the partition next (this instance after a restart,
    /// or another) redoes them.
    pub(super) fn final_checkpoint(&self, running: &mut Running) -> Result<(), WorkerError> {
        match self.checkpoint(running) {
            Ok(()) => Ok(()),
            Err(error) if error.is_fenced() => Err(error),
            Err(error) => {
                tracing::warn!(pipeline = %self.ctx.name, topic = %self.topic, partition = self.partition, %error, offset = running.checkpointed, "the last checkpoint before letting the partition go failed; its next owner redoes the records since the one before");
                running.instance.state().discard_uncommitted();
                if let Err(error) = running.producer.abort() {
                    tracing::debug!(%error, "abort after a failed last checkpoint");
                }
                Ok(())
            }
        }
    }

    /// Go back to the last checkpoint after a failure the partition survives: abort the
    /// transaction, drop the state buffer, and re-read from the committed offset.
    pub(super) fn rewind(
        &self,
        running: &mut Running,
        why: &dyn std::fmt::Display,
    ) -> Result<(), WorkerError> {
        tracing::warn!(
            pipeline = %self.ctx.name,
            topic = %self.topic,
            partition = self.partition,
            reason = %why,
            offset = running.checkpointed,
            "going back to the last checkpoint"
        );
        running.producer.abort()?;
        running.instance.state().discard_uncommitted();
        self.seek(running.checkpointed)?;
        running.fetch.seeked(running.checkpointed);
        running.next_offset = running.checkpointed;
        Ok(())
    }

    /// Commit everything since the last checkpoint. See the module docs for the order.
    pub(super) fn checkpoint(&self, running: &mut Running) -> Result<(), WorkerError> {
        let next_offset = running.next_offset;
        let state = running.instance.state();
        if running.checkpointed == next_offset && state.pending().is_empty() {
            self.observe_position(running);
            return Ok(());
        }
        let started = Instant::now();
        let changes = state.pending().len() as f64;
        let id = new_checkpoint_id();
        let offset = next_offset.to_string();
        let headers = || checkpoint_headers(id, running.head, next_offset);
        let state_headers = || match self.ctx.changelog_format {
            ChangelogFormat::Marker => None,
            ChangelogFormat::EveryRecord => Some(headers()),
        };
        let send = |key: &[u8], value: Option<&[u8]>, headers: Option<OwnedHeaders>| {
            running.producer.send(Outgoing {
                topic: &self.changelog_topic,
                // The changelog is partitioned like the input: one partition's state.
                partition: Some(self.partition),
                key: Some(key),
                value,
                headers,
                timestamp: None,
                kind: RecordKind::Changelog,
            })
        };
        // Every checkpoint starts with a marker naming it, its parent and its input
        // offset; the state records after it belong to it (see `changelog`). It is not
        // a tombstone, so compaction keeps the latest one even when the checkpoint only
        // deleted keys.
        send(
            changelog::MARKER_KEY,
            Some(offset.as_bytes()),
            Some(headers()),
        )?;
        for (key, value) in state.pending().iter() {
            send(key, value, state_headers())?;
        }
        let last_changelog = running.producer.flush()?;
        failpoint::hit("checkpoint.before-commit");

        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(&self.topic, self.partition, Offset::Offset(next_offset))
            .map_err(|e| KafkaFailure::new("cannot build the offset commit", e))?;
        if running.producer.is_transactional() {
            let group = self.consumer.group_metadata().ok_or_else(|| {
                KafkaFailure::new(
                    "cannot commit: the consumer is not in its group right now",
                    KafkaError::Global(rdkafka::types::RDKafkaErrorCode::UnknownMemberId),
                )
            })?;
            running.producer.commit(&offsets, group)?;
        } else {
            self.consumer
                .commit(&offsets, CommitMode::Sync)
                .map_err(|e| KafkaFailure::new("cannot commit input offsets", e))?;
        }
        failpoint::hit("checkpoint.after-commit");

        let position = last_changelog.unwrap_or(running.position);
        running.instance.state().checkpoint(&[
            (META_OFFSET, &next_offset.to_be_bytes()),
            (META_HEAD, &id.to_be_bytes()),
            (META_POSITION, &position.to_be_bytes()),
        ])?;
        tracing::debug!(
            topic = %self.topic,
            partition = self.partition,
            checkpoint = %changelog::encode_id(id),
            parent = %changelog::encode_id(running.head),
            offset = next_offset,
            position,
            "checkpoint committed"
        );
        running.head = id;
        running.position = position;
        running.checkpointed = next_offset;
        self.metrics
            .checkpoint_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.checkpoint_records.observe(changes);
        self.observe_position(running);
        Ok(())
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
