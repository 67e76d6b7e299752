//! A task's tables (`crate::table`): for each table the pipeline declares, a reader
//! of the table topic's partition with the input's number, applying its records to
//! the partition's store in timestamp order with the input's records.
//!
//! Every task of a pipeline run reads its tables through one consumer (no group: it
//! is assigned each task's table partitions itself), each partition into a queue of
//! its own, so a daemon with hundreds of partitions still has one table consumer per
//! pipeline. A table record applied is a state write like any other, so it commits
//! with the checkpoint and is undone with a rewind; the reader then seeks back too.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a reader an input waits on says so.
const WAIT_WARNING_EVERY: Duration = Duration::from_secs(30);

use rdkafka::consumer::base_consumer::PartitionQueue;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::kafka::KafkaFailure;
use crate::pipeline::context::PipelineContext;
use crate::state::PartitionState;
use crate::table::TableSpec;
use crate::table::keys;
use crate::table::order::Feed;

use super::TaskError;

/// The consumer a pipeline run reads its tables with.
pub type TableConsumer = BaseConsumer<TableContext>;

/// The table consumer's context: reaching the end of a table partition is news for
/// its reader (see [`crate::table::order`]), not an error worth a log line.
pub struct TableContext;

impl rdkafka::ClientContext for TableContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if !crate::kafka::is_end_of_partition(&error) {
            tracing::warn!(%error, reason, "Kafka table consumer error");
        }
    }
}

impl ConsumerContext for TableContext {}

/// A consumer for a pipeline run's tables, or `None` when it declares none.
pub fn table_consumer(ctx: &PipelineContext) -> Result<Option<Arc<TableConsumer>>, KafkaFailure> {
    if ctx.tables.is_empty() {
        return Ok(None);
    }
    let mut config = ctx.settings.consumer_config();
    // Each table partition gets the share of the fetch buffer an input partition gets
    // (the daemon counts them), unless the config says otherwise.
    for (key, value) in [
        ("queued.max.messages.kbytes", ctx.fetch_queue_kbytes),
        ("fetch.message.max.bytes", ctx.fetch_bytes),
    ] {
        if config.get(key).is_none() {
            config.set(key, value.to_string());
        }
    }
    let consumer = config
        // A reader knows it has every record up to the end when the end is reported.
        .set("enable.partition.eof", "true")
        // The end is a fetch that finds nothing, which the broker holds for this long
        // (500 ms by default) hoping for data; an input record waiting on a table that
        // was just updated waits as long.
        .set("fetch.wait.max.ms", "10")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Never joined (partitions are assigned by hand), but named after the
        // pipeline's group so that ACLs granted for it cover it.
        .set("group.id", format!("{}-tables", ctx.group))
        // A table partition read from offset 0 starts wherever its log starts.
        .set("auto.offset.reset", "earliest")
        .create_with_context(TableContext)
        .map_err(|e| KafkaFailure::new("cannot create the table consumer", e))?;
    Ok(Some(Arc::new(consumer)))
}

/// A table record fetched and not applied yet.
struct TableRecord {
    offset: i64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

/// One table's reader, for one task.
pub(super) struct TableFeed {
    name: String,
    topic: String,
    partition: i32,
    consumer: Arc<TableConsumer>,
    queue: PartitionQueue<TableContext>,
    head: Option<TableRecord>,
    /// End of partition reported, nothing fetched since.
    at_end: bool,
    /// The next table offset to apply.
    next: i64,
    /// `next` as of the last checkpoint: where a rewind goes back to.
    checkpointed: i64,
    /// Where processing had read the table at the checkpoint the partition started
    /// from: records before it are re-read first, whatever their times.
    replay_until: i64,
    /// Since when an input record has waited on this reader, which has fetched
    /// nothing and not reported the end; and when that was last logged.
    waiting: Option<(Instant, Instant)>,
}

impl TableFeed {
    /// Start reading `table` for the task of `partition`, from where its rows in
    /// `state` are read to.
    pub(super) fn open(
        consumer: &Arc<TableConsumer>,
        table: &TableSpec,
        partition: i32,
        state: &mut PartitionState,
    ) -> Result<Self, TaskError> {
        let position = |state: &mut PartitionState, key: Vec<u8>| -> Result<i64, TaskError> {
            Ok(state
                .get(&key)?
                .as_deref()
                .and_then(keys::decode_offset)
                .unwrap_or(0))
        };
        let topic_key = keys::topic_key(&table.name);
        match state.get(&topic_key)? {
            Some(read_from) if read_from != table.topic.as_bytes() => {
                return Err(TaskError::TableMoved {
                    table: table.name.clone(),
                    was: String::from_utf8_lossy(&read_from).into_owned(),
                    now: table.topic.clone(),
                });
            }
            Some(_) => {}
            None => state.put(topic_key, table.topic.as_bytes().to_vec()),
        }
        let rows = position(state, keys::rows_read_key(&table.name))?;
        let read = position(state, keys::read_key(&table.name))?;
        if rows > read {
            return Err(TaskError::TableAhead {
                table: table.name.clone(),
                rows,
                read,
            });
        }
        let queue = consumer
            .split_partition_queue(&table.topic, partition)
            .ok_or(TaskError::NoQueue)?;
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(&table.topic, partition, Offset::Offset(rows))
            .map_err(|e| KafkaFailure::new("cannot assign a table partition", e))?;
        consumer.incremental_assign(&assignment).map_err(|e| {
            KafkaFailure::new(format!("cannot read table topic {:?}", table.topic), e)
        })?;
        tracing::debug!(table = %table.name, topic = %table.topic, partition, rows, read, "reading the table");
        Ok(Self {
            name: table.name.clone(),
            topic: table.topic.clone(),
            partition,
            consumer: consumer.clone(),
            queue,
            head: None,
            at_end: false,
            next: rows,
            checkpointed: rows,
            replay_until: read,
            waiting: None,
        })
    }

    /// Wake the processing thread when records (or the end) arrive.
    pub(super) fn wake_with(&mut self, wake: impl Fn() + Send + Sync + 'static) {
        self.queue.set_nonempty_callback(wake);
    }

    /// Fetch the next record into the head, if there is room and one came.
    pub(super) fn peek(&mut self) {
        while self.head.is_none() {
            match self.queue.poll(Duration::ZERO) {
                None => return,
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    self.at_end = true;
                    self.waiting = None;
                    self.warn_if_short();
                    return;
                }
                Some(Err(error)) => {
                    tracing::warn!(table = %self.name, partition = self.partition, %error, "table consumer error");
                    return;
                }
                Some(Ok(message)) => {
                    self.at_end = false;
                    self.waiting = None;
                    // A record before the position was fetched before a seek back.
                    if message.offset() < self.next {
                        continue;
                    }
                    self.head = Some(TableRecord {
                        offset: message.offset(),
                        timestamp: message.timestamp().to_millis().unwrap_or(-1),
                        key: message.key().map(<[u8]>::to_vec),
                        value: message.payload().map(<[u8]>::to_vec),
                    });
                }
            }
        }
    }

    /// The end came before the position the checkpoint had read the table to, and
    /// the topic ends there: it was truncated or recreated since (records between the
    /// last one and that position that are only transaction markers or compacted away
    /// end the replay quietly). The rows are what the topic holds now.
    fn warn_if_short(&self) {
        if self.next >= self.replay_until {
            return;
        }
        let high =
            super::fetch::cached_watermarks(self.consumer.client(), &self.topic, self.partition)
                .map(|(_, high)| high);
        if high.is_some_and(|high| high < self.replay_until) {
            tracing::warn!(table = %self.name, topic = %self.topic, partition = self.partition, read_to = self.replay_until, ends_at = ?high, "the table topic ends before where the checkpoint had read it (truncated or recreated?): going on with what it holds");
        }
    }

    /// An input record waits on this reader if it has fetched nothing and not
    /// reported the end: say so now and then, since a table partition that never
    /// answers (a leader down, no read permission) holds its input for as long.
    pub(super) fn note_wait(&mut self) {
        if self.head.is_some() || self.at_end {
            return;
        }
        let now = Instant::now();
        let (since, logged) = self.waiting.get_or_insert((now, now));
        if now.duration_since(*logged) >= WAIT_WARNING_EVERY {
            *logged = now;
            tracing::warn!(table = %self.name, topic = %self.topic, partition = self.partition, waited_s = now.duration_since(*since).as_secs(), "the input waits for the table to be read up to its records' time, and the table reader has received nothing: check the table topic's partition on the brokers");
        }
    }

    /// What the ordering needs to know of this reader.
    pub(super) fn view(&self) -> Feed {
        let past_replay = self.next >= self.replay_until
            || self.at_end
            || self
                .head
                .as_ref()
                .is_some_and(|h| h.offset >= self.replay_until);
        Feed {
            head: self.head.as_ref().map(|h| h.timestamp),
            at_end: self.at_end,
            replaying: !past_replay,
        }
    }

    /// Apply the head record to `state`: its row, and how far the table is read.
    pub(super) fn apply_head(&mut self, state: &mut PartitionState) {
        let Some(record) = self.head.take() else {
            return;
        };
        let replayed = record.offset < self.replay_until;
        self.next = record.offset + 1;
        // A record without a key names no row; it is read past, like Kafka Streams does.
        if let Some(key) = record.key {
            let row = keys::row_key(&self.name, &key);
            match record.value {
                Some(value) => state.put(row, value),
                None => state.delete(row),
            }
        }
        let next = keys::encode_offset(self.next).to_vec();
        state.put(keys::rows_read_key(&self.name), next.clone());
        if !replayed {
            state.put(keys::read_key(&self.name), next);
        }
    }

    /// Stop or go on fetching, with the task's input.
    pub(super) fn set_paused(&self, pause: bool) -> Result<(), KafkaFailure> {
        let mut partition = TopicPartitionList::new();
        partition.add_partition(&self.topic, self.partition);
        let result = if pause {
            self.consumer.pause(&partition)
        } else {
            self.consumer.resume(&partition)
        };
        result.map_err(|e| KafkaFailure::new("cannot pause or resume a table partition", e))
    }

    /// The checkpoint committed what was applied.
    pub(super) fn checkpointed(&mut self) {
        self.checkpointed = self.next;
    }

    /// Go back to the last checkpoint (the task's state is rewound with it).
    pub(super) fn rewind(&mut self) -> Result<(), TaskError> {
        super::fetch::seek(
            &self.consumer,
            &self.topic,
            self.partition,
            self.checkpointed,
        )?;
        self.head = None;
        self.at_end = false;
        self.next = self.checkpointed;
        Ok(())
    }
}

impl Drop for TableFeed {
    fn drop(&mut self) {
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition(&self.topic, self.partition);
        if let Err(error) = self.consumer.incremental_unassign(&assignment) {
            tracing::warn!(table = %self.name, partition = self.partition, %error, "cannot stop reading the table partition");
        }
    }
}
