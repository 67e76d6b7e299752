//! Bringing local state up to the committed offset from the changelog: reading the
//! changelog partition from local state's position, framing and deciding with
//! `state::changelog`'s rules, and applying committed blocks to RocksDB.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::failpoint;
use crate::kafka::{ClientSettings, KafkaFailure, REQUEST_TIMEOUT, is_transient};
use crate::state::changelog::{
    self, Block, ChangelogRecord, Decision, Framer, Identity, Local, ROOT, RawRecord, Restorer,
};
use crate::state::{PartitionState, StateError};
use prometheus_client::metrics::gauge::Gauge;

use crate::pipeline::control::{PartitionStatus, Phase};

use super::{Assigned, META_HEAD, META_OFFSET, META_POSITION, TaskError, read_meta};

impl<C: ConsumerContext + 'static> Assigned<C> {
    /// Bring local state up to the committed offset from the changelog. Returns the
    /// head and the changelog position the state is at, and what was applied and
    /// discarded.
    pub(super) fn restore(
        &self,
        state: &mut PartitionState,
        committed_offset: Option<i64>,
    ) -> Result<RestoreProgress, TaskError> {
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
                Remaining {
                    gauge: self.metrics.restore_remaining.clone(),
                    status: self.status.clone(),
                },
            )?;
            // Under at-least-once the changelog is not transactional, so it also holds
            // blocks of intervals whose offsets never committed (a crash between the
            // changelog flush and the offset commit). The same chain rule decides:
            // only the committed head and its ancestors apply; local state never gets
            // ahead of the group, whose records are redone from the committed offset.
            while let Some(record) = reader.next()? {
                if self.is_cancelled() {
                    return Err(TaskError::Stopped);
                }
                progress.apply(state, restorer.push(record)?)?;
            }
            let (decisions, head) = restorer.finish()?;
            progress.apply(state, decisions)?;
            debug_assert_eq!(progress.head, head);
            self.status.set_restore_remaining(None);
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
}

impl<C: ConsumerContext + 'static> super::Task<C> {
    /// Whether checkpoint `id`'s block is in this partition's changelog, as a
    /// read_committed reader sees it (after its last checkpoint's position): whether
    /// the transaction that wrote it committed.
    pub fn changelog_holds(&self, id: u64) -> Result<bool, TaskError> {
        let this = &self.assigned;
        let mut reader = ChangelogReader::open(
            &this.ctx.settings,
            &this.changelog_topic,
            this.partition,
            self.position.max(0),
            Remaining {
                gauge: Gauge::default(),
                status: Arc::new(PartitionStatus::new()),
            },
        )?;
        while let Some(record) = reader.next()? {
            if record.checkpoint == id {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Counts and position of a restore, and applying its decisions.
pub(super) struct RestoreProgress {
    pub(super) head: u64,
    pub(super) position: i64,
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
                    let (checkpoint, position) = (block.checkpoint, block.last_offset());
                    self.applied += apply_block(state, block)?;
                    self.head = checkpoint;
                    self.position = position;
                    failpoint::hit("restore.block");
                }
                Decision::Discard(block) => self.discarded += block.records.len(),
            }
        }
        Ok(())
    }
}

/// Apply one committed changelog block to local state in one write, with the head,
/// input offset and changelog position it leaves the state at. Returns how many state
/// records it applied. The records move into the state buffer, uncopied.
fn apply_block(state: &mut PartitionState, block: Block) -> Result<usize, StateError> {
    let position = block.last_offset();
    let mut applied = 0;
    for record in block.records.into_iter().filter(|r| !r.is_marker()) {
        applied += 1;
        match record.value {
            Some(value) => state.put(record.key, value),
            None => state.delete(record.key),
        }
    }
    state.checkpoint(&[
        (META_OFFSET, &block.input_offset.to_be_bytes()),
        (META_HEAD, &block.checkpoint.to_be_bytes()),
        (META_POSITION, &position.to_be_bytes()),
    ])?;
    Ok(applied)
}

/// The restore consumer's context: end-of-partition is how a restore ends, not an error
/// worth a log line.
struct RestoreContext;

impl rdkafka::ClientContext for RestoreContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !crate::kafka::is_end_of_partition(&error) {
            tracing::warn!(%error, reason, "Kafka restore consumer error");
        }
    }
}

impl ConsumerContext for RestoreContext {}

/// Where a restore's progress shows: the `weir_restore_remaining` gauge and the
/// partition's status (`weir status`, the admin API).
struct Remaining {
    gauge: Gauge,
    status: Arc<PartitionStatus>,
}

impl Remaining {
    fn set(&self, records: i64) {
        self.gauge.set(records);
        self.status.set_restore_remaining(Some(records));
    }
}

/// Reads one changelog partition from a position to its end. The end is where the
/// broker reports end-of-partition, not a high watermark read beforehand: only the partition's
/// owner writes it, and some brokers report a
/// watermark that disagrees with the offsets they hand out. Under read_committed the
/// end is the stable offset: records of a transaction still open (a previous owner's
/// that can no longer commit, see `start`) lie past it and are never read.
struct ChangelogReader {
    /// Taken back into [`IDLE`] when the reader is dropped at the end.
    consumer: Option<BaseConsumer<RestoreContext>>,
    /// The settings it was made with (their debug text), to reuse it only with them.
    settings: String,
    topic: String,
    partition: i32,
    /// The partition's high watermark when the restore began, for progress only.
    high: Option<i64>,
    remaining: Remaining,
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
        remaining: Remaining,
    ) -> Result<Self, TaskError> {
        let (key, consumer) = take_idle_consumer(settings)?;
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
            consumer: Some(consumer),
            settings: key,
            topic: topic.to_owned(),
            partition,
            high,
            remaining,
            done: false,
            framer: Framer::new(),
            framed: VecDeque::new(),
        })
    }

    fn consumer(&self) -> &BaseConsumer<RestoreContext> {
        self.consumer
            .as_ref()
            .expect("a reader has its consumer until dropped")
    }
}

thread_local! {
    /// The restore consumer of this (starter) thread, kept from one partition's restore
    /// to the next: making one and connecting it to the brokers was most of the time a
    /// short restore took, and each holds threads and connections of its own.
    static IDLE: RefCell<Option<(String, BaseConsumer<RestoreContext>)>> =
        const { RefCell::new(None) };
}

impl Drop for ChangelogReader {
    fn drop(&mut self) {
        // Only a reader that read to the end leaves nothing of its partition queued
        // for the next restore to stumble on.
        if self.done
            && let Some(consumer) = self.consumer.take()
        {
            let settings = std::mem::take(&mut self.settings);
            IDLE.with(|idle| *idle.borrow_mut() = Some((settings, consumer)));
        }
    }
}

/// The first offset of `topic`/`partition` on the broker, asked with this thread's
/// restore consumer (made if there is none, and kept).
pub(super) fn log_start(
    settings: &ClientSettings,
    topic: &str,
    partition: i32,
) -> Result<i64, TaskError> {
    let (key, consumer) = take_idle_consumer(settings)?;
    let low = consumer
        .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
        .map(|(low, _)| low)
        .map_err(|e| KafkaFailure::new("cannot read where the partition starts", e));
    IDLE.with(|idle| *idle.borrow_mut() = Some((key, consumer)));
    Ok(low?)
}

/// This thread's idle restore consumer if it was made with `settings`, else a new one;
/// with the settings' key, to give it back to [`IDLE`] with.
fn take_idle_consumer(
    settings: &ClientSettings,
) -> Result<(String, BaseConsumer<RestoreContext>), KafkaFailure> {
    let key = format!("{settings:?}");
    let idle = IDLE.with(|idle| idle.borrow_mut().take());
    let consumer = match idle {
        Some((made_with, consumer)) if made_with == key => consumer,
        _ => new_restore_consumer(settings)?,
    };
    Ok((key, consumer))
}

fn new_restore_consumer(
    settings: &ClientSettings,
) -> Result<BaseConsumer<RestoreContext>, KafkaFailure> {
    settings
        .consumer_config()
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("group.id", "weir-restore")
        // Prefetch by bytes, not by count: changelog records are small, and
        // librdkafka's default stops prefetching at 100,000 of them (a restore then
        // read 165k records/s where a bare consumer reads 600-800k). Bounded at
        // 16 MiB queued per restoring partition.
        .set("queued.min.messages", "10000000")
        .set("queued.max.messages.kbytes", "16384")
        .set("max.partition.fetch.bytes", "8388608")
        // The end of a changelog is a fetch that finds nothing, which the broker
        // holds for fetch.wait.max.ms hoping for data (500 ms by default): every
        // partition start paid it, 200 partitions took 53 s to start on 4 starters.
        .set("fetch.wait.max.ms", "10")
        // A position below the log start means records are gone: say so.
        .set("auto.offset.reset", "error")
        .create_with_context(RestoreContext)
        .map_err(|e| KafkaFailure::new("cannot create the restore consumer", e))
}

impl ChangelogReader {
    /// The next record, framed (see [`Framer`]).
    fn next(&mut self) -> Result<Option<ChangelogRecord>, TaskError> {
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
                    .map_err(|unframed| TaskError::ForeignChangelog {
                        topic: self.topic.clone(),
                        offset: unframed.offset,
                    })?;
                return Ok(None);
            };
            self.framer.push(raw, &mut self.framed);
        }
    }

    fn next_raw(&mut self) -> Result<Option<RawRecord>, TaskError> {
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        while !self.done {
            let wait = deadline.saturating_duration_since(Instant::now());
            match self.consumer().poll(wait) {
                None => {
                    return Err(KafkaFailure::new(
                        format!("reading {:?} stalled", self.topic),
                        KafkaError::NoMessageReceived,
                    )
                    .into());
                }
                // A reused consumer's earlier partition: nothing of this one.
                Some(Err(KafkaError::PartitionEOF(other))) if other != self.partition => {}
                Some(Ok(message))
                    if message.partition() != self.partition || message.topic() != self.topic => {}
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    self.remaining.set(0);
                    self.done = true;
                }
                // librdkafka reports a broker it cannot reach (one of the bootstrap
                // addresses, a broker restarting) as a consumer error, then fetches from
                // whoever leads the partition once it can: a stall, not a failure. Failing
                // on it restarted the pipeline, with a growing backoff, every time one
                // broker of three was down during a restore.
                Some(Err(error)) if is_transient(&error) && Instant::now() < deadline => {
                    tracing::debug!(topic = %self.topic, %error, "changelog read waiting for a broker");
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
fn decode(message: &impl Message, topic: &str) -> Result<RawRecord, TaskError> {
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
            return Err(TaskError::ForeignChangelog {
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
