//! Reading the input partition: where to start (the committed offset, or the log start
//! for a group that never committed), seeking, and collecting batches checked against
//! the partition's position (see `pipeline::position`); and publishing position, lag
//! and state size.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::engine::InputRecord;
use crate::kafka::records::{self};
use crate::kafka::{KafkaFailure, REQUEST_TIMEOUT};

use crate::pipeline::position::{GapOutcome, Verdict};
use crate::table::order::{self, Next};

use super::{Assigned, Task, TaskError};
use crate::pipeline::Processor as _;

impl<C: ConsumerContext + 'static> Assigned<C> {
    /// Fetch the partition from `offset`: where state was restored to at the start, or
    /// the last checkpoint on a rewind. The consumer began at the offset it read at
    /// assignment, which may be older (read while the previous owner's last transaction
    /// was still pending) or, on a broker that answers stale offsets, newer.
    pub fn seek(&self, offset: i64) -> Result<(), TaskError> {
        seek(&self.consumer, &self.topic, self.partition, offset)
    }

    /// The partition's first offset on the broker: where a group that never committed
    /// starts. Asked with the starter's restore consumer: the group consumer answers
    /// it only between its fetches, which wait up to `fetch.wait.max.ms` (500 ms by
    /// default) on partitions without records; every new partition paid that.
    pub(super) fn log_start(&self) -> Result<i64, TaskError> {
        super::restore::log_start(&self.ctx.settings, &self.topic, self.partition)
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
    pub fn committed(&self, local: Option<i64>) -> Result<Option<i64>, TaskError> {
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

    /// Count and log a gap after a seek that `first` (the record taken) settled.
    fn report_gap(&self, outcome: GapOutcome, expected: i64, first: i64) {
        self.metrics.input_gap(outcome.label());
        match outcome {
            GapOutcome::Recovered => {
                tracing::warn!(pipeline = %self.ctx.name, topic = %self.topic, partition = self.partition, expected, "a fetch skipped records after a seek; fetching again found them")
            }
            GapOutcome::Explained => {
                tracing::info!(pipeline = %self.ctx.name, topic = %self.topic, partition = self.partition, expected, first, "offsets missing after a seek are not in the log (transaction markers, compaction or retention)")
            }
        }
    }
}

impl<C: ConsumerContext + 'static> Task<C> {
    /// Collect up to a batch of the records already fetched, without waiting. Records
    /// before the position are skipped, and a gap after a seek is checked by seeking
    /// back (see `pipeline::position`). With tables, their records are applied in
    /// timestamp order with the input's (`crate::table::order`): a batch ends before
    /// an input record that a table record must precede, and the table records go in
    /// while the batch is empty. Returns how many table records it applied.
    pub fn fill(&mut self, batch: &mut Vec<InputRecord>) -> Result<usize, TaskError> {
        if self.tables.is_empty() {
            while batch.len() < self.assigned.ctx.batch_size {
                match self.next_input()? {
                    Some(record) => batch.push(record),
                    None => break,
                }
            }
            return Ok(0);
        }
        let limit = self.assigned.ctx.batch_size;
        let mut applied = 0;
        let mut feeds = Vec::with_capacity(self.tables.len());
        while batch.len() < limit {
            let record = match self.held.take() {
                Some(record) => Some(record),
                None => self.next_input()?,
            };
            feeds.clear();
            for table in &mut self.tables {
                table.peek();
                feeds.push(table.view());
            }
            let stream_time = match &record {
                Some(_) => None,
                None => self.instance.stream_time()?,
            };
            match order::next(record.as_ref().map(|r| r.timestamp), stream_time, &feeds) {
                Next::Stream => {
                    batch.push(record.expect("the stream goes next only with a record"))
                }
                Next::Table(i) if batch.is_empty() && applied < limit => {
                    self.held = record;
                    self.tables[i].apply_head(self.instance.state());
                    applied += 1;
                }
                Next::Wait => {
                    if record.is_some() {
                        self.tables.iter_mut().for_each(|table| table.note_wait());
                    }
                    self.held = record;
                    break;
                }
                Next::Table(_) => {
                    self.held = record;
                    break;
                }
            }
        }
        Ok(applied)
    }

    /// The next input record already fetched, checked against the position; `None`
    /// when there is none yet, or the fetch had to go back for it.
    fn next_input(&mut self) -> Result<Option<InputRecord>, TaskError> {
        let this = &self.assigned;
        loop {
            let message = match this.queue.poll(Duration::ZERO) {
                Some(Ok(message)) => message,
                Some(Err(error)) => {
                    tracing::warn!(pipeline = %this.ctx.name, partition = this.partition, %error, "consumer error");
                    return Ok(None);
                }
                None => return Ok(None),
            };
            let offset = message.offset();
            let expected = self.fetch.next();
            match self.fetch.judge(offset) {
                Verdict::Skip => {
                    tracing::debug!(
                        partition = this.partition,
                        offset,
                        expected,
                        "skipping a record before the position"
                    );
                    continue;
                }
                Verdict::Unsettled {
                    expected,
                    first,
                    then,
                } => {
                    return Err(TaskError::UnsettledGap {
                        topic: this.topic.clone(),
                        partition: this.partition,
                        expected,
                        first,
                        then,
                    });
                }
                Verdict::SeekBack { to } => {
                    tracing::info!(pipeline = %this.ctx.name, topic = %this.topic, partition = this.partition, expected, fetched = offset, "the first record after a seek is past the position; fetching again from the position");
                    this.seek(to)?;
                    return Ok(None);
                }
                Verdict::Take { gap: None } => {}
                Verdict::Take { gap: Some(outcome) } => {
                    this.report_gap(outcome, expected, offset);
                }
            }
            return Ok(Some(records::input_record(&message)));
        }
    }

    /// Publish the partition's position and lag (from the high watermark librdkafka
    /// last saw, without a request) and, now and then, the state size on disk.
    pub fn observe_position(&mut self) {
        let this = &self.assigned;
        let lag = cached_watermarks(this.consumer.client(), &this.topic, this.partition)
            .map(|(_, high)| (high - self.next_offset).max(0));
        if let Some(lag) = lag {
            this.metrics.consumer_lag.set(lag);
        }
        this.status.set_position(Some(self.next_offset), lag);
        if self
            .state_measured
            .is_none_or(|at| at.elapsed() >= STATE_SIZE_EVERY)
        {
            self.state_measured = Some(Instant::now());
            let bytes = crate::state::store_size(&this.state_path());
            this.metrics
                .state_bytes
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }
}

/// Seek `consumer`'s `topic`/`partition` to `offset`, trying again while its fetcher has
/// not started on a just-assigned partition.
pub(super) fn seek<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<(), TaskError> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    loop {
        match consumer.seek(topic, partition, Offset::Offset(offset), REQUEST_TIMEOUT) {
            Ok(()) => return Ok(()),
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(topic, partition, %error, "seek not possible yet; retrying");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(error) => {
                return Err(KafkaFailure::new(
                    format!("cannot seek {topic}/{partition} to offset {offset}"),
                    error,
                )
                .into());
            }
        }
    }
}

/// The low and high watermarks librdkafka last saw for a partition (from fetch
/// responses), without asking the broker. rdkafka has no safe wrapper for this.
pub(super) fn cached_watermarks<C: rdkafka::ClientContext>(
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

/// How often the state size on disk is measured (a directory walk).
const STATE_SIZE_EVERY: Duration = Duration::from_secs(10);
