//! The worker of one owned input partition: fence the previous owner, restore state
//! from the changelog, then poll -> process -> emit -> checkpoint until revoked.
//!
//! The parts, each a file: [`fetch`] (where to start, seeking, batches checked against
//! the position), [`restore`] (the changelog back into state), [`transform`] (a batch
//! through the transform, outputs into the transaction) and [`checkpoint`] (the commit
//! protocol, and going back to the last checkpoint). This file holds the lifecycle:
//! start, the processing loop, commands, pausing and following the active version.

mod checkpoint;
mod fetch;
mod restore;
mod transform;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};

use crate::config::{ChangelogFormat, Guarantee};
use crate::engine::{Engine, EngineError, InputRecord, Instance, InstanceLabels, Limits};
use crate::kafka::producer::PartitionProducer;
use crate::kafka::{ClientSettings, KafkaFailure, REQUEST_TIMEOUT};
use crate::metrics::{Metrics, PartitionMetrics};
use crate::state::changelog::RestoreError;
use crate::state::{PartitionState, RocksMemory, RocksStore, StateError};

use super::control::{Command, PartitionStatus, Phase, Reply, Stop};
use super::position::Position;
use super::runner::OwnedPartitions;
use super::versions::{Active, VersionError, Versions};
use super::{BatchError, ErrorPolicy, Processor as _};

/// Metadata keys in the partition's store.
const META_OFFSET: &str = "kafka.offset";
const META_HEAD: &str = "changelog.head";
const META_POSITION: &str = "changelog.position";

/// How long one poll of the partition queue may block, so stop commands are seen.
const POLL_SLICE: Duration = Duration::from_millis(50);

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
    /// The memory the partition stores share (with every pipeline of the daemon).
    pub rocks: RocksMemory,
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
    #[error(
        "after seeking {topic}/{partition} to offset {expected}, fetches disagree on the \
         first record there ({first}, then {then}): not processing past records that may \
         exist. The pipeline restarts from its last checkpoint; if this repeats, check the \
         brokers' logs for that partition"
    )]
    UnsettledGap {
        topic: String,
        partition: i32,
        expected: i64,
        first: i64,
        then: i64,
    },
    #[error("librdkafka gave no queue of its own for the partition (a Weir bug)")]
    NoQueue,
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
        let mut state = PartitionState::new(Box::new(RocksStore::open_in(
            self.state_path(),
            &ctx.rocks,
        )?));
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
}

fn read_meta(state: &mut PartitionState, name: &str) -> Result<Option<i64>, StateError> {
    Ok(state
        .metadata(name)?
        .and_then(|bytes| Some(i64::from_be_bytes(bytes.as_slice().try_into().ok()?))))
}
