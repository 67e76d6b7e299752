//! The worker of one owned input partition: fence the previous owner, restore state
//! from the changelog, then poll -> process -> emit -> checkpoint until revoked.
//!
//! A checkpoint under exactly-once is, in order:
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
//! offset.
//!
//! A crash before 3 aborts everything; between 3 and 4 leaves RocksDB behind Kafka, and
//! the restore replays the committed changelog tail. Local state is never ahead.

use std::collections::{BTreeMap, VecDeque};
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header as KafkaHeader, Headers, OwnedHeaders};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::config::{ChangelogFormat, Guarantee};
use crate::engine::{Engine, EngineError, InputRecord, Instance, InstanceLabels, Limits};
use crate::failpoint;
use crate::kafka::producer::{Outgoing, PartitionProducer, RecordKind};
use crate::kafka::records::{self, DeadLetter};
use crate::kafka::{ClientSettings, KafkaFailure, REQUEST_TIMEOUT};
use crate::metrics::{Metrics, PartitionMetrics};
use crate::state::changelog::{
    self, Block, ChangelogRecord, Decision, Framer, Identity, Local, ROOT, RawRecord, RestoreError,
    Restorer,
};
use crate::state::{PartitionState, RocksStore, StateError};
use prometheus_client::metrics::gauge::Gauge;

use super::control::{Command, PartitionStatus, Phase, Reply, Stop};
use super::position::{GapOutcome, Position, Verdict};
use super::runner::OwnedPartitions;
use super::versions::{Active, VersionError, Versions};
use super::{BatchError, ErrorPolicy, FailureReason, Processor as _, run_batch};

/// Metadata keys in the partition's store.
const META_OFFSET: &str = "kafka.offset";
const META_HEAD: &str = "changelog.head";
const META_POSITION: &str = "changelog.position";

/// How long one poll of the partition queue may block, so stop commands are seen.
const POLL_SLICE: Duration = Duration::from_millis(50);

/// How often the state size on disk is measured (a directory walk).
const STATE_SIZE_EVERY: Duration = Duration::from_secs(10);

/// What a pipeline's partitions share.
#[derive(Debug)]
pub struct PipelineContext {
    pub name: String,
    pub group: String,
    pub settings: ClientSettings,
    pub engine: Arc<Engine>,
    /// The module versions; workers follow the active one.
    pub versions: Arc<Versions>,
    pub metrics: Arc<Metrics>,
    /// Set by the admin API: partitions checkpoint and stop fetching until cleared.
    pub paused: AtomicBool,
    /// The partitions this member owns now.
    pub partitions: OwnedPartitions,
    /// The admin API's URL, advertised to the group in the consumer's client id.
    pub advertised_url: OnceLock<String>,
    /// Partition counts of the inputs, as of the pipeline's start.
    pub input_partitions: BTreeMap<String, i32>,
    pub transform_config: Arc<[(String, String)]>,
    pub limits: Arc<Limits>,
    pub output: String,
    pub dead_letter_topic: Option<String>,
    pub policy: ErrorPolicy,
    pub guarantee: Guarantee,
    pub group_protocol: crate::config::GroupProtocol,
    pub changelog_format: ChangelogFormat,
    pub commit_interval: Duration,
    pub batch_size: usize,
    /// Partition stores live in `<state_dir>/<topic>-<partition>`.
    pub state_dir: PathBuf,
}

impl PipelineContext {
    /// The transactional id of an input partition: the same on every instance, so the
    /// next owner fences the previous one.
    pub fn transactional_id(&self, topic: &str, partition: i32) -> String {
        // ':' cannot appear in a topic name, so no two (group, topic, partition) share
        // an id however their names are spelled.
        format!("{}:{topic}:{partition}", self.group)
    }

    pub fn changelog_topic(&self, topic: &str) -> String {
        crate::config::PipelineConfig::changelog_topic(&self.group, topic)
    }
}

/// Why a partition worker stopped without being asked to.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Kafka(#[from] KafkaFailure),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot restore partition state: {0}")]
    Restore(#[from] RestoreError),
    #[error("cannot start the transform: {0}")]
    Engine(#[from] EngineError),
    #[error("offset {offset}: {source}")]
    Batch {
        offset: i64,
        #[source]
        source: BatchError,
    },
    #[error(
        "the transform sent an output to {topic:?}, the changelog of this pipeline's state; \
         outputs there would corrupt the next restore. Send it to another topic"
    )]
    OutputToChangelog { topic: String },
    /// The worker was asked to stop while starting; nothing to clean up.
    #[error("stopped while starting")]
    Stopped,
    #[error(
        "the partition worker panicked: {0} (a Weir bug; nothing after the last checkpoint was committed)"
    )]
    Panicked(String),
    #[error(
        "changelog record at offset {offset} of {topic:?} is not one Weir wrote (malformed \
         checkpoint headers, or no checkpoint marker before it): the topic is shared with \
         something else. Give the pipeline its own group_id"
    )]
    ForeignChangelog { topic: String, offset: i64 },
    #[error("cannot change module versions: {0}")]
    Version(Box<VersionError>),
    /// The running version failed its trial and was rolled back; the worker redoes
    /// the interval with the restored version (never leaves the worker).
    #[error("module version {version} failed its trial")]
    TrialFailed { version: u32 },
}

impl WorkerError {
    /// Whether another instance took the partition over (not a failure of this one).
    pub fn is_fenced(&self) -> bool {
        matches!(self, Self::Kafka(failure) if failure.is_fenced())
    }
}

/// One owned input partition.
pub struct Worker<C: ConsumerContext + 'static> {
    ctx: Arc<PipelineContext>,
    topic: String,
    /// The changelog of this partition's state (computed once: outputs are checked
    /// against it).
    changelog_topic: String,
    partition: i32,
    consumer: Arc<BaseConsumer<C>>,
    queue: PartitionQueue<C>,
    commands: Receiver<Command>,
    status: Arc<PartitionStatus>,
    metrics: PartitionMetrics,
    /// Checkpoint before every batch of records before this offset: the partition
    /// restarts after the broker aborted a transaction that outlived its timeout, and
    /// the same records must not keep one open that long again.
    careful_until: Option<i64>,
}

/// State of a running partition between checkpoints.
struct Running {
    instance: Instance,
    /// The version the instance runs.
    active: Arc<Active>,
    producer: PartitionProducer,
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
    /// Whether fetching is paused (the pipeline is paused).
    paused: bool,
    /// When the state size on disk was last measured.
    state_measured: Option<Instant>,
}

impl<C: ConsumerContext + 'static> Worker<C> {
    pub fn new(
        ctx: Arc<PipelineContext>,
        topic: String,
        partition: i32,
        consumer: Arc<BaseConsumer<C>>,
        queue: PartitionQueue<C>,
        commands: Receiver<Command>,
        status: Arc<PartitionStatus>,
    ) -> Self {
        Self {
            changelog_topic: ctx.changelog_topic(&topic),
            metrics: ctx.metrics.partition(&ctx.name, &topic, partition),
            ctx,
            topic,
            partition,
            consumer,
            queue,
            commands,
            status,
            careful_until: None,
        }
    }

    /// Until the fetch passes `offset`, commit before each batch (see `careful_until`).
    pub fn careful_until(mut self, offset: Option<i64>) -> Self {
        self.careful_until = offset;
        self
    }

    /// Own the partition until told to stop or until something fails.
    pub fn run(self) -> Result<(), WorkerError> {
        let started = Instant::now();
        let mut running = match self.start() {
            Ok(running) => running,
            Err(WorkerError::Stopped) => return Ok(()),
            Err(error) => return Err(error),
        };
        tracing::info!(
            pipeline = %self.ctx.name,
            topic = %self.topic,
            partition = self.partition,
            offset = running.next_offset,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "partition running"
        );
        self.status.set_phase(Phase::Running);
        let result = self.process(&mut running);
        self.ctx
            .metrics
            .release_partition(&self.ctx.name, &self.topic, self.partition);
        if let Err(error) = &result
            && error.is_fenced()
        {
            self.status.set_fenced_at(running.fetch.next());
        }
        if result.is_err() {
            // Nothing after the last checkpoint may become visible.
            running.instance.state().discard_uncommitted();
            if let Err(error) = running.producer.abort() {
                tracing::debug!(%error, "abort after a failure");
            }
        }
        result
    }

    fn labels(&self, active: &Active) -> InstanceLabels {
        InstanceLabels {
            pipeline: self.ctx.name.clone(),
            partition: self.partition,
            module: active.label(),
        }
    }

    fn state_path(&self) -> PathBuf {
        self.ctx
            .state_dir
            .join(format!("{}-{}", self.topic, self.partition))
    }

    /// Fence the previous owner, read the committed offset, restore, instantiate.
    fn start(&self) -> Result<Running, WorkerError> {
        let ctx = &self.ctx;
        let transactional_id = (ctx.guarantee == Guarantee::ExactlyOnce)
            .then(|| ctx.transactional_id(&self.topic, self.partition));
        let producer = PartitionProducer::new(
            &ctx.settings,
            transactional_id.as_deref(),
            // A transaction spans one commit interval plus its flush and commit.
            ctx.commit_interval + Duration::from_secs(60),
        )?;
        let mut state = PartitionState::new(Box::new(RocksStore::open(self.state_path())?));
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        // The committed offset is read after the producer above fenced the previous
        // owner, which completes or aborts its last transaction first, and with
        // `require_stable` (librdkafka asks for stable offsets under read_committed):
        // the broker answers only once no transactional offset commit is pending. So a
        // changelog block past the committed offset belongs to a transaction that
        // never committed, and restore discards it.
        let (committed_offset, head, position) = loop {
            let committed = self.committed(read_meta(&mut state, META_OFFSET)?)?;
            match self.restore(&mut state, committed) {
                Ok(progress) => break (committed, progress.head, progress.position),
                // Blocks applied so far were committed; asking again is safe.
                Err(WorkerError::Restore(
                    error @ (RestoreError::BehindChangelog { .. }
                    | RestoreError::UnknownOffset { .. }),
                )) if Instant::now() < deadline => {
                    tracing::debug!(topic = %self.topic, partition = self.partition, %error, "asking for the committed offset again");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(error) => return Err(error),
            }
        };
        // A group that never committed starts at the log start (auto.offset.reset is
        // earliest): named here, so a rewind before the first checkpoint goes back to
        // it rather than leaving the fetch past records it never committed.
        let start = match committed_offset {
            Some(offset) => offset,
            None => self.log_start()?,
        };
        self.seek(start)?;

        let active = ctx.versions.active();
        let instance = ctx.engine.instantiate_with_limits(
            &active.module,
            self.labels(&active),
            ctx.transform_config.clone(),
            state,
            ctx.limits.clone(),
        )?;
        self.status.set_version(active.version);
        Ok(Running {
            instance,
            active,
            producer,
            head,
            position,
            fetch: Position::at(start),
            next_offset: start,
            checkpointed: start,
            paused: false,
            state_measured: None,
        })
    }

    /// Start fetching the partition at `offset`, the offset state was restored to. The
    /// consumer began at the offset it read at assignment, which may be older (read
    /// before this worker fenced the previous owner) or, on a broker that answers stale
    /// offsets, newer.
    fn seek(&self, offset: i64) -> Result<(), WorkerError> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let result = self.consumer.seek(
                &self.topic,
                self.partition,
                Offset::Offset(offset),
                REQUEST_TIMEOUT,
            );
            match result {
                Ok(()) => return Ok(()),
                // The fetcher may not have started on a just-assigned partition yet.
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(topic = %self.topic, partition = self.partition, %error, "seek not possible yet; retrying");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(error) => {
                    return Err(KafkaFailure::new(
                        format!("cannot seek to offset {offset}"),
                        error,
                    )
                    .into());
                }
            }
        }
    }

    /// The partition's first offset on the broker: where a group that never committed
    /// starts.
    fn log_start(&self) -> Result<i64, WorkerError> {
        let (low, _) = self
            .consumer
            .fetch_watermarks(&self.topic, self.partition, REQUEST_TIMEOUT)
            .map_err(|e| KafkaFailure::new("cannot read where the partition starts", e))?;
        Ok(low)
    }

    /// Whether a stop was requested while starting (the worker then just exits).
    /// Other commands are answered: the partition is not serving yet.
    fn stop_requested(&self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Stop(_)) | Err(TryRecvError::Disconnected) => return true,
                Ok(Command::Get { reply, .. }) => {
                    let _ = reply.send(Err(Reply::NotReady));
                }
                Err(TryRecvError::Empty) => return false,
            }
        }
    }

    /// The group's committed offset of this partition.
    ///
    /// Local state only moves after its Kafka commit succeeded, so a committed offset
    /// below the local one is a stale answer, not the truth: a group coordinator that
    /// is still loading or moving answers with a per-partition error, and brokers that
    /// do not honour `require_stable` answer before transactional commits are applied.
    /// Either is retried until the answer catches up, since starting from a stale
    /// offset would process records twice; an answer that stays below local state
    /// (offsets reset by hand) is reported by the restore, with what to do.
    fn committed(&self, local: Option<i64>) -> Result<Option<i64>, WorkerError> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&self.topic, self.partition);
            let committed = self
                .consumer
                .committed_offsets(tpl, REQUEST_TIMEOUT)
                .map_err(|e| KafkaFailure::new("cannot read the committed offset", e))?;
            let answer = match committed.find_partition(&self.topic, self.partition) {
                None => Ok(None),
                Some(element) => element.error().map(|()| match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                }),
            };
            let stale = match &answer {
                Ok(offset) => local.is_some_and(|local| offset.is_none_or(|o| o < local)),
                Err(_) => true,
            };
            if !stale {
                return Ok(answer.unwrap_or_default());
            }
            if Instant::now() >= deadline {
                return match answer {
                    Err(error) => {
                        Err(KafkaFailure::new("cannot read the committed offset", error).into())
                    }
                    // Restore reports the disagreement with what to do about it.
                    Ok(offset) => Ok(offset),
                };
            }
            tracing::debug!(topic = %self.topic, partition = self.partition, ?answer, ?local, "committed offset not current yet; asking again");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Bring local state up to the committed offset from the changelog. Returns the
    /// head and the changelog position the state is at, and what was applied and
    /// discarded.
    fn restore(
        &self,
        state: &mut PartitionState,
        committed_offset: Option<i64>,
    ) -> Result<RestoreProgress, WorkerError> {
        let local = Local {
            head: read_meta(state, META_HEAD)?.map_or(ROOT, |v| v as u64),
            offset: read_meta(state, META_OFFSET)?,
        };
        // The last changelog record local state holds; the restore reads from the next.
        let stored_position = read_meta(state, META_POSITION)?;
        let position = stored_position.unwrap_or(0);
        let from = stored_position.map_or(0, |p| p + 1);
        let mut restorer = Restorer::new(local, committed_offset);
        let mut progress = RestoreProgress {
            head: local.head,
            position,
            applied: 0,
            discarded: 0,
        };
        let started = Instant::now();
        if !restorer.is_current() {
            self.status.set_phase(Phase::Restoring);
            let mut reader = ChangelogReader::open(
                &self.ctx.settings,
                &self.changelog_topic,
                self.partition,
                from,
                self.metrics.restore_remaining.clone(),
            )?;
            // Under at-least-once the changelog is not transactional, so it also holds
            // blocks of intervals whose offsets never committed (a crash between the
            // changelog flush and the offset commit). The same chain rule decides:
            // only the committed head and its ancestors apply; local state never gets
            // ahead of the group, whose records are redone from the committed offset.
            while let Some(record) = reader.next()? {
                if self.stop_requested() {
                    return Err(WorkerError::Stopped);
                }
                progress.apply(state, restorer.push(record)?)?;
            }
            let (decisions, head) = restorer.finish()?;
            progress.apply(state, decisions)?;
            debug_assert_eq!(progress.head, head);
        }
        tracing::info!(
            pipeline = %self.ctx.name,
            topic = %self.topic,
            partition = self.partition,
            applied = progress.applied,
            discarded = progress.discarded,
            from,
            to = progress.position,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "restored state from the changelog"
        );
        Ok(progress)
    }

    /// The processing loop. Returns after a requested stop.
    fn process(&self, running: &mut Running) -> Result<(), WorkerError> {
        let mut batch: Vec<InputRecord> = Vec::with_capacity(self.ctx.batch_size);
        let mut deadline = Instant::now() + self.ctx.commit_interval;
        loop {
            let wait = if running.paused {
                POLL_SLICE
            } else {
                Duration::ZERO
            };
            match self.serve_commands(running, wait) {
                Some(Stop::Checkpoint) => return self.final_checkpoint(running),
                Some(Stop::Abandon) => {
                    running.instance.state().discard_uncommitted();
                    let _ = running.producer.abort();
                    return Ok(());
                }
                None => {}
            }
            let pause = self.ctx.paused.load(Ordering::Relaxed);
            if pause != running.paused {
                self.set_paused(running, pause)?;
                deadline = Instant::now() + self.ctx.commit_interval;
                continue;
            }
            if running.paused {
                // Nothing is in flight while paused: every moment is a boundary.
                self.follow_active(running)?;
                continue;
            }
            self.fill(&mut batch, running, deadline)?;
            if let Some(last) = batch.last().map(|r| r.offset) {
                if self
                    .careful_until
                    .is_some_and(|until| batch[0].offset < until)
                {
                    // One batch per transaction: its outputs are sent when it ends,
                    // so the transaction opens then and commits at once.
                    deadline = Instant::now() + self.ctx.commit_interval;
                    if !self.end_interval(running)? {
                        batch.clear(); // rewound: these records come again
                        continue;
                    }
                }
                match self.run_batch(running, &batch) {
                    Ok(()) => running.next_offset = last + 1,
                    Err(WorkerError::TrialFailed { version }) => {
                        // The interval's records go again, through the restored version.
                        self.rewind(running, &format!("version {version} failed its trial"))?;
                        self.follow_active(running)?;
                        deadline = Instant::now() + self.ctx.commit_interval;
                    }
                    Err(error) => return Err(error),
                }
                batch.clear();
            }
            running.producer.poll();
            if Instant::now() >= deadline {
                self.end_interval(running)?;
                deadline = Instant::now() + self.ctx.commit_interval;
            }
        }
    }

    /// End a commit interval: checkpoint and follow the active version, or go back to
    /// the last checkpoint after a failure the partition survives. False when it went
    /// back (the fetch was rewound).
    fn end_interval(&self, running: &mut Running) -> Result<bool, WorkerError> {
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
    fn final_checkpoint(&self, running: &mut Running) -> Result<(), WorkerError> {
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

    /// Answer state reads, waiting up to `wait` for the first command. Returns a stop
    /// request, if one came.
    fn serve_commands(&self, running: &mut Running, wait: Duration) -> Option<Stop> {
        let mut next = match self.commands.recv_timeout(wait) {
            Ok(command) => Some(command),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return Some(Stop::Checkpoint),
        };
        while let Some(command) = next {
            match command {
                Command::Stop(stop) => return Some(stop),
                Command::Get { key, reply } => {
                    let answer = running
                        .instance
                        .state()
                        .get_committed(&key)
                        .map_err(|e| Reply::Failed(e.to_string()));
                    let _ = reply.send(answer);
                }
            }
            next = match self.commands.try_recv() {
                Ok(command) => Some(command),
                Err(TryRecvError::Empty) => None,
                Err(TryRecvError::Disconnected) => return Some(Stop::Checkpoint),
            };
        }
        None
    }

    /// Pause (checkpoint, then stop fetching) or resume the partition.
    fn set_paused(&self, running: &mut Running, pause: bool) -> Result<(), WorkerError> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, self.partition);
        if pause {
            self.checkpoint(running)?;
            self.consumer
                .pause(&tpl)
                .map_err(|e| KafkaFailure::new("cannot pause fetching", e))?;
            self.status.set_phase(Phase::Paused);
        } else {
            self.consumer
                .resume(&tpl)
                .map_err(|e| KafkaFailure::new("cannot resume fetching", e))?;
            self.status.set_phase(Phase::Running);
        }
        running.paused = pause;
        tracing::info!(pipeline = %self.ctx.name, topic = %self.topic, partition = self.partition, paused = pause, "partition paused or resumed");
        Ok(())
    }

    /// Switch to the pipeline's active version if it changed. Called at checkpoint
    /// boundaries only, so a transaction never mixes versions.
    fn follow_active(&self, running: &mut Running) -> Result<(), WorkerError> {
        let active = self.ctx.versions.active();
        if Arc::ptr_eq(&active, &running.active) {
            return Ok(());
        }
        if active.module.id() == running.active.module.id() {
            // Back to the module this instance runs (a rollback of a version this
            // partition never switched to): nothing to restart.
            self.status.set_version(active.version);
            running.active = active;
            return Ok(());
        }
        let started = Instant::now();
        match running
            .instance
            .switch_to(&active.module, self.labels(&active))
        {
            Ok(()) => {
                let pause = started.elapsed();
                self.metrics.swap_pause_seconds.observe(pause.as_secs_f64());
                tracing::info!(
                    pipeline = %self.ctx.name,
                    topic = %self.topic,
                    partition = self.partition,
                    from = running.active.version,
                    to = active.version,
                    pause_us = pause.as_micros() as u64,
                    "switched module version"
                );
                self.status.set_version(active.version);
                running.active = active;
                Ok(())
            }
            Err(error) => {
                // The version passed its init on an empty state but not on this
                // partition's: it cannot run here, so it cannot run at all.
                tracing::error!(pipeline = %self.ctx.name, partition = self.partition, version = active.version, %error, "the new version cannot start on this partition; rolling back");
                let reason = format!(
                    "init failed on partition {}/{}: {error}",
                    self.topic, self.partition
                );
                self.ctx
                    .versions
                    .rollback("weir", Some(reason), true, Some(active.version))
                    .map_err(|e| WorkerError::Version(Box::new(e)))?;
                Ok(())
            }
        }
    }

    /// Go back to the last checkpoint after a failure the partition survives: abort the
    /// transaction, drop the state buffer, and re-read from the committed offset.
    fn rewind(
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

    /// Collect up to a batch of records, waiting at most until `deadline`. Records
    /// before the position are skipped, and a gap after a seek is checked by seeking
    /// back (see [`super::position`]).
    fn fill(
        &self,
        batch: &mut Vec<InputRecord>,
        running: &mut Running,
        deadline: Instant,
    ) -> Result<(), WorkerError> {
        let mut wait = deadline
            .saturating_duration_since(Instant::now())
            .min(POLL_SLICE);
        while batch.len() < self.ctx.batch_size {
            match self.queue.poll(wait) {
                Some(Ok(message)) => {
                    let offset = message.offset();
                    let expected = running.fetch.next();
                    match running.fetch.judge(offset) {
                        Verdict::Skip => {
                            tracing::debug!(
                                partition = self.partition,
                                offset,
                                expected,
                                "skipping a record before the position"
                            );
                            continue;
                        }
                        Verdict::SeekBack { to } => {
                            tracing::info!(pipeline = %self.ctx.name, topic = %self.topic, partition = self.partition, expected, fetched = offset, "the first record after a seek is past the position; fetching again from the position");
                            self.seek(to)?;
                            return Ok(());
                        }
                        Verdict::Take { gap } => {
                            if let Some(outcome) = gap {
                                self.metrics.input_gap(outcome.label());
                                match outcome {
                                    GapOutcome::Recovered => {
                                        tracing::warn!(pipeline = %self.ctx.name, topic = %self.topic, partition = self.partition, expected, "a fetch skipped records after a seek; fetching again found them")
                                    }
                                    GapOutcome::Explained => {
                                        tracing::info!(pipeline = %self.ctx.name, topic = %self.topic, partition = self.partition, expected, first = offset, "offsets missing after a seek are not in the log (transaction markers, compaction or retention)")
                                    }
                                }
                            }
                        }
                    }
                    batch.push(records::input_record(&message));
                }
                Some(Err(error)) => {
                    tracing::warn!(pipeline = %self.ctx.name, partition = self.partition, %error, "consumer error");
                    break;
                }
                None => break,
            }
            wait = Duration::ZERO;
        }
        Ok(())
    }

    /// Process a batch and queue its outputs and dead letters in the transaction.
    fn run_batch(&self, running: &mut Running, batch: &[InputRecord]) -> Result<(), WorkerError> {
        let ctx = &self.ctx;
        let started = Instant::now();
        let result = run_batch(&mut running.instance, batch, ctx.policy);
        self.metrics
            .process_seconds
            .observe(started.elapsed().as_secs_f64());
        self.metrics.records_in.inc_by(batch.len() as u64);
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(BatchError::RecordFailed { index, reason }) => {
                self.metrics.guest_error(reason.kind());
                if self.judge_trial(running, 1, 1, Some(&reason)) {
                    return Err(WorkerError::TrialFailed {
                        version: running.active.version,
                    });
                }
                let source = BatchError::RecordFailed { index, reason };
                return Err(WorkerError::Batch {
                    offset: batch[index].offset,
                    source,
                });
            }
            Err(source) => {
                return Err(WorkerError::Batch {
                    offset: batch[0].offset,
                    source,
                });
            }
        };
        for failure in &outcome.failures {
            self.metrics.guest_error(failure.reason.kind());
        }
        if self.judge_trial(
            running,
            batch.len() as u64,
            outcome.failures.len() as u64,
            None,
        ) {
            return Err(WorkerError::TrialFailed {
                version: running.active.version,
            });
        }
        self.metrics
            .records_out
            .inc_by(outcome.outputs.len() as u64);
        let module = running.active.label();
        for output in &outcome.outputs {
            if let Some(topic) = &output.topic
                && *topic == self.changelog_topic
            {
                return Err(WorkerError::OutputToChangelog {
                    topic: topic.clone(),
                });
            }
            running.producer.send(Outgoing {
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
                running.producer.send(Outgoing {
                    topic,
                    partition: None,
                    key: record.key.as_deref(),
                    value: record.value.as_deref(),
                    headers: Some(records::dead_letter_headers(record, &why)),
                    timestamp: Some(record.timestamp).filter(|t| *t >= 0),
                    kind: RecordKind::DeadLetter,
                })?;
                self.metrics.dead_letters.inc();
            }
        }
        Ok(())
    }

    /// Count a batch against the running version's trial, if it is on one. True when
    /// the version failed its trial (rolled back here or by another partition): the
    /// interval must be redone by the restored version. `fatal` is a failure under the
    /// `fail` policy, which fails the trial at once rather than stopping the pipeline.
    fn judge_trial(
        &self,
        running: &Running,
        records: u64,
        failures: u64,
        fatal: Option<&FailureReason>,
    ) -> bool {
        let Some(trial) = &running.active.trial else {
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
            if let Err(error) =
                self.ctx
                    .versions
                    .rollback("weir", Some(reason), true, Some(running.active.version))
            {
                tracing::error!(pipeline = %self.ctx.name, %error, "automatic rollback failed");
                return false;
            }
        }
        trial.has_failed()
    }

    /// Commit everything since the last checkpoint. See the module docs for the order.
    fn checkpoint(&self, running: &mut Running) -> Result<(), WorkerError> {
        let next_offset = running.next_offset;
        let state = running.instance.state();
        if running.checkpointed == next_offset && state.pending().is_empty() {
            self.observe_position(running);
            return Ok(());
        }
        let started = Instant::now();
        let changes = state.pending().len() as f64;
        let id = new_checkpoint_id();
        let (id_header, parent_header) =
            (changelog::encode_id(id), changelog::encode_id(running.head));
        let offset = next_offset.to_string();
        let headers = || {
            OwnedHeaders::new_with_capacity(3)
                .insert(KafkaHeader {
                    key: changelog::CHECKPOINT_HEADER,
                    value: Some(id_header.as_str()),
                })
                .insert(KafkaHeader {
                    key: changelog::PARENT_HEADER,
                    value: Some(parent_header.as_str()),
                })
                .insert(KafkaHeader {
                    key: changelog::OFFSET_HEADER,
                    value: Some(offset.as_str()),
                })
        };
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
            running.producer.commit(&offsets, &group)?;
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

    /// Publish the partition's position and lag (from the high watermark librdkafka
    /// last saw, without a request) and, now and then, the state size on disk.
    fn observe_position(&self, running: &mut Running) {
        let lag = cached_watermarks(self.consumer.client(), &self.topic, self.partition)
            .map(|(_, high)| (high - running.next_offset).max(0));
        if let Some(lag) = lag {
            self.metrics.consumer_lag.set(lag);
        }
        self.status.set_position(Some(running.next_offset), lag);
        if running
            .state_measured
            .is_none_or(|at| at.elapsed() >= STATE_SIZE_EVERY)
        {
            running.state_measured = Some(Instant::now());
            self.metrics
                .state_bytes
                .set(i64::try_from(dir_size(&self.state_path())).unwrap_or(i64::MAX));
        }
    }
}

/// Counts and position of a restore, and applying its decisions.
struct RestoreProgress {
    head: u64,
    position: i64,
    applied: usize,
    discarded: usize,
}

impl RestoreProgress {
    fn apply(
        &mut self,
        state: &mut PartitionState,
        decisions: impl IntoIterator<Item = Decision>,
    ) -> Result<(), StateError> {
        for decision in decisions {
            match decision {
                Decision::Apply(block) => {
                    apply_block(state, &block)?;
                    self.applied += block.records.iter().filter(|r| !r.is_marker()).count();
                    self.head = block.checkpoint;
                    self.position = block.last_offset();
                    failpoint::hit("restore.block");
                }
                Decision::Discard(block) => self.discarded += block.records.len(),
            }
        }
        Ok(())
    }
}

/// The low and high watermarks librdkafka last saw for a partition (from fetch
/// responses), without asking the broker. rdkafka has no safe wrapper for this.
fn cached_watermarks<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    partition: i32,
) -> Option<(i64, i64)> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1_i64, -1_i64);
    // SAFETY: the client handle is alive for the call (borrowed from `client`), the
    // topic is a NUL-terminated string that outlives it, and librdkafka only writes
    // the two i64s it is given.
    let code = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            client.native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (code == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some((low, high))
}

/// Bytes of the files under `dir` (RocksDB keeps a flat directory).
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
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

fn read_meta(state: &mut PartitionState, name: &str) -> Result<Option<i64>, StateError> {
    Ok(state
        .metadata(name)?
        .and_then(|bytes| Some(i64::from_be_bytes(bytes.as_slice().try_into().ok()?))))
}

/// Apply one committed changelog block to local state in one write, with the head,
/// input offset and changelog position it leaves the state at.
fn apply_block(state: &mut PartitionState, block: &Block) -> Result<(), StateError> {
    for record in block.records.iter().filter(|r| !r.is_marker()) {
        match &record.value {
            Some(value) => state.put(record.key.clone(), value.clone()),
            None => state.delete(record.key.clone()),
        }
    }
    state.checkpoint(&[
        (META_OFFSET, &block.input_offset.to_be_bytes()),
        (META_HEAD, &block.checkpoint.to_be_bytes()),
        (META_POSITION, &block.last_offset().to_be_bytes()),
    ])?;
    Ok(())
}

/// The restore consumer's context: end-of-partition is how a restore ends, not an error
/// worth a log line.
struct RestoreContext;

impl rdkafka::ClientContext for RestoreContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(
            error,
            KafkaError::PartitionEOF(_)
                | KafkaError::Global(rdkafka::types::RDKafkaErrorCode::PartitionEOF)
        );
        if !eof {
            tracing::warn!(%error, reason, "Kafka restore consumer error");
        }
    }
}

impl ConsumerContext for RestoreContext {}

/// Reads one changelog partition from a position to its end. The end is where the
/// broker reports end-of-partition, not a high watermark read beforehand: nobody else
/// writes the partition (its previous owner is fenced), and some brokers report a
/// watermark that disagrees with the offsets they hand out.
struct ChangelogReader {
    consumer: BaseConsumer<RestoreContext>,
    topic: String,
    /// The partition's high watermark when the restore began, for progress only.
    high: Option<i64>,
    remaining: Gauge,
    done: bool,
    framer: Framer,
    /// Records framed but not handed out yet.
    framed: VecDeque<ChangelogRecord>,
}

impl ChangelogReader {
    fn open(
        settings: &ClientSettings,
        topic: &str,
        partition: i32,
        from: i64,
        remaining: Gauge,
    ) -> Result<Self, WorkerError> {
        let consumer: BaseConsumer<RestoreContext> = settings
            .consumer_config()
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .set("enable.auto.commit", "false")
            .set("group.id", "weir-restore")
            // A position below the log start means records are gone: say so.
            .set("auto.offset.reset", "error")
            .create_with_context(RestoreContext)
            .map_err(|e| KafkaFailure::new("cannot create the restore consumer", e))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Offset(from))
            .map_err(|e| KafkaFailure::new("cannot assign the changelog", e))?;
        consumer
            .assign(&tpl)
            .map_err(|e| KafkaFailure::new(format!("cannot read {topic:?}"), e))?;
        let high = consumer
            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
            .map(|(_, high)| high)
            .ok();
        if let Some(high) = high {
            remaining.set((high - from).max(0));
        }
        Ok(Self {
            consumer,
            topic: topic.to_owned(),
            high,
            remaining,
            done: false,
            framer: Framer::new(),
            framed: VecDeque::new(),
        })
    }

    /// The next record, framed (see [`Framer`]).
    fn next(&mut self) -> Result<Option<ChangelogRecord>, WorkerError> {
        loop {
            if let Some(record) = self.framed.pop_front() {
                tracing::debug!(
                    topic = %self.topic,
                    offset = record.offset,
                    checkpoint = %changelog::encode_id(record.checkpoint),
                    parent = %changelog::encode_id(record.parent),
                    input_offset = record.input_offset,
                    "changelog record"
                );
                return Ok(Some(record));
            }
            let Some(raw) = self.next_raw()? else {
                std::mem::take(&mut self.framer)
                    .finish()
                    .map_err(|unframed| WorkerError::ForeignChangelog {
                        topic: self.topic.clone(),
                        offset: unframed.offset,
                    })?;
                return Ok(None);
            };
            self.framer.push(raw, &mut self.framed);
        }
    }

    fn next_raw(&mut self) -> Result<Option<RawRecord>, WorkerError> {
        while !self.done {
            match self.consumer.poll(REQUEST_TIMEOUT) {
                None => {
                    return Err(KafkaFailure::new(
                        format!("reading {:?} stalled", self.topic),
                        KafkaError::NoMessageReceived,
                    )
                    .into());
                }
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    self.remaining.set(0);
                    self.done = true;
                }
                Some(Err(error)) => {
                    return Err(
                        KafkaFailure::new(format!("cannot read {:?}", self.topic), error).into(),
                    );
                }
                Some(Ok(message)) => {
                    if let Some(high) = self.high {
                        self.remaining.set((high - message.offset() - 1).max(0));
                    }
                    return decode(&message, &self.topic).map(Some);
                }
            }
        }
        Ok(None)
    }
}

/// A changelog message as read: its checkpoint headers, if it has them (a marker, or a
/// record of an earlier Weir), or none (a state record).
fn decode(message: &impl Message, topic: &str) -> Result<RawRecord, WorkerError> {
    let header = |name: &str| {
        message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == name))
            .map(|h| h.value.unwrap_or_default())
    };
    let id = |name| header(name).map(changelog::decode_id);
    let input_offset = header(changelog::OFFSET_HEADER)
        .map(|v| std::str::from_utf8(v).ok().and_then(|v| v.parse().ok()));
    let key = message.key().unwrap_or_default();
    let identity = match (
        id(changelog::CHECKPOINT_HEADER),
        id(changelog::PARENT_HEADER),
        input_offset,
    ) {
        (Some(Some(checkpoint)), Some(Some(parent)), Some(Some(input_offset))) => Some(Identity {
            checkpoint,
            parent,
            input_offset,
        }),
        (None, None, None) if key != changelog::MARKER_KEY => None,
        _ => {
            return Err(WorkerError::ForeignChangelog {
                topic: topic.to_owned(),
                offset: message.offset(),
            });
        }
    };
    Ok(RawRecord {
        offset: message.offset(),
        identity,
        key: key.to_vec(),
        value: message.payload().map(<[u8]>::to_vec),
    })
}
