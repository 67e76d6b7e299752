//! One owned input partition, a task in Kafka Streams' words: the partition as
//! assigned ([`Assigned`]: its queue, status and metrics), and once started, its
//! instance, state and position ([`Task`]). A processing thread runs many tasks and
//! commits them together (`pipeline::thread`, `pipeline::checkpoint`).
//!
//! The parts, each a file: [`start`] (where to begin, restore, instantiate), [`fetch`]
//! (seeking, and batches checked against the position), [`restore`] (the changelog
//! back into state), [`tables`] (the pipeline's tables, read in timestamp order with
//! the input) and [`transform`] (a batch through the transform, outputs into the
//! thread's transaction). This file holds what a task is, and its moves between
//! checkpoints: going back to the last one, and following the active version.

mod changelog;
mod fetch;
mod restore;
mod start;
mod tables;
mod transform;

pub use tables::{TableConsumer, table_consumer};
pub use transform::Ran;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::Instant;

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, ConsumerContext};

use crate::engine::{InputRecord, Instance, InstanceLabels};
use crate::metrics::PartitionMetrics;
use crate::state::{PartitionState, StateError};

use super::Processor as _;
use super::context::{PipelineContext, TaskError};
use super::control::{Failure, PartitionStatus, RunId};
use super::position::Position;
use super::versions::Active;

/// Metadata keys in the partition's store.
pub(super) const META_OFFSET: &str = "kafka.offset";
pub(super) const META_HEAD: &str = "changelog.head";
pub(super) const META_POSITION: &str = "changelog.position";

/// A partition this member was assigned, before and while it runs.
pub struct Assigned<C: ConsumerContext + 'static> {
    pub ctx: Arc<PipelineContext>,
    /// The pipeline run (group membership) the partition was assigned to.
    pub run: RunId,
    /// Where a failure of this partition goes: its run stops on it.
    pub failure: Arc<Failure>,
    pub topic: String,
    pub partition: i32,
    /// The changelog of this partition's state (computed once: outputs are checked
    /// against it).
    pub changelog_topic: String,
    pub consumer: Arc<BaseConsumer<C>>,
    pub queue: PartitionQueue<C>,
    /// The pipeline run's table consumer, when it declares tables.
    pub tables: Option<Arc<TableConsumer>>,
    pub status: Arc<PartitionStatus>,
    pub metrics: PartitionMetrics,
    /// Set when the partition is revoked or lost: a start in progress gives up, and a
    /// started task handed over afterwards is dropped, not run.
    pub cancel: Arc<AtomicBool>,
    /// Dropped with the partition, wherever that happens: the runner waits for it
    /// before a revocation returns, so the next owner (maybe this member again) finds
    /// the store closed and the last checkpoint committed. Never sent on.
    #[expect(dead_code, reason = "held for its drop, never read")]
    pub gone: Sender<()>,
}

impl<C: ConsumerContext + 'static> Assigned<C> {
    /// Whether this is `partition` as assigned to `run`.
    pub fn is(&self, run: RunId, partition: &(String, i32)) -> bool {
        self.run == run && self.partition == partition.1 && self.topic == partition.0
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }

    fn state_path(&self) -> PathBuf {
        self.ctx
            .state_dir
            .join(format!("{}-{}", self.topic, self.partition))
    }

    fn labels(&self, active: &Active) -> InstanceLabels {
        InstanceLabels {
            pipeline: self.ctx.name.clone(),
            partition: self.partition,
            module: active.label(),
        }
    }
}

/// A started partition: its state between checkpoints.
///
/// Fields drop in order: the instance (and with it the state store, after its last
/// commit lands) before `assigned`, whose `gone` tells the runner the partition is
/// gone; the store must be closed by then, or taking the partition back finds it
/// locked.
pub struct Task<C: ConsumerContext + 'static> {
    instance: Instance,
    /// The version the instance runs.
    active: Arc<Active>,
    /// Changelog head and position as of the last checkpoint.
    head: u64,
    position: i64,
    /// Where the fetch stands: what the next record fetched must be.
    fetch: Position,
    /// The next input offset to process; what a checkpoint commits.
    next_offset: i64,
    /// The offset the last checkpoint committed or, before the first, the offset
    /// processing began at (the log start, for a group that never committed): where a
    /// rewind goes back to.
    checkpointed: i64,
    /// Commit around every batch of records before this offset: the broker aborted a
    /// transaction that outlived its timeout, and the same records must not keep one
    /// open that long again.
    careful_until: Option<i64>,
    /// When the state size on disk was last measured.
    state_measured: Option<Instant>,
    /// When the partition, idle, last looked for processing-time timers due.
    idle_checked: Option<Instant>,
    /// Fetching is paused (the pipeline is): the task is checkpointed and idle.
    pub paused: bool,
    /// Its last batch was slow: the thread runs its other tasks first for a while
    /// (see the processing thread's `round`).
    pub slow: bool,
    /// The pipeline's tables, read for this partition.
    tables: Vec<tables::TableFeed>,
    /// An input record fetched but not processed yet: a table record at or before its
    /// time had to be applied first (see `crate::table::order`).
    held: Option<InputRecord>,
    pub assigned: Assigned<C>,
}

impl<C: ConsumerContext + 'static> Task<C> {
    /// The run and partition: what tells tasks apart on a thread.
    pub fn key(&self) -> (RunId, (String, i32)) {
        (
            self.assigned.run,
            (self.assigned.topic.clone(), self.assigned.partition),
        )
    }

    /// Have `wake` called when a table reader of this task fetches records or reaches
    /// the end, as the input's queue does.
    pub fn wake_tables_with(&mut self, wake: impl Fn() + Clone + Send + Sync + 'static) {
        for table in &mut self.tables {
            table.wake_with(wake.clone());
        }
    }

    /// Pause or resume reading the tables, as the input is.
    pub fn pause_tables(&self, pause: bool) -> Result<(), crate::kafka::KafkaFailure> {
        self.tables
            .iter()
            .try_for_each(|table| table.set_paused(pause))
    }

    /// Whether anything happened since the last checkpoint.
    pub fn is_dirty(&mut self) -> bool {
        self.checkpointed != self.next_offset || !self.instance.state().pending().is_empty()
    }

    pub fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Whether the input offset moved since the last checkpoint (a partition can be
    /// dirty without: table records, timers).
    pub fn offset_moved(&self) -> bool {
        self.next_offset != self.checkpointed
    }

    /// Where the fetch stands (what the next record must be).
    pub fn fetched_to(&self) -> i64 {
        self.fetch.next()
    }

    /// Whether a batch starting at `offset` must be committed on its own (see
    /// `careful_until`).
    pub fn is_careful_at(&self, offset: i64) -> bool {
        self.careful_until.is_some_and(|until| offset < until)
    }

    pub fn set_careful_until(&mut self, offset: i64) {
        self.careful_until = Some(offset);
    }

    /// The batch ending at `last` was processed.
    pub fn advance(&mut self, last: i64) {
        self.next_offset = last + 1;
    }

    /// Whether this partition's writes since the last checkpoint passed half of
    /// `limits.max_pending_state_bytes`: the thread then checkpoints at once rather
    /// than at the end of the interval, so the next batch has room, and a partition's
    /// buffered state stays bounded however slow or long its interval.
    pub fn state_buffer_half_full(&mut self) -> bool {
        let limit = self.assigned.ctx.limits.max_pending_state_bytes;
        self.pending_state_memory() > limit / 2
    }

    /// Memory this partition's state writes since the last checkpoint hold.
    pub fn pending_state_memory(&mut self) -> u64 {
        self.instance.state().pending_memory() as u64
    }

    /// Drop what happened since the last checkpoint and fetch again from it. The
    /// thread aborted the transaction holding this task's outputs.
    pub fn rewind(&mut self) -> Result<(), TaskError> {
        self.instance.state().discard_uncommitted();
        self.held = None;
        for table in &mut self.tables {
            table.rewind()?;
        }
        self.assigned.seek(self.checkpointed)?;
        self.fetch.seeked(self.checkpointed);
        self.next_offset = self.checkpointed;
        Ok(())
    }

    /// Forget what happened since the last checkpoint, for a task being let go without
    /// committing (its transaction is aborted).
    pub fn discard(&mut self) {
        self.instance.state().discard_uncommitted();
    }

    /// The checkpoint committed: apply the state buffer and the new head, offset and
    /// changelog position to RocksDB in one write.
    pub fn checkpointed(
        &mut self,
        checkpoint: u64,
        changelog_position: Option<i64>,
    ) -> Result<(), StateError> {
        let next_offset = self.next_offset;
        let position = changelog_position.unwrap_or(self.position);
        self.instance.state().checkpoint(&[
            (META_OFFSET, &next_offset.to_be_bytes()),
            (META_HEAD, &checkpoint.to_be_bytes()),
            (META_POSITION, &position.to_be_bytes()),
        ])?;
        tracing::debug!(
            topic = %self.assigned.topic,
            partition = self.assigned.partition,
            checkpoint = %crate::state::changelog::encode_id(checkpoint),
            parent = %crate::state::changelog::encode_id(self.head),
            offset = next_offset,
            position,
            "checkpoint committed"
        );
        self.head = checkpoint;
        self.position = position;
        self.checkpointed = next_offset;
        for table in &mut self.tables {
            table.checkpointed();
        }
        Ok(())
    }

    /// Switch to the pipeline's active version if it changed. Called at checkpoint
    /// boundaries only, so a transaction never mixes versions.
    pub fn follow_active(&mut self) -> Result<(), TaskError> {
        let assigned = &self.assigned;
        let active = assigned.ctx.versions.active();
        if Arc::ptr_eq(&active, &self.active) {
            return Ok(());
        }
        if active.module.id() == self.active.module.id() {
            // Back to the module this instance runs (a rollback of a version this
            // partition never switched to): nothing to restart.
            assigned.status.set_version(active.version);
            self.active = active;
            return Ok(());
        }
        let started = Instant::now();
        match self
            .instance
            .switch_to(&active.module, assigned.labels(&active))
        {
            Ok(()) => {
                let pause = started.elapsed();
                assigned
                    .metrics
                    .swap_pause_seconds
                    .observe(pause.as_secs_f64());
                tracing::info!(
                    pipeline = %assigned.ctx.name,
                    topic = %assigned.topic,
                    partition = assigned.partition,
                    from = self.active.version,
                    to = active.version,
                    pause_us = pause.as_micros() as u64,
                    "switched module version"
                );
                assigned.status.set_version(active.version);
                self.active = active;
                Ok(())
            }
            Err(error) => {
                // The version passed its init on an empty state but not on this
                // partition's: it cannot run here, so it cannot run at all.
                tracing::error!(pipeline = %assigned.ctx.name, partition = assigned.partition, version = active.version, %error, "the new version cannot start on this partition; rolling back");
                let reason = format!(
                    "init failed on partition {}/{}: {error}",
                    assigned.topic, assigned.partition
                );
                assigned
                    .ctx
                    .versions
                    .rollback("weir", Some(reason), true, Some(active.version))
                    .map_err(|e| TaskError::Version(Box::new(e)))?;
                Ok(())
            }
        }
    }

    /// Read the committed value of a state key (for the admin API).
    pub fn get_committed(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        self.instance.state().get_committed(key)
    }
}

fn read_meta(state: &mut PartitionState, name: &str) -> Result<Option<i64>, StateError> {
    Ok(state
        .metadata(name)?
        .and_then(|bytes| Some(i64::from_be_bytes(bytes.as_slice().try_into().ok()?))))
}
